//! Real MySQL clients through warden, compared with the same client directly: the mariadb CLI
//! (byte-for-byte output, COM_INIT_DB, LOAD DATA LOCAL, ed25519 logins) and sysbench
//! (`oltp_read_write` prepare and a short run with server-side prepared statements, whose
//! later executions omit the parameter types).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use warden_tests::equivalence::same_run;
use warden_tests::mysql::fixtures::{self, app_login};
use warden_tests::scratch::unique_name;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_output_is_the_same() -> Result<()> {
    let direct = fixtures::direct()?;
    let proxied = fixtures::through_warden()?;
    proxied
        .watch(async {
            let t = unique_name("cli");
            let script = format!(
                "CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(20), amount DECIMAL(8,2), at DATETIME);\n\
                 INSERT INTO {t} VALUES (1, 'one', 1.50, '2024-01-01 10:00:00'), (2, NULL, -3.25, NULL);\n\
                 SELECT * FROM {t} ORDER BY id;\n\
                 SELECT id, name FROM {t} WHERE id = 2\\G\n\
                 use {db}\n\
                 SELECT DATABASE(), 1+1;\n\
                 SELECT * FROM no_such_table_{t};\n",
                db = fixtures::DATABASE
            );
            let args = ["--table", "--force", "--comments"];
            let a = direct.mariadb(&app_login(), &args, Some(&script))?;
            direct.mariadb(&app_login(), &["-e", &format!("DROP TABLE {t}")], None)?;
            let b = proxied.mariadb(&app_login(), &args, Some(&script))?;
            direct.mariadb(&app_login(), &["-e", &format!("DROP TABLE {t}")], None)?;
            same_run("mariadb script", &a, &b)?;
            ensure!(a.stdout_text().contains("| one  |"), "{}", a.describe());
            ensure!(a.stderr_text().contains("1146"), "{}", a.describe());
            Ok(())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_logs_in_with_ed25519_and_tls() -> Result<()> {
    let proxied = fixtures::through_warden()?;
    proxied
        .watch(async {
            let ed = fixtures::login(fixtures::ED25519_USER);
            let run = proxied.mariadb(&ed, &["--batch", "-e", "SELECT CURRENT_USER()"], None)?;
            ensure!(run.success(), "{}", run.describe());
            ensure!(
                run.stdout_text()
                    .contains(&format!("{}@%", fixtures::ED25519_USER)),
                "{}",
                run.describe()
            );
            let ca = proxied.ca_cert.display().to_string();
            let run = proxied.mariadb(
                &app_login(),
                &[
                    "--ssl",
                    &format!("--ssl-ca={ca}"),
                    "--ssl-verify-server-cert",
                    "--batch",
                    "-e",
                    "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
                ],
                None,
            )?;
            // The client verifies warden's certificate for 127.0.0.1.
            ensure!(run.success(), "{}", run.describe());
            let wrong = proxied.mariadb(&ed.with_password("wrong"), &["-e", "SELECT 1"], None)?;
            ensure!(!wrong.success(), "a wrong ed25519 password logged in");
            ensure!(wrong.stderr_text().contains("1045"), "{}", wrong.describe());
            Ok(())
        })
        .await
}

fn sysbench_available() -> bool {
    std::process::Command::new("sysbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_read_write_runs_through_warden() -> Result<()> {
    ensure!(
        sysbench_available(),
        "sysbench is not installed (Debian: apt-get install sysbench; .ci/run installs it)"
    );
    let proxied = fixtures::through_warden()?;
    let direct = fixtures::direct()?;
    proxied
        .watch(async {
            let table_prefix = unique_name("sb");
            // sysbench names its tables sbtest<N>: give this run its own schema.
            let schema = table_prefix.clone();
            fixtures::mariadb()?.admin_sql(&format!(
                "CREATE DATABASE {schema}; GRANT ALL ON {schema}.* TO '{}'@'%'",
                fixtures::APP_USER
            ))?;
            let mut login = app_login();
            login.database = schema.clone();
            let common = ["oltp_read_write", "--tables=2", "--table-size=2000"];
            let prepare = proxied.sysbench(
                &login,
                &[&common[..], &["prepare"]].concat(),
                Duration::from_secs(180),
            )?;
            ensure!(prepare.success(), "{}", prepare.describe());
            for target in [&direct, &proxied] {
                let run = target.sysbench(
                    &login,
                    &[
                        &common[..],
                        &["--threads=4", "--time=3", "--report-interval=0", "run"],
                    ]
                    .concat(),
                    Duration::from_secs(120),
                )?;
                ensure!(run.success(), "{:?}: {}", target.via, run.describe());
                let out = run.stdout_text();
                ensure!(
                    out.contains("transactions:") && !out.contains("FATAL"),
                    "{:?}: {}",
                    target.via,
                    run.describe()
                );
                // Deadlocks between sysbench's own threads are retried and reported as
                // "ignored errors", directly as through warden; anything else fails the run.
            }
            fixtures::mariadb()?.admin_sql(&format!("DROP DATABASE {schema}"))?;
            Ok(())
        })
        .await
}

/// Not a pass/fail test: measures sysbench `oltp_read_only` transactions per second directly
/// and through warden in the same run, and prints both. Run it against a release build:
///
/// ```sh
/// cargo build --release -p warden-proxy
/// WARDEN_BIN=target/release/warden cargo test -p warden-tests --test mysql_clients \
///     sysbench_read_only_direct_vs_warden -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it by name with --ignored"]
async fn sysbench_read_only_direct_vs_warden() -> Result<()> {
    ensure!(sysbench_available(), "sysbench is not installed");
    // Plain TCP on both legs, as the direct connection: the comparison measures the relay.
    let mut spec = fixtures::upstream()?;
    spec.server_tls = warden_tests::warden::ServerTlsSpec {
        mode: "disable".into(),
        ca: None,
        server_name: None,
    };
    let warden =
        warden_tests::warden::Warden::start(warden_tests::warden::WardenConfig::new(spec))?;
    let proxied = warden.my_target("mysql")?;
    let direct = fixtures::direct()?;
    let schema = unique_name("sbro");
    fixtures::mariadb()?.admin_sql(&format!(
        "CREATE DATABASE {schema}; GRANT ALL ON {schema}.* TO '{}'@'%'",
        fixtures::APP_USER
    ))?;
    let mut login = app_login();
    login.database = schema;
    let threads = std::env::var("SYSBENCH_THREADS").unwrap_or_else(|_| "4".into());
    let seconds = std::env::var("SYSBENCH_TIME").unwrap_or_else(|_| "20".into());
    let common = ["oltp_read_only", "--tables=4", "--table-size=10000"];
    let prepare = direct.sysbench(
        &login,
        &[&common[..], &["prepare"]].concat(),
        Duration::from_secs(300),
    )?;
    ensure!(prepare.success(), "{}", prepare.describe());
    let tps = |out: &str| -> Option<f64> {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with("transactions:"))?;
        let inner = line.split('(').nth(1)?;
        inner.split_whitespace().next()?.parse().ok()
    };
    let mut results = Vec::new();
    for (label, target) in [
        ("direct", &direct),
        ("warden", &proxied),
        ("direct", &direct),
        ("warden", &proxied),
    ] {
        let run = target.sysbench(
            &login,
            &[
                &common[..],
                &[
                    &format!("--threads={threads}"),
                    &format!("--time={seconds}"),
                    "run",
                ],
            ]
            .concat(),
            Duration::from_secs(600),
        )?;
        ensure!(run.success(), "{label}: {}", run.describe());
        let value = tps(&run.stdout_text()).context("no TPS in sysbench's output")?;
        println!(
            "sysbench oltp_read_only {label}: {value:.1} TPS ({threads} threads, {seconds} s)"
        );
        results.push((label, value));
    }
    let mean = |l: &str| {
        let v: Vec<f64> = results
            .iter()
            .filter(|(k, _)| *k == l)
            .map(|(_, v)| *v)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "mean: direct {:.1} TPS, warden {:.1} TPS, ratio {:.3}",
        mean("direct"),
        mean("warden"),
        mean("warden") / mean("direct")
    );
    Ok(())
}
