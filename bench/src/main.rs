//! warden-bench: measures warden against a direct connection and against PgBouncer, in one
//! run, interleaved, and reports ratios, latency percentiles and resource use (OPS-4).
//!
//! ```sh
//! cargo build --release -p warden-proxy -p warden-bench
//! cargo run --release -p warden-bench -- --quick            # about two minutes
//! cargo run --release -p warden-bench -- pg-select pg-copy  # chosen workloads, full length
//! ```
//!
//! It starts a throwaway PostgreSQL cluster, loads pgbench's tables, starts PgBouncer (session
//! mode) and two wardens (audit off and on) in front of it — and, when an encrypted workload is
//! selected, loads the people tables, encrypts one with `warden encrypt` (timed) and starts
//! warden-enc — then runs every workload against every configuration it applies to, warm-up
//! first, repetitions interleaved. Absolute numbers on a shared
//! 2-core machine mean little; the ratio of measurements taken side by side does. See
//! `bench/README.md` for what each number means and how it is measured.

mod catalog;
mod driver;
mod encrypted;
mod lab;
mod pgbench;
mod pgbouncer;
mod procfs;
mod report;
mod run;
mod stats;
mod svg;
mod targets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde_json::json;

use crate::catalog::{CONFIGURATIONS, WORKLOADS, Workload};
use crate::run::Plan;

