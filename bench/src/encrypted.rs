//! The encrypted workloads' data and warden-enc: the people tables, the keyring, the policy,
//! the migration that encrypts the table, and the check that warden-enc answers correctly
//! before anything is measured.
//!
//! Two tables with the same rows and indexes are loaded:
//! `bench_people (id bigint PRIMARY KEY, id_card varchar(18) UNIQUE, salary numeric(12,2),
//! name text)` with an index on `salary`, and its plaintext copy `bench_people_plain`. Person
//! `id` has the ID card `100000000000 + id` and a salary spread over 0 .. 100,000
//! (`(id × 7919 mod 10^7) / 100`: distinct for up to ten million rows, in no relation to `id`).
//!
//! `bench_people` is owned by warden's service login (`bench_warden`, which the policy needs)
//! and encrypted the way an operator does it: `warden encrypt` on `id_card` (SM4
//! deterministic, `varchar(18)`) then on `salary` (SM4 order-preserving, `numeric(12,2)`),
//! each timed, at the default batch size. Only then is warden-enc started (audit on, as
//! warden-audit, plus the policy), and verified:
//!
//! - behind warden's back, both columns are `bytea` under their `warden_enc_*` check;
//! - through warden-enc with the simple protocol, lookups of the first, middle and last ID
//!   card and one salary range return exactly what the plaintext copy returns directly;
//! - through warden-enc with pgbench `-M prepared` (the measurement's own client and mode:
//!   text parameters, text results), a `\gset` of one lookup and of the first row of one range
//!   equals the plaintext values, or a division by zero aborts pgbench.
//!
//! A setup or a check that fails leaves warden-enc unmeasured (its rows say why), so a broken
//! setup cannot produce a fast but wrong number.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::runtime::Runtime;
use tokio_postgres::SimpleQueryMessage;
use warden_tests::pg::{Login, PasswordAuth, PgInstance, Target, password_for, pgbench};
use warden_tests::warden::{ConfigDir, EncryptionFiles, WardenConfig};

use crate::lab::{APP_ROLE, DATABASE};
use crate::pgbench::{ID_CARD_BASE, RANGE_LIMIT};

/// The encrypted table (read through warden-enc).
pub const TABLE: &str = "bench_people";
/// Its plaintext copy (read directly: the reference).
pub const PLAIN_TABLE: &str = "bench_people_plain";
/// Warden's service login: owns [`TABLE`], reads the catalog, runs the migrations.
pub const SERVICE_ROLE: &str = "bench_warden";
/// How long one `warden encrypt` may run.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(3600);

/// One timed `warden encrypt`.
#[derive(Debug, Clone)]
pub struct Migration {
    /// `public.bench_people.id_card`.
    pub column: String,
    /// `SM4 deterministic, varchar(18)`.
    pub what: &'static str,
    /// Rows warden says it encrypted.
    pub rows: u64,
    /// Wall time of the command (process start to exit, the swap included).
    pub seconds: f64,
    /// `rows / seconds`.
    pub rows_per_s: f64,
    /// Warden's own summary line (its rate excludes start-up and the swap).
    pub summary: String,
}

/// What the setup did, for the report.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub rows: u64,
    /// Loading both tables and their indexes.
    pub load_seconds: f64,
    pub migrations: Vec<Migration>,
    /// What was checked before measuring.
    pub verified: Vec<String>,
    /// Why warden-enc is not measured, if it is not.
    pub error: Option<String>,
}

/// The keyring, the policy and the written configuration: held for the lab's lifetime (their
/// scratch directories go when they are dropped).
pub struct Files {
    _keys: EncryptionFiles,
    _config: ConfigDir,
}

impl Files {
    pub fn keep(keys: EncryptionFiles, config: ConfigDir) -> Files {
        Files {
            _keys: keys,
            _config: config,
        }
    }
}

/// The service login.
pub fn service_login() -> Login {
    Login {
        user: SERVICE_ROLE.into(),
        password: password_for(SERVICE_ROLE),
        database: DATABASE.into(),
    }
}

/// ID card of person `id`.
pub fn id_card(id: u64) -> String {
    (ID_CARD_BASE + id).to_string()
}

