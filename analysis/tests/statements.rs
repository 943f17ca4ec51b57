//! Real statements with the facts Warden must find in them: pgbench, psql, ORMs, DDL, MySQL.

use std::sync::Arc;

use warden_analysis::{
    Analysis, Analyzer, CopyDirection, CopyEndpoint, DdlKind, Dialect, Outcome, StatementFacts,
    StatementKind, TransactionKind,
};

fn analyzer(dialect: Dialect) -> Analyzer {
    Analyzer::new(dialect, 1000, 64 * 1024)
}

fn pg(sql: &str) -> Arc<Analysis> {
    analyzer(Dialect::PostgreSql).analyze(sql)
}

fn my(sql: &str) -> Arc<Analysis> {
    analyzer(Dialect::MYSQL_DEFAULT).analyze(sql)
}

fn only(analysis: &Analysis) -> &StatementFacts {
    assert_eq!(
        analysis.outcome,
        Outcome::Parsed,
        "{}",
        analysis.redacted_sql
    );
    assert_eq!(analysis.statements.len(), 1, "{}", analysis.redacted_sql);
    &analysis.statements[0]
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// One statement's expected facts, as display strings.
struct Expect<'a> {
    kind: &'a str,
    read: &'a [&'a str],
    written: &'a [&'a str],
    columns_read: &'a [&'a str],
    columns_written: &'a [&'a str],
}

fn check(facts: &StatementFacts, expect: &Expect) {
    let sql = &facts.redacted_sql;
    assert_eq!(facts.kind.as_str(), expect.kind, "kind of {sql}");
    assert_eq!(
        strings(&facts.tables_read),
        expect.read,
        "tables read by {sql}"
    );
    assert_eq!(
        strings(&facts.tables_written),
        expect.written,
        "tables written by {sql}"
    );
    assert_eq!(
        strings(&facts.columns_read),
        expect.columns_read,
        "columns read by {sql}"
    );
    assert_eq!(
        strings(&facts.columns_written),
        expect.columns_written,
        "columns written by {sql}"
    );
}

#[test]
fn pgbench_statements() {
    let select = pg("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
    check(
        only(&select),
        &Expect {
            kind: "select",
            read: &["pgbench_accounts"],
            written: &[],
            columns_read: &["pgbench_accounts.abalance", "pgbench_accounts.aid"],
            columns_written: &[],
        },
    );
    assert!(only(&select).has_where);
    let update = pg("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;");
    check(
        only(&update),
        &Expect {
            kind: "update",
            read: &["pgbench_accounts"],
            written: &["pgbench_accounts"],
            columns_read: &["pgbench_accounts.abalance", "pgbench_accounts.aid"],
            columns_written: &["pgbench_accounts.abalance"],
        },
    );
    assert!(!only(&update).is_unfiltered_write());
    let insert = pg(
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
    );
    check(
        only(&insert),
        &Expect {
            kind: "insert",
            read: &[],
            written: &["pgbench_history"],
            columns_read: &[],
            columns_written: &[
                "pgbench_history.aid",
                "pgbench_history.bid",
                "pgbench_history.delta",
                "pgbench_history.mtime",
                "pgbench_history.tid",
            ],
        },
    );
}

#[test]
fn transaction_script_gives_one_entry_per_statement() {
    let analysis = pg(
        "BEGIN; UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 2; SELECT 1; END;",
    );
    let kinds: Vec<&str> = analysis
        .statements
        .iter()
        .map(|s| s.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "transaction.begin",
            "update",
            "select",
            "transaction.commit"
        ]
    );
    assert_eq!(
        analysis.statements[1].redacted_sql,
        "UPDATE pgbench_tellers SET tbalance = tbalance + ? WHERE tid = ?"
    );
    assert_eq!(
        analysis.statements[0].kind,
        StatementKind::Transaction(TransactionKind::Begin)
    );
}

#[test]
fn empty_query_and_lone_semicolon_have_no_statements() {
    for sql in ["", ";", "  ;; ", "-- just a comment\n"] {
        let analysis = pg(sql);
        assert_eq!(analysis.outcome, Outcome::Parsed, "{sql:?}");
        assert!(analysis.statements.is_empty(), "{sql:?}");
    }
}

