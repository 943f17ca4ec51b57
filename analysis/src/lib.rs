//! Statement analysis for Warden.
//!
//! Every statement a client sends through Warden is analysed here: what kind of statement it is,
//! which tables and columns it reads and writes, a literal-free redacted form for the audit log,
//! and a fingerprint of its shape for the firewall's learning mode. Analyses are cached by the
//! statement's *template* (its text with literals replaced), so applications that send the same
//! statement with different values pay for one parse.
//!
//! ```
//! use warden_analysis::{Analyzer, Dialect};
//!
//! let analyzer = Analyzer::new(Dialect::PostgreSql, 10_000, 64 * 1024);
//! let a = analyzer.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
//! let b = analyzer.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 17;");
//! assert!(std::sync::Arc::ptr_eq(&a, &b));
//! assert_eq!(a.redacted_sql, "SELECT abalance FROM pgbench_accounts WHERE aid = ?;");
//! let select = &a.statements[0];
//! assert_eq!(select.kind.as_str(), "select");
//! assert_eq!(select.tables_read[0].to_string(), "pgbench_accounts");
//! ```
//!
//! See the crate's README for the facts produced, the caching invariant and sqlparser's limits.

#![forbid(unsafe_code)]

mod analyzer;
mod cache;
mod dialect;
mod facts;
mod fingerprint;
mod kind;
mod names;
mod redact;
mod template;
mod walker;

pub use analyzer::Analyzer;
pub use cache::CacheStats;
pub use dialect::Dialect;
pub use facts::{Analysis, ColumnName, ColumnRef, CopyEndpoint, Outcome, StatementFacts};
pub use fingerprint::Fingerprint;
pub use kind::{CopyDirection, CursorKind, DdlKind, StatementKind, TransactionKind};
pub use names::TableName;
