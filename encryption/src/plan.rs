//! What the proxy must do to one SQL text so that it runs on ciphertext.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use crate::cipher::ColumnCrypto;

/// Why a statement cannot run on ciphertext: the client gets this as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRefusal {
    /// The protected column concerned (`table.column`), or the table for whole-statement
    /// refusals.
    pub column: String,
    /// What cannot be done, in words an application developer understands.
    pub reason: String,
}

impl std::fmt::Display for PlanRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "encrypted column {}: {}", self.column, self.reason)
    }
}

/// A literal in the SQL text that must be replaced by its ciphertext.
#[derive(Debug, Clone)]
pub struct LiteralSlot {
    /// Token indices replaced (the literal, and any sign, type prefix or cast around it).
    pub tokens: Range<usize>,
    /// Index of the literal token itself.
    pub literal: usize,
    /// A unary minus belongs to the value.
    pub negate: bool,
    /// The column whose key and type the value takes.
    pub column: Arc<ColumnCrypto>,
}

/// A `min(col)` / `max(col)` over an order-preserving column. PostgreSQL has no `min(bytea)`,
/// so the call is rewritten to `(array_agg(col ORDER BY col))[1]` (`DESC NULLS LAST` for max),
/// which returns the stored value with the least (greatest) ciphertext, that is the least
/// (greatest) plaintext.
#[derive(Debug, Clone)]
pub struct ExtremumSlot {
    /// Token indices of the whole call, from the function name through `)`.
    pub tokens: Range<usize>,
    /// Token indices of the argument.
    pub arg: Range<usize>,
    pub max: bool,
}

/// How a `COPY … FROM STDIN` / `TO STDOUT` on protected columns is carried out: the rows pass
/// through warden, which encrypts (in) or decrypts (out) the protected fields.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    /// `true` for `FROM STDIN` (client to database).
    pub into_database: bool,
    pub format: CopyFormat,
    /// Per field of a row: the protected column it holds, if any.
    pub fields: Vec<Option<Arc<ColumnCrypto>>>,
}

/// The data format of a COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format: `delimiter`-separated, backslash escapes, `null` for NULL.
    Text { delimiter: u8, null: String },
    /// CSV with `quote` and `escape` characters; an unquoted `null` is NULL.
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: String,
        header: bool,
    },
}

/// The encryption plan of one SQL text (all its statements).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Set when the text must not run.
    pub refusal: Option<PlanRefusal>,
    /// Literals to encrypt, in text order.
    pub literals: Vec<LiteralSlot>,
    /// Aggregates to rewrite, in text order.
    pub extrema: Vec<ExtremumSlot>,
    /// Bind parameters (1-based `$n`) whose values must be encrypted for a column.
    pub params: BTreeMap<usize, Arc<ColumnCrypto>>,
    /// Per statement, the protected column behind each result column where the SQL says so
    /// (used when the database's row description gives no origin: aggregates, UNION).
    pub outputs: Vec<Vec<Option<Arc<ColumnCrypto>>>>,
    /// The text's `COPY` through the client connection on protected columns, if any.
    pub copy: Option<Arc<CopyPlan>>,
    /// The text's `LOAD DATA LOCAL INFILE` into a table with encrypted columns (MySQL), if any.
    pub load_data: Option<Arc<crate::load_data::LoadDataPlan>>,
}

impl Plan {
    /// A plan that changes nothing.
    pub fn passthrough() -> Plan {
        Plan::default()
    }

    /// A plan that refuses the text.
    pub fn refuse(column: impl Into<String>, reason: impl Into<String>) -> Plan {
        Plan {
            refusal: Some(PlanRefusal {
                column: column.into(),
                reason: reason.into(),
            }),
            ..Plan::default()
        }
    }

    /// Whether the text must be rewritten before it reaches the database.
    pub fn rewrites_text(&self) -> bool {
        !self.literals.is_empty() || !self.extrema.is_empty()
    }

    /// The protected column behind result column `index` of statement `statement`, from the SQL.
    pub fn output(&self, statement: usize, index: usize) -> Option<&Arc<ColumnCrypto>> {
        self.outputs.get(statement)?.get(index)?.as_ref()
    }
}
