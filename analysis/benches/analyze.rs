//! Cost of `Analyzer::analyze`: cache hits (literals change, template repeats) and misses (full
//! tokenize + parse + walk + fingerprint), next to sqlparser's bare parse for reference.
//!
//! `cargo bench -p warden-analysis --bench analyze` (a release build; prints µs per call).

use std::hint::black_box;
use std::time::Instant;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use warden_analysis::{Analyzer, Dialect};

const ORM_JOIN: &str = "SELECT \"users\".\"id\" AS t0_r0, \"users\".\"email\" AS t0_r1, \"profiles\".\"id_card\" AS t1_r0, \"profiles\".\"phone\" AS t1_r1 FROM \"users\" LEFT OUTER JOIN \"profiles\" ON \"profiles\".\"user_id\" = \"users\".\"id\" WHERE \"users\".\"status\" = 'active' AND \"users\".\"created_at\" > '2024-01-01' AND \"profiles\".\"city\" IN ('Beijing', 'Shanghai') ORDER BY \"users\".\"id\" DESC LIMIT {n}";

/// Statements with a `{n}` slot that takes a different literal on every call.
const CASES: &[(&str, &str)] = &[
    (
        "pgbench select, literal",
        "SELECT abalance FROM pgbench_accounts WHERE aid = {n};",
    ),
    (
        "pgbench select, $1",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    ),
    (
        "pgbench update",
        "UPDATE pgbench_accounts SET abalance = abalance + {n} WHERE aid = $2;",
    ),
    (
        "pgbench insert",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, {n}, CURRENT_TIMESTAMP);",
    ),
    ("ORM join, 350 bytes", ORM_JOIN),
];

fn texts(shape: &str) -> Vec<String> {
    (0..1024)
        .map(|i| shape.replace("{n}", &(48_213 + i * 7919).to_string()))
        .collect()
}

fn per_call(iterations: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..iterations / 10 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    start.elapsed().as_secs_f64() * 1e6 / iterations as f64
}

fn main() {
    println!(
        "{:<26} {:>6} {:>12} {:>12} {:>14}",
        "statement", "bytes", "hit µs", "miss µs", "sqlparser µs"
    );
    for (name, shape) in CASES {
        let texts = texts(shape);
        let warm = Analyzer::new(Dialect::PostgreSql, 10_000, 64 * 1024);
        let hit = per_call(200_000, |i| {
            black_box(warm.analyze(&texts[i % texts.len()]));
        });
        let cold = Analyzer::new(Dialect::PostgreSql, 0, 64 * 1024);
        let miss = per_call(20_000, |i| {
            black_box(cold.analyze(&texts[i % texts.len()]));
        });
        let dialect = PostgreSqlDialect {};
        let parse = per_call(20_000, |i| {
            let _ = black_box(Parser::parse_sql(&dialect, &texts[i % texts.len()]));
        });
        println!(
            "{name:<26} {:>6} {hit:>12.2} {miss:>12.2} {parse:>14.2}",
            texts[0].len()
        );
        let stats = warm.stats();
        assert!(stats.entries == 1, "{name}: one template, {stats:?}");
    }
}
