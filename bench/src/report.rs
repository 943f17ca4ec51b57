//! From samples to what the operator reads: one row per (workload, configuration) with the
//! median TPS of the repetitions, its ratio to the direct connection, latency percentiles of
//! every transaction of every repetition, the proxy's CPU per 1,000 statements, its memory,
//! and the audit records it wrote against the statements the clients ran. Rendered as a
//! terminal table and as JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::catalog::{ConfigId, Driver};
use crate::run::{Cell, Outcome};
use crate::stats::{Percentiles, median, percentiles, ratio};

/// Whether a row has numbers, and if not, why.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Measured,
    NotAvailable(String),
    /// The workload does not run on this configuration (by design, not a failure).
    NotApplicable(String),
    NotMeasured(String),
    Failed(String),
}

/// One (workload, configuration) result.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: &'static str,
    pub config: &'static str,
    pub config_id: ConfigId,
    /// `pgbench`, `copy`, `storm`, `sessions` or `none`.
    pub kind: &'static str,
    pub clients: u32,
    pub status: Status,
    pub repetitions: usize,
    pub tps: Option<f64>,
    /// `tps` / the direct connection's `tps` on the same workload.
    pub ratio_to_direct: Option<f64>,
    pub latency_us: Option<Percentiles>,
    /// Proxy CPU seconds per 1,000 statements (over every repetition).
    pub cpu_s_per_1k: Option<f64>,
    /// Largest proxy RSS seen after a run, MiB.
    pub rss_mib: Option<f64>,
    /// Many-sessions workloads: sessions held, and proxy KiB per idle session (median).
    pub sessions: Option<u64>,
    pub idle_session_kib: Option<f64>,
    /// Warden with audit: (statement records written, statements run), over every repetition.
    pub audit: Option<(u64, u64)>,
    pub statements: u64,
    pub failed: u64,
    /// Seconds measured, over every repetition.
    pub seconds: f64,
    pub note: Option<String>,
}

fn kind(driver: Driver) -> &'static str {
    match driver {
        Driver::Pgbench { .. } => "pgbench",
        Driver::Copy { .. } => "copy",
        Driver::ConnectionStorm { .. } => "storm",
        Driver::Sessions { .. } => "sessions",
        Driver::Unavailable => "none",
    }
}

