//! Counters of the audit trail, for the proxy's Prometheus `/metrics`.
//!
//! Plain atomics updated by the sinks and the writer; [`AuditStats::snapshot`] reads them all
//! at once. Counters only grow; the proxy exports them as Prometheus counters, and the
//! `*_current`/`queue_*` values as gauges.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Live counters, shared by the sinks and the writer.
#[derive(Debug, Default)]
pub struct AuditStats {
    pub(crate) submitted: AtomicU64,
    pub(crate) waited: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) batch_write_us_total: AtomicU64,
    pub(crate) batch_write_us_last: AtomicU64,
    pub(crate) batch_write_us_max: AtomicU64,
    pub(crate) last_seq: AtomicU64,
    pub(crate) day_files_opened: AtomicU64,
    pub(crate) files_sealed: AtomicU64,
}

impl AuditStats {
    pub(crate) fn record_batch(&self, records: u64, micros: u64, last_seq: u64) {
        self.written.fetch_add(records, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.batch_write_us_total.fetch_add(micros, Relaxed);
        self.batch_write_us_last.store(micros, Relaxed);
        self.batch_write_us_max.fetch_max(micros, Relaxed);
        self.last_seq.store(last_seq, Relaxed);
    }

    /// All counters, read now. `queue_depth` and `queue_capacity` are filled by the sink.
    pub fn snapshot(&self) -> AuditStatsSnapshot {
        AuditStatsSnapshot {
            queue_depth: 0,
            queue_capacity: 0,
            submitted: self.submitted.load(Relaxed),
            waited: self.waited.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            written: self.written.load(Relaxed),
            batches: self.batches.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            batch_write_us_total: self.batch_write_us_total.load(Relaxed),
            batch_write_us_last: self.batch_write_us_last.load(Relaxed),
            batch_write_us_max: self.batch_write_us_max.load(Relaxed),
            last_seq: self.last_seq.load(Relaxed),
            day_files_opened: self.day_files_opened.load(Relaxed),
            files_sealed: self.files_sealed.load(Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct AuditStatsSnapshot {
    /// Records (and flush requests) in the queue now (gauge).
    pub queue_depth: u64,
    /// Size of the queue (gauge).
    pub queue_capacity: u64,
    /// Records accepted into the queue.
    pub submitted: u64,
    /// Records whose session had to wait because the queue was full (backpressure).
    pub waited: u64,
    /// Records not accepted (store failing, shut down, timed out); each was handed back.
    pub rejected: u64,
    /// Records committed to the store.
    pub written: u64,
    /// Transactions (batches) committed.
    pub batches: u64,
    /// Failed batch writes (each is retried; the records stay queued).
    pub write_errors: u64,
    /// Time spent writing batches, summed, in microseconds (divide by `batches` for the mean).
    pub batch_write_us_total: u64,
    /// Time the last batch took, in microseconds (gauge).
    pub batch_write_us_last: u64,
    /// Longest batch write so far, in microseconds (gauge).
    pub batch_write_us_max: u64,
    /// Sequence number of the last record written (gauge).
    pub last_seq: u64,
    /// Day files opened or created by the writer.
    pub day_files_opened: u64,
    /// Day files sealed (heavy indexes built after their day) by the background sealer.
    pub files_sealed: u64,
}
