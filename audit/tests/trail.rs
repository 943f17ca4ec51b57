//! The writing side: queueing, backpressure, shutdown, failures, restarts and day rollover.

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use common::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use warden_audit::store::{AuditStore, list_day_files};
use warden_audit::{AuditError, AuditHealth, AuditTrail, Clock, RejectReason, VerifyOptions};

fn verify(dir: &std::path::Path) -> warden_audit::VerifyReport {
    AuditStore::open(dir)
        .unwrap()
        .verify(&VerifyOptions::default())
        .unwrap()
}

#[tokio::test]
async fn records_round_trip_through_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (sink, writer, _clock) = start(config(&dir), DAY1_NOON);
    let sent: Vec<_> = (0..20)
        .map(|i| record(i, DAY1_NOON + Duration::seconds(i as i64)))
        .collect();
    for r in &sent {
        sink.submit(r.clone()).await.unwrap();
    }
    sink.flush().await.unwrap();
    let stats = sink.stats();
    assert_eq!(stats.submitted, 20);
    assert_eq!(stats.written, 20);
    assert_eq!(stats.last_seq, 20);
    assert!(
        stats.batches >= 3,
        "batch size 8 means at least 3 batches: {stats:?}"
    );
    assert_eq!(stats.queue_depth, 0);
    drop(sink);
    writer.shutdown().await.unwrap();

    let stored = all(&dir);
    assert_eq!(stored.len(), 20);
    for (i, (s, r)) in stored.iter().zip(&sent).enumerate() {
        assert_eq!(s.seq, i as u64 + 1);
        assert_eq!(&s.record, r);
        assert_eq!(s.hash.len(), 64);
    }
    assert!(verify(&dir).is_intact());
}

/// A clock that takes its time: the writer reads it once per batch, so batches slow down.
struct SlowClock(StdDuration);

impl Clock for SlowClock {
    fn now_utc(&self) -> OffsetDateTime {
        std::thread::sleep(self.0);
        DAY1_NOON
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_sessions_wait_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = config(&dir);
    c.queue_capacity = 4;
    c.batch_size = 2;
    let (sink, writer) =
        AuditTrail::start_with_clock(c, Arc::new(SlowClock(StdDuration::from_millis(5)))).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                sink.submit(record(t * 10 + i, DAY1_NOON)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = sink.stats();
    assert_eq!(stats.submitted, 80);
    assert!(
        stats.waited > 0,
        "nobody waited on a 4-record queue: {stats:?}"
    );
    assert_eq!(stats.rejected, 0);
    assert!(stats.queue_depth <= 4);
    drop(sink);
    writer.shutdown().await.unwrap();
    let stored = all(&dir);
    assert_eq!(stored.len(), 80);
    let mut sessions: Vec<_> = stored.iter().map(|s| s.record.client_port).collect();
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), 80, "every record arrived exactly once");
    assert!(verify(&dir).is_intact());
}

#[tokio::test]
async fn try_submit_hands_the_record_back_when_full() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = config(&dir);
    c.queue_capacity = 1;
    let (sink, writer) =
        AuditTrail::start_with_clock(c, Arc::new(SlowClock(StdDuration::from_millis(50)))).unwrap();
    let mut refused = None;
    for i in 0..50 {
        if let Err(rejected) = sink.try_submit(record(i, DAY1_NOON)) {
            refused = Some((i, rejected));
            break;
        }
    }
    let (i, rejected) = refused.expect("a one-record queue fills up");
    assert_eq!(rejected.reason, RejectReason::QueueFull);
    assert_eq!(*rejected.record, record(i, DAY1_NOON));
    // The bounded wait hands the record back too, and counts as a wait.
    let mut timed_out = false;
    for j in 0..20 {
        if let Err(r) = sink
            .submit_timeout(record(100 + j, DAY1_NOON), StdDuration::from_millis(1))
            .await
        {
            assert_eq!(r.reason, RejectReason::TimedOut);
            timed_out = true;
            break;
        }
    }
    assert!(timed_out);
    assert!(sink.stats().waited >= 1);
    drop(sink);
    writer.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_writes_everything_queued_then_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut c = config(&dir);
    // Nothing would be written for a minute without the shutdown.
    c.batch_size = 10_000;
    c.flush_interval_ms = 60_000;
    let (sink, writer, _clock) = start(c, DAY1_NOON);
    for i in 0..500 {
        sink.submit(record(i, DAY1_NOON)).await.unwrap();
    }
    let late = sink.clone();
    let started = std::time::Instant::now();
    writer.shutdown().await.unwrap();
    assert!(started.elapsed() < StdDuration::from_secs(10));
    assert_eq!(all(&dir).len(), 500);
    assert_eq!(late.health(), AuditHealth::Stopped);
    let rejected = late.submit(record(999, DAY1_NOON)).await.unwrap_err();
    assert_eq!(rejected.reason, RejectReason::ShutDown);
    assert_eq!(
        rejected.record.client_port,
        record(999, DAY1_NOON).client_port
    );
    assert!(late.flush().await.is_err());
}

