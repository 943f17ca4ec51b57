//! Real client programs, unchanged: psql (multi-statement strings, scripts with \copy, errors
//! and notices), pgbench (initialisation and runs in every query mode), and psycopg 3.
//!
//! psql's output through warden must be byte-for-byte what it is directly; pgbench must finish
//! every transaction without failures; psycopg must see what PostgreSQL gives it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use warden_tests::both_ways;
use warden_tests::equivalence::{same_bytes, same_run};
use warden_tests::fixtures::{self, APP_ROLE, app_login};
use warden_tests::pg::{Target, pgbench, pgbench_report, psql, python};
use warden_tests::scratch::{Scratch, unique_name};
use warden_tests::tools::ToolRun;

both_ways!(pgbench_initialises_and_runs_in_every_mode, psycopg_works);

/// A fresh database for one run, so both runs of an equivalence test can use the same names.
fn fresh_database(prefix: &str) -> Result<String> {
    fixtures::pg()?.create_database(prefix, APP_ROLE)
}

/// Both targets: PostgreSQL directly and the shared warden.
fn both_targets() -> Result<(Target, Target)> {
    Ok((fixtures::direct()?, fixtures::through_warden()?))
}

/// `psql -c` with a transaction of several statements in one string prints the same through
/// warden as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_multi_statement_string_matches_direct() -> Result<()> {
    let (direct, warden) = both_targets()?;
    warden
        .watch(async {
            let sql = "BEGIN; \
                CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8,2)); \
                INSERT INTO items VALUES (1, 'apple', 1.25), (2, 'pear', NULL), (3, '梨', 3); \
                SELECT id, name, price FROM items ORDER BY id; \
                UPDATE items SET price = price * 2 WHERE price IS NOT NULL; \
                SELECT sum(price) FROM items; \
                COMMIT;";
            let dir = Scratch::new("psql-multi")?;
            let mut runs = Vec::new();
            for target in [&direct, &warden] {
                let login = app_login().in_database(&fresh_database("psqlmulti")?);
                runs.push(psql(
                    target,
                    &login,
                    "require",
                    &["-v", "ON_ERROR_STOP=1", "-c", sql],
                    dir.path(),
                    None,
                )?);
            }
            let out = runs[0].stdout_text();
            ensure!(
                runs[0].success()
                    && out.contains("(3 rows)")
                    && out.contains("梨")
                    && out.contains("COMMIT"),
                "the direct run is not what the test expects:\n{}",
                runs[0].describe()
            );
            same_run("psql -c with several statements", &runs[0], &runs[1])
        })
        .await
}

/// The people.csv file the script loads: a header and 2000 rows.
fn people_csv() -> String {
    let mut csv = String::from("id,name,born\n");
    for i in 1..=2000 {
        let name = match i % 5 {
            0 => format!("\"Name, with comma {i}\""),
            1 => format!("名字{i}"),
            _ => format!("person {i}"),
        };
        let born = if i % 11 == 0 {
            String::new()
        } else {
            format!("19{:02}-{:02}-{:02}", i % 100, i % 12 + 1, i % 28 + 1)
        };
        csv.push_str(&format!("{i},{name},{born}\n"));
    }
    csv
}

const SCRIPT: &str = r"\set ON_ERROR_STOP 0
CREATE TABLE people (id int PRIMARY KEY, name text, born date);
\copy people FROM 'people.csv' WITH (FORMAT csv, HEADER true)
SELECT count(*), count(born), min(born), max(id) FROM people;
DO $$ BEGIN RAISE NOTICE 'people loaded: %', (SELECT count(*) FROM people); END $$;
SELECT 1/0;
INSERT INTO people VALUES (1, 'duplicate', NULL);
\copy (SELECT * FROM people WHERE id % 3 = 0 ORDER BY id) TO 'out.csv' WITH (FORMAT csv, HEADER true)
UPDATE people SET name = upper(name) WHERE id <= 10;
SELECT * FROM people ORDER BY id LIMIT 12;
BEGIN;
DELETE FROM people WHERE id > 1000;
SELECT count(*) FROM people;
ROLLBACK;
SELECT count(*) FROM people;
\echo done
";

/// Runs the script with psql -f in a fresh directory holding people.csv; returns the run and
/// the file the script's \copy wrote.
fn run_script(target: &Target) -> Result<(ToolRun, Vec<u8>)> {
    let dir = Scratch::new("psql-script")?;
    std::fs::write(dir.join("people.csv"), people_csv())?;
    std::fs::write(dir.join("script.sql"), SCRIPT)?;
    let login = app_login().in_database(&fresh_database("psqlscript")?);
    let run = psql(
        target,
        &login,
        "require",
        &["-f", "script.sql"],
        dir.path(),
        None,
    )?;
    let out = std::fs::read(dir.join("out.csv"))
        .with_context(|| format!("the script's \\copy TO wrote no file\n{}", run.describe()))?;
    Ok((run, out))
}

