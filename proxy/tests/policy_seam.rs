//! The seam where a policy decides: a test policy plugged into a real warden, in front of a real
//! PostgreSQL, driven by a real client.
//!
//! The policy refuses statements that touch `seam_forbidden` and rewrites reads of
//! `seam_rewrite_from` into reads of `seam_rewrite_to`. The test checks what a client sees on
//! each protocol path (simple query, extended query, pipelined), that the session stays usable,
//! that a refusal inside a transaction aborts it exactly as a database error would, that the
//! refused SQL never reaches the database, and that the audit trail records the decision and
//! the rule.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::watch;
use tokio_postgres::NoTls;
use warden_analysis::Analysis;
use warden_audit::store::AuditStore;
use warden_audit::{AuditFilter, AuditResult};
use warden_policy::{Decision, Refusal, Rewrite, SessionIdentity, StatementPolicy};
use warden_proxy::config::Config;
use warden_proxy::server::{ServeOptions, serve};
use warden_tests::fixtures;

struct SeamPolicy;

impl StatementPolicy for SeamPolicy {
    fn decide(&self, _session: &SessionIdentity, sql: &str, analysis: &Analysis) -> Decision {
        let touches = |name: &str| {
            analysis
                .statements
                .iter()
                .flat_map(|s| s.tables())
                .any(|t| t.name() == name)
        };
        if touches("seam_forbidden") {
            Decision::Refuse(Refusal {
                rule: "test-forbidden".into(),
                sqlstate: "42501".into(),
                message: "seam_forbidden is off limits".into(),
            })
        } else if touches("seam_rewrite_from") {
            Decision::Rewrite(Rewrite {
                rule: "test-rewrite".into(),
                sql: sql.replace("seam_rewrite_from", "seam_rewrite_to"),
            })
        } else {
            Decision::Allow
        }
    }
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refuses_and_rewrites_on_every_protocol_path() -> Result<()> {
    let pg = fixtures::pg()?;
    let login = fixtures::app_login();
    let dir = tempfile::tempdir()?;
    pg.admin_sql_in(
        &login.database,
        "DROP TABLE IF EXISTS seam_forbidden, seam_rewrite_from, seam_rewrite_to, seam_log; \
         CREATE TABLE seam_forbidden (secret text); INSERT INTO seam_forbidden VALUES ('s'); \
         CREATE TABLE seam_rewrite_from (v text); INSERT INTO seam_rewrite_from VALUES ('from'); \
         CREATE TABLE seam_rewrite_to (v text); INSERT INTO seam_rewrite_to VALUES ('to'); \
         CREATE TABLE seam_log (n int); \
         GRANT ALL ON seam_forbidden, seam_rewrite_from, seam_rewrite_to, seam_log TO PUBLIC",
    )?;
    std::fs::write(dir.path().join("users.txt"), pg.users_file(&[&login.user])?)?;
    let port = warden_tests::ports::free_port()?;
    let admin = warden_tests::ports::free_port()?;
    let config_path = dir.path().join("warden.toml");
    std::fs::write(
        &config_path,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [audit]\ndir = \"audit\"\nflush_interval_ms = 10\n\
             [[upstream]]\nname = \"seam\"\nprotocol = \"postgres\"\n\
             listen = \"127.0.0.1:{port}\"\nserver = \"{}\"\n\
             [upstream.auth]\nusers_file = \"users.txt\"\n",
            pg.addr()
        ),
    )?;
    let config = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (stop, stop_rx) = watch::channel(false);
    let path = config_path.clone();
    let server = tokio::spawn(async move {
        serve(
            &path,
            config,
            ServeOptions {
                policy: Box::new(SeamPolicy),
                log: None,
                stop: Some(stop_rx),
            },
        )
        .await
    });

    let mut pg_config = tokio_postgres::Config::new();
    pg_config
        .host("127.0.0.1")
        .port(port)
        .user(&login.user)
        .password(&login.password)
        .dbname(&login.database)
        .application_name("seam-test");
    let mut attempt = 0;
    let (client, connection) = loop {
        match pg_config.connect(NoTls).await {
            Ok(c) => break c,
            Err(e) if attempt < 100 => {
                attempt += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).context("warden did not accept a session"),
        }
    };
    tokio::spawn(connection);
    let client = Arc::new(client);

