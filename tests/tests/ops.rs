//! Operating warden: Prometheus metrics, health and readiness, structured logs, the drain on
//! SIGTERM, the configuration reload on SIGHUP, and `warden config check`.
//!
//! Metrics are checked by family, type and movement, never by exact value or timing.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use warden_tests::fixtures::{self, app_login};
use warden_tests::pg::{ConnectOptions, Session, Target, sqlstate};
use warden_tests::poll::eventually;
use warden_tests::scratch::unique_name;
use warden_tests::warden::{Metrics, UpstreamSpec, Warden, WardenConfig, summarize, warden_cli};

/// The metric families warden exports, with their Prometheus types.
const FAMILIES: &[(&str, &str)] = &[
    ("warden_sessions_active", "gauge"),
    ("warden_sessions_total", "counter"),
    ("warden_statements_total", "counter"),
    ("warden_bytes_total", "counter"),
    ("warden_statement_duration_seconds", "histogram"),
    ("warden_audit_queue_depth", "gauge"),
    ("warden_audit_records_written_total", "counter"),
    ("warden_audit_records_waited_total", "counter"),
];

async fn run_selects(session: &Session, n: usize) -> Result<()> {
    for i in 0..n {
        let v: i32 = session
            .query_one("SELECT $1::int4", &[&(i as i32)])
            .await?
            .get(0);
        ensure!(v == i as i32);
    }
    Ok(())
}

/// Every family exists with its type, statements are counted by kind and upstream, and the
/// counters move with traffic: sessions, statements, bytes in both directions, the latency
/// histogram, and audit records written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exist_and_move_with_traffic() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let target = warden.target("main")?;
            let warm = target
                .connect(&app_login(), &ConnectOptions::app("o-metrics"))
                .await?;
            run_selects(&warm, 2).await?;
            drop(warm);
            let before = warden.metrics()?;
            for (family, kind) in FAMILIES {
                ensure!(
                    before.family_type(family) == Some(*kind),
                    "metric family {family} should be a {kind}, /metrics says {:?}",
                    before.family_type(family)
                );
            }
            ensure!(
                before.has("warden_statement_duration_seconds_bucket")
                    && before.has("warden_statement_duration_seconds_count")
                    && before.has("warden_statement_duration_seconds_sum"),
                "the latency histogram has no buckets, count or sum"
            );
            ensure!(
                before
                    .label_values("warden_statements_total", "upstream")
                    .contains("main"),
                "statements are not labelled with their upstream"
            );

            let session = target
                .connect(&app_login(), &ConnectOptions::app("o-metrics"))
                .await?;
            let n = 25;
            run_selects(&session, n).await?;
            let during = warden.metrics()?;
            ensure!(
                during.sum("warden_sessions_active", &[]) >= 1.0,
                "a session is open but warden_sessions_active is {}",
                during.sum("warden_sessions_active", &[])
            );
            drop(session);

            let grew = |after: &Metrics, name: &str, labels: &[(&str, &str)], by: f64| {
                after.sum(name, labels) - before.sum(name, labels) >= by
            };
            eventually("the counters to move", Duration::from_secs(20), || async {
                let after = warden.metrics()?;
                let checks = [
                    (
                        "sessions_total",
                        grew(&after, "warden_sessions_total", &[], 1.0),
                    ),
                    (
                        "select statements",
                        grew(
                            &after,
                            "warden_statements_total",
                            &[("kind", "select"), ("upstream", "main")],
                            n as f64,
                        ),
                    ),
                    (
                        "bytes client_to_server",
                        grew(
                            &after,
                            "warden_bytes_total",
                            &[("direction", "client_to_server")],
                            1.0,
                        ),
                    ),
                    (
                        "bytes server_to_client",
                        grew(
                            &after,
                            "warden_bytes_total",
                            &[("direction", "server_to_client")],
                            1.0,
                        ),
                    ),
                    (
                        "latency histogram count",
                        grew(
                            &after,
                            "warden_statement_duration_seconds_count",
                            &[],
                            n as f64,
                        ),
                    ),
                    (
                        "audit records written",
                        grew(&after, "warden_audit_records_written_total", &[], n as f64),
                    ),
                ];
                let stuck: Vec<&str> = checks
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(n, _)| *n)
                    .collect();
                Ok(if stuck.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not moved: {stuck:?}"))
                })
            })
            .await
        })
        .await
}

