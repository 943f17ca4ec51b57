//! The simple query protocol through warden: several statements in one string, errors and
//! notices with all their fields, transactions and their failed state, and ParameterStatus.
//!
//! Each scenario runs directly against PostgreSQL and through warden (`both_ways!`), asserting
//! concrete results, so the two runs must agree with PostgreSQL's own behaviour.

use anyhow::{Context, Result, bail, ensure};
use warden_tests::both_ways;
use warden_tests::equivalence::same;
use warden_tests::fixtures::{self, app_login};
use warden_tests::pg::{ConnectOptions, Target, simple_summary, sqlstate};
use warden_tests::scratch::unique_name;

both_ways!(
    several_statements_in_one_string,
    an_error_stops_a_multi_statement_string,
    notices_and_errors_keep_every_field,
    transactions_commit_roll_back_and_fail,
    parameter_status_follows_set,
);

/// One Query message with five statements: every result arrives, in order, with its rows and
/// command tags.
async fn several_statements_in_one_string(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("q-multi"))
        .await?;
    let t = unique_name("multi");
    let messages = session
        .simple_query(&format!(
            "CREATE TEMP TABLE {t} (id int PRIMARY KEY, name text); \
             INSERT INTO {t} VALUES (1, 'one'), (2, 'two'), (3, NULL); \
             SELECT id, name FROM {t} ORDER BY id; \
             UPDATE {t} SET name = 'uno' WHERE id = 1; \
             SELECT count(*), string_agg(name, ',' ORDER BY id) FROM {t} WHERE name IS NOT NULL"
        ))
        .await?;
    let summary = simple_summary(&messages);
    let expected = [
        "complete 0",
        "complete 3",
        "row 1|one",
        "row 2|two",
        "row 3|NULL",
        "complete 3",
        "complete 1",
        "row 2|uno,two",
        "complete 1",
    ];
    ensure!(summary == expected, "results: {summary:#?}");
    // The session is still in a clean state for the next string.
    let again = session.simple_query("SELECT 'next'").await?;
    ensure!(simple_summary(&again) == ["row next", "complete 1"]);
    Ok(())
}

/// A failing statement in the middle of a string aborts the rest of it, and the implicit
/// transaction rolls back the statements before it; the session stays usable.
async fn an_error_stops_a_multi_statement_string(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("q-multi-error"))
        .await?;
    let t = unique_name("multierr");
    session
        .simple_query(&format!("CREATE TABLE {t} (id int)"))
        .await?;
    let error = session
        .simple_query(&format!(
            "INSERT INTO {t} VALUES (1); SELECT 1/0; INSERT INTO {t} VALUES (2)"
        ))
        .await
        .err()
        .context("division by zero did not fail")?;
    ensure!(sqlstate(&error) == Some("22012"), "error: {error:?}");
    let count = session
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await?;
    ensure!(
        count.get::<_, i64>(0) == 0,
        "the implicit transaction was not rolled back"
    );
    session.simple_query(&format!("DROP TABLE {t}")).await?;
    Ok(())
}

/// NOTICE and WARNING messages reach the client during a statement, and an error keeps its
/// SQLSTATE, message, detail and hint.
async fn notices_and_errors_keep_every_field(target: &Target) -> Result<()> {
    let mut session = target
        .connect(&app_login(), &ConnectOptions::app("q-notices"))
        .await?;
    session
        .simple_query(
            "DO $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful, % left', 3; END $$",
        )
        .await?;
    let notices = session.take_notices();
    let expected = vec![
        (
            "NOTICE".to_string(),
            "00000".to_string(),
            "hello 42".to_string(),
        ),
        (
            "WARNING".to_string(),
            "01000".to_string(),
            "careful, 3 left".to_string(),
        ),
    ];
    ensure!(notices == expected, "notices: {notices:?}");

    let error = session
        .simple_query(
            "DO $$ BEGIN RAISE EXCEPTION 'custom failure %', 7 \
             USING ERRCODE = 'WT001', DETAIL = 'the detail', HINT = 'the hint'; END $$",
        )
        .await
        .err()
        .context("RAISE EXCEPTION did not fail")?;
    let db = error.as_db_error().context("not a database error")?;
    ensure!(db.code().code() == "WT001", "code {:?}", db.code());
    ensure!(
        db.message() == "custom failure 7",
        "message {:?}",
        db.message()
    );
    ensure!(
        db.detail() == Some("the detail"),
        "detail {:?}",
        db.detail()
    );
    ensure!(db.hint() == Some("the hint"), "hint {:?}", db.hint());
    ensure!(db.severity() == "ERROR", "severity {:?}", db.severity());

    let missing = session
        .simple_query("SELECT * FROM no_such_table_here")
        .await
        .err()
        .context("a missing table did not fail")?;
    let db = missing.as_db_error().context("not a database error")?;
    ensure!(db.code().code() == "42P01", "code {:?}", db.code());
    ensure!(
        db.position().is_some(),
        "the error position was lost: {db:?}"
    );
    session.simple_query("SELECT 1").await?;
    Ok(())
}

