//! The sessions' end of the audit trail: a cheap, cloneable handle that puts records into the
//! bounded queue the writer drains.
//!
//! The queue is a `tokio::sync::mpsc` channel: with room, `submit` is a lock-free push and does
//! not yield; when full, the session waits for room (backpressure, never a silent drop) and the
//! wait is counted. When the store is failing or the trail is shut down the record is handed
//! back in a [`Rejected`] so the proxy can refuse the statement (fail closed) and log the record.
//!
//! [`AuditSink::disabled`] is the sink of a proxy whose audit trail is switched off
//! (`[audit] enabled = false`, for measuring the relay alone): it accepts every record and
//! keeps none. The proxy says so loudly (a startup warning, `/readyz`, a metric).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc::error::{SendError, SendTimeoutError, TrySendError};
use tokio::sync::{mpsc, oneshot};

use crate::error::{AuditError, RejectReason, Rejected};
use crate::record::AuditRecord;
use crate::stats::AuditStatsSnapshot;
use crate::writer::{Item, Shared};

/// Whether the trail can take and keep records. The proxy reports it on `/readyz` and refuses
/// statements while it is not [`AuditHealth::Healthy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditHealth {
    /// Records are being written.
    Healthy,
    /// The last write failed; the writer is retrying and new records are rejected.
    Failing {
        /// The store's error.
        error: String,
        /// When the failure began.
        since: OffsetDateTime,
    },
    /// The trail was shut down, or its writer stopped.
    Stopped,
}

impl AuditHealth {
    /// `true` when records are being written.
    pub fn is_healthy(&self) -> bool {
        matches!(self, AuditHealth::Healthy)
    }
}