#[test]
fn ctes_are_not_tables() {
    let analysis =
        pg("WITH adults AS (SELECT id, name FROM citizen WHERE age > 18) SELECT * FROM adults");
    check(
        only(&analysis),
        &Expect {
            kind: "select",
            read: &["citizen"],
            written: &[],
            columns_read: &["citizen.age", "citizen.id", "citizen.name"],
            columns_written: &[],
        },
    );
    let recursive = pg(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r",
    );
    assert!(only(&recursive).tables_read.is_empty());
}

#[test]
fn aliases_joins_subqueries_and_unions_resolve_to_tables() {
    check(
        only(&pg(
            "SELECT c.name, o.total FROM citizen c JOIN orders o ON o.cid = c.id WHERE c.city = 'x' ORDER BY c.name",
        )),
        &Expect {
            kind: "select",
            read: &["citizen", "orders"],
            written: &[],
            columns_read: &[
                "citizen.city",
                "citizen.id",
                "citizen.name",
                "orders.cid",
                "orders.total",
            ],
            columns_written: &[],
        },
    );
    check(
        only(&pg(
            "SELECT name FROM citizen WHERE id IN (SELECT cid FROM orders WHERE total > 100)",
        )),
        &Expect {
            kind: "select",
            read: &["citizen", "orders"],
            written: &[],
            columns_read: &["citizen.id", "citizen.name", "orders.cid", "orders.total"],
            columns_written: &[],
        },
    );
    check(
        only(&pg(
            "SELECT id AS k FROM a UNION SELECT id FROM b ORDER BY k",
        )),
        &Expect {
            kind: "select",
            read: &["a", "b"],
            written: &[],
            columns_read: &["a.id", "b.id"],
            columns_written: &[],
        },
    );
    check(
        only(&pg(
            "SELECT s.n FROM (SELECT name AS n FROM citizen) s JOIN orders USING (id)",
        )),
        &Expect {
            kind: "select",
            read: &["citizen", "orders"],
            written: &[],
            columns_read: &["citizen.name", "orders.id"],
            columns_written: &[],
        },
    );
    // Correlated subquery: the outer alias is visible inside.
    let correlated =
        pg("SELECT 1 FROM citizen c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.cid = c.id)");
    assert_eq!(
        strings(&only(&correlated).columns_read),
        ["citizen.id", "orders.cid"]
    );
    // Two tables and an unqualified column: the table is not knowable.
    let ambiguous = pg("SELECT name FROM citizen, orders");
    assert_eq!(strings(&only(&ambiguous).columns_read), ["name"]);
    assert!(only(&ambiguous).columns_read[0].table.is_none());
}

#[test]
fn wildcards_are_recorded_per_table() {
    let all = pg("SELECT * FROM citizen c JOIN orders o ON c.id = o.cid");
    assert_eq!(
        strings(&only(&all).columns_read),
        ["citizen.id", "citizen.*", "orders.cid", "orders.*"]
    );
    let qualified = pg("SELECT c.* FROM citizen c, orders");
    assert_eq!(strings(&only(&qualified).columns_read), ["citizen.*"]);
    let whole_row = pg("SELECT row_to_json(u) FROM users u");
    assert_eq!(strings(&only(&whole_row).columns_read), ["users.*"]);
    let in_function = pg("SELECT json_agg(u.*) FROM users u");
    assert_eq!(strings(&only(&in_function).columns_read), ["users.*"]);
    let count = pg("SELECT count(*) FROM users");
    assert!(
        only(&count).columns_read.is_empty(),
        "count(*) reads no column"
    );
}

#[test]
fn lateral_table_functions_and_select_into() {
    check(
        only(&pg(
            "SELECT * FROM citizen c, LATERAL (SELECT total FROM orders o WHERE o.cid = c.id) x",
        )),
        &Expect {
            kind: "select",
            read: &["citizen", "orders"],
            written: &[],
            columns_read: &["citizen.id", "citizen.*", "orders.cid", "orders.total"],
            columns_written: &[],
        },
    );
    let series = pg("SELECT g FROM generate_series(1, 10) g");
    assert!(only(&series).tables_read.is_empty());
    let into = pg("SELECT * INTO backup FROM citizen");
    assert!(only(&into).select_into);
    assert_eq!(strings(&only(&into).tables_written), ["backup"]);
}

