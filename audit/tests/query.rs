//! Every query filter, on sealed files (with the bulk-built indexes) and on unsealed ones
//! (scanning), checked against the same predicate applied to all records in memory.

mod common;

use std::path::Path;

use common::*;
use time::OffsetDateTime;
use time::macros::datetime;
use warden_audit::query::IpMatch;
use warden_audit::store::{AuditStore, list_day_files, seal_day_file};
use warden_audit::{AuditEvent, AuditFilter, AuditResult, Order, StoredRecord};

/// Removes what sealing built, as if the files were still being written.
fn unseal(dir: &Path) {
    for f in list_day_files(dir).unwrap() {
        let c = rusqlite::Connection::open(&f.path).unwrap();
        c.execute_batch(
            "DELETE FROM record_tables;
             DROP TABLE IF EXISTS records_fts;
             DROP INDEX IF EXISTS records_ip;
             DROP INDEX IF EXISTS records_program;
             DROP INDEX IF EXISTS records_kind;
             UPDATE meta SET value = '0' WHERE key IN ('sealed', 'full_text');",
        )
        .unwrap();
    }
}

fn seal_all(dir: &Path) {
    for f in list_day_files(dir).unwrap() {
        seal_day_file(&f.path, true).unwrap();
        let c = rusqlite::Connection::open(&f.path).unwrap();
        let flags: String = c
            .query_row(
                "SELECT group_concat(value, ',') FROM meta WHERE key IN ('sealed', 'full_text')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(flags, "1,1");
        assert!(
            !seal_day_file(&f.path, true).unwrap(),
            "sealing twice does nothing"
        );
    }
}

fn run(dir: &Path, filter: &AuditFilter) -> Vec<u64> {
    AuditStore::open(dir)
        .unwrap()
        .query(filter)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect()
}

fn touches(r: &StoredRecord, table: &str) -> bool {
    r.record.tables.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t == table || t.ends_with(&format!(".{table}"))
    })
}

fn contains(r: &StoredRecord, text: &str) -> bool {
    let text = text.to_lowercase();
    [&r.record.sql, &r.record.message]
        .into_iter()
        .flatten()
        .any(|s| s.to_lowercase().contains(&text))
}

type Case = (
    &'static str,
    AuditFilter,
    Box<dyn Fn(&StoredRecord) -> bool>,
);

