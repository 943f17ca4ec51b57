//! pgbench workloads: the scripts the harness writes, the runs, and their per-transaction
//! latency logs.
//!
//! Every workload is a custom script (`-f`), even the point select `-S` runs, so the harness
//! knows exactly how many statements a transaction holds, and pgbench does not query
//! `pgbench_branches` for the scale before the run (a statement the audit count would have to
//! explain). Latencies come from `pgbench -l`: one line per transaction, its latency in
//! microseconds, from every client.
//!
//! The encrypted workloads' scripts read a people table (see [`crate::lab`]): the same text
//! against `bench_people` through warden-enc and `bench_people_plain` directly. Their
//! parameters are computed with `\set` (warden refuses arithmetic on an encrypted column
//! inside SQL, as it must: `:lo + 10` would be computed on ciphertext).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use warden_tests::pg::{Login, Target, pgbench};

use crate::catalog::Script;

/// Rows per INSERT in [`Script::InsertBatch`].
pub const INSERT_ROWS: u32 = 100;
/// Rows per SELECT in [`Script::BulkSelect`].
pub const BULK_ROWS: u32 = 10_000;

/// ID card of person `id`: `ID_CARD_BASE + id`, as text (12 digits).
pub const ID_CARD_BASE: u64 = 100_000_000_000;
/// Salaries are spread over `0 ..= SALARY_MAX` (two decimals).
pub const SALARY_MAX: u64 = 100_000;
/// Width of a salary range in [`Script::EncRange`].
pub const RANGE_WIDTH: u64 = 10;
/// Rows a salary range returns at most.
pub const RANGE_LIMIT: u32 = 20;

/// A people table a script reads, and its rows (ids `1..=rows`).
#[derive(Debug, Clone, Copy)]
pub struct People<'a> {
    pub table: &'a str,
    pub rows: u64,
}

/// The text of `script` for pgbench's tables initialised at `scale`, or (for the encrypted
/// workloads) for `people`.
pub fn script_text(script: Script, scale: u32, people: People<'_>) -> String {
    let accounts = 100_000 * u64::from(scale);
    match script {
        Script::PointSelect => format!(
            "\\set aid random(1, {accounts})\n\
             SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
        ),
        Script::ReadWrite => format!(
            "\\set aid random(1, {accounts})\n\
             \\set bid random(1, {scale})\n\
             \\set tid random(1, {tellers})\n\
             \\set delta random(-5000, 5000)\n\
             BEGIN;\n\
             UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n\
             SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\
             UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;\n\
             UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;\n\
             INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
             VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);\n\
             END;\n",
            tellers = 10 * scale
        ),
        Script::BulkSelect => format!(
            "\\set a random(1, {})\n\
             SELECT * FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + {};\n",
            accounts.saturating_sub(u64::from(BULK_ROWS) - 1).max(1),
            BULK_ROWS - 1
        ),
        Script::InsertBatch => {
            let mut s = String::from(
                "\\set a random(1, 1000000000)\n\
                 INSERT INTO bench_insert (id, bid, delta, note) VALUES\n",
            );
            for i in 0..INSERT_ROWS {
                let sep = if i + 1 == INSERT_ROWS { ";" } else { "," };
                let _ = writeln!(s, "  (:a + {i}, {}, {i}, 'warden bench row'){sep}", i % 10);
            }
            s
        }
        Script::EncLookup => format!(
            "\\set c {ID_CARD_BASE} + random(1, {rows})\n\
             SELECT id, name, salary FROM {table} WHERE id_card = :c;\n",
            rows = people.rows.max(1),
            table = people.table
        ),
        Script::EncRange => format!(
            "\\set lo random(0, {top})\n\
             \\set hi :lo + {RANGE_WIDTH}\n\
             SELECT id, salary FROM {table} WHERE salary BETWEEN :lo AND :hi \
             ORDER BY salary LIMIT {RANGE_LIMIT};\n",
            top = SALARY_MAX - RANGE_WIDTH,
            table = people.table
        ),
    }
}

/// What one pgbench run measured.
#[derive(Debug, Clone)]
pub struct PgbenchRun {
    /// Transactions completed.
    pub transactions: u64,
    pub failed: u64,
    /// pgbench's own figure (excluding connection time).
    pub tps: f64,
    /// Per-transaction latencies, microseconds.
    pub latencies_us: Vec<u64>,
    pub elapsed: Duration,
}

