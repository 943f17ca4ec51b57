//! Transparent column encryption on MariaDB, end to end: an application that knows nothing of
//! warden writes and reads plaintext through it (mysql_async's text and binary protocols, the
//! mariadb CLI, LOAD DATA LOCAL INFILE), while the database holds only ciphertext and still
//! answers equality and range queries with its own indexes.
//!
//! One table per test, created directly in its encrypted form (VARBINARY / BLOB columns, and a
//! TEXT column with warden's check constraint), with a policy: `id_card` SM4 deterministic
//! `varchar(18)`, `salary` SM4 order-preserving `decimal(12,2)`, `born` AES order-preserving
//! `date`, `secret` AES randomized `text` and `rank` SM4 deterministic `int` stored as base64
//! text. A direct connection (and mysqldump) looks behind warden's back.

use anyhow::{Context, Result, bail, ensure};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};
use warden_tests::mysql::fixtures::{self, DATABASE, app_login};
use warden_tests::mysql::{MyOptions, MyTarget};
use warden_tests::scratch::unique_name;
use warden_tests::warden::{EncryptionFiles, Warden, WardenConfig};

/// A warden with an encryption policy over one fresh table.
struct Fixture {
    table: String,
    warden: Warden,
    direct: MyTarget,
    _files: EncryptionFiles,
}

impl Fixture {
    async fn new(prefix: &str) -> Result<Fixture> {
        let direct = fixtures::direct()?;
        let table = unique_name(prefix);
        let mut admin = direct
            .connect(&app_login(), &MyOptions::program("enc-setup"))
            .await?;
        admin
            .query_drop(format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(50), \
                   id_card VARBINARY(255), salary VARBINARY(64), born VARBINARY(64), \
                   secret BLOB, `rank` TEXT, \
                   UNIQUE KEY {table}_card (id_card), KEY {table}_salary (salary), \
                   CONSTRAINT warden_enc_rank CHECK (`rank` IS NULL OR `rank` LIKE 'VwE%'))"
            ))
            .await
            .context("cannot create the test table")?;
        admin
            .query_drop(format!(
                "CREATE VIEW {table}_v AS SELECT id, id_card AS card, salary AS pay, `rank` FROM {table}"
            ))
            .await
            .context("cannot create the test view")?;
        admin.disconnect().await?;
        let files = EncryptionFiles::create()?;
        files.add_key("idcard", "sm4", "deterministic")?;
        files.add_key("salary", "sm4", "ope")?;
        files.add_key("born", "aes-256", "ope")?;
        files.add_key("secret", "aes-256", "randomized")?;
        files.add_key("rank", "sm4", "deterministic")?;
        files.write_policy(&format!(
            r#"
[[encrypt]]
column = "{DATABASE}.{table}.id_card"
key = "idcard"
algorithm = "sm4"
mode = "deterministic"
type = "varchar(18)"
storage = "varbinary"

[[encrypt]]
table = "{DATABASE}.{table}"
columns = {{ salary = "decimal(12,2)" }}
key = "salary"
algorithm = "sm4"
mode = "ope"

[[encrypt]]
column = "{DATABASE}.{table}.born"
key = "born"
algorithm = "aes-256"
mode = "ope"
type = "date"

[[encrypt]]
column = "{DATABASE}.{table}.secret"
key = "secret"
algorithm = "aes-256"
mode = "randomized"
type = "text"

[[encrypt]]
column = "{DATABASE}.{table}.rank"
key = "rank"
algorithm = "sm4"
mode = "deterministic"
type = "int"
storage = "text"
"#
        ))?;
        let mut config = WardenConfig::new(fixtures::upstream()?);
        files.apply_mysql(&mut config, "mysql", &app_login())?;
        let warden = Warden::start(config)?;
        Ok(Fixture {
            table,
            warden,
            direct,
            _files: files,
        })
    }

    fn target(&self) -> Result<MyTarget> {
        self.warden.my_target("mysql")
    }

    async fn app(&self, program: &str) -> Result<Conn> {
        self.target()?
            .connect(&app_login(), &MyOptions::program(program))
            .await
    }

    async fn behind(&self) -> Result<Conn> {
        self.direct
            .connect(&app_login(), &MyOptions::program("enc-direct"))
            .await
    }

    fn sql(&self, sql: &str) -> String {
        sql.replace("{t}", &self.table)
    }
}

