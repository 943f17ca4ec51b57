//! Carrying a plan out on SQL text: every planned literal is replaced by the SQL literal of its
//! ciphertext, and nothing else in the text changes (comments, formatting and the other
//! literals stay as the client wrote them).

use warden_analysis::Dialect;

use crate::error::EncryptionError;
use crate::plan::Plan;
use crate::tokens;

/// Why a text could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// A literal's value does not fit its column, or encryption failed.
    #[error(transparent)]
    Value(#[from] EncryptionError),
    /// The text does not have the shape its plan was made for (a bug, or a template collision);
    /// the statement is refused rather than sent half-encrypted.
    #[error("warden could not locate the values to encrypt in the statement ({0})")]
    Shape(String),
}

/// The text with every literal of `plan` (made in `dialect`) encrypted. A value that cannot be encrypted fails the
/// whole text: it is never sent with some values in plaintext.
pub fn rewrite(sql: &str, plan: &Plan, dialect: Dialect) -> Result<String, RewriteError> {
    if !plan.rewrites_text() {
        return Ok(sql.to_string());
    }
    let toks = tokens::lex(sql, dialect).map_err(RewriteError::Shape)?;
    let span = |r: &std::ops::Range<usize>| -> Result<(usize, usize), RewriteError> {
        match (
            toks.get(r.start),
            r.end.checked_sub(1).and_then(|i| toks.get(i)),
        ) {
            (Some(first), Some(last)) if r.start < r.end => Ok((first.start, last.end)),
            _ => Err(RewriteError::Shape("token out of range".into())),
        }
    };
    // Aggregates first: their text is rebuilt around the argument, and literal slots never
    // fall inside them (their argument is a bare column).
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for e in &plan.extrema {
        let (start, end) = span(&e.tokens)?;
        let (a, b) = span(&e.arg)?;
        let arg = &sql[a..b];
        let order = if e.max { " DESC NULLS LAST" } else { "" };
        edits.push((
            start,
            end,
            format!("(array_agg({arg} ORDER BY {arg}{order}))[1]"),
        ));
    }
    for slot in &plan.literals {
        let (Some(first), Some(last), Some(literal)) = (
            toks.get(slot.tokens.start),
            slot.tokens.end.checked_sub(1).and_then(|i| toks.get(i)),
            toks.get(slot.literal),
        ) else {
            return Err(RewriteError::Shape("token out of range".into()));
        };
        let Some(text) = tokens::literal_text(&literal.token) else {
            return Err(RewriteError::Shape("expected a literal".into()));
        };
        let value = if slot.negate {
            format!("-{text}")
        } else {
            text.to_string()
        };
        let stored = slot.column.encrypt_text(value.as_bytes())?;
        edits.push((
            first.start,
            last.end,
            slot.column.sql_literal(&stored, dialect),
        ));
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(sql.len() + edits.len() * 64);
    let mut copied = 0;
    for (start, end, text) in edits {
        if start < copied {
            return Err(RewriteError::Shape("overlapping values".into()));
        }
        out.push_str(&sql[copied..start]);
        out.push_str(&text);
        copied = end;
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}
