//! Properties that must hold for every input: the analysis does not depend on literal values,
//! redaction never lets a string literal through, nothing panics, and the cache stays bounded.

use std::sync::Arc;

use proptest::prelude::*;
use warden_analysis::{Analysis, Analyzer, Dialect};

/// Text that appears in no template below, so finding it in an output means a literal leaked.
const MARK: &str = "zqx";

/// A literal's content: the marker plus awkward characters (quotes, backslashes, comment
/// starters, dollars, multi-byte).
fn content() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 '\"\\\\$;*/#\\-é中\n]{0,16}".prop_map(|s| format!("{MARK}{s}"))
}

/// Encodings of a literal in PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum PgLiteral {
    Standard,
    Escaped,
    Dollar,
}

fn pg_literal(kind: PgLiteral, text: &str) -> String {
    match kind {
        PgLiteral::Standard => format!("'{}'", text.replace('\'', "''")),
        PgLiteral::Escaped => format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")),
        PgLiteral::Dollar => format!("$wq${}$wq$", text.replace('$', "")),
    }
}

fn my_literal(double: bool, text: &str) -> String {
    let escaped = text.replace('\\', "\\\\");
    if double {
        format!("\"{}\"", escaped.replace('"', "\\\""))
    } else {
        format!("'{}'", escaped.replace('\'', "\\'"))
    }
}

/// Statement shapes with slots: `{n}` a number, `{s}` `{e}` `{d}` PostgreSQL strings,
/// `{m}` `{q}` MySQL single- and double-quoted strings.
const PG_SHAPES: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = {n};",
    "SELECT name, {s} AS label FROM citizen c WHERE c.id = {n} AND c.card = {s}",
    "INSERT INTO t (a, b, c) VALUES ({n}, {s}, {e}), ({n}, {e}, {d})",
    "UPDATE t SET a = {s} WHERE b IN ({n}, {n}, {s}) RETURNING *",
    "SELECT a {s} FROM t ORDER BY x",
    "SELECT * FROM t LIMIT {n} OFFSET {n}",
    "COPY t TO {s}",
    "SET application_name = {s}; NOTIFY ch, {d}",
    "SELECT * FROM t WHERE a IN {s}",
    "CREATE TABLE t (a varchar({n}) DEFAULT {e})",
    "SELECT * FROM {s}",
    "SELECT {d} FROM t WHERE x = -{n} AND y = ANY({s}::int[])",
    "DO {d}",
    "SELECT 1; SELEKT {s}; SELECT {e}",
];

const MY_SHAPES: &[&str] = &[
    "SELECT `name` FROM t WHERE a = {m} AND b = {q}",
    "SELECT a {q} FROM t WHERE b = /*!50000 {m} */ {n}",
    "INSERT INTO t (a, b) VALUES ({n}, {m}) ON DUPLICATE KEY UPDATE b = {q}",
];

fn fill(shape: &str, numbers: &[u32], texts: &[String], mysql: bool) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut used = Vec::new();
    let mut rest = shape;
    let (mut n, mut t) = (0, 0);
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let slot = &rest[at + 1..at + 2];
        rest = &rest[at + 3..];
        if slot == "n" {
            out.push_str(&numbers[n % numbers.len()].to_string());
            n += 1;
            continue;
        }
        let text = &texts[t % texts.len()];
        t += 1;
        used.push(text.clone());
        out.push_str(&match (slot, mysql) {
            ("s", _) => pg_literal(PgLiteral::Standard, text),
            ("e", _) => pg_literal(PgLiteral::Escaped, text),
            ("d", _) => pg_literal(PgLiteral::Dollar, text),
            ("m", _) => my_literal(false, text),
            _ => my_literal(true, text),
        });
    }
    out.push_str(rest);
    (out, used)
}

