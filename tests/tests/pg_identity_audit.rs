//! Session identity and the audit trail, read the way an auditor reads it: through
//! `warden audit query --format json`, `warden audit verify` and `warden audit export`.
//!
//! One record per statement with the session's identity (user, database, program, client IP
//! and port), the statement's kind, fingerprint, redacted SQL, tables, columns, rows and
//! result; one per login (success or failure) and one per session end. Audit writes are
//! asynchronous, so tests poll the CLI with a deadline until the records are there.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use time::format_description::well_known::Rfc3339;
use warden_tests::fixtures::{self, app_login, md5_login};
use warden_tests::pg::wire::{RawConnection, Startup, frontend};
use warden_tests::pg::{ConnectOptions, Login};
use warden_tests::scratch::unique_name;
use warden_tests::tls::{ServerCheck, client_config};
use warden_tests::warden::{AuditRecord, Warden, WardenConfig, summarize};

/// How long audit records may take to appear.
const AUDIT_WAIT: Duration = Duration::from_secs(30);

/// A secret that appears as a literal in statements and must never reach the audit store.
const SECRET: &str = "p4ssw0rd-literal";

/// Logs in over TLS with the raw client (so the test knows its own port) as `login`, with
/// `program` as application_name.
async fn raw_session(warden: &Warden, login: &Login, program: &str) -> Result<RawConnection> {
    let addr = warden.listen_addr("main")?;
    let config = client_config(
        &ServerCheck::VerifyFull {
            ca: fixtures::pki()?.warden_ca_file(),
        },
        None,
    )?;
    let mut raw = RawConnection::connect(addr)
        .await?
        .start_tls(config, "localhost")
        .await?;
    raw.login(login, &[("application_name", program)]).await?;
    Ok(raw)
}

/// Records sorted by their place in the chain.
fn by_seq(mut records: Vec<AuditRecord>) -> Vec<AuditRecord> {
    records.sort_by_key(|r| r.seq().unwrap_or(0));
    records
}

fn of_event<'a>(records: &'a [AuditRecord], event: &str) -> Vec<&'a AuditRecord> {
    records.iter().filter(|r| r.event() == event).collect()
}

/// Checks the identity fields every record of the session must carry.
fn check_identity(
    record: &AuditRecord,
    user: &str,
    program: &str,
    client: SocketAddr,
) -> Result<()> {
    let expect = [
        ("user", Some(user.to_string())),
        ("database", Some(fixtures::APP_DATABASE.to_string())),
        ("program", Some(program.to_string())),
        ("client_ip", Some(client.ip().to_string())),
        ("upstream", Some("main".to_string())),
        ("protocol", Some("postgres".to_string())),
    ];
    for (field, value) in expect {
        ensure!(
            record.str(field).map(str::to_string) == value,
            "{field} should be {value:?} in\n{}",
            record.pretty()
        );
    }
    ensure!(
        record.u64("client_port") == Some(u64::from(client.port())),
        "client_port should be {} in\n{}",
        client.port(),
        record.pretty()
    );
    ensure!(
        record.0.get("client_mac").is_some_and(|m| m.is_null()),
        "a loopback client has no MAC address, yet the record says\n{}",
        record.pretty()
    );
    Ok(())
}