fn cases() -> Vec<Case> {
    let f = AuditFilter::default;
    let from = datetime!(2025-03-01 12:00:05 UTC);
    let to = datetime!(2025-03-02 09:00:03 UTC);
    vec![
        (
            "user",
            AuditFilter {
                user: Some("bob".into()),
                ..f()
            },
            Box::new(|r| r.record.user == "bob"),
        ),
        (
            "ip",
            AuditFilter {
                client_ip: Some("10.1.0.4".parse().unwrap()),
                ..f()
            },
            Box::new(|r| r.record.client_ip.to_string() == "10.1.0.4"),
        ),
        (
            "cidr",
            AuditFilter {
                client_ip: Some("10.1.0.0/16".parse::<IpMatch>().unwrap()),
                ..f()
            },
            Box::new(|r| r.record.client_ip.to_string().starts_with("10.1.")),
        ),
        (
            "program",
            AuditFilter {
                program: Some("报表系统".into()),
                ..f()
            },
            Box::new(|r| r.record.program.as_deref() == Some("报表系统")),
        ),
        (
            "table",
            AuditFilter {
                table: Some("members".into()),
                ..f()
            },
            Box::new(|r| touches(r, "members")),
        ),
        (
            "qualified table, any case",
            AuditFilter {
                table: Some("PUBLIC.MEMBERS".into()),
                ..f()
            },
            Box::new(|r| touches(r, "public.members")),
        ),
        (
            "cjk table",
            AuditFilter {
                table: Some("参保人员".into()),
                ..f()
            },
            Box::new(|r| touches(r, "参保人员")),
        ),
        (
            "kind",
            AuditFilter {
                kind: Some("select".into()),
                ..f()
            },
            Box::new(|r| r.record.statement_kind.as_deref() == Some("select")),
        ),
        (
            "kind prefix",
            AuditFilter {
                kind: Some("ddl".into()),
                ..f()
            },
            Box::new(|r| {
                r.record
                    .statement_kind
                    .as_deref()
                    .is_some_and(|k| k.starts_with("ddl."))
            }),
        ),
        (
            "event",
            AuditFilter {
                event: Some(AuditEvent::SessionEnd),
                ..f()
            },
            Box::new(|r| r.record.event == AuditEvent::SessionEnd),
        ),
        (
            "result error",
            AuditFilter {
                result: Some(AuditResult::Error),
                ..f()
            },
            Box::new(|r| r.record.result == AuditResult::Error),
        ),
        (
            "result refused",
            AuditFilter {
                result: Some(AuditResult::Refused),
                ..f()
            },
            Box::new(|r| r.record.result == AuditResult::Refused),
        ),
        (
            "result ok",
            AuditFilter {
                result: Some(AuditResult::Ok),
                ..f()
            },
            Box::new(|r| r.record.result == AuditResult::Ok),
        ),
        (
            "session",
            AuditFilter {
                session_id: Some(103),
                ..f()
            },
            Box::new(|r| r.record.session_id == 103),
        ),
        (
            "text",
            AuditFilter {
                text: Some("id_card".into()),
                ..f()
            },
            Box::new(|r| contains(r, "id_card")),
        ),
        (
            "text any case",
            AuditFilter {
                text: Some("CALC".into()),
                ..f()
            },
            Box::new(|r| contains(r, "calc")),
        ),
        (
            "text in message",
            AuditFilter {
                text: Some("members_archive".into()),
                ..f()
            },
            Box::new(|r| contains(r, "members_archive")),
        ),
        (
            "cjk text",
            AuditFilter {
                text: Some("参保人".into()),
                ..f()
            },
            Box::new(|r| contains(r, "参保人")),
        ),
        (
            "short text",
            AuditFilter {
                text: Some("nt".into()),
                ..f()
            },
            Box::new(|r| contains(r, "nt")),
        ),
        (
            "wildcards are literal",
            AuditFilter {
                text: Some("%_".into()),
                ..f()
            },
            Box::new(|r| contains(r, "%_")),
        ),
        (
            "from",
            AuditFilter {
                from: Some(from),
                ..f()
            },
            Box::new(move |r| r.record.time >= from),
        ),
        (
            "to",
            AuditFilter {
                to: Some(to),
                ..f()
            },
            Box::new(move |r| r.record.time < to),
        ),
        (
            "range and user and kind",
            AuditFilter {
                from: Some(from),
                to: Some(to),
                user: Some("bob".into()),
                kind: Some("select".into()),
                ..f()
            },
            Box::new(move |r| {
                r.record.time >= from
                    && r.record.time < to
                    && r.record.user == "bob"
                    && r.record.statement_kind.as_deref() == Some("select")
            }),
        ),
        (
            "nothing",
            AuditFilter {
                user: Some("nobody".into()),
                ..f()
            },
            Box::new(|_| false),
        ),
    ]
}

#[tokio::test]
async fn every_filter_selects_exactly_its_records_sealed_or_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    three_day_store(&dir).await;
    let sealed = copy_store(&dir);
    seal_all(sealed.path());
    let unsealed = copy_store(&dir);
    unseal(unsealed.path());
    let records = all(&dir);
    assert_eq!(records.len(), 28);
    for (name, filter, keep) in cases() {
        let mut expected: Vec<(OffsetDateTime, u64)> = records
            .iter()
            .filter(|r| keep(r))
            .map(|r| (r.record.time, r.seq))
            .collect();
        expected.sort();
        let expected: Vec<u64> = expected.into_iter().map(|(_, s)| s).collect();
        assert_eq!(run(sealed.path(), &filter), expected, "{name}, sealed");
        assert_eq!(run(unsealed.path(), &filter), expected, "{name}, unsealed");
        if name != "nothing" && name != "wildcards are literal" {
            assert!(
                !expected.is_empty(),
                "{name}: the test data should match something"
            );
        }
    }
}

