//! The seam where policy decides what happens to a statement.
//!
//! For every SQL-carrying message (a simple Query, which may hold several statements, or an
//! extended-protocol Parse) the proxy calls [`StatementPolicy::decide`] before anything reaches
//! the database, and carries out the [`Decision`]:
//! - [`Decision::Allow`]: the original bytes go to the database untouched;
//! - [`Decision::Refuse`]: nothing of the statement reaches the database; the client gets an
//!   error with the refusal's SQLSTATE and message, in order with the rest of its pipeline, and
//!   the database's transaction state follows as if the statement had failed there;
//! - [`Decision::Rewrite`]: the database receives the rewritten SQL instead.
//!
//! Until the policy file arrives, the proxy runs [`Passthrough`], which allows everything.

use warden_analysis::Analysis;

use crate::SessionIdentity;

/// What to do with one SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Refuse(Refusal),
    Rewrite(Rewrite),
}

/// A refusal: the error the client gets and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that refused, named in the error and in the audit record.
    pub rule: String,
    /// SQLSTATE (PostgreSQL) of the error, such as `42501` (insufficient privilege).
    pub sqlstate: String,
    /// The message the client sees.
    pub message: String,
}

/// A rewrite: the SQL the database receives instead, and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub rule: String,
    pub sql: String,
}

impl Decision {
    /// The rule behind the decision, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Refuse(r) => Some(&r.rule),
            Decision::Rewrite(r) => Some(&r.rule),
        }
    }

    /// `allow`, `refuse` or `rewrite`, for audit records and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Refuse(_) => "refuse",
            Decision::Rewrite(_) => "rewrite",
        }
    }
}

/// Decides what happens to each SQL text a session sends.
///
/// Implementations must be fast (they run for every statement) and must not block: they see
/// facts and return a decision, without I/O.
pub trait StatementPolicy: Send + Sync + 'static {
    /// Decides for `sql`, analysed as `analysis`, sent by `session`.
    fn decide(&self, session: &SessionIdentity, sql: &str, analysis: &Analysis) -> Decision;
}

/// The policy in force when none is configured: every statement is allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Passthrough;

impl StatementPolicy for Passthrough {
    fn decide(&self, _session: &SessionIdentity, _sql: &str, _analysis: &Analysis) -> Decision {
        Decision::Allow
    }
}