/// A session's login, statements and end: identity on every record, and per statement the
/// kind, fingerprint, redacted SQL, tables, columns, rows, latency and result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_logins_and_session_ends_are_audited() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let program = unique_name("a-identity");
            let t = unique_name("audited");
            let mut raw = raw_session(warden, &app_login(), &program).await?;
            let client = raw.local_addr();
            let statements = [
                format!("CREATE TABLE {t} (id int, secret text)"),
                format!("INSERT INTO {t} VALUES (1, 'a'), (2, 'b'), (3, 'c')"),
                format!("INSERT INTO {t} VALUES (4, 'd'), (5, '{SECRET}')"),
                format!("SELECT id, secret FROM {t}"),
                format!("SELECT id FROM {t} WHERE secret = '{SECRET}'"),
                format!("SELECT id FROM {t} WHERE secret = 'another-literal'"),
                "SELECT 1/0".to_string(),
            ];
            for sql in &statements {
                raw.simple_query(sql).await?;
            }
            raw.send(&frontend::terminate()).await?;
            raw.read_until_closed(Duration::from_secs(10)).await?;

            let records =
                by_seq(
                    warden.wait_for_audit(&["--program", &program], AUDIT_WAIT, |r| {
                        of_event(r, "statement").len() >= statements.len()
                            && !of_event(r, "session_end").is_empty()
                    })?,
                );
            let listing = summarize(&records);
            for record in &records {
                check_identity(record, fixtures::APP_ROLE, &program, client)?;
            }
            let session = records[0].u64("session_id");
            ensure!(
                records.iter().all(|r| r.u64("session_id") == session),
                "one session, several session ids:\n{listing}"
            );
            ensure!(
                records.first().map(AuditRecord::event) == Some("login")
                    && records.first().map(AuditRecord::result) == Some("ok"),
                "the first record must be the successful login:\n{listing}"
            );
            ensure!(
                records.last().map(AuditRecord::event) == Some("session_end"),
                "the last record must be the session end:\n{listing}"
            );

            let stmts = of_event(&records, "statement");
            ensure!(
                stmts.len() == statements.len(),
                "one record per statement:\n{listing}"
            );
            let kinds: Vec<&str> = stmts.iter().map(|r| r.statement_kind()).collect();
            ensure!(
                kinds
                    == [
                        "ddl.create",
                        "insert",
                        "insert",
                        "select",
                        "select",
                        "select",
                        "select"
                    ],
                "statement kinds {kinds:?}"
            );
            let rows: Vec<Option<u64>> = stmts[1..6].iter().map(|r| r.u64("rows")).collect();
            ensure!(
                rows == [Some(3), Some(2), Some(5), Some(1), Some(0)],
                "rows affected/returned {rows:?}:\n{listing}"
            );
            for (i, record) in stmts.iter().enumerate() {
                let sql = record.sql();
                ensure!(
                    !sql.contains(SECRET) && !sql.contains("another-literal"),
                    "a literal reached the audit store: {sql}"
                );
                ensure!(
                    record.u64("latency_us").is_some(),
                    "no latency in\n{}",
                    record.pretty()
                );
                let fingerprint = record.str("fingerprint").unwrap_or_default();
                ensure!(
                    !fingerprint.is_empty() && fingerprint.chars().all(|c| c.is_ascii_hexdigit()),
                    "statement {i} has fingerprint {fingerprint:?}"
                );
                if i < 6 {
                    ensure!(
                        sql.contains(&t),
                        "statement {i}: the SQL lost the table: {sql}"
                    );
                    ensure!(
                        record.touches_table(&t),
                        "statement {i}: tables {:?}",
                        record.strings("tables")
                    );
                    ensure!(
                        record.result() == "ok",
                        "statement {i}:\n{}",
                        record.pretty()
                    );
                }
            }
            let columns = stmts[3].strings("columns");
            ensure!(
                columns
                    .iter()
                    .any(|c| c == "secret" || c.ends_with(".secret")),
                "the SELECT's columns {columns:?} do not include secret"
            );
            ensure!(
                stmts[4].str("fingerprint") == stmts[5].str("fingerprint"),
                "statements differing only in a literal must share a fingerprint"
            );
            ensure!(
                stmts[3].str("fingerprint") != stmts[4].str("fingerprint"),
                "different statements must not share a fingerprint"
            );
            ensure!(
                stmts[6].result() == "error" && stmts[6].error_code() == Some("22012"),
                "the failing statement:\n{}",
                stmts[6].pretty()
            );

            // The secret is nowhere in the store's files, not even in a column we did not read.
            for entry in std::fs::read_dir(warden.audit_dir())? {
                let path = entry?.path();
                let bytes = std::fs::read(&path)?;
                ensure!(
                    !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                    "{} holds the secret literal",
                    path.display()
                );
            }
            Ok(())
        })
        .await
}

