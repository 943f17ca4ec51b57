//! Which SQL lexer and grammar a session speaks.
//!
//! A database session's dialect is not only "PostgreSQL" or "MySQL": MySQL's `sql_mode` changes how
//! the same bytes are *lexed* (`ANSI_QUOTES` turns `"x"` from a string into an identifier,
//! `NO_BACKSLASH_ESCAPES` makes `\` an ordinary character inside strings). Lexing decides what is a
//! literal, so it decides what redaction hides and what the cache shares. [`Dialect`] therefore
//! carries that session state, is part of every cache key, and is turned here into the sqlparser
//! dialect object that tokenizer and parser both use.
//!
//! sqlparser's `MySqlDialect` is static, so MySQL sessions use [`MySqlSession`], a thin wrapper that
//! reports itself as `MySqlDialect` (so every `dialect_of!(MySqlDialect)` check in sqlparser still
//! holds) and overrides only the lexing switches the session controls. It also switches off
//! sqlparser's expansion of `/*! … */` executable comments, whose tokens carry wrong source spans;
//! the template step blanks those comment markers itself instead (see `template.rs`).

use std::any::TypeId;

use sqlparser::ast::{Expr, Statement};
use sqlparser::dialect::{Dialect as SqlparserDialect, MySqlDialect, PostgreSqlDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};

/// The SQL dialect of a session, including the session settings that change lexing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL (and the openGauss / KingbaseES / GaussDB family), with
    /// `standard_conforming_strings = on` (the default since PostgreSQL 9.1).
    #[serde(rename = "postgresql")]
    PostgreSql,
    /// MySQL / MariaDB (and the OceanBase / TiDB / GoldenDB family).
    #[serde(rename = "mysql")]
    MySql {
        /// `sql_mode` contains `ANSI_QUOTES`: `"x"` is an identifier, not a string.
        ansi_quotes: bool,
        /// `sql_mode` contains `NO_BACKSLASH_ESCAPES`: `\` does not escape inside strings.
        no_backslash_escapes: bool,
    },
}

impl Dialect {
    /// MySQL with the server's default `sql_mode` lexing (no `ANSI_QUOTES`, backslash escapes on).
    pub const MYSQL_DEFAULT: Dialect = Dialect::MySql {
        ansi_quotes: false,
        no_backslash_escapes: false,
    };

    /// A short stable label for logs and metrics: `"postgresql"` or `"mysql"`.
    pub fn family(self) -> &'static str {
        match self {
            Dialect::PostgreSql => "postgresql",
            Dialect::MySql { .. } => "mysql",
        }
    }

    /// One byte that identifies the dialect and its lexing switches inside a cache key.
    pub(crate) fn key_byte(self) -> u8 {
        match self {
            Dialect::PostgreSql => b'P',
            Dialect::MySql {
                ansi_quotes,
                no_backslash_escapes,
            } => b'm' + u8::from(ansi_quotes) + 2 * u8::from(no_backslash_escapes),
        }
    }

    /// Whether unquoted identifiers fold to lower case and quoted ones keep their case
    /// (PostgreSQL), or every identifier compares case-insensitively (MySQL; see `names.rs`).
    pub(crate) fn folds_quoted_identifiers(self) -> bool {
        matches!(self, Dialect::MySql { .. })
    }

    /// Whether `/*! … */` (and MariaDB's `/*M! … */`) comments are executed as code.
    pub(crate) fn has_executable_comments(self) -> bool {
        matches!(self, Dialect::MySql { .. })
    }

    /// Whether a double-quoted token is a string literal rather than an identifier.
    pub(crate) fn double_quote_is_string(self) -> bool {
        matches!(
            self,
            Dialect::MySql {
                ansi_quotes: false,
                ..
            }
        )
    }

    /// Runs `f` with the sqlparser dialect this session's text is tokenized and parsed in, for
    /// other crates that walk the same text (column encryption's planner) and must read it
    /// exactly as the analyser does.
    pub fn with_sqlparser<R>(self, f: impl FnOnce(&dyn SqlparserDialect) -> R) -> R {
        f(self.sqlparser().as_dyn())
    }

    /// The sqlparser dialect object that tokenizer and parser share for this session.
    pub(crate) fn sqlparser(self) -> SessionDialect {
        match self {
            Dialect::PostgreSql => SessionDialect::PostgreSql(PostgreSqlDialect {}),
            Dialect::MySql {
                ansi_quotes,
                no_backslash_escapes,
            } => SessionDialect::MySql(MySqlSession {
                inner: MySqlDialect {},
                ansi_quotes,
                no_backslash_escapes,
            }),
        }
    }
}

