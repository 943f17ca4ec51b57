//! Redaction where the template cannot be built: unreadable text, over-long text, error messages.
//!
//! The audit log must never receive a literal. When the tokenizer cannot read a text to its end
//! (an unterminated quote, dollar quote or comment), the tokens read before the failure are
//! redacted as usual and *everything* from the failure on is replaced by a `<N bytes not shown>`
//! marker, so an unterminated `'secret…` can never appear. Texts longer than the analyser's limit
//! get the same treatment after a short preview.
//!
//! sqlparser's error messages quote the offending token (`found: 'secret'`) and its position
//! (which moves with literal lengths); both would leak literals and break the cache invariant.
//! [`parser_error`] strips the position and every literal's text from the message.

use sqlparser::parser::ParserError;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::dialect::Dialect;
use crate::template::{self, Lexeme, LexemeKind};

/// The redacted form of a text whose lexemes cover only `read` (a prefix): the prefix's template
/// followed by a marker for the rest.
pub(crate) fn with_hidden_rest(sql: &str, read: &[Lexeme]) -> String {
    let shown_end = read.last().map_or(0, |l| l.end);
    let hidden = sql.len().saturating_sub(shown_end);
    let shown = template::redact(sql, read);
    match (shown.is_empty(), hidden) {
        (_, 0) => shown,
        (true, _) => format!("<{hidden} bytes not shown>"),
        (false, _) => format!("{shown} <{hidden} bytes not shown>"),
    }
}

/// A tokenizer message without its position or any quoted detail after a colon.
pub(crate) fn tokenizer_message(message: &str) -> String {
    let message = strip_location(message);
    let head = message.split(':').next().unwrap_or_default().trim();
    format!("cannot tokenize: {head}")
}

/// A parser error in words, with no literal text and no source position.
pub(crate) fn parser_error(
    error: &ParserError,
    sql: &str,
    lexemes: &[Lexeme],
    dialect: Dialect,
    recursion_limit: usize,
) -> String {
    let message = match error {
        ParserError::RecursionLimitExceeded => {
            return format!("nested more deeply than the parser's limit of {recursion_limit}");
        }
        ParserError::TokenizerError(message) => return tokenizer_message(message),
        ParserError::ParserError(message) => strip_location(message),
    };
    scrub_literals(message, sql, lexemes, dialect)
}

/// Remove sqlparser's ` at Line: N, Column: M` suffix.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at Line: ") {
        Some(at) => message.get(..at).unwrap_or(message),
        None => message,
    }
}

/// Replace every form in which a literal of the text could appear in `message` by `?`.
fn scrub_literals(message: &str, sql: &str, lexemes: &[Lexeme], dialect: Dialect) -> String {
    let mut forms: Vec<String> = Vec::new();
    for lexeme in lexemes {
        if matches!(lexeme.kind, LexemeKind::Literal(_))
            && let Some(raw) = sql.get(lexeme.start..lexeme.end)
        {
            forms.push(raw.to_string());
        }
    }
    if forms.is_empty() {
        return message.to_string();
    }
    // The parser prints tokens and AST fragments in their unescaped display form, and may quote
    // a literal's bare content; collect those too (only on this error path).
    let session = dialect.sqlparser();
    let tokens = Tokenizer::new(session.as_dyn(), sql)
        .tokenize()
        .unwrap_or_default();
    let mut contents: Vec<String> = Vec::new();
    for token in &tokens {
        if let Some(content) = literal_content(token) {
            forms.push(token.to_string());
            contents.push(content.to_string());
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut scrubbed = message.to_string();
    for form in &forms {
        scrubbed = replace_whole(&scrubbed, form);
    }
    let leaks = contents
        .iter()
        .any(|c| c.chars().count() >= 3 && scrubbed.contains(c.as_str()));
    if leaks {
        "sqlparser rejected the statement (its message quoted a literal and is withheld)"
            .to_string()
    } else {
        scrubbed
    }
}

/// The text content of a literal token.
fn literal_content(token: &Token) -> Option<&str> {
    Some(match token {
        Token::Number(s, _)
        | Token::SingleQuotedString(s)
        | Token::DoubleQuotedString(s)
        | Token::TripleSingleQuotedString(s)
        | Token::TripleDoubleQuotedString(s)
        | Token::SingleQuotedByteStringLiteral(s)
        | Token::DoubleQuotedByteStringLiteral(s)
        | Token::TripleSingleQuotedByteStringLiteral(s)
        | Token::TripleDoubleQuotedByteStringLiteral(s)
        | Token::SingleQuotedRawStringLiteral(s)
        | Token::DoubleQuotedRawStringLiteral(s)
        | Token::TripleSingleQuotedRawStringLiteral(s)
        | Token::TripleDoubleQuotedRawStringLiteral(s)
        | Token::NationalStringLiteral(s)
        | Token::EscapedStringLiteral(s)
        | Token::UnicodeStringLiteral(s)
        | Token::HexStringLiteral(s) => s,
        Token::DollarQuotedString(s) => &s.value,
        Token::QuoteDelimitedStringLiteral(s) | Token::NationalQuoteDelimitedStringLiteral(s) => {
            &s.value
        }
        _ => return None,
    })
}

/// Replace occurrences of `form` that are not part of a longer word.
fn replace_whole(text: &str, form: &str) -> String {
    if form.is_empty() {
        return text.to_string();
    }
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(form) {
        let before = rest.get(..at).unwrap_or_default();
        let after = rest.get(at + form.len()..).unwrap_or_default();
        let starts_word = form.chars().next().is_some_and(|c| c.is_alphanumeric());
        let ends_word = form.chars().last().is_some_and(|c| c.is_alphanumeric());
        let glued = (starts_word && is_word(before.chars().last()))
            || (ends_word && is_word(after.chars().next()));
        out.push_str(before);
        out.push_str(if glued { form } else { "?" });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::lex;

    #[test]
    fn unreadable_rest_is_hidden() {
        let sql = "SELECT a FROM t WHERE b = 1 AND c = 'secret";
        let Err(unlexable) = lex(sql, Dialect::PostgreSql) else {
            panic!("must not tokenize")
        };
        let shown = with_hidden_rest(sql, &unlexable.lexemes);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.starts_with("SELECT a FROM t WHERE b = ? AND c ="),
            "{shown}"
        );
        assert!(shown.ends_with("bytes not shown>"), "{shown}");
    }

    #[test]
    fn replace_whole_respects_word_boundaries() {
        assert_eq!(replace_whole("found: 1, u64", "1"), "found: ?, u64");
        assert_eq!(replace_whole("found: 'x'", "'x'"), "found: ?");
    }

    #[test]
    fn tokenizer_details_after_colon_are_dropped() {
        assert_eq!(
            tokenizer_message(
                "Invalid hex digit in escaped unicode string: Z at Line: 1, Column: 9"
            ),
            "cannot tokenize: Invalid hex digit in escaped unicode string"
        );
    }
}