/// Aggregates the cells into rows (same order), with ratios to each workload's direct row.
pub fn rows(cells: &[Cell]) -> Vec<Row> {
    let mut rows: Vec<Row> = cells.iter().map(row).collect();
    let direct: Vec<(&'static str, f64)> = rows
        .iter()
        .filter(|r| r.config_id == ConfigId::Direct)
        .filter_map(|r| Some((r.workload, r.tps?)))
        .collect();
    for r in &mut rows {
        let base = direct.iter().find(|(w, _)| *w == r.workload).map(|d| d.1);
        r.ratio_to_direct = r.tps.zip(base).and_then(|(t, d)| ratio(t, d));
    }
    rows
}

fn row(cell: &Cell) -> Row {
    let mut row = Row {
        workload: cell.workload.name,
        config: cell.config.name,
        config_id: cell.config.id,
        kind: kind(cell.workload.driver),
        clients: cell.workload.clients(),
        status: Status::Measured,
        repetitions: 0,
        tps: None,
        ratio_to_direct: None,
        latency_us: None,
        cpu_s_per_1k: None,
        rss_mib: None,
        sessions: None,
        idle_session_kib: None,
        audit: None,
        statements: 0,
        failed: 0,
        seconds: 0.0,
        note: cell.note.clone(),
    };
    let samples = match &cell.outcome {
        Outcome::Measured(s) => s,
        Outcome::NotAvailable(why) => {
            row.status = Status::NotAvailable(why.clone());
            return row;
        }
        Outcome::NotApplicable(why) => {
            row.status = Status::NotApplicable(why.clone());
            return row;
        }
        Outcome::NotMeasured(why) => {
            row.status = Status::NotMeasured(why.clone());
            return row;
        }
        Outcome::Failed(why) => {
            row.status = Status::Failed(why.clone());
            return row;
        }
    };
    if samples.is_empty() {
        row.status = Status::Failed("no repetition ran".into());
        return row;
    }
    row.repetitions = samples.len();
    row.tps = median(&samples.iter().map(|s| s.tps).collect::<Vec<_>>());
    row.latency_us = percentiles(
        samples
            .iter()
            .flat_map(|s| s.latencies_us.iter().copied())
            .collect(),
    );
    row.statements = samples.iter().map(|s| s.statements).sum();
    row.failed = samples.iter().map(|s| s.failed).sum();
    row.seconds = samples.iter().map(|s| s.elapsed.as_secs_f64()).sum();
    let cpu: Option<f64> = samples
        .iter()
        .map(|s| s.proxy_cpu.map(|d| d.as_secs_f64()))
        .sum();
    row.cpu_s_per_1k = cpu.and_then(|c| ratio(c * 1000.0, row.statements as f64));
    row.rss_mib = samples
        .iter()
        .filter_map(|s| s.proxy_rss_kib)
        .max()
        .map(|k| k as f64 / 1024.0);
    row.sessions = samples.iter().find_map(|s| s.sessions);
    row.idle_session_kib = median(
        &samples
            .iter()
            .filter_map(|s| s.idle_session_kib())
            .collect::<Vec<_>>(),
    );
    let records: Option<u64> = samples.iter().map(|s| s.audit_records).sum();
    row.audit = records.map(|r| (r, row.statements));
    row
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

/// The terminal table.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<19} {:<14} {:>4} {:>9} {:>6} {:>8} {:>8} {:>9} {:>8} {:>7} {:>8} {:>15}",
        "workload",
        "config",
        "cli",
        "tps",
        "ratio",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "CPU s/1k",
        "RSS MiB",
        "KiB/sess",
        "audit rec/stmts"
    );
    let mut last = "";
    for r in rows {
        if r.workload != last && !last.is_empty() {
            t.push('\n');
        }
        last = r.workload;
        match &r.status {
            Status::Measured => {
                let ms = |f: fn(&Percentiles) -> f64| r.latency_us.as_ref().map(|p| f(p) / 1000.0);
                let _ = writeln!(
                    t,
                    "{:<19} {:<14} {:>4} {:>9} {:>6} {:>8} {:>8} {:>9} {:>8} {:>7} {:>8} {:>15}",
                    r.workload,
                    r.config,
                    r.clients,
                    opt(r.tps, 0),
                    opt(r.ratio_to_direct, 3),
                    opt(ms(|p| p.p50), 3),
                    opt(ms(|p| p.p99), 3),
                    opt(ms(|p| p.p999), 3),
                    opt(r.cpu_s_per_1k, 4),
                    opt(r.rss_mib, 1),
                    opt(r.idle_session_kib, 1),
                    r.audit
                        .map(|(a, s)| format!("{a}/{s}{}", if a == s { "" } else { " !" }))
                        .unwrap_or_else(|| "-".into()),
                );
                if let Some(note) = &r.note {
                    let _ = writeln!(t, "{:<19}   note: {note}", "");
                }
                if r.failed > 0 {
                    let _ = writeln!(t, "{:<19}   {} transaction(s) failed", "", r.failed);
                }
            }
            Status::NotAvailable(why) => {
                let _ = writeln!(
                    t,
                    "{:<19} {:<14}   not available: {why}",
                    r.workload, r.config
                );
            }
            Status::NotApplicable(why) => {
                let _ = writeln!(
                    t,
                    "{:<19} {:<14}   not applicable: {why}",
                    r.workload, r.config
                );
            }
            Status::NotMeasured(why) => {
                let _ = writeln!(
                    t,
                    "{:<19} {:<14}   not measured: {why}",
                    r.workload, r.config
                );
            }
            Status::Failed(why) => {
                let first = why.lines().next().unwrap_or("");
                let _ = writeln!(t, "{:<19} {:<14}   FAILED: {first}", r.workload, r.config);
            }
        }
    }
    t
}