#[test]
fn identifiers_fold_like_postgres() {
    let analysis = pg("SELECT \"Name\", Age FROM Public.\"Citizen\"");
    let facts = only(&analysis);
    assert_eq!(strings(&facts.tables_read), ["public.\"Citizen\""]);
    assert_eq!(
        strings(&facts.columns_read),
        ["public.\"Citizen\".\"Name\"", "public.\"Citizen\".age"]
    );
    assert_eq!(facts.tables_read[0].schema(), Some("public"));
    assert_eq!(facts.tables_read[0].name(), "Citizen");
}

#[test]
fn insert_on_conflict_and_returning() {
    check(
        only(&pg(
            "INSERT INTO citizen AS c (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE c.locked = false RETURNING id",
        )),
        &Expect {
            kind: "insert",
            read: &["citizen"],
            written: &["citizen"],
            columns_read: &["citizen.id", "citizen.locked"],
            columns_written: &["citizen.id", "citizen.name"],
        },
    );
    let no_columns = pg("INSERT INTO citizen SELECT * FROM staging");
    assert_eq!(strings(&only(&no_columns).columns_written), ["citizen.*"]);
    assert_eq!(strings(&only(&no_columns).columns_read), ["staging.*"]);
}

#[test]
fn updates_and_deletes_know_their_where_clause() {
    assert!(only(&pg("DELETE FROM citizen")).is_unfiltered_write());
    assert!(only(&pg("UPDATE citizen SET name = NULL")).is_unfiltered_write());
    assert!(!only(&pg("DELETE FROM citizen WHERE id = 3")).is_unfiltered_write());
    check(
        only(&pg(
            "UPDATE t SET a = s.b FROM s WHERE t.id = s.id RETURNING t.a",
        )),
        &Expect {
            kind: "update",
            read: &["s", "t"],
            written: &["t"],
            columns_read: &["s.b", "s.id", "t.a", "t.id"],
            columns_written: &["t.a"],
        },
    );
    check(
        only(&pg("DELETE FROM t USING s WHERE t.id = s.id")),
        &Expect {
            kind: "delete",
            read: &["s", "t"],
            written: &["t"],
            columns_read: &["s.id", "t.id"],
            columns_written: &[],
        },
    );
}

#[test]
fn data_modifying_ctes_and_merge() {
    let analysis = pg(
        "WITH moved AS (DELETE FROM citizen WHERE dead RETURNING *) INSERT INTO archive SELECT * FROM moved",
    );
    let facts = only(&analysis);
    assert_eq!(facts.kind, StatementKind::Insert);
    assert_eq!(strings(&facts.tables_written), ["archive", "citizen"]);
    assert_eq!(strings(&facts.tables_read), ["citizen"]);
    check(
        only(&pg(
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)",
        )),
        &Expect {
            kind: "merge",
            read: &["s", "t"],
            written: &["t"],
            columns_read: &["s.id", "s.v", "t.id"],
            columns_written: &["t.id", "t.v"],
        },
    );
}

#[test]
fn copy_in_and_out() {
    let from = pg("COPY citizen (id, name) FROM STDIN");
    let facts = only(&from);
    assert_eq!(facts.kind, StatementKind::Copy(CopyDirection::From));
    assert_eq!(strings(&facts.tables_written), ["citizen"]);
    assert_eq!(
        strings(&facts.columns_written),
        ["citizen.id", "citizen.name"]
    );
    assert_eq!(facts.copy_endpoint, Some(CopyEndpoint::Client));
    let to = pg("COPY (SELECT name FROM citizen WHERE age > 60) TO STDOUT WITH (FORMAT csv)");
    assert_eq!(only(&to).kind.as_str(), "copy.to");
    assert_eq!(
        strings(&only(&to).columns_read),
        ["citizen.age", "citizen.name"]
    );
    let file = pg("COPY citizen TO '/tmp/all.csv'");
    assert_eq!(only(&file).copy_endpoint, Some(CopyEndpoint::ServerFile));
    assert_eq!(strings(&only(&file).columns_read), ["citizen.*"]);
    assert_eq!(only(&file).redacted_sql, "COPY citizen TO ?");
}

