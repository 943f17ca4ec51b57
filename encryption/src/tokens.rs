//! Tokens with byte offsets: where the planner finds literals and the rewriter splices.

use sqlparser::tokenizer::{Location, Token, Tokenizer};
use warden_analysis::Dialect;

/// One token and its byte range in the text.
#[derive(Debug, Clone)]
pub(crate) struct Tok {
    pub token: Token,
    pub start: usize,
    pub end: usize,
    pub location: (u64, u64),
}

/// Tokenizes `sql` as the session's dialect does (the same lexer the analyser uses).
pub(crate) fn lex(sql: &str, dialect: Dialect) -> Result<Vec<Tok>, String> {
    let tokens = dialect
        .with_sqlparser(|d| Tokenizer::new(d, sql).tokenize_with_location())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(tokens.len());
    // Walk the text once, converting (line, column-in-characters) to byte offsets.
    let mut line = 1u64;
    let mut col = 1u64;
    let mut chars = sql.char_indices().peekable();
    let mut offset_of = |target: Location| -> usize {
        while (line, col) < (target.line, target.column) {
            match chars.next() {
                Some((_, '\n')) => {
                    line += 1;
                    col = 1;
                }
                Some(_) => col += 1,
                None => return sql.len(),
            }
        }
        chars.peek().map_or(sql.len(), |(i, _)| *i)
    };
    for t in &tokens {
        if matches!(t.token, Token::EOF) {
            continue;
        }
        let start = offset_of(t.span.start);
        out.push(Tok {
            token: t.token.clone(),
            start,
            end: start,
            location: (t.span.start.line, t.span.start.column),
        });
    }
    for i in 0..out.len() {
        out[i].end = out.get(i + 1).map_or(sql.len(), |n| n.start);
    }
    // Trailing whitespace belongs to no token; trim each token's end to its own text where it
    // is whitespace-free (only literal and word tokens are ever spliced).
    for t in &mut out {
        if !matches!(t.token, Token::Whitespace(_)) {
            let text = &sql[t.start..t.end];
            t.end = t.start + text.trim_end().len();
        }
    }
    Ok(out)
}

/// The decoded text of a literal token, if it is one.
pub(crate) fn literal_text(token: &Token) -> Option<&str> {
    match token {
        Token::Number(s, _) => Some(s),
        Token::SingleQuotedString(s)
        | Token::DoubleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::NationalStringLiteral(s)
        | Token::UnicodeStringLiteral(s) => Some(s),
        Token::DollarQuotedString(d) => Some(&d.value),
        _ => None,
    }
}

/// Whether a word can be part of a type name written around a literal (`DATE '…'`,
/// `'…'::timestamp without time zone`, `numeric(12, 2)`).
pub(crate) fn is_type_word(token: &Token) -> bool {
    let Token::Word(w) = token else { return false };
    if w.quote_style.is_some() {
        return false;
    }
    matches!(
        w.value.to_ascii_lowercase().as_str(),
        "date"
            | "timestamp"
            | "time"
            | "with"
            | "without"
            | "zone"
            | "text"
            | "varchar"
            | "character"
            | "varying"
            | "char"
            | "bpchar"
            | "numeric"
            | "decimal"
            | "int"
            | "int2"
            | "int4"
            | "int8"
            | "integer"
            | "smallint"
            | "bigint"
            | "pg_catalog"
    )
}
