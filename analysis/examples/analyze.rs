//! Print what Warden's statement analysis finds in the SQL given as arguments.
//!
//! `cargo run -p warden-analysis --example analyze -- [--mysql] 'SELECT …' ['…']`

use warden_analysis::{Analyzer, Dialect};

fn main() {
    let mut dialect = Dialect::PostgreSql;
    let analyzer_for = |d| Analyzer::new(d, 1000, 1 << 20);
    let mut texts = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--mysql" => dialect = Dialect::MYSQL_DEFAULT,
            _ => texts.push(arg),
        }
    }
    let analyzer = analyzer_for(dialect);
    for sql in texts {
        let analysis = analyzer.analyze(&sql);
        println!("redacted: {}", analysis.redacted_sql);
        println!("outcome:  {:?}", analysis.outcome);
        for (i, s) in analysis.statements.iter().enumerate() {
            let list = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(", ");
            println!("  [{i}] {} {} {}", s.kind, s.fingerprint, s.redacted_sql);
            println!(
                "      tables read:     {}",
                list(&mut s.tables_read.iter().map(|t| t.to_string()))
            );
            println!(
                "      tables written:  {}",
                list(&mut s.tables_written.iter().map(|t| t.to_string()))
            );
            println!(
                "      columns read:    {}",
                list(&mut s.columns_read.iter().map(|c| c.to_string()))
            );
            println!(
                "      columns written: {}",
                list(&mut s.columns_written.iter().map(|c| c.to_string()))
            );
            println!(
                "      where={} into={} copy={:?} opaque={}",
                s.has_where, s.select_into, s.copy_endpoint, s.opaque_names
            );
        }
    }
}
