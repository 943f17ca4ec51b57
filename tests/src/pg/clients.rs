//! Real PostgreSQL client programs: psql, pgbench, and Python's psycopg.
//!
//! They run as child processes with the connection in libpq's environment variables, the C
//! locale and no psqlrc, so that a run against PostgreSQL directly and a run through warden
//! differ only in where they connect.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::pg::instance::bin_dir;
use crate::pg::target::{Login, Target};
use crate::tools::{self, ToolRun};

/// How long a client program may run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `psql -X ARGS...` in `cwd` against `target` (with `input` on stdin, if any).
pub fn psql(
    target: &Target,
    login: &Login,
    sslmode: &str,
    args: &[&str],
    cwd: &Path,
    input: Option<&[u8]>,
) -> Result<ToolRun> {
    let mut command = target.libpq_command(bin_dir()?.join("psql"), login, sslmode);
    command.arg("-X").args(args).current_dir(cwd);
    tools::run_with_input(command, input, CLIENT_TIMEOUT)
}

/// Runs `pgbench ARGS...` against `target`.
pub fn pgbench(target: &Target, login: &Login, sslmode: &str, args: &[&str]) -> Result<ToolRun> {
    let mut command = target.libpq_command(bin_dir()?.join("pgbench"), login, sslmode);
    command.args(args);
    tools::run(command, CLIENT_TIMEOUT)
}

/// What a pgbench run reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgbenchReport {
    /// Transactions actually processed.
    pub processed: u64,
    /// Transactions asked for.
    pub expected: u64,
    /// Failed transactions.
    pub failed: u64,
}

/// Reads pgbench's summary ("number of transactions actually processed: 200/200",
/// "number of failed transactions: 0 (0.000%)").
pub fn pgbench_report(run: &ToolRun) -> Result<PgbenchReport> {
    let out = run.stdout_text();
    let processed_line = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .with_context(|| format!("pgbench printed no transaction count\n{}", run.describe()))?;
    let (processed, expected) = match processed_line.split_once('/') {
        Some((p, e)) => (p.trim().parse()?, e.trim().parse()?),
        None => bail!("unexpected transaction count line: {processed_line}"),
    };
    let failed = out
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::parse::<u64>)
        .transpose()?
        .with_context(|| format!("pgbench printed no failure count\n{}", run.describe()))?;
    Ok(PgbenchReport {
        processed,
        expected,
        failed,
    })
}

/// Runs `python3 SCRIPT ARGS...` with `env`.
pub fn python(script: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<ToolRun> {
    let mut command = std::process::Command::new("python3");
    crate::pg::instance::clear_libpq_env(&mut command);
    command
        .arg(script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    for (k, v) in env {
        command.env(k, v);
    }
    tools::run(command, CLIENT_TIMEOUT)
}
