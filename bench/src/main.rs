//! warden-bench: measures warden against a direct connection to the same database, in one run,
//! interleaved, and reports ratios (OPS-4). Absolute numbers on a shared 2-core machine mean
//! little; the ratio of two measurements taken side by side does.
//!
//! `cargo build --release -p warden-proxy && cargo run --release -p warden-bench -- pgbench`
//!
//! It starts a throwaway PostgreSQL cluster and a warden in front of it (with the same harness
//! the integration tests use), loads pgbench's tables, then alternates pgbench runs directly
//! and through warden for each protocol mode, several rounds, and reports the median TPS of
//! each, the ratio, the CPU warden used, and the audit records it wrote against the statements
//! it relayed.

mod proc_stat;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use warden_tests::fixtures;
use warden_tests::pg::{Target, pgbench};
use warden_tests::warden::{Warden, WardenConfig};

/// Benchmarks warden against a direct connection.
#[derive(Debug, Parser)]
struct Args {
    /// Scenario: `pgbench` (select-only `pgbench -S` in simple and prepared modes).
    #[arg(default_value = "pgbench")]
    scenario: String,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// pgbench clients.
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Rounds of (direct, warden) per mode; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// pgbench scale factor.
    #[arg(long, default_value_t = 10)]
    scale: u32,
    /// Protocol modes to run.
    #[arg(long, value_delimiter = ',', default_value = "simple,prepared")]
    modes: Vec<String>,
}

/// One pgbench run.
struct Run {
    mode: String,
    via_warden: bool,
    tps: f64,
    transactions: u64,
    /// Warden's CPU time during the run (user + system).
    warden_cpu: Duration,
    /// Audit records warden wrote during the run (and the flush after it).
    audit_records: u64,
    elapsed: Duration,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Measure the warden built with the same profile as this harness (release), not whatever
    // the test harness would find first.
    if std::env::var_os("WARDEN_BIN").is_none() {
        let exe = std::env::current_exe()?;
        let sibling = exe.with_file_name("warden");
        ensure!(
            sibling.exists(),
            "{} not found: run `cargo build --release -p warden-proxy` first",
            sibling.display()
        );
        // SAFETY: set before any thread is started.
        unsafe { std::env::set_var("WARDEN_BIN", sibling) };
    }
    if args.scenario != "pgbench" {
        bail!("unknown scenario `{}`; available: pgbench", args.scenario);
    }
    let login = fixtures::app_login();
    let direct = fixtures::direct()?;
    eprintln!("loading pgbench tables (scale {}) ...", args.scale);
    pgbench(
        &direct,
        &login,
        "disable",
        &["-i", "-q", "-s", &args.scale.to_string()],
    )?
    .ensure_success()?;

    // Plain TCP on both legs, like the direct runs: the comparison is of the proxy, not of TLS.
    let mut upstream = fixtures::main_upstream()?;
    upstream.server_tls.mode = "disable".into();
    upstream.server_tls.ca = None;
    let mut config = WardenConfig::new(upstream);
    // The default audit settings (fsync every batch, 100 ms linger): what production runs.
    config.audit.clear();
    let warden = Warden::start(config)?;
    let through = warden.target("main")?;
    eprintln!(
        "warden {} in front of PostgreSQL on port {}; {} round(s) of {} s per mode, {} clients",
        warden.pid(),
        direct.port,
        args.rounds,
        args.duration,
        args.clients
    );

    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        for mode in &args.modes {
            for via_warden in [false, true] {
                let target = if via_warden { &through } else { &direct };
                let run = run_pgbench(&warden, target, &login, mode, via_warden, &args)?;
                eprintln!(
                    "round {round} {mode:>8} {:>6}: {:>9.0} tps",
                    if via_warden { "warden" } else { "direct" },
                    run.tps
                );
                runs.push(run);
            }
        }
    }
    report(&args, &runs);
    let status = warden.terminate(Duration::from_secs(60))?;
    ensure!(status.success(), "warden exited with {status}");
    Ok(())
}

fn run_pgbench(
    warden: &Warden,
    target: &Target,
    login: &warden_tests::pg::Login,
    mode: &str,
    via_warden: bool,
    args: &Args,
) -> Result<Run> {
    let cpu_before = proc_stat::cpu_time(warden.pid())?;
    let audit_before = audit_written(warden)?;
    let started = Instant::now();
    let run = pgbench(
        target,
        login,
        "disable",
        &[
            "-S",
            "-n",
            "-M",
            mode,
            "-c",
            &args.clients.to_string(),
            "-j",
            "2",
            "-T",
            &args.duration.to_string(),
        ],
    )?
    .ensure_success()?;
    let elapsed = started.elapsed();
    let out = run.stdout_text();
    let tps = out
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("pgbench printed no tps\n{}", run.describe()))?;
    let transactions = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .with_context(|| format!("pgbench printed no transaction count\n{}", run.describe()))?;
    // Let the audit writer catch up (its linger is 100 ms) before reading its counter.
    std::thread::sleep(Duration::from_millis(500));
    Ok(Run {
        mode: mode.to_string(),
        via_warden,
        tps,
        transactions,
        warden_cpu: proc_stat::cpu_time(warden.pid())? - cpu_before,
        audit_records: audit_written(warden)? - audit_before,
        elapsed,
    })
}

fn audit_written(warden: &Warden) -> Result<u64> {
    Ok(warden
        .metrics()?
        .sum("warden_audit_records_written_total", &[]) as u64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn report(args: &Args, runs: &[Run]) {
    println!();
    println!(
        "pgbench -S, {} clients, {} s per run, median of {} rounds (direct and warden interleaved)",
        args.clients, args.duration, args.rounds
    );
    println!(
        "{:<10} {:>12} {:>12} {:>7} {:>14} {:>16} {:>14} {:>18}",
        "mode",
        "direct tps",
        "warden tps",
        "ratio",
        "warden CPU s",
        "CPU ms/1000 stmt",
        "audit rec/s",
        "audit rec/stmts"
    );
    for mode in &args.modes {
        let of = |w: bool| {
            runs.iter()
                .filter(move |r| &r.mode == mode && r.via_warden == w)
        };
        let direct = median(of(false).map(|r| r.tps).collect());
        let warden = median(of(true).map(|r| r.tps).collect());
        let cpu: Duration = of(true).map(|r| r.warden_cpu).sum();
        let transactions: u64 = of(true).map(|r| r.transactions).sum();
        let records: u64 = of(true).map(|r| r.audit_records).sum();
        let seconds: f64 = of(true).map(|r| r.elapsed.as_secs_f64()).sum();
        println!(
            "{:<10} {:>12.0} {:>12.0} {:>7.3} {:>14.2} {:>16.3} {:>14.0} {:>18}",
            mode,
            direct,
            warden,
            if direct > 0.0 { warden / direct } else { 0.0 },
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / transactions.max(1) as f64,
            records as f64 / seconds.max(f64::EPSILON),
            format!("{records}/{transactions}"),
        );
    }
    println!(
        "\naudit rec/stmts: records written while warden relayed the runs (one per statement, \
         plus one login and one session end per client and run) / statements relayed"
    );
}
