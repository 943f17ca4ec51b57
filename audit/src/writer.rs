//! The writer: one OS thread that drains the queue into the day files in batches.
//!
//! SQLite is blocking, so the writer owns its own thread (with a small single-threaded tokio
//! runtime only to wait on the queue with a deadline). It takes up to `batch_size` records, or
//! whatever arrived within `flush_interval_ms` of the first, hashes them into the chain and
//! commits them in one transaction, then starts over. A failed write is retried with backoff;
//! meanwhile the sinks report the failure and reject new records (fail closed), and the queued
//! records wait. Shutdown stops new submissions, writes everything already queued, and closes.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::chain::CheckpointKey;
use crate::clock::{Clock, SystemClock};
use crate::config::AuditConfig;
use crate::error::AuditError;
use crate::record::AuditRecord;
use crate::sealer::Sealer;
use crate::sink::{AuditHealth, AuditSink};
use crate::stats::{AuditStats, AuditStatsSnapshot};
use crate::store::append::{AppendOptions, ChainTail, DayAppender, tail_of};
use crate::store::list_day_files;

/// Name of the lock file that keeps two writers out of one directory.
pub const LOCK_FILE: &str = ".writer.lock";

/// What travels through the queue.
// Records are nearly every item: boxing them would cost an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Item {
    Record(AuditRecord),
    /// Answer once everything before this item is committed.
    Flush(oneshot::Sender<Result<(), String>>),
}

impl Item {
    /// The record inside; only ever called on items the sink built from a record.
    pub(crate) fn into_record(self) -> AuditRecord {
        match self {
            Item::Record(r) => r,
            Item::Flush(_) => unreachable!("sinks only hand back the records they sent"),
        }
    }
}

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const STOPPED: u8 = 2;

/// State shared by the sinks, the writer and its handle.
pub(crate) struct Shared {
    pub stats: AuditStats,
    state: AtomicU8,
    failure: Mutex<Option<(String, OffsetDateTime)>>,
    shutdown: AtomicBool,
    /// Wakes the writer early: shutdown, a flush request, or a full batch queued.
    pub(crate) wake: Notify,
    /// Records per batch: once this many are queued, sinks wake the writer.
    pub(crate) batch_size: usize,
}

impl Shared {
    pub(crate) fn new(batch_size: usize) -> Self {
        Shared {
            stats: AuditStats::default(),
            state: AtomicU8::new(HEALTHY),
            failure: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            wake: Notify::new(),
            batch_size,
        }
    }

    pub fn health(&self) -> AuditHealth {
        match self.state.load(Acquire) {
            HEALTHY => AuditHealth::Healthy,
            FAILING => {
                let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                match &*failure {
                    Some((error, since)) => AuditHealth::Failing {
                        error: error.clone(),
                        since: *since,
                    },
                    None => AuditHealth::Healthy,
                }
            }
            _ => AuditHealth::Stopped,
        }
    }

    fn set_failing(&self, error: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let since = match &*failure {
            Some((_, since)) => *since,
            None => OffsetDateTime::now_utc(),
        };
        *failure = Some((error, since));
        if self.state.load(Relaxed) != STOPPED {
            self.state.store(FAILING, Release);
        }
    }

    fn set_healthy(&self) {
        if self.state.load(Relaxed) == FAILING {
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.state.store(HEALTHY, Release);
        }
    }

    fn set_stopped(&self) {
        self.state.store(STOPPED, Release);
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Acquire)
    }
}

/// Starts audit trails.
#[derive(Debug)]
pub struct AuditTrail;

