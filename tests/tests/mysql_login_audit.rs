//! MySQL logins and the audit trail through warden: identity from connect attributes, one
//! record per statement with rows and errors, failed logins that close the connection,
//! caching_sha2_password terminated by warden (RSA exchange, TLS, fast path), compression
//! refused at the handshake, and `sql_mode` followed for analysis.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use mysql_async::prelude::*;
use warden_tests::mysql::fixtures::{self, app_login};
use warden_tests::mysql::{MyOptions, MyTls};
use warden_tests::scratch::unique_name;
use warden_tests::warden::{AuditRecord, Warden, WardenConfig, summarize};

const AUDIT_WAIT: Duration = Duration::from_secs(30);

fn program_records<'a>(records: &'a [AuditRecord], program: &str) -> Vec<&'a AuditRecord> {
    records
        .iter()
        .filter(|r| r.str("program") == Some(program))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_logins_and_session_ends_are_audited() -> Result<()> {
    let warden = fixtures::warden()?;
    let target = warden.my_target("mysql")?;
    target
        .watch(async {
            let program = unique_name("audit-prog");
            let t = unique_name("audited");
            let options = MyOptions {
                attributes: vec![
                    ("_client_name".into(), "warden-tests".into()),
                    ("_os".into(), "Linux".into()),
                    ("_pid".into(), std::process::id().to_string()),
                ],
                ..MyOptions::program(&program)
            };
            let mut conn = target.connect(&app_login(), &options).await?;
            conn.query_drop(format!(
                "CREATE TABLE {t} (id INT PRIMARY KEY, secret VARCHAR(20))"
            ))
            .await?;
            conn.query_drop(format!(
                "INSERT INTO {t} VALUES (1, 'hunter2-literal'), (2, 'b'), (3, 'c')"
            ))
            .await?;
            let rows: Vec<(i32,)> = conn
                .exec(format!("SELECT id FROM {t} WHERE id >= ?"), (2,))
                .await?;
            ensure!(rows.len() == 2);
            let _ = conn.query_drop(format!("SELECT nope FROM {t}")).await;
            conn.query_drop(format!("DROP TABLE {t}")).await?;
            conn.disconnect().await?;
            let wrong = target
                .connect(
                    &app_login().with_password("wrong"),
                    &MyOptions::program(&program),
                )
                .await;
            ensure!(wrong.is_err(), "a wrong password logged in");

            let records = warden.wait_for_audit(&["--limit", "100000"], AUDIT_WAIT, |all| {
                let mine = program_records(all, &program);
                mine.iter().any(|r| r.event() == "session_end")
                    && mine.iter().any(|r| r.event() == "login_failed")
            })?;
            let mine = program_records(&records, &program);
            let listing = summarize(&mine.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
            for r in &mine {
                ensure!(
                    r.str("protocol") == Some("mysql"),
                    "protocol in {}",
                    r.pretty()
                );
                ensure!(
                    r.str("user") == Some(fixtures::APP_USER),
                    "user in {}",
                    r.pretty()
                );
                ensure!(
                    r.str("database") == Some(fixtures::DATABASE),
                    "db in {}",
                    r.pretty()
                );
                ensure!(r.str("client_ip") == Some("127.0.0.1"));
                ensure!(
                    !r.pretty().contains("hunter2-literal"),
                    "a literal reached the audit store:\n{}",
                    r.pretty()
                );
            }
            let login = mine
                .iter()
                .find(|r| r.event() == "login")
                .context("no login record")?;
            ensure!(
                login.str("message").is_some_and(
                    |m| m.contains("_client_name=warden-tests") && m.contains("_os=Linux")
                ),
                "connect attributes missing from the login record:\n{}",
                login.pretty()
            );
            let insert = mine
                .iter()
                .find(|r| r.statement_kind() == "insert")
                .with_context(|| format!("no insert record:\n{listing}"))?;
            ensure!(
                insert.u64("rows") == Some(3),
                "insert rows: {}",
                insert.pretty()
            );
            let select = mine
                .iter()
                .find(|r| {
                    r.statement_kind() == "select" && r.touches_table(&t) && r.result() == "ok"
                })
                .with_context(|| format!("no select record:\n{listing}"))?;
            ensure!(
                select.u64("rows") == Some(2),
                "select rows: {}",
                select.pretty()
            );
            let failed = mine
                .iter()
                .find(|r| r.result() == "error" && r.event() == "statement")
                .with_context(|| format!("no failed statement:\n{listing}"))?;
            ensure!(failed.error_code() == Some("42S22"), "{}", failed.pretty());
            let refused = mine
                .iter()
                .find(|r| r.event() == "login_failed")
                .context("no failed login")?;
            ensure!(
                refused.error_code() == Some("28000"),
                "{}",
                refused.pretty()
            );
            Ok(())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_mode_ansi_quotes_changes_the_analysis() -> Result<()> {
    let warden = fixtures::warden()?;
    let target = warden.my_target("mysql")?;
    target
        .watch(async {
            let program = unique_name("ansi");
            let t = unique_name("ansi");
            let mut conn = target
                .connect(&app_login(), &MyOptions::program(&program))
                .await?;
            conn.query_drop(format!("CREATE TABLE {t} (id INT, name VARCHAR(20))"))
                .await?;
            // Default mode: "name" is a string literal.
            conn.query_drop(format!("SELECT \"name\" FROM {t}")).await?;
            conn.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
                .await?;
            // ANSI_QUOTES: "name" is the column.
            conn.query_drop(format!("SELECT \"name\" FROM {t} /* ansi */"))
                .await?;
            conn.query_drop(format!("DROP TABLE {t}")).await?;
            conn.disconnect().await?;
            let records = warden.wait_for_audit(&["--limit", "100000"], AUDIT_WAIT, |all| {
                program_records(all, &program)
                    .iter()
                    .any(|r| r.event() == "session_end")
            })?;
            let mine = program_records(&records, &program);
            let selects: Vec<_> = mine
                .iter()
                .filter(|r| r.statement_kind() == "select" && r.touches_table(&t))
                .collect();
            ensure!(selects.len() == 2, "selects: {selects:?}");
            let column = format!("{t}.name");
            let (default, ansi) = (selects[0], selects[1]);
            ensure!(
                !default.strings("columns").contains(&column) && default.sql().contains('?'),
                "default mode read a column:\n{}",
                default.pretty()
            );
            ensure!(
                ansi.strings("columns").contains(&column),
                "ANSI_QUOTES mode did not read the column:\n{}",
                ansi.pretty()
            );
            Ok(())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_refused_at_the_handshake() -> Result<()> {
    let target = fixtures::through_warden()?;
    target
        .watch(async {
            let opts = target
                .opts(&app_login(), &MyOptions::default())
                .compression(mysql_async::Compression::default());
            // Warden does not offer CLIENT_COMPRESS, so the client must not use it.
            let mut conn = mysql_async::Conn::new(opts).await?;
            let one: Option<i32> = conn.query_first("SELECT 1").await?;
            ensure!(one == Some(1));
            Ok(())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_password_is_terminated_by_warden() -> Result<()> {
    let mut upstream = fixtures::upstream()?;
    upstream.name = "sha2".into();
    upstream
        .auth
        .push(("mysql_plugin".into(), "\"caching_sha2_password\"".into()));
    let warden = Warden::start(WardenConfig::new(upstream))?;
    let target = warden.my_target("sha2")?;
    target
        .watch(async {
            // First login without TLS: full authentication through the RSA key exchange.
            for attempt in ["rsa-full", "fast", "tls"] {
                let options = if attempt == "tls" {
                    MyOptions::program(attempt).tls(MyTls::VerifyFull)
                } else {
                    MyOptions::program(attempt)
                };
                let mut conn = target
                    .connect(&app_login(), &options)
                    .await
                    .with_context(|| format!("caching_sha2_password login ({attempt})"))?;
                let user: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
                ensure!(
                    user.as_deref() == Some(&*format!("{}@%", fixtures::APP_USER)),
                    "{attempt}: {user:?}"
                );
                conn.disconnect().await?;
            }
            match target
                .connect(&app_login().with_password("wrong"), &MyOptions::default())
                .await
            {
                Ok(_) => bail!("a wrong password logged in"),
                Err(e) => ensure!(format!("{e:#}").contains("1045"), "{e:#}"),
            }
            let log = warden.log();
            ensure!(
                !log.contains(&app_login().password),
                "the password reached the log"
            );
            Ok(())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_handshake_closes_only_that_connection() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = fixtures::through_warden()?;
    target
        .watch(async {
            let mut other = target
                .connect(&app_login(), &MyOptions::program("bystander"))
                .await?;
            let mut raw =
                tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
            let mut header = [0u8; 4];
            raw.read_exact(&mut header).await?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
            let mut handshake = vec![0u8; len];
            raw.read_exact(&mut handshake).await?;
            ensure!(handshake[0] == 10, "not a v10 handshake");
            // A "handshake response" too short to hold anything.
            raw.write_all(&[3, 0, 0, 1, 0xff, 0xff, 0xff]).await?;
            let mut rest = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut rest)).await;
            ensure!(read.is_ok(), "warden kept the broken connection open");
            let one: Option<i32> = other.query_first("SELECT 1").await?;
            ensure!(one == Some(1), "the other session was affected");
            Ok(())
        })
        .await
}
