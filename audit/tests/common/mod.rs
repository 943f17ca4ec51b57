//! Helpers shared by the integration tests: realistic records, and trails on a manual clock.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use warden_audit::store::AuditStore;
use warden_audit::{
    AuditConfig, AuditEvent, AuditFilter, AuditRecord, AuditResult, AuditSink, AuditTrail,
    AuditWriterHandle, ManualClock, Order, Protocol, StoredRecord,
};

/// Noon on the first test day.
pub const DAY1_NOON: OffsetDateTime = datetime!(2025-03-01 12:00:00 UTC);

/// A 32-byte checkpoint key as hex.
pub const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A varied, realistic record; `i` decides every field, so tests can predict filters.
pub fn record(i: u64, time: OffsetDateTime) -> AuditRecord {
    let users = ["alice", "bob", "carol"];
    let programs = ["psql", "JDBC", "报表系统"];
    let mut r = AuditRecord::new(
        time,
        AuditEvent::Statement,
        100 + i / 4,
        "main",
        if i.is_multiple_of(5) {
            Protocol::Mysql
        } else {
            Protocol::Postgres
        },
        users[(i % 3) as usize],
        "hr",
        format!("10.{}.0.{}", i % 2, 1 + i % 7).parse().unwrap(),
        40000 + i as u16,
    );
    r.program = Some(programs[(i % 3) as usize].into());
    match i % 6 {
        0 => {
            r.event = AuditEvent::Login;
        }
        1 => {
            r.statement_kind = Some("select".into());
            r.sql = Some("SELECT id, id_card FROM public.Members WHERE name = ?".into());
            r.tables = vec!["public.Members".into()];
            r.columns = vec!["members.id".into(), "members.id_card".into()];
            r.rows = Some(i);
        }
        2 => {
            r.statement_kind = Some("insert".into());
            r.sql = Some("INSERT INTO payments (member_id, amount) VALUES (?, ?)".into());
            r.tables = vec!["payments".into()];
            r.rows = Some(1);
        }
        3 => {
            r.statement_kind = Some("ddl.create".into());
            r.sql = Some("CREATE TABLE 参保人员 (编号 int)".into());
            r.tables = vec!["参保人员".into()];
        }
        4 => {
            r.statement_kind = Some("select".into());
            r.sql = Some("=cmd|' /C calc'!A0 -- SELECT * FROM members JOIN payments".into());
            r.tables = vec!["members".into(), "payments".into()];
            r.result = AuditResult::Error;
            r.error_code = Some("42P01".into());
            r.message = Some("relation \"members_archive\" does not exist".into());
        }
        _ => {
            r.event = AuditEvent::SessionEnd;
        }
    }
    r.latency_us = Some(100 + i);
    if i.is_multiple_of(11) {
        r.result = AuditResult::Refused;
        r.decision = Some("refuse".into());
        r.rule = Some("no-dba-on-members".into());
    }
    r
}

/// A configuration for `dir` with a small batch and a short flush interval.
pub fn config(dir: &Path) -> AuditConfig {
    let mut c = AuditConfig::with_dir(dir);
    c.batch_size = 8;
    c.flush_interval_ms = 5;
    c
}

/// The same with the checkpoint key in a file beside the store.
pub fn keyed_config(dir: &Path) -> AuditConfig {
    let mut c = config(dir);
    let key = dir.with_extension("key");
    std::fs::write(&key, KEY_HEX).unwrap();
    c.checkpoint_key_file = Some(key);
    c
}

/// Starts a trail on a manual clock set to `now`.
pub fn start(
    config: AuditConfig,
    now: OffsetDateTime,
) -> (AuditSink, AuditWriterHandle, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now));
    let (sink, writer) = AuditTrail::start_with_clock(config, clock.clone()).unwrap();
    (sink, writer, clock)
}

/// Submits records `range` stamped one second apart from `start`, then waits until written.
pub async fn submit_range(sink: &AuditSink, range: std::ops::Range<u64>, start: OffsetDateTime) {
    for i in range.clone() {
        let t = start + Duration::seconds((i - range.start) as i64);
        sink.submit(record(i, t)).await.unwrap();
    }
    sink.flush().await.unwrap();
}

/// Every record in the store, in chain order.
pub fn all(dir: &Path) -> Vec<StoredRecord> {
    let filter = AuditFilter {
        order: Order::Sequence,
        ..AuditFilter::default()
    };
    AuditStore::open(dir)
        .unwrap()
        .query(&filter)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A store over three days (1, 2 and 4 March; none written on the 3rd) with a checkpoint key:
/// 12 records on the 1st, 10 on the 2nd, 6 on the 4th, in batches of up to 8.
pub async fn three_day_store(dir: &Path) {
    let (sink, writer, clock) = start(keyed_config(dir), DAY1_NOON);
    submit_range(&sink, 0..12, DAY1_NOON).await;
    clock.set(datetime!(2025-03-02 09:00:00 UTC));
    submit_range(&sink, 12..22, datetime!(2025-03-02 09:00:00 UTC)).await;
    clock.set(datetime!(2025-03-04 10:00:00 UTC));
    submit_range(&sink, 22..28, datetime!(2025-03-04 10:00:00 UTC)).await;
    drop(sink);
    writer.shutdown().await.unwrap();
}

/// Copies a store directory (day files only) to a new temporary directory.
pub fn copy_store(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".db") {
            std::fs::copy(entry.path(), to.path().join(name)).unwrap();
        }
    }
    to
}