fn assert_no_leak(analysis: &Analysis, secrets: &[String]) -> Result<(), TestCaseError> {
    let mut outputs = vec![analysis.redacted_sql.clone()];
    if let warden_analysis::Outcome::Unparseable { error } = &analysis.outcome {
        outputs.push(error.clone());
    }
    for facts in &analysis.statements {
        outputs.push(facts.redacted_sql.clone());
        outputs.extend(facts.tables_read.iter().map(|t| t.to_string()));
        outputs.extend(facts.tables_written.iter().map(|t| t.to_string()));
        outputs.extend(facts.columns_read.iter().map(|c| c.to_string()));
        outputs.extend(facts.columns_written.iter().map(|c| c.to_string()));
    }
    for output in &outputs {
        prop_assert!(!output.contains(MARK), "leaked into {output:?}");
        for secret in secrets {
            prop_assert!(
                !output.contains(secret.as_str()),
                "{secret:?} in {output:?}"
            );
        }
    }
    Ok(())
}

fn pg_analyzer() -> Analyzer {
    Analyzer::new(Dialect::PostgreSql, 1000, 64 * 1024)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Two fillings of one shape share one cache entry, and fresh analyzers (no cache) give
    /// equal analyses: no fact depends on a literal's value.
    #[test]
    fn analysis_is_independent_of_literal_values(
        shape in 0..PG_SHAPES.len() + MY_SHAPES.len(),
        numbers_a in prop::collection::vec(1u32..1_000_000_000, 1..4),
        numbers_b in prop::collection::vec(1u32..1_000_000_000, 1..4),
        texts_a in prop::collection::vec(content(), 1..4),
        texts_b in prop::collection::vec(content(), 1..4),
    ) {
        let (shape, dialect, mysql) = match PG_SHAPES.get(shape) {
            Some(s) => (*s, Dialect::PostgreSql, false),
            None => (MY_SHAPES[shape - PG_SHAPES.len()], Dialect::MYSQL_DEFAULT, true),
        };
        let (sql_a, secrets_a) = fill(shape, &numbers_a, &texts_a, mysql);
        let (sql_b, secrets_b) = fill(shape, &numbers_b, &texts_b, mysql);

        let shared = Analyzer::new(dialect, 1000, 64 * 1024);
        let a = shared.analyze(&sql_a);
        let b = shared.analyze(&sql_b);
        prop_assert!(Arc::ptr_eq(&a, &b), "not shared:\n{sql_a}\n{sql_b}");

        let fresh_a = Analyzer::new(dialect, 1000, 64 * 1024).analyze(&sql_a);
        let fresh_b = Analyzer::new(dialect, 1000, 64 * 1024).analyze(&sql_b);
        prop_assert_eq!(&*fresh_a, &*fresh_b, "facts differ:\n{}\n{}", sql_a, sql_b);

        assert_no_leak(&fresh_a, &secrets_a)?;
        assert_no_leak(&fresh_b, &secrets_b)?;
    }

    /// A string literal holding a secret stays hidden whatever surrounds it: garbage after it
    /// (any characters), garbage before it that cannot open a comment, quote or identifier, and a
    /// cut anywhere, including inside the literal.
    #[test]
    fn redaction_never_shows_a_string_literal(
        kind in prop_oneof![Just(PgLiteral::Standard), Just(PgLiteral::Escaped), Just(PgLiteral::Dollar)],
        secret in "[a-zA-Z0-9 '\\\\$;*/é\n]{0,12}",
        prefix in "[a-zA-Z0-9 (),;=<>+.:\n]{0,24}",
        suffix in "[ -~\n é中]{0,24}",
        base in 0usize..4,
        cut in proptest::option::of(0usize..200),
    ) {
        let secret = format!("S3CR3T{secret}");
        let literal = pg_literal(kind, &secret);
        let bases = [
            format!("SELECT * FROM citizen WHERE card = {literal}"),
            format!("INSERT INTO t VALUES (1, {literal})"),
            format!("UPDATE t SET a = {literal} WHERE b = 2; SELECT 1"),
            format!("SELECT f({literal}::text) AS x"),
        ];
        let mut sql = format!("{prefix}{}{suffix}", bases[base]);
        if let Some(cut) = cut {
            let mut cut = cut.min(sql.len());
            while !sql.is_char_boundary(cut) {
                cut -= 1;
            }
            sql.truncate(cut);
        }
        let analysis = pg_analyzer().analyze(&sql);
        for output in std::iter::once(&analysis.redacted_sql)
            .chain(analysis.statements.iter().map(|s| &s.redacted_sql))
        {
            prop_assert!(!output.contains("S3CR"), "{sql:?} -> {output:?}");
        }
        if let warden_analysis::Outcome::Unparseable { error } = &analysis.outcome {
            prop_assert!(!error.contains("S3CR"), "{error}");
        }
    }

    /// The same for MySQL, with backslash escapes and double-quoted strings.
    #[test]
    fn mysql_redaction_never_shows_a_string_literal(
        double in any::<bool>(),
        secret in "[a-zA-Z0-9 '\"\\\\;*/\n]{0,12}",
        suffix in "[ -~\n]{0,24}",
        cut in proptest::option::of(0usize..120),
    ) {
        let literal = my_literal(double, &format!("S3CR3T{secret}"));
        let mut sql = format!("SELECT * FROM t WHERE a = {literal}{suffix}");
        if let Some(cut) = cut {
            sql.truncate(cut.min(sql.len()));
        }
        let analysis = Analyzer::new(Dialect::MYSQL_DEFAULT, 100, 64 * 1024).analyze(&sql);
        prop_assert!(!analysis.redacted_sql.contains("S3CR"), "{sql:?} -> {}", analysis.redacted_sql);
        for facts in &analysis.statements {
            prop_assert!(!facts.redacted_sql.contains("S3CR"));
        }
    }

    /// Arbitrary text never panics, and analysing it twice gives the same answer.
    #[test]
    fn arbitrary_text_never_panics(sql in "\\PC{0,200}", mysql in any::<bool>()) {
        let dialect = if mysql { Dialect::MYSQL_DEFAULT } else { Dialect::PostgreSql };
        let analyzer = Analyzer::new(dialect, 100, 64 * 1024);
        let first = analyzer.analyze(&sql);
        let second = Analyzer::new(dialect, 100, 64 * 1024).analyze(&sql);
        prop_assert_eq!(&*first, &*second);
    }

    /// Random bytes (lossily decoded, as the proxy would after a UTF-8 check fails) never panic.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let sql = String::from_utf8_lossy(&bytes);
        let _ = pg_analyzer().analyze(&sql);
        let _ = Analyzer::new(Dialect::MYSQL_DEFAULT, 10, 1024).analyze(&sql);
    }

    /// Mutations of valid SQL (characters from SQL's own alphabet spliced in) never panic.
    #[test]
    fn mutated_sql_never_panics(
        base in 0usize..4,
        edits in prop::collection::vec((0usize..400, "[ -~]{0,3}"), 1..6),
    ) {
        let bases = [
            "SELECT c.name, o.total FROM citizen c JOIN orders o ON o.cid = c.id WHERE c.city = 'x' ORDER BY 1",
            "WITH d AS (DELETE FROM t WHERE a = $1 RETURNING *) INSERT INTO archive SELECT * FROM d",
            "COPY (SELECT a FROM t) TO STDOUT; BEGIN; UPDATE t SET a = E'\\\\x' WHERE b IN (1,2); COMMIT",
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v",
        ];
        let mut sql = bases[base].to_string();
        for (at, text) in &edits {
            let at = (*at).min(sql.len());
            sql.insert_str(at, text);
        }
        let _ = pg_analyzer().analyze(&sql);
    }
}

#[test]
fn cache_stays_bounded_under_many_shapes() {
    let analyzer = Analyzer::new(Dialect::PostgreSql, 64, 1 << 20);
    for i in 0..3000 {
        let sql = format!("SELECT c{i} FROM t{} WHERE a = {i}", i % 7);
        let analysis = analyzer.analyze(&sql);
        assert!(analysis.is_understood());
        assert!(analyzer.stats().entries <= 64);
    }
    let stats = analyzer.stats();
    assert_eq!(stats.misses, 3000);
}

#[test]
fn one_analyzer_serves_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Analyzer>();
    assert_send_sync::<Arc<Analysis>>();
    let analyzer = Arc::new(pg_analyzer());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let analyzer = Arc::clone(&analyzer);
            std::thread::spawn(move || {
                for i in 0..500 {
                    let sql = format!(
                        "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
                        t * 1000 + i
                    );
                    assert!(analyzer.analyze(&sql).is_understood());
                }
            })
        })
        .collect();
    for thread in threads {
        assert!(thread.join().is_ok());
    }
    let stats = analyzer.stats();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.hits + stats.misses, 2000);
    assert!(stats.misses <= 4, "{stats:?}");
}
