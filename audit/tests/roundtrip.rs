//! Arbitrary records (any text, any optional field, extreme numbers) come back from the store
//! exactly as submitted, and verify recomputes the same hashes the writer stored.

mod common;

use std::net::IpAddr;

use common::*;
use proptest::prelude::*;
use time::OffsetDateTime;
use warden_audit::store::AuditStore;
use warden_audit::{AuditEvent, AuditRecord, AuditResult, MacAddr, Protocol, VerifyOptions};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[\\x00-\\x1f'\"%_\\\\;,=+@-]{0,12}",
        "[参保人员身份证号码]{0,10}",
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

prop_compose! {
    fn arb_record()(
        micros in -62_000_000_000_000_000i64..250_000_000_000_000_000i64,
        event in prop::sample::select(AuditEvent::ALL.to_vec()),
        result in prop::sample::select(AuditResult::ALL.to_vec()),
        mysql in any::<bool>(),
        session_id in any::<u64>(),
        ids in (text(), text(), text()),
        ip in any::<IpAddr>(),
        port in any::<u16>(),
        mac in proptest::option::of(any::<[u8; 6]>()),
        who in (opt_text(), opt_text(), opt_text(), opt_text()),
        what in (opt_text(), opt_text(), opt_text(), proptest::option::of(any::<u32>())),
        lists in (prop::collection::vec(text(), 0..4), prop::collection::vec(text(), 0..4), prop::collection::vec(text(), 0..3)),
        numbers in (proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>())),
        outcome in (opt_text(), opt_text(), opt_text(), opt_text()),
    ) -> AuditRecord {
        let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).unwrap();
        let protocol = if mysql { Protocol::Mysql } else { Protocol::Postgres };
        let mut r = AuditRecord::new(time, event, session_id, ids.0, protocol, ids.1, ids.2, ip, port);
        r.client_mac = mac.map(MacAddr);
        (r.program, r.client_host, r.os_user, r.tls_subject) = who;
        (r.statement_kind, r.fingerprint, r.sql, r.statement_count) = what;
        (r.tables, r.columns, r.datasets) = lists;
        (r.rows, r.result_bytes, r.latency_us) = numbers;
        r.result = result;
        (r.error_code, r.message, r.decision, r.rule) = outcome;
        r
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_record_round_trips_and_verifies(records in prop::collection::vec(arb_record(), 1..12)) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (sink, writer, _clock) = start(keyed_config(&dir), DAY1_NOON);
            for r in &records {
                sink.submit(r.clone()).await.unwrap();
            }
            drop(sink);
            writer.shutdown().await.unwrap();
        });
        let stored = all(&dir);
        prop_assert_eq!(stored.len(), records.len());
        for (s, r) in stored.iter().zip(&records) {
            prop_assert_eq!(&s.record, r);
            // JSON is lossless too.
            let back: warden_audit::StoredRecord =
                serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap();
            prop_assert_eq!(&back, s);
        }
        let key = warden_audit::CheckpointKey::from_hex(KEY_HEX, "test").unwrap();
        let report = AuditStore::open(&dir).unwrap()
            .verify(&VerifyOptions { key: Some(key), ..Default::default() })
            .unwrap();
        prop_assert!(report.is_intact(), "{:?}", report.problems);
    }
}