/// Extended-protocol executions are audited one record each, with placeholders in the SQL
/// (never the bound values), and COPY FROM STDIN with its row count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_and_copy_are_audited() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let program = unique_name("a-extended");
            let t = unique_name("prepared");
            let session = warden
                .target("main")?
                .connect(&app_login(), &ConnectOptions::app(&program))
                .await?;
            session
                .simple_query(&format!("CREATE TABLE {t} (id int, name text)"))
                .await?;
            let insert = session
                .prepare(&format!("INSERT INTO {t} VALUES ($1, $2)"))
                .await?;
            for i in 0..3i32 {
                session
                    .execute(&insert, &[&i, &format!("{SECRET}-{i}")])
                    .await?;
            }
            {
                use futures_util::SinkExt;
                let sink = session.copy_in(&format!("COPY {t} FROM STDIN")).await?;
                futures_util::pin_mut!(sink);
                sink.send(bytes::Bytes::from_static(b"10\tx\n11\ty\n12\tz\n13\tw\n"))
                    .await?;
                sink.finish().await?;
            }
            let select = session
                .prepare(&format!("SELECT name FROM {t} WHERE id >= $1"))
                .await?;
            let returned = session.query(&select, &[&11i32]).await?;
            ensure!(returned.len() == 3);
            drop(session);

            let records = by_seq(warden.wait_for_audit(
                &["--program", &program],
                AUDIT_WAIT,
                |r| !of_event(r, "session_end").is_empty(),
            )?);
            let listing = summarize(&records);
            let inserts: Vec<_> = records
                .iter()
                .filter(|r| r.event() == "statement" && r.statement_kind() == "insert")
                .collect();
            ensure!(inserts.len() == 3, "one record per execution:\n{listing}");
            for record in &inserts {
                ensure!(record.u64("rows") == Some(1), "{}", record.pretty());
                ensure!(
                    record.sql().contains("$1") && !record.sql().contains(SECRET),
                    "the SQL should keep its placeholders and no values: {}",
                    record.sql()
                );
            }
            let copy = records
                .iter()
                .find(|r| r.statement_kind() == "copy.from")
                .with_context(|| format!("no copy.from record:\n{listing}"))?;
            ensure!(copy.u64("rows") == Some(4), "{}", copy.pretty());
            let select = records
                .iter()
                .find(|r| r.statement_kind() == "select" && r.sql().contains(&t))
                .with_context(|| format!("no select record:\n{listing}"))?;
            ensure!(select.u64("rows") == Some(3), "{}", select.pretty());
            Ok(())
        })
        .await
}

/// A session that turns `standard_conforming_strings` off lexes `\'` as an escaped quote, which
/// the analyser would read differently: such SQL is audited as unparsed and shown only up to its
/// first literal, so a secret can never slip into the trail through a misreading. Turning the
/// setting back on restores full analysis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_warden_cannot_lex_like_the_server_is_audited_opaquely() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let program = unique_name("a-scs");
            let session = warden
                .target("main")?
                .connect(&app_login(), &ConnectOptions::app(&program))
                .await?;
            session
                .simple_query("SET standard_conforming_strings = off")
                .await?;
            // With the setting off, PostgreSQL reads one string: it' OR x = 'SECRET' --
            let tricky = format!(r"SELECT 'it\' OR x = ''{SECRET}'' --' AS v");
            let rows = session.simple_query(&tricky).await?;
            ensure!(
                rows.iter()
                    .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
                "the statement should run: {rows:?}"
            );
            session
                .simple_query("SET standard_conforming_strings = on")
                .await?;
            session
                .simple_query(&format!("SELECT '{SECRET}' AS back_to_normal"))
                .await?;
            drop(session);

            let records = by_seq(warden.wait_for_audit(
                &["--program", &program],
                AUDIT_WAIT,
                |r| !of_event(r, "session_end").is_empty(),
            )?);
            let listing = summarize(&records);
            for record in &records {
                ensure!(
                    !record.sql().contains(SECRET),
                    "a literal leaked into the audit trail:\n{listing}"
                );
            }
            let opaque = records
                .iter()
                .find(|r| r.sql().starts_with("SELECT ") && r.sql().contains("not shown"))
                .with_context(|| format!("no opaque record:\n{listing}"))?;
            ensure!(opaque.statement_kind() == "unparsed", "{}", opaque.pretty());
            let normal = records
                .iter()
                .find(|r| r.sql().contains("back_to_normal"))
                .with_context(|| format!("no record after the setting came back:\n{listing}"))?;
            ensure!(normal.statement_kind() == "select", "{}", normal.pretty());
            Ok(())
        })
        .await
}

/// A wrong password and an unknown user each leave a `login_failed` record with the error
/// code, the user they tried, and the program they claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_audited() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let addr = warden.listen_addr("main")?;
            let program = unique_name("a-failed");
            let mut raw = RawConnection::connect(addr).await?;
            let wrong = app_login().with_password("wrong password");
            match raw
                .startup(&wrong, &[("application_name", &program)])
                .await?
            {
                Startup::Refused(_) => {}
                Startup::Ready { .. } => bail!("a wrong password was accepted"),
            }
            let records =
                warden.wait_for_audit(&["--program", &program], AUDIT_WAIT, |r| !r.is_empty())?;
            ensure!(records.len() == 1, "{}", summarize(&records));
            let record = &records[0];
            ensure!(
                record.event() == "login_failed"
                    && record.result() == "error"
                    && record.error_code() == Some("28P01")
                    && record.str("user") == Some(fixtures::APP_ROLE),
                "{}",
                record.pretty()
            );

            let ghost = unique_name("ghost");
            let mut raw = RawConnection::connect(addr).await?;
            let login = Login {
                user: ghost.clone(),
                password: "x".into(),
                database: fixtures::APP_DATABASE.into(),
            };
            if let Startup::Ready { .. } = raw.startup(&login, &[]).await? {
                bail!("an unknown user logged in");
            }
            let records =
                warden.wait_for_audit(&["--user", &ghost], AUDIT_WAIT, |r| !r.is_empty())?;
            ensure!(
                records.len() == 1 && records[0].event() == "login_failed",
                "{}",
                summarize(&records)
            );
            Ok(())
        })
        .await
}