impl AuditTrail {
    /// Opens (or creates) the store in `config.dir`, starts the writer thread, and returns the
    /// sink for sessions and the handle that shuts the writer down. Paths in `config` must
    /// already be resolved (see [`AuditConfig::resolve_paths`]).
    pub fn start(config: AuditConfig) -> Result<(AuditSink, AuditWriterHandle), AuditError> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`AuditTrail::start`], with the clock that decides which day file a batch goes to.
    pub fn start_with_clock(
        config: AuditConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(AuditSink, AuditWriterHandle), AuditError> {
        config.validate()?;
        let key = CheckpointKey::from_config(&config)?;
        std::fs::create_dir_all(&config.dir).map_err(|e| AuditError::io(&config.dir, e))?;
        let lock = lock_dir(&config.dir)?;
        let opts = AppendOptions {
            durability: config.durability,
        };
        let appender = open_current(&config.dir, clock.now_utc(), opts)?;
        let backlog: Vec<PathBuf> = list_day_files(&config.dir)?
            .into_iter()
            .map(|f| f.path)
            .filter(|p| p != appender.path())
            .collect();
        let shared = Arc::new(Shared::new(config.batch_size));
        let sealer = Sealer::start(config.full_text_index, backlog, shared.clone());
        shared.stats.day_files_opened.fetch_add(1, Relaxed);
        shared
            .stats
            .last_seq
            .store(appender.tail().last_seq, Relaxed);
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (done_tx, done_rx) = oneshot::channel();
        let writer = Writer {
            dir: config.dir.clone(),
            batch_size: config.batch_size,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            opts,
            key,
            clock,
            rx,
            current_file: appender.path().to_path_buf(),
            appender: Some(appender),
            sealer: Some(sealer),
            shared: shared.clone(),
            closing: false,
            gave_up: None,
            _lock: lock,
        };
        std::thread::Builder::new()
            .name("warden-audit-writer".into())
            .spawn(move || {
                let shared = writer.shared.clone();
                let guard = StopGuard(shared);
                let result = writer.run();
                drop(guard);
                let _ = done_tx.send(result);
            })
            .map_err(|e| AuditError::io(&config.dir, e))?;
        Ok((
            AuditSink::new(tx, shared.clone()),
            AuditWriterHandle {
                shared,
                done: done_rx,
            },
        ))
    }
}

/// Marks the trail stopped however the writer thread ends, panics included.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .set_failing("the audit writer stopped unexpectedly".into());
        }
        self.0.set_stopped();
    }
}

/// Controls the writer thread.
pub struct AuditWriterHandle {
    shared: Arc<Shared>,
    done: oneshot::Receiver<Result<(), AuditError>>,
}

impl std::fmt::Debug for AuditWriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriterHandle")
            .field("health", &self.shared.health())
            .finish_non_exhaustive()
    }
}

impl AuditWriterHandle {
    /// Stops accepting records, writes everything already queued, closes the store, and waits
    /// for the writer to finish. Sessions that submit afterwards get their record back
    /// ([`crate::RejectReason::ShutDown`]).
    pub async fn shutdown(self) -> Result<(), AuditError> {
        self.shared.shutdown.store(true, Release);
        self.shared.wake.notify_one();
        self.done.await.unwrap_or(Err(AuditError::WriterStopped))
    }

    /// [`AuditWriterHandle::shutdown`] for callers outside an async runtime.
    pub fn shutdown_blocking(self) -> Result<(), AuditError> {
        self.shared.shutdown.store(true, Release);
        self.shared.wake.notify_one();
        self.done
            .blocking_recv()
            .unwrap_or(Err(AuditError::WriterStopped))
    }

    /// Whether records are being written.
    pub fn health(&self) -> AuditHealth {
        self.shared.health()
    }

    /// The trail's counters (without the queue depth, which the sink reports).
    pub fn stats(&self) -> AuditStatsSnapshot {
        self.shared.stats.snapshot()
    }
}

fn lock_dir(dir: &Path) -> Result<std::fs::File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::DirectoryInUse(dir.into())),
        Err(std::fs::TryLockError::Error(e)) => Err(AuditError::io(&path, e)),
    }
}

