//! Errors of the audit trail, worded for the operator or auditor who reads them.
//!
//! [`AuditError`] covers starting, writing, reading and exporting. [`Rejected`] is what a
//! session gets back when the trail cannot take its record: it hands the record back, so the
//! caller can still log it and refuse the statement instead of losing the record silently.

use std::fmt;
use std::path::PathBuf;

use crate::record::AuditRecord;

/// Something went wrong with the audit trail or its store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The `[audit]` configuration is unusable.
    #[error("audit configuration: {0}")]
    Config(String),

    /// The checkpoint key could not be loaded.
    #[error("audit checkpoint key from {origin}: {reason}")]
    Key {
        /// Where the key was looked for (a file path or an environment variable).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A file or directory of the store could not be read or written.
    #[error("audit store {path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error (in the message, so it is not repeated as a source).
        cause: std::io::Error,
    },

    /// SQLite reported an error on an audit file.
    #[error("audit file {path}: {cause}")]
    Sqlite {
        /// The audit file.
        path: PathBuf,
        /// SQLite's error (in the message, so it is not repeated as a source).
        cause: rusqlite::Error,
    },

    /// A file in the store directory is not a usable Warden audit file.
    #[error("{path} is not a usable Warden audit file: {reason}")]
    NotAuditFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// Another Warden process is writing to the same directory.
    #[error(
        "audit directory {0} is in use by another Warden process (it holds .writer.lock); \
         give each proxy its own audit directory"
    )]
    DirectoryInUse(PathBuf),

    /// The writer cannot write to the store (disk full, I/O error) and is retrying.
    #[error("the audit store is failing: {0}")]
    StoreFailing(String),

    /// The writer has stopped; nothing more can be written.
    #[error("the audit writer has stopped")]
    WriterStopped,

    /// At shutdown, records could not be written; they were logged as errors instead.
    #[error(
        "{count} audit records could not be written to the store ({cause}); each was logged \
         as an error with target warden_audit::unwritten"
    )]
    Unwritten {
        /// How many records.
        count: usize,
        /// The last store error.
        cause: String,
    },

    /// Writing an export failed.
    #[error("writing the export: {0}")]
    Export(String),
}

impl AuditError {
    pub(crate) fn sqlite(path: impl Into<PathBuf>, cause: rusqlite::Error) -> Self {
        AuditError::Sqlite {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            cause,
        }
    }
}

/// Why the trail did not take a record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The queue is full (`try_submit` only; `submit` waits instead).
    QueueFull,
    /// The queue stayed full for the whole timeout (`submit_timeout`).
    TimedOut,
    /// The store is failing; the text says how.
    StoreFailing(String),
    /// The trail has been shut down, or its writer stopped.
    ShutDown,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::QueueFull => f.write_str("the audit queue is full"),
            RejectReason::TimedOut => f.write_str("the audit queue stayed full until the timeout"),
            RejectReason::StoreFailing(e) => write!(f, "the audit store is failing: {e}"),
            RejectReason::ShutDown => f.write_str("the audit trail is shut down"),
        }
    }
}

/// A record the trail did not accept, handed back with the reason.
#[derive(Debug, thiserror::Error)]
#[error("audit record not accepted: {reason}")]
pub struct Rejected {
    /// The record, untouched.
    pub record: Box<AuditRecord>,
    /// Why.
    pub reason: RejectReason,
}
