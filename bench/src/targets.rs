//! The reference targets of issue 7, evaluated against the rows: each is a pass, a fail, or
//! says why it could not be judged (a feature not built, a workload not run).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::catalog::ConfigId;
use crate::report::{Row, Status};

/// The result of one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Cannot be judged: the reason.
    Open(String),
}

#[derive(Debug, Clone)]
pub struct TargetResult {
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
}

/// Idle-session memory budget per proxy session, KiB.
pub const IDLE_SESSION_KIB: f64 = 64.0;
/// The workload of the encrypted-lookup target, and its minimum ratio to direct.
pub const ENC_LOOKUP: &str = "enc-lookup";
pub const ENC_LOOKUP_RATIO: f64 = 0.85;

fn judge(ok: bool) -> Verdict {
    if ok { Verdict::Pass } else { Verdict::Fail }
}

fn find<'a>(rows: &'a [Row], workload: &str, config: ConfigId) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.config_id == config)
}

/// Evaluates every target.
pub fn evaluate(rows: &[Row]) -> Vec<TargetResult> {
    let mut out = Vec::new();
    // Throughput ratios: the pgbench workloads with at least 8 clients that the passthrough
    // and audit configurations run (not the encrypted ones).
    let mut throughput: Vec<&str> = rows
        .iter()
        .filter(|r| r.kind == "pgbench" && r.clients >= 8)
        .filter(|r| r.config_id == ConfigId::Passthrough)
        .filter(|r| !matches!(r.status, Status::NotApplicable(_)))
        .map(|r| r.workload)
        .collect();
    throughput.dedup();
    let ratio_target = |out: &mut Vec<TargetResult>,
                        workload: &str,
                        config: ConfigId,
                        against: ConfigId,
                        min: f64,
                        label: &str| {
        let target = format!("{label} ({workload})");
        let (Some(r), Some(base)) = (find(rows, workload, config), find(rows, workload, against))
        else {
            out.push(TargetResult {
                target,
                measured: "-".into(),
                verdict: Verdict::Open("not run".into()),
            });
            return;
        };
        match (r.tps, base.tps) {
            (Some(t), Some(b)) if b > 0.0 => out.push(TargetResult {
                target,
                measured: format!("{:.3}x ({t:.0} / {b:.0} tps)", t / b),
                verdict: judge(t / b >= min),
            }),
            _ => out.push(TargetResult {
                target,
                measured: "-".into(),
                verdict: Verdict::Open(
                    status_reason(r)
                        .or(status_reason(base))
                        .unwrap_or_else(|| "no throughput".into()),
                ),
            }),
        }
    };
    for w in &throughput {
        ratio_target(
            &mut out,
            w,
            ConfigId::Passthrough,
            ConfigId::Direct,
            0.95,
            "passthrough >= 0.95x direct",
        );
        ratio_target(
            &mut out,
            w,
            ConfigId::Passthrough,
            ConfigId::PgBouncer,
            1.0,
            "passthrough >= 1.0x PgBouncer",
        );
        ratio_target(
            &mut out,
            w,
            ConfigId::Audit,
            ConfigId::Direct,
            0.90,
            "audit on >= 0.90x direct",
        );
    }
    // Encrypted point lookups through warden-enc against the same lookups on the plaintext
    // copy, queried directly, in the same run.
    ratio_target(
        &mut out,
        ENC_LOOKUP,
        ConfigId::Encryption,
        ConfigId::Direct,
        ENC_LOOKUP_RATIO,
        "encrypted point lookups >= 0.85x plaintext direct",
    );
    // 10,000 sessions within the idle-memory budget.
    for config in [ConfigId::Passthrough, ConfigId::Audit] {
        let r = find(rows, "pg-sessions-10000", config);
        let name = r.map(|r| r.config).unwrap_or("warden");
        let target =
            format!("10,000 sessions held, <= {IDLE_SESSION_KIB} KiB per idle session ({name})");
        match r {
            Some(r) if r.status == Status::Measured => {
                let held = r.sessions.unwrap_or(0);
                let kib = r.idle_session_kib;
                let verdict = match kib {
                    _ if held < 10_000 => Verdict::Open(format!(
                        "only {held} sessions held: {}",
                        if r.note
                            .as_deref()
                            .is_some_and(|n| n.contains("RLIMIT_NOFILE"))
                        {
                            "descriptor limit, see the row's note"
                        } else {
                            "--sessions-scale"
                        }
                    )),
                    Some(k) => judge(k <= IDLE_SESSION_KIB),
                    None => Verdict::Open("no memory figures".into()),
                };
                out.push(TargetResult {
                    target,
                    measured: format!(
                        "{held} sessions, {} KiB/session",
                        kib.map(|k| format!("{k:.1}")).unwrap_or_else(|| "-".into())
                    ),
                    verdict,
                });
            }
            Some(r) => out.push(TargetResult {
                target,
                measured: "-".into(),
                verdict: Verdict::Open(status_reason(r).unwrap_or_default()),
            }),
            None => out.push(TargetResult {
                target,
                measured: "-".into(),
                verdict: Verdict::Open("not run".into()),
            }),
        }
    }
    // Audit records = statements, wherever warden audited.
    let audited: Vec<&Row> = rows.iter().filter(|r| r.audit.is_some()).collect();
    if audited.is_empty() {
        out.push(TargetResult {
            target: "audit records = statements".into(),
            measured: "-".into(),
            verdict: Verdict::Open("no audited run".into()),
        });
    }
    for r in audited {
        let (records, statements) = r.audit.unwrap_or_default();
        out.push(TargetResult {
            target: format!("audit records = statements ({}, {})", r.workload, r.config),
            measured: format!("{records} / {statements}"),
            verdict: judge(records == statements),
        });
    }
    out
}