/// Where sessions send their audit records. Clone it freely: clones share one queue.
#[derive(Clone)]
pub struct AuditSink {
    /// The writer's queue; `None` for a disabled trail, which drops every record.
    tx: Option<mpsc::Sender<Item>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl AuditSink {
    pub(crate) fn new(tx: mpsc::Sender<Item>, shared: Arc<Shared>) -> Self {
        AuditSink {
            tx: Some(tx),
            shared,
        }
    }

    /// A sink for a switched-off audit trail: every record is accepted (and counted as
    /// submitted) and dropped; nothing is ever written. Only for measuring the relay without
    /// the trail; a proxy running with it records nothing (DLP-6 is not met).
    pub fn disabled() -> Self {
        AuditSink {
            tx: None,
            shared: Arc::new(Shared::new(1)),
        }
    }

    /// `false` for a [`AuditSink::disabled`] sink, which keeps no records.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `record`. Returns at once when the queue has room; otherwise waits until it has
    /// (and counts the wait). Fails, handing the record back, when the store is failing or the
    /// trail is shut down.
    ///
    /// Do not drop this future while it waits: the record would be lost with it. To bound the
    /// wait, use [`AuditSink::submit_timeout`], which hands the record back.
    pub async fn submit(&self, record: AuditRecord) -> Result<(), Rejected> {
        let record = self.check_accepting(record)?;
        let Some(tx) = &self.tx else {
            return self.accepted();
        };
        let item = match tx.try_send(Item::Record(record)) {
            Ok(()) => return self.accepted(),
            Err(TrySendError::Closed(item)) => {
                return Err(self.reject(item, self.closed_reason()));
            }
            Err(TrySendError::Full(item)) => item,
        };
        self.shared.stats.waited.fetch_add(1, Relaxed);
        match tx.send(item).await {
            Ok(()) => self.accepted(),
            Err(SendError(item)) => Err(self.reject(item, self.closed_reason())),
        }
    }

    /// Queues `record` if the queue has room now; never waits. A full queue hands the record
    /// back with [`RejectReason::QueueFull`] (follow up with [`AuditSink::submit`]).
    pub fn try_submit(&self, record: AuditRecord) -> Result<(), Rejected> {
        let record = self.check_accepting(record)?;
        let Some(tx) = &self.tx else {
            return self.accepted();
        };
        match tx.try_send(Item::Record(record)) {
            Ok(()) => self.accepted(),
            Err(TrySendError::Full(item)) => Err(Rejected {
                record: Box::new(item.into_record()),
                reason: RejectReason::QueueFull,
            }),
            Err(TrySendError::Closed(item)) => Err(self.reject(item, self.closed_reason())),
        }
    }

    /// Like [`AuditSink::submit`], but waits for room at most `timeout`, then hands the record
    /// back with [`RejectReason::TimedOut`].
    pub async fn submit_timeout(
        &self,
        record: AuditRecord,
        timeout: Duration,
    ) -> Result<(), Rejected> {
        let record = self.check_accepting(record)?;
        let Some(tx) = &self.tx else {
            return self.accepted();
        };
        let item = match tx.try_send(Item::Record(record)) {
            Ok(()) => return self.accepted(),
            Err(TrySendError::Closed(item)) => {
                return Err(self.reject(item, self.closed_reason()));
            }
            Err(TrySendError::Full(item)) => item,
        };
        self.shared.stats.waited.fetch_add(1, Relaxed);
        match tx.send_timeout(item, timeout).await {
            Ok(()) => self.accepted(),
            Err(SendTimeoutError::Timeout(item)) => Err(self.reject(item, RejectReason::TimedOut)),
            Err(SendTimeoutError::Closed(item)) => {
                let reason = self.closed_reason();
                Err(self.reject(item, reason))
            }
        }
    }

    /// Waits until every record submitted before this call is committed to the store.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let (ack, done) = oneshot::channel();
        tx.send(Item::Flush(ack))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        self.shared.wake.notify_one();
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AuditError::StoreFailing(e)),
            Err(_) => Err(AuditError::WriterStopped),
        }
    }

    /// Wakes a lingering writer once a full batch is waiting, so large bursts are written
    /// without waiting for the flush interval (and small ones without a wake-up per record).
    fn wake_if_batch_ready(&self) {
        let Some(tx) = &self.tx else { return };
        let queued = tx.max_capacity().saturating_sub(tx.capacity());
        if queued >= self.shared.batch_size {
            self.shared.wake.notify_one();
        }
    }

    /// Whether records are being written.
    pub fn health(&self) -> AuditHealth {
        self.shared.health()
    }

    /// The trail's counters now, with the queue's depth and capacity.
    pub fn stats(&self) -> AuditStatsSnapshot {
        let mut s = self.shared.stats.snapshot();
        if let Some(tx) = &self.tx {
            let cap = tx.max_capacity();
            s.queue_capacity = cap as u64;
            s.queue_depth = cap.saturating_sub(tx.capacity()) as u64;
        }
        s
    }

    fn accepted(&self) -> Result<(), Rejected> {
        self.shared.stats.submitted.fetch_add(1, Relaxed);
        self.wake_if_batch_ready();
        Ok(())
    }

    /// The record back if the trail accepts records, else the rejection.
    fn check_accepting(&self, record: AuditRecord) -> Result<AuditRecord, Rejected> {
        match self.shared.health() {
            AuditHealth::Healthy => Ok(record),
            AuditHealth::Failing { error, .. } => {
                Err(self.reject_record(record, RejectReason::StoreFailing(error)))
            }
            AuditHealth::Stopped => Err(self.reject_record(record, RejectReason::ShutDown)),
        }
    }

    fn closed_reason(&self) -> RejectReason {
        match self.shared.health() {
            AuditHealth::Failing { error, .. } => RejectReason::StoreFailing(error),
            _ => RejectReason::ShutDown,
        }
    }

    fn reject(&self, item: Item, reason: RejectReason) -> Rejected {
        self.reject_record(item.into_record(), reason)
    }

    fn reject_record(&self, record: AuditRecord, reason: RejectReason) -> Rejected {
        self.shared.stats.rejected.fetch_add(1, Relaxed);
        Rejected {
            record: Box::new(record),
            reason,
        }
    }
}
