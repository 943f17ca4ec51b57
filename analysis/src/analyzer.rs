//! The entry point: SQL text in, shared [`Analysis`] out.
//!
//! The proxy calls [`Analyzer::analyze`] for every Query and Parse message on its tokio workers,
//! so the call is synchronous, never panics, takes `&self`, and is cheap when the statement's
//! template has been seen before (the common case: applications send few statement shapes with
//! changing literals). The steps:
//!
//! 1. texts over `max_sql_bytes` get a [`Outcome::TooLarge`] analysis with a redacted preview;
//! 2. tokenize and build the template (`template.rs`); an unreadable text is redacted
//!    conservatively (`redact.rs`) and reported as unparseable;
//! 3. look the template up in the cache (`cache.rs`);
//! 4. on a miss, parse with sqlparser (recursion-limited), walk each statement (`walker.rs`),
//!    fingerprint it (`fingerprint.rs`), and cache the result.

use std::sync::Arc;

use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::cache::{CacheStats, TemplateCache};
use crate::dialect::Dialect;
use crate::facts::{Analysis, Outcome, StatementFacts};
use crate::fingerprint;
use crate::kind::StatementKind;
use crate::redact;
use crate::template::{self, Lexed, Lexeme, LexemeKind};
use crate::walker;

/// Statement analysis with a bounded cache, shared by all sessions of a proxy.
pub struct Analyzer {
    dialect: Dialect,
    cache: TemplateCache,
    max_sql_bytes: usize,
    recursion_limit: usize,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("dialect", &self.dialect)
            .field("max_entries", &self.cache.max_entries())
            .field("max_sql_bytes", &self.max_sql_bytes)
            .field("recursion_limit", &self.recursion_limit)
            .finish()
    }
}

impl Analyzer {
    /// sqlparser's own default nesting limit.
    pub const DEFAULT_RECURSION_LIMIT: usize = 50;
    /// Default memory budget per cache entry, used to derive the cache's byte budget.
    pub const DEFAULT_BYTES_PER_ENTRY: usize = 4 * 1024;
    /// How much of an over-long text is tokenized to show a redacted preview.
    pub const TOO_LARGE_PREVIEW_BYTES: usize = 1024;
    /// More operators than this in one text are not parsed: sqlparser builds `a + b + c …` and
    /// `x OR y OR …` chains as trees as deep as the chain, and walking or dropping such a tree
    /// recurses once per level, which could overflow a 2 MiB worker stack. PostgreSQL's own
    /// limits are higher; such text is reported as unparseable.
    pub const MAX_OPERATORS: usize = 4096;

    /// An analyzer for sessions in `dialect`, caching at most `capacity` templates (memory budget
    /// `capacity × DEFAULT_BYTES_PER_ENTRY`), analysing texts of at most `max_sql_bytes` bytes.
    pub fn new(dialect: Dialect, capacity: usize, max_sql_bytes: usize) -> Analyzer {
        Analyzer::with_limits(
            dialect,
            capacity,
            capacity.saturating_mul(Self::DEFAULT_BYTES_PER_ENTRY),
            max_sql_bytes,
        )
    }

    /// As [`new`](Self::new), with an explicit cache memory budget in bytes.
    pub fn with_limits(
        dialect: Dialect,
        capacity: usize,
        cache_bytes: usize,
        max_sql_bytes: usize,
    ) -> Analyzer {
        Analyzer {
            dialect,
            cache: TemplateCache::new(capacity, cache_bytes),
            max_sql_bytes,
            recursion_limit: Self::DEFAULT_RECURSION_LIMIT,
        }
    }

    /// Change the parser's nesting limit (default [`DEFAULT_RECURSION_LIMIT`](Self::DEFAULT_RECURSION_LIMIT)).
    pub fn with_recursion_limit(mut self, limit: usize) -> Analyzer {
        self.recursion_limit = limit;
        self
    }

    /// The dialect [`analyze`](Self::analyze) uses.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Cache counters, for metrics.
    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Analyse `sql` in the analyzer's dialect.
    pub fn analyze(&self, sql: &str) -> Arc<Analysis> {
        self.analyze_in(self.dialect, sql)
    }