#[test]
fn session_and_notification_statements() {
    let analysis = pg(
        "LISTEN jobs; NOTIFY jobs, 'payload'; UNLISTEN jobs; SET application_name = 'psql'; SHOW search_path; RESET ALL; DISCARD ALL",
    );
    let kinds: Vec<&str> = analysis
        .statements
        .iter()
        .map(|s| s.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "listen", "notify", "unlisten", "set", "show", "reset", "reset"
        ]
    );
    for facts in &analysis.statements {
        assert!(facts.columns_read.is_empty(), "{}", facts.redacted_sql);
    }
    assert_eq!(analysis.statements[1].redacted_sql, "NOTIFY jobs, ?");
    let prepared =
        pg("PREPARE q (int) AS SELECT name FROM citizen WHERE id = $1; EXECUTE q(1); DEALLOCATE q");
    let kinds: Vec<&str> = prepared
        .statements
        .iter()
        .map(|s| s.kind.as_str())
        .collect();
    assert_eq!(kinds, ["prepare", "execute", "deallocate"]);
    assert_eq!(strings(&prepared.statements[0].tables_read), ["citizen"]);
}

#[test]
fn explain_carries_what_it_explains() {
    let analysis = pg("EXPLAIN ANALYZE DELETE FROM t WHERE a = 1");
    let facts = only(&analysis);
    assert_eq!(
        facts.kind,
        StatementKind::Explain {
            analyze: true,
            of: Box::new(StatementKind::Delete)
        }
    );
    assert!(facts.kind.modifies_data());
    assert_eq!(strings(&facts.tables_written), ["t"]);
}

#[test]
fn ddl_and_dcl_targets_are_written() {
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "DROP TABLE citizen, orders",
            "ddl.drop",
            &["citizen", "orders"],
            &[],
        ),
        ("TRUNCATE citizen", "ddl.truncate", &["citizen"], &[]),
        (
            "CREATE TABLE t AS SELECT a FROM s",
            "ddl.create",
            &["t"],
            &["s"],
        ),
        (
            "CREATE VIEW v AS SELECT a FROM s",
            "ddl.create",
            &["v"],
            &["s"],
        ),
        ("ALTER TABLE t ADD COLUMN x int", "ddl.alter", &["t"], &[]),
        ("CREATE INDEX i ON t (a)", "ddl.create", &["t"], &[]),
        ("COMMENT ON TABLE t IS 'secret'", "ddl.comment", &["t"], &[]),
        ("ALTER TABLE t RENAME TO u", "ddl.alter", &["t"], &[]),
        ("GRANT SELECT ON citizen TO bob", "grant", &["citizen"], &[]),
        (
            "REVOKE SELECT ON citizen FROM bob",
            "revoke",
            &["citizen"],
            &[],
        ),
        (
            "LOCK TABLE citizen IN ACCESS EXCLUSIVE MODE",
            "lock",
            &[],
            &["citizen"],
        ),
        ("VACUUM citizen", "vacuum", &[], &[]),
        ("CALL refresh(1)", "call", &[], &[]),
    ];
    for (sql, kind, written, read) in cases {
        let analysis = pg(sql);
        let facts = only(&analysis);
        assert_eq!(facts.kind.as_str(), *kind, "{sql}");
        assert_eq!(strings(&facts.tables_written), *written, "{sql}");
        assert_eq!(strings(&facts.tables_read), *read, "{sql}");
    }
    assert_eq!(
        only(&pg("DROP TABLE t")).kind,
        StatementKind::Ddl(DdlKind::Drop)
    );
}

#[test]
fn psql_catalog_queries_parse() {
    let describe = "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relname OPERATOR(pg_catalog.~) '^(citizen)$' COLLATE pg_catalog.default\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 2, 3;";
    let analysis = pg(describe);
    let facts = only(&analysis);
    assert_eq!(
        strings(&facts.tables_read),
        ["pg_catalog.pg_class", "pg_catalog.pg_namespace"]
    );
    assert!(!analysis.redacted_sql.contains("citizen"));
    let list = "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\",\n  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as \"Type\",\n  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\nWHERE c.relkind IN ('r','p','v','m','S','f','')\n      AND n.nspname <> 'pg_catalog'\n      AND n.nspname !~ '^pg_toast'\n      AND n.nspname <> 'information_schema'\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 1,2;";
    let analysis = pg(list);
    let facts = only(&analysis);
    assert_eq!(facts.tables_read.len(), 3);
    assert!(!analysis.redacted_sql.contains("TOAST"));
    assert!(analysis.redacted_sql.contains("IN (?,?,?,?,?,?,?)"));
}

