//! Running the workloads against the configurations: warm-up, interleaved repetitions, and
//! what the kernel and the proxies say about each run.
//!
//! For each workload, every available configuration it applies to
//! ([`Workload::applies_to`]) is warmed up, then the repetitions run
//! one configuration after the other, in an order rotated each repetition (so no
//! configuration always runs first, after a cold cache, or last, after the others' dirt).
//! Around each run the harness reads the proxy's CPU time (`/proc/PID/stat`) and resident
//! memory (`/proc/PID/status`), and for the wardens with audit on (warden-audit, warden-enc),
//! their counters: the audit records written for statements must equal the statements the
//! clients ran.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::runtime::Runtime;
use warden_tests::pg::Target;
use warden_tests::warden::Warden;

use crate::catalog::{CONFIGURATIONS, ConfigId, Configuration, Driver, Script, Workload};
use crate::driver;
use crate::lab::{Lab, Proxy};
use crate::pgbench;
use crate::pgbouncer::PoolMode;
use crate::procfs;

/// How long and how often.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Each measured run.
    pub duration: Duration,
    /// The unmeasured run per configuration before the repetitions (none when zero).
    pub warmup: Duration,
    pub repetitions: u32,
    /// Idle sessions held by the many-sessions workloads (scaled down by `--sessions-scale`).
    pub sessions_scale: f64,
    /// PostgreSQL's max_connections (the most sessions a direct run can hold).
    pub max_connections: u32,
    /// RLIMIT_NOFILE of the harness and its children.
    pub open_files: u64,
}

/// The most sessions a proxy can hold with `open_files` descriptors: two per session (client
/// and upstream), and some to spare.
pub fn max_sessions_for(open_files: u64) -> u32 {
    (open_files.saturating_sub(200) / 2).min(u64::from(u32::MAX)) as u32
}

/// One measured run.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub repetition: u32,
    pub tps: f64,
    pub transactions: u64,
    /// Statements the clients ran (transactions × statements per transaction).
    pub statements: u64,
    pub failed: u64,
    pub latencies_us: Vec<u64>,
    pub elapsed: Duration,
    /// The proxy's CPU time during the run.
    pub proxy_cpu: Option<Duration>,
    /// The proxy's resident memory after the run, KiB.
    pub proxy_rss_kib: Option<u64>,
    /// Many-sessions workloads: the proxy's resident memory before the sessions, KiB.
    pub baseline_rss_kib: Option<u64>,
    /// Many-sessions workloads: the proxy's resident memory with every session open and
    /// idle, KiB.
    pub idle_rss_kib: Option<u64>,
    /// Sessions held open.
    pub sessions: Option<u64>,
    /// Warden with audit on: statement records written during the run.
    pub audit_records: Option<u64>,
}

impl Sample {
    /// (RSS with every session idle − RSS before) / sessions, KiB.
    pub fn idle_session_kib(&self) -> Option<f64> {
        let (base, idle, n) = (self.baseline_rss_kib?, self.idle_rss_kib?, self.sessions?);
        (n > 0).then(|| (idle as f64 - base as f64) / n as f64)
    }
}

/// What became of one (workload, configuration) pair.
#[derive(Debug, Clone)]
pub enum Outcome {
    Measured(Vec<Sample>),
    /// The workload or the configuration is not built yet.
    NotAvailable(String),
    /// The workload does not run on this configuration (the reason says why).
    NotApplicable(String),
    /// It cannot be measured meaningfully on this machine (the reason says why).
    NotMeasured(String),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub workload: &'static Workload,
    pub config: &'static Configuration,
    pub outcome: Outcome,
    /// How this configuration was set up for this workload, where it differs from the usual.
    pub note: Option<String>,
}

/// Runs `workloads` in `lab`; returns one cell per (workload, configuration).
pub fn run_all(lab: &Lab, rt: &Runtime, workloads: &[&'static Workload], plan: &Plan) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &workload in workloads {
        let started = Instant::now();
        eprintln!("== {}: {}", workload.name, workload.description);
        let results = match (workload.needs, workload.driver) {
            (Some(needs), _) => unavailable_all(workload, needs),
            (None, Driver::Sessions { sessions, active }) => {
                let scaled = ((f64::from(sessions) * plan.sessions_scale).round() as u32).max(1);
                let held = scaled.min(max_sessions_for(plan.open_files));
                let active = active.min(held);
                let mut cells = run_sessions(lab, rt, workload, held, active, plan);
                if held < scaled {
                    for c in &mut cells {
                        let cap = format!(
                            "capped at {held} sessions: RLIMIT_NOFILE hard limit {}, 2 descriptors per proxied session",
                            plan.open_files
                        );
                        c.note = Some(match c.note.take() {
                            Some(n) => format!("{n}; {cap}"),
                            None => cap,
                        });
                    }
                }
                cells
            }
            (None, _) => run_interleaved(lab, rt, workload, plan),
        };
        if workload.needs.is_none() {
            eprintln!(
                "   ({} took {:.1} s)",
                workload.name,
                started.elapsed().as_secs_f64()
            );
        }
        cells.extend(results);
    }
    cells
}