    /// Analyse `sql` in `dialect`: for sessions whose lexing settings differ from the default
    /// (MySQL `sql_mode`). The cache is keyed by dialect too.
    pub fn analyze_in(&self, dialect: Dialect, sql: &str) -> Arc<Analysis> {
        if sql.len() > self.max_sql_bytes {
            return Arc::new(too_large(sql, dialect));
        }
        let lexed = match template::lex(sql, dialect) {
            Ok(lexed) => lexed,
            Err(unlexable) => {
                let error = redact::tokenizer_message(&unlexable.message);
                let redacted = redact::with_hidden_rest(sql, &unlexable.lexemes);
                return Arc::new(unreadable(
                    sql,
                    dialect,
                    &unlexable.lexemes,
                    redacted,
                    error,
                ));
            }
        };
        if let Some(found) = self.cache.get(&lexed.key) {
            return found;
        }
        let key = lexed.key.clone();
        let analysis = Arc::new(self.parse(sql, dialect, lexed));
        self.cache.insert(&key, Arc::clone(&analysis));
        analysis
    }

    /// An analysis that trusts nothing after the first quoted literal: for text whose lexing
    /// warden cannot follow (a PostgreSQL session with `standard_conforming_strings = off`,
    /// where a backslash may escape a quote). The text is reported unparseable with `reason`,
    /// and its redacted form shows only what comes before the first literal. Not cached.
    pub fn opaque(&self, sql: &str, reason: &str) -> Arc<Analysis> {
        self.opaque_in(self.dialect, sql, reason)
    }

    /// [`Analyzer::opaque`] for text lexed the way `dialect` lexes it. For a MySQL session
    /// whose `sql_mode` is unknown, pass the default MySQL dialect: it reads both quote kinds
    /// as strings, so redaction starts at the first quote of either kind.
    pub fn opaque_in(&self, dialect: Dialect, sql: &str, reason: &str) -> Arc<Analysis> {
        let lexemes = match template::lex(sql, dialect) {
            Ok(lexed) => lexed.lexemes,
            Err(unlexable) => unlexable.lexemes,
        };
        let first_literal = lexemes
            .iter()
            .position(|l| matches!(l.kind, template::LexemeKind::Literal(_)))
            .unwrap_or(lexemes.len());
        let read = &lexemes[..first_literal];
        let redacted = redact::with_hidden_rest(sql, read);
        let mut analysis = unreadable(sql, dialect, read, redacted, reason.to_string());
        if let Some(entry) = analysis.statements.first_mut() {
            entry.redacted_sql = analysis.redacted_sql.clone();
        }
        Arc::new(analysis)
    }

    /// The cache-miss path: parse the statements one by one and collect their facts.
    fn parse(&self, sql: &str, dialect: Dialect, lexed: Lexed) -> Analysis {
        let Lexed {
            lexemes, tokens, ..
        } = lexed;
        let redacted_sql = template::redact(sql, &lexemes);
        let operators = lexemes.iter().filter(|l| is_operator(l)).count();
        if operators > Self::MAX_OPERATORS {
            let error = format!(
                "{operators} operators: more than the {} Warden analyses",
                Self::MAX_OPERATORS
            );
            let statements = vec![unparsed(sql, &lexemes, dialect, false)];
            return Analysis {
                dialect,
                redacted_sql,
                outcome: Outcome::Unparseable { error },
                statements,
            };
        }

        let session = dialect.sqlparser();
        let mut parser = Parser::new(session.as_dyn())
            .with_recursion_limit(self.recursion_limit)
            .with_tokens_with_locations(tokens);
        let mut statements = Vec::new();
        let mut failure = None;
        loop {
            while parser.consume_token(&Token::SemiColon) {}
            if parser.peek_token_ref().token == Token::EOF {
                break;
            }
            let start = parser.index();
            let rest = lexemes.get(start..).unwrap_or_default();
            match parser.parse_statement() {
                Ok(statement) => {
                    let end = parser.index();
                    let next = &parser.peek_token_ref().token;
                    if *next != Token::SemiColon && *next != Token::EOF {
                        failure = Some("expected the end of the statement".to_string());
                        statements.push(unparsed(sql, rest, dialect, false));
                        break;
                    }
                    let own = lexemes.get(start..end).unwrap_or_default();
                    statements.push(statement_facts(sql, own, dialect, &statement));
                }
                Err(error) => {
                    failure = Some(redact::parser_error(
                        &error,
                        sql,
                        &lexemes,
                        dialect,
                        self.recursion_limit,
                    ));
                    statements.push(unparsed(sql, rest, dialect, false));
                    break;
                }
            }
        }
        Analysis {
            dialect,
            redacted_sql,
            outcome: match failure {
                None => Outcome::Parsed,
                Some(error) => Outcome::Unparseable { error },
            },
            statements,
        }
    }
}