#[test]
fn unparseable_sql_is_recorded_and_redacted() {
    let analysis = pg("DO $$ BEGIN PERFORM 'secret'; END $$");
    assert!(matches!(analysis.outcome, Outcome::Unparseable { .. }));
    assert_eq!(analysis.redacted_sql, "DO ?");
    assert_eq!(analysis.statements[0].kind, StatementKind::Unparsed);

    // Statements before the failing one keep their facts.
    let analysis = pg("SELECT a FROM t; SELEKT 'secret'");
    assert_eq!(analysis.statements.len(), 2);
    assert_eq!(analysis.statements[0].kind, StatementKind::Select);
    assert_eq!(analysis.statements[1].kind, StatementKind::Unparsed);
    assert_eq!(analysis.statements[1].redacted_sql, "SELEKT ?");

    // The parser's message quotes tokens and positions; neither may carry a literal.
    for sql in [
        "SELECT * FROM t WHERE a IN 'secretvalue'",
        "SELECT * FROM t WHERE a IN E'secret\\'value'",
        "SELECT * FROM t WHERE a IN $q$secretvalue$q$",
        "CREATE TABLE t (a varchar(99999999999999999999))",
    ] {
        let analysis = pg(sql);
        let Outcome::Unparseable { error } = &analysis.outcome else {
            panic!("must not parse: {sql}")
        };
        assert!(
            !error.contains("secret") && !error.contains("9999"),
            "{error}"
        );
        assert!(!error.contains("Line"), "{error}");
    }

    let analysis = pg("SELECT a FROM t WHERE b = 'unterminated secret");
    assert!(
        !analysis.redacted_sql.contains("secret"),
        "{}",
        analysis.redacted_sql
    );
    assert!(
        analysis
            .redacted_sql
            .starts_with("SELECT a FROM t WHERE b =")
    );
}

#[test]
fn literal_derived_names_are_opaque() {
    let analysis = pg("SELECT * FROM 'citizen'");
    let facts = only(&analysis);
    assert!(facts.opaque_names);
    assert!(facts.tables_read.is_empty());
    let alias = pg("SELECT a 'label' FROM t ORDER BY label");
    assert!(!only(&alias).opaque_names, "an alias is not an object");
    assert_eq!(strings(&only(&alias).columns_read), ["t.a", "t.label"]);
}

#[test]
fn orm_join_with_literals() {
    let sql = "SELECT \"users\".\"id\" AS t0_r0, \"users\".\"email\" AS t0_r1, \"profiles\".\"id_card\" AS t1_r0, \"profiles\".\"phone\" AS t1_r1 FROM \"users\" LEFT OUTER JOIN \"profiles\" ON \"profiles\".\"user_id\" = \"users\".\"id\" WHERE \"users\".\"status\" = 'active' AND \"users\".\"created_at\" > '2024-01-01' AND \"profiles\".\"city\" IN ('Beijing', 'Shanghai') ORDER BY \"users\".\"id\" DESC LIMIT 20 OFFSET 40";
    let analysis = pg(sql);
    let facts = only(&analysis);
    assert_eq!(strings(&facts.tables_read), ["profiles", "users"]);
    assert_eq!(
        strings(&facts.columns_read),
        [
            "profiles.city",
            "profiles.id_card",
            "profiles.phone",
            "profiles.user_id",
            "users.created_at",
            "users.email",
            "users.id",
            "users.status",
        ]
    );
    for secret in ["active", "2024", "Beijing", "Shanghai", "20", "40"] {
        assert!(!facts.redacted_sql.contains(secret), "{secret}");
    }
}