/// /healthz and /readyz answer 200 on a running, ready warden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            ensure!(warden.healthz()? == 200, "/healthz is not 200");
            ensure!(warden.readyz()? == 200, "/readyz is not 200");
            Ok(())
        })
        .await
}

/// Whether a new session can be opened right now.
async fn accepts_sessions(target: &Target) -> Result<bool> {
    Ok(target
        .try_connect(&app_login(), &ConnectOptions::app("o-probe"))
        .await?
        .is_ok())
}

/// Checks that a session was ended by the drain: FATAL 57P01 (admin shutdown), like
/// PostgreSQL's own fast shutdown.
async fn ended_by_drain(session: Session, what: &str) -> Result<()> {
    match session.ended(Duration::from_secs(30)).await? {
        Err(e) if sqlstate(&e) == Some("57P01") => Ok(()),
        Err(e) => bail!("{what} ended with {e:?}, not FATAL 57P01"),
        Ok(()) => bail!("{what} was closed without FATAL 57P01 (admin shutdown)"),
    }
}

/// SIGTERM: new sessions are refused at once; a statement running in an open transaction
/// finishes and the transaction can still commit; idle sessions are told 57P01 and closed;
/// warden exits 0 once the sessions are gone, and the audit store holds every statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_sessions_and_flushes_the_audit() -> Result<()> {
    let warden = Warden::start(
        WardenConfig::new(fixtures::main_upstream()?).limit("drain_timeout_ms", 30_000),
    )?;
    warden
        .watch(async {
            let pg = fixtures::pg()?;
            let admin = pg.admin_in(fixtures::APP_DATABASE).await?;
            let target = warden.target("main")?;
            let program = unique_name("o-drain");
            let t = unique_name("drained");
            let busy = target
                .connect(&app_login(), &ConnectOptions::app(&program))
                .await?;
            let idle = target
                .connect(&app_login(), &ConnectOptions::app(&program))
                .await?;
            busy.simple_query(&format!("CREATE TABLE {t} (id int)"))
                .await?;
            busy.simple_query("BEGIN").await?;
            busy.simple_query(&format!("INSERT INTO {t} VALUES (1)"))
                .await?;
            let pid = busy.backend_pid().await?;
            let sleeping = tokio::spawn(async move {
                let result = busy.simple_query("SELECT pg_sleep(1)").await;
                (busy, result)
            });
            eventually("the statement to run", Duration::from_secs(10), || async {
                let state: Option<String> = admin
                    .query_opt("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
                    .await?
                    .and_then(|r| r.get(0));
                Ok(if state.as_deref() == Some("active") {
                    Ok(())
                } else {
                    Err(format!("{state:?}"))
                })
            })
            .await?;

            warden.send_terminate()?;
            eventually(
                "new sessions to be refused",
                Duration::from_secs(10),
                || async {
                    Ok(if accepts_sessions(&target).await? {
                        Err("a new session was accepted".into())
                    } else {
                        Ok(())
                    })
                },
            )
            .await?;
            let (busy, slept) = sleeping.await?;
            slept.context("the statement running at SIGTERM did not finish")?;
            busy.simple_query("COMMIT")
                .await
                .context("the open transaction could not commit during the drain")?;
            ended_by_drain(idle, "the idle session").await?;
            ended_by_drain(busy, "the session that committed").await?;

            let status = warden.wait_exit(Duration::from_secs(30))?;
            ensure!(
                status.success(),
                "warden exited with {status} after the drain"
            );
            ensure!(!accepts_sessions(&target).await?);

            let count: i64 = admin
                .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await?
                .get(0);
            ensure!(count == 1, "the committed row is missing");

            // The store, read after the exit, holds every statement and both session ends.
            let records = warden.audit_query(&["--program", &program])?;
            let listing = summarize(&records);
            for needle in [
                "CREATE TABLE",
                "BEGIN",
                "INSERT",
                "pg_backend_pid",
                "pg_sleep",
                "COMMIT",
            ] {
                ensure!(
                    records
                        .iter()
                        .any(|r| r.event() == "statement" && r.sql().contains(needle)),
                    "no audit record for the {needle} statement:\n{listing}"
                );
            }
            ensure!(
                records
                    .iter()
                    .filter(|r| r.event() == "session_end")
                    .count()
                    == 2,
                "both sessions must have ended in the audit:\n{listing}"
            );
            Ok(())
        })
        .await
}

