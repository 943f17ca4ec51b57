//! What column encryption does to one SQL text, the same on both protocols: plan it, refuse it
//! (with the protocol's SQLSTATEs) or rewrite its literals.

use std::sync::Arc;

use warden_encryption::rewrite::{RewriteError, rewrite};
use warden_encryption::{EncryptionError, Plan, Planner};
use warden_policy::Refusal;

/// The rule name of refusals made by column encryption.
pub const RULE: &str = "encryption";

/// The SQLSTATEs a protocol reports column encryption's refusals with.
#[derive(Debug, Clone, Copy)]
pub struct Sqlstates {
    /// A value that does not fit its column (PostgreSQL 22P02, MySQL 22007).
    pub invalid_value: &'static str,
    /// Encryption itself failed (PostgreSQL XX000, MySQL HY000).
    pub internal: &'static str,
}

/// PostgreSQL's.
pub const PG_SQLSTATES: Sqlstates = Sqlstates {
    invalid_value: "22P02",
    internal: "XX000",
};

/// MySQL's.
pub const MYSQL_SQLSTATES: Sqlstates = Sqlstates {
    invalid_value: "22007",
    internal: "HY000",
};

impl Sqlstates {
    /// The refusal of a statement that cannot run on ciphertext (feature not supported).
    pub fn plan_refusal(self, message: String) -> Refusal {
        refusal("0A000", message)
    }

    /// The refusal of a value that could not be encrypted.
    pub fn value_refusal(self, e: &EncryptionError) -> Refusal {
        let state = match e {
            EncryptionError::Value { .. } => self.invalid_value,
            _ => self.internal,
        };
        refusal(state, e.to_string())
    }

    /// The refusal of a value that does not fit its column, from a message.
    pub fn invalid_value(self, message: String) -> Refusal {
        refusal(self.invalid_value, message)
    }

    /// The refusal of something warden could not do (a malformed value, a splice that failed).
    pub fn internal(self, message: String) -> Refusal {
        refusal(self.internal, message)
    }

    /// The refusal of a text whose values could not be spliced.
    pub fn rewrite_refusal(self, e: &RewriteError) -> Refusal {
        match e {
            RewriteError::Value(v) => self.value_refusal(v),
            RewriteError::Shape(_) => refusal(self.internal, e.to_string()),
        }
    }
}

fn refusal(sqlstate: &str, message: String) -> Refusal {
    Refusal {
        rule: RULE.to_string(),
        sqlstate: sqlstate.to_string(),
        message,
    }
}

/// What column encryption does to one SQL text.
pub enum TextOutcome {
    /// Nothing to do: no column holds ciphertext.
    Untouched,
    /// The text is planned; `sql` is set when it must be sent rewritten.
    Planned {
        plan: Arc<Plan>,
        sql: Option<String>,
    },
    /// The text cannot run on ciphertext, or one of its values cannot be encrypted.
    Refused(Refusal),
}

/// Plans `sql` with `planner` and rewrites its literals. `template` is the analysis'
/// literal-free text when the analysis is of exactly this text and understood; `readable` is
/// false when the session's lexing is not the planner's (the text is then refused if it names
/// a table with encrypted columns, and passes otherwise).
pub fn plan_text(
    planner: &Planner,
    sql: &str,
    template: Option<&str>,
    readable: bool,
    states: Sqlstates,
) -> TextOutcome {
    let plan = if readable {
        planner.plan(sql, template)
    } else {
        planner.plan_opaque(sql)
    };
    if let Some(r) = &plan.refusal {
        return TextOutcome::Refused(states.plan_refusal(r.to_string()));
    }
    // Every statement is planned while some column holds ciphertext, even one that names no
    // encrypted column: a view or a function can still return one, and its rows are then
    // recognised by their origin.
    if !planner.catalog().has_encrypted() {
        return TextOutcome::Untouched;
    }
    let sql = if plan.rewrites_text() {
        match rewrite(sql, &plan, planner.dialect()) {
            Ok(s) => Some(s),
            Err(e) => return TextOutcome::Refused(states.rewrite_refusal(&e)),
        }
    } else {
        None
    };
    TextOutcome::Planned { plan, sql }
}