/// A psql script with \copy in and out, a NOTICE, two failing statements (psql goes on), and
/// a rolled-back transaction: stdout, stderr, the exit status and the exported file are the
/// same through warden as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_script_with_copy_errors_and_notices_matches_direct() -> Result<()> {
    let (direct, warden) = both_targets()?;
    warden
        .watch(async {
            let (d_run, d_out) = run_script(&direct)?;
            let stderr = d_run.stderr_text();
            ensure!(
                stderr.contains("NOTICE:  people loaded: 2000")
                    && stderr.contains("division by zero")
                    && stderr.contains("duplicate key")
                    && d_run.stdout_text().contains("done"),
                "the direct run is not what the test expects:\n{}",
                d_run.describe()
            );
            ensure!(String::from_utf8_lossy(&d_out).lines().count() == 667);
            let (w_run, w_out) = run_script(&warden)?;
            same_run("psql -f script.sql", &d_run, &w_run)?;
            same_bytes("the file written by \\copy ... TO", &d_out, &w_out)
        })
        .await
}

/// pgbench -i (scale 1: 100,000 accounts loaded with COPY), then 4 clients in the simple,
/// extended and prepared query modes, the select-only script and the default TPC-B-like
/// script: every transaction is processed and none fails.
async fn pgbench_initialises_and_runs_in_every_mode(target: &Target) -> Result<()> {
    let login = app_login().in_database(&fresh_database("bench")?);
    let init = pgbench(target, &login, "require", &["-i", "-s", "1", "-q"])?;
    ensure!(init.success(), "pgbench -i failed\n{}", init.describe());
    ensure!(
        init.stderr_text().contains("done"),
        "pgbench -i did not finish\n{}",
        init.describe()
    );
    let runs: [&[&str]; 5] = [
        &["-M", "simple"],
        &["-M", "extended"],
        &["-M", "prepared"],
        &["-S", "-M", "prepared"],
        &[],
    ];
    for mode in runs {
        let mut args = vec!["-c", "4", "-j", "2", "-t", "25"];
        args.extend_from_slice(mode);
        let run = pgbench(target, &login, "require", &args)?;
        ensure!(run.success(), "pgbench {args:?} failed\n{}", run.describe());
        let report = pgbench_report(&run)?;
        ensure!(
            report.processed == 100 && report.expected == 100 && report.failed == 0,
            "pgbench {args:?}: {report:?}\n{}",
            run.describe()
        );
    }
    Ok(())
}

fn psycopg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/psycopg_client.py")
}

/// psycopg 3 over TLS with SCRAM (libpq 16+ is told to accept nothing else): executemany,
/// COPY in and out, a server-side cursor, binary results, ParameterStatus, an error and
/// recovery.
async fn psycopg_works(target: &Target) -> Result<()> {
    let probe = python(Path::new("-c"), &["import psycopg"], &[])?;
    ensure!(
        probe.success(),
        "psycopg is not installed for python3: run `pip install \"psycopg[binary]\"` (.ci/run does)\n{}",
        probe.describe()
    );
    let app = unique_name("psycopg");
    let dsn = target.conninfo(&app_login(), "require", &[("application_name", &app)]);
    let table = unique_name("psy");
    let run = python(
        &psycopg_script(),
        &[],
        &[("WARDEN_TEST_DSN", &dsn), ("WARDEN_TEST_TABLE", &table)],
    )?
    .ensure_success()?;
    let seen: Value = serde_json::from_str(run.stdout_text().trim())
        .with_context(|| format!("the psycopg script printed no JSON\n{}", run.describe()))?;
    let expect = |key: &str, value: Value| -> Result<()> {
        ensure!(
            seen.get(key) == Some(&value),
            "psycopg saw {key} = {:?}, expected {value}\nall: {seen}",
            seen.get(key)
        );
        Ok(())
    };
    expect("ssl_in_use", Value::Bool(true))?;
    expect("application_name", Value::String(app.clone()))?;
    expect("copy_out_rows", 2000.into())?;
    expect("copy_out_last", serde_json::json!(["2000", "copied\t2000"]))?;
    expect("server_cursor_count", 2000.into())?;
    expect("server_cursor_in_order", Value::Bool(true))?;
    expect(
        "binary_row",
        serde_json::json!([42, "name 42", "10.5", "2a".repeat(42), true]),
    )?;
    expect("renamed", Value::String("psycopg-renamed".into()))?;
    expect("error_sqlstate", Value::String("22012".into()))?;
    expect("after_error", Value::String("still usable".into()))?;
    Ok(())
}