fn unavailable_all(workload: &'static Workload, needs: &str) -> Vec<Cell> {
    CONFIGURATIONS
        .iter()
        .map(|config| Cell {
            workload,
            config,
            outcome: Outcome::NotAvailable(format!("needs {needs}")),
            note: None,
        })
        .collect()
}

/// The configurations that can run now and that `workload` runs on, in report order.
fn available(workload: &Workload) -> Vec<&'static Configuration> {
    CONFIGURATIONS
        .iter()
        .filter(|c| c.needs.is_none() && workload.applies_to(c.id))
        .collect()
}

/// One cell per configuration, in report order: the `measured` ones, and for the others why
/// they were not run (not built, or not applicable to this workload).
fn complete(workload: &'static Workload, mut measured: Vec<Cell>) -> Vec<Cell> {
    CONFIGURATIONS
        .iter()
        .map(|config| {
            if let Some(i) = measured.iter().position(|c| c.config.id == config.id) {
                return measured.remove(i);
            }
            let outcome = match config.needs {
                Some(needs) => Outcome::NotAvailable(format!("needs {needs}")),
                None => Outcome::NotApplicable(workload.not_applicable_reason().into()),
            };
            Cell {
                workload,
                config,
                outcome,
                note: None,
            }
        })
        .collect()
}

fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    let n = items.len().max(1);
    (0..items.len()).map(|i| items[(i + by) % n]).collect()
}

/// pgbench, COPY and connection-storm workloads against the long-lived endpoints.
fn run_interleaved(lab: &Lab, rt: &Runtime, workload: &'static Workload, plan: &Plan) -> Vec<Cell> {
    let configs = available(workload);
    let mut samples: Vec<Result<Vec<Sample>, String>> = vec![Ok(Vec::new()); configs.len()];
    if !plan.warmup.is_zero() {
        for (i, config) in configs.iter().enumerate() {
            if let Err(e) = measure(lab, rt, workload, config.id, plan.warmup, 0) {
                samples[i] = Err(format!("warm-up failed: {e:#}"));
            }
        }
    }
    for rep in 1..=plan.repetitions {
        for i in rotated(&(0..configs.len()).collect::<Vec<_>>(), rep as usize - 1) {
            let Ok(list) = &mut samples[i] else { continue };
            match measure(lab, rt, workload, configs[i].id, plan.duration, rep) {
                Ok(sample) => {
                    eprintln!(
                        "   rep {rep} {:<14} {:>10.0} tps{}",
                        configs[i].name,
                        sample.tps,
                        match (sample.audit_records, sample.statements) {
                            (Some(r), s) => format!("  audit {r}/{s}"),
                            _ => String::new(),
                        }
                    );
                    list.push(sample);
                }
                Err(e) => {
                    eprintln!("   rep {rep} {:<14} FAILED: {e:#}", configs[i].name);
                    samples[i] = Err(format!("{e:#}"));
                }
            }
        }
    }
    let cells: Vec<Cell> = configs
        .iter()
        .zip(samples)
        .map(|(config, s)| Cell {
            workload,
            config,
            outcome: match s {
                Ok(list) => Outcome::Measured(list),
                Err(e) => Outcome::Failed(e),
            },
            note: None,
        })
        .collect();
    complete(workload, cells)
}

/// What a warden's counters say, for reconciling audit records with statements.
#[derive(Debug, Clone, Copy, Default)]
struct AuditCounters {
    written: f64,
    submitted: f64,
    logins: f64,
    sessions: f64,
    active: f64,
}

fn audit_counters(warden: &Warden) -> Result<AuditCounters> {
    let m = warden.metrics()?;
    Ok(AuditCounters {
        written: m.sum("warden_audit_records_written_total", &[]),
        submitted: m.sum("warden_audit_records_submitted_total", &[]),
        logins: m.sum("warden_logins_total", &[]),
        sessions: m.sum("warden_sessions_total", &[]),
        active: m.sum("warden_sessions_active", &[]),
    })
}

