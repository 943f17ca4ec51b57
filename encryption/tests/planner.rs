//! The planner and the rewriter on a small catalog: which literals and parameters are encrypted
//! for which column, what comes back decrypted, and what is refused with which reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_analysis::Dialect;
use warden_crypto::{Algorithm, ColumnKey, DataKey, KeyParams, Mode};
use warden_encryption::rewrite::rewrite;
use warden_encryption::{Catalog, EncryptionPolicy, Plan, Planner};

const POLICY: &str = r#"
[[encrypt]]
column = "people.card"
key = "card"
algorithm = "sm4"
mode = "deterministic"
type = "varchar(18)"
domain = "card"

[[encrypt]]
column = "visits.card"
key = "card"
algorithm = "sm4"
mode = "deterministic"
type = "varchar(18)"
domain = "card"

[[encrypt]]
column = "people.pay"
key = "pay"
algorithm = "sm4"
mode = "ope"
type = "numeric(10,2)"

[[encrypt]]
column = "people.note"
key = "note"
algorithm = "aes-256"
mode = "randomized"
type = "text"
"#;

fn key(name: &str, id: u32, algorithm: Algorithm, mode: Mode) -> (String, Arc<ColumnKey>) {
    let data = DataKey::from_bytes([id as u8; 32]);
    let key = ColumnKey::new(
        name,
        id,
        algorithm,
        mode,
        &KeyParams::default(),
        [(1, &data)],
        1,
    )
    .expect("key");
    (name.to_string(), Arc::new(key))
}