/// Creates the service login and both tables with `rows` rows; returns the seconds it took.
pub fn load(pg: &PgInstance, rows: u64) -> Result<f64> {
    let started = Instant::now();
    pg.create_named_role(SERVICE_ROLE, PasswordAuth::Scram, "")?;
    let mut sql = String::new();
    for table in [TABLE, PLAIN_TABLE] {
        let _ = write!(
            sql,
            "CREATE TABLE {table} (id bigint PRIMARY KEY, id_card varchar(18) UNIQUE, \
               salary numeric(12,2), name text); \
             INSERT INTO {table} SELECT g, ({ID_CARD_BASE} + g)::text, \
               ((g * 7919) % 10000000) / 100.0, 'person ' || g FROM generate_series(1::bigint, {rows}) g; \
             CREATE INDEX ON {table} (salary); "
        );
    }
    // The service login owns the encrypted table (and creates the migration's trigger
    // function); the application reads it through warden with ordinary grants.
    let _ = write!(
        sql,
        "ALTER TABLE {TABLE} OWNER TO {SERVICE_ROLE}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {APP_ROLE}; \
         ALTER TABLE {PLAIN_TABLE} OWNER TO {APP_ROLE}; \
         GRANT CREATE ON SCHEMA public TO {SERVICE_ROLE}"
    );
    pg.admin_sql_in(DATABASE, &sql)
        .context("cannot load the people tables")?;
    pg.admin_sql_in(DATABASE, &format!("VACUUM ANALYZE {TABLE}, {PLAIN_TABLE}"))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Makes the keyring (an SM4 deterministic key and an SM4 order-preserving one) and the policy,
/// and points `config` at them with the service login.
pub fn keys_and_policy(config: &mut WardenConfig) -> Result<EncryptionFiles> {
    let files = EncryptionFiles::create()?;
    files.add_key(&format!("{TABLE}.id_card"), "sm4", "deterministic")?;
    files.add_key(&format!("{TABLE}.salary"), "sm4", "ope")?;
    files.write_policy(&format!(
        "[[encrypt]]\n\
         column = \"public.{TABLE}.id_card\"\nkey = \"{TABLE}.id_card\"\n\
         algorithm = \"sm4\"\nmode = \"deterministic\"\ntype = \"varchar(18)\"\nstorage = \"bytea\"\n\n\
         [[encrypt]]\n\
         column = \"public.{TABLE}.salary\"\nkey = \"{TABLE}.salary\"\n\
         algorithm = \"sm4\"\nmode = \"ope\"\ntype = \"numeric(12,2)\"\nstorage = \"bytea\"\n"
    ))?;
    files.apply(config, "main", &service_login())?;
    Ok(files)
}

/// Encrypts `id_card`, then `salary`, with `warden encrypt` (default batch size), timing each;
/// checks behind warden's back that both are ciphertext now.
pub fn migrate(pg: &PgInstance, config: &ConfigDir) -> Result<Vec<Migration>> {
    let mut done = Vec::new();
    for (column, what) in [
        ("id_card", "SM4 deterministic, varchar(18)"),
        ("salary", "SM4 ope, numeric(12,2)"),
    ] {
        let qualified = format!("public.{TABLE}.{column}");
        eprintln!("   warden encrypt {qualified} ...");
        let started = Instant::now();
        let run = config
            .cli(
                &["encrypt", "--config", "{config}", &qualified],
                MIGRATION_TIMEOUT,
            )?
            .ensure_success()
            .with_context(|| format!("warden encrypt {qualified} failed"))?;
        let seconds = started.elapsed().as_secs_f64();
        let out = run.stdout_text();
        let summary = out
            .lines()
            .find(|l| l.starts_with("encrypted ") && l.contains("rows/s"))
            .with_context(|| format!("no summary line from warden encrypt\n{}", run.describe()))?
            .to_string();
        let rows = summary_rows(&summary)
            .with_context(|| format!("cannot read the rows in {summary:?}"))?;
        eprintln!("   {summary}");
        done.push(Migration {
            column: qualified,
            what,
            rows,
            seconds,
            rows_per_s: rows as f64 / seconds.max(f64::EPSILON),
            summary,
        });
    }
    let state = pg.admin_sql_in(
        DATABASE,
        &format!(
            "SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || \
               (SELECT count(*) FROM pg_constraint c WHERE c.conrelid = a.attrelid \
                  AND c.conname = 'warden_enc_' || a.attname), ', ' ORDER BY a.attname) \
             FROM pg_attribute a WHERE a.attrelid = '{TABLE}'::regclass \
               AND a.attname IN ('id_card', 'salary')"
        ),
    )?;
    ensure!(
        state.trim() == "id_card bytea 1, salary bytea 1",
        "after warden encrypt, {TABLE} is not ciphertext under the envelope checks: {}",
        state.trim()
    );
    // The type change dropped the columns' statistics.
    pg.admin_sql_in(DATABASE, &format!("VACUUM ANALYZE {TABLE}"))?;
    Ok(done)
}

/// `encrypted 1,000,000 row(s) of … in 12.3 s (81,234 rows/s)` → 1000000.
fn summary_rows(line: &str) -> Option<u64> {
    line.split_whitespace()
        .nth(1)?
        .replace(',', "")
        .parse()
        .ok()
}

/// The persons checked: the first, one in the middle, the last.
fn probes(rows: u64) -> Vec<u64> {
    let mut ids = vec![1, rows.div_ceil(2).max(1), rows.max(1)];
    ids.dedup();
    ids
}

/// A simple query's rows, each as its values joined with `|` (`NULL` for NULL).
async fn simple_rows(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<String>> {
    Ok(client
        .simple_query(sql)
        .await
        .with_context(|| format!("through warden-enc: {sql}"))?
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect())
}

/// The same query on the plaintext copy, directly (psql's unaligned rows).
fn plain_rows(pg: &PgInstance, sql: &str) -> Result<Vec<String>> {
    Ok(pg
        .admin_sql_in(DATABASE, sql)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The `|`-separated values of the first row.
fn fields(rows: &[String]) -> Vec<&str> {
    rows.first()
        .map(|r| r.split('|').collect())
        .unwrap_or_default()
}

/// The checks through warden-enc (`target`), against the plaintext copy read directly; returns
/// what was checked.
pub fn verify(
    pg: &PgInstance,
    rt: &Runtime,
    target: &Target,
    app: &Login,
    rows: u64,
    scratch: &std::path::Path,
) -> Result<Vec<String>> {
    let mut checked = Vec::new();
    let range = |table: &str| {
        format!(
            "SELECT id, salary FROM {table} WHERE salary BETWEEN 1000 AND 60000 \
             ORDER BY salary LIMIT {RANGE_LIMIT}"
        )
    };
    let lookup = |table: &str, id: u64| {
        format!(
            "SELECT id, name, salary FROM {table} WHERE id_card = '{}'",
            id_card(id)
        )
    };
    // Simple protocol, literals.
    rt.block_on(async {
        let client = crate::driver::connect(target, app, "warden-bench-verify").await?;
        for id in probes(rows) {
            let got = simple_rows(&client, &lookup(TABLE, id)).await?;
            let want = plain_rows(pg, &lookup(PLAIN_TABLE, id))?;
            ensure!(
                got.len() == 1 && got == want,
                "through warden-enc, the lookup of person {id} returned {got:?}; the plaintext copy holds {want:?}"
            );
        }
        let got = simple_rows(&client, &range(TABLE)).await?;
        let want = plain_rows(pg, &range(PLAIN_TABLE))?;
        ensure!(
            !want.is_empty() && got == want,
            "through warden-enc, a salary range returned {got:?}; the plaintext copy holds {want:?}"
        );
        anyhow::Ok(())
    })?;
    checked.push(format!(
        "simple protocol: lookups of persons {:?} and a salary range ({} rows) equal the plaintext copy's",
        probes(rows),
        RANGE_LIMIT
    ));

    // pgbench -M prepared, as measured: \gset, then a division by zero unless the values are
    // the plaintext copy's.
    let middle = probes(rows)[probes(rows).len() / 2];
    let person = plain_rows(pg, &lookup(PLAIN_TABLE, middle))?;
    let (want_id, want_salary) = match fields(&person)[..] {
        [id, _, salary] => (id, salary),
        _ => bail!("the plaintext copy has no person {middle}: {person:?}"),
    };
    let first = plain_rows(pg, &range(PLAIN_TABLE))?;
    let (first_id, first_salary) = match fields(&first)[..] {
        [id, salary] => (id, salary),
        _ => bail!("the plaintext copy has no salary in the checked range: {first:?}"),
    };
    let script = format!(
        "\\set c {card}\n\
         SELECT id AS l_id, id_card AS l_card, salary AS l_salary FROM {TABLE} WHERE id_card = :c \\gset\n\
         \\set ok 1 / (CASE WHEN :l_id = {want_id} AND :l_card = {card} AND :l_salary = {want_salary} THEN 1 ELSE 0 END)\n\
         \\set lo 1000\n\
         \\set hi :lo + 59000\n\
         SELECT id AS r_id, salary AS r_salary FROM {TABLE} WHERE salary BETWEEN :lo AND :hi ORDER BY salary LIMIT 1 \\gset\n\
         \\set ok 1 / (CASE WHEN :r_id = {first_id} AND :r_salary = {first_salary} THEN 1 ELSE 0 END)\n",
        card = id_card(middle)
    );
    let file = scratch.join("verify-enc.sql");
    std::fs::write(&file, &script)?;
    let file_arg = file.to_string_lossy().into_owned();
    let run = pgbench(
        target,
        app,
        "disable",
        &[
            "-n", "-M", "prepared", "-c", "1", "-t", "1", "-f", &file_arg,
        ],
    )?;
    ensure!(
        run.success()
            && run
                .stdout_text()
                .contains("number of transactions actually processed: 1/1"),
        "through warden-enc, pgbench -M prepared did not read the plaintext values \
         (a division by zero means a value differed)\nscript:\n{script}\n{}",
        run.describe()
    );
    checked.push(format!(
        "pgbench -M prepared: person {middle}'s id, ID card and salary, and the first row of a \
         salary range, equal the plaintext copy's"
    ));
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_warden_encrypt_summaries() {
        assert_eq!(
            summary_rows(
                "encrypted 1,000,000 row(s) of public.bench_people.id_card in 12.3 s (81,234 rows/s)"
            ),
            Some(1_000_000)
        );
        assert_eq!(summary_rows("encrypted"), None);
    }

    #[test]
    fn probes_and_id_cards() {
        assert_eq!(probes(1_000_000), vec![1, 500_000, 1_000_000]);
        assert_eq!(probes(1), vec![1]);
        assert_eq!(id_card(42), "100000000042");
        assert_eq!(id_card(1_000_000).len(), 12);
    }
}