/// A session that stays in a transaction past the drain timeout is ended (57P01) when the
/// timeout passes, and warden still exits 0 with the session's end audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_ends_lingering_sessions() -> Result<()> {
    let warden = Warden::start(
        WardenConfig::new(fixtures::main_upstream()?).limit("drain_timeout_ms", 1500),
    )?;
    warden
        .watch(async {
            let program = unique_name("o-linger");
            let session = warden
                .target("main")?
                .connect(&app_login(), &ConnectOptions::app(&program))
                .await?;
            session.simple_query("BEGIN").await?;
            session.simple_query("SELECT 1").await?;
            warden.send_terminate()?;
            ended_by_drain(session, "the session in a transaction").await?;
            let status = warden.wait_exit(Duration::from_secs(30))?;
            ensure!(status.success(), "warden exited with {status}");
            let records = warden.audit_query(&["--program", &program, "--event", "session_end"])?;
            ensure!(records.len() == 1, "{}", summarize(&records));
            Ok(())
        })
        .await
}

/// Lines of warden's logs that mention a reload.
fn reload_mentions(warden: &Warden) -> usize {
    warden
        .log()
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("reload"))
        .count()
}

/// SIGHUP: a broken file is refused and the running configuration stays; a good file that
/// adds an upstream opens its listener, and one that removes it closes it; the open session
/// keeps its backend throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_without_dropping_sessions() -> Result<()> {
    let mut warden = Warden::start(WardenConfig::new(fixtures::main_upstream()?))?;
    let logs = warden.logs();
    let result = async {
        let main = warden.target("main")?;
        let session = main
            .connect(&app_login(), &ConnectOptions::app("o-reload"))
            .await?;
        let pid = session.backend_pid().await?;
        let good = std::fs::read_to_string(warden.config_path())?;

        let mentions = reload_mentions(&warden);
        warden.write_config_text("[admin\nthis is not TOML")?;
        warden.reload()?;
        eventually(
            "warden to log the refused reload",
            Duration::from_secs(10),
            || async {
                Ok(if reload_mentions(&warden) > mentions {
                    Ok(())
                } else {
                    Err("no reload logged".into())
                })
            },
        )
        .await?;
        ensure!(
            warden.is_running(),
            "a broken configuration on SIGHUP stopped warden"
        );
        ensure!(warden.readyz()? == 200);
        ensure!(session.backend_pid().await? == pid);
        ensure!(
            accepts_sessions(&main).await?,
            "the old listener stopped after a refused reload"
        );
        std::fs::write(warden.config_path(), &good)?;

        let mut second: UpstreamSpec = fixtures::main_upstream()?;
        second.name = "second".into();
        warden.rewrite_config(|c| c.upstreams.push(second))?;
        warden.reload()?;
        let added = warden.target("second")?;
        eventually(
            "the new upstream's listener",
            Duration::from_secs(10),
            || async {
                Ok(if accepts_sessions(&added).await? {
                    Ok(())
                } else {
                    Err("not accepting yet".into())
                })
            },
        )
        .await?;
        let through_new = added
            .connect(&app_login(), &ConnectOptions::app("o-reload-new"))
            .await?;
        through_new.simple_query("SELECT 1").await?;
        ensure!(
            session.backend_pid().await? == pid,
            "the reload replaced the open session's backend"
        );

        warden.rewrite_config(|c| c.upstreams.retain(|u| u.name != "second"))?;
        warden.reload()?;
        eventually(
            "the removed upstream's listener to close",
            Duration::from_secs(10),
            || async {
                Ok(if accepts_sessions(&added).await? {
                    Err("still accepting".into())
                } else {
                    Ok(())
                })
            },
        )
        .await?;
        ensure!(
            session.backend_pid().await? == pid,
            "the open session did not survive"
        );
        ensure!(accepts_sessions(&main).await?);
        Ok(())
    };
    warden_tests::watch::watch(&logs, warden_tests::watch::TEST_TIME_LIMIT, result).await
}

/// Structured logs: with `format = "json"`, every line warden writes is a JSON object with a
/// timestamp and a level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() -> Result<()> {
    let mut config = WardenConfig::new(fixtures::main_upstream()?);
    config.log_format = "json".into();
    config.log_level = "debug".into();
    let warden = Warden::start(config)?;
    warden
        .watch(async {
            let session = warden
                .target("main")?
                .connect(&app_login(), &ConnectOptions::app("o-json-logs"))
                .await?;
            session.simple_query("SELECT 1").await?;
            drop(session);
            let _ = warden
                .target("main")?
                .try_connect(
                    &app_login().with_password("wrong"),
                    &ConnectOptions::app("o-json-logs"),
                )
                .await?;
            let log = warden.log();
            let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            ensure!(
                lines.len() >= 2,
                "warden logged almost nothing at debug level:\n{log}"
            );
            for line in lines {
                let value: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("a log line is not JSON: {line}"))?;
                ensure!(
                    value.get("timestamp").is_some() && value.get("level").is_some(),
                    "a log line has no timestamp or level: {line}"
                );
            }
            Ok(())
        })
        .await
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> Result<usize> {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .with_context(|| format!("{needle:?} is not in the configuration"))
}

