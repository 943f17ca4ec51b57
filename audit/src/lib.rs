//! Warden's audit trail (DLP-6): one tamper-evident record per login, statement and session end.
//!
//! The proxy fills an [`AuditRecord`] per event and hands it to an [`AuditSink`]; a bounded
//! queue carries it to one writer thread that batches records into the embedded store (SQLite,
//! one file per UTC day, WAL), linking every record into an SM3 hash chain and, with a key,
//! closing each batch with an HMAC-SM3 checkpoint. A full queue makes sessions wait; a failing
//! store makes the sink refuse records and hand them back, so nothing is dropped silently.
//!
//! Auditors read the store through [`query`], [`verify`] and [`export`]; `warden audit` is a
//! thin command line over them. See the crate README for the file layout and the exact bytes
//! that are hashed.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use warden_audit::{AuditConfig, AuditEvent, AuditRecord, AuditTrail, Protocol};
//!
//! let (sink, writer) = AuditTrail::start(AuditConfig::with_dir("/var/lib/warden/audit"))?;
//! let record = AuditRecord::new(
//!     time::OffsetDateTime::now_utc(), AuditEvent::Login, 1, "main", Protocol::Postgres,
//!     "alice", "hr", "10.0.0.5".parse()?, 50123,
//! );
//! sink.submit(record).await?;
//! writer.shutdown().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
mod clock;
mod config;
mod error;
pub mod export;
pub mod query;
mod record;
mod sealer;
mod sink;
mod stats;
pub mod store;
pub mod timefmt;
pub mod verify;
mod writer;

pub use chain::CheckpointKey;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AuditConfig, Durability};
pub use error::{AuditError, RejectReason, Rejected};
pub use export::ExportFormat;
pub use query::{AuditFilter, Order};
pub use record::{
    AuditEvent, AuditRecord, AuditResult, MacAddr, Protocol, StoredRecord, UnknownName,
};
pub use sink::{AuditHealth, AuditSink};
pub use stats::{AuditStats, AuditStatsSnapshot};
pub use verify::{VerifyOptions, VerifyReport};
pub use writer::{AuditTrail, AuditWriterHandle, LOCK_FILE};
