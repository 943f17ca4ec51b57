//! The literal-free template of a SQL text: the cache key and the redacted SQL.
//!
//! Every statement is first tokenized with sqlparser's own tokenizer and the session's dialect, so
//! the tokens are exactly what the parser will consume. Each token gets its byte range in the
//! original text (sqlparser reports 1-based line/column positions counted in characters; they are
//! converted here with one forward pass). The template is the original text with every literal
//! token replaced by `?`, keeping formatting, comments and placeholders (`$1`, `?`) as they are.
//!
//! # The cache invariant
//!
//! Texts that differ only in the *content* of their literals get the same cache key and share one
//! `Analysis`. That is sound only if nothing in an `Analysis` depends on literal content, and it is
//! enforced in three places:
//!
//! 1. here: the key keeps each literal's [`LiteralClass`] (the token variant, and for numbers
//!    whether the digits fit `i64`, `u64` or neither), because sqlparser's grammar does branch on
//!    those: `VARCHAR(10)` parses and `VARCHAR(1.5)` or `VARCHAR(99999999999999999999)` do not;
//!    content beyond the class never changes what the parser builds;
//! 2. in `names.rs`: identifiers the parser built *from* a string literal (sqlparser accepts
//!    `SELECT a 'alias'` and `FROM 'x'`) are never recorded by name;
//! 3. in `walker.rs`, which never reads a literal value, and in `redact.rs`, which removes literal
//!    text from parser error messages.
//!
//! The key is unambiguous: literals are written as `\0` plus a class byte and any `\0` in the text
//! is doubled, so no two different token sequences share a key.
//!
//! MySQL executable comments (`/*! … */`, MariaDB `/*M! … */`) are code for the server. sqlparser
//! can expand them, but the tokens it then produces carry the comment's position, not their own,
//! which would break redaction. So the session dialect leaves them as comments, and this module
//! blanks the comment markers (same byte length, so every offset stays valid) and tokenizes again:
//! the literals inside are redacted and the parser sees the code, as the server does (whatever the
//! version number in the marker says).

use std::ops::Range;

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::dialect::Dialect;

/// What kind of literal a token was. Part of the cache key; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LiteralClass {
    /// Digits only, value fits `i64`.
    SmallInteger,
    /// Digits only, fits `u64` but not `i64`.
    LargeInteger,
    /// Digits only, too large for `u64`.
    HugeInteger,
    /// Any other number (`1.5`, `1e3`, `1_000`, `.5`).
    OtherNumber,
    SingleQuoted,
    DoubleQuoted,
    TripleQuoted,
    DollarQuoted,
    Escaped,
    National,
    Unicode,
    Hex,
    Bytes,
    Raw,
    QuoteDelimited,
}

impl LiteralClass {
    fn of(token: &Token) -> Option<LiteralClass> {
        Some(match token {
            Token::Number(digits, _) => number_class(digits),
            Token::SingleQuotedString(_) => LiteralClass::SingleQuoted,
            Token::DoubleQuotedString(_) => LiteralClass::DoubleQuoted,
            Token::TripleSingleQuotedString(_) | Token::TripleDoubleQuotedString(_) => {
                LiteralClass::TripleQuoted
            }
            Token::DollarQuotedString(_) => LiteralClass::DollarQuoted,
            Token::EscapedStringLiteral(_) => LiteralClass::Escaped,
            Token::NationalStringLiteral(_) => LiteralClass::National,
            Token::UnicodeStringLiteral(_) => LiteralClass::Unicode,
            Token::HexStringLiteral(_) => LiteralClass::Hex,
            Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_) => LiteralClass::Bytes,
            Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_) => LiteralClass::Raw,
            Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_) => LiteralClass::QuoteDelimited,
            _ => return None,
        })
    }

    fn key_byte(self) -> u8 {
        match self {
            LiteralClass::SmallInteger => b'i',
            LiteralClass::LargeInteger => b'u',
            LiteralClass::HugeInteger => b'h',
            LiteralClass::OtherNumber => b'n',
            LiteralClass::SingleQuoted => b's',
            LiteralClass::DoubleQuoted => b'd',
            LiteralClass::TripleQuoted => b't',
            LiteralClass::DollarQuoted => b'$',
            LiteralClass::Escaped => b'e',
            LiteralClass::National => b'N',
            LiteralClass::Unicode => b'U',
            LiteralClass::Hex => b'x',
            LiteralClass::Bytes => b'b',
            LiteralClass::Raw => b'r',
            LiteralClass::QuoteDelimited => b'q',
        }
    }
}

