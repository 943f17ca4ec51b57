//! The extended query protocol through warden: named and unnamed statements, binary parameters
//! and results for many types, pipelining, portals fetched in chunks, errors in the middle of a
//! pipeline, and large values.
//!
//! tokio-postgres uses the extended protocol for everything but `simple_query`: `prepare`
//! makes named statements (closed when dropped), `query_typed` the unnamed one, results come in
//! binary, and requests issued concurrently on one client are pipelined.

use anyhow::{Context, Result, ensure};
use futures_util::future::join_all;
use tokio_postgres::types::Type;
use warden_tests::both_ways;
use warden_tests::equivalence::same;
use warden_tests::fixtures::{self, app_login};
use warden_tests::pg::{ConnectOptions, Target, columns_of, raw_rows, simple_summary, sqlstate};
use warden_tests::scratch::unique_name;

both_ways!(
    named_and_unnamed_statements,
    binary_values_decode_correctly,
    pipelined_requests_keep_their_order,
    errors_mid_pipeline_leave_the_session_usable,
    portals_fetch_in_chunks,
    large_values_and_many_rows,
);

/// A query returning one value of each common type.
const MANY_TYPES: &str = "SELECT 1::int2 AS i2, (-2147483648)::int4 AS i4, \
    9223372036854775807::int8 AS i8, 3.5::float4 AS f4, (-1.25e300)::float8 AS f8, \
    12345678901234567890.123456789::numeric AS num, 'NaN'::numeric AS nan, \
    'héllo, wörld 你好'::text AS t, 'varchar'::varchar(10) AS vc, 'x'::char AS ch, \
    '\\x00ff10'::bytea AS b, true AS yes, false AS no, \
    '2024-02-29 12:34:56.789+08'::timestamptz AS tstz, '2024-02-29 12:34:56.789'::timestamp AS ts, \
    '2024-02-29'::date AS d, '12:34:56.5'::time AS tm, '1 day 02:03:04'::interval AS iv, \
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, ARRAY[1, 2, NULL, 4]::int4[] AS arr, \
    ARRAY['a', 'b c', NULL]::text[] AS tarr, '{\"k\": [1, 2, {\"n\": null}]}'::json AS j, \
    '{\"k\": [1, 2, {\"n\": null}]}'::jsonb AS jb, NULL::int4 AS nul, \
    '192.168.0.1/24'::inet AS ip, 42::oid AS o";

/// Named statements (prepared, reused, closed and prepared again) and the unnamed statement
/// (`query_typed`) work, with parameter types from Describe.
async fn named_and_unnamed_statements(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("x-statements"))
        .await?;
    let add = session.prepare("SELECT $1::int4 + $2::int4").await?;
    ensure!(
        add.params() == [Type::INT4, Type::INT4],
        "{:?}",
        add.params()
    );
    ensure!(add.columns()[0].type_() == &Type::INT4);
    let concat = session
        .prepare("SELECT $1::text || '-' || $2::text AS joined")
        .await?;
    ensure!(concat.columns()[0].name() == "joined");
    for i in 0..5i32 {
        let sum: i32 = session.query_one(&add, &[&i, &10]).await?.get(0);
        ensure!(sum == i + 10);
        let joined: String = session
            .query_one(&concat, &[&format!("a{i}"), &"b"])
            .await?
            .get(0);
        ensure!(joined == format!("a{i}-b"));
    }
    drop(add);
    // The same text prepared again after the Close.
    for round in 0..3i32 {
        let again = session.prepare("SELECT $1::int4 + $2::int4").await?;
        let sum: i32 = session.query_one(&again, &[&round, &round]).await?.get(0);
        ensure!(sum == 2 * round);
    }
    // Many named statements alive at once.
    let mut statements = Vec::new();
    for i in 0..60 {
        statements.push((
            i,
            session
                .prepare(&format!("SELECT {i}::int4 + $1::int4"))
                .await?,
        ));
    }
    for (i, statement) in &statements {
        let v: i32 = session.query_one(statement, &[&1i32]).await?.get(0);
        ensure!(v == i + 1, "statement {i} answered {v}");
    }
    // The unnamed statement, with explicit parameter types.
    for i in 0..5i64 {
        let rows = session
            .query_typed(
                "SELECT $1::int8 * 2, $2::text",
                &[(&i, Type::INT8), (&"unnamed", Type::TEXT)],
            )
            .await?;
        ensure!(rows[0].get::<_, i64>(0) == i * 2);
        ensure!(rows[0].get::<_, String>(1) == "unnamed");
    }
    Ok(())
}

