//! The MySQL command set through warden: text queries with multi-statements and multi-result
//! sets, prepared statements with binary rows and NULLs, errors, LOAD DATA LOCAL INFILE, packets
//! over 16 MiB, COM_CHANGE_USER, COM_RESET_CONNECTION, COM_PING.
//!
//! Each scenario runs directly against MariaDB and through warden (`both_ways_mysql!`) with
//! mysql_async, asserting concrete results, so both runs must agree with MariaDB's behaviour.

use anyhow::{Context, Result, ensure};
use mysql_async::prelude::*;
use mysql_async::{Params, Value};
use warden_tests::both_ways_mysql;
use warden_tests::mysql::fixtures::{self, app_login};
use warden_tests::mysql::{MyOptions, MyTarget, MyTls};
use warden_tests::scratch::unique_name;

both_ways_mysql!(
    text_queries_and_multi_statements,
    prepared_statements_with_binary_rows,
    errors_keep_their_codes_and_the_session_goes_on,
    load_data_local_infile,
    packets_over_16_mib,
    change_user_and_reset_connection,
    tls_from_the_client,
);

async fn text_queries_and_multi_statements(target: &MyTarget) -> Result<()> {
    let mut conn = target
        .connect(&app_login(), &MyOptions::program("q-text"))
        .await?;
    let t = unique_name("text");
    conn.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(20), note TEXT)"
    ))
    .await?;
    conn.query_drop(format!(
        "INSERT INTO {t} VALUES (1, 'one', NULL), (2, 'two', 'x'), (3, NULL, 'y')"
    ))
    .await?;
    let rows: Vec<(i32, Option<String>, Option<String>)> = conn
        .query(format!("SELECT id, name, note FROM {t} ORDER BY id"))
        .await?;
    ensure!(
        rows == vec![
            (1, Some("one".into()), None),
            (2, Some("two".into()), Some("x".into())),
            (3, None, Some("y".into()))
        ],
        "rows: {rows:?}"
    );
    // Several statements in one COM_QUERY: one result per statement, in order.
    let mut result = conn
        .query_iter(format!(
            "UPDATE {t} SET name = 'uno' WHERE id = 1; SELECT count(*) FROM {t}; \
             SELECT name FROM {t} WHERE id <= 2 ORDER BY id; DELETE FROM {t} WHERE id = 3"
        ))
        .await?;
    ensure!(
        result.affected_rows() == 1,
        "UPDATE affected {}",
        result.affected_rows()
    );
    let mut sets: Vec<Vec<String>> = Vec::new();
    while !result.is_empty() {
        let rows: Vec<mysql_async::Row> = result.collect().await?;
        sets.push(
            rows.into_iter()
                .map(|r| match r.get::<Value, _>(0) {
                    Some(Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect(),
        );
    }
    drop(result);
    ensure!(
        sets == vec![
            Vec::<String>::new(),
            vec!["3".to_string()],
            vec!["uno".to_string(), "two".to_string()],
        ],
        "result sets: {sets:?}"
    );
    // A stored procedure returns several result sets and a final OK.
    let p = unique_name("proc");
    conn.query_drop(format!(
        "CREATE PROCEDURE {p}() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END"
    ))
    .await?;
    let mut result = conn.query_iter(format!("CALL {p}()")).await?;
    let first: Vec<(i32,)> = result.collect().await?;
    let second: Vec<(i32, i32)> = result.collect().await?;
    drop(result);
    ensure!(
        first == vec![(1,)] && second == vec![(2, 3)],
        "{first:?} {second:?}"
    );
    conn.ping().await?;
    let after: Option<i32> = conn.query_first("SELECT 42").await?;
    ensure!(after == Some(42));
    conn.query_drop(format!("DROP TABLE {t}; DROP PROCEDURE {p}"))
        .await?;
    conn.disconnect().await?;
    Ok(())
}

async fn prepared_statements_with_binary_rows(target: &MyTarget) -> Result<()> {
    let mut conn = target
        .connect(&app_login(), &MyOptions::program("q-stmt"))
        .await?;
    let t = unique_name("stmt");
    conn.query_drop(format!(
        "CREATE TABLE {t} (id BIGINT PRIMARY KEY, small TINYINT, ratio DOUBLE, \
         price DECIMAL(10,2), name VARCHAR(50), born DATE, at DATETIME(6), data BLOB)"
    ))
    .await?;
    let insert = conn
        .prep(format!("INSERT INTO {t} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
        .await?;
    for i in 0..20i64 {
        let name = (i % 3 != 0).then(|| format!("name-{i}"));
        conn.exec_drop(
            &insert,
            (
                i,
                (i % 100) as i8,
                i as f64 / 4.0,
                format!("{i}.25"),
                name,
                (i % 2 == 0).then_some("2024-02-29"),
                "2024-01-02 03:04:05.678901",
                vec![i as u8; (i as usize) * 10],
            ),
        )
        .await?;
    }
    let select = conn
        .prep(format!(
            "SELECT id, small, ratio, price, name, born, at, data FROM {t} WHERE id >= ? ORDER BY id"
        ))
        .await?;
    let rows: Vec<mysql_async::Row> = conn.exec(&select, (15i64,)).await?;
    ensure!(rows.len() == 5, "{} rows", rows.len());
    let row = &rows[0];
    ensure!(row.get::<i64, _>(0) == Some(15));
    ensure!(row.get::<f64, _>(2) == Some(3.75));
    ensure!(row.get::<String, _>(3).as_deref() == Some("15.25"));
    ensure!(row.get::<Option<String>, _>(4) == Some(None), "NULL name");
    ensure!(row.get::<Vec<u8>, _>(7).map(|d| d.len()) == Some(150));
    // The same statement again with other parameters; then a statement with NULL parameters.
    let again: Vec<(i64,)> = conn
        .exec(
            format!("SELECT id FROM {t} WHERE id < ? AND name IS NOT NULL ORDER BY id"),
            (5i64,),
        )
        .await?;
    ensure!(again == vec![(1,), (2,), (4,)], "{again:?}");
    let nulls: Vec<(Option<i64>, Option<String>)> = conn
        .exec(
            "SELECT ?, ?",
            Params::Positional(vec![Value::NULL, Value::from("x")]),
        )
        .await?;
    ensure!(nulls == vec![(None, Some("x".into()))], "{nulls:?}");
    conn.close(insert).await?;
    conn.close(select).await?;
    conn.query_drop(format!("DROP TABLE {t}")).await?;
    conn.disconnect().await?;
    Ok(())
}

async fn errors_keep_their_codes_and_the_session_goes_on(target: &MyTarget) -> Result<()> {
    let mut conn = target
        .connect(&app_login(), &MyOptions::program("q-err"))
        .await?;
    let missing = unique_name("missing");
    let error = conn
        .query_drop(format!("SELECT * FROM {missing}"))
        .await
        .expect_err("a missing table is an error");
    match error {
        mysql_async::Error::Server(e) => {
            ensure!(e.code == 1146 && e.state == "42S02", "{e:?}");
        }
        other => anyhow::bail!("not a server error: {other:?}"),
    }
    let error = conn
        .prep("SELEC 1")
        .await
        .expect_err("bad syntax is an error");
    ensure!(
        matches!(&error, mysql_async::Error::Server(e) if e.code == 1064),
        "{error:?}"
    );
    // An error in the middle of a multi-statement string stops it there.
    let result = conn
        .query_iter(format!("SELECT 1; SELECT * FROM {missing}; SELECT 3"))
        .await;
    let mut result = result?;
    let first: Vec<(i32,)> = result.collect().await?;
    ensure!(first == vec![(1,)]);
    let rest = result.collect::<(i32,)>().await;
    ensure!(rest.is_err(), "the second statement fails");
    drop(result);
    let value: Option<i32> = conn.query_first("SELECT 7").await?;
    ensure!(value == Some(7));
    Ok(())
}

async fn load_data_local_infile(target: &MyTarget) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rows.csv");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("{i},row {i}\n"));
    }
    std::fs::write(&file, &text)?;
    let options = MyOptions {
        local_infile: Some(file.clone()),
        ..MyOptions::program("q-infile")
    };
    let mut conn = target.connect(&app_login(), &options).await?;
    let t = unique_name("infile");
    conn.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(30))"
    ))
    .await?;
    conn.query_drop(format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE {t} FIELDS TERMINATED BY ','",
        file.display()
    ))
    .await
    .context("LOAD DATA LOCAL INFILE")?;
    ensure!(
        conn.affected_rows() == 5000,
        "{} rows loaded",
        conn.affected_rows()
    );
    let count: Option<(i64, String)> = conn
        .query_first(format!("SELECT count(*), max(name) FROM {t}"))
        .await?;
    ensure!(count == Some((5000, "row 999".into())), "{count:?}");
    conn.query_drop(format!("DROP TABLE {t}")).await?;
    Ok(())
}

