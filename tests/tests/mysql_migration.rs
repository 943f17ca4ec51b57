//! The online migrations of column encryption on MariaDB: `warden encrypt`, `warden decrypt` and
//! `warden rekey` on a MySQL upstream, run the way an operator runs them against a table of
//! 5,000 rows, checked behind warden's back with a direct connection and `mariadb-dump`, and
//! through a running warden.
//!
//! Interruption is simulated with the hidden `--stop-after-batches N` flag; while the migration
//! is interrupted the application writes through warden (the column is still plaintext to it).
//! `<table>_orig` keeps the values as the application wrote them, to compare with at the end.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mysql_async::Conn;
use mysql_async::prelude::*;
use warden_tests::mysql::fixtures::{self, DATABASE, app_login};
use warden_tests::mysql::{MyOptions, MyTarget};
use warden_tests::scratch::unique_name;
use warden_tests::tools::ToolRun;
use warden_tests::warden::{ConfigDir, EncryptionFiles, MIGRATION_TIMEOUT, Warden, WardenConfig};

/// Rows of the test table.
const ROWS: i64 = 5_000;

/// A table, its keys and policy, a configuration for the migration commands and a warden
/// running with it.
struct Fixture {
    table: String,
    files: EncryptionFiles,
    dir: ConfigDir,
    direct: MyTarget,
    warden: Option<Warden>,
}