fn number_class(digits: &str) -> LiteralClass {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        LiteralClass::OtherNumber
    } else if digits.parse::<i64>().is_ok() {
        LiteralClass::SmallInteger
    } else if digits.parse::<u64>().is_ok() {
        LiteralClass::LargeInteger
    } else {
        LiteralClass::HugeInteger
    }
}

/// What a token is, as far as templates, statement boundaries and fingerprints care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LexemeKind {
    /// Spaces, tabs, newlines.
    Space,
    /// `-- …`, `# …` and `/* … */` comments (not MySQL executable comments, which are code).
    Comment,
    /// A keyword or identifier; `quote` is the delimiter of a quoted identifier.
    Word {
        quote: Option<char>,
        keyword: Keyword,
    },
    /// A literal value; replaced by `?` in every output.
    Literal(LiteralClass),
    /// A bind placeholder: `$1`, `?`, `:name`.
    Placeholder,
    SemiColon,
    LParen,
    RParen,
    Comma,
    /// `.` between the parts of a qualified name.
    Period,
    /// Any other operator or punctuation.
    Symbol,
}

/// One token with its byte range in the original text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexeme {
    pub kind: LexemeKind,
    pub start: usize,
    pub end: usize,
}

/// A successfully tokenized text.
#[derive(Debug)]
pub(crate) struct Lexed {
    /// One lexeme per sqlparser token, in order, covering the text without gaps.
    pub lexemes: Vec<Lexeme>,
    /// The sqlparser tokens themselves, to hand to the parser on a cache miss.
    pub tokens: Vec<TokenWithSpan>,
    /// The cache key: dialect byte, then the text with literals encoded by class.
    pub key: String,
}

/// A text the tokenizer could not read to its end (an unterminated quote or comment, …).
#[derive(Debug)]
pub(crate) struct Unlexable {
    /// The tokens read before the failure; they end where the unreadable part begins.
    pub lexemes: Vec<Lexeme>,
    /// The tokenizer's message, before sanitising (see `redact.rs`).
    pub message: String,
}

/// How many tokenizer passes MySQL executable comments may cost (two per comment: one to open
/// it, one to find its end); a text with more is treated as unreadable.
const MAX_EXECUTABLE_COMMENT_PASSES: usize = 32;

/// Tokenize `sql` in `dialect` and build its lexemes and cache key.
///
/// For MySQL, an executable comment is unwrapped in two passes, the way the server reads it:
/// first its opening marker (`/*!50000`) is blanked and the text tokenized again, so the comment's
/// body is lexed as code (a `*/` inside a string in it does not end it); then the first `*/` that
/// the code lexes as `*` `/` after that point is the comment's end, and is blanked too.
pub(crate) fn lex(sql: &str, dialect: Dialect) -> Result<Lexed, Unlexable> {
    let session = dialect.sqlparser();
    let mut code: Option<String> = None;
    // Where the body of the executable comment being unwrapped starts, until its end is found.
    let mut open_comment: Option<usize> = None;
    for _ in 0..=MAX_EXECUTABLE_COMMENT_PASSES {
        let view = code.as_deref().unwrap_or(sql);
        let mut tokens = Vec::new();
        let result =
            Tokenizer::new(session.as_dyn(), view).tokenize_with_location_into_buf(&mut tokens);
        let Some(lexemes) = to_lexemes(view, &tokens) else {
            return Err(Unlexable {
                lexemes: Vec::new(),
                message: "token positions out of order".to_string(),
            });
        };
        // An executable comment is handled before a tokenizer error: the error may come from
        // reading the comment's code as a comment (a `*/` inside one of its strings).
        if let Some(body) = open_comment {
            let Some(end) = comment_end(&tokens, &lexemes, body) else {
                return Err(Unlexable {
                    lexemes: Vec::new(),
                    message: "unterminated executable comment".to_string(),
                });
            };
            open_comment = None;
            let buffer = code.get_or_insert_with(|| sql.to_string());
            blank(buffer, end);
            continue;
        }
        if dialect.has_executable_comments()
            && let Some(opening) = lexemes
                .iter()
                .zip(&tokens)
                .find_map(|(lexeme, token)| executable_comment_opening(&token.token, lexeme))
        {
            open_comment = Some(opening.end);
            let buffer = code.get_or_insert_with(|| sql.to_string());
            blank(buffer, opening);
            continue;
        }
        if let Err(error) = result {
            return Err(Unlexable {
                lexemes,
                message: error.message,
            });
        }
        let key = build_key(sql, dialect, &lexemes);
        return Ok(Lexed {
            lexemes,
            tokens,
            key,
        });
    }
    Err(Unlexable {
        lexemes: Vec::new(),
        message: "too many executable comments".to_string(),
    })
}