fn row(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

fn planner() -> Planner {
    let policy = EncryptionPolicy::parse(POLICY).expect("policy");
    let keys: BTreeMap<String, Arc<ColumnKey>> = [
        key("card", 1, Algorithm::Sm4, Mode::Deterministic),
        key("pay", 2, Algorithm::Sm4, Mode::OrderPreserving),
        key("note", 3, Algorithm::Aes256, Mode::Randomized),
    ]
    .into_iter()
    .collect();
    let columns = [
        row(&["100", "public", "people", "1", "id", "20", "bigint"]),
        row(&["100", "public", "people", "2", "name", "25", "text"]),
        row(&["100", "public", "people", "3", "card", "17", "bytea"]),
        row(&["100", "public", "people", "4", "pay", "17", "bytea"]),
        row(&["100", "public", "people", "5", "note", "17", "bytea"]),
        row(&["200", "public", "visits", "1", "card", "17", "bytea"]),
        row(&["200", "public", "visits", "2", "at", "1082", "date"]),
    ];
    let catalog = Catalog::from_pg_rows(&policy, &keys, &columns, &[], vec!["public".into()])
        .expect("catalog");
    Planner::new(Arc::new(catalog))
}

fn plan(sql: &str) -> Arc<Plan> {
    planner().plan(sql, None)
}

fn columns_of_literals(plan: &Plan) -> Vec<String> {
    plan.literals
        .iter()
        .map(|s| s.column.column.column.clone())
        .collect()
}

#[test]
fn insert_values_encrypt_by_position_and_column_list() {
    let p = plan(
        "INSERT INTO people VALUES (1, 'ann', '110', 12.5, 'hi'), (2, 'bob', NULL, -3, DEFAULT)",
    );
    assert!(p.refusal.is_none(), "{:?}", p.refusal);
    assert_eq!(columns_of_literals(&p), ["card", "pay", "note", "pay"]);
    assert!(p.literals[3].negate);
    let p = plan("INSERT INTO people (note, id, card) VALUES ($1, $2, $3)");
    let params: Vec<(usize, String)> = p
        .params
        .iter()
        .map(|(n, c)| (*n, c.column.column.clone()))
        .collect();
    assert_eq!(params, [(1, "note".to_string()), (3, "card".to_string())]);
}

#[test]
fn predicates_bind_literals_to_the_compared_column() {
    let p = plan(
        "SELECT p.id FROM people p JOIN visits v ON v.card = p.card \
         WHERE p.card IN ('1', $1) AND p.pay BETWEEN 10 AND $2 AND p.id > 5",
    );
    assert!(p.refusal.is_none(), "{:?}", p.refusal);
    assert_eq!(columns_of_literals(&p), ["card", "pay"]);
    assert_eq!(p.params.len(), 2);
}

#[test]
fn outputs_follow_aliases_subqueries_and_ctes() {
    let p = plan(
        "WITH c AS (SELECT card AS k, pay FROM people) \
         SELECT x.k, x.pay, 1, min(pay) FROM (SELECT * FROM c) x GROUP BY x.k, x.pay",
    );
    assert!(p.refusal.is_none(), "{:?}", p.refusal);
    let outs: Vec<Option<String>> = p.outputs[0]
        .iter()
        .map(|o| o.as_ref().map(|c| c.column.column.clone()))
        .collect();
    assert_eq!(
        outs,
        [
            Some("card".into()),
            Some("pay".into()),
            None,
            Some("pay".into())
        ]
    );
    assert_eq!(p.extrema.len(), 1);
}

#[test]
fn rewrite_replaces_only_the_planned_literals() {
    let sql = "SELECT id, 'keep' FROM people WHERE card = '110' /* c */ AND pay > -2.5";
    let p = plan(sql);
    let out = rewrite(sql, &p, Dialect::PostgreSql).expect("rewrite");
    assert!(
        out.starts_with("SELECT id, 'keep' FROM people WHERE card = '\\x5701"),
        "{out}"
    );
    assert!(out.contains("::bytea /* c */ AND pay > '\\x"), "{out}");
    assert!(!out.contains("'110'") && !out.contains("2.5"), "{out}");
    // Deterministic: the same value gives the same ciphertext.
    assert_eq!(out, rewrite(sql, &p, Dialect::PostgreSql).expect("rewrite"));
    let sql = "SELECT max(pay) FROM people";
    let out = rewrite(sql, &plan(sql), Dialect::PostgreSql).expect("rewrite");
    assert_eq!(
        out,
        "SELECT (array_agg(pay ORDER BY pay DESC NULLS LAST))[1] FROM people"
    );
}

#[test]
fn refusals_name_the_column_and_the_reason() {
    for (sql, column, reason) in [
        (
            "SELECT id FROM people WHERE card LIKE '1%'",
            "people.card",
            "pattern",
        ),
        ("SELECT lower(note) FROM people", "people.note", "lower()"),
        ("SELECT pay * 2 FROM people", "people.pay", "operator *"),
        ("SELECT avg(pay) FROM people", "people.pay", "avg()"),
        (
            "SELECT id FROM people ORDER BY card",
            "people.card",
            "ORDER BY",
        ),
        (
            "SELECT id FROM people WHERE note = 'x'",
            "people.note",
            "randomized",
        ),
        (
            "SELECT id FROM people WHERE card < '5'",
            "people.card",
            "order-preserving",
        ),
        (
            "UPDATE people SET card = upper(name)",
            "people.card",
            "literal",
        ),
        ("UPDATE people SET name = card", "people.card", "copied"),
        (
            "SELECT card FROM people UNION SELECT name FROM people",
            "people.card",
            "set operation",
        ),
        (
            "SELECT DISTINCT note FROM people",
            "people.note",
            "DISTINCT",
        ),
        (
            "INSERT INTO people (id, pay) SELECT id, card FROM visits",
            "people.pay",
            "same key domain",
        ),
        (
            "COPY people FROM '/srv/people.txt'",
            "people",
            "server file",
        ),
        (
            "UPDATE people SET (card, name) = ('1', 'x')",
            "people.card",
            "tuple",
        ),
        (
            "MERGE INTO people p USING visits v ON p.card = v.card WHEN MATCHED THEN DELETE",
            "people",
            "MERGE",
        ),
        (
            "CREATE TABLE copy AS SELECT card FROM people",
            "people.card",
            "CREATE TABLE",
        ),
        (
            "COPY people TO STDOUT (FORMAT binary)",
            "people",
            "binary format",
        ),
        (
            "SELECT * FROM people WHERE card = 'x",
            "people",
            "could not be",
        ),
    ] {
        let p = plan(sql);
        let r = p
            .refusal
            .as_ref()
            .unwrap_or_else(|| panic!("{sql} not refused"));
        assert!(r.column.contains(column), "{sql}: {r}");
        assert!(r.reason.contains(reason), "{sql}: {r}");
    }
}

#[test]
fn statements_on_other_tables_pass_untouched() {
    let p = plan("SELECT upper(name) FROM other WHERE x LIKE 'a%'; INSERT INTO other VALUES (1)");
    assert!(p.refusal.is_none());
    assert!(!p.rewrites_text());
    assert!(p.params.is_empty());
}

#[test]
fn views_over_protected_columns_are_planned_like_their_tables() {
    let base = planner();
    let catalog = (**base.catalog()).clone().with_views(&[row(&[
        "300",
        "public",
        "people_v",
        " SELECT people.id,\n    people.card AS k,\n    people.pay\n   FROM people;",
        "id\u{1f}k\u{1f}pay",
    ])]);
    let planner = Planner::new(Arc::new(catalog));
    let p = planner.plan("SELECT k FROM people_v WHERE k = 'x' AND pay > 3", None);
    assert!(p.refusal.is_none(), "{:?}", p.refusal);
    assert_eq!(columns_of_literals(&p), ["card", "pay"]);
    assert!(planner.catalog().protected_at(300, 2).is_some());
    assert!(planner.catalog().protected_at(300, 1).is_none());
}

#[test]
fn copy_plans_name_each_field() {
    let p = plan("COPY people (id, pay, card) FROM STDIN WITH (FORMAT csv, HEADER)");
    let copy = p.copy.as_ref().expect("a copy plan");
    assert!(copy.into_database);
    let fields: Vec<Option<String>> = copy
        .fields
        .iter()
        .map(|f| f.as_ref().map(|c| c.column.column.clone()))
        .collect();
    assert_eq!(fields, [None, Some("pay".into()), Some("card".into())]);
}

#[test]
fn mysql_placeholders_are_numbered_in_text_order() {
    let base = planner();
    let mysql = Planner::with_dialect(Arc::clone(base.catalog()), Dialect::MYSQL_DEFAULT);
    let sql = "SELECT `id` FROM people WHERE id > ? AND card = ? AND pay < \"12.5\"";
    let p = mysql.plan(sql, None);
    assert!(p.refusal.is_none(), "{:?}", p.refusal);
    let params: Vec<usize> = p.params.keys().copied().collect();
    assert_eq!(params, [2]);
    let out = rewrite(sql, &p, Dialect::MYSQL_DEFAULT).expect("rewrite");
    assert!(out.contains("pay < X'"), "{out}");
    // No min()/max() rewrite: MySQL orders VARBINARY itself.
    let p = mysql.plan("SELECT max(pay) FROM people", None);
    assert!(p.extrema.is_empty() && p.outputs[0][0].is_some());
}

#[test]
fn mysql_insert_set_encrypts_its_values() {
    let base = planner();
    let mysql = Planner::with_dialect(Arc::clone(base.catalog()), Dialect::MYSQL_DEFAULT);
    let p = mysql.plan(
        "INSERT INTO people SET id = 1, card = '110', note = ?",
        None,
    );
    assert!(p.refusal.is_none(), "{:?}", p.refusal);
    assert_eq!(columns_of_literals(&p), ["card"]);
    assert_eq!(p.params.keys().copied().collect::<Vec<_>>(), [1]);
}

#[test]
fn unqualified_names_outside_the_search_path_are_refused() {
    let policy = EncryptionPolicy::parse(
        "[[encrypt]]\ncolumn = \"tenant1.users.ssn\"\nkey = \"card\"\nalgorithm = \"sm4\"\nmode = \"deterministic\"\ntype = \"text\"\n",
    )
    .expect("policy");
    let keys: BTreeMap<String, Arc<ColumnKey>> =
        [key("card", 1, Algorithm::Sm4, Mode::Deterministic)]
            .into_iter()
            .collect();
    let columns = [row(&["400", "tenant1", "users", "1", "ssn", "17", "bytea"])];
    let catalog = Catalog::from_pg_rows(&policy, &keys, &columns, &[], vec!["public".into()])
        .expect("catalog");
    let planner = Planner::new(Arc::new(catalog));
    let p = planner.plan("SELECT encode(ssn, 'hex') FROM users", None);
    let r = p.refusal.as_ref().expect("refused");
    assert!(r.reason.contains("search path"), "{r}");
    assert!(
        planner
            .plan("SELECT ssn FROM tenant1.users WHERE ssn = 'x'", None)
            .refusal
            .is_none()
    );
}

#[test]
fn mysql_quoted_column_names_match_case_insensitively() {
    let base = planner();
    let mysql = Planner::with_dialect(Arc::clone(base.catalog()), Dialect::MYSQL_DEFAULT);
    let p = mysql.plan("SELECT HEX(`CARD`) FROM people", None);
    assert!(
        p.refusal.is_some(),
        "HEX of the encrypted column must be refused"
    );
    let p = mysql.plan("SELECT id FROM people WHERE `Card` = 'x'", None);
    assert_eq!(columns_of_literals(&p), ["card"]);
}