impl Fixture {
    /// `id BIGINT PRIMARY KEY, name, id_card VARCHAR(18) UNIQUE, salary DECIMAL(12,2) NOT NULL,
    /// note`, with a two-column index over `name, salary`; `id_card` SM4 deterministic,
    /// `salary` SM4 order-preserving, both VARBINARY.
    async fn new(prefix: &str) -> Result<Fixture> {
        let direct = fixtures::direct()?;
        let table = unique_name(prefix);
        let mut admin = direct
            .connect(&app_login(), &MyOptions::program("mig-setup"))
            .await?;
        for sql in [
            format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(20) NOT NULL, \
                   id_card VARCHAR(18) NULL COMMENT 'ID card', salary DECIMAL(12,2) NOT NULL, \
                   note VARCHAR(30), UNIQUE KEY {table}_card (id_card), \
                   KEY {table}_name_salary (name, salary DESC))"
            ),
            format!(
                "INSERT INTO {table} SELECT seq, CONCAT('name ', seq), \
                   CASE WHEN seq % 97 = 0 THEN NULL WHEN seq = 5 THEN '' \
                        ELSE CONCAT('1101011990', LPAD(seq, 8, '0')) END, \
                   ((seq * 7919) % 10000000) / 100 - 20000.25, CONCAT('note ', seq) \
                 FROM seq_1_to_{ROWS}"
            ),
            format!("CREATE TABLE {table}_orig AS SELECT * FROM {table}"),
        ] {
            admin.query_drop(&sql).await.context(sql)?;
        }
        admin.disconnect().await?;
        let files = EncryptionFiles::create()?;
        files.add_key(&format!("{table}.id_card"), "sm4", "deterministic")?;
        files.add_key(&format!("{table}.salary"), "sm4", "ope")?;
        files.write_policy(&format!(
            "[[encrypt]]\ncolumn = \"{DATABASE}.{table}.id_card\"\nkey = \"{table}.id_card\"\n\
             algorithm = \"sm4\"\nmode = \"deterministic\"\ntype = \"varchar(18)\"\n\n\
             [[encrypt]]\ncolumn = \"{DATABASE}.{table}.salary\"\nkey = \"{table}.salary\"\n\
             algorithm = \"sm4\"\nmode = \"ope\"\ntype = \"decimal(12,2)\"\n"
        ))?;
        let mut config = WardenConfig::new(fixtures::upstream()?);
        files.apply_mysql(&mut config, "mysql", &app_login())?;
        let dir = ConfigDir::write(config.clone())?;
        let warden = Some(Warden::start(config)?);
        Ok(Fixture {
            table,
            files,
            dir,
            direct,
            warden,
        })
    }

    /// `warden COMMAND --config FILE ARGS... <database>.<table>.<column>`.
    fn warden(&self, command: &str, column: &str, args: &[&str]) -> Result<ToolRun> {
        let target = format!("{DATABASE}.{}.{column}", self.table);
        let mut full = vec![command, "--config", "{config}"];
        full.extend_from_slice(args);
        full.push(&target);
        self.dir.cli(&full, MIGRATION_TIMEOUT)
    }

    /// As [`Fixture::warden`], which must complete.
    fn migrate(&self, command: &str, column: &str, args: &[&str]) -> Result<ToolRun> {
        self.warden(command, column, args)?.ensure_success()
    }

    async fn behind(&self) -> Result<Conn> {
        self.direct
            .connect(&app_login(), &MyOptions::program("mig-direct"))
            .await
    }

    async fn app(&self) -> Result<Conn> {
        self.warden
            .as_ref()
            .context("warden was stopped")?
            .my_target("mysql")?
            .connect(&app_login(), &MyOptions::program("mig-app"))
            .await
    }

    fn sql(&self, sql: &str) -> String {
        sql.replace("{t}", &self.table)
    }

    /// One number from a direct connection.
    async fn count(&self, sql: &str) -> Result<i64> {
        let mut conn = self.behind().await?;
        let sql = self.sql(sql);
        let n: Option<i64> = conn.query_first(&sql).await.context(sql)?;
        conn.disconnect().await?;
        Ok(n.unwrap_or_default())
    }

    /// Rows of text from a direct connection, each joined with `|`.
    async fn lines(&self, sql: &str) -> Result<Vec<String>> {
        let mut conn = self.behind().await?;
        let sql = self.sql(sql);
        let rows: Vec<mysql_async::Row> = conn.query(&sql).await.context(sql)?;
        conn.disconnect().await?;
        Ok(rows.into_iter().map(join).collect())
    }

    /// The table's shape: its columns in order with their types, nullability and comments,
    /// and its indexes.
    async fn shape(&self) -> Result<(Vec<String>, Vec<String>)> {
        let columns = self
            .lines(&format!(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_COMMENT FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = '{DATABASE}' AND TABLE_NAME = '{{t}}' ORDER BY ORDINAL_POSITION"
            ))
            .await?;
        let indexes = self
            .lines(&format!(
                "SELECT INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, COLLATION \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{DATABASE}' \
                 AND TABLE_NAME = '{{t}}' ORDER BY INDEX_NAME, SEQ_IN_INDEX"
            ))
            .await?;
        Ok((columns, indexes))
    }

    /// What a migration leaves behind while it runs: shadow columns and triggers.
    async fn leftovers(&self) -> Result<i64> {
        self.count(&format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{DATABASE}' \
               AND TABLE_NAME = '{{t}}' AND COLUMN_NAME LIKE '%\\_\\_warden') \
             + (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = '{DATABASE}' \
               AND EVENT_OBJECT_TABLE = '{{t}}')"
        ))
        .await
    }

    /// warden's check constraints on the table.
    async fn checks(&self) -> Result<Vec<String>> {
        self.lines(&format!(
            "SELECT CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = '{DATABASE}' AND TABLE_NAME = '{{t}}' ORDER BY 1"
        ))
        .await
    }

    /// Rows that differ, byte for byte, from the copy.
    async fn differences(&self) -> Result<i64> {
        self.count(
            "SELECT (SELECT COUNT(*) FROM {t}) + (SELECT COUNT(*) FROM {t}_orig) \
               - 2 * (SELECT COUNT(*) FROM {t} t JOIN {t}_orig o ON o.id = t.id \
                      AND BINARY t.id_card <=> BINARY o.id_card AND t.salary <=> o.salary \
                      AND t.name = o.name AND t.note <=> o.note)",
        )
        .await
    }

    /// `mariadb-dump --hex-blob` of the table.
    fn dump(&self) -> Result<String> {
        let login = app_login();
        let dump = std::process::Command::new(warden_tests::mysql::find("mariadb-dump")?)
            .arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg("--host=127.0.0.1")
            .arg(format!("--port={}", self.direct.port))
            .arg(format!("--user={}", login.user))
            .arg("--hex-blob")
            .arg("--skip-extended-insert")
            .arg(DATABASE)
            .arg(&self.table)
            .env("MYSQL_PWD", &login.password)
            .output()?;
        ensure!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        Ok(String::from_utf8_lossy(&dump.stdout).into_owned())
    }
}