/// Each filter of `warden audit query` selects exactly the records it names: program, user,
/// table, kind, event, result, text, client address (or network) and time range; the table and
/// CSV formats print the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_filters_select_the_right_records() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let start = time::OffsetDateTime::now_utc();
            let program = unique_name("a-filters");
            let t = unique_name("filtered");
            let marker = unique_name("marker");
            let app = warden
                .target("main")?
                .connect(&app_login(), &ConnectOptions::app(&program))
                .await?;
            app.simple_query(&format!("CREATE TABLE {t} (id int)"))
                .await?;
            app.simple_query(&format!("INSERT INTO {t} VALUES (1), (2)"))
                .await?;
            app.simple_query(&format!("SELECT id AS {marker} FROM {t}"))
                .await?;
            let _ = app.simple_query("SELECT 1/0").await;
            drop(app);
            let md5 = warden
                .target("main")?
                .connect(&md5_login(), &ConnectOptions::app(&program))
                .await?;
            md5.simple_query("SELECT 2").await?;
            drop(md5);
            let all = warden.wait_for_audit(&["--program", &program], AUDIT_WAIT, |r| {
                of_event(r, "session_end").len() == 2
            })?;
            ensure!(
                all.len() == 9,
                "2 logins, 5 statements and 2 session ends expected, got:\n{}",
                summarize(&all)
            );

            let seqs = |records: &[AuditRecord]| -> Vec<u64> {
                let mut s: Vec<u64> = records.iter().filter_map(AuditRecord::seq).collect();
                s.sort();
                s
            };
            let expected = |keep: &dyn Fn(&AuditRecord) -> bool| -> Vec<u64> {
                seqs(&all.iter().filter(|r| keep(r)).cloned().collect::<Vec<_>>())
            };
            let later =
                (time::OffsetDateTime::now_utc() + time::Duration::days(1)).format(&Rfc3339)?;
            let earlier = (start - time::Duration::days(1)).format(&Rfc3339)?;
            let just_before = (start - time::Duration::minutes(1)).format(&Rfc3339)?;
            let cases: Vec<(Vec<&str>, Vec<u64>)> = vec![
                (
                    vec!["--user", fixtures::MD5_ROLE],
                    expected(&|r| r.str("user") == Some(fixtures::MD5_ROLE)),
                ),
                (vec!["--table", &t], expected(&|r| r.touches_table(&t))),
                (
                    vec!["--kind", "select"],
                    expected(&|r| r.statement_kind() == "select"),
                ),
                (
                    vec!["--kind", "ddl"],
                    expected(&|r| r.statement_kind().starts_with("ddl")),
                ),
                (
                    vec!["--event", "login"],
                    expected(&|r| r.event() == "login"),
                ),
                (
                    vec!["--result", "error"],
                    expected(&|r| r.result() == "error"),
                ),
                (
                    vec!["--text", &marker],
                    expected(&|r| r.sql().contains(&marker)),
                ),
                (vec!["--ip", "127.0.0.1"], seqs(&all)),
                (vec!["--ip", "127.0.0.0/8"], seqs(&all)),
                (vec!["--ip", "10.0.0.0/8"], vec![]),
                (vec!["--from", &later], vec![]),
                (vec!["--to", &earlier], vec![]),
                (vec!["--from", &just_before], seqs(&all)),
            ];
            for (filter, want) in cases {
                let mut args = vec!["--program", program.as_str()];
                args.extend_from_slice(&filter);
                let got = seqs(&warden.audit_query(&args)?);
                ensure!(
                    got == want,
                    "filter {filter:?}: got records {got:?}, expected {want:?}\n{}",
                    summarize(&all)
                );
            }
            for (filter, expect_some) in [
                ("--kind", "select"),
                ("--result", "error"),
                ("--table", t.as_str()),
            ] {
                ensure!(
                    !warden
                        .audit_query(&["--program", &program, filter, expect_some])?
                        .is_empty(),
                    "filter {filter} {expect_some} matched nothing"
                );
            }

            let config = warden.config_path().to_string_lossy().into_owned();
            for format in ["table", "csv"] {
                let run = warden
                    .cli(&[
                        "audit",
                        "query",
                        "--config",
                        &config,
                        "--format",
                        format,
                        "--program",
                        &program,
                        "--text",
                        &marker,
                    ])?
                    .ensure_success()?;
                ensure!(
                    run.stdout_text().contains(&marker),
                    "--format {format} does not show the record:\n{}",
                    run.describe()
                );
            }
            Ok(())
        })
        .await
}