/// Operators that make expression trees deeper (see [`Analyzer::MAX_OPERATORS`]).
fn is_operator(lexeme: &Lexeme) -> bool {
    match lexeme.kind {
        LexemeKind::Symbol => true,
        LexemeKind::Word {
            quote: None,
            keyword,
        } => {
            matches!(
                keyword,
                Keyword::AND | Keyword::OR | Keyword::NOT | Keyword::IS | Keyword::LIKE
            )
        }
        _ => false,
    }
}

fn statement_facts(
    sql: &str,
    lexemes: &[Lexeme],
    dialect: Dialect,
    statement: &sqlparser::ast::Statement,
) -> StatementFacts {
    let walked = walker::walk(statement, dialect);
    StatementFacts {
        kind: StatementKind::of(statement),
        redacted_sql: template::redact(sql, lexemes),
        fingerprint: fingerprint::fingerprint(sql, lexemes, dialect),
        tables_read: walked.tables_read.into_iter().collect(),
        tables_written: walked.tables_written.into_iter().collect(),
        columns_read: walked.columns_read.into_iter().collect(),
        columns_written: walked.columns_written.into_iter().collect(),
        has_where: walked.has_where,
        select_into: walked.select_into,
        copy_endpoint: walked.copy_endpoint,
        opaque_names: walked.opaque_names,
    }
}

/// The entry for text that was not parsed. `truncated` marks a text whose lexemes stop before
/// its end (unreadable or too large), which gives it a different fingerprint from the same prefix
/// standing alone.
fn unparsed(sql: &str, lexemes: &[Lexeme], dialect: Dialect, truncated: bool) -> StatementFacts {
    let redacted_sql = if truncated {
        redact::with_hidden_rest(sql, lexemes)
    } else {
        template::redact(sql, lexemes)
    };
    let fingerprint = if truncated {
        fingerprint::fingerprint_truncated(sql, lexemes, dialect)
    } else {
        fingerprint::fingerprint(sql, lexemes, dialect)
    };
    StatementFacts {
        kind: StatementKind::Unparsed,
        redacted_sql,
        fingerprint,
        tables_read: Vec::new(),
        tables_written: Vec::new(),
        columns_read: Vec::new(),
        columns_written: Vec::new(),
        has_where: false,
        select_into: false,
        copy_endpoint: None,
        opaque_names: false,
    }
}

fn unreadable(
    sql: &str,
    dialect: Dialect,
    read: &[Lexeme],
    redacted_sql: String,
    error: String,
) -> Analysis {
    Analysis {
        dialect,
        redacted_sql,
        outcome: Outcome::Unparseable { error },
        statements: vec![unparsed(sql, read, dialect, true)],
    }
}

fn too_large(sql: &str, dialect: Dialect) -> Analysis {
    let mut cut = Analyzer::TOO_LARGE_PREVIEW_BYTES.min(sql.len());
    while !sql.is_char_boundary(cut) {
        cut -= 1;
    }
    let preview = sql.get(..cut).unwrap_or_default();
    let read = match template::lex(preview, dialect) {
        Ok(lexed) => lexed.lexemes,
        Err(unlexable) => unlexable.lexemes,
    };
    // The preview's last token may be cut short; drop it rather than show half a word.
    let read = match read.split_last() {
        Some((_, rest)) if cut < sql.len() => rest,
        _ => read.as_slice(),
    };
    let redacted_sql = format!(
        "{} <{} bytes, not analysed>",
        template::redact(sql, read),
        sql.len()
    );
    let mut entry = unparsed(sql, read, dialect, true);
    entry.redacted_sql = redacted_sql.clone();
    Analysis {
        dialect,
        redacted_sql,
        outcome: Outcome::TooLarge { bytes: sql.len() },
        statements: vec![entry],
    }
}
