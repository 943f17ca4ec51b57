//! The harness's own guarantees, checked against PostgreSQL alone (no proxy involved):
//! the throwaway cluster authenticates and encrypts as the proxy tests assume, the raw
//! protocol client logs in with SCRAM and md5, and servers never outlive a test process,
//! whether it ends normally, panics, or is killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::config::ChannelBinding;
use warden_tests::fixtures::{self, app_login, md5_login};
use warden_tests::pg::wire::{RawConnection, Startup};
use warden_tests::pg::{ClientTls, ConnectOptions, PgInstance};
use warden_tests::poll::eventually_blocking;

/// SCRAM with channel binding over verified TLS works directly: the baseline for the same
/// check through warden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_demands_scram_and_offers_tls() -> Result<()> {
    let direct = fixtures::direct()?;
    direct
        .watch(async {
            let options = ConnectOptions {
                channel_binding: ChannelBinding::Require,
                ..ConnectOptions::app("harness-scram")
            };
            let session = direct.connect(&app_login(), &options).await?;
            let row = session
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await?;
            ensure!(row.get::<_, bool>(0), "the direct session is not encrypted");

            let wrong = app_login().with_password("not the password");
            let refused = direct
                .try_connect(&wrong, &ConnectOptions::default())
                .await?;
            let error = refused.err().context("a wrong password was accepted")?;
            ensure!(
                error.code().map(|c| c.code()) == Some("28P01"),
                "a wrong password gave {error:?}, not 28P01"
            );

            let md5 = direct
                .connect(
                    &md5_login(),
                    &ConnectOptions::default().tls(ClientTls::Disable),
                )
                .await?;
            md5.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
}

/// The raw protocol client authenticates with both SCRAM (verifying the server's signature)
/// and md5, and sees the mechanisms PostgreSQL offers with and without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_logs_in_with_scram_and_md5() -> Result<()> {
    let direct = fixtures::direct()?;
    let addr = format!("{}:{}", direct.host, direct.port).parse()?;
    direct
        .watch(async {
            let mut plain = RawConnection::connect(addr).await?;
            match plain.login(&app_login(), &[]).await? {
                Startup::Ready {
                    sasl_mechanisms,
                    backend_key,
                    ..
                } => {
                    ensure!(
                        sasl_mechanisms == vec!["SCRAM-SHA-256".to_string()],
                        "without TLS only SCRAM-SHA-256 may be offered: {sasl_mechanisms:?}"
                    );
                    ensure!(backend_key.is_some(), "no BackendKeyData");
                }
                Startup::Refused(e) => bail!("refused: {}", e.describe()),
            }
            let rows = plain.simple_query("SELECT 40 + 2").await?;
            ensure!(
                rows.iter()
                    .any(|m| m.tag == b'D' && m.body.ends_with(b"42")),
                "no row 42 in {rows:?}"
            );

            let config = warden_tests::tls::client_config(
                &warden_tests::tls::ServerCheck::VerifyFull {
                    ca: direct.ca_cert.clone(),
                },
                None,
            )?;
            let mut tls = RawConnection::connect(addr)
                .await?
                .start_tls(config, "127.0.0.1")
                .await?;
            match tls.login(&app_login(), &[]).await? {
                Startup::Ready {
                    sasl_mechanisms, ..
                } => ensure!(
                    sasl_mechanisms.contains(&"SCRAM-SHA-256-PLUS".to_string()),
                    "over TLS SCRAM-SHA-256-PLUS must be offered: {sasl_mechanisms:?}"
                ),
                Startup::Refused(e) => bail!("refused: {}", e.describe()),
            }

            let mut md5 = RawConnection::connect(addr).await?;
            md5.login(&md5_login(), &[]).await?;
            let mut wrong = RawConnection::connect(addr).await?;
            match wrong
                .startup(&md5_login().with_password("wrong"), &[])
                .await?
            {
                Startup::Refused(e) => ensure!(
                    e.sqlstate().as_deref() == Some("28P01"),
                    "wrong md5 password: {}",
                    e.describe()
                ),
                Startup::Ready { .. } => bail!("a wrong md5 password was accepted"),
            }
            Ok(())
        })
        .await
}

/// Helper run in a child test process by the tests below: starts a cluster (the shared one
/// when `WARDEN_HARNESS_SHARED` is set), prints its postgres pid and directory, then either
/// panics or waits to be killed.
#[test]
#[ignore = "run as a child process by the two tests below"]
fn helper_start_a_cluster_then_die() {
    let shared = std::env::var_os("WARDEN_HARNESS_SHARED").is_some();
    let (pid, root) = if shared {
        let pg = fixtures::pg().expect("shared cluster");
        (pg.pid(), pg.root().to_path_buf())
    } else {
        let pg = Box::leak(Box::new(PgInstance::start().expect("cluster")));
        (pg.pid(), pg.root().to_path_buf())
    };
    println!("CLUSTER {pid} {}", root.display());
    if std::env::var_os("WARDEN_HARNESS_PANIC").is_some() {
        panic!("the helper panics on purpose");
    }
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts the helper and returns it with the postgres pid and cluster directory it printed.
fn start_helper(env: &[(&str, &str)]) -> Result<(std::process::Child, i32, String)> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "--exact",
            "helper_start_a_cluster_then_die",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = loop {
        let line = lines
            .next()
            .context("the helper exited without starting a cluster")??;
        // libtest prints "test NAME ... " on the same line first.
        if let Some(at) = line.find("CLUSTER ") {
            break line[at + "CLUSTER ".len()..].to_string();
        }
    };
    let (pid, dir) = line.split_once(' ').context("bad helper line")?;
    // Keep draining stdout so the helper never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((child, pid.parse()?, dir.to_string()))
}

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A test process killed with SIGKILL runs no cleanup: the parent-death signal must stop its
/// cluster, and the next test process sweeps the directory away.
#[test]
fn child_servers_die_when_the_test_process_is_killed() -> Result<()> {
    let (mut child, pid, dir) = start_helper(&[])?;
    ensure!(alive(pid), "the helper's postgres {pid} is not running");
    child.kill()?;
    child.wait()?;
    eventually_blocking(
        "postgres exits after its test process was killed",
        Duration::from_secs(20),
        || {
            Ok(if alive(pid) {
                Err(format!("pid {pid} alive"))
            } else {
                Ok(())
            })
        },
    )?;
    ensure!(
        std::path::Path::new(&dir).exists(),
        "a killed process cannot clean up; the directory should still be there"
    );
    warden_tests::scratch::sweep_stale();
    ensure!(
        !std::path::Path::new(&dir).exists(),
        "the stale cluster directory {dir} was not swept"
    );
    Ok(())
}

/// A test process whose test panics exits normally afterwards: the exit hooks stop the shared
/// cluster and remove its directory before the process is gone.
#[test]
fn shared_cluster_is_removed_when_the_test_process_ends() -> Result<()> {
    let (mut child, pid, dir) = start_helper(&[
        ("WARDEN_HARNESS_SHARED", "1"),
        ("WARDEN_HARNESS_PANIC", "1"),
    ])?;
    let status = child.wait()?;
    ensure!(!status.success(), "the helper was meant to fail");
    ensure!(!alive(pid), "postgres {pid} outlived its test process");
    ensure!(
        !std::path::Path::new(&dir).exists(),
        "the exit hook left {dir} behind"
    );
    Ok(())
}
