//! The path every statement takes, whatever the wire protocol: analysis, the policy decision,
//! and the audit record.
//!
//! Protocol modules (PostgreSQL and MySQL) decode the SQL-carrying messages and call
//! into [`Shared`]; they carry decisions out in their own protocol's terms. Everything here is
//! shared by all sessions of the process.

pub mod records;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use warden_analysis::{Analysis, Analyzer, Dialect};
use warden_audit::AuditSink;
use warden_policy::{Decision, Refusal, SessionIdentity, StatementPolicy};

use crate::config::Limits;
use crate::metrics::Metrics;

/// The policy in force, replaced as a whole on reload.
pub type PolicyHandle = Box<dyn StatementPolicy>;

/// Services every session uses.
pub struct Shared {
    pub analyzer: Analyzer,
    pub policy: ArcSwap<PolicyHandle>,
    pub audit: AuditSink,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Secret from which mock SCRAM salts for unknown users are derived.
    pub mock_secret: [u8; 32],
    next_session: AtomicU64,
}

impl Shared {
    pub fn new(
        analyzer: Analyzer,
        policy: PolicyHandle,
        audit: AuditSink,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Shared {
        let mut mock_secret = [0u8; 32];
        getrandom::fill(&mut mock_secret).expect("the OS random source failed");
        Shared {
            analyzer,
            policy: ArcSwap::from_pointee(policy),
            audit,
            metrics,
            limits,
            mock_secret,
            next_session: AtomicU64::new(1),
        }
    }

    /// A new session number.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Analyses SQL text as sent by a client. `untrusted` says why the session's lexing
    /// settings make the analyser's reading unreliable, if they do: the text is then opaque
    /// (unparsed, and redacted from its first literal on). Text that is not UTF-8 is opaque too.
    pub fn analyze(&self, sql: &[u8], untrusted: Option<&str>) -> Arc<Analysis> {
        match (std::str::from_utf8(sql), untrusted) {
            (Ok(text), None) => self.analyzer.analyze(text),
            (Ok(text), Some(reason)) => self.analyzer.opaque(text, reason),
            (Err(_), _) => self.analyzer.opaque(
                &String::from_utf8_lossy(sql),
                "the SQL text is not valid UTF-8",
            ),
        }
    }

    /// Analyses SQL text from a MySQL session. `lexing` is the session's dialect (its
    /// `sql_mode` lexing switches), or why warden cannot follow the session's lexing (the
    /// `sql_mode` is unknown, or the client character set can hide quote bytes): the text is
    /// then opaque. Text that is not UTF-8 is opaque too.
    pub fn analyze_mysql(&self, sql: &[u8], lexing: Result<Dialect, &str>) -> Arc<Analysis> {
        match (std::str::from_utf8(sql), lexing) {
            (Ok(text), Ok(dialect)) => self.analyzer.analyze_in(dialect, text),
            (Ok(text), Err(reason)) => {
                self.analyzer
                    .opaque_in(Dialect::MYSQL_DEFAULT, text, reason)
            }
            (Err(_), _) => self.analyzer.opaque_in(
                Dialect::MYSQL_DEFAULT,
                &String::from_utf8_lossy(sql),
                "the SQL text is not valid UTF-8",
            ),
        }
    }

    /// The decision for `sql` from `session`. While the audit trail cannot take records, every
    /// statement is refused: nothing runs unaudited.
    pub fn decide(&self, session: &SessionIdentity, sql: &[u8], analysis: &Analysis) -> Decision {
        if let Some(refusal) = self.audit_refusal() {
            return Decision::Refuse(refusal);
        }
        let text = String::from_utf8_lossy(sql);
        self.policy.load().decide(session, &text, analysis)
    }

    /// The refusal to give while the audit trail is down, if it is.
    pub fn audit_refusal(&self) -> Option<Refusal> {
        let health = self.audit.health();
        if health.is_healthy() {
            return None;
        }
        Some(Refusal {
            rule: "audit-unavailable".into(),
            sqlstate: "58000".into(),
            message: format!(
                "warden refuses statements while the audit trail cannot record them ({health:?})"
            ),
        })
    }
}