/// Opens the file to append to at `now`: the newest day file when it is today's (or later,
/// if the clock went back), else a new file for today continuing the newest one's chain.
fn open_current(
    dir: &Path,
    now: OffsetDateTime,
    opts: AppendOptions,
) -> Result<DayAppender, AuditError> {
    let today = now.date();
    let files = list_day_files(dir)?;
    match files.last() {
        None => DayAppender::create(dir, today, &ChainTail::genesis(), opts, now),
        Some(newest) if newest.day >= today => DayAppender::open_existing(newest, opts),
        Some(newest) => {
            let tail = tail_of(newest)?;
            DayAppender::create(dir, today, &tail, opts, now)
        }
    }
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Write attempts made for a batch once shutdown has been requested, before giving up on it.
const ATTEMPTS_AT_SHUTDOWN: u32 = 3;

struct Writer {
    dir: PathBuf,
    batch_size: usize,
    flush_interval: Duration,
    opts: AppendOptions,
    key: Option<CheckpointKey>,
    clock: Arc<dyn Clock>,
    rx: mpsc::Receiver<Item>,
    appender: Option<DayAppender>,
    /// The file the writer appends to; when it changes, the old one is sealed.
    current_file: PathBuf,
    sealer: Option<Sealer>,
    shared: Arc<Shared>,
    /// Shutdown seen: the queue is closed and being drained.
    closing: bool,
    /// Set when writes were abandoned at shutdown: the error, and how many records it cost.
    gave_up: Option<(String, usize)>,
    _lock: std::fs::File,
}

impl Writer {
    fn run(mut self) -> Result<(), AuditError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| AuditError::io(&self.dir, e))?;
        let mut items = Vec::with_capacity(self.batch_size);
        loop {
            items.clear();
            let closed = rt.block_on(self.collect(&mut items));
            if !items.is_empty() {
                self.write_items(&rt, &mut items);
            }
            if closed {
                break;
            }
        }
        if let Some(appender) = self.appender.take()
            && let Err(e) = appender.close()
        {
            tracing::warn!(error = %e, "closing the audit day file");
        }
        if let Some(sealer) = self.sealer.take() {
            sealer.stop();
        }
        match self.gave_up {
            None => Ok(()),
            Some((cause, count)) => Err(AuditError::Unwritten { count, cause }),
        }
    }

    /// Fills `items` with the next batch. Returns `true` when the queue is closed and empty
    /// (after `items` is written the writer stops).
    async fn collect(&mut self, items: &mut Vec<Item>) -> bool {
        let limit = self.batch_size;
        if !self.closing {
            tokio::select! {
                biased;
                n = self.rx.recv_many(items, limit) => if n == 0 { return true },
                () = self.shared.wake.notified() => {}
            }
            self.notice_shutdown();
        }
        if !self.closing {
            // Linger for more records, up to the batch size or the flush interval. The queue is
            // not awaited record by record (each would wake this thread); sinks wake the writer
            // once a full batch is queued or a flush is requested.
            let deadline = tokio::time::Instant::now() + self.flush_interval;
            loop {
                while items.len() < limit {
                    match self.rx.try_recv() {
                        Ok(item) => items.push(item),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return true,
                    }
                }
                if items.len() >= limit || items.iter().any(|i| matches!(i, Item::Flush(_))) {
                    break;
                }
                tokio::select! {
                    biased;
                    () = self.shared.wake.notified() => {
                        if self.notice_shutdown() { break }
                    }
                    () = tokio::time::sleep_until(deadline) => {
                        while items.len() < limit {
                            match self.rx.try_recv() {
                                Ok(item) => items.push(item),
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => return true,
                            }
                        }
                        break;
                    }
                }
            }
            return false;
        }
        // Closing: the queue takes no more, drain what it holds.
        while items.len() < limit {
            if self.rx.recv_many(items, limit - items.len()).await == 0 {
                return true;
            }
        }
        false
    }

    /// Starts closing if shutdown was requested; returns whether it was.
    fn notice_shutdown(&mut self) -> bool {
        if self.shared.shutdown_requested() && !self.closing {
            self.closing = true;
            self.rx.close();
        }
        self.closing
    }

    fn write_items(&mut self, rt: &tokio::runtime::Runtime, items: &mut Vec<Item>) {
        let mut records = Vec::with_capacity(items.len());
        let mut acks = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Record(r) => records.push(r),
                Item::Flush(ack) => acks.push(ack),
            }
        }
        let result = self.write_with_retry(rt, &records);
        if let Err(e) = &result {
            self.abandon(&records, e);
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }

    /// Writes `records`, retrying until it works, or until shutdown makes it give up.
    fn write_with_retry(
        &mut self,
        rt: &tokio::runtime::Runtime,
        records: &[AuditRecord],
    ) -> Result<(), String> {
        if let Some((cause, _)) = &self.gave_up {
            return Err(cause.clone());
        }
        let mut backoff = FIRST_RETRY;
        let mut attempts_while_closing = 0;
        loop {
            let error = match self.try_write(records) {
                Ok(()) => {
                    self.shared.set_healthy();
                    return Ok(());
                }
                Err(e) => e.to_string(),
            };
            self.shared.stats.write_errors.fetch_add(1, Relaxed);
            self.shared.set_failing(error.clone());
            tracing::error!(
                error = %error,
                records = records.len(),
                retry_in_ms = backoff.as_millis() as u64,
                "audit batch not written; retrying (new audit records are refused meanwhile)"
            );
            self.notice_shutdown();
            if self.closing {
                attempts_while_closing += 1;
                if attempts_while_closing >= ATTEMPTS_AT_SHUTDOWN {
                    return Err(error);
                }
            }
            let wait = if self.closing { FIRST_RETRY } else { backoff };
            rt.block_on(async {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = self.shared.wake.notified() => {}
                }
            });
            backoff = (backoff * 2).min(MAX_RETRY);
            // Start the next attempt from what is on disk, not from a possibly broken handle.
            if let Some(appender) = self.appender.take() {
                let _ = appender.close();
            }
        }
    }

    /// One attempt at writing `records` into the right day file.
    fn try_write(&mut self, records: &[AuditRecord]) -> Result<(), AuditError> {
        let now = self.clock.now_utc();
        let started = Instant::now();
        let expected = match &self.appender {
            Some(a) => a.tail().clone(),
            None => {
                // Reopening after a failure: the batch may have committed before the error
                // was reported (e.g. a failed fsync after the write), so look before writing.
                let reopened = open_current(&self.dir, now, self.opts)?;
                self.shared.stats.day_files_opened.fetch_add(1, Relaxed);
                let tail = reopened.tail().clone();
                let before = self.shared.stats.last_seq.load(Relaxed);
                self.appender = Some(reopened);
                if tail.last_seq == before + records.len() as u64 {
                    self.note_written(records.len(), started, tail.last_seq);
                    self.note_current_file();
                    return Ok(());
                }
                if tail.last_seq != before {
                    return Err(AuditError::StoreFailing(format!(
                        "the store ends at record {} but the writer last wrote {before}; \
                         another process changed it",
                        tail.last_seq
                    )));
                }
                tail
            }
        };
        let Some(appender) = self.appender.as_mut() else {
            return Err(AuditError::WriterStopped);
        };
        if now.date() > appender.day() {
            // Midnight (UTC) passed: start the next day's file, linked to this one.
            let next = DayAppender::create(&self.dir, now.date(), &expected, self.opts, now)?;
            self.shared.stats.day_files_opened.fetch_add(1, Relaxed);
            if let Some(old) = self.appender.replace(next)
                && let Err(e) = old.close()
            {
                tracing::warn!(error = %e, "closing the previous audit day file");
            }
        }
        let Some(appender) = self.appender.as_mut() else {
            return Err(AuditError::WriterStopped);
        };
        appender.append_batch(records, self.key.as_ref(), now)?;
        let last = appender.tail().last_seq;
        self.note_written(records.len(), started, last);
        self.note_current_file();
        Ok(())
    }

    /// Hands the previous file to the sealer when the writer has moved to a new one.
    fn note_current_file(&mut self) {
        let Some(appender) = &self.appender else {
            return;
        };
        if appender.path() != self.current_file {
            let old = std::mem::replace(&mut self.current_file, appender.path().to_path_buf());
            if let Some(sealer) = &self.sealer {
                sealer.seal(old);
            }
        }
    }

    fn note_written(&self, count: usize, started: Instant, last_seq: u64) {
        let micros = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        self.shared
            .stats
            .record_batch(count as u64, micros, last_seq);
    }

    /// Shutdown could not write `records`: log each, so none disappears without a trace.
    fn abandon(&mut self, records: &[AuditRecord], error: &str) {
        for r in records {
            let json = serde_json::to_string(r).unwrap_or_else(|e| format!("{r:?} ({e})"));
            tracing::error!(target: "warden_audit::unwritten", record = %json, "audit record not written");
        }
        let count = self.gave_up.as_ref().map_or(0, |(_, n)| *n) + records.len();
        self.gave_up = Some((error.to_owned(), count));
    }
}