/// The byte range of the opening marker (`/*!50000`, `/*M!100100`) of a MySQL executable comment.
fn executable_comment_opening(token: &Token, lexeme: &Lexeme) -> Option<Range<usize>> {
    let Token::Whitespace(Whitespace::MultiLineComment(body)) = token else {
        return None;
    };
    let rest = body.strip_prefix('!').or_else(|| body.strip_prefix("M!"))?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let open_len = 2 + (body.len() - rest.len()) + digits;
    Some(lexeme.start..lexeme.start.checked_add(open_len)?)
}

/// The first `*/` lexed as code (adjacent `*` and `/` tokens) at or after `from`.
fn comment_end(tokens: &[TokenWithSpan], lexemes: &[Lexeme], from: usize) -> Option<Range<usize>> {
    let pairs = tokens
        .iter()
        .zip(lexemes)
        .zip(tokens.iter().zip(lexemes).skip(1));
    pairs.filter(|((_, star), _)| star.start >= from).find_map(
        |((star_token, star), (slash_token, slash))| {
            (star_token.token == Token::Mul
                && slash_token.token == Token::Div
                && star.end == slash.start)
                .then_some(star.start..slash.end)
        },
    )
}

/// Replace an ASCII byte range with spaces (same length, so every offset stays valid).
fn blank(text: &mut String, range: Range<usize>) {
    if let Some(part) = text.get(range.clone())
        && part.is_ascii()
    {
        let spaces = " ".repeat(range.len());
        text.replace_range(range, &spaces);
    }
}

/// Convert sqlparser's character-based spans to byte ranges, checking that the tokens cover the
/// text in order without gaps. Returns `None` if they do not (never expected; the caller then
/// redacts conservatively).
fn to_lexemes(text: &str, tokens: &[TokenWithSpan]) -> Option<Vec<Lexeme>> {
    let mut lexemes = Vec::with_capacity(tokens.len());
    let mut cursor = Cursor::new(text);
    for token in tokens {
        let start = cursor.byte;
        if (token.span.start.line, token.span.start.column) != (cursor.line, cursor.column) {
            return None;
        }
        let end = cursor.advance_to(token.span.end.line, token.span.end.column)?;
        lexemes.push(Lexeme {
            kind: kind_of(&token.token),
            start,
            end,
        });
    }
    Some(lexemes)
}

/// Walks a text counting lines and columns the way sqlparser's tokenizer does.
struct Cursor<'a> {
    rest: std::str::Chars<'a>,
    byte: usize,
    line: u64,
    column: u64,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            rest: text.chars(),
            byte: 0,
            line: 1,
            column: 1,
        }
    }

    fn advance_to(&mut self, line: u64, column: u64) -> Option<usize> {
        while (self.line, self.column) < (line, column) {
            let ch = self.rest.next()?;
            self.byte += ch.len_utf8();
            if ch == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        ((self.line, self.column) == (line, column)).then_some(self.byte)
    }
}

fn kind_of(token: &Token) -> LexemeKind {
    if let Some(class) = LiteralClass::of(token) {
        return LexemeKind::Literal(class);
    }
    match token {
        Token::Whitespace(Whitespace::Space | Whitespace::Tab | Whitespace::Newline) => {
            LexemeKind::Space
        }
        Token::Whitespace(_) => LexemeKind::Comment,
        Token::Word(word) => LexemeKind::Word {
            quote: word.quote_style,
            keyword: word.keyword,
        },
        Token::Placeholder(_) => LexemeKind::Placeholder,
        Token::SemiColon => LexemeKind::SemiColon,
        Token::LParen => LexemeKind::LParen,
        Token::RParen => LexemeKind::RParen,
        Token::Comma => LexemeKind::Comma,
        Token::Period => LexemeKind::Period,
        _ => LexemeKind::Symbol,
    }
}

/// The cache key: the dialect, then the text with each literal written as `\0` and its class byte.
fn build_key(sql: &str, dialect: Dialect, lexemes: &[Lexeme]) -> String {
    let mut key = String::with_capacity(sql.len() + 1);
    key.push(char::from(dialect.key_byte()));
    let escape_nul = sql.contains('\0');
    for lexeme in lexemes {
        match lexeme.kind {
            LexemeKind::Literal(class) => {
                key.push('\0');
                key.push(char::from(class.key_byte()));
            }
            _ => {
                let part = sql.get(lexeme.start..lexeme.end).unwrap_or_default();
                if escape_nul {
                    key.push_str(&part.replace('\0', "\0\0"));
                } else {
                    key.push_str(part);
                }
            }
        }
    }
    key
}

