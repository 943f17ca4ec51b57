//! The facts Warden knows about a SQL text and each statement in it.
//!
//! An [`Analysis`] is immutable and shared (`Arc`) between every execution of the same template,
//! so nothing in it may depend on a literal's value (see `template.rs`). Audit records take the
//! kind, fingerprint, redacted SQL, tables and columns from here; the policy (later issues) takes
//! the same facts and decides. New facts (predicates on columns with their operators, functions
//! applied to columns, which literal slot belongs to which column) are added as new fields; the
//! structs are `#[non_exhaustive]` so that adding one breaks no reader.

use std::fmt;

use serde::Serialize;

use crate::dialect::Dialect;
use crate::fingerprint::Fingerprint;
use crate::kind::StatementKind;
use crate::names::{TableName, write_identifier};

/// Everything known about one SQL text (a simple-protocol Query may hold several statements).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Analysis {
    /// The dialect the text was analysed in.
    pub dialect: Dialect,
    /// The whole text with every literal replaced by `?`, formatting and comments kept.
    /// For text that could not be tokenized, everything from the unreadable point on is replaced
    /// by a `<… not shown>` marker.
    pub redacted_sql: String,
    /// Whether the text was understood.
    pub outcome: Outcome,
    /// One entry per statement, in order. Empty for an empty query or a lone `;`.
    pub statements: Vec<StatementFacts>,
}

impl Analysis {
    /// Whether every statement in the text was parsed, so the facts are complete as far as
    /// sqlparser's grammar goes.
    pub fn is_understood(&self) -> bool {
        matches!(self.outcome, Outcome::Parsed)
    }

    /// An estimate of the heap memory held, for the cache's byte budget.
    pub(crate) fn heap_bytes(&self) -> usize {
        let facts: usize = self.statements.iter().map(StatementFacts::heap_bytes).sum();
        std::mem::size_of::<Analysis>()
            + self.redacted_sql.len()
            + match &self.outcome {
                Outcome::Unparseable { error } => error.len(),
                _ => 0,
            }
            + facts
    }
}

/// Whether a text was understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every statement parsed.
    Parsed,
    /// sqlparser could not parse (or not tokenize) the text. Statements before the failing one are
    /// still listed with their facts; the rest is one [`StatementKind::Unparsed`] entry.
    /// `error` never contains literal text.
    Unparseable { error: String },
    /// The text is longer than the analyser's `max_sql_bytes`; it was neither parsed nor cached.
    TooLarge { bytes: usize },
}

/// What one statement does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StatementFacts {
    pub kind: StatementKind,
    /// This statement's text with literals replaced by `?` (comments kept, outer whitespace
    /// trimmed).
    pub redacted_sql: String,
    /// A stable hash of the statement's normalised, literal-free form; see `fingerprint.rs`.
    pub fingerprint: Fingerprint,
    /// Tables (and views) the statement reads, sorted, without duplicates.
    pub tables_read: Vec<TableName>,
    /// Tables the statement writes: the targets of INSERT / UPDATE / DELETE / MERGE / COPY FROM /
    /// SELECT INTO, and the tables that DDL creates, alters, drops, truncates, renames or
    /// comments on.
    pub tables_written: Vec<TableName>,
    /// Columns read, anywhere in the statement (projection, WHERE, JOIN, GROUP BY, subqueries,
    /// CTE bodies, RETURNING, SET right-hand sides). Sorted, without duplicates.
    pub columns_read: Vec<ColumnRef>,
    /// Columns assigned: the INSERT column list (a wildcard when none is written), UPDATE and
    /// ON CONFLICT / ON DUPLICATE KEY SET targets, MERGE actions, COPY FROM columns.
    pub columns_written: Vec<ColumnRef>,
    /// Whether the statement's own WHERE clause is present (meaningful for SELECT, UPDATE and
    /// DELETE; `false` for other kinds). See [`StatementFacts::is_unfiltered_write`].
    pub has_where: bool,
    /// `SELECT … INTO` (creates a table, or MySQL variables/files).
    pub select_into: bool,
    /// For `COPY`: where the rows come from or go to.
    pub copy_endpoint: Option<CopyEndpoint>,
    /// Some object or column name came from a string literal (sqlparser accepts `FROM 'x'`);
    /// its text is not recorded, so the facts cannot say what it touches. A policy should
    /// treat such a statement like an unparsed one.
    pub opaque_names: bool,
}

impl StatementFacts {
    /// An UPDATE or DELETE with no WHERE clause: it changes every row of its table.
    pub fn is_unfiltered_write(&self) -> bool {
        matches!(self.kind, StatementKind::Update | StatementKind::Delete) && !self.has_where
    }

    /// Every table the statement touches, read or written, sorted, without duplicates.
    pub fn tables(&self) -> Vec<&TableName> {
        let mut all: Vec<&TableName> = self
            .tables_read
            .iter()
            .chain(&self.tables_written)
            .collect();
        all.sort();
        all.dedup();
        all
    }

    fn heap_bytes(&self) -> usize {
        let names = |v: &[TableName]| -> usize {
            v.iter()
                .map(|t| t.parts().iter().map(|p| p.len() + 24).sum::<usize>() + 24)
                .sum()
        };
        let columns = |v: &[ColumnRef]| -> usize {
            v.iter()
                .map(|c| {
                    64 + c
                        .table
                        .as_ref()
                        .map_or(0, |t| names(std::slice::from_ref(t)))
                        + match &c.column {
                            ColumnName::Named(n) => n.len(),
                            ColumnName::Wildcard => 0,
                        }
                })
                .sum()
        };
        std::mem::size_of::<StatementFacts>()
            + self.redacted_sql.len()
            + names(&self.tables_read)
            + names(&self.tables_written)
            + columns(&self.columns_read)
            + columns(&self.columns_written)
    }
}

/// A column reference, resolved to its table where the statement makes that knowable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ColumnRef {
    /// The table the column belongs to; `None` when the statement does not say (an unqualified
    /// column with several tables in scope).
    pub table: Option<TableName>,
    pub column: ColumnName,
}

/// A column name, or `*` for every column of the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub enum ColumnName {
    Named(String),
    Wildcard,
}

impl fmt::Display for ColumnName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnName::Named(name) => write_identifier(f, name),
            ColumnName::Wildcard => f.write_str("*"),
        }
    }
}

impl From<ColumnName> for String {
    fn from(name: ColumnName) -> String {
        name.to_string()
    }
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(table) = &self.table {
            write!(f, "{table}.")?;
        }
        write!(f, "{}", self.column)
    }
}

/// Where the rows of a `COPY` come from or go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyEndpoint {
    /// `STDIN` / `STDOUT`: through the client connection, so through Warden.
    Client,
    /// A file on the database server.
    ServerFile,
    /// A shell command run by the database server (`PROGRAM '…'`).
    Program,
}