/// Runs `script_file` against `target` for `seconds` with `clients` clients in protocol
/// `mode`, logging every transaction into a fresh directory under `log_dir`.
pub fn run(
    target: &Target,
    login: &Login,
    script_file: &Path,
    mode: &str,
    clients: u32,
    seconds: u32,
    log_dir: &Path,
) -> Result<PgbenchRun> {
    let dir = unique_dir(log_dir)?;
    let prefix = dir.join("tx");
    let script = script_file.to_string_lossy().into_owned();
    let prefix_arg = format!("--log-prefix={}", prefix.display());
    let clients_arg = clients.to_string();
    let threads = clients.clamp(1, 2).to_string();
    let seconds_arg = seconds.max(1).to_string();
    let args = [
        "-n",
        "-f",
        &script,
        "-M",
        mode,
        "-c",
        &clients_arg,
        "-j",
        &threads,
        "-T",
        &seconds_arg,
        "-l",
        &prefix_arg,
    ];
    let started = Instant::now();
    let tool = pgbench(target, login, "disable", &args)?;
    let elapsed = started.elapsed();
    if !tool.success() {
        bail!("pgbench failed\n{}", tool.describe());
    }
    let out = tool.stdout_text();
    let summary = parse_summary(&out)
        .with_context(|| format!("cannot read pgbench's summary\n{}", tool.describe()))?;
    let mut latencies_us = Vec::with_capacity(summary.0 as usize);
    for entry in std::fs::read_dir(&dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        latencies_us.extend(parse_log(&text));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(PgbenchRun {
        transactions: summary.0,
        failed: summary.1,
        tps: summary.2,
        latencies_us,
        elapsed,
    })
}

fn unique_dir(parent: &Path) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = parent.join(format!("pgbench-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// (transactions processed, failed, tps) from pgbench's report.
pub fn parse_summary(out: &str) -> Option<(u64, u64, f64)> {
    let processed = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))?;
    let processed = processed.split('/').next()?.trim().parse().ok()?;
    let failed = out
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let tps = out
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some((processed, failed, tps))
}

/// Latencies (µs) from a pgbench `-l` log: `client_id transaction_no time script_no
/// time_epoch time_us [schedule_lag]`, `time` being the latency; failed or skipped
/// transactions (a word in place of the time) are left out.
pub fn parse_log(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_15_summaries() {
        let out = "transaction type: s.sql\nscaling factor: 1\nquery mode: prepared\n\
                   number of clients: 8\nnumber of threads: 2\nmaximum number of tries: 1\n\
                   duration: 2 s\nnumber of transactions actually processed: 20345\n\
                   number of failed transactions: 0 (0.000%)\nlatency average = 0.785 ms\n\
                   initial connection time = 12.402 ms\ntps = 10185.112233 (without initial connection time)\n";
        assert_eq!(parse_summary(out), Some((20345, 0, 10185.112233)));
        assert_eq!(parse_summary("nothing"), None);
    }

    #[test]
    fn reads_latency_logs() {
        let log =
            "0 1 412 0 1700000000 123456\n1 1 388 0 1700000000 123999\n3 7 failed 0 1700000001 1\n";
        assert_eq!(parse_log(log).collect::<Vec<_>>(), vec![412, 388]);
    }

    #[test]
    fn scripts_have_the_statements_the_catalogue_counts() {
        let people = People {
            table: "bench_people_plain",
            rows: 1000,
        };
        let script_text = |script, scale| script_text(script, scale, people);
        let rw = script_text(Script::ReadWrite, 10);
        assert_eq!(rw.matches(';').count(), 7);
        assert!(rw.contains("random(1, 1000000)") && rw.contains("random(1, 100)"));
        let insert = script_text(Script::InsertBatch, 1);
        assert_eq!(insert.matches(";").count(), 1);
        assert_eq!(
            insert.matches("'warden bench row'").count(),
            INSERT_ROWS as usize
        );
        let bulk = script_text(Script::BulkSelect, 1);
        assert!(bulk.contains("random(1, 90001)") && bulk.contains(":a + 9999"));
        let lookup = script_text(Script::EncLookup, 1);
        assert_eq!(
            lookup,
            "\\set c 100000000000 + random(1, 1000)\n\
             SELECT id, name, salary FROM bench_people_plain WHERE id_card = :c;\n"
        );
        let range = script_text(Script::EncRange, 1);
        assert_eq!(range.matches(';').count(), 1);
        assert!(
            range.contains("\\set lo random(0, 99990)\n\\set hi :lo + 10\n")
                && range.contains("BETWEEN :lo AND :hi ORDER BY salary LIMIT 20;"),
            "{range}"
        );
    }
}
