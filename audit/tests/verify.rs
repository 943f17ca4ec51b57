//! Tampering with a store and checking that `verify` finds it, and names the right record.

mod common;

use std::path::Path;

use common::*;
use rusqlite::{Connection, params};
use warden_audit::chain::{self, ChainHash};
use warden_audit::store::AuditStore;
use warden_audit::verify::{ChainStart, Problem, ProblemKind};
use warden_audit::{CheckpointKey, VerifyOptions, VerifyReport};

const DAY1: &str = "audit-2025-03-01.db";
const DAY2: &str = "audit-2025-03-02.db";
const DAY4: &str = "audit-2025-03-04.db";

fn key() -> CheckpointKey {
    CheckpointKey::from_hex(KEY_HEX, "test").unwrap()
}

fn verify_with(dir: &Path, key: Option<CheckpointKey>) -> VerifyReport {
    AuditStore::open(dir)
        .unwrap()
        .verify(&VerifyOptions {
            key,
            ..Default::default()
        })
        .unwrap()
}

fn first(report: &VerifyReport) -> &Problem {
    report
        .first_problem()
        .unwrap_or_else(|| panic!("verify found nothing wrong: {report:?}"))
}

/// A fresh copy of the three-day store for one tampering.
async fn store() -> (tempfile::TempDir, tempfile::TempDir) {
    let original = tempfile::tempdir().unwrap();
    let dir = original.path().join("audit");
    three_day_store(&dir).await;
    let copy = copy_store(&dir);
    (original, copy)
}

fn open(dir: &Path, file: &str) -> Connection {
    Connection::open(dir.join(file)).unwrap()
}

#[tokio::test]
async fn an_untouched_store_is_intact_with_and_without_the_key() {
    let (_keep, dir) = store().await;
    for k in [None, Some(key())] {
        let report = verify_with(dir.path(), k);
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.records, 28);
        assert_eq!(report.files.len(), 3);
        assert_eq!(report.start, ChainStart::Genesis);
    }
    let report = verify_with(dir.path(), Some(key()));
    assert!(report.checkpoints_verified >= 4, "{report:?}");
    assert_eq!(report.checkpoints_verified, report.checkpoints);
}

#[tokio::test]
async fn a_modified_field_is_named() {
    let (_keep, dir) = store().await;
    open(dir.path(), DAY1)
        .execute("UPDATE records SET user_name = 'mallory' WHERE seq = 5", [])
        .unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!(
        (p.file.as_str(), p.seq, &p.kind),
        (DAY1, Some(5), &ProblemKind::HashMismatch)
    );
    assert!(p.time.is_some());
    assert_eq!(
        report.problems.len(),
        1,
        "one change, one problem: {:?}",
        report.problems
    );
    assert!(p.to_string().contains("record 5"), "{p}");
}

#[tokio::test]
async fn a_deleted_record_is_named() {
    let (_keep, dir) = store().await;
    open(dir.path(), DAY2)
        .execute("DELETE FROM records WHERE seq = 15", [])
        .unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!(p.seq, Some(15));
    assert_eq!(
        p.kind,
        ProblemKind::MissingRecords {
            first: 15,
            last: 15
        }
    );
    assert_eq!(p.file, DAY2);
}

#[tokio::test]
async fn records_deleted_at_the_end_of_a_day_are_found_by_the_next_day() {
    let (_keep, dir) = store().await;
    open(dir.path(), DAY1)
        .execute("DELETE FROM records WHERE seq >= 11", [])
        .unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!(
        p.kind,
        ProblemKind::MissingRecords {
            first: 11,
            last: 12
        }
    );
}

#[tokio::test]
async fn reordered_records_are_found() {
    let (_keep, dir) = store().await;
    let c = open(dir.path(), DAY2);
    c.execute_batch(
        "UPDATE records SET seq = -1 WHERE seq = 16;
         UPDATE records SET seq = 16 WHERE seq = 17;
         UPDATE records SET seq = 17 WHERE seq = -1;",
    )
    .unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!((p.seq, &p.kind), (Some(16), &ProblemKind::HashMismatch));
}