/// The redacted text of the lexemes in `range`: the original text with each literal as `?`.
/// Leading and trailing whitespace is trimmed.
pub(crate) fn redact(sql: &str, lexemes: &[Lexeme]) -> String {
    let mut out = String::with_capacity(
        lexemes
            .last()
            .map_or(0, |l| l.end)
            .saturating_sub(lexemes.first().map_or(0, |l| l.start)),
    );
    for lexeme in lexemes {
        match lexeme.kind {
            LexemeKind::Literal(_) => out.push('?'),
            _ => out.push_str(sql.get(lexeme.start..lexeme.end).unwrap_or_default()),
        }
    }
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        out
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(sql: &str, dialect: Dialect) -> String {
        let lexed = lex(sql, dialect)
            .map_err(|e| e.message)
            .unwrap_or_else(|m| panic!("{m}"));
        redact(sql, &lexed.lexemes)
    }

    #[test]
    fn postgres_literals_of_every_kind_become_question_marks() {
        let sql = "SELECT E'a\\'b', $x$ q $x$, 1.5e3, x'ff', b'01', N'n', U&'d', 'it''s', $1 -- c\n/* a /* b */ */ ;";
        assert_eq!(
            template(sql, Dialect::PostgreSql),
            "SELECT ?, ?, ?, ?, ?, ?, ?, ?, $1 -- c\n/* a /* b */ */ ;"
        );
    }

    #[test]
    fn multibyte_text_keeps_byte_offsets_right() {
        let sql = "SELECT 'añb@x.io', \"Ünï\" FROM t WHERE x = '中文'\r\n AND y = 1";
        assert_eq!(
            template(sql, Dialect::PostgreSql),
            "SELECT ?, \"Ünï\" FROM t WHERE x = ?\r\n AND y = ?"
        );
    }

    #[test]
    fn mysql_double_quotes_are_strings_unless_ansi_quotes() {
        let sql = "SELECT \"secret\", `col` FROM t";
        assert_eq!(
            template(sql, Dialect::MYSQL_DEFAULT),
            "SELECT ?, `col` FROM t"
        );
        let ansi = Dialect::MySql {
            ansi_quotes: true,
            no_backslash_escapes: false,
        };
        assert_eq!(template(sql, ansi), sql);
    }

    #[test]
    fn mysql_executable_comments_are_code() {
        let sql = "SELECT /*!50000 'secret', */ a /*M!100100 , 7 */ FROM t /* 'kept' */";
        assert_eq!(
            template(sql, Dialect::MYSQL_DEFAULT),
            "SELECT /*!50000 ?, */ a /*M!100100 , ? */ FROM t /* 'kept' */"
        );
        // A `*/` inside a string in the comment's code does not end the comment.
        let sql = "SELECT a FROM t WHERE b = /*!50000 'x*/y' */ 1";
        assert_eq!(
            template(sql, Dialect::MYSQL_DEFAULT),
            "SELECT a FROM t WHERE b = /*!50000 ? */ ?"
        );
        let lexed = lex(sql, Dialect::MYSQL_DEFAULT).map(|l| l.key);
        let other = lex(
            "SELECT a FROM t WHERE b = /*!50000 'zz' */ 2",
            Dialect::MYSQL_DEFAULT,
        );
        assert_eq!(lexed.ok(), other.map(|l| l.key).ok());
    }

    #[test]
    fn key_tells_literal_from_question_mark_operator() {
        let a = lex("SELECT 'k' ? a", Dialect::PostgreSql).map(|l| l.key);
        let b = lex("SELECT ? 'k' a", Dialect::PostgreSql).map(|l| l.key);
        assert!(a.is_ok() && b.is_ok());
        assert_ne!(a.ok(), b.ok());
    }

    #[test]
    fn key_keeps_number_classes_apart() {
        let key = |sql: &str| lex(sql, Dialect::PostgreSql).map(|l| l.key).ok();
        assert_eq!(key("SELECT 1"), key("SELECT 42"));
        assert_ne!(key("SELECT 1"), key("SELECT 1.5"));
        assert_ne!(key("SELECT 1"), key("SELECT 99999999999999999999"));
        assert_ne!(key("SELECT 1"), key("SELECT '1'"));
    }

    #[test]
    fn unterminated_quote_is_unlexable_with_the_prefix_kept() {
        let err = lex("SELECT a FROM t WHERE b = 'secret", Dialect::PostgreSql);
        let Err(unlexable) = err else {
            panic!("an unterminated quote must not tokenize")
        };
        let end = unlexable.lexemes.last().map_or(0, |l| l.end);
        assert!(end <= "SELECT a FROM t WHERE b = ".len());
    }
}
