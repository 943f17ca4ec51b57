//! The online migrations of column encryption on PostgreSQL: `warden encrypt`, `warden decrypt`
//! and `warden rekey`, run the way an operator runs them, against a table of tens of thousands
//! of rows, checked behind warden's back with a superuser session and `pg_dump`.
//!
//! Interruption is simulated with the hidden `--stop-after-batches N` flag (the process stops
//! between batches, as a kill between two transactions leaves it); rows the application writes
//! meanwhile are written directly, as the proxy relays them while the column is still plaintext.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use warden_tests::fixtures::{self, APP_DATABASE, app_login};
use warden_tests::pg::{Session, clear_libpq_env};
use warden_tests::scratch::unique_name;
use warden_tests::tools::{self, ToolRun};
use warden_tests::warden::{ConfigDir, EncryptionFiles, MIGRATION_TIMEOUT, WardenConfig};

/// Rows of the test table.
const ROWS: i64 = 20_000;

/// A table, its keys and policy, and a configuration for the migration commands.
struct Fixture {
    table: String,
    files: EncryptionFiles,
    dir: ConfigDir,
    admin: Session,
}

impl Fixture {
    /// A table `id bigint PRIMARY KEY, id_card varchar(18) UNIQUE, salary numeric(12,2), note
    /// text` with `rows` rows (some NULLs, one empty ID card), owned by the service login, a
    /// copy of it as it was (`<table>_orig`), and a policy: `id_card` SM4 deterministic
    /// (bytea), `salary` SM4 order-preserving (bytea).
    async fn new(prefix: &str, rows: i64) -> Result<Fixture> {
        let pg = fixtures::pg()?;
        let table = unique_name(prefix);
        let admin = pg.admin_in(APP_DATABASE).await?;
        admin
            .batch_execute(&format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, id_card varchar(18) UNIQUE, \
                   salary numeric(12,2), note text); \
                 CREATE INDEX ON {table} (salary); \
                 INSERT INTO {table} \
                   SELECT g, CASE WHEN g % 97 = 0 THEN NULL WHEN g = 5 THEN '' \
                                  ELSE '1101011990' || lpad(g::text, 8, '0') END, \
                          CASE WHEN g % 89 = 0 THEN NULL ELSE ((g * 7919) % 10000000) / 100.0 + 0.25 END, \
                          'note ' || g \
                   FROM generate_series(1, {rows}) g; \
                 ALTER TABLE {table} OWNER TO {owner}; \
                 CREATE TABLE {table}_orig AS SELECT * FROM {table}; \
                 ANALYZE {table}",
                owner = fixtures::APP_ROLE
            ))
            .await
            .context("cannot create the test table")?;
        let files = EncryptionFiles::create()?;
        files.add_key(&format!("{table}.id_card"), "sm4", "deterministic")?;
        files.add_key(&format!("{table}.salary"), "sm4", "ope")?;
        files.write_policy(&format!(
            "[[encrypt]]\ncolumn = \"public.{table}.id_card\"\nkey = \"{table}.id_card\"\n\
             algorithm = \"sm4\"\nmode = \"deterministic\"\ntype = \"varchar(18)\"\nstorage = \"bytea\"\n\n\
             [[encrypt]]\ncolumn = \"public.{table}.salary\"\nkey = \"{table}.salary\"\n\
             algorithm = \"sm4\"\nmode = \"ope\"\ntype = \"numeric(12,2)\"\n"
        ))?;
        let mut config = WardenConfig::new(fixtures::main_upstream()?);
        files.apply(&mut config, "main", &app_login())?;
        let dir = ConfigDir::write(config)?;
        Ok(Fixture {
            table,
            files,
            dir,
            admin,
        })
    }

    /// `warden COMMAND --config FILE ARGS... public.<table>.<column>`.
    fn warden(&self, command: &str, column: &str, args: &[&str]) -> Result<ToolRun> {
        let target = format!("public.{}.{column}", self.table);
        let mut full = vec![command, "--config", "{config}"];
        full.extend_from_slice(args);
        full.push(&target);
        self.dir.cli(&full, MIGRATION_TIMEOUT)
    }

    /// As [`Fixture::warden`], which must complete (exit status 0).
    fn migrate(&self, command: &str, column: &str, args: &[&str]) -> Result<ToolRun> {
        self.warden(command, column, args)?.ensure_success()
    }

    async fn count(&self, sql: &str) -> Result<i64> {
        let sql = sql.replace("{t}", &self.table);
        Ok(self
            .admin
            .query_one(&sql, &[])
            .await
            .with_context(|| sql.clone())?
            .get(0))
    }

    async fn text(&self, sql: &str) -> Result<Option<String>> {
        let sql = sql.replace("{t}", &self.table);
        Ok(self
            .admin
            .query_opt(&sql, &[])
            .await
            .with_context(|| sql.clone())?
            .and_then(|r| r.get(0)))
    }

    /// `format_type` of a column of the table.
    async fn column_type(&self, column: &str) -> Result<String> {
        self.text(&format!(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = '{{t}}'::regclass AND attname = '{column}' AND NOT attisdropped"
        ))
        .await?
        .with_context(|| format!("{}.{column} does not exist", self.table))
    }

    /// The live columns in order.
    async fn columns(&self) -> Result<Vec<String>> {
        let rows = self
            .admin
            .query(
                &format!(
                    "SELECT attname::text FROM pg_attribute WHERE attrelid = '{}'::regclass \
                     AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    self.table
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Rows that differ from the copy made before (or since, by the test's own writes).
    async fn differences(&self) -> Result<i64> {
        self.count(
            "SELECT count(*) FROM {t} t FULL JOIN {t}_orig o USING (id) \
             WHERE t.id IS NULL OR o.id IS NULL OR t.id_card IS DISTINCT FROM o.id_card \
             OR t.salary IS DISTINCT FROM o.salary OR t.note IS DISTINCT FROM o.note",
        )
        .await
    }

    /// What warden left on the table besides the column: the shadow column, the trigger and
    /// its function.
    async fn leftovers(&self, column: &str) -> Result<i64> {
        self.count(&format!(
            "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = '{{t}}'::regclass \
                       AND attname = '{column}__warden' AND NOT attisdropped) \
                  + (SELECT count(*) FROM pg_trigger WHERE tgrelid = '{{t}}'::regclass \
                       AND tgname LIKE 'warden_mig_%') \
                  + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'warden_mig_{{t}}_%')"
        ))
        .await
    }

    /// Whether the constraint `warden_enc_<column>` exists.
    async fn has_check(&self, column: &str) -> Result<bool> {
        Ok(self
            .count(&format!(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = '{{t}}'::regclass \
                 AND conname = 'warden_enc_{column}'"
            ))
            .await?
            == 1)
    }

    /// `pg_dump --data-only -t public.<table>`.
    fn pg_dump(&self) -> Result<String> {
        let pg = fixtures::pg()?;
        let mut dump = Command::new(pg.bin_dir().join("pg_dump"));
        dump.arg("-h")
            .arg(pg.socket_dir())
            .args([
                "-p",
                &pg.port().to_string(),
                "-U",
                "postgres",
                "-d",
                APP_DATABASE,
            ])
            .args(["--data-only", "-t", &format!("public.{}", self.table)]);
        clear_libpq_env(&mut dump);
        let run = tools::run(dump, Duration::from_secs(120))?.ensure_success()?;
        Ok(run.stdout_text())
    }

    /// Every non-NULL value of `column` in the copy, as text.
    async fn original_values(&self, column: &str) -> Result<Vec<String>> {
        let rows = self
            .admin
            .query(
                &format!(
                    "SELECT {column}::text FROM {}_orig WHERE {column} IS NOT NULL",
                    self.table
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// The number in `<past> N row(s) of …` of a migration's output.
fn rows_done(run: &ToolRun, past: &str) -> Result<i64> {
    let text = run.stdout_text();
    let line = text
        .lines()
        .find(|l| l.starts_with(past))
        .with_context(|| format!("no `{past} N row(s)` line\n{}", run.describe()))?;
    let number = line
        .split_whitespace()
        .nth(1)
        .context("no number")?
        .replace(',', "");
    Ok(number.parse()?)
}

/// Encryption interrupted after its first batches, with the application changing rows in
/// between, then resumed: every row is encrypted exactly once (rows changed after they were
/// done are done again, nothing else), a direct connection and `pg_dump` see only ciphertext,
/// the column keeps its place, type bytea, unique index and the envelope check. `rekey` after a
/// key rotation moves every value to the new version, and `decrypt` (itself interrupted and
/// resumed) gives back exactly the original values and types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_resume_rekey_decrypt() -> Result<()> {
    let f = Fixture::new("mig", ROWS).await?;
    let logs = fixtures::direct()?.logs;
    warden_tests::watch::watch(&logs, Duration::from_secs(600), async {
        let columns_before = f.columns().await?;
        let nonnull_cards = f.count("SELECT count(*) FROM {t} WHERE id_card IS NOT NULL").await?;

        // `config check` sees the policy fit the database, both columns still plaintext.
        let check = f.dir.cli(&["config", "check", "{config}"], MIGRATION_TIMEOUT)?;
        ensure!(check.success(), "config check failed\n{}", check.describe());
        ensure!(
            check.stdout_text().contains("2 still plaintext"),
            "{}",
            check.describe()
        );

        // Interrupted after four batches of 500.
        let first = f.warden("encrypt", "id_card", &["--batch", "500", "--stop-after-batches", "4"])?;
        ensure!(
            first.status.code() == Some(3) && first.stdout_text().contains("stopped after 4 batch"),
            "the interrupted run did not stop as asked\n{}",
            first.describe()
        );
        ensure!(f.column_type("id_card").await? == "character varying(18)");
        let shadowed = f
            .count("SELECT count(*) FROM {t} WHERE id_card__warden IS NOT NULL")
            .await?;
        ensure!(shadowed == 2000, "{shadowed} rows were done by the first run");

        // The application changes ten rows that were done, and adds five.
        f.admin
            .batch_execute(&f.table_sql(
                "UPDATE {t} SET id_card = 'X' || id::text WHERE id BETWEEN 11 AND 20; \
                 UPDATE {t}_orig SET id_card = 'X' || id::text WHERE id BETWEEN 11 AND 20; \
                 INSERT INTO {t} VALUES (100001, '220101', 1.5, 'late'), (100002, NULL, 2.5, 'late'), \
                   (100003, '220103', NULL, 'late'), (100004, '220104', 4.5, 'late'); \
                 INSERT INTO {t}_orig SELECT id, id_card, salary, note FROM {t} WHERE id > 100000",
            ))
            .await?;
        ensure!(
            f.count("SELECT count(*) FROM {t} WHERE id_card__warden IS NOT NULL").await? == 1990,
            "the trigger did not empty the shadow values of changed rows"
        );

        // Resumed: only the rows not done, and the ten changed ones, are encrypted.
        let second = f.migrate("encrypt", "id_card", &["--batch", "500"])?;
        let nonnull_now = f
            .count("SELECT count(*) FROM {t}_orig WHERE id_card IS NOT NULL")
            .await?;
        ensure!(nonnull_now == nonnull_cards + 3);
        let redone = rows_done(&second, "encrypted")?;
        ensure!(
            redone == nonnull_now - 1990,
            "the resumed run encrypted {redone} rows, expected {}\n{}",
            nonnull_now - 1990,
            second.describe()
        );
        ensure!(second.stdout_text().contains("resuming: 1,990 row(s)"), "{}", second.describe());

        f.migrate("encrypt", "salary", &[])?;

        // Behind warden's back: the column kept its place, is bytea under the envelope check,
        // keeps its unique index, and holds only envelopes; NULL stayed NULL.
        ensure!(f.columns().await? == columns_before, "the columns moved");
        ensure!(f.column_type("id_card").await? == "bytea");
        ensure!(f.column_type("salary").await? == "bytea");
        ensure!(f.has_check("id_card").await? && f.has_check("salary").await?);
        ensure!(f.leftovers("id_card").await? == 0 && f.leftovers("salary").await? == 0);
        ensure!(
            f.count(
                "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                 AND a.attnum = ANY (i.indkey) WHERE i.indrelid = '{t}'::regclass \
                 AND i.indisunique AND a.attname = 'id_card'"
            )
            .await?
                == 1,
            "the unique index on id_card is gone"
        );
        ensure!(
            f.count("SELECT count(*) FROM {t} WHERE substring(id_card from 1 for 2) <> '\\x5701'::bytea")
                .await?
                == 0
        );
        ensure!(
            f.count("SELECT count(*) FROM {t} WHERE length(salary) <> 28").await? == 0
        );
        ensure!(
            f.count("SELECT count(*) FROM {t} WHERE id_card IS NOT NULL").await? == nonnull_now
        );
        ensure!(
            f.count("SELECT count(*) FROM {t} t JOIN {t}_orig o USING (id) \
                     WHERE (t.salary IS NULL) <> (o.salary IS NULL)")
                .await?
                == 0
        );
        // The empty string is a value, encrypted like any other.
        ensure!(
            f.count("SELECT count(*) FROM {t} WHERE id = 5 AND length(id_card) > 2").await? == 1
        );
        // Order-preserving: ciphertext order is salary order.
        ensure!(
            f.count(
                "SELECT count(*) FROM (SELECT o.salary, lag(o.salary) OVER (ORDER BY t.salary) AS prev \
                 FROM {t} t JOIN {t}_orig o USING (id) WHERE t.salary IS NOT NULL) s \
                 WHERE s.prev > s.salary"
            )
            .await?
                == 0,
            "ordering by the ciphertext does not order the salaries"
        );
        // A direct client cannot write plaintext any more.
        let refused = f
            .admin
            .batch_execute(&f.table_sql("UPDATE {t} SET id_card = 'plain'::bytea WHERE id = 1"))
            .await;
        ensure!(refused.is_err(), "the envelope check let plaintext in");

        // pg_dump holds no plaintext value of either column.
        let dump = f.pg_dump()?;
        let tokens: HashSet<&str> = dump.split(['\t', '\n']).collect();
        for column in ["id_card", "salary"] {
            let leaked: Vec<String> = f
                .original_values(column)
                .await?
                .into_iter()
                .filter(|v| !v.is_empty() && tokens.contains(v.as_str()))
                .take(5)
                .collect();
            ensure!(leaked.is_empty(), "pg_dump shows plaintext {column} values: {leaked:?}");
        }
        ensure!(dump.contains("\\\\x5701"), "the dump holds no envelopes");

        // Rekey after a rotation: every value moves to version 2, once.
        let before = f.text("SELECT id_card::text FROM {t} WHERE id = 1").await?;
        f.files.rotate(&format!("{}.id_card", f.table))?;
        let rekey = f.migrate("rekey", "id_card", &["--batch", "700"])?;
        ensure!(rows_done(&rekey, "re-encrypted")? == nonnull_now, "{}", rekey.describe());
        ensure!(
            f.count("SELECT count(*) FROM {t} WHERE substring(id_card from 9 for 4) <> '\\x00000002'::bytea")
                .await?
                == 0,
            "values are left on key version 1"
        );
        ensure!(f.text("SELECT id_card::text FROM {t} WHERE id = 1").await? != before);
        let again = f.migrate("rekey", "id_card", &[])?;
        ensure!(rows_done(&again, "re-encrypted")? == 0, "{}", again.describe());

        // Decrypt, interrupted and resumed, restores the exact values and types.
        let stopped = f.warden("decrypt", "id_card", &["--batch", "300", "--stop-after-batches", "3"])?;
        ensure!(stopped.status.code() == Some(3), "{}", stopped.describe());
        ensure!(f.column_type("id_card").await? == "bytea");
        f.migrate("decrypt", "id_card", &["--batch", "300"])?;
        f.migrate("decrypt", "salary", &[])?;
        ensure!(f.column_type("id_card").await? == "character varying(18)");
        ensure!(f.column_type("salary").await? == "numeric(12,2)");
        ensure!(f.columns().await? == columns_before, "the columns moved");
        ensure!(!f.has_check("id_card").await? && !f.has_check("salary").await?);
        ensure!(f.leftovers("id_card").await? == 0 && f.leftovers("salary").await? == 0);
        let differences = f.differences().await?;
        ensure!(differences == 0, "{differences} rows differ from the original");

        // Both are plaintext again; a second decrypt has nothing to do and says so.
        let nothing = f.warden("decrypt", "id_card", &[])?;
        ensure!(
            !nothing.success() && nothing.stderr_text().contains("is not encrypted"),
            "{}",
            nothing.describe()
        );
        Ok(())
    })
    .await
}

/// The application keeps writing while `encrypt` runs (directly, as the proxy relays writes to
/// a column that is still plaintext): updates and inserts land between and inside the passes,
/// until the swap's lock and new type stop them. Nothing is lost: decrypting afterwards gives
/// exactly what the application last wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_encrypt_are_kept() -> Result<()> {
    let f = Fixture::new("migrw", ROWS).await?;
    let logs = fixtures::direct()?.logs;
    warden_tests::watch::watch(&logs, Duration::from_secs(600), async {
        let writer = fixtures::pg()?.admin_in(APP_DATABASE).await?;
        let table = f.table.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let writes = tokio::spawn(async move {
            let mut done = 0u64;
            for i in 0u64.. {
                if *stopped.borrow_and_update() {
                    break;
                }
                let id = (i * 7_919) % (ROWS as u64) + 1;
                let salary = format!("{}.{:02}", i % 100_000, i % 100);
                let sql = if i % 10 == 0 {
                    let new = 200_000 + i;
                    format!(
                        "INSERT INTO {table} (id, id_card, salary, note) VALUES ({new}, NULL, {salary}, 'w'); \
                         INSERT INTO {table}_orig VALUES ({new}, NULL, {salary}, 'w')"
                    )
                } else {
                    format!(
                        "UPDATE {table} SET salary = {salary} WHERE id = {id}; \
                         UPDATE {table}_orig SET salary = {salary} WHERE id = {id}"
                    )
                };
                // After the swap the column is bytea and plaintext no longer fits: the
                // application would now go through the proxy.
                if writer.batch_execute(&sql).await.is_err() {
                    break;
                }
                done += 1;
            }
            done
        });
        let run = tokio::task::block_in_place(|| f.migrate("encrypt", "salary", &["--batch", "200"]))?;
        let _ = stop.send(true);
        let written = writes.await?;
        ensure!(written > 0, "the writer wrote nothing during the migration");
        ensure!(f.column_type("salary").await? == "bytea", "{}", run.describe());
        ensure!(f.count("SELECT count(*) FROM {t} WHERE length(salary) <> 28").await? == 0);
        f.migrate("decrypt", "salary", &[])?;
        let differences = f.differences().await?;
        ensure!(
            differences == 0,
            "{differences} rows lost what the application wrote ({written} writes)\n{}",
            run.describe()
        );
        Ok(())
    })
    .await
}

/// A value that does not open (a wrong key, a damaged envelope) stops `decrypt` with the row's
/// primary key, and the batch that held it writes nothing; once the value is repaired, the
/// migration resumes and completes. Columns outside the policy, tables without a primary key
/// and columns in the wrong state are refused with messages that name them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_the_row_and_write_nothing() -> Result<()> {
    let f = Fixture::new("migerr", 2_000).await?;
    let logs = fixtures::direct()?.logs;
    warden_tests::watch::watch(&logs, Duration::from_secs(300), async {
        let refused = f.warden("decrypt", "id_card", &[])?;
        ensure!(
            !refused.success() && refused.stderr_text().contains("is not encrypted"),
            "{}",
            refused.describe()
        );
        let unknown = f.warden("encrypt", "note", &[])?;
        ensure!(
            !unknown.success() && unknown.stderr_text().contains("is not an encrypted column"),
            "{}",
            unknown.describe()
        );

        f.migrate("encrypt", "id_card", &["--batch", "100"])?;
        // Row 1234 gets a well-formed header with a body no key opens.
        let good = f.text("SELECT id_card::text FROM {t} WHERE id = 1234").await?;
        f.admin
            .batch_execute(&f.table_sql(
                "UPDATE {t} SET id_card = overlay(id_card placing '\\xffffffff'::bytea from 13) WHERE id = 1234",
            ))
            .await?;
        let failed = f.warden("decrypt", "id_card", &["--batch", "100"])?;
        let message = failed.stderr_text();
        ensure!(
            !failed.success()
                && message.contains("primary key \"id\" = '1234'")
                && message.contains(&format!("public.{}.id_card", f.table))
                && message.contains("nothing of this batch was written"),
            "{}",
            failed.describe()
        );
        // The batches before the one holding row 1234 were written, nothing from that one on.
        let written = f
            .count("SELECT count(*) FROM {t} WHERE id_card__warden IS NOT NULL")
            .await?;
        let before = f
            .count("SELECT count(*) FROM {t} WHERE id < 1234 AND id_card IS NOT NULL")
            .await?;
        let expected = before / 100 * 100;
        ensure!(
            written == expected,
            "{written} shadow values, expected {expected}\n{}",
            failed.describe()
        );
        ensure!(
            f.count("SELECT count(*) FROM {t} WHERE id >= 1234 AND id_card__warden IS NOT NULL")
                .await?
                == 0
        );
        ensure!(f.column_type("id_card").await? == "bytea");

        // Repaired, the migration resumes and completes.
        f.admin
            .batch_execute(&f.table_sql(&format!(
                "UPDATE {{t}} SET id_card = '{}'::bytea WHERE id = 1234",
                good.context("row 1234 has no ID card")?
            )))
            .await?;
        f.migrate("decrypt", "id_card", &["--batch", "100"])?;
        ensure!(f.column_type("id_card").await? == "character varying(18)");
        ensure!(
            f.count("SELECT count(*) FROM {t} t JOIN {t}_orig o USING (id) \
                     WHERE t.id_card IS DISTINCT FROM o.id_card")
                .await?
                == 0
        );

        // A table without a primary key is refused by name.
        f.admin
            .batch_execute(&f.table_sql("ALTER TABLE {t} DROP CONSTRAINT {t}_pkey"))
            .await?;
        let no_pk = f.warden("encrypt", "id_card", &[])?;
        ensure!(
            !no_pk.success()
                && no_pk.stderr_text().contains(&format!("table public.{} has no primary key", f.table)),
            "{}",
            no_pk.describe()
        );
        Ok(())
    })
    .await
}

/// `warden config check` reads the catalog through the service login: a column the database
/// does not have is a problem named by its policy line, a key the keyring lacks too, and a
/// database that does not answer is only a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_reads_the_catalog() -> Result<()> {
    let f = Fixture::new("migcheck", 10).await?;
    let check = |dir: &ConfigDir| dir.cli(&["config", "check", "{config}"], MIGRATION_TIMEOUT);
    let good = check(&f.dir)?;
    ensure!(
        good.success() && good.stdout_text().contains("2 still plaintext"),
        "{}",
        good.describe()
    );

    let policy = std::fs::read_to_string(f.files.policy_path())?;
    // The line of the new entry's `type`, where the policy places a column.
    let line = policy.lines().count() + 7;
    f.files.write_policy(&format!(
        "{policy}\n[[encrypt]]\ncolumn = \"public.{t}.missing\"\nkey = \"{t}.id_card\"\n\
         algorithm = \"sm4\"\nmode = \"deterministic\"\ntype = \"text\"\n",
        t = f.table
    ))?;
    let bad = check(&f.dir)?;
    ensure!(
        !bad.success()
            && bad.stderr_text().contains(&format!(
                "policy.toml:{line}: column public.{}.missing does not exist",
                f.table
            )),
        "{}",
        bad.describe()
    );

    f.files.write_policy(&format!(
        "{policy}\n[[encrypt]]\ncolumn = \"public.{t}.note\"\nkey = \"nope\"\n\
         algorithm = \"sm4\"\nmode = \"randomized\"\ntype = \"text\"\n",
        t = f.table
    ))?;
    let no_key = check(&f.dir)?;
    ensure!(
        !no_key.success()
            && no_key.stderr_text().contains(&format!(
                "policy.toml:{line}: public.{}.note: key \"nope\" is not in the keyring",
                f.table
            )),
        "{}",
        no_key.describe()
    );

    f.files.write_policy(&policy)?;
    let mut config = f.dir.config().clone();
    let spec = config.upstream_mut("main").context("no upstream main")?;
    spec.server = std::net::SocketAddr::from(([127, 0, 0, 1], warden_tests::ports::free_port()?));
    let unreachable = check(&ConfigDir::write(config)?)?;
    ensure!(
        unreachable.success()
            && unreachable
                .stderr_text()
                .contains("the database is not reachable"),
        "{}",
        unreachable.describe()
    );
    Ok(())
}

/// Measures `warden encrypt` on a large table (not part of the suite): run with the release
/// binary, e.g.
/// `cargo build --release -p warden-proxy && WARDEN_BIN=target/release/warden
///  WARDEN_MIGRATION_ROWS=200000 cargo test -p warden-tests --test pg_migration -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it on purpose, with the release binary"]
async fn encrypt_rate() -> Result<()> {
    let rows: i64 = std::env::var("WARDEN_MIGRATION_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let f = Fixture::new("migrate", rows).await?;
    for column in ["id_card", "salary"] {
        let started = std::time::Instant::now();
        let run = f.migrate("encrypt", column, &[])?;
        let seconds = started.elapsed().as_secs_f64();
        let done = rows_done(&run, "encrypted")?;
        println!(
            "encrypt {column} ({}): {done} rows in {seconds:.2} s = {:.0} rows/s (whole command: login, catalog, passes, swap, ANALYZE)",
            if column == "id_card" {
                "SM4 deterministic, varchar(18)"
            } else {
                "SM4 OPE, numeric(12,2)"
            },
            done as f64 / seconds
        );
        println!("  {}", run.stdout_text().trim().replace('\n', "\n  "));
    }
    for column in ["id_card", "salary"] {
        let started = std::time::Instant::now();
        let run = f.migrate("decrypt", column, &[])?;
        let done = rows_done(&run, "decrypted")?;
        println!(
            "decrypt {column}: {done} rows in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    if f.differences().await? != 0 {
        bail!("decrypt did not restore the table");
    }
    Ok(())
}

impl Fixture {
    /// `sql` with `{t}` replaced by the table's name.
    fn table_sql(&self, sql: &str) -> String {
        sql.replace("{t}", &self.table)
    }
}