#[tokio::test]
async fn an_inserted_record_is_found() {
    let (_keep, dir) = store().await;
    let c = open(dir.path(), DAY2);
    // Make room at 14 by renumbering, then insert a copy of record 13 there.
    c.execute_batch(
        "UPDATE records SET seq = seq + 1000 WHERE seq >= 14;
         UPDATE records SET seq = seq - 999 WHERE seq >= 1014;
         INSERT INTO records SELECT 14, time_us, event, session_id, upstream, protocol, user_name,
             database_name, client_ip, client_port, client_mac, program, client_host, os_user,
             tls_subject, statement_kind, fingerprint, sql_text, statement_count, tables_json,
             columns_json, datasets_json, row_count, result_bytes, latency_us, result, error_code,
             message, decision, rule_name, hash FROM records WHERE seq = 13;",
    )
    .unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!((p.seq, &p.kind), (Some(14), &ProblemKind::HashMismatch));
}

#[tokio::test]
async fn a_deleted_day_file_in_the_middle_is_named() {
    let (_keep, dir) = store().await;
    std::fs::remove_file(dir.path().join(DAY2)).unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!(p.file, DAY4);
    assert_eq!(p.kind, ProblemKind::MissingFile { name: DAY2.into() });
}

#[tokio::test]
async fn removed_oldest_files_are_not_a_break_but_are_reported() {
    let (_keep, dir) = store().await;
    std::fs::remove_file(dir.path().join(DAY1)).unwrap();
    let report = verify_with(dir.path(), None);
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(
        report.start,
        ChainStart::After {
            file: DAY1.into(),
            present: false
        }
    );
}

#[tokio::test]
async fn a_tampered_link_between_days_is_found() {
    let (_keep, dir) = store().await;
    open(dir.path(), DAY4)
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'prev_hash'",
            [hex::encode([7u8; 32])],
        )
        .unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!(p.file, DAY4);
    assert!(matches!(p.kind, ProblemKind::BrokenLink { .. }), "{p}");
}

#[tokio::test]
async fn a_corrupt_or_removed_checkpoint_is_found() {
    let (_keep, dir) = store().await;
    let c = open(dir.path(), DAY2);
    let cps: Vec<i64> = c
        .prepare("SELECT seq FROM checkpoints ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(cps.len() >= 2, "day 2 has two batches: {cps:?}");
    c.execute(
        "UPDATE checkpoints SET mac = substr(mac, 1, 16) WHERE seq = ?1",
        [cps[0]],
    )
    .unwrap();
    let report = verify_with(dir.path(), Some(key()));
    let p = first(&report);
    assert_eq!(
        (p.seq, &p.kind),
        (Some(cps[0] as u64), &ProblemKind::CheckpointBadMac)
    );
    // Without the key the chain itself is still intact.
    assert!(verify_with(dir.path(), None).is_intact());

    c.execute("DELETE FROM checkpoints WHERE seq = ?1", [cps[0]])
        .unwrap();
    let report = verify_with(dir.path(), Some(key()));
    let p = first(&report);
    assert!(
        matches!(p.kind, ProblemKind::CheckpointsMissing { .. }),
        "{p}"
    );

    c.execute(
        "UPDATE checkpoints SET hash = x'00' WHERE seq = ?1",
        [cps[1]],
    )
    .unwrap();
    let report = verify_with(dir.path(), None);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::CheckpointMismatch),
        "{:?}",
        report.problems
    );
}

/// A rewriter who recomputes every hash fools the plain chain, but not the keyed checkpoints.
#[tokio::test]
async fn a_recomputed_chain_is_caught_by_the_checkpoints() {
    let (_keep, dir) = store().await;
    let records = all(dir.path());
    let c = open(dir.path(), DAY4);
    c.execute(
        "UPDATE records SET user_name = 'mallory' WHERE seq = 24",
        [],
    )
    .unwrap();
    let mut prev: ChainHash = hex::decode(&records[22].hash).unwrap().try_into().unwrap();
    let mut scratch = Vec::new();
    for s in &records[23..] {
        let mut r = s.record.clone();
        if s.seq == 24 {
            r.user = "mallory".into();
        }
        let h = chain::hash_record(&prev, s.seq, &r, &mut scratch);
        c.execute(
            "UPDATE records SET hash = ?1 WHERE seq = ?2",
            params![&h[..], s.seq as i64],
        )
        .unwrap();
        c.execute(
            "UPDATE checkpoints SET hash = ?1 WHERE seq = ?2",
            params![&h[..], s.seq as i64],
        )
        .unwrap();
        prev = h;
    }
    assert!(
        verify_with(dir.path(), None).is_intact(),
        "without the key a full rewrite is not detectable (documented)"
    );
    let report = verify_with(dir.path(), Some(key()));
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::CheckpointBadMac);
    assert_eq!(p.file, DAY4);
}