/// COMMIT keeps, ROLLBACK discards, savepoints roll back partially, and an error inside a
/// transaction block makes every later statement fail with 25P02 until ROLLBACK.
async fn transactions_commit_roll_back_and_fail(target: &Target) -> Result<()> {
    let mut session = target
        .connect(&app_login(), &ConnectOptions::app("q-tx"))
        .await?;
    let t = unique_name("tx");
    session
        .simple_query(&format!("CREATE TABLE {t} (id int)"))
        .await?;
    session
        .simple_query(&format!(
            "BEGIN; INSERT INTO {t} VALUES (1); ROLLBACK; \
             BEGIN; INSERT INTO {t} VALUES (2); SAVEPOINT s; INSERT INTO {t} VALUES (3); \
             ROLLBACK TO SAVEPOINT s; INSERT INTO {t} VALUES (4); COMMIT"
        ))
        .await?;
    let rows = session
        .query(&format!("SELECT id FROM {t} ORDER BY id"), &[])
        .await?;
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    ensure!(ids == [2, 4], "ids after the transactions: {ids:?}");

    session.simple_query("BEGIN").await?;
    let failed = session.simple_query("SELECT 1/0").await.err();
    ensure!(failed.as_ref().and_then(sqlstate) == Some("22012"));
    let aborted = session
        .simple_query("SELECT 1")
        .await
        .err()
        .context("a statement in an aborted transaction succeeded")?;
    ensure!(sqlstate(&aborted) == Some("25P02"), "error: {aborted:?}");
    session.simple_query("ROLLBACK").await?;

    let tx = session.client_mut().transaction().await?;
    tx.execute(&format!("INSERT INTO {t} VALUES (5)"), &[])
        .await?;
    tx.commit().await?;
    let count: i64 = session
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await?
        .get(0);
    ensure!(count == 3, "count {count}");
    session.simple_query(&format!("DROP TABLE {t}")).await?;
    Ok(())
}

/// ParameterStatus: the startup values, then what `SET application_name` and `SET TimeZone`
/// report, as the client's driver records them.
async fn parameter_status_follows_set(target: &Target) -> Result<()> {
    let app = unique_name("q-params");
    let session = target
        .connect(&app_login(), &ConnectOptions::app(&app))
        .await?;
    ensure!(session.parameter("application_name").await? == Some(app.clone()));
    let version = session
        .parameter("server_version")
        .await?
        .unwrap_or_default();
    ensure!(!version.is_empty(), "no server_version reported");
    ensure!(session.parameter("client_encoding").await?.as_deref() == Some("UTF8"));

    let renamed = format!("{app}-renamed");
    session
        .simple_query(&format!("SET application_name = '{renamed}'"))
        .await?;
    ensure!(
        session.parameter("application_name").await? == Some(renamed),
        "SET application_name was not reported"
    );
    session
        .simple_query("SET TimeZone = 'Asia/Shanghai'")
        .await?;
    ensure!(
        session.parameter("TimeZone").await?.as_deref() == Some("Asia/Shanghai"),
        "SET TimeZone was not reported: {:?}",
        session.parameter("TimeZone").await?
    );
    let local = session
        .query_one("SELECT '2024-01-01 00:00:00+00'::timestamptz::text", &[])
        .await?;
    ensure!(local.get::<_, String>(0) == "2024-01-01 08:00:00+08");
    Ok(())
}

/// Every parameter PostgreSQL reports at startup reaches the client through warden with the
/// same value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_equal_direct() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let options = ConnectOptions::app("q-startup-params");
            let direct = fixtures::direct()?.connect(&app_login(), &options).await?;
            let proxied = warden
                .target("main")?
                .connect(&app_login(), &options)
                .await?;
            for name in [
                "server_version",
                "server_encoding",
                "client_encoding",
                "application_name",
                "DateStyle",
                "IntervalStyle",
                "TimeZone",
                "integer_datetimes",
                "standard_conforming_strings",
                "is_superuser",
                "session_authorization",
                "default_transaction_read_only",
                "in_hot_standby",
            ] {
                let d = direct.parameter(name).await?;
                if d.is_none() {
                    bail!("PostgreSQL did not report {name}");
                }
                same(
                    &format!("ParameterStatus {name}"),
                    &d,
                    &proxied.parameter(name).await?,
                )?;
            }
            Ok(())
        })
        .await
}