    // Simple query: refused with the policy's SQLSTATE and message; the session goes on.
    let e = client
        .simple_query("SELECT secret FROM seam_forbidden")
        .await
        .err()
        .context("a refused simple query succeeded")?;
    assert_eq!(code(&e), "42501");
    let db = e.as_db_error().context("no database error")?;
    assert_eq!(db.message(), "seam_forbidden is off limits");
    assert!(db.detail().unwrap_or("").contains("test-forbidden"));
    let after = client.simple_query("SELECT 1").await?;
    assert!(
        after.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1"))
        ),
        "the session is not usable after a refusal: {after:?}"
    );

    // Extended query: the Parse is refused; named and unnamed statements keep working.
    let e = client
        .prepare("SELECT secret FROM seam_forbidden WHERE secret = $1")
        .await
        .err()
        .context("a refused prepare succeeded")?;
    assert_eq!(code(&e), "42501");
    let ok = client.prepare("SELECT $1::int + 1").await?;
    let row = client.query_one(&ok, &[&41i32]).await?;
    assert_eq!(row.get::<_, i32>(0), 42);

    // Pipelined: a refused statement between two allowed ones fails alone, in order.
    let (a, b, c) = tokio::join!(
        client.query_one("SELECT 1::int", &[]),
        client.query("SELECT secret FROM seam_forbidden", &[]),
        client.query_one("SELECT 3::int", &[]),
    );
    assert_eq!(a?.get::<_, i32>(0), 1);
    assert_eq!(
        code(&b.err().context("pipelined refusal succeeded")?),
        "42501"
    );
    assert_eq!(c?.get::<_, i32>(0), 3);

    // Inside a transaction a refusal aborts it, exactly like a database error: later
    // statements fail with 25P02 and the work before the refusal is rolled back.
    client
        .batch_execute("BEGIN; INSERT INTO seam_log VALUES (1)")
        .await?;
    let e = client
        .simple_query("SELECT * FROM seam_forbidden")
        .await
        .err()
        .context("refusal in a transaction succeeded")?;
    assert_eq!(code(&e), "42501");
    let e = client
        .simple_query("SELECT 1")
        .await
        .err()
        .context("the transaction was not aborted by the refusal")?;
    assert_eq!(code(&e), "25P02");
    client.batch_execute("ROLLBACK").await?;
    let n: i64 = client
        .query_one("SELECT count(*) FROM seam_log", &[])
        .await?
        .get(0);
    assert_eq!(n, 0);

    // Rewrite: the database answers the rewritten statement, on both protocols.
    let rows = client.query("SELECT v FROM seam_rewrite_from", &[]).await?;
    assert_eq!(rows[0].get::<_, String>(0), "to");
    let rows = client
        .simple_query("SELECT v FROM seam_rewrite_from")
        .await?;
    let values: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    if values != ["to"] {
        bail!("the rewritten simple query returned {values:?}");
    }

    // The refused SQL never reached the database.
    let seen = pg.admin_sql_in(
        &login.database,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%seam_forbidden%' AND pid <> pg_backend_pid()",
    )?;
    assert_eq!(seen.trim(), "0", "the database saw refused SQL");

    drop(client);
    stop.send(true)?;
    server.await??;

    // The audit trail holds the refusals with their rule, and the rewrites.
    let store = AuditStore::open(dir.path().join("audit"))?;
    let refused: Vec<_> = store
        .query(&AuditFilter {
            result: Some(AuditResult::Refused),
            ..AuditFilter::default()
        })?
        .collect::<Result<_, _>>()?;
    assert_eq!(refused.len(), 4, "{refused:#?}");
    for r in &refused {
        assert_eq!(r.record.rule.as_deref(), Some("test-forbidden"));
        assert_eq!(r.record.decision.as_deref(), Some("refuse"));
        assert_eq!(r.record.error_code.as_deref(), Some("42501"));
        assert_eq!(r.record.tables, vec!["seam_forbidden".to_string()]);
        assert_eq!(r.record.program.as_deref(), Some("seam-test"));
    }
    let rewritten: Vec<_> = store
        .query(&AuditFilter {
            text: Some("seam_rewrite_from".into()),
            ..AuditFilter::default()
        })?
        .collect::<Result<_, _>>()?;
    assert_eq!(rewritten.len(), 2, "{rewritten:#?}");
    for r in &rewritten {
        assert_eq!(r.record.rule.as_deref(), Some("test-rewrite"));
        assert_eq!(r.record.decision.as_deref(), Some("rewrite"));
    }
    Ok(())
}