/// Benchmarks warden against a direct connection and PgBouncer, in one run.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Workloads to run: names or name prefixes (`pg-select` runs both point selects); all
    /// when none is given. `--list` shows them.
    workloads: Vec<String>,
    /// Short runs for a quick look: 1 s per run, one repetition, scale 1, no warm-up per
    /// workload (one overall). About two minutes (bench/README.md says where they go).
    #[arg(long)]
    quick: bool,
    /// Seconds per measured run.
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds of warm-up per workload and configuration (0: none).
    #[arg(long)]
    warmup: Option<u64>,
    /// Repetitions per workload and configuration (interleaved); medians are reported.
    #[arg(long)]
    repetitions: Option<u32>,
    /// pgbench scale factor (100,000 accounts per unit).
    #[arg(long)]
    scale: Option<u32>,
    /// Rows of the encrypted workloads' people tables (default 1,000,000; quick 100,000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1000..=10_000_000))]
    enc_rows: Option<u64>,
    /// Multiplies the session counts of the many-sessions workloads (for small machines).
    #[arg(long, default_value_t = 1.0)]
    sessions_scale: f64,
    /// Where results.json, ratios.svg and report.txt go (default:
    /// target/warden-bench/<UTC time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// List the workloads and configurations, and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.list {
        print_catalogue();
        return Ok(());
    }
    let started = Instant::now();
    let workloads = select(&args.workloads)?;
    let plan = Plan {
        duration: Duration::from_secs(args.duration.unwrap_or(if args.quick { 1 } else { 10 })),
        warmup: Duration::from_secs(args.warmup.unwrap_or(if args.quick { 0 } else { 2 })),
        repetitions: args
            .repetitions
            .unwrap_or(if args.quick { 1 } else { 3 })
            .max(1),
        sessions_scale: args.sessions_scale.clamp(0.0001, 1.0),
        max_connections: 2200,
        open_files: 0,
    };
    let scale = args.scale.unwrap_or(if args.quick { 1 } else { 10 }).max(1);
    use_release_warden()?;
    let open_files = procfs::raise_open_files(65_536)?;
    if open_files < 20_500 {
        eprintln!(
            "note: RLIMIT_NOFILE is {open_files} (the hard limit, which this process cannot \
             raise): warden needs two descriptors per session, so the many-sessions workloads \
             are capped at {} sessions",
            run::max_sessions_for(open_files)
        );
    }
    let plan = Plan { open_files, ..plan };
    let out = args.out.clone().unwrap_or_else(default_out);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let load_before = loadavg();

    eprintln!(
        "warden-bench: {} workload(s), {} s runs, {} s warm-up, {} repetition(s), scale {scale}, \
         RLIMIT_NOFILE {open_files}",
        workloads.len(),
        plan.duration.as_secs(),
        plan.warmup.as_secs(),
        plan.repetitions
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let encrypted_selected = workloads.iter().any(|w| w.encrypted());
    let enc_rows = encrypted_selected.then(|| {
        args.enc_rows
            .unwrap_or(if args.quick { 100_000 } else { 1_000_000 })
    });
    let lab = lab::Lab::start(scale, plan.max_connections, enc_rows, &rt)?;
    eprintln!(
        "PostgreSQL on {}, pgbench tables at scale {scale}; PgBouncer and {} wardens started ({:.1} s)",
        lab.pg.port(),
        if enc_rows.is_some() { "three" } else { "two" },
        started.elapsed().as_secs_f64()
    );
    if args.quick {
        // One warm-up for everything: a second of point selects per configuration. warden-enc
        // (which runs no point select) was warmed by its checks before measuring.
        let warm = [catalog::workload("pg-select-simple").expect("declared")];
        let warm_plan = Plan {
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            repetitions: 1,
            ..plan.clone()
        };
        let _ = run::run_all(&lab, &rt, &warm, &warm_plan);
    }
    let cells = run::run_all(&lab, &rt, &workloads, &plan);
    let enc = lab.enc.clone();
    lab.stop()?;
    let rows = report::rows(&cells);
    let results = targets::evaluate(&rows);

    let mut text = String::new();
    text.push_str(&format!(
        "\nwarden-bench {} — {} s runs, {} repetition(s) interleaved (median TPS), {} s warm-up, \
         pgbench scale {scale}\nmachine: {} CPUs, {} MiB, load average before {load_before}, after {}\n\n",
        env!("CARGO_PKG_VERSION"),
        plan.duration.as_secs(),
        plan.repetitions,
        plan.warmup.as_secs(),
        cpus(),
        mem_mib(),
        loadavg()
    ));
    text.push_str(&report::table(&rows));
    text.push_str(
        "\nratio: TPS / direct TPS on the same workload. Latencies: every transaction of every \
         repetition (pgbench -l, or the harness's driver).\nCPU s/1k: proxy CPU seconds (user + \
         system, /proc/PID/stat) per 1,000 statements. RSS: proxy VmRSS after the run.\n\
         KiB/sess: (proxy RSS with every session open and idle - RSS before) / sessions. \
         audit rec/stmts: statement records warden wrote / statements the clients ran.\n",
    );
    if let Some(enc) = &enc {
        text.push_str(&encryption_text(enc));
    }
    text.push_str("\nreference targets (issue 7):\n");
    text.push_str(&targets::table(&results));
    text.push_str(&format!(
        "\nfinished in {:.0} s; results in {}\n",
        started.elapsed().as_secs_f64(),
        out.display()
    ));
    print!("{text}");

    let json = json!({
        "harness": "warden-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "plan": {
            "duration_s": plan.duration.as_secs(),
            "warmup_s": plan.warmup.as_secs(),
            "repetitions": plan.repetitions,
            "scale": scale,
            "sessions_scale": plan.sessions_scale,
            "enc_rows": enc_rows,
            "quick": args.quick,
        },
        "encryption": enc.as_ref().map(encryption_json),
        "machine": {
            "cpus": cpus(),
            "mem_mib": mem_mib(),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        },
        "configurations": CONFIGURATIONS.iter().map(|c| json!({
            "name": c.name, "description": c.description, "needs": c.needs,
        })).collect::<Vec<_>>(),
        "workloads": WORKLOADS.iter().map(|w| json!({
            "name": w.name, "description": w.description, "needs": w.needs,
            "protocol": format!("{:?}", w.protocol).to_lowercase(),
        })).collect::<Vec<_>>(),
        "results": rows.iter().map(report::row_json).collect::<Vec<_>>(),
        "targets": targets::json(&results),
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(
        out.join("ratios.svg"),
        svg::chart(
            &rows,
            "warden-bench: throughput relative to a direct connection",
        ),
    )?;
    std::fs::write(out.join("report.txt"), &text)?;
    Ok(())
}

/// The encrypted table's setup for the terminal: rows, migrations, checks.
fn encryption_text(enc: &encrypted::Setup) -> String {
    let mut t = format!(
        "\nencrypted workloads: {} and its plaintext copy {}, {} rows each (loaded with \
         indexes in {:.1} s); direct reads the copy, warden-enc the encrypted table\n",
        encrypted::TABLE,
        encrypted::PLAIN_TABLE,
        report::thousands(enc.rows),
        enc.load_seconds
    );
    for m in &enc.migrations {
        t.push_str(&format!(
            "  migration: warden encrypt {} ({}): {} rows in {:.1} s = {} rows/s (wall time, start-up \
             and swap included)\n    warden: {}\n",
            m.column,
            m.what,
            report::thousands(m.rows),
            m.seconds,
            report::thousands(m.rows_per_s.round() as u64),
            m.summary
        ));
    }
    for v in &enc.verified {
        t.push_str(&format!(
            "  verified before measuring, through warden-enc: {v}\n"
        ));
    }
    if let Some(e) = &enc.error {
        t.push_str(&format!(
            "  warden-enc NOT measured: {}\n",
            e.lines().next().unwrap_or("")
        ));
    }
    t
}

fn encryption_json(enc: &encrypted::Setup) -> serde_json::Value {
    json!({
        "table": encrypted::TABLE,
        "plaintext_copy": encrypted::PLAIN_TABLE,
        "rows": enc.rows,
        "load_s": enc.load_seconds,
        "migrations": enc.migrations.iter().map(|m| json!({
            "column": m.column,
            "what": m.what,
            "rows": m.rows,
            "wall_s": m.seconds,
            "rows_per_s": m.rows_per_s,
            "warden_summary": m.summary,
        })).collect::<Vec<_>>(),
        "verified": enc.verified,
        "error": enc.error,
    })
}

/// Resolves workload names and prefixes; all workloads when none is given.
fn select(names: &[String]) -> Result<Vec<&'static Workload>> {
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return Ok(WORKLOADS.iter().collect());
    }
    let mut chosen: Vec<&'static Workload> = Vec::new();
    for name in names {
        let matching: Vec<&'static Workload> = WORKLOADS
            .iter()
            .filter(|w| w.name.starts_with(name.as_str()))
            .collect();
        if matching.is_empty() {
            bail!("no workload is called `{name}`; `--list` shows them");
        }
        for w in matching {
            if !chosen.iter().any(|c| c.name == w.name) {
                chosen.push(w);
            }
        }
    }
    Ok(chosen)
}