#[tokio::test]
async fn a_failing_store_refuses_records_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (sink, writer, clock) = start(config(&dir), DAY1_NOON);
    submit_range(&sink, 0..3, DAY1_NOON).await;
    // The next day's file cannot be created while a directory is in its way.
    let blocker = dir.join("audit-2025-03-02.db.creating");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), b"x").unwrap();
    clock.set(datetime!(2025-03-02 00:00:05 UTC));
    sink.submit(record(3, DAY1_NOON)).await.unwrap();
    let mut failing = false;
    for _ in 0..500 {
        if let AuditHealth::Failing { error, .. } = sink.health() {
            assert!(error.contains("audit-2025-03-02.db"), "{error}");
            failing = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    assert!(failing, "the health never reported the failure");
    let rejected = sink.submit(record(4, DAY1_NOON)).await.unwrap_err();
    assert!(matches!(rejected.reason, RejectReason::StoreFailing(_)));
    assert!(sink.stats().write_errors >= 1);

    std::fs::remove_dir_all(&blocker).unwrap();
    sink.flush().await.unwrap();
    assert!(sink.health().is_healthy());
    sink.submit(record(5, DAY1_NOON)).await.unwrap();
    drop(sink);
    writer.shutdown().await.unwrap();
    let ports: Vec<_> = all(&dir).iter().map(|s| s.record.client_port).collect();
    assert_eq!(ports, [40000, 40001, 40002, 40003, 40005]);
    assert!(verify(&dir).is_intact());
}

#[tokio::test]
async fn a_second_writer_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (sink, writer, _clock) = start(config(&dir), DAY1_NOON);
    let second = AuditTrail::start(config(&dir));
    assert!(
        matches!(second, Err(AuditError::DirectoryInUse(_))),
        "{second:?}"
    );
    drop(sink);
    writer.shutdown().await.unwrap();
    let (sink, writer) = AuditTrail::start(config(&dir)).unwrap();
    drop(sink);
    writer.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_continues_the_chain_and_its_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    for round in 0..3u64 {
        let (sink, writer, _clock) = start(keyed_config(&dir), DAY1_NOON);
        submit_range(&sink, round * 10..round * 10 + 10, DAY1_NOON).await;
        drop(sink);
        writer.shutdown().await.unwrap();
    }
    let stored = all(&dir);
    assert_eq!(
        stored.iter().map(|s| s.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    assert_eq!(list_day_files(&dir).unwrap().len(), 1);
    let key = warden_audit::CheckpointKey::from_hex(KEY_HEX, "test").unwrap();
    let report = AuditStore::open(&dir)
        .unwrap()
        .verify(&VerifyOptions {
            key: Some(key),
            ..Default::default()
        })
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert!(report.checkpoints_verified >= 6, "{report:?}");
}

#[tokio::test]
async fn midnight_starts_a_new_linked_day_file_and_seals_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (sink, writer, clock) = start(config(&dir), datetime!(2025-03-01 23:59:58 UTC));
    submit_range(&sink, 0..5, datetime!(2025-03-01 23:59:50 UTC)).await;
    clock.set(datetime!(2025-03-02 00:00:01 UTC));
    // Records stamped before midnight but written after it go to the new day's file.
    submit_range(&sink, 5..9, datetime!(2025-03-01 23:59:59 UTC)).await;
    clock.set(datetime!(2025-03-04 08:00:00 UTC));
    submit_range(&sink, 9..12, datetime!(2025-03-04 08:00:00 UTC)).await;
    for _ in 0..1000 {
        if sink.stats().files_sealed >= 2 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    assert_eq!(
        sink.stats().files_sealed,
        2,
        "both finished days are sealed"
    );
    drop(sink);
    writer.shutdown().await.unwrap();

    let names: Vec<_> = list_day_files(&dir)
        .unwrap()
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(
        names,
        [
            "audit-2025-03-01.db",
            "audit-2025-03-02.db",
            "audit-2025-03-04.db"
        ]
    );
    let report = verify(&dir);
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.records, 12);
    assert_eq!(report.start, warden_audit::verify::ChainStart::Genesis);
    let per_file: Vec<_> = report
        .files
        .iter()
        .map(|f| (f.first_seq, f.last_seq))
        .collect();
    assert_eq!(
        per_file,
        [(Some(1), Some(5)), (Some(6), Some(9)), (Some(10), Some(12))]
    );

    let conn = rusqlite::Connection::open(dir.join("audit-2025-03-04.db")).unwrap();
    let meta = |k: &str| -> String {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(meta("prev_file"), "audit-2025-03-02.db");
    assert_eq!(meta("first_seq"), "10");
    assert_eq!(meta("prev_hash"), all(&dir)[8].hash);
    assert_eq!(meta("sealed"), "0", "the day being written is not sealed");
    let sealed = rusqlite::Connection::open(dir.join("audit-2025-03-01.db")).unwrap();
    let (flag, text): (String, String) = sealed
        .query_row(
            "SELECT (SELECT value FROM meta WHERE key = 'sealed'), \
             (SELECT value FROM meta WHERE key = 'full_text')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((flag.as_str(), text.as_str()), ("1", "1"));
}

#[tokio::test]
async fn garbage_in_the_directory_stops_the_start_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("audit-2025-03-01.db"),
        b"this is not sqlite at all, not even close",
    )
    .unwrap();
    let err = AuditTrail::start_with_clock(
        config(&dir),
        Arc::new(warden_audit::ManualClock::new(DAY1_NOON)),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("audit-2025-03-01.db"), "{text}");
}

#[test]
fn bad_configuration_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(&tmp.path().join("audit"));
    c.checkpoint_key_file = Some(tmp.path().join("missing.key"));
    let err = AuditTrail::start(c).unwrap_err();
    assert!(err.to_string().contains("missing.key"), "{err}");
    let mut c = config(&tmp.path().join("audit"));
    c.batch_size = 0;
    assert!(matches!(AuditTrail::start(c), Err(AuditError::Config(_))));
}