#[test]
fn fingerprints_group_statement_shapes() {
    let fp = |sql: &str| only(&pg(sql)).fingerprint;
    let same = [
        (
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "select  ABALANCE from pgbench_accounts where aid = $1 -- x",
        ),
        (
            "SELECT * FROM t WHERE id IN (1, 2)",
            "SELECT * FROM t WHERE id IN (3, 4, 5, 6)",
        ),
        (
            "INSERT INTO t (a) VALUES (1)",
            "INSERT INTO t (a) VALUES (1), (2), (3)",
        ),
        (
            "SELECT * FROM t WHERE a = -1",
            "SELECT * FROM t WHERE a = 7",
        ),
        (
            "SELECT * FROM t WHERE name = 'x'",
            "SELECT * FROM t WHERE name = E'y\\'z'",
        ),
    ];
    for (a, b) in same {
        assert_eq!(fp(a), fp(b), "{a} / {b}");
    }
    let different = [
        (
            "SELECT a FROM t WHERE id = 1",
            "SELECT b FROM t WHERE id = 1",
        ),
        (
            "SELECT a FROM t WHERE id = 1",
            "SELECT a FROM t WHERE id = 1 OR 1 = 1",
        ),
        ("SELECT a FROM t", "SELECT a FROM \"T\""),
        (
            "SELECT a FROM t WHERE id = 1",
            "SELECT a FROM t WHERE id > 1",
        ),
        ("DELETE FROM t WHERE id = 1", "DELETE FROM t"),
        ("SELECT a FROM t UNION SELECT b FROM u", "SELECT a FROM t"),
    ];
    for (a, b) in different {
        assert_ne!(fp(a), fp(b), "{a} / {b}");
    }
    let shown = fp("SELECT 1").to_string();
    assert_eq!(shown.len(), 16);
    assert!(shown.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn mysql_statements() {
    let analysis = my("SELECT `Name`, id FROM `db`.`Citizen` WHERE id = ?");
    check(
        only(&analysis),
        &Expect {
            kind: "select",
            read: &["db.citizen"],
            written: &[],
            columns_read: &["db.citizen.id", "db.citizen.name"],
            columns_written: &[],
        },
    );
    let hinted =
        my("SELECT /*!40001 SQL_NO_CACHE */ name FROM t WHERE a = /*!50000 'secret' */ 'x'");
    assert_eq!(
        hinted.redacted_sql,
        "SELECT /*!40001 SQL_NO_CACHE */ name FROM t WHERE a = /*!50000 ? */ ?"
    );
    let strings_not_columns = my("SELECT \"secret\" FROM t");
    assert_eq!(strings_not_columns.redacted_sql, "SELECT ? FROM t");
    assert!(only(&strings_not_columns).columns_read.is_empty());
    check(
        only(&my("UPDATE t1 JOIN t2 ON t1.id = t2.id SET t1.a = t2.b")),
        &Expect {
            kind: "update",
            read: &["t1", "t2"],
            written: &["t1"],
            columns_read: &["t1.id", "t2.b", "t2.id"],
            columns_written: &["t1.a"],
        },
    );
    check(
        only(&my(
            "INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = a + 1",
        )),
        &Expect {
            kind: "insert",
            read: &["t"],
            written: &["t"],
            columns_read: &["t.a"],
            columns_written: &["t.a"],
        },
    );
    let kinds: Vec<String> = my("USE db; SHOW TABLES; SET NAMES utf8mb4; LOCK TABLES t READ")
        .statements
        .iter()
        .map(|s| s.kind.to_string())
        .collect();
    assert_eq!(kinds, ["use", "show", "set", "lock"]);
}

#[test]
fn mysql_ansi_quotes_sessions_read_double_quotes_as_identifiers() {
    let analyzer = analyzer(Dialect::MYSQL_DEFAULT);
    let ansi = Dialect::MySql {
        ansi_quotes: true,
        no_backslash_escapes: false,
    };
    let default = analyzer.analyze("SELECT \"name\" FROM t");
    let quoted = analyzer.analyze_in(ansi, "SELECT \"name\" FROM t");
    assert!(
        !Arc::ptr_eq(&default, &quoted),
        "the cache is keyed by dialect"
    );
    assert!(only(&default).columns_read.is_empty());
    assert_eq!(strings(&only(&quoted).columns_read), ["t.name"]);
}