/// A row as JSON.
pub fn row_json(r: &Row) -> Value {
    let (status, reason) = match &r.status {
        Status::Measured => ("measured", None),
        Status::NotAvailable(w) => ("not_available", Some(w.clone())),
        Status::NotApplicable(w) => ("not_applicable", Some(w.clone())),
        Status::NotMeasured(w) => ("not_measured", Some(w.clone())),
        Status::Failed(w) => ("failed", Some(w.clone())),
    };
    json!({
        "workload": r.workload,
        "config": r.config,
        "kind": r.kind,
        "clients": r.clients,
        "status": status,
        "reason": reason,
        "note": r.note,
        "repetitions": r.repetitions,
        "tps_median": r.tps,
        "ratio_to_direct": r.ratio_to_direct,
        "latency_ms": r.latency_us.map(|p| json!({
            "p50": p.p50 / 1000.0,
            "p99": p.p99 / 1000.0,
            "p99_9": p.p999 / 1000.0,
            "samples": p.samples,
        })),
        "proxy_cpu_s_per_1000_statements": r.cpu_s_per_1k,
        "proxy_rss_mib_max": r.rss_mib,
        "sessions": r.sessions,
        "proxy_kib_per_idle_session": r.idle_session_kib,
        "audit_statement_records": r.audit.map(|a| a.0),
        "statements": r.statements,
        "failed_transactions": r.failed,
        "measured_seconds": r.seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CONFIGURATIONS, configuration, workload};
    use crate::run::Sample;
    use std::time::Duration;

    fn sample(tps: f64, cpu_ms: u64, audit: Option<u64>) -> Sample {
        Sample {
            tps,
            transactions: 1000,
            statements: 1000,
            latencies_us: (1..=1000).collect(),
            proxy_cpu: Some(Duration::from_millis(cpu_ms)),
            proxy_rss_kib: Some(20 * 1024),
            audit_records: audit,
            ..Sample::default()
        }
    }

    fn cells() -> Vec<Cell> {
        let w = workload("pg-select-simple").unwrap();
        let mut direct = sample(1000.0, 0, None);
        direct.proxy_cpu = None;
        direct.proxy_rss_kib = None;
        vec![
            Cell {
                workload: w,
                config: configuration(ConfigId::Direct),
                outcome: Outcome::Measured(vec![direct.clone(), direct]),
                note: None,
            },
            Cell {
                workload: w,
                config: configuration(ConfigId::Audit),
                outcome: Outcome::Measured(vec![
                    sample(800.0, 30, Some(1000)),
                    sample(900.0, 40, Some(999)),
                    sample(850.0, 50, Some(1000)),
                ]),
                note: None,
            },
            Cell {
                workload: w,
                config: &CONFIGURATIONS[4],
                outcome: Outcome::NotApplicable("runs only the encrypted workloads".into()),
                note: None,
            },
            Cell {
                workload: w,
                config: &CONFIGURATIONS[5],
                outcome: Outcome::NotAvailable("needs issue 6 (masking and firewall)".into()),
                note: None,
            },
        ]
    }

    #[test]
    fn rows_take_medians_ratios_cpu_and_audit_sums() {
        let rows = rows(&cells());
        let audit = &rows[1];
        assert_eq!(audit.tps, Some(850.0));
        assert_eq!(audit.ratio_to_direct, Some(0.85));
        // 120 ms of CPU for 3,000 statements: 0.04 s per 1,000.
        assert!((audit.cpu_s_per_1k.unwrap() - 0.04).abs() < 1e-9);
        assert_eq!(audit.audit, Some((2999, 3000)));
        assert_eq!(audit.latency_us.unwrap().samples, 3000);
        assert_eq!(audit.rss_mib, Some(20.0));
        assert_eq!(rows[0].cpu_s_per_1k, None);
        assert_eq!(rows[0].ratio_to_direct, Some(1.0));
        assert!(matches!(rows[2].status, Status::NotApplicable(_)));
        assert!(matches!(rows[3].status, Status::NotAvailable(_)));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_table_flags_missing_audit_records_and_says_why_rows_are_empty() {
        let text = table(&rows(&cells()));
        assert!(text.contains("2999/3000 !"), "{text}");
        assert!(text.contains("not available: needs issue 6"), "{text}");
        assert!(
            text.contains("warden-enc       not applicable: runs only the encrypted workloads"),
            "{text}"
        );
        assert_eq!(row_json(&rows(&cells())[2])["status"], "not_applicable");
        let json = row_json(&rows(&cells())[1]);
        assert_eq!(json["ratio_to_direct"], 0.85);
        assert_eq!(json["latency_ms"]["p50"], 0.5);
        assert_eq!(json["status"], "measured");
    }
}