#[tokio::test]
async fn records_appended_after_the_last_checkpoint_are_reported_with_the_key() {
    let (_keep, dir) = store().await;
    let records = all(dir.path());
    let last = records.last().unwrap();
    let mut forged = last.record.clone();
    forged.sql = Some("SELECT 'nothing to see'".into());
    let prev: ChainHash = hex::decode(&last.hash).unwrap().try_into().unwrap();
    let h = chain::hash_record(&prev, 29, &forged, &mut Vec::new());
    let c = open(dir.path(), DAY4);
    c.execute(
        "INSERT INTO records SELECT 29, time_us, event, session_id, upstream, protocol, user_name,
             database_name, client_ip, client_port, client_mac, program, client_host, os_user,
             tls_subject, statement_kind, fingerprint, ?1, statement_count, tables_json,
             columns_json, datasets_json, row_count, result_bytes, latency_us, result, error_code,
             message, decision, rule_name, ?2 FROM records WHERE seq = 28",
        params![forged.sql, &h[..]],
    )
    .unwrap();
    assert!(verify_with(dir.path(), None).is_intact());
    let report = verify_with(dir.path(), Some(key()));
    let p = first(&report);
    assert_eq!(
        (p.seq, &p.kind),
        (
            Some(29),
            &ProblemKind::Uncovered {
                first: 29,
                last: 29
            }
        )
    );
}

#[tokio::test]
async fn checkpoints_made_with_another_key_are_reported_as_such() {
    let (_keep, dir) = store().await;
    let other = CheckpointKey::from_hex(&"ab".repeat(32), "test").unwrap();
    let report = verify_with(dir.path(), Some(other));
    assert!(matches!(
        first(&report).kind,
        ProblemKind::CheckpointOtherKey { .. }
    ));
}

#[tokio::test]
async fn unreadable_and_foreign_files_are_problems_not_panics() {
    let (_keep, dir) = store().await;
    std::fs::write(dir.path().join(DAY2), b"garbage, not a database").unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!(p.file, DAY2);
    assert!(matches!(p.kind, ProblemKind::Unreadable { .. }), "{p}");

    let (_keep, dir) = store().await;
    std::fs::remove_file(dir.path().join(DAY2)).unwrap();
    let foreign = Connection::open(dir.path().join(DAY2)).unwrap();
    foreign
        .execute_batch("CREATE TABLE records (x); INSERT INTO records VALUES (1);")
        .unwrap();
    drop(foreign);
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert!(p.to_string().contains("no meta table"), "{p}");

    let (_keep, dir) = store().await;
    open(dir.path(), DAY1)
        .execute(
            "UPDATE records SET tables_json = 'not json', client_ip = 'x' WHERE seq = 3",
            [],
        )
        .unwrap();
    let report = verify_with(dir.path(), None);
    let p = first(&report);
    assert_eq!(p.seq, Some(3));
    assert!(matches!(p.kind, ProblemKind::MalformedRecord { .. }), "{p}");
}

#[tokio::test]
async fn a_day_range_checks_only_those_files() {
    let (_keep, dir) = store().await;
    open(dir.path(), DAY1)
        .execute("UPDATE records SET user_name = 'mallory' WHERE seq = 5", [])
        .unwrap();
    let report = AuditStore::open(dir.path())
        .unwrap()
        .verify(&VerifyOptions {
            from: Some(time::macros::date!(2025 - 03 - 02)),
            ..Default::default()
        })
        .unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.files.len(), 2);
    assert_eq!(
        report.start,
        ChainStart::After {
            file: DAY1.into(),
            present: true
        }
    );
}