#[tokio::test]
async fn orders_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    three_day_store(&dir).await;
    let asc = run(&dir, &AuditFilter::default());
    let mut desc = run(
        &dir,
        &AuditFilter {
            order: Order::TimeDesc,
            ..Default::default()
        },
    );
    desc.reverse();
    assert_eq!(asc, desc);
    assert_eq!(
        run(
            &dir,
            &AuditFilter {
                order: Order::Sequence,
                ..Default::default()
            }
        ),
        (1..=28).collect::<Vec<_>>()
    );
    let first5 = run(
        &dir,
        &AuditFilter {
            limit: Some(5),
            ..Default::default()
        },
    );
    assert_eq!(first5, asc[..5]);
    let last3 = run(
        &dir,
        &AuditFilter {
            limit: Some(3),
            order: Order::TimeDesc,
            ..Default::default()
        },
    );
    assert_eq!(last3, asc[25..].iter().rev().copied().collect::<Vec<_>>());
}

/// A record stamped before midnight but written after it lands in the next day's file; time
/// order still interleaves it correctly, and a `from` on the earlier day still finds it.
#[tokio::test]
async fn late_records_are_merged_in_time_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (sink, writer, clock) = start(config(&dir), datetime!(2025-03-01 23:59:50 UTC));
    let at =
        |s: &str| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    sink.submit(record(1, at("2025-03-01T23:59:58Z")))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    clock.set(datetime!(2025-03-02 00:00:01 UTC));
    for (i, t) in [
        (2, "2025-03-01T23:59:57Z"),
        (3, "2025-03-01T23:59:59Z"),
        (4, "2025-03-02T00:00:00Z"),
    ] {
        sink.submit(record(i, at(t))).await.unwrap();
    }
    drop(sink);
    writer.shutdown().await.unwrap();
    assert_eq!(list_day_files(&dir).unwrap().len(), 2);
    assert_eq!(run(&dir, &AuditFilter::default()), [2, 1, 3, 4]);
    assert_eq!(
        run(
            &dir,
            &AuditFilter {
                order: Order::TimeDesc,
                ..Default::default()
            }
        ),
        [4, 3, 1, 2]
    );
    assert_eq!(
        run(
            &dir,
            &AuditFilter {
                order: Order::Sequence,
                ..Default::default()
            }
        ),
        [1, 2, 3, 4]
    );
    let before_midnight = AuditFilter {
        to: Some(at("2025-03-02T00:00:00Z")),
        ..Default::default()
    };
    assert_eq!(run(&dir, &before_midnight), [2, 1, 3]);
    let from_day2 = AuditFilter {
        from: Some(at("2025-03-02T00:00:00Z")),
        ..Default::default()
    };
    assert_eq!(run(&dir, &from_day2), [4]);
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let err = AuditStore::open("/nonexistent/warden/audit").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/warden/audit"),
        "{err}"
    );
}

#[tokio::test]
async fn a_damaged_row_is_an_error_naming_the_record_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    three_day_store(&dir).await;
    rusqlite::Connection::open(dir.join("audit-2025-03-02.db"))
        .unwrap()
        .execute("UPDATE records SET event = 'teleport' WHERE seq = 15", [])
        .unwrap();
    let results: Vec<_> = AuditStore::open(&dir)
        .unwrap()
        .query(&AuditFilter::default())
        .unwrap()
        .collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("the damaged record is reported");
    let text = err.to_string();
    assert!(
        text.contains("record 15") && text.contains("teleport"),
        "{text}"
    );
    assert!(
        results.last().unwrap().is_err(),
        "the iterator stops at the error"
    );
}