async fn packets_over_16_mib(target: &MyTarget) -> Result<()> {
    let mut conn = target
        .connect(&app_login(), &MyOptions::program("q-large"))
        .await?;
    let t = unique_name("large");
    conn.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, data LONGBLOB)"
    ))
    .await?;
    let big: Vec<u8> = (0..(20 << 20)).map(|i: u32| (i % 251) as u8).collect();
    conn.exec_drop(format!("INSERT INTO {t} VALUES (?, ?)"), (1, big.clone()))
        .await?;
    // Text protocol: the row comes back in continuation packets.
    let text: Option<Vec<u8>> = conn
        .query_first(format!("SELECT data FROM {t} WHERE id = 1"))
        .await?;
    ensure!(text.as_deref() == Some(&big[..]), "the text row differs");
    // Binary protocol.
    let binary: Option<(Vec<u8>,)> = conn
        .exec_first(format!("SELECT data FROM {t} WHERE id = ?"), (1,))
        .await?;
    ensure!(
        binary.map(|b| b.0 == big) == Some(true),
        "the binary row differs"
    );
    // A COM_QUERY over 16 MiB.
    let literal = "a".repeat(17 << 20);
    let length: Option<i64> = conn
        .query_first(format!("SELECT length('{literal}')"))
        .await?;
    ensure!(length == Some(17 << 20));
    conn.query_drop(format!("DROP TABLE {t}")).await?;
    Ok(())
}