/// Waits until every session opened since `before` has ended and every record submitted is
/// written; returns the statement records written since `before`: all records, less one
/// login and one session end per session.
fn settle_audit(warden: &Warden, before: AuditCounters) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = audit_counters(warden)?;
        if now.active <= before.active && now.written >= now.submitted {
            let sessions_ended = (now.sessions - before.sessions) - (now.active - before.active);
            let records =
                (now.written - before.written) - (now.logins - before.logins) - sessions_ended;
            return Ok(records.max(0.0) as u64);
        }
        if Instant::now() > deadline {
            bail!(
                "warden's audit trail did not settle within a minute: {now:?} (before: {before:?})"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `proxy` is a warden whose audit trail is on (warden-audit and warden-enc).
fn audited(proxy: Option<&Proxy>, config: ConfigId) -> Option<&Warden> {
    proxy
        .and_then(Proxy::warden)
        .filter(|_| matches!(config, ConfigId::Audit | ConfigId::Encryption))
}

/// One run of `workload` against configuration `config`'s long-lived endpoint.
fn measure(
    lab: &Lab,
    rt: &Runtime,
    workload: &'static Workload,
    config: ConfigId,
    duration: Duration,
    repetition: u32,
) -> Result<Sample> {
    let endpoint = lab.endpoint(config)?;
    if matches!(
        workload.driver,
        Driver::Copy { .. }
            | Driver::Pgbench {
                script: Script::InsertBatch,
                ..
            }
    ) {
        lab.truncate_scratch_tables()?;
    }
    let pid = endpoint.proxy.map(Proxy::pid);
    let warden = audited(endpoint.proxy, config);
    let audit_before = warden.map(audit_counters).transpose()?;
    let cpu_before = pid.map(procfs::cpu_time).transpose()?;
    let mut sample = drive(lab, rt, workload, config, &endpoint.target, duration)?;
    sample.repetition = repetition;
    if let (Some(w), Some(before)) = (warden, audit_before) {
        sample.audit_records = Some(settle_audit(w, before)?);
    }
    if let (Some(pid), Some(before)) = (pid, cpu_before) {
        sample.proxy_cpu = Some(procfs::cpu_time(pid)?.saturating_sub(before));
        sample.proxy_rss_kib = Some(procfs::rss_kib(pid)?);
    }
    Ok(sample)
}

/// Drives `workload` against `target` (configuration `config`'s) for `duration`.
fn drive(
    lab: &Lab,
    rt: &Runtime,
    workload: &'static Workload,
    config: ConfigId,
    target: &Target,
    duration: Duration,
) -> Result<Sample> {
    let per_tx = workload.statements_per_transaction();
    let sample = match workload.driver {
        Driver::Pgbench {
            script,
            mode,
            clients,
        } => {
            let seconds = duration.as_secs_f64().round().max(1.0) as u32;
            let run = pgbench::run(
                target,
                &lab.app,
                &lab.script_file(script, config),
                mode,
                clients,
                seconds,
                lab.dir(),
            )?;
            Sample {
                tps: run.tps,
                transactions: run.transactions,
                statements: run.transactions * per_tx,
                failed: run.failed,
                latencies_us: run.latencies_us,
                elapsed: run.elapsed,
                ..Sample::default()
            }
        }
        Driver::Copy { rows, clients } => {
            let run = rt.block_on(driver::copy_in(target, &lab.app, clients, rows, duration))?;
            driver_sample(run, per_tx)
        }
        Driver::ConnectionStorm { clients } => {
            let run = rt.block_on(driver::connection_storm(
                target, &lab.app, clients, duration,
            ))?;
            driver_sample(run, per_tx)
        }
        Driver::Sessions { .. } | Driver::Unavailable => {
            bail!("{} is not an interleaved workload", workload.name)
        }
    };
    if sample.transactions == 0 {
        bail!("no transaction completed ({} failed)", sample.failed);
    }
    Ok(sample)
}

fn driver_sample(run: driver::DriverRun, per_tx: u64) -> Sample {
    Sample {
        tps: run.tps(),
        transactions: run.operations,
        statements: run.operations * per_tx,
        failed: run.failed,
        elapsed: run.elapsed,
        latencies_us: run.latencies_us,
        ..Sample::default()
    }
}

/// How a configuration is set up for a many-sessions run.
struct SessionsSetup {
    proxy: Option<Proxy>,
    /// A pooler behind warden, stopped with it.
    pooler: Option<Proxy>,
    target: Target,
}

/// Pool size of the transaction-mode PgBouncer used where PostgreSQL cannot hold a backend
/// per session.
const TX_POOL: u32 = 20;

/// The many-sessions workloads: fresh proxies; RSS before, with every session idle, and
/// after `active` sessions ran point selects for the run's duration.
fn run_sessions(
    lab: &Lab,
    rt: &Runtime,
    workload: &'static Workload,
    sessions: u32,
    active: u32,
    plan: &Plan,
) -> Vec<Cell> {
    // A backend per session fits only below max_connections (less room for the harness).
    let fits = sessions + 50 <= plan.max_connections;
    let configs = available(workload);
    let mut notes: Vec<Option<String>> = vec![None; configs.len()];
    let mut outcomes: Vec<Result<Vec<Sample>, String>> = vec![Ok(Vec::new()); configs.len()];
    for (i, c) in configs.iter().enumerate() {
        if fits {
            continue;
        }
        match c.id {
            ConfigId::Direct => {
                outcomes[i] = Err(format!(
                    "not measured: PostgreSQL would need {sessions} backends \
                     (max_connections here is {}; ~2 MiB each)",
                    plan.max_connections
                ));
            }
            ConfigId::PgBouncer => {
                notes[i] = Some(format!(
                    "transaction mode, {TX_POOL} server connections (session mode needs a backend per client)"
                ));
            }
            _ => {
                notes[i] = Some(format!(
                    "upstream: PgBouncer transaction mode, {TX_POOL} server connections \
                     (warden opens one upstream connection per client session)"
                ));
            }
        }
    }
    for rep in 1..=plan.repetitions {
        for i in rotated(&(0..configs.len()).collect::<Vec<_>>(), rep as usize - 1) {
            let Ok(list) = &mut outcomes[i] else { continue };
            let config = configs[i];
            match sessions_once(lab, rt, config.id, fits, sessions, active, plan) {
                Ok(mut sample) => {
                    sample.repetition = rep;
                    eprintln!(
                        "   rep {rep} {:<14} {sessions} sessions, {:>8.0} tps{}{}",
                        config.name,
                        sample.tps,
                        sample
                            .idle_session_kib()
                            .map(|k| format!(", {k:.1} KiB/idle session"))
                            .unwrap_or_default(),
                        match sample.audit_records {
                            Some(r) => format!(", audit {r}/{}", sample.statements),
                            None => String::new(),
                        }
                    );
                    list.push(sample);
                }
                Err(e) => {
                    eprintln!("   rep {rep} {:<14} FAILED: {e:#}", config.name);
                    outcomes[i] = Err(format!("{e:#}"));
                }
            }
        }
    }
    let cells: Vec<Cell> = configs
        .iter()
        .zip(outcomes)
        .zip(notes)
        .map(|((config, outcome), note)| Cell {
            workload,
            config,
            outcome: match outcome {
                Ok(list) => Outcome::Measured(list),
                Err(e) if e.starts_with("not measured: ") => {
                    Outcome::NotMeasured(e.trim_start_matches("not measured: ").to_string())
                }
                Err(e) => Outcome::Failed(e),
            },
            note,
        })
        .collect();
    complete(workload, cells)
}

fn sessions_setup(lab: &Lab, config: ConfigId, fits: bool, sessions: u32) -> Result<SessionsSetup> {
    let (proxy, pooler) = match (config, fits) {
        (ConfigId::Direct, _) => (None, None),
        (ConfigId::PgBouncer, true) => (
            Some(lab.fresh_pgbouncer(PoolMode::Session, sessions + 10)?),
            None,
        ),
        (ConfigId::PgBouncer, false) => (
            Some(lab.fresh_pgbouncer(PoolMode::Transaction, TX_POOL)?),
            None,
        ),
        (ConfigId::Passthrough | ConfigId::Audit, _) => {
            let audit = config == ConfigId::Audit;
            if fits {
                (Some(lab.fresh_warden(audit, lab.pg.addr())?), None)
            } else {
                let pooler = lab.fresh_pgbouncer(PoolMode::Transaction, TX_POOL)?;
                let Proxy::PgBouncer(b) = &pooler else {
                    unreachable!()
                };
                let server = std::net::SocketAddr::from(([127, 0, 0, 1], b.port()));
                (Some(lab.fresh_warden(audit, server)?), Some(pooler))
            }
        }
        (ConfigId::Encryption, _) => {
            bail!("warden-enc does not run the many-sessions workloads")
        }
        (ConfigId::MaskingFirewall, _) => {
            bail!("configuration {config:?} is not built yet")
        }
    };
    let target = match &proxy {
        Some(p) => lab.proxy_target(p)?,
        None => lab.direct(),
    };
    Ok(SessionsSetup {
        proxy,
        pooler,
        target,
    })
}

fn sessions_once(
    lab: &Lab,
    rt: &Runtime,
    config: ConfigId,
    fits: bool,
    sessions: u32,
    active: u32,
    plan: &Plan,
) -> Result<Sample> {
    let setup = sessions_setup(lab, config, fits, sessions)?;
    let result = sessions_measure(lab, rt, &setup, config, sessions, active, plan);
    if let Some(p) = setup.proxy {
        p.stop()?;
    }
    if let Some(p) = setup.pooler {
        p.stop()?;
    }
    lab.wait_backends_at_most(20)?;
    result
}

fn sessions_measure(
    lab: &Lab,
    rt: &Runtime,
    setup: &SessionsSetup,
    config: ConfigId,
    sessions: u32,
    active: u32,
    plan: &Plan,
) -> Result<Sample> {
    let pid = setup.proxy.as_ref().map(Proxy::pid);
    let warden = audited(setup.proxy.as_ref(), config);
    let audit_before = warden.map(audit_counters).transpose()?;
    std::thread::sleep(Duration::from_millis(300));
    let baseline = pid.map(procfs::rss_kib).transpose()?;
    let opened = Instant::now();
    let clients = rt
        .block_on(driver::open_sessions(&setup.target, &lab.md5, sessions, 32))
        .with_context(|| format!("opening {sessions} sessions"))?;
    let open_time = opened.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let idle = pid.map(procfs::rss_kib).transpose()?;
    let cpu_before = pid.map(procfs::cpu_time).transpose()?;
    let busy: Vec<Arc<tokio_postgres::Client>> = clients[..active as usize].to_vec();
    let run = rt.block_on(driver::point_selects(&busy, lab.accounts(), plan.duration))?;
    let cpu_after = pid.map(procfs::cpu_time).transpose()?;
    let loaded = pid.map(procfs::rss_kib).transpose()?;
    drop(busy);
    rt.block_on(async move { drop(clients) });
    eprintln!(
        "   ({sessions} sessions opened in {:.1} s)",
        open_time.as_secs_f64()
    );
    let mut sample = driver_sample(run, 1);
    // A query that failed at the server was still run (and audited).
    sample.statements += sample.failed;
    if let (Some(w), Some(before)) = (warden, audit_before) {
        sample.audit_records = Some(settle_audit(w, before)?);
    }
    sample.proxy_cpu = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b));
    sample.proxy_rss_kib = loaded;
    sample.baseline_rss_kib = baseline;
    sample.idle_rss_kib = idle;
    sample.sessions = Some(u64::from(sessions));
    if sample.transactions == 0 {
        bail!("no query completed ({} failed)", sample.failed);
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_moves_the_first_to_the_back() {
        assert_eq!(rotated(&[1, 2, 3], 0), vec![1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 1), vec![2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 4), vec![2, 3, 1]);
    }

    #[test]
    fn cells_come_in_report_order_and_say_why_they_were_not_run() {
        let lookup = crate::catalog::workload("enc-lookup").unwrap();
        let configs = available(lookup);
        assert_eq!(
            configs.iter().map(|c| c.id).collect::<Vec<_>>(),
            [ConfigId::Direct, ConfigId::Encryption]
        );
        let measured = configs
            .iter()
            .rev()
            .map(|&config| Cell {
                workload: lookup,
                config,
                outcome: Outcome::Failed("x".into()),
                note: None,
            })
            .collect();
        let cells = complete(lookup, measured);
        assert_eq!(cells.len(), CONFIGURATIONS.len());
        for (cell, config) in cells.iter().zip(CONFIGURATIONS) {
            assert_eq!(cell.config.id, config.id);
            let expected = match config.id {
                ConfigId::Direct | ConfigId::Encryption => "failed",
                ConfigId::MaskingFirewall => "not available",
                _ => "not applicable",
            };
            let got = match &cell.outcome {
                Outcome::Failed(_) => "failed",
                Outcome::NotAvailable(_) => "not available",
                Outcome::NotApplicable(_) => "not applicable",
                _ => "other",
            };
            assert_eq!(got, expected, "{}", config.name);
        }
        let select = crate::catalog::workload("pg-select-simple").unwrap();
        assert!(
            !available(select)
                .iter()
                .any(|c| c.id == ConfigId::Encryption)
        );
    }

    #[test]
    fn idle_session_memory() {
        let s = Sample {
            baseline_rss_kib: Some(10_000),
            idle_rss_kib: Some(30_000),
            sessions: Some(1000),
            ..Sample::default()
        };
        assert_eq!(s.idle_session_kib(), Some(20.0));
        assert_eq!(Sample::default().idle_session_kib(), None);
    }
}
