//! Hostile shapes: deep nesting, long operator chains, over-long text. The analyser must answer
//! on a thread with tokio's default 2 MiB worker stack, without overflowing or panicking.

use warden_analysis::{Analyzer, Dialect, Outcome, StatementKind};

const WORKER_STACK: usize = 2 * 1024 * 1024;

/// Run `f` on a thread with a tokio-sized stack.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(f)
        .map(|handle| handle.join())
    {
        Ok(Ok(value)) => value,
        _ => panic!("the analysis thread failed"),
    }
}

#[test]
fn ten_thousand_nested_parentheses_are_an_error_not_a_stack_overflow() {
    let outcome = on_worker_stack(|| {
        let sql = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let analyzer = Analyzer::new(Dialect::PostgreSql, 100, 1 << 20);
        let analysis = analyzer.analyze(&sql);
        (
            analysis.outcome.clone(),
            analysis.statements[0].kind.clone(),
        )
    });
    let Outcome::Unparseable { error } = outcome.0 else {
        panic!("deep nesting must not parse: {:?}", outcome.0)
    };
    assert!(error.contains("nested more deeply"), "{error}");
    assert_eq!(outcome.1, StatementKind::Unparsed);
}

#[test]
fn nesting_within_the_limit_parses() {
    let analyzer = Analyzer::new(Dialect::PostgreSql, 100, 1 << 20);
    let sql = format!("SELECT {}a{} FROM t", "(".repeat(20), ")".repeat(20));
    assert!(analyzer.analyze(&sql).is_understood());
}

#[test]
fn long_operator_chains_do_not_overflow_the_stack() {
    for operator in ["+", " OR ", " AND ", "||"] {
        for terms in [1_000usize, 4_000, 20_000] {
            let sql = format!(
                "SELECT * FROM t WHERE a = 1{}",
                format!("{operator}a = 1").repeat(terms)
            );
            let understood = on_worker_stack(move || {
                let analyzer = Analyzer::new(Dialect::PostgreSql, 100, 1 << 20);
                analyzer.analyze(&sql).is_understood()
            });
            if terms <= 1_000 {
                assert!(understood, "{terms} × {operator:?} should be analysed");
            }
        }
    }
}

#[test]
fn the_deepest_chain_allowed_is_walked_on_a_worker_stack() {
    for operator in ["+", " OR ", "||", " AND NOT "] {
        let sql = format!(
            "SELECT a{}",
            format!("{operator}a").repeat(Analyzer::MAX_OPERATORS / 2)
        );
        let understood = on_worker_stack(move || {
            let analyzer = Analyzer::new(Dialect::PostgreSql, 100, 1 << 20);
            analyzer.analyze(&sql).is_understood()
        });
        assert!(understood, "{operator:?}");
        let sql = format!("SELECT a{}", "+a".repeat(Analyzer::MAX_OPERATORS));
        let understood = on_worker_stack(move || {
            let analyzer = Analyzer::new(Dialect::PostgreSql, 100, 1 << 20);
            analyzer.analyze(&sql).is_understood()
        });
        assert!(understood, "exactly at the limit");
    }
}

#[test]
fn text_over_the_size_cap_is_not_parsed_and_shows_a_redacted_preview() {
    let analyzer = Analyzer::new(Dialect::PostgreSql, 100, 4096);
    let rows: Vec<String> = (0..2000).map(|i| format!("({i}, 'secret-{i}')")).collect();
    let sql = format!("INSERT INTO citizen (id, name) VALUES {}", rows.join(", "));
    let analysis = analyzer.analyze(&sql);
    assert_eq!(analysis.outcome, Outcome::TooLarge { bytes: sql.len() });
    assert!(
        analysis
            .redacted_sql
            .starts_with("INSERT INTO citizen (id, name) VALUES (?, ?)")
    );
    assert!(
        analysis
            .redacted_sql
            .ends_with(&format!("<{} bytes, not analysed>", sql.len()))
    );
    assert!(!analysis.redacted_sql.contains("secret"));
    assert_eq!(analysis.statements.len(), 1);
    assert_eq!(analysis.statements[0].kind, StatementKind::Unparsed);
    assert_eq!(analyzer.stats().entries, 0, "over-long text is not cached");
}

#[test]
fn preview_cut_inside_a_literal_hides_it() {
    let analyzer = Analyzer::new(Dialect::PostgreSql, 100, 100);
    let secret = "s".repeat(5000);
    let sql = format!("SELECT '{secret}' FROM t");
    let analysis = analyzer.analyze(&sql);
    assert!(
        !analysis.redacted_sql.contains("sss"),
        "{}",
        analysis.redacted_sql
    );
}

/// Text whose lexing cannot be trusted is shown only up to its first literal.
#[test]
fn opaque_text_hides_everything_from_the_first_literal() {
    let analyzer = Analyzer::new(Dialect::PostgreSql, 16, 1 << 20);
    let sql = r"SELECT * FROM t WHERE a = 'it\' OR secret = ''p4ss'' --' AND b = 7";
    let a = analyzer.opaque(sql, "standard_conforming_strings is off");
    assert!(!a.is_understood());
    assert!(
        a.redacted_sql.starts_with("SELECT * FROM t WHERE a = "),
        "{}",
        a.redacted_sql
    );
    assert!(!a.redacted_sql.contains("p4ss"), "{}", a.redacted_sql);
    assert!(!a.redacted_sql.contains("secret"), "{}", a.redacted_sql);
    assert_eq!(a.statements.len(), 1);
    assert_eq!(a.statements[0].redacted_sql, a.redacted_sql);
    assert!(a.statements[0].tables_read.is_empty());
}
