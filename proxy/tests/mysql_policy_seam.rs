//! The policy seam on the MySQL protocol: a test policy plugged into a real warden in front of
//! a real MariaDB, driven by mysql_async.
//!
//! Statements touching `seam_forbidden` are refused — warden answers with an ERR packet (1142,
//! the refusal's SQLSTATE) and the database never sees them — on COM_QUERY and
//! COM_STMT_PREPARE; reads of `seam_rewrite_from` are rewritten to `seam_rewrite_to`. The
//! session stays usable and the audit trail records the decisions and rules.

use std::time::Duration;

use anyhow::{Result, bail};
use mysql_async::prelude::*;
use tokio::sync::watch;
use warden_analysis::Analysis;
use warden_audit::store::AuditStore;
use warden_audit::{AuditFilter, AuditResult};
use warden_policy::{Decision, Refusal, Rewrite, SessionIdentity, StatementPolicy};
use warden_proxy::config::Config;
use warden_proxy::server::{ServeOptions, serve};
use warden_tests::mysql::MyOptions;
use warden_tests::mysql::fixtures;

struct SeamPolicy;

impl StatementPolicy for SeamPolicy {
    fn decide(&self, session: &SessionIdentity, sql: &str, analysis: &Analysis) -> Decision {
        assert_eq!(session.protocol, "mysql");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refuses_and_rewrites_mysql_statements() -> Result<()> {
    let db = fixtures::mariadb()?;
    let login = fixtures::app_login();
    let schema = &login.database;
    db.admin_sql(&format!(
        "DROP TABLE IF EXISTS {schema}.seam_forbidden, {schema}.seam_rewrite_from, {schema}.seam_rewrite_to; \
         CREATE TABLE {schema}.seam_forbidden (secret TEXT); INSERT INTO {schema}.seam_forbidden VALUES ('s'); \
         CREATE TABLE {schema}.seam_rewrite_from (v TEXT); INSERT INTO {schema}.seam_rewrite_from VALUES ('from'); \
         CREATE TABLE {schema}.seam_rewrite_to (v TEXT); INSERT INTO {schema}.seam_rewrite_to VALUES ('to')"
    ))?;
    let dir = tempfile::tempdir()?;
    let port = warden_tests::ports::free_port()?;
    let admin = warden_tests::ports::free_port()?;
    let config_path = dir.path().join("warden.toml");
    std::fs::write(
        &config_path,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [audit]\ndir = \"audit\"\nflush_interval_ms = 10\n\
             [[upstream]]\nname = \"seam\"\nprotocol = \"mysql\"\n\
             listen = \"127.0.0.1:{port}\"\nserver = \"{}\"\n",
            db.addr()
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
    let mut target = fixtures::direct()?;
    target.port = port;
    let mut attempt = 0;
    let mut conn = loop {
        match target
            .connect(&login, &MyOptions::program("seam-test"))
            .await
        {
            Ok(c) => break c,
            Err(_) if attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!(e),
        }
    };

    let refused = |e: mysql_async::Error| match e {
        mysql_async::Error::Server(s) => {
            assert_eq!((s.code, s.state.as_str()), (1142, "42501"), "{s:?}");
            assert!(s.message.contains("test-forbidden"), "{s:?}");
        }
        other => panic!("not a server error: {other:?}"),
    };
    refused(
        conn.query_drop("SELECT secret FROM seam_forbidden")
            .await
            .expect_err("refused"),
    );
    refused(
        conn.prep("SELECT secret FROM seam_forbidden WHERE secret = ?")
            .await
            .expect_err("refused"),
    );
    let v: Option<String> = conn.query_first("SELECT v FROM seam_rewrite_from").await?;
    assert_eq!(v.as_deref(), Some("to"));
    let v: Option<String> = conn
        .exec_first("SELECT v FROM seam_rewrite_from WHERE v <> ?", ("x",))
        .await?;
    assert_eq!(v.as_deref(), Some("to"));
    // The session goes on.
    let one: Option<i32> = conn.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    conn.disconnect().await?;
    stop.send(true)?;
    server.await??;

    let store = AuditStore::open(dir.path().join("audit"))?;
    let refused: Vec<_> = store
        .query(&AuditFilter {
            result: Some(AuditResult::Refused),
            ..AuditFilter::default()
        })?
        .collect::<Result<_, _>>()?;
    assert_eq!(refused.len(), 2, "{refused:#?}");
    for r in &refused {
        assert_eq!(r.record.rule.as_deref(), Some("test-forbidden"));
        assert_eq!(r.record.error_code.as_deref(), Some("42501"));
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
        assert_eq!(r.record.decision.as_deref(), Some("rewrite"));
    }
    Ok(())
}