/// Auditors read while warden writes: every verification of the live store, with the key, is
/// intact, and queries see a growing prefix of the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_query_while_the_writer_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (sink, writer, _clock) = start(keyed_config(&dir), DAY1_NOON);
    let writing = {
        let sink = sink.clone();
        tokio::spawn(async move {
            for i in 0..3000 {
                sink.submit(record(i, DAY1_NOON)).await.unwrap();
            }
            sink.flush().await.unwrap();
        })
    };
    let key = warden_audit::CheckpointKey::from_hex(KEY_HEX, "test").unwrap();
    let mut seen = 0;
    for _ in 0..20 {
        let store = AuditStore::open(&dir).unwrap();
        let report = store
            .verify(&VerifyOptions {
                key: Some(key.clone()),
                ..Default::default()
            })
            .unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
        let n = all(&dir).len();
        assert!(n >= seen);
        seen = n;
        tokio::time::sleep(StdDuration::from_millis(3)).await;
    }
    writing.await.unwrap();
    drop(sink);
    writer.shutdown().await.unwrap();
    assert_eq!(all(&dir).len(), 3000);
}

#[tokio::test]
async fn a_disabled_trail_accepts_records_and_keeps_none() {
    let sink = warden_audit::AuditSink::disabled();
    assert!(!sink.is_enabled());
    assert_eq!(sink.health(), AuditHealth::Healthy);
    sink.submit(record(1, DAY1_NOON)).await.unwrap();
    sink.try_submit(record(2, DAY1_NOON)).unwrap();
    sink.submit_timeout(record(3, DAY1_NOON), StdDuration::from_millis(1))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let stats = sink.stats();
    assert_eq!(stats.submitted, 3);
    assert_eq!(stats.written, 0);
    assert_eq!(stats.queue_capacity, 0);
    assert_eq!(stats.queue_depth, 0);
}