async fn change_user_and_reset_connection(target: &MyTarget) -> Result<()> {
    let mut conn = target
        .connect(&app_login(), &MyOptions::program("q-change"))
        .await?;
    conn.query_drop("SET @marker = 1").await?;
    conn.reset().await.context("COM_RESET_CONNECTION")?;
    let marker: Option<Option<i32>> = conn.query_first("SELECT @marker").await?;
    ensure!(
        marker == Some(None),
        "the reset kept a user variable: {marker:?}"
    );
    let ed = fixtures::login(fixtures::OTHER_USER);
    conn.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(ed.user.clone()))
            .with_pass(Some(ed.password.clone()))
            .with_db_name(Some(ed.database.clone())),
    )
    .await
    .context("COM_CHANGE_USER to another user")?;
    let user: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    ensure!(
        user.as_deref() == Some(&*format!("{}@%", ed.user)),
        "{user:?}"
    );
    Ok(())
}

async fn tls_from_the_client(target: &MyTarget) -> Result<()> {
    let mut conn = target
        .connect(
            &app_login(),
            &MyOptions::program("q-tls").tls(MyTls::VerifyFull),
        )
        .await?;
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await?;
    ensure!(
        row.is_some_and(|(_, v)| v.starts_with("TLS")),
        "the database leg is not TLS"
    );
    Ok(())
}