/// `warden config check FILE`: exit 0 on a good file; on a broken one, a non-zero exit and a
/// message naming the file, the line and the problem (an unknown key, a bad value, a missing
/// users file).
#[test]
fn config_check_names_the_line_and_the_problem() -> Result<()> {
    let warden = fixtures::warden()?;
    let good_path = warden.config_path().to_path_buf();
    let good = std::fs::read_to_string(&good_path)?;
    let run = warden_cli(&["config", "check", &good_path.to_string_lossy()], None)?;
    ensure!(
        run.success(),
        "a good configuration fails the check:\n{}",
        run.describe()
    );

    let broken: [(&str, String, &str); 3] = [
        (
            "unknown-key",
            good.replacen("level = ", "levle = ", 1),
            "levle = ",
        ),
        (
            "bad-mode",
            good.replacen("mode = \"verify-full\"", "mode = \"verify-everything\"", 1),
            "verify-everything",
        ),
        (
            "missing-users",
            good.replacen("users-main.txt", "missing-users.txt", 1),
            "missing-users.txt",
        ),
    ];
    for (name, text, needle) in broken {
        ensure!(text != good, "{name}: the edit did not apply");
        let path = warden.dir().join(format!("broken-{name}.toml"));
        std::fs::write(&path, &text)?;
        let run = warden_cli(&["config", "check", &path.to_string_lossy()], None)?;
        ensure!(
            !run.success(),
            "{name}: a broken configuration passes the check:\n{}",
            run.describe()
        );
        let out = run.all_output();
        let line = line_of(&text, needle)?;
        let file_and_line = format!("broken-{name}.toml:{line}");
        ensure!(
            out.contains(&file_and_line),
            "{name}: the message does not point at {file_and_line}:\n{}",
            run.describe()
        );
        let named = needle.trim_end_matches(" = ");
        ensure!(
            out.contains(named),
            "{name}: the message does not name {named:?}:\n{}",
            run.describe()
        );
    }
    Ok(())
}

/// `[audit] enabled = false`: statements still run, nothing is recorded (no store is even
/// opened), and warden says so everywhere an operator looks: the startup log, `/readyz`,
/// `warden_audit_enabled`, and `warden config check` (which still passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_audit_trail_is_loud() -> Result<()> {
    let mut config = WardenConfig::new(fixtures::main_upstream()?);
    config.audit.push(("enabled".into(), "false".into()));
    let warden = Warden::start(config)?;
    warden
        .watch(async {
            let session = warden
                .target("main")?
                .connect(&app_login(), &ConnectOptions::app("o-no-audit"))
                .await?;
            run_selects(&session, 3).await?;
            drop(session);
            ensure!(
                warden.log().contains("audit trail is DISABLED"),
                "no startup warning:\n{}",
                warden.log_tail(20)
            );
            let ready = warden.http_get("/readyz")?;
            ensure!(
                ready.status == 200 && ready.body.contains("DISABLED"),
                "/readyz does not say the trail is off: {} {}",
                ready.status,
                ready.body
            );
            let metrics = warden.metrics()?;
            ensure!(metrics.sum("warden_audit_enabled", &[]) == 0.0);
            ensure!(metrics.sum("warden_audit_records_written_total", &[]) == 0.0);
            ensure!(
                !warden.audit_dir().exists(),
                "a disabled trail opened a store"
            );
            let path = warden.config_path().to_string_lossy().into_owned();
            let run = warden_cli(&["config", "check", &path], None)?;
            ensure!(run.success(), "the check fails:\n{}", run.describe());
            ensure!(
                run.all_output().contains("DISABLED"),
                "the check does not warn:\n{}",
                run.describe()
            );
            Ok(())
        })
        .await?;
    let status = warden.terminate(Duration::from_secs(20))?;
    ensure!(status.success(), "warden exited with {status}");
    Ok(())
}