/// Rows of text of a query on `conn`, each joined with `|`.
async fn read(conn: &mut Conn, sql: String) -> Result<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn.query(&sql).await.context(sql)?;
    Ok(rows.into_iter().map(join).collect())
}

fn join(row: mysql_async::Row) -> String {
    row.unwrap()
        .iter()
        .map(|v| match v {
            mysql_async::Value::NULL => "NULL".to_string(),
            mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            other => other.as_sql(true),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The number in `<past> N row(s) of …`, and the rate in `(R rows/s)`.
fn rows_done(run: &ToolRun, past: &str) -> Result<(i64, String)> {
    let text = run.stdout_text();
    let line = text
        .lines()
        .find(|l| l.starts_with(past))
        .with_context(|| format!("no `{past} N row(s)` line\n{}", run.describe()))?;
    let number = line.split_whitespace().nth(1).context("no number")?;
    let rate = line
        .rsplit_once('(')
        .map(|(_, r)| r.trim_end_matches(')').to_string())
        .unwrap_or_default();
    Ok((number.replace(',', "").parse()?, rate))
}

/// Encrypt (interrupted, with the application writing through warden in between, then
/// resumed), checks behind warden's back and through it, rekey after a rotation, and decrypt
/// (interrupted and resumed) back to the exact values and types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_resume_rekey_decrypt() -> Result<()> {
    let mut f = Fixture::new("mymig").await?;
    let logs = f.direct.logs.clone();
    warden_tests::watch::watch(&logs, Duration::from_secs(600), async {
        let shape_before = f.shape().await?;
        let nonnull_cards = f.count("SELECT COUNT(*) FROM {t} WHERE id_card IS NOT NULL").await?;

        // Interrupted after three batches of 500.
        let first = f.warden("encrypt", "id_card", &["--batch", "500", "--stop-after-batches", "3"])?;
        ensure!(
            first.status.code() == Some(3) && first.stdout_text().contains("stopped after 3 batch"),
            "the interrupted run did not stop as asked\n{}",
            first.describe()
        );
        let shadowed = f.count("SELECT COUNT(*) FROM {t} WHERE id_card__warden IS NOT NULL").await?;
        ensure!(shadowed == 1500, "{shadowed} rows were done by the first run");

        // The application changes ten done rows (one only in letter case) and adds three,
        // through warden, which still passes the column through as plaintext.
        let mut app = f.app().await?;
        for sql in [
            "UPDATE {t} SET id_card = CONCAT('X', id) WHERE id BETWEEN 11 AND 19",
            "UPDATE {t} SET id_card = 'x11' WHERE id = 11",
            "INSERT INTO {t} VALUES (100001, 'late', '220101', 1.5, 'late'), \
               (100002, 'late', NULL, 2.5, 'late'), (100003, 'late', '220103', -3.75, NULL)",
        ] {
            app.query_drop(f.sql(sql)).await.context(sql)?;
        }
        app.disconnect().await?;
        let mut direct = f.behind().await?;
        for sql in [
            "UPDATE {t}_orig SET id_card = CONCAT('X', id) WHERE id BETWEEN 11 AND 19",
            "UPDATE {t}_orig SET id_card = 'x11' WHERE id = 11",
            "INSERT INTO {t}_orig SELECT * FROM {t} WHERE id > 100000",
        ] {
            direct.query_drop(f.sql(sql)).await.context(sql)?;
        }
        direct.disconnect().await?;
        ensure!(
            f.count("SELECT COUNT(*) FROM {t} WHERE id_card__warden IS NOT NULL").await? == 1491,
            "the triggers did not empty the shadow values of changed rows"
        );

        // Resumed: only the rows not done, and the changed ones.
        let started = std::time::Instant::now();
        let second = f.migrate("encrypt", "id_card", &["--batch", "500"])?;
        let nonnull_now = f.count("SELECT COUNT(*) FROM {t}_orig WHERE id_card IS NOT NULL").await?;
        ensure!(nonnull_now == nonnull_cards + 2);
        let (redone, _) = rows_done(&second, "encrypted")?;
        ensure!(
            redone == nonnull_now - 1491,
            "the resumed run encrypted {redone} rows, expected {}\n{}",
            nonnull_now - 1491,
            second.describe()
        );
        ensure!(second.stdout_text().contains("resuming: 1,491 row(s)"), "{}", second.describe());
        let resumed = started.elapsed();

        let started = std::time::Instant::now();
        let salary = f.migrate("encrypt", "salary", &[])?;
        let whole = started.elapsed();
        let (salaries, rate) = rows_done(&salary, "encrypted")?;
        ensure!(salaries == ROWS + 3, "{}", salary.describe());
        println!(
            "encrypt salary (SM4 OPE decimal(12,2), debug build): {salaries} rows, {rate} in the passes; \
             whole command {:.2} s = {:.0} rows/s; resumed id_card run: {redone} rows in {:.2} s",
            whole.as_secs_f64(),
            salaries as f64 / whole.as_secs_f64(),
            resumed.as_secs_f64()
        );

        // Behind warden's back: same columns in the same places, same indexes; VARBINARY under
        // the envelope checks; only envelopes; NULL stayed NULL.
        let (columns, indexes) = f.shape().await?;
        ensure!(indexes == shape_before.1, "the indexes changed: {indexes:#?}");
        let mut expected = shape_before.0.clone();
        expected[2] = "id_card|varbinary(136)|YES|ID card".into();
        expected[3] = "salary|varbinary(28)|NO|".into();
        ensure!(columns == expected, "{columns:#?}");
        ensure!(f.checks().await? == ["warden_enc_id_card", "warden_enc_salary"]);
        ensure!(f.leftovers().await? == 0, "warden left helper objects");
        ensure!(f.count("SELECT COUNT(*) FROM {t} WHERE LEFT(id_card, 2) <> X'5701'").await? == 0);
        ensure!(f.count("SELECT COUNT(*) FROM {t} WHERE LENGTH(salary) <> 28").await? == 0);
        ensure!(f.count("SELECT COUNT(*) FROM {t} WHERE id_card IS NOT NULL").await? == nonnull_now);
        let mut direct = f.behind().await?;
        let refused = direct
            .query_drop(f.sql("UPDATE {t} SET id_card = 'plain' WHERE id = 1"))
            .await;
        ensure!(refused.is_err(), "the envelope check let plaintext in");
        direct.disconnect().await?;

        // mariadb-dump holds no plaintext value of either column, as text or as hex.
        let dump = f.dump()?;
        ensure!(dump.contains("0x5701"), "the dump holds no envelopes");
        let tokens: HashSet<&str> = dump
            .split([',', '(', ')', ';', '\n'])
            .map(|t| t.trim_matches('\''))
            .collect();
        let cards = f.lines("SELECT id_card FROM {t}_orig WHERE id_card <> ''").await?;
        let salaries = f.lines("SELECT salary FROM {t}_orig").await?;
        for value in cards.iter().chain(&salaries) {
            let hex: String = value.bytes().map(|b| format!("{b:02X}")).collect();
            ensure!(
                !tokens.contains(value.as_str()) && !tokens.contains(format!("0x{hex}").as_str()),
                "{value} in the dump"
            );
        }
        // The plaintext copy, dumped the same way, would show them (the check can fail).
        ensure!(tokens.contains("name 42") && tokens.contains("note 42"));

        // Through warden (once its catalog has caught up): the original values, and searches
        // on ciphertext.
        let want = f.lines("SELECT id, id_card, salary FROM {t}_orig ORDER BY id").await?;
        let mut app = f.app().await?;
        let mut got = Vec::new();
        for _ in 0..50 {
            got = read(&mut app, f.sql("SELECT id, id_card, salary FROM {t} ORDER BY id")).await?;
            if got == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(got == want, "warden reads other values: {:?}", got.iter().take(3).collect::<Vec<_>>());
        let one = read(&mut app, f.sql("SELECT id FROM {t} WHERE id_card = '110101199000000042'")).await?;
        ensure!(one == ["42"], "{one:?}");
        let range = read(
            &mut app,
            f.sql("SELECT COUNT(*) FROM {t} WHERE salary BETWEEN -1000 AND 1000"),
        )
        .await?;
        let range_orig = f.count("SELECT COUNT(*) FROM {t}_orig WHERE salary BETWEEN -1000 AND 1000").await?;
        ensure!(range == [range_orig.to_string()], "{range:?} vs {range_orig}");
        app.disconnect().await?;
        // The running warden does not know the rotated key; stop it.
        f.warden.take();

        // Rekey after a rotation: every value moves to version 2, once.
        f.files.rotate(&format!("{}.id_card", f.table))?;
        let rekey = f.migrate("rekey", "id_card", &["--batch", "700"])?;
        ensure!(rows_done(&rekey, "re-encrypted")?.0 == nonnull_now, "{}", rekey.describe());
        ensure!(
            f.count("SELECT COUNT(*) FROM {t} WHERE SUBSTRING(id_card, 9, 4) <> X'00000002'").await? == 0,
            "values are left on key version 1"
        );
        let again = f.migrate("rekey", "id_card", &[])?;
        ensure!(rows_done(&again, "re-encrypted")?.0 == 0, "{}", again.describe());

        // Decrypt, interrupted and resumed, restores the exact values, types and shape.
        let stopped = f.warden("decrypt", "id_card", &["--batch", "400", "--stop-after-batches", "2"])?;
        ensure!(stopped.status.code() == Some(3), "{}", stopped.describe());
        let resumed = f.migrate("decrypt", "id_card", &["--batch", "400"])?;
        ensure!(resumed.stdout_text().contains("resuming: 800 row(s)"), "{}", resumed.describe());
        f.migrate("decrypt", "salary", &[])?;
        ensure!(f.shape().await? == shape_before, "the table's shape is not restored: {:#?}", f.shape().await?);
        ensure!(f.checks().await?.is_empty() && f.leftovers().await? == 0);
        let differences = f.differences().await?;
        ensure!(differences == 0, "{differences} rows differ from the original");

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

/// What the migration cannot keep is refused before anything changes, naming the column: a
/// `DEFAULT`, a foreign key, a table without a primary key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_reason() -> Result<()> {
    let mut f = Fixture::new("mymigno").await?;
    f.warden.take();
    let mut direct = f.behind().await?;
    let refused = |run: ToolRun, what: &str| -> Result<()> {
        ensure!(
            !run.success() && run.stderr_text().contains(what),
            "{}",
            run.describe()
        );
        Ok(())
    };
    direct
        .query_drop(f.sql("ALTER TABLE {t} ALTER COLUMN id_card SET DEFAULT 'x'"))
        .await?;
    refused(f.warden("encrypt", "id_card", &[])?, "has the default 'x'")?;
    direct
        .query_drop(f.sql(
            "ALTER TABLE {t} ALTER COLUMN id_card DROP DEFAULT, \
             ADD CONSTRAINT {t}_fk FOREIGN KEY (id_card) REFERENCES {t} (id_card)",
        ))
        .await?;
    refused(
        f.warden("encrypt", "id_card", &[])?,
        "is in the foreign key",
    )?;
    direct
        .query_drop(f.sql("ALTER TABLE {t} DROP FOREIGN KEY {t}_fk, DROP PRIMARY KEY"))
        .await?;
    refused(f.warden("encrypt", "salary", &[])?, "has no primary key")?;
    direct.disconnect().await?;
    ensure!(f.leftovers().await? == 0);
    Ok(())
}