/// `id_card`, `salary`, `rank` as stored.
type StoredRow = (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>);

/// A value as text (`NULL` for NULL), whatever protocol carried it.
fn show(v: &Value) -> String {
    match v {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Date(y, m, d, 0, 0, 0, 0) => format!("{y:04}-{m:02}-{d:02}"),
        Value::Date(y, m, d, h, mi, s, us) => {
            format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
        }
        Value::Time(..) => format!("{v:?}"),
    }
}

fn row_text(row: Row) -> String {
    row.unwrap().iter().map(show).collect::<Vec<_>>().join("|")
}

/// Rows of a text-protocol query, each joined with `|`.
async fn text_rows(conn: &mut Conn, sql: &str) -> Result<Vec<String>> {
    let rows: Vec<Row> = conn.query(sql).await.with_context(|| sql.to_string())?;
    Ok(rows.into_iter().map(row_text).collect())
}

/// Checks a text-protocol query's rows (`{t}` is the fixture's table).
async fn check(conn: &mut Conn, f: &Fixture, sql: &str, want: &[&str]) -> Result<()> {
    let got = text_rows(conn, &f.sql(sql)).await?;
    ensure!(got == want, "{sql}: {got:?}");
    Ok(())
}

/// The error of a statement that must fail: (code, SQLSTATE, message).
async fn text_error(conn: &mut Conn, sql: &str) -> Result<(u16, String, String)> {
    match conn.query_drop(sql).await {
        Ok(()) => bail!("{sql} succeeded"),
        Err(mysql_async::Error::Server(e)) => Ok((e.code, e.state, e.message)),
        Err(e) => Err(e).context(sql.to_string()),
    }
}

const ROWS: &str = "INSERT INTO {t} (id, name, id_card, salary, born, secret, `rank`) VALUES \
    (1, 'ann', '110101199003074578', 12345.67, '1990-03-07', 'likes tea', 7), \
    (2, 'bob', '220102198512120011', -0.5, DATE '1985-12-12', '', 8), \
    (3, 'cy', NULL, NULL, NULL, NULL, NULL), \
    (4, 'dee', '', 9999999999.99, '2024-02-29', 'x''y\\\\z', -3)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_protocol_writes_and_reads_plaintext_over_ciphertext() -> Result<()> {
    let f = Fixture::new("enc_text").await?;
    f.target()?.watch(text_protocol(&f)).await
}

