//! Transparent column encryption on PostgreSQL, end to end: an application that knows nothing
//! of warden writes and reads plaintext through it, while the database holds only ciphertext and
//! still answers equality and range queries with its own indexes.
//!
//! One table per test, created directly in its encrypted form (`bytea` columns), with a policy:
//! `id_card` SM4 deterministic `varchar(18)`, `salary` SM4 order-preserving `numeric(12,2)`,
//! `born` AES order-preserving `date`, `secret` AES randomized `text` and `rank` SM4
//! deterministic `integer` stored as base64 text. Clients: tokio-postgres (simple protocol;
//! extended with binary results and typed parameters) and psql; a superuser session looks
//! behind warden's back.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail, ensure};
use futures_util::SinkExt;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::{FromSql, Type};
use warden_tests::fixtures::{self, APP_DATABASE, app_login};
use warden_tests::pg::{ConnectOptions, Session, psql, sqlstate};
use warden_tests::scratch::unique_name;
use warden_tests::warden::{EncryptionFiles, Warden, WardenConfig};

/// A `numeric` read in binary format, as its text.
#[derive(Debug, PartialEq)]
struct Numeric(String);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
            Ok(i16::from_be_bytes(
                raw.get(i..i + 2).ok_or("short numeric")?.try_into()?,
            ))
        };
        let (ndigits, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
        let digits: Vec<i64> = (0..ndigits as usize)
            .map(|i| word(8 + 2 * i).map(i64::from))
            .collect::<Result<_, _>>()?;
        // value = sum(d_i * 10000^(weight - i)), printed with dscale decimals.
        let mut int_part = String::new();
        for w in 0..=weight.max(0) {
            let d = digits.get(w as usize).copied().unwrap_or(0);
            if int_part.is_empty() {
                if weight >= 0 {
                    int_part = d.to_string();
                }
            } else {
                write!(int_part, "{d:04}")?;
            }
        }
        if int_part.is_empty() {
            int_part = "0".into();
        }
        let mut frac = String::new();
        let mut i = (weight + 1).max(0);
        let mut skipped = weight + 1;
        while skipped < 0 {
            frac.push_str("0000");
            skipped += 1;
        }
        while (i as usize) < digits.len() {
            write!(frac, "{:04}", digits[i as usize])?;
            i += 1;
        }
        while frac.len() < dscale as usize {
            frac.push('0');
        }
        frac.truncate(dscale as usize);
        let mut s = if sign == 0x4000 {
            "-".to_string()
        } else {
            String::new()
        };
        s.push_str(&int_part);
        if dscale > 0 {
            s.push('.');
            s.push_str(&frac);
        }
        Ok(Numeric(s))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// A warden with an encryption policy over one fresh table.
struct Fixture {
    table: String,
    warden: Warden,
    admin: Session,
    _files: EncryptionFiles,
}

impl Fixture {
    async fn new(prefix: &str) -> Result<Fixture> {
        let pg = fixtures::pg()?;
        let table = unique_name(prefix);
        let admin = pg.admin_in(APP_DATABASE).await?;
        admin
            .batch_execute(&format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, name text, id_card bytea UNIQUE, \
                   salary bytea, born bytea, secret bytea, rank text); \
                 CREATE INDEX ON {table} (salary); \
                 CREATE TABLE {table}_ref (id_card bytea REFERENCES {table} (id_card), what text); \
                 ALTER TABLE {table} OWNER TO {owner}; ALTER TABLE {table}_ref OWNER TO {owner}; \
                 ALTER TABLE {table} ADD CONSTRAINT warden_enc_rank CHECK (rank IS NULL OR rank LIKE 'VwE%'); \
                 CREATE VIEW {table}_v AS SELECT id, id_card AS card, salary AS pay, name FROM {table}; \
                 ALTER VIEW {table}_v OWNER TO {owner}",
                owner = fixtures::APP_ROLE
            ))
            .await
            .context("cannot create the test tables")?;
        let files = EncryptionFiles::create()?;
        files.add_key("idcard", "sm4", "deterministic")?;
        files.add_key("salary", "sm4", "ope")?;
        files.add_key("born", "aes-256", "ope")?;
        files.add_key("secret", "aes-256", "randomized")?;
        files.add_key("rank", "sm4", "deterministic")?;
        files.write_policy(&format!(
            r#"
[[encrypt]]
column = "{table}.id_card"
key = "idcard"
algorithm = "sm4"
mode = "deterministic"
type = "varchar(18)"
domain = "{table}-id-card"

[[encrypt]]
column = "{table}_ref.id_card"
key = "idcard"
algorithm = "sm4"
mode = "deterministic"
type = "varchar(18)"
domain = "{table}-id-card"

[[encrypt]]
table = "{table}"
columns = {{ salary = "numeric(12,2)" }}
key = "salary"
algorithm = "sm4"
mode = "ope"

[[encrypt]]
column = "{table}.born"
key = "born"
algorithm = "aes-256"
mode = "ope"
type = "date"

[[encrypt]]
column = "{table}.secret"
key = "secret"
algorithm = "aes-256"
mode = "randomized"
type = "text"

[[encrypt]]
column = "{table}.rank"
key = "rank"
algorithm = "sm4"
mode = "deterministic"
type = "integer"
storage = "text"
"#
        ))?;
        let mut config = WardenConfig::new(fixtures::main_upstream()?);
        files.apply(&mut config, "main", &app_login())?;
        let warden = Warden::start(config)?;
        Ok(Fixture {
            table,
            warden,
            admin,
            _files: files,
        })
    }

    async fn app(&self, program: &str) -> Result<Session> {
        self.warden
            .target("main")?
            .connect(&app_login(), &ConnectOptions::app(program))
            .await
    }

    /// A fixture with the standard rows, and an application session through warden.
    async fn seeded(prefix: &str, program: &str) -> Result<(Fixture, Session)> {
        let f = Fixture::new(prefix).await?;
        let app = f.app(program).await?;
        seed(&f, &app).await?;
        Ok((f, app))
    }

    fn sql(&self, sql: &str) -> String {
        sql.replace("{t}", &self.table)
    }
}