/// Binary results decode to the right values, and binary parameters arrive intact.
async fn binary_values_decode_correctly(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("x-binary"))
        .await?;
    let row = session.query_one(MANY_TYPES, &[]).await?;
    ensure!(row.get::<_, i16>("i2") == 1);
    ensure!(row.get::<_, i32>("i4") == i32::MIN);
    ensure!(row.get::<_, i64>("i8") == i64::MAX);
    ensure!(row.get::<_, f32>("f4") == 3.5);
    ensure!(row.get::<_, f64>("f8") == -1.25e300);
    ensure!(row.get::<_, String>("t") == "héllo, wörld 你好");
    ensure!(row.get::<_, String>("vc") == "varchar");
    ensure!(row.get::<_, Vec<u8>>("b") == [0x00, 0xff, 0x10]);
    ensure!(row.get::<_, bool>("yes") && !row.get::<_, bool>("no"));
    ensure!(row.get::<_, Option<i32>>("nul").is_none());
    ensure!(row.get::<_, Vec<Option<i32>>>("arr") == [Some(1), Some(2), None, Some(4)]);
    ensure!(
        row.get::<_, Vec<Option<String>>>("tarr")
            == [Some("a".to_string()), Some("b c".to_string()), None]
    );
    let uuid = row.get::<_, warden_tests::pg::RawValue>("u");
    ensure!(uuid.bytes.as_deref() == Some(&hex::decode("a0eebc999c0b4ef8bb6d6bb9bd380a11")?[..]));
    let stamp = row.get::<_, std::time::SystemTime>("tstz");
    let micros = stamp.duration_since(std::time::UNIX_EPOCH)?.as_micros();
    // 2024-02-29 04:34:56.789 UTC
    ensure!(micros == 1_709_181_296_789_000, "timestamptz {micros}");

    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let echoed = session
        .query_one(
            "SELECT $1::int4 + 1, $2::text || '!', $3::bytea, $4::float8 * 2, NOT $5::bool, \
             $6::int8, $7::text IS NULL",
            &[
                &41i32,
                &"hi ☃",
                &bytes,
                &1.5f64,
                &true,
                &(-5i64),
                &None::<String>,
            ],
        )
        .await?;
    ensure!(echoed.get::<_, i32>(0) == 42);
    ensure!(echoed.get::<_, String>(1) == "hi ☃!");
    ensure!(
        echoed.get::<_, Vec<u8>>(2) == bytes,
        "bytea parameter changed"
    );
    ensure!(echoed.get::<_, f64>(3) == 3.0);
    ensure!(!echoed.get::<_, bool>(4));
    ensure!(echoed.get::<_, i64>(5) == -5);
    ensure!(echoed.get::<_, bool>(6));
    Ok(())
}

/// Many requests in flight at once on one connection (tokio-postgres pipelines them): every
/// answer belongs to its request.
async fn pipelined_requests_keep_their_order(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("x-pipeline"))
        .await?;
    let statement = session
        .prepare("SELECT $1::int4 * 2, repeat('x', $1::int4)")
        .await?;
    let requests = (0..200i32).map(|i| {
        let session = &session;
        let statement = &statement;
        async move {
            let row = session.query_one(statement, &[&i]).await?;
            anyhow::Ok((i, row.get::<_, i32>(0), row.get::<_, String>(1).len()))
        }
    });
    for result in join_all(requests).await {
        let (i, doubled, len) = result?;
        ensure!(
            doubled == 2 * i && len == i as usize,
            "request {i} got ({doubled}, {len})"
        );
    }
    // Mixed kinds of request in one pipeline: unnamed statements, named ones, simple queries.
    let (a, b, c, d) = futures_util::join!(
        session.query_typed("SELECT $1::text", &[(&"typed", Type::TEXT)]),
        session.query_one(&statement, &[&3i32]),
        session.simple_query("SELECT 'simple'; SELECT 2"),
        session.query("SELECT generate_series(1, 3)", &[]),
    );
    ensure!(a?[0].get::<_, String>(0) == "typed");
    ensure!(b?.get::<_, i32>(0) == 6);
    ensure!(simple_summary(&c?) == ["row simple", "complete 1", "row 2", "complete 1"]);
    ensure!(d?.len() == 3);
    Ok(())
}

/// Failures inside a pipeline (a runtime error, a syntax error at Parse) come back to the
/// request that caused them, later requests still run, and in a transaction block the later
/// statements fail with 25P02 until ROLLBACK.
async fn errors_mid_pipeline_leave_the_session_usable(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("x-pipeline-errors"))
        .await?;
    let (one, div, three, parse, five) = futures_util::join!(
        session.query_one("SELECT 1::int4", &[]),
        session.query_one("SELECT 1/0", &[]),
        session.query_one("SELECT 3::int4", &[]),
        session.prepare("SELEC broken syntax"),
        session.query_one("SELECT 5::int4", &[]),
    );
    ensure!(one?.get::<_, i32>(0) == 1);
    ensure!(div.err().as_ref().and_then(sqlstate) == Some("22012"));
    ensure!(three?.get::<_, i32>(0) == 3);
    ensure!(parse.err().as_ref().and_then(sqlstate) == Some("42601"));
    ensure!(five?.get::<_, i32>(0) == 5);

    let t = unique_name("pipe");
    session
        .simple_query(&format!("CREATE TABLE {t} (id int)"))
        .await?;
    session.simple_query("BEGIN").await?;
    let insert = format!("INSERT INTO {t} VALUES ($1)");
    let (first, failing, after) = futures_util::join!(
        session.execute(&insert, &[&1i32]),
        session.execute("SELECT 1/0", &[]),
        session.execute(&insert, &[&2i32]),
    );
    ensure!(first? == 1);
    ensure!(failing.err().as_ref().and_then(sqlstate) == Some("22012"));
    ensure!(after.err().as_ref().and_then(sqlstate) == Some("25P02"));
    session.simple_query("ROLLBACK").await?;
    let count: i64 = session
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await?
        .get(0);
    ensure!(count == 0, "the aborted transaction left {count} rows");
    session.simple_query(&format!("DROP TABLE {t}")).await?;
    Ok(())
}

