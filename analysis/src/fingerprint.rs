//! Statement fingerprints: one stable 64-bit value per statement *shape*.
//!
//! The firewall's learning mode (DLP-3) records the fingerprints each identity normally sends and
//! flags new ones; the audit log groups statements by them. Two statements share a fingerprint
//! when they differ only in:
//!
//! - literal values and bind placeholders (both become `?`; `aid = 5` and `aid = $1` match),
//! - whitespace and comments,
//! - the case of keywords and unquoted identifiers,
//! - a sign in front of a literal (`-1` and `1`),
//! - the length of an `IN (…)` list made only of values (`IN (1,2)` and `IN (1,2,3)`),
//! - repeated identical `VALUES` rows (a 1-row and a 500-row INSERT of the same shape).
//!
//! Quoted identifiers are kept with their quotes, so `"Users"` and `users` never collide.
//!
//! The hash is SM3 over a versioned, domain-separated encoding of the normalised tokens, truncated
//! to 64 bits: stable across processes, machines and releases (no per-process random keys), and
//! a learned fingerprint cannot be matched by a crafted statement of another shape short of a
//! 2^64 search (a non-cryptographic hash such as FNV would allow that). It is computed once per
//! cache entry, so its cost (well under a microsecond) is off the hit path.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sm3::{Digest, Sm3};
use sqlparser::keywords::Keyword;

use crate::dialect::Dialect;
use crate::template::{Lexeme, LexemeKind};

/// A statement fingerprint, shown as 16 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl From<Fingerprint> for String {
    fn from(fp: Fingerprint) -> String {
        fp.to_string()
    }
}

impl FromStr for Fingerprint {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Fingerprint)
    }
}

/// Domain separation and format version of the hashed encoding. Changing the normalisation
/// rules requires a new version, since learned fingerprints are stored.
const DOMAIN: &[u8] = b"warden.statement-fingerprint.v1\0";

/// One normalised token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Norm {
    Word(String, Keyword),
    Quoted(String),
    Value,
    LParen,
    RParen,
    Comma,
    SemiColon,
    Symbol(String),
    /// Stands for the rest of a collapsed `IN` list.
    More,
    /// Stands for the unread rest of a text that could not be tokenized to its end.
    Truncated,
}

impl Norm {
    fn text(&self) -> &str {
        match self {
            Norm::Word(s, _) | Norm::Quoted(s) | Norm::Symbol(s) => s,
            Norm::Value => "?",
            Norm::LParen => "(",
            Norm::RParen => ")",
            Norm::Comma => ",",
            Norm::SemiColon => ";",
            Norm::More => "...",
            Norm::Truncated => "\0truncated",
        }
    }

    fn is_keyword(&self, keyword: Keyword) -> bool {
        matches!(self, Norm::Word(_, k) if *k == keyword)
    }

    /// Whether this token can end an operand, so that a following `-` is a binary minus.
    fn ends_operand(&self) -> bool {
        match self {
            Norm::Value | Norm::RParen | Norm::Quoted(_) => true,
            Norm::Symbol(s) => s == "]",
            Norm::Word(_, keyword) => !EXPRESSION_STARTERS.contains(keyword),
            _ => false,
        }
    }
}

/// Keywords after which a `-` or `+` can only be a sign.
const EXPRESSION_STARTERS: &[Keyword] = &[
    Keyword::SELECT,
    Keyword::WHERE,
    Keyword::AND,
    Keyword::OR,
    Keyword::NOT,
    Keyword::WHEN,
    Keyword::THEN,
    Keyword::ELSE,
    Keyword::SET,
    Keyword::VALUES,
    Keyword::BY,
    Keyword::LIMIT,
    Keyword::OFFSET,
    Keyword::ON,
    Keyword::HAVING,
    Keyword::RETURNING,
    Keyword::BETWEEN,
    Keyword::IN,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::IS,
    Keyword::CASE,
    Keyword::RETURN,
    Keyword::INTERVAL,
    Keyword::ANY,
    Keyword::ALL,
    Keyword::SOME,
    Keyword::DISTINCT,
    Keyword::FETCH,
];

/// The fingerprint of one statement's lexemes.
pub(crate) fn fingerprint(sql: &str, lexemes: &[Lexeme], dialect: Dialect) -> Fingerprint {
    hash(&collapse_lists(fold_signs(normalize(
        sql, lexemes, dialect,
    ))))
}