/// The rows of a simple query, as text (`NULL` for NULL), joined with `|`.
async fn simple_rows(session: &Session, sql: &str) -> Result<Vec<String>> {
    let messages = session
        .simple_query(sql)
        .await
        .with_context(|| sql.to_string())?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect())
}

/// Inserts the standard rows through warden with the simple protocol.
async fn seed(f: &Fixture, app: &Session) -> Result<()> {
    app.batch_execute(&f.sql(
        "INSERT INTO {t} (id, name, id_card, salary, born, secret, rank) VALUES \
           (1, 'ann', '110101199001010011', 1234.5, '1990-01-01', 'likes tea', 7), \
           (2, 'bob', '110101199202020022', -20.25, DATE '1992-02-02', '', -3), \
           (3, 'cy', '', 0, '2000-02-29'::date, NULL, 0); \
         INSERT INTO {t} VALUES (4, 'dee', NULL, NULL, NULL, 'x''y', NULL); \
         INSERT INTO {t}_ref VALUES ('110101199001010011', 'ann''s ref')",
    ))
    .await
    .context("seeding through warden")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_stored_encrypted_and_read_back_plain() -> Result<()> {
    let (f, app) = Fixture::seeded("enc_rw", "enc-rw").await?;

    // Simple protocol (text): every value comes back as written, NULL as NULL, '' as ''.
    let rows = simple_rows(
        &app,
        &f.sql("SELECT id, id_card, salary, born, secret, rank FROM {t} ORDER BY id"),
    )
    .await?;
    ensure!(
        rows == [
            "1|110101199001010011|1234.50|1990-01-01|likes tea|7",
            "2|110101199202020022|-20.25|1992-02-02||-3",
            "3||0.00|2000-02-29|NULL|0",
            "4|NULL|NULL|NULL|x'y|NULL",
        ],
        "{rows:#?}"
    );
    // SELECT * and aliases, joins, subqueries and CTEs.
    let rows = simple_rows(&app, &f.sql("SELECT * FROM {t} WHERE id = 1")).await?;
    ensure!(
        rows == ["1|ann|110101199001010011|1234.50|1990-01-01|likes tea|7"],
        "{rows:?}"
    );
    let rows = simple_rows(
        &app,
        &f.sql(
            "WITH c AS (SELECT t.id_card AS card, s.sal FROM {t} t \
               JOIN (SELECT id, salary AS sal FROM {t}) s ON s.id = t.id) \
             SELECT r.what, c.card, c.sal FROM c JOIN {t}_ref r ON r.id_card = c.card",
        ),
    )
    .await?;
    ensure!(rows == ["ann's ref|110101199001010011|1234.50"], "{rows:?}");
    // During a migration the table has warden's shadow column (here holding ciphertext, as
    // `warden encrypt` leaves it): the application does not see it.
    f.admin
        .batch_execute(&f.sql(
            "ALTER TABLE {t} ADD COLUMN secret__warden bytea; UPDATE {t} SET secret__warden = id_card",
        ))
        .await?;
    // (The catalog is re-read every 3 s.)
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let rows = simple_rows(&app, &f.sql("SELECT * FROM {t} WHERE id = 1")).await?;
    ensure!(
        rows == ["1|ann|110101199001010011|1234.50|1990-01-01|likes tea|7"],
        "{rows:?}"
    );
    let row = app
        .query_one(&f.sql("SELECT * FROM {t} WHERE id = $1") as &str, &[&1i64])
        .await?;
    ensure!(row.len() == 7, "{} columns", row.len());
    f.admin
        .batch_execute(&f.sql("ALTER TABLE {t} DROP COLUMN secret__warden"))
        .await?;
    // Views: created before warden started, read like the table.
    let rows = simple_rows(
        &app,
        &f.sql("SELECT card, pay FROM {t}_v WHERE card = '110101199202020022'"),
    )
    .await?;
    ensure!(rows == ["110101199202020022|-20.25"], "{rows:?}");

    // Extended protocol with binary results: the application sees its own types.
    let statement = app
        .prepare(&f.sql("SELECT id_card, salary, born, secret, rank FROM {t} WHERE id = $1"))
        .await?;
    let types: Vec<&Type> = statement.columns().iter().map(|c| c.type_()).collect();
    ensure!(
        types
            == [
                &Type::VARCHAR,
                &Type::NUMERIC,
                &Type::DATE,
                &Type::TEXT,
                &Type::INT4
            ],
        "{types:?}"
    );
    let row = app.query_one(&statement, &[&1i64]).await?;
    ensure!(row.get::<_, String>(0) == "110101199001010011");
    ensure!(row.get::<_, Numeric>(1) == Numeric("1234.50".into()));
    ensure!(row.get::<_, String>(3) == "likes tea");
    ensure!(row.get::<_, i32>(4) == 7);
    let row = app.query_one(&statement, &[&2i64]).await?;
    ensure!(row.get::<_, Numeric>(1) == Numeric("-20.25".into()));
    ensure!(row.get::<_, String>(3).is_empty());
    ensure!(row.get::<_, i32>(4) == -3);

    // Behind warden's back: only ciphertext, NULL stays NULL, '' is encrypted (not NULL).
    let plain = f
        .admin
        .query_one(
            &f.sql(
                "SELECT count(*) FILTER (WHERE substring(id_card from 1 for 2) <> '\\x5701'::bytea), \
                        count(*) FILTER (WHERE id_card IS NULL), \
                        count(*) FILTER (WHERE secret IS NULL), \
                        count(*) FILTER (WHERE length(salary) <> 28), \
                        count(*) FILTER (WHERE rank NOT LIKE 'VwE%') FROM {t}",
            ),
            &[],
        )
        .await?;
    let counts: Vec<i64> = (0..5).map(|i| plain.get(i)).collect();
    ensure!(counts == [0, 1, 1, 0, 0], "{counts:?}");
    let dump = f
        .admin
        .query_one(&f.sql("SELECT string_agg(t::text, ',') FROM {t} t"), &[])
        .await?
        .get::<_, String>(0);
    for plaintext in ["110101199001010011", "likes tea", "1234.5"] {
        ensure!(
            !dump.contains(plaintext),
            "{plaintext} is stored in plaintext"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_uses_the_database_indexes_on_ciphertext() -> Result<()> {
    let (f, app) = Fixture::seeded("enc_search", "enc-search").await?;
    // Tens of thousands of rows, through warden, in multi-row INSERTs.
    for chunk in 0..20 {
        let mut sql = f.sql("INSERT INTO {t} (id, id_card, salary, born, rank) VALUES ");
        for i in 0..1000 {
            let id = 100 + chunk * 1000 + i;
            if i > 0 {
                sql.push_str(", ");
            }
            write!(
                sql,
                "({id}, '2201011980{id:08}', {}.{:02}, '19{:02}-0{}-1{}', {})",
                (id * 37) % 100_000,
                id % 100,
                50 + id % 50,
                1 + id % 9,
                id % 10,
                id % 7
            )?;
        }
        app.batch_execute(&sql).await?;
    }
    f.admin.batch_execute(&f.sql("ANALYZE {t}")).await?;

    // Equality, IN, <>, IS NULL on the deterministic column.
    let one = |sql: &str| {
        let sql = f.sql(sql);
        let app = &app;
        async move { simple_rows(app, &sql).await }
    };
    ensure!(one("SELECT id FROM {t} WHERE id_card = '220101198000005123'").await? == ["5123"]);
    ensure!(
        one("SELECT id FROM {t} WHERE id_card IN ('220101198000000100', '110101199202020022') ORDER BY id")
            .await?
            == ["2", "100"]
    );
    ensure!(
        one("SELECT count(*) FROM {t} WHERE id_card <> '110101199202020022'").await? == ["20002"]
    );
    ensure!(one("SELECT id FROM {t} WHERE id_card IS NULL").await? == ["4"]);
    // Joins, GROUP BY and DISTINCT in one key domain.
    ensure!(one("SELECT t.id FROM {t} t JOIN {t}_ref r USING (id_card)").await? == ["1"]);
    ensure!(
        one("SELECT rank, count(*) FROM {t} WHERE id >= 100 GROUP BY rank ORDER BY count(*) DESC, 2 LIMIT 1")
            .await?
            .len()
            == 1
    );
    ensure!(one("SELECT count(DISTINCT id_card) FROM {t}").await? == ["20003"]);
    // UNIQUE on ciphertext.
    let duplicate = app
        .batch_execute(&f.sql("INSERT INTO {t} (id, id_card) VALUES (99999, '110101199001010011')"))
        .await
        .expect_err("a duplicate ID card must violate the unique constraint");
    ensure!(sqlstate(&duplicate) == Some("23505"), "{duplicate:?}");

    // Ranges, ORDER BY, MIN and MAX on the order-preserving columns.
    let expected: i64 = f
        .admin
        .query_one(
            &f.sql("SELECT count(*) FROM generate_series(100, 20099) g WHERE ((g * 37) % 100000) + (g % 100) / 100.0 BETWEEN 100 AND 5000"),
            &[],
        )
        .await?
        .get(0);
    ensure!(
        one("SELECT count(*) FROM {t} WHERE salary BETWEEN 100 AND 5000 AND id >= 100").await?
            == [expected.to_string()]
    );
    ensure!(one("SELECT count(*) FROM {t} WHERE salary < 0").await? == ["1"]);
    // The same values computed in plaintext by the database, for comparison.
    const PLAIN: &str = "(SELECT g AS id, (((g * 37) % 100000) + (g % 100) / 100.0)::numeric(12,2) AS salary \
        FROM generate_series(100, 20099) g UNION ALL VALUES (1, 1234.50), (2, -20.25), (3, 0.00))";
    let expect = |sql: String| {
        let admin = &f.admin;
        async move { simple_rows(admin, &sql).await }
    };
    let want = expect(format!("SELECT min(salary), max(salary) FROM {PLAIN} p")).await?;
    let got = one("SELECT min(salary), max(salary) FROM {t}").await?;
    ensure!(got == want, "{got:?} != {want:?}");
    let want = expect(format!(
        "SELECT id, salary FROM {PLAIN} p WHERE salary >= 99000 ORDER BY salary DESC, id LIMIT 3"
    ))
    .await?;
    let got =
        one("SELECT id, salary FROM {t} WHERE salary >= 99000 ORDER BY salary DESC, id LIMIT 3")
            .await?;
    ensure!(got == want, "{got:?} != {want:?}");
    let sorted = one("SELECT salary FROM {t} WHERE salary IS NOT NULL ORDER BY salary").await?;
    let values: Vec<f64> = sorted
        .iter()
        .map(|s| s.parse().unwrap_or(f64::NAN))
        .collect();
    ensure!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "ORDER BY salary is not sorted"
    );
    ensure!(
        one("SELECT count(*) FROM {t} WHERE born > DATE '1998-01-01' AND born <= '1999-12-31'")
            .await?
            != ["0"]
    );

    // The database's indexes answer: EXPLAIN through warden shows index scans.
    let plan = one("EXPLAIN SELECT id FROM {t} WHERE id_card = '220101198000005123'").await?;
    ensure!(
        plan.iter()
            .any(|l| l.contains("Index Scan") || l.contains("Index Only Scan")),
        "{plan:#?}"
    );
    let plan = one("EXPLAIN SELECT id FROM {t} WHERE salary BETWEEN 10 AND 11").await?;
    ensure!(
        plan.iter()
            .any(|l| l.contains("Index") || l.contains("Bitmap")),
        "{plan:#?}"
    );

    // The same through the extended protocol: text parameters typed by the client.
    let lookup = app
        .prepare_typed(
            &f.sql("SELECT id FROM {t} WHERE id_card = $1"),
            &[Type::VARCHAR],
        )
        .await?;
    let row = app.query_one(&lookup, &[&"220101198000005123"]).await?;
    ensure!(row.get::<_, i64>(0) == 5123);
    let range = app
        .prepare_typed(
            &f.sql("SELECT count(*) FROM {t} WHERE salary BETWEEN $1 AND $2 AND id >= 100"),
            &[Type::TEXT, Type::TEXT],
        )
        .await?;
    let count: i64 = app.query_one(&range, &[&"100", &"5000"]).await?.get(0);
    ensure!(count == expected, "{count} != {expected}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_every_path() -> Result<()> {
    let (f, app) = Fixture::seeded("enc_write", "enc-write").await?;
    // UPDATE … SET with literals and parameters, RETURNING decrypted.
    let rows = simple_rows(
        &app,
        &f.sql("UPDATE {t} SET salary = 99.99, secret = 'new' WHERE id_card = '110101199202020022' RETURNING id, salary, secret"),
    )
    .await?;
    ensure!(rows == ["2|99.99|new"], "{rows:?}");
    let update = app
        .prepare_typed(
            &f.sql("UPDATE {t} SET id_card = $1, rank = $2 WHERE id = $3"),
            &[Type::VARCHAR, Type::INT4, Type::INT8],
        )
        .await?;
    ensure!(
        app.execute(&update, &[&"330101200001010033", &42i32, &3i64])
            .await?
            == 1
    );
    // Binary parameters of the logical types (tokio-postgres infers them from the description).
    let insert = app
        .prepare(&f.sql("INSERT INTO {t} (id, id_card, rank, secret) VALUES ($1, $2, $3, $4)"))
        .await?;
    let param_types: Vec<&Type> = insert.params().iter().collect();
    ensure!(
        param_types == [&Type::INT8, &Type::VARCHAR, &Type::INT4, &Type::TEXT],
        "{param_types:?}"
    );
    app.execute(&insert, &[&10i64, &"440101200101010044", &-8i32, &"bin"])
        .await?;
    app.execute(&insert, &[&11i64, &None::<&str>, &None::<i32>, &""])
        .await?;
    // ON CONFLICT … DO UPDATE with EXCLUDED and a literal.
    app.batch_execute(&f.sql(
        "INSERT INTO {t} (id, id_card, salary) VALUES (10, '440101200101010044', 5) \
         ON CONFLICT (id) DO UPDATE SET salary = EXCLUDED.salary, secret = 'conflict'",
    ))
    .await?;
    // INSERT … SELECT between columns of one key domain.
    app.batch_execute(&f.sql(
        "INSERT INTO {t}_ref (id_card, what) SELECT id_card, 'copied' FROM {t} WHERE id = 10",
    ))
    .await?;
    let rows = simple_rows(
        &app,
        &f.sql(
            "SELECT t.id, t.id_card, t.salary, t.secret, t.rank, r.what FROM {t} t \
             LEFT JOIN {t}_ref r ON r.id_card = t.id_card WHERE t.id IN (2, 3, 10, 11) ORDER BY t.id",
        ),
    )
    .await?;
    ensure!(
        rows == [
            "2|110101199202020022|99.99|new|-3|NULL",
            "3|330101200001010033|0.00|NULL|42|NULL",
            "10|440101200101010044|5.00|conflict|-8|copied",
            "11|NULL|NULL||NULL|NULL",
        ],
        "{rows:#?}"
    );
    // DELETE by ciphertext equality.
    ensure!(
        app.execute(
            f.sql("DELETE FROM {t}_ref WHERE id_card = '440101200101010044'")
                .as_str(),
            &[]
        )
        .await?
            == 1
    );
    // A value that does not fit its column is refused whole, naming the column; nothing is
    // written half-encrypted.
    let bad = app
        .batch_execute(&f.sql("INSERT INTO {t} (id, salary, secret) VALUES (50, 'lots', 'x')"))
        .await
        .expect_err("a non-numeric salary must be refused");
    ensure!(sqlstate(&bad) == Some("22P02"), "{bad:?}");
    ensure!(format!("{bad:?}").contains("salary"), "{bad:?}");
    ensure!(
        simple_rows(&app, &f.sql("SELECT id FROM {t} WHERE id = 50"))
            .await?
            .is_empty()
    );
    let too_long = app
        .batch_execute(&f.sql("INSERT INTO {t} (id, id_card) VALUES (51, '1234567890123456789')"))
        .await
        .expect_err("a 19-character ID card must be refused");
    ensure!(sqlstate(&too_long) == Some("22P02"), "{too_long:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_ciphertext_cannot_answer_are_refused_with_the_column_and_reason() -> Result<()>
{
    let (f, app) = Fixture::seeded("enc_refuse", "enc-refuse").await?;
    for (sql, column, reason) in [
        (
            "SELECT id FROM {t} WHERE id_card LIKE '1101%'",
            "id_card",
            "pattern matching",
        ),
        ("SELECT upper(secret) FROM {t}", "secret", "upper()"),
        ("SELECT salary + 1 FROM {t}", "salary", "cannot be computed"),
        ("SELECT sum(salary) FROM {t}", "salary", "sum()"),
        ("SELECT id FROM {t} ORDER BY id_card", "id_card", "ORDER BY"),
        (
            "SELECT id FROM {t} WHERE id_card > '1'",
            "id_card",
            "order-preserving",
        ),
        (
            "SELECT id FROM {t} WHERE secret = 'likes tea'",
            "secret",
            "randomized",
        ),
        (
            "SELECT id FROM {t} WHERE salary::text = '1'",
            "salary",
            "cast",
        ),
        (
            "UPDATE {t} SET name = id_card",
            "id_card",
            "cannot be copied",
        ),
        (
            "SELECT id_card FROM {t} UNION SELECT name FROM {t}",
            "id_card",
            "set operation",
        ),
        ("COPY {t} TO '/tmp/warden-never-written'", "", "server file"),
        ("COPY {t} TO STDOUT (FORMAT binary)", "", "binary format"),
        (
            "SELECT CASE WHEN salary IS NULL THEN 0 ELSE 1 END FROM {t}",
            "salary",
            "CASE",
        ),
    ] {
        let sql = f.sql(sql);
        let error = app
            .simple_query(&sql)
            .await
            .err()
            .with_context(|| format!("{sql} was not refused"))?;
        let text = format!("{error:?}");
        ensure!(sqlstate(&error) == Some("0A000"), "{sql}: {text}");
        ensure!(
            text.contains(column) && text.contains(reason),
            "{sql}: {text}"
        );
    }
    // Ciphertext that reaches a result by a way warden cannot follow (a function returning it)
    // is withheld, never shown.
    f.admin
        .batch_execute(&f.sql(
            "CREATE FUNCTION {t}_card(i bigint) RETURNS bytea LANGUAGE sql \
             AS 'SELECT id_card FROM {t} WHERE id = i'",
        ))
        .await?;
    let error = app
        .simple_query(&f.sql("SELECT 1, {t}_card(1)"))
        .await
        .expect_err("ciphertext from a function must be withheld");
    ensure!(sqlstate(&error) == Some("XX001"), "{error:?}");
    ensure!(
        format!("{error:?}").contains("cannot attribute"),
        "{error:?}"
    );
    let error = app
        .query(&f.sql("SELECT {t}_card($1)") as &str, &[&1i64])
        .await
        .expect_err("also in binary format");
    ensure!(sqlstate(&error) == Some("XX001"), "{error:?}");
    // Other bytea values pass.
    ensure!(simple_rows(&app, "SELECT '\\x0102'::bytea").await? == ["\\x0102"]);
    // The session goes on, and refusals inside a transaction abort it like any error.
    ensure!(simple_rows(&app, &f.sql("SELECT count(*) FROM {t}")).await? == ["4"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reads_and_writes_plaintext() -> Result<()> {
    let (f, _app) = Fixture::seeded("enc_psql", "enc-psql").await?;
    let target = f.warden.target("main")?;
    let dir = tempfile::tempdir()?;
    let run = psql(
        &target,
        &app_login(),
        "disable",
        &[
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &f.sql("INSERT INTO {t} (id, id_card, salary) VALUES (20, '550101200202020055', 77.7)"),
            "-c",
            &f.sql("SELECT id, id_card, salary FROM {t} WHERE id_card = '550101200202020055'"),
            "-c",
            &f.sql("SELECT id_card FROM {t} WHERE salary BETWEEN 70 AND 80"),
        ],
        dir.path(),
        None,
    )?
    .ensure_success()?;
    let out = run.stdout_text();
    ensure!(
        out.lines().collect::<Vec<_>>()
            == [
                "INSERT 0 1",
                "20|550101200202020055|77.70",
                "550101200202020055"
            ],
        "{out}"
    );
    check_not_in_dump(&f, "550101200202020055")
}

/// pg_dump of the table holds no trace of `plaintext`.
fn check_not_in_dump(f: &Fixture, plaintext: &str) -> Result<()> {
    let pg = fixtures::pg()?;
    let dump = pg.pg_dump(APP_DATABASE, &["--data-only", "-t", &f.table])?;
    if dump.contains(plaintext) {
        bail!("pg_dump shows {plaintext} in plaintext");
    }
    ensure!(
        dump.contains("\\x5701"),
        "pg_dump shows no ciphertext:\n{dump}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_and_to_stdout_in_text_and_csv() -> Result<()> {
    let f = Fixture::new("enc_copy").await?;
    let app = f.app("enc-copy").await?;
    // Text format: escapes, NULL, an empty string, and rows split across CopyData messages.
    let sink = app
        .copy_in(&f.sql("COPY {t} (id, name, id_card, salary, secret) FROM STDIN"))
        .await?;
    futures_util::pin_mut!(sink);
    let data = "1\tann\t110101199001010011\t10.5\ttab\\there\n\
                2\tbob\t\\N\t-1\t\n\
                3\tcy\t330101200001010033\t\\N\tline\\nbreak\n";
    for chunk in data.as_bytes().chunks(7) {
        sink.send(bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    ensure!(sink.finish().await? == 3);
    // CSV with a header, quotes and a quoted empty string.
    let sink = app
        .copy_in(&f.sql("COPY {t} (id, id_card, secret) FROM STDIN WITH (FORMAT csv, HEADER)"))
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"id,id_card,secret\n4,440101200101010044,\"a,\"\"quoted\"\"\nline\"\n5,,\"\"\n",
    ))
    .await?;
    ensure!(sink.finish().await? == 2);

    let rows = simple_rows(
        &app,
        &f.sql("SELECT id, id_card, salary, secret FROM {t} ORDER BY id"),
    )
    .await?;
    ensure!(
        rows == [
            "1|110101199001010011|10.50|tab\there",
            "2|NULL|-1.00|",
            "3|330101200001010033|NULL|line\nbreak",
            "4|440101200101010044|NULL|a,\"quoted\"\nline",
            "5|NULL|NULL|",
        ],
        "{rows:#?}"
    );
    // Stored encrypted.
    let plain: i64 = f
        .admin
        .query_one(
            &f.sql("SELECT count(*) FROM {t} WHERE secret IS NOT NULL AND substring(secret from 1 for 2) <> '\\x5701'::bytea"),
            &[],
        )
        .await?
        .get(0);
    ensure!(plain == 0);

    // COPY TO STDOUT, text and CSV, decrypted.
    let out = copy_out_text(
        &app,
        &f.sql("COPY (SELECT id, id_card, secret FROM {t} WHERE id <= 3 ORDER BY id) TO STDOUT"),
    )
    .await?;
    ensure!(
        out == "1\t110101199001010011\ttab\\there\n2\t\\N\t\n3\t330101200001010033\tline\\nbreak\n",
        "{out:?}"
    );
    // (Rows in insertion order: the table has seen no updates.)
    let out = copy_out_text(
        &app,
        &f.sql("COPY {t} (id, id_card, secret) TO STDOUT WITH (FORMAT csv, HEADER)"),
    )
    .await?;
    ensure!(
        out.strip_prefix("id,id_card,secret\n").unwrap_or_default()
            == "1,110101199001010011,tab\there\n2,,\"\"\n3,330101200001010033,\"line\nbreak\"\n4,440101200101010044,\"a,\"\"quoted\"\"\nline\"\n5,,\"\"\n",
        "{out:?}"
    );

    // A bad value fails the whole COPY, naming the column; nothing of it is written.
    let sink = app
        .copy_in(&f.sql("COPY {t} (id, salary) FROM STDIN"))
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"10\t1.5\n11\tlots\n"))
        .await?;
    let error = sink
        .finish()
        .await
        .expect_err("a bad salary must fail the COPY");
    ensure!(format!("{error:?}").contains("salary"), "{error:?}");
    ensure!(
        simple_rows(&app, &f.sql("SELECT id FROM {t} WHERE id >= 10"))
            .await?
            .is_empty()
    );
    Ok(())
}

/// The whole output of a COPY … TO STDOUT, as text.
async fn copy_out_text(session: &Session, sql: &str) -> Result<String> {
    use futures_util::TryStreamExt;
    let stream = session
        .copy_out(sql)
        .await
        .with_context(|| sql.to_string())?;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
    Ok(String::from_utf8(chunks.concat())?)
}