fn status_reason(r: &Row) -> Option<String> {
    match &r.status {
        Status::Measured => None,
        Status::NotAvailable(w) => Some(format!("not available: {w}")),
        Status::NotApplicable(w) => Some(format!("not applicable: {w}")),
        Status::NotMeasured(w) => Some(format!("not measured: {w}")),
        Status::Failed(w) => Some(format!("failed: {}", w.lines().next().unwrap_or(""))),
    }
}

/// The targets as lines for the terminal.
pub fn table(results: &[TargetResult]) -> String {
    let mut t = String::new();
    for r in results {
        let verdict = match &r.verdict {
            Verdict::Pass => "PASS".to_string(),
            Verdict::Fail => "FAIL".to_string(),
            Verdict::Open(why) => format!("n/a  ({why})"),
        };
        let _ = writeln!(t, "  {:<62} {:<32} {verdict}", r.target, r.measured);
    }
    t
}

pub fn json(results: &[TargetResult]) -> Value {
    Value::Array(
        results
            .iter()
            .map(|r| {
                let (verdict, reason) = match &r.verdict {
                    Verdict::Pass => ("pass", None),
                    Verdict::Fail => ("fail", None),
                    Verdict::Open(w) => ("not_judged", Some(w.clone())),
                };
                json!({"target": r.target, "measured": r.measured, "verdict": verdict, "reason": reason})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Percentiles;

    fn row(workload: &'static str, config: ConfigId, name: &'static str, tps: f64) -> Row {
        Row {
            workload,
            config: name,
            config_id: config,
            kind: if workload.starts_with("pg-sessions") {
                "sessions"
            } else {
                "pgbench"
            },
            clients: 8,
            status: Status::Measured,
            repetitions: 3,
            tps: Some(tps),
            ratio_to_direct: None,
            latency_us: Some(Percentiles {
                p50: 1.0,
                p99: 2.0,
                p999: 3.0,
                samples: 3,
            }),
            cpu_s_per_1k: None,
            rss_mib: None,
            sessions: None,
            idle_session_kib: None,
            audit: None,
            statements: 100,
            failed: 0,
            seconds: 1.0,
            note: None,
        }
    }

    #[test]
    fn ratios_pass_and_fail_at_their_thresholds() {
        let mut audit = row("pg-select-simple", ConfigId::Audit, "warden-audit", 900.0);
        audit.audit = Some((100, 100));
        let rows = vec![
            row("pg-select-simple", ConfigId::Direct, "direct", 1000.0),
            row("pg-select-simple", ConfigId::PgBouncer, "pgbouncer", 960.0),
            row(
                "pg-select-simple",
                ConfigId::Passthrough,
                "warden-pass",
                950.0,
            ),
            audit,
        ];
        let results = evaluate(&rows);
        let verdict = |prefix: &str| {
            results
                .iter()
                .find(|r| r.target.starts_with(prefix))
                .map(|r| r.verdict.clone())
                .unwrap()
        };
        assert_eq!(verdict("passthrough >= 0.95x direct"), Verdict::Pass);
        assert_eq!(verdict("passthrough >= 1.0x PgBouncer"), Verdict::Fail);
        assert_eq!(verdict("audit on >= 0.90x direct"), Verdict::Pass);
        assert_eq!(verdict("audit records = statements"), Verdict::Pass);
        assert!(matches!(
            verdict("encrypted point lookups"),
            Verdict::Open(_)
        ));
        assert!(matches!(verdict("10,000 sessions"), Verdict::Open(_)));
    }

    #[test]
    fn encrypted_lookups_are_judged_against_the_plaintext_copy_only() {
        let mut rows = vec![
            row("enc-lookup", ConfigId::Direct, "direct", 1000.0),
            row("enc-lookup", ConfigId::Encryption, "warden-enc", 860.0),
            row("enc-range", ConfigId::Direct, "direct", 1000.0),
            row("enc-range", ConfigId::Encryption, "warden-enc", 100.0),
        ];
        let mut pass = row("enc-lookup", ConfigId::Passthrough, "warden-pass", 0.0);
        pass.status = Status::NotApplicable("reads the encrypted table".into());
        pass.tps = None;
        rows.push(pass);
        rows[1].audit = Some((5, 5));
        let results = evaluate(&rows);
        let enc: Vec<_> = results
            .iter()
            .filter(|r| r.target.contains("encrypted"))
            .collect();
        assert_eq!(enc.len(), 1);
        assert_eq!(enc[0].verdict, Verdict::Pass);
        assert!(enc[0].target.ends_with("(enc-lookup)"), "{}", enc[0].target);
        assert_eq!(enc[0].measured, "0.860x (860 / 1000 tps)");
        // Not applicable to passthrough: no passthrough or audit target for it.
        assert!(!results.iter().any(|r| r.target.starts_with("passthrough")));
        assert!(
            results
                .iter()
                .any(|r| r.target == "audit records = statements (enc-lookup, warden-enc)")
        );
        rows[1].tps = Some(840.0);
        let fail = evaluate(&rows);
        assert_eq!(
            fail.iter()
                .find(|r| r.target.contains("encrypted"))
                .unwrap()
                .verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn idle_memory_and_unavailable_features() {
        let mut sessions = row("pg-sessions-10000", ConfigId::Audit, "warden-audit", 100.0);
        sessions.sessions = Some(10_000);
        sessions.idle_session_kib = Some(70.0);
        let mut enc = row("enc-lookup", ConfigId::Encryption, "warden-enc", 0.0);
        enc.status = Status::Failed("warm-up failed: warden-enc was not set up".into());
        enc.tps = None;
        let direct = row("enc-lookup", ConfigId::Direct, "direct", 1000.0);
        let results = evaluate(&[sessions.clone(), enc, direct]);
        let by = |p: &str| results.iter().find(|r| r.target.contains(p)).unwrap();
        assert_eq!(by("(warden-audit)").verdict, Verdict::Fail);
        assert_eq!(
            by("encrypted").verdict,
            Verdict::Open("failed: warm-up failed: warden-enc was not set up".into())
        );
        sessions.sessions = Some(9_000);
        let scaled = evaluate(&[sessions]);
        assert!(matches!(
            scaled
                .iter()
                .find(|r| r.target.contains("(warden-audit)"))
                .unwrap()
                .verdict,
            Verdict::Open(_)
        ));
    }
}