/// `warden audit verify` passes on an untouched store, and after one stored record is changed
/// behind warden's back it fails and names that record; `warden audit export` writes CSV and
/// JSON Lines that parse and hold the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_detects_tampering_and_export_parses() -> Result<()> {
    let warden = Warden::start(WardenConfig::new(fixtures::main_upstream()?))?;
    warden
        .watch(async {
            let program = unique_name("a-verify");
            let t = unique_name("evidence");
            let session = warden
                .target("main")?
                .connect(&app_login(), &ConnectOptions::app(&program))
                .await?;
            session
                .simple_query(&format!("CREATE TABLE {t} (id int)"))
                .await?;
            for i in 0..5 {
                session
                    .simple_query(&format!("INSERT INTO {t} VALUES ({i})"))
                    .await?;
            }
            drop(session);
            let records = warden.wait_for_audit(&["--program", &program], AUDIT_WAIT, |r| {
                !of_event(r, "session_end").is_empty()
            })?;
            let config = warden.config_path().to_string_lossy().into_owned();

            let verified = warden.cli(&["audit", "verify", "--config", &config])?;
            ensure!(
                verified.success(),
                "verify fails on an untouched store:\n{}",
                verified.describe()
            );

            let csv_run = warden
                .cli(&["audit", "export", "--config", &config, "--format", "csv"])?
                .ensure_success()?;
            let mut reader = csv::Reader::from_reader(csv_run.stdout.as_slice());
            // A spreadsheet-friendly export may start with a byte-order mark.
            let headers: Vec<String> = reader
                .headers()?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').to_string())
                .collect();
            let sql_column = headers
                .iter()
                .position(|h| h == "sql")
                .with_context(|| format!("no sql column in the CSV header {headers:?}"))?;
            ensure!(headers.iter().any(|h| h == "seq") && headers.iter().any(|h| h == "event"));
            let mut rows = 0;
            let mut ours = 0;
            for row in reader.records() {
                let row = row.context("a CSV row does not parse")?;
                rows += 1;
                if row.get(sql_column).is_some_and(|s| s.contains(&t)) {
                    ours += 1;
                }
            }
            ensure!(
                rows >= records.len() && ours == 6,
                "CSV: {rows} rows, {ours} about {t}"
            );

            let jsonl = warden
                .cli(&["audit", "export", "--config", &config, "--format", "jsonl"])?
                .ensure_success()?;
            let exported = warden_tests::warden::parse_records(&jsonl.stdout_text())?;
            ensure!(
                exported.len() == rows,
                "JSON Lines has {} records, CSV {rows}",
                exported.len()
            );

            // Tamper with one statement record in the SQLite file, with warden stopped.
            let status = warden.terminate(Duration::from_secs(30))?;
            ensure!(status.success(), "warden exited with {status}");
            let victim = records
                .iter()
                .find(|r| r.event() == "statement" && r.sql().contains(&t))
                .and_then(AuditRecord::seq)
                .context("no statement record to tamper with")?;
            let mut changed = 0;
            for entry in std::fs::read_dir(warden.audit_dir())? {
                let path = entry?.path();
                if path.extension().and_then(|e| e.to_str()) != Some("db") {
                    continue;
                }
                let db = rusqlite::Connection::open(&path)?;
                changed += db.execute(
                    "UPDATE records SET sql_text = 'SELECT 1' WHERE seq = ?1",
                    [victim as i64],
                )?;
            }
            ensure!(changed == 1, "record {victim} not found in the store files");
            let tampered = warden.cli(&["audit", "verify", "--config", &config])?;
            ensure!(
                !tampered.success(),
                "verify passed a tampered store:\n{}",
                tampered.describe()
            );
            ensure!(
                tampered.all_output().contains(&format!("record {victim}")),
                "verify does not name record {victim}:\n{}",
                tampered.describe()
            );
            Ok(())
        })
        .await
}