async fn text_protocol(f: &Fixture) -> Result<()> {
    let mut app = f.app("enc-text").await?;
    app.query_drop(f.sql(ROWS)).await.context("insert")?;
    let all = text_rows(&mut app, &f.sql("SELECT * FROM {t} ORDER BY id")).await?;
    ensure!(
        all == vec![
            "1|ann|110101199003074578|12345.67|1990-03-07|likes tea|7",
            "2|bob|220102198512120011|-0.50|1985-12-12||8",
            "3|cy|NULL|NULL|NULL|NULL|NULL",
            "4|dee||9999999999.99|2024-02-29|x'y\\z|-3",
        ],
        "{all:#?}"
    );
    // Views (created before warden started) read and search like the table.
    check(
        &mut app,
        f,
        "SELECT card, pay, `rank` FROM {t}_v WHERE card = '220102198512120011'",
        &["220102198512120011|-0.50|8"],
    )
    .await?;
    // Searches on ciphertext.
    let q = |sql: &str| f.sql(sql);
    check(
        &mut app,
        f,
        "SELECT id FROM {t} WHERE id_card = '110101199003074578'",
        &["1"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT t.id FROM {t} AS t WHERE t.id_card IN ('220102198512120011', '') ORDER BY id",
        &["2", "4"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT id FROM {t} WHERE id_card <> '' ORDER BY id",
        &["1", "2"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT id FROM {t} WHERE salary > 0 ORDER BY salary",
        &["1", "4"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT id, salary FROM {t} WHERE salary BETWEEN -1 AND 20000 ORDER BY salary DESC",
        &["1|12345.67", "2|-0.50"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT MIN(salary), MAX(salary) FROM {t}",
        &["-0.50|9999999999.99"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT MAX(born) AS b FROM {t}",
        &["2024-02-29"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT name FROM {t} WHERE born < '1990-01-01'",
        &["bob"],
    )
    .await?;
    check(&mut app, f, "SELECT id FROM {t} WHERE `rank` = 7", &["1"]).await?;
    check(
        &mut app,
        f,
        "SELECT id FROM {t} WHERE secret IS NULL",
        &["3"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT x.card FROM (SELECT id_card AS card, id FROM {t}) x WHERE x.id = 1",
        &["110101199003074578"],
    )
    .await?;
    check(
        &mut app,
        f,
        "SELECT count(*) FROM {t} a JOIN {t} b ON a.id_card = b.id_card",
        &["3"],
    )
    .await?;
    // UPDATE and ON DUPLICATE KEY.
    app.query_drop(q(
        "UPDATE {t} SET salary = 100.1, secret = 'new' WHERE id_card = ''",
    ))
    .await?;
    app.query_drop(q(
        "INSERT INTO {t} (id, id_card, name) VALUES (5, '110101199003074578', 'dup') \
         ON DUPLICATE KEY UPDATE name = 'ann2'",
    ))
    .await?;
    check(
        &mut app,
        f,
        "SELECT name, salary, secret FROM {t} WHERE id IN (1, 4) ORDER BY id",
        &["ann2|12345.67|likes tea", "dee|100.10|new"],
    )
    .await?;
    // UNIQUE on ciphertext.
    let (code, _, message) = text_error(
        &mut app,
        &q("INSERT INTO {t} (id, id_card) VALUES (9, '220102198512120011')"),
    )
    .await?;
    ensure!(code == 1062, "{code} {message}");
    // The index on the ciphertext is used.
    let plan: Vec<Row> = app
        .query(q(
            "EXPLAIN SELECT id FROM {t} WHERE id_card = '110101199003074578'",
        ))
        .await?;
    let key: Option<Option<String>> = plan[0].get("key");
    ensure!(
        key.flatten().as_deref() == Some(format!("{}_card", f.table).as_str()),
        "EXPLAIN: {:?}",
        plan[0]
    );
    // Refusals name the column and the reason; the session goes on.
    for (sql, column, reason) in [
        (
            "SELECT id FROM {t} WHERE secret LIKE 'l%'",
            "secret",
            "pattern matching",
        ),
        ("SELECT upper(id_card) FROM {t}", "id_card", "upper()"),
        ("SELECT sum(salary) FROM {t}", "salary", "sum()"),
        ("SELECT id FROM {t} ORDER BY id_card", "id_card", "ORDER BY"),
        (
            "SELECT id FROM {t} WHERE id_card > '1'",
            "id_card",
            "order-preserving",
        ),
        (
            "SELECT id FROM {t} WHERE secret = 'x'",
            "secret",
            "randomized",
        ),
    ] {
        let (code, state, message) = text_error(&mut app, &q(sql)).await?;
        ensure!(
            code == 1105
                && state == "0A000"
                && message.contains(&format!("{}.{column}", f.table))
                && message.contains(reason)
                && message.contains("encryption"),
            "{sql}: {code} {state} {message}"
        );
    }
    let (_, state, message) = text_error(
        &mut app,
        &q("INSERT INTO {t} (id, salary) VALUES (10, 'abc')"),
    )
    .await?;
    ensure!(
        state == "22007" && message.contains("salary"),
        "{state} {message}"
    );
    ensure!(text_rows(&mut app, "SELECT 1").await? == ["1"]);

    // Behind warden's back: only ciphertext.
    let mut direct = f.behind().await?;
    let raw: Vec<StoredRow> = direct
        .query(q("SELECT id_card, salary, `rank` FROM {t} WHERE id = 1"))
        .await?;
    let (card, salary, rank) = raw[0].clone();
    let card = card.unwrap_or_default();
    ensure!(
        card.starts_with(&[0x57, 0x01]) && !card.windows(6).any(|w| w == b"110101"),
        "{card:?}"
    );
    ensure!(salary.is_some_and(|s| s.len() >= 8), "salary");
    ensure!(rank.is_some_and(|r| r.starts_with("VwE")), "rank");
    let (code, _, _) = text_error(
        &mut direct,
        &q("INSERT INTO {t} (id, `rank`) VALUES (20, '7')"),
    )
    .await?;
    ensure!(
        code == 4025,
        "plaintext into the text-stored column: {code}"
    );

    // `USE` sent as SQL text: unqualified names resolve in the new current database.
    let mut elsewhere = f
        .target()?
        .connect(
            &warden_tests::mysql::MyLogin {
                database: "information_schema".into(),
                ..app_login()
            },
            &MyOptions::program("enc-use"),
        )
        .await?;
    elsewhere.query_drop(format!("USE {DATABASE}")).await?;
    elsewhere
        .query_drop(q(
            "INSERT INTO {t} (id, id_card) VALUES (30, '330103199901011234')",
        ))
        .await?;
    check(
        &mut elsewhere,
        f,
        "SELECT id_card FROM {t} WHERE id = 30",
        &["330103199901011234"],
    )
    .await?;
    let stored: Option<Vec<u8>> = direct
        .query_first(q("SELECT id_card FROM {t} WHERE id = 30"))
        .await?;
    ensure!(
        stored.is_some_and(|c| c.starts_with(&[0x57, 0x01])),
        "ciphertext after USE"
    );
    elsewhere.disconnect().await?;

    // A stored value that does not open withholds the result: never ciphertext, never garbage.
    direct
        .query_drop(q("UPDATE {t} SET id_card = X'57010102000000010000000100112233445566778899aabbccddeeff00112233' WHERE id = 3"))
        .await?;
    let (code, _, message) =
        text_error(&mut app, &q("SELECT id, id_card FROM {t} ORDER BY id")).await?;
    ensure!(
        code == 1105 && message.contains("withheld"),
        "{code} {message}"
    );
    check(&mut app, f, "SELECT id FROM {t} WHERE id = 1", &["1"]).await?;
    app.disconnect().await?;
    direct.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_and_return_logical_values() -> Result<()> {
    let f = Fixture::new("enc_stmt").await?;
    f.target()?.watch(prepared(&f)).await
}

async fn prepared(f: &Fixture) -> Result<()> {
    let mut app = f.app("enc-stmt").await?;
    let insert = f.sql(
        "INSERT INTO {t} (id, name, id_card, salary, born, secret, `rank`) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    let rows: Vec<Vec<Value>> = vec![
        vec![
            1.into(),
            "ann".into(),
            "110101199003074578".into(),
            "12345.67".into(),
            Value::Date(1990, 3, 7, 0, 0, 0, 0),
            "likes tea".into(),
            7.into(),
        ],
        vec![
            2.into(),
            "bob".into(),
            "220102198512120011".into(),
            Value::Double(-0.5),
            "1985-12-12".into(),
            "".into(),
            Value::Int(8),
        ],
        vec![
            3.into(),
            Value::NULL,
            Value::NULL,
            Value::NULL,
            Value::NULL,
            Value::NULL,
            Value::NULL,
        ],
    ];
    for r in rows {
        app.exec_drop(&insert, r).await.context("prepared insert")?;
    }
    // Binary result rows in the logical types.
    let got: Vec<Row> = app
        .exec(
            f.sql("SELECT id, id_card, salary, born, secret, `rank` FROM {t} WHERE id <= ? ORDER BY salary"),
            (3,),
        )
        .await?;
    let shown: Vec<String> = got.into_iter().map(row_text).collect();
    ensure!(
        shown
            == vec![
                "3|NULL|NULL|NULL|NULL|NULL",
                "2|220102198512120011|-0.50|1985-12-12||8",
                "1|110101199003074578|12345.67|1990-03-07|likes tea|7",
            ],
        "{shown:#?}"
    );
    // Typed reads.
    let typed: Option<(String, i32, String)> = app
        .exec_first(
            f.sql("SELECT id_card, `rank`, salary FROM {t} WHERE id_card = ?"),
            ("110101199003074578",),
        )
        .await?;
    ensure!(
        typed == Some(("110101199003074578".into(), 7, "12345.67".into())),
        "{typed:?}"
    );
    let range: Vec<i64> = app
        .exec(
            f.sql("SELECT id FROM {t} WHERE born BETWEEN ? AND ? ORDER BY born"),
            (Value::Date(1980, 1, 1, 0, 0, 0, 0), "1995-01-01"),
        )
        .await?;
    ensure!(range == vec![2, 1], "{range:?}");
    let extremes: Option<(String, String)> = app
        .exec_first(
            f.sql("SELECT MIN(salary), MAX(salary) FROM {t} WHERE id > ?"),
            (0,),
        )
        .await?;
    ensure!(
        extremes == Some(("-0.50".into(), "12345.67".into())),
        "{extremes:?}"
    );
    // Column definitions describe the logical types.
    let stmt = app
        .prep(f.sql("SELECT id_card, salary, born, `rank` FROM {t} WHERE id = ?"))
        .await?;
    let types: Vec<_> = stmt.columns().iter().map(|c| c.column_type()).collect();
    use mysql_async::consts::ColumnType as C;
    ensure!(
        types
            == vec![
                C::MYSQL_TYPE_VAR_STRING,
                C::MYSQL_TYPE_NEWDECIMAL,
                C::MYSQL_TYPE_DATE,
                C::MYSQL_TYPE_LONG
            ],
        "{types:?}"
    );
    // A bad value and a refused statement.
    match app
        .exec_drop(
            f.sql("UPDATE {t} SET born = ? WHERE id = 1"),
            ("not a date",),
        )
        .await
    {
        Err(mysql_async::Error::Server(e)) => {
            ensure!(e.state == "22007" && e.message.contains("born"), "{e:?}")
        }
        other => bail!("bad date: {other:?}"),
    }
    match app.prep(f.sql("SELECT id FROM {t} WHERE secret = ?")).await {
        Err(mysql_async::Error::Server(e)) => ensure!(
            e.state == "0A000" && e.message.contains("secret") && e.message.contains("randomized"),
            "{e:?}"
        ),
        other => bail!("randomized equality: {other:?}"),
    }
    // The direct connection sees ciphertext for the prepared writes too.
    let mut direct = f.behind().await?;
    let card: Option<Vec<u8>> = direct
        .query_first(f.sql("SELECT id_card FROM {t} WHERE id = 2"))
        .await?;
    ensure!(
        card.is_some_and(|c| c.starts_with(&[0x57, 0x01])),
        "ciphertext"
    );
    app.disconnect().await?;
    direct.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mariadb_cli_and_mysqldump() -> Result<()> {
    let f = Fixture::new("enc_cli").await?;
    f.target()?.watch(cli(&f)).await
}

async fn cli(f: &Fixture) -> Result<()> {
    let target = f.target()?;
    let login = app_login();
    target
        .mariadb(&login, &[], Some(&format!("{};\n", f.sql(ROWS))))?
        .ensure_success()?;
    let out = target
        .mariadb(
            &login,
            &["-N", "-B", "-e", &f.sql("SELECT id, id_card, salary, born, `rank` FROM {t} WHERE salary >= -1 ORDER BY salary")],
            None,
        )?
        .ensure_success()?;
    let stdout = out.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(
        lines
            == vec![
                "2\t220102198512120011\t-0.50\t1985-12-12\t8",
                "1\t110101199003074578\t12345.67\t1990-03-07\t7",
                "4\t\t9999999999.99\t2024-02-29\t-3",
            ],
        "{lines:#?}"
    );
    let refused = target.mariadb(&login, &["-e", &f.sql("SELECT avg(salary) FROM {t}")], None)?;
    let stderr = refused.stderr_text();
    ensure!(
        !refused.success() && stderr.contains("salary") && stderr.contains("avg()"),
        "{stderr}"
    );
    // mysqldump straight from the database holds only ciphertext.
    let dump = std::process::Command::new(warden_tests::mysql::find("mariadb-dump")?)
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={}", f.direct.port))
        .arg(format!("--user={}", login.user))
        .arg("--hex-blob")
        .arg(DATABASE)
        .arg(&f.table)
        .env("MYSQL_PWD", &login.password)
        .output()?;
    let text = String::from_utf8_lossy(&dump.stdout);
    ensure!(
        dump.status.success() && text.contains("INSERT INTO"),
        "{text}"
    );
    for plain in ["110101199003074578", "12345.67", "likes tea", "1990-03-07"] {
        ensure!(!text.contains(plain), "{plain} in the dump");
        let hex = plain
            .bytes()
            .map(|b| format!("{b:02X}"))
            .collect::<String>();
        ensure!(!text.contains(&hex), "{plain} in hex in the dump");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_infile_encrypts_the_file() -> Result<()> {
    let f = Fixture::new("enc_load").await?;
    f.target()?.watch(load_data(&f)).await
}

async fn load_data(f: &Fixture) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tsv = dir.path().join("rows.tsv");
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "{i}\tname {i}\t{:018}\t{}.25\t2000-01-{:02}\tsecret\\t{i}\t{}\n",
            i,
            i * 10,
            i % 28 + 1,
            i % 5
        ));
    }
    text.push_str("5000\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n");
    std::fs::write(&tsv, &text)?;
    let csv = dir.path().join("rows.csv");
    std::fs::write(
        &csv,
        "6000,\"a,b\",\"777\",\"1.5\",\"1999-09-09\",\"q\"\"uote\",1\n6001,x,,0,2001-01-01,\"\",2",
    )?;
    let options = MyOptions {
        local_infile: Some(tsv.clone()),
        ..MyOptions::program("enc-infile")
    };
    let mut app = f.target()?.connect(&app_login(), &options).await?;
    app.query_drop(format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE {}",
        tsv.display(),
        f.table
    ))
    .await
    .context("LOAD DATA LOCAL INFILE (tab-separated)")?;
    ensure!(app.affected_rows() == 2001, "{} rows", app.affected_rows());
    let options = MyOptions {
        local_infile: Some(csv.clone()),
        ..MyOptions::program("enc-infile")
    };
    let mut csv_app = f.target()?.connect(&app_login(), &options).await?;
    csv_app
        .query_drop(format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE {} FIELDS TERMINATED BY ',' \
             OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n' \
             (id, name, id_card, salary, born, secret, `rank`)",
            csv.display(),
            f.table
        ))
        .await
        .context("LOAD DATA LOCAL INFILE (CSV)")?;
    let got = text_rows(
        &mut app,
        &f.sql("SELECT * FROM {t} WHERE id IN (7, 5000, 6000, 6001) ORDER BY id"),
    )
    .await?;
    ensure!(
        got == vec![
            "7|name 7|000000000000000007|70.25|2000-01-08|secret\t7|2",
            "5000|NULL|NULL|NULL|NULL|NULL|NULL",
            "6000|a,b|777|1.50|1999-09-09|q\"uote|1",
            "6001|x||0.00|2001-01-01||2",
        ],
        "{got:#?}"
    );
    let hit = text_rows(
        &mut app,
        &f.sql("SELECT id FROM {t} WHERE id_card = '000000000000001234' AND salary > 12340"),
    )
    .await?;
    ensure!(hit == ["1234"], "{hit:?}");
    // Behind warden's back: ciphertext.
    let mut direct = f.behind().await?;
    let card: Option<Vec<u8>> = direct
        .query_first(f.sql("SELECT id_card FROM {t} WHERE id = 7"))
        .await?;
    ensure!(
        card.is_some_and(|c| c.starts_with(&[0x57, 0x01])),
        "ciphertext"
    );
    // A server-side file is refused.
    let (_, state, message) = text_error(
        &mut app,
        &format!("LOAD DATA INFILE '/etc/hosts' INTO TABLE {}", f.table),
    )
    .await?;
    ensure!(state == "0A000" && message.contains("LOCAL"), "{message}");
    app.disconnect().await?;
    csv_app.disconnect().await?;
    direct.disconnect().await?;
    Ok(())
}