/// The concrete sqlparser dialect of a session, held by value so no allocation is needed.
#[derive(Debug)]
pub(crate) enum SessionDialect {
    PostgreSql(PostgreSqlDialect),
    MySql(MySqlSession),
}

impl SessionDialect {
    pub(crate) fn as_dyn(&self) -> &dyn SqlparserDialect {
        match self {
            SessionDialect::PostgreSql(d) => d,
            SessionDialect::MySql(d) => d,
        }
    }
}

/// sqlparser's `MySqlDialect` with the session's lexing modes applied.
///
/// Every method that `MySqlDialect` overrides in sqlparser 0.63 is forwarded here; the trait's
/// defaults cover the rest, exactly as they do for `MySqlDialect` itself. The test
/// `mysql_session_matches_stock_dialect` checks that a default session tokenizes and parses a
/// corpus exactly as the stock dialect does, so an upgrade that adds an override shows up there.
#[derive(Debug)]
pub(crate) struct MySqlSession {
    inner: MySqlDialect,
    ansi_quotes: bool,
    no_backslash_escapes: bool,
}

impl SqlparserDialect for MySqlSession {
    fn dialect(&self) -> TypeId {
        TypeId::of::<MySqlDialect>()
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        self.inner.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        self.inner.is_identifier_part(ch)
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_delimited_identifier_start(ch) || (self.ansi_quotes && ch == '"')
    }
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.inner.identifier_quote_style(identifier)
    }
    fn supports_string_literal_backslash_escape(&self) -> bool {
        !self.no_backslash_escapes && self.inner.supports_string_literal_backslash_escape()
    }
    fn supports_string_literal_concatenation(&self) -> bool {
        self.inner.supports_string_literal_concatenation()
    }
    fn ignores_wildcard_escapes(&self) -> bool {
        self.inner.ignores_wildcard_escapes()
    }
    fn supports_numeric_prefix(&self) -> bool {
        self.inner.supports_numeric_prefix()
    }
    fn supports_bitwise_shift_operators(&self) -> bool {
        self.inner.supports_bitwise_shift_operators()
    }
    fn supports_multiline_comment_hints(&self) -> bool {
        // Handled by the template step, which keeps source positions exact.
        false
    }
    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        self.inner.parse_infix(parser, expr, precedence)
    }
    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        self.inner.parse_statement(parser)
    }
    fn require_interval_qualifier(&self) -> bool {
        self.inner.require_interval_qualifier()
    }
    fn supports_limit_comma(&self) -> bool {
        self.inner.supports_limit_comma()
    }
    fn supports_create_table_select(&self) -> bool {
        self.inner.supports_create_table_select()
    }
    fn supports_insert_set(&self) -> bool {
        self.inner.supports_insert_set()
    }
    fn supports_user_host_grantee(&self) -> bool {
        self.inner.supports_user_host_grantee()
    }
    fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_table_factor_alias(explicit, kw, parser)
    }
    fn supports_table_hints(&self) -> bool {
        self.inner.supports_table_hints()
    }
    fn requires_single_line_comment_whitespace(&self) -> bool {
        self.inner.requires_single_line_comment_whitespace()
    }
    fn supports_match_against(&self) -> bool {
        self.inner.supports_match_against()
    }
    fn supports_select_modifiers(&self) -> bool {
        self.inner.supports_select_modifiers()
    }
    fn supports_set_names(&self) -> bool {
        self.inner.supports_set_names()
    }
    fn supports_comma_separated_set_assignments(&self) -> bool {
        self.inner.supports_comma_separated_set_assignments()
    }
    fn supports_update_order_by(&self) -> bool {
        self.inner.supports_update_order_by()
    }
    fn supports_data_type_signed_suffix(&self) -> bool {
        self.inner.supports_data_type_signed_suffix()
    }
    fn supports_cross_join_constraint(&self) -> bool {
        self.inner.supports_cross_join_constraint()
    }
    fn supports_double_ampersand_operator(&self) -> bool {
        self.inner.supports_double_ampersand_operator()
    }
    fn supports_binary_kw_as_cast(&self) -> bool {
        self.inner.supports_binary_kw_as_cast()
    }
    fn supports_comment_optimizer_hint(&self) -> bool {
        self.inner.supports_comment_optimizer_hint()
    }
    fn supports_constraint_keyword_without_name(&self) -> bool {
        self.inner.supports_constraint_keyword_without_name()
    }
    fn supports_key_column_option(&self) -> bool {
        self.inner.supports_key_column_option()
    }
    fn supports_group_by_with_modifier(&self) -> bool {
        self.inner.supports_group_by_with_modifier()
    }
    fn supports_left_associative_joins_without_parens(&self) -> bool {
        self.inner.supports_left_associative_joins_without_parens()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::tokenizer::Tokenizer;

    const CORPUS: &[&str] = &[
        "SELECT `a`, 'b\\'c', \"d\", 0x1F, b'01', x'ff', 1--1\n# hash\n, @v, ? FROM t WHERE a DIV 2 = 1",
        "INSERT INTO t SET a = 1, b = 'x' ON DUPLICATE KEY UPDATE a = VALUES(a)",
        "LOCK TABLES t READ, u WRITE",
        "UNLOCK TABLES",
        "UPDATE t SET a = 1 ORDER BY b LIMIT 3",
        "SELECT SQL_NO_CACHE a FROM t USE INDEX (i) WHERE MATCH (a) AGAINST ('x')",
        "SELECT a FROM t LIMIT 1, 2",
        "CREATE TABLE t (a INT UNSIGNED NOT NULL KEY, b VARCHAR(10)) SELECT 1",
        "SELECT /*+ NO_INDEX(t) */ a FROM t WHERE a << 2 && b",
        "SELECT CAST(a AS SIGNED), BINARY 'x', INTERVAL 1 DAY + d FROM t",
    ];

    #[test]
    fn mysql_session_matches_stock_dialect() {
        let stock = MySqlDialect {};
        let session = Dialect::MYSQL_DEFAULT.sqlparser();
        for sql in CORPUS {
            let a = Tokenizer::new(&stock, sql).tokenize_with_location();
            let b = Tokenizer::new(session.as_dyn(), sql).tokenize_with_location();
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "tokens differ for {sql}"
            );
            let a = Parser::parse_sql(&stock, sql);
            let b = Parser::parse_sql(session.as_dyn(), sql);
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "parse differs for {sql}"
            );
        }
    }

    #[test]
    fn ansi_quotes_makes_double_quotes_identifiers() {
        let d = Dialect::MySql {
            ansi_quotes: true,
            no_backslash_escapes: false,
        }
        .sqlparser();
        let tokens = Tokenizer::new(d.as_dyn(), "\"a\"")
            .tokenize()
            .unwrap_or_default();
        assert!(
            matches!(tokens.first(), Some(sqlparser::tokenizer::Token::Word(w)) if w.quote_style == Some('"'))
        );
        let d = Dialect::MYSQL_DEFAULT.sqlparser();
        let tokens = Tokenizer::new(d.as_dyn(), "\"a\"")
            .tokenize()
            .unwrap_or_default();
        assert!(matches!(
            tokens.first(),
            Some(sqlparser::tokenizer::Token::DoubleQuotedString(_))
        ));
    }

    #[test]
    fn no_backslash_escapes_ends_string_at_backslash_quote() {
        let d = Dialect::MySql {
            ansi_quotes: false,
            no_backslash_escapes: true,
        }
        .sqlparser();
        let tokens = Tokenizer::new(d.as_dyn(), r"'a\' 'b'")
            .tokenize()
            .unwrap_or_default();
        let strings = tokens
            .iter()
            .filter(|t| matches!(t, sqlparser::tokenizer::Token::SingleQuotedString(_)))
            .count();
        assert_eq!(strings, 2);
    }

    #[test]
    fn key_bytes_are_distinct() {
        let all = [
            Dialect::PostgreSql,
            Dialect::MySql {
                ansi_quotes: false,
                no_backslash_escapes: false,
            },
            Dialect::MySql {
                ansi_quotes: true,
                no_backslash_escapes: false,
            },
            Dialect::MySql {
                ansi_quotes: false,
                no_backslash_escapes: true,
            },
            Dialect::MySql {
                ansi_quotes: true,
                no_backslash_escapes: true,
            },
        ];
        let mut bytes: Vec<u8> = all.iter().map(|d| d.key_byte()).collect();
        bytes.sort_unstable();
        bytes.dedup();
        assert_eq!(bytes.len(), all.len());
    }
}