/// The fingerprint of a text of which only a prefix could be read (`lexemes`): distinct from
/// the same prefix standing alone.
pub(crate) fn fingerprint_truncated(
    sql: &str,
    lexemes: &[Lexeme],
    dialect: Dialect,
) -> Fingerprint {
    let mut tokens = collapse_lists(fold_signs(normalize(sql, lexemes, dialect)));
    tokens.push(Norm::Truncated);
    hash(&tokens)
}

fn hash(tokens: &[Norm]) -> Fingerprint {
    let mut hasher = Sm3::new();
    hasher.update(DOMAIN);
    for token in tokens {
        hasher.update(token.text().as_bytes());
        hasher.update([0x1f]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    for (dst, src) in first.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    Fingerprint(u64::from_be_bytes(first))
}

fn normalize(sql: &str, lexemes: &[Lexeme], dialect: Dialect) -> Vec<Norm> {
    let fold = |s: &str| match dialect {
        Dialect::PostgreSql => s.to_ascii_lowercase(),
        Dialect::MySql { .. } => s.to_lowercase(),
    };
    lexemes
        .iter()
        .filter_map(|lexeme| {
            let text = sql.get(lexeme.start..lexeme.end).unwrap_or_default();
            Some(match lexeme.kind {
                LexemeKind::Space | LexemeKind::Comment => return None,
                LexemeKind::Word {
                    quote: None,
                    keyword,
                } => Norm::Word(fold(text), keyword),
                LexemeKind::Word { quote: Some(_), .. } => {
                    if dialect.folds_quoted_identifiers() {
                        Norm::Quoted(fold(text))
                    } else {
                        Norm::Quoted(text.to_string())
                    }
                }
                LexemeKind::Literal(_) | LexemeKind::Placeholder => Norm::Value,
                LexemeKind::SemiColon => Norm::SemiColon,
                LexemeKind::LParen => Norm::LParen,
                LexemeKind::RParen => Norm::RParen,
                LexemeKind::Comma => Norm::Comma,
                LexemeKind::Symbol | LexemeKind::Period => Norm::Symbol(text.to_string()),
            })
        })
        .collect()
}

/// Drop a `-` or `+` that is a sign in front of a value (`= -1` becomes `= ?`).
fn fold_signs(tokens: Vec<Norm>) -> Vec<Norm> {
    let mut out: Vec<Norm> = Vec::with_capacity(tokens.len());
    let mut iter = tokens.into_iter().peekable();
    while let Some(token) = iter.next() {
        let is_sign = matches!(&token, Norm::Symbol(s) if s == "-" || s == "+");
        if is_sign
            && iter.peek() == Some(&Norm::Value)
            && !out.last().is_some_and(Norm::ends_operand)
        {
            continue;
        }
        out.push(token);
    }
    out
}

/// Collapse `IN (?, ?, …)` to `IN (? ...)` and repeated identical `VALUES` rows to one.
fn collapse_lists(tokens: Vec<Norm>) -> Vec<Norm> {
    let mut out: Vec<Norm> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        if token.is_keyword(Keyword::IN)
            && let Some(end) = value_list_end(&tokens, i + 1)
        {
            out.extend([
                token.clone(),
                Norm::LParen,
                Norm::Value,
                Norm::More,
                Norm::RParen,
            ]);
            i = end;
            continue;
        }
        if token.is_keyword(Keyword::VALUES) {
            out.push(token.clone());
            i += 1;
            let mut previous: Option<&[Norm]> = None;
            while let Some(row_end) = group_end(&tokens, i) {
                let row = tokens.get(i..row_end).unwrap_or_default();
                if previous != Some(row) {
                    if previous.is_some() {
                        out.push(Norm::Comma);
                    }
                    out.extend_from_slice(row);
                    previous = Some(row);
                }
                i = row_end;
                if tokens.get(i) == Some(&Norm::Comma) && tokens.get(i + 1) == Some(&Norm::LParen) {
                    i += 1;
                } else {
                    break;
                }
            }
            continue;
        }
        out.push(token.clone());
        i += 1;
    }
    out
}

/// If `tokens[start..]` begins with `( value, value, … )`, the index after the `)`.
fn value_list_end(tokens: &[Norm], start: usize) -> Option<usize> {
    if tokens.get(start) != Some(&Norm::LParen) {
        return None;
    }
    let mut i = start + 1;
    loop {
        if tokens.get(i) != Some(&Norm::Value) {
            return None;
        }
        match tokens.get(i + 1) {
            Some(Norm::Comma) => i += 2,
            Some(Norm::RParen) => return Some(i + 2),
            _ => return None,
        }
    }
}

/// If `tokens[start..]` begins with a parenthesised group, the index after its closing `)`.
fn group_end(tokens: &[Norm], start: usize) -> Option<usize> {
    if tokens.get(start) != Some(&Norm::LParen) {
        return None;
    }
    let mut depth = 0usize;
    for (offset, token) in tokens.get(start..)?.iter().enumerate() {
        match token {
            Norm::LParen => depth += 1,
            Norm::RParen => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(start + offset + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::lex;

    fn fp(sql: &str) -> Fingerprint {
        fp_in(sql, Dialect::PostgreSql)
    }

    fn fp_in(sql: &str, dialect: Dialect) -> Fingerprint {
        match lex(sql, dialect) {
            Ok(lexed) => fingerprint(sql, &lexed.lexemes, dialect),
            Err(e) => panic!("{sql}: {}", e.message),
        }
    }

    #[test]
    fn literals_placeholders_case_whitespace_and_comments_do_not_matter() {
        let base = fp("SELECT abalance FROM pgbench_accounts WHERE aid = 48213");
        assert_eq!(
            base,
            fp("select  ABALANCE\nfrom pgbench_accounts /* x */ where aid=$1")
        );
        assert_eq!(
            base,
            fp("SELECT abalance FROM pgbench_accounts WHERE aid = -7 -- c")
        );
        assert_eq!(
            base,
            fp("SELECT abalance FROM pgbench_accounts WHERE aid = 'x'")
        );
    }

    #[test]
    fn shape_changes_matter() {
        let base = fp("SELECT abalance FROM pgbench_accounts WHERE aid = 1");
        assert_ne!(
            base,
            fp("SELECT abalance FROM pgbench_accounts WHERE aid > 1")
        );
        assert_ne!(
            base,
            fp("SELECT bbalance FROM pgbench_accounts WHERE aid = 1")
        );
        assert_ne!(
            base,
            fp("SELECT abalance FROM \"pgbench_accounts\" WHERE aid = 1")
        );
        assert_ne!(
            fp("SELECT a - 1 FROM t"),
            fp("SELECT a FROM t"),
            "a binary minus is not a sign"
        );
        assert_ne!(fp("SELECT 1 OR 1 = 1"), fp("SELECT 1"));
    }

    #[test]
    fn in_lists_and_values_rows_collapse() {
        assert_eq!(
            fp("SELECT * FROM t WHERE id IN (1, 2)"),
            fp("SELECT * FROM t WHERE id IN (1,2,3,$4)")
        );
        assert_eq!(
            fp("SELECT * FROM t WHERE id IN (1)"),
            fp("SELECT * FROM t WHERE id IN (7, 8)")
        );
        assert_ne!(
            fp("SELECT * FROM t WHERE id IN (1)"),
            fp("SELECT * FROM t WHERE id NOT IN (1)")
        );
        assert_ne!(
            fp("SELECT * FROM t WHERE id IN (1, 2)"),
            fp("SELECT * FROM t WHERE id IN (1, a)")
        );
        assert_eq!(
            fp("INSERT INTO t (a, b) VALUES (1, 'x')"),
            fp("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), ($1, $2)")
        );
        assert_ne!(
            fp("INSERT INTO t (a, b) VALUES (1, 'x')"),
            fp("INSERT INTO t (a, b) VALUES (1, 'x', 3)")
        );
        assert_ne!(
            fp("INSERT INTO t (a, b) VALUES (1, 'x')"),
            fp("INSERT INTO t (a, b) VALUES (1, 'x'), (2, now())")
        );
    }

    #[test]
    fn fingerprint_is_stable_across_releases() {
        // A learned fingerprint is stored; it must not change unless DOMAIN's version does.
        let pgbench = fp("SELECT abalance FROM pgbench_accounts WHERE aid = $1;");
        assert_eq!(pgbench.to_string().len(), 16);
        assert_eq!(
            pgbench.to_string().parse::<Fingerprint>().ok(),
            Some(pgbench)
        );
        assert_eq!(pgbench, Fingerprint(STABLE_PGBENCH_SELECT));
    }

    /// Recorded when the v1 encoding was written.
    const STABLE_PGBENCH_SELECT: u64 = 16_671_860_828_985_254_845;

    #[test]
    fn mysql_folds_quoted_identifiers() {
        let d = Dialect::MYSQL_DEFAULT;
        assert_eq!(
            fp_in("SELECT `A` FROM `T`", d),
            fp_in("select `a` from `t`", d)
        );
    }
}