fn print_catalogue() {
    println!("workloads:");
    for w in WORKLOADS {
        println!(
            "  {:<20} {}{}{}",
            w.name,
            w.description,
            w.needs
                .map(|n| format!("  [not available: needs {n}]"))
                .unwrap_or_default(),
            if w.encrypted() {
                "  [direct and warden-enc only]"
            } else {
                ""
            }
        );
    }
    println!("configurations:");
    for c in CONFIGURATIONS {
        println!(
            "  {:<20} {}{}",
            c.name,
            c.description,
            c.needs
                .map(|n| format!("  [not available: needs {n}]"))
                .unwrap_or_default()
        );
    }
}

/// Measure the warden built with the same profile as this harness (release), not whatever
/// the test harness would find first.
fn use_release_warden() -> Result<()> {
    if std::env::var_os("WARDEN_BIN").is_some() {
        return Ok(());
    }
    let sibling = std::env::current_exe()?.with_file_name("warden");
    ensure!(
        sibling.exists(),
        "{} not found: run `cargo build --release -p warden-proxy` first",
        sibling.display()
    );
    // SAFETY: set before any thread is started.
    unsafe { std::env::set_var("WARDEN_BIN", sibling) };
    Ok(())
}

fn default_out() -> PathBuf {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    warden_tests::warden::workspace_root()
        .join("target")
        .join("warden-bench")
        .join(stamp)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().take(3).collect();
            (f.len() == 3).then(|| f.join(" "))
        })
        .unwrap_or_else(|| "?".into())
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn mem_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|k| k / 1024)
        .unwrap_or(0)
}