/// Portals bound in a transaction return their rows in chunks of the requested size
/// (Execute with a row limit, PortalSuspended), and two portals interleave.
async fn portals_fetch_in_chunks(target: &Target) -> Result<()> {
    let mut session = target
        .connect(&app_login(), &ConnectOptions::app("x-portals"))
        .await?;
    let tx = session.client_mut().transaction().await?;
    let statement = tx
        .prepare("SELECT g, md5(g::text) FROM generate_series(1, $1::int4) g")
        .await?;
    let big = tx.bind(&statement, &[&1000i32]).await?;
    let small = tx.bind(&statement, &[&10i32]).await?;
    let mut seen = Vec::new();
    let mut chunks = Vec::new();
    let mut small_seen = Vec::new();
    loop {
        let rows = tx.query_portal(&big, 128).await?;
        if rows.is_empty() {
            break;
        }
        chunks.push(rows.len());
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
        if small_seen.len() < 10 {
            let rows = tx.query_portal(&small, 3).await?;
            small_seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
        }
    }
    ensure!(
        seen == (1..=1000).collect::<Vec<_>>(),
        "rows out of order or missing"
    );
    ensure!(
        chunks == [128, 128, 128, 128, 128, 128, 128, 104],
        "chunk sizes {chunks:?}"
    );
    ensure!(
        small_seen == (1..=10).collect::<Vec<_>>(),
        "small portal {small_seen:?}"
    );
    tx.commit().await?;
    Ok(())
}

/// An 8 MB value in one row, a 4 MB parameter, and 200,000 rows in one result.
async fn large_values_and_many_rows(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("x-large"))
        .await?;
    let row = session
        .query_one("SELECT repeat('abcdefgh', 1048576)", &[])
        .await?;
    let value: String = row.get(0);
    ensure!(value.len() == 8 << 20 && value.starts_with("abcdefgh") && value.ends_with("gh"));

    let payload: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
    let digest: String = session
        .query_one("SELECT md5($1::bytea)", &[&payload])
        .await?
        .get(0);
    let expected = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(&payload))
    };
    ensure!(digest == expected, "the 4 MB parameter arrived changed");

    let rows = session
        .query("SELECT g, g::text FROM generate_series(1, 200000) g", &[])
        .await?;
    ensure!(rows.len() == 200_000);
    let sum: i64 = rows.iter().map(|r| i64::from(r.get::<_, i32>(0))).sum();
    ensure!(sum == 200_000 * 200_001 / 2);
    Ok(())
}

/// Column names, type OIDs and the binary bytes of every value are identical through warden,
/// for results and for echoed binary parameters; text-format results (simple query) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_text_results_equal_direct() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let options = ConnectOptions::app("x-equal");
            let direct = fixtures::direct()?.connect(&app_login(), &options).await?;
            let proxied = warden.target("main")?.connect(&app_login(), &options).await?;

            let d = direct.query(MANY_TYPES, &[]).await?;
            let p = proxied.query(MANY_TYPES, &[]).await?;
            let first = d.first().context("no row directly")?;
            same("columns (names, type OIDs)", &columns_of(first), &columns_of(p.first().context("no row through warden")?))?;
            same("binary values", &raw_rows(&d), &raw_rows(&p))?;

            let echo = "SELECT $1::int4, $2::text, $3::bytea, $4::float8, $5::bool, $6::text::numeric::text";
            let bytes: Vec<u8> = (0..=255u8).collect();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&7i32, &"ünïcode", &bytes, &-0.0f64, &false, &"1e-20"];
            same(
                "echoed binary parameters",
                &raw_rows(&direct.query(echo, &params).await?),
                &raw_rows(&proxied.query(echo, &params).await?),
            )?;

            same(
                "text results of a simple query",
                &simple_summary(&direct.simple_query(MANY_TYPES).await?),
                &simple_summary(&proxied.simple_query(MANY_TYPES).await?),
            )?;
            Ok(())
        })
        .await
}
