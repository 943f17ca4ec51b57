//! `LOAD DATA [LOCAL] INFILE` (MySQL / MariaDB) into a table with encrypted columns.
//!
//! sqlparser reads only Hive's `LOAD DATA INPATH`, so the MySQL statement is read here from its
//! tokens: the table, `LOCAL`, `CHARACTER SET`, the `FIELDS` / `LINES` options, `IGNORE n
//! LINES`, the column list and whether a `SET` clause touches a protected column. A
//! [`LoadDataPlan`] says which field of each line holds which protected column; the proxy then
//! re-cuts the file the client sends into lines with [`InfileEncoder`], encrypts those fields
//! and copies everything else byte for byte.
//!
//! Refused on tables with encrypted columns: a server-side file (`LOAD DATA INFILE` without
//! `LOCAL` never passes through warden), `SET` expressions on a protected column, `LINES
//! STARTING BY`, fixed-width rows (empty terminators), and a `CHARACTER SET` other than
//! `binary` when ciphertext bytes go into a VARBINARY column: MariaDB reads a file in a
//! multi-byte character set character by character, and a ciphertext byte could swallow the
//! escape or terminator after it. Without a `CHARACTER SET` clause warden adds `CHARACTER SET
//! binary` (for UTF-8 files — valid UTF-8 is read the same way — the other columns load as
//! before).

use std::sync::Arc;

use sqlparser::tokenizer::Token;
use warden_analysis::Dialect;

use crate::catalog::Catalog;
use crate::cipher::ColumnCrypto;
use crate::plan::PlanRefusal;
use crate::policy::Storage;
use crate::rewrite::RewriteError;
use crate::tokens::{self, Tok};

/// How the lines of a LOAD DATA file are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFormat {
    /// `FIELDS TERMINATED BY` (default tab).
    pub field_term: Vec<u8>,
    /// `[OPTIONALLY] ENCLOSED BY` (default none).
    pub enclosed: Option<u8>,
    /// `ESCAPED BY` (default backslash; `''` for none).
    pub escaped: Option<u8>,
    /// `LINES TERMINATED BY` (default newline).
    pub line_term: Vec<u8>,
    /// `IGNORE n LINES`: the first lines are copied untouched (the server skips them).
    pub ignore_lines: u64,
}

impl Default for LoadFormat {
    fn default() -> Self {
        LoadFormat {
            field_term: b"\t".to_vec(),
            enclosed: None,
            escaped: Some(b'\\'),
            line_term: b"\n".to_vec(),
            ignore_lines: 0,
        }
    }
}

/// What the proxy does to a LOAD DATA LOCAL INFILE into a table with encrypted columns.
#[derive(Debug, Clone)]
pub struct LoadDataPlan {
    pub format: LoadFormat,
    /// Per field of a line: the protected column it is loaded into, if any.
    pub fields: Vec<Option<Arc<ColumnCrypto>>>,
    /// Token index after which ` CHARACTER SET binary` must be inserted (binary-stored fields
    /// and no `CHARACTER SET` clause).
    pub charset_after: Option<usize>,
}

/// The outcome of reading a LOAD DATA statement.
#[derive(Debug)]
pub enum LoadData {
    /// Not a LOAD DATA statement.
    NotLoadData,
    /// A LOAD DATA statement followed by more statements: the planner's unreadable case.
    Unreadable,
    /// LOAD DATA into a table without encrypted columns (or none of its fields are protected).
    Untouched,
    Planned(LoadDataPlan),
    Refused(PlanRefusal),
}

fn word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn name(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
        Token::Word(w) => Some(w.value.to_lowercase()),
        _ => None,
    }
}

struct Cursor<'a> {
    toks: &'a [Tok],
    /// Indices of the significant (non-whitespace, non-comment) tokens.
    sig: Vec<usize>,
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Token> {
        self.sig.get(self.at).map(|&i| &self.toks[i].token)
    }

    fn index(&self) -> Option<usize> {
        self.sig.get(self.at).copied()
    }

    fn next(&mut self) -> Option<&Token> {
        let t = self.sig.get(self.at).map(|&i| &self.toks[i].token);
        self.at += 1;
        t
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if self.peek().and_then(word).as_deref() == Some(kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kw: &str) -> Result<(), String> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(format!("expected {kw}"))
        }
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        match self.next() {
            Some(t @ (Token::SingleQuotedString(_) | Token::DoubleQuotedString(_))) => {
                Ok(tokens::literal_text(t)
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec())
            }
            _ => Err("expected a quoted string".into()),
        }
    }
}

/// Reads `sql` as a MySQL LOAD DATA statement and plans it against `catalog`.
pub fn plan(sql: &str, dialect: Dialect, catalog: &Catalog) -> LoadData {
    let Ok(toks) = tokens::lex(sql, dialect) else {
        return LoadData::NotLoadData;
    };
    let sig: Vec<usize> = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .collect();
    let mut c = Cursor {
        toks: &toks,
        sig,
        at: 0,
    };
    if !(c.keyword("LOAD") && c.keyword("DATA")) {
        return LoadData::NotLoadData;
    }
    if let Some(semi) = c
        .sig
        .iter()
        .position(|&i| toks[i].token == Token::SemiColon)
        && semi + 1 < c.sig.len()
    {
        return LoadData::Unreadable;
    }
    // The table comes first; a statement warden cannot read up to it is the planner's
    // "unreadable" case.
    let head = (|| -> Result<(bool, Option<String>, String, usize), String> {
        let _ = c.keyword("LOW_PRIORITY") || c.keyword("CONCURRENT");
        let local = c.keyword("LOCAL");
        c.expect("INFILE")?;
        c.string()?;
        let _ = c.keyword("REPLACE") || c.keyword("IGNORE");
        c.expect("INTO")?;
        c.expect("TABLE")?;
        let first = c.next().and_then(name).ok_or("expected a table name")?;
        let (schema, table) = if c.peek() == Some(&Token::Period) {
            c.next();
            let t = c.next().and_then(name).ok_or("expected a table name")?;
            (Some(first), t)
        } else {
            (None, first)
        };
        let mut last = c.sig[c.at - 1];
        if c.keyword("PARTITION") {
            let mut depth = 0;
            loop {
                let i = c.index().ok_or("unterminated PARTITION list")?;
                match c.next() {
                    Some(Token::LParen) => depth += 1,
                    Some(Token::RParen) => {
                        depth -= 1;
                        if depth == 0 {
                            last = i;
                            break;
                        }
                    }
                    None => return Err("unterminated PARTITION list".into()),
                    _ => {}
                }
            }
        }
        Ok((local, schema, table, last))
    })();
    let Ok((local, schema, table_name, after_table)) = head else {
        return LoadData::NotLoadData;
    };
    let Some(table) = catalog.resolve(schema.as_deref(), &table_name) else {
        return LoadData::Untouched;
    };
    let Some(first) = table
        .columns
        .iter()
        .find_map(|col| col.encrypted().cloned())
    else {
        return LoadData::Untouched;
    };
    let refuse = |reason: String| {
        LoadData::Refused(PlanRefusal {
            column: first.column.display_name(),
            reason,
        })
    };
    if !local {
        return refuse(
            "LOAD DATA INFILE reads a file on the database server, which bypasses warden (it encrypts the column); use LOAD DATA LOCAL INFILE".into(),
        );
    }
    let rest = (|| -> Result<Clauses, String> {
        let mut format = LoadFormat::default();
        let mut charset = None;
        if c.keyword("CHARACTER") {
            c.expect("SET")?;
            charset = Some(c.next().and_then(name).ok_or("expected a character set")?);
        } else if c.keyword("CHARSET") {
            charset = Some(c.next().and_then(name).ok_or("expected a character set")?);
        }
        if c.keyword("FIELDS") || c.keyword("COLUMNS") {
            let mut any = false;
            loop {
                if c.keyword("TERMINATED") {
                    c.expect("BY")?;
                    format.field_term = c.string()?;
                } else if c.keyword("OPTIONALLY")
                    || c.peek().and_then(word).as_deref() == Some("ENCLOSED")
                {
                    c.expect("ENCLOSED")?;
                    c.expect("BY")?;
                    format.enclosed = single(&c.string()?, "ENCLOSED BY")?;
                } else if c.keyword("ESCAPED") {
                    c.expect("BY")?;
                    format.escaped = single(&c.string()?, "ESCAPED BY")?;
                } else {
                    break;
                }
                any = true;
            }
            if !any {
                return Err("FIELDS without options".into());
            }
        }
        if c.keyword("LINES") {
            loop {
                if c.keyword("STARTING") {
                    c.expect("BY")?;
                    if !c.string()?.is_empty() {
                        return Err(
                            "LINES STARTING BY is not supported on tables with encrypted columns"
                                .into(),
                        );
                    }
                } else if c.keyword("TERMINATED") {
                    c.expect("BY")?;
                    format.line_term = c.string()?;
                } else {
                    break;
                }
            }
        }
        if c.keyword("IGNORE") {
            format.ignore_lines = match c.next() {
                Some(Token::Number(n, _)) => n.parse().map_err(|_| "IGNORE needs a number")?,
                _ => return Err("IGNORE needs a number".into()),
            };
            if !(c.keyword("LINES") || c.keyword("ROWS")) {
                return Err("expected LINES or ROWS after IGNORE n".into());
            }
        }
        let mut columns = None;
        if c.peek() == Some(&Token::LParen) {
            c.next();
            let mut list = Vec::new();
            loop {
                match c.next() {
                    Some(Token::AtSign) => {
                        c.next();
                        list.push(None);
                    }
                    Some(Token::Word(w)) if w.quote_style.is_none() && w.value.starts_with('@') => {
                        list.push(None)
                    }
                    Some(t) => list.push(Some(name(t).ok_or("expected a column name")?)),
                    None => return Err("unterminated column list".into()),
                }
                match c.next() {
                    Some(Token::Comma) => {}
                    Some(Token::RParen) => break,
                    _ => return Err("expected , or ) in the column list".into()),
                }
            }
            columns = Some(list);
        }
        Ok(Clauses {
            format,
            charset,
            columns,
            set_at: c.at,
        })
    })();
    let Clauses {
        format,
        charset,
        columns,
        set_at,
    } = match rest {
        Ok(r) => r,
        Err(e) => {
            return refuse(format!(
                "warden could not read this LOAD DATA statement ({e}), so it cannot encrypt the file"
            ));
        }
    };
    // A SET clause may not compute a value for a protected column.
    if c.keyword("SET") {
        for &i in &c.sig[c.at..] {
            if let Some(n) = name(&toks[i].token)
                && let Some(col) = table.column(&n).and_then(|col| col.encrypted())
            {
                return LoadData::Refused(PlanRefusal {
                    column: col.column.display_name(),
                    reason: "LOAD DATA … SET cannot compute a value for an encrypted column; load it from a field of the file".into(),
                });
            }
        }
    } else {
        c.at = set_at;
        let _ = c.peek() == Some(&Token::SemiColon) && c.next().is_some();
        if c.peek().is_some() {
            return refuse("warden could not read the end of this LOAD DATA statement, so it cannot encrypt the file".into());
        }
    }
    let fields: Vec<Option<Arc<ColumnCrypto>>> = match &columns {
        None => table
            .columns
            .iter()
            .map(|col| col.encrypted().cloned())
            .collect(),
        Some(list) => list
            .iter()
            .map(|n| {
                n.as_ref()
                    .and_then(|n| table.column(n))
                    .and_then(|col| col.encrypted().cloned())
            })
            .collect(),
    };
    let Some(protected) = fields.iter().flatten().next().cloned() else {
        return LoadData::Untouched;
    };
    let refuse_for = |reason: String| {
        LoadData::Refused(PlanRefusal {
            column: protected.column.display_name(),
            reason,
        })
    };
    if format.field_term.is_empty() || format.line_term.is_empty() {
        return refuse_for(
            "fixed-width LOAD DATA (empty terminators) is not supported on encrypted columns"
                .into(),
        );
    }
    let specials = format
        .enclosed
        .iter()
        .chain(format.escaped.iter())
        .chain(format.field_term.first())
        .chain(format.line_term.first());
    if specials.clone().any(u8::is_ascii_alphanumeric) {
        return refuse_for("LOAD DATA with letters or digits as terminators, enclosure or escape is not supported on encrypted columns".into());
    }
    let binary = fields
        .iter()
        .flatten()
        .any(|f| f.storage() == Storage::Binary);
    if binary && format.escaped.is_none() && format.enclosed.is_none() {
        return refuse_for("LOAD DATA into a VARBINARY-stored encrypted column needs ESCAPED BY or ENCLOSED BY: ciphertext bytes can be any byte".into());
    }
    let charset_after = match (&charset, binary) {
        (Some(cs), true) if !cs.eq_ignore_ascii_case("binary") => {
            return refuse_for(format!(
                "LOAD DATA with CHARACTER SET {cs} cannot carry ciphertext bytes into a VARBINARY-stored encrypted column; use CHARACTER SET binary (or leave the clause out)"
            ));
        }
        (None, true) => Some(after_table),
        _ => None,
    };
    LoadData::Planned(LoadDataPlan {
        format,
        fields,
        charset_after,
    })
}

/// The clauses after the table name.
struct Clauses {
    format: LoadFormat,
    charset: Option<String>,
    /// The column list: column names, `None` for user variables.
    columns: Option<Vec<Option<String>>>,
    /// Where a `SET` clause would start.
    set_at: usize,
}

fn single(s: &[u8], what: &str) -> Result<Option<u8>, String> {
    match s {
        [] => Ok(None),
        [b] => Ok(Some(*b)),
        _ => Err(format!("{what} must be one character")),
    }
}

/// The statement as the database gets it: with ` CHARACTER SET binary` added when the plan says so.
pub fn rewrite(sql: &str, plan: &LoadDataPlan, dialect: Dialect) -> Result<String, RewriteError> {
    let Some(after) = plan.charset_after else {
        return Ok(sql.to_string());
    };
    let toks = tokens::lex(sql, dialect).map_err(RewriteError::Shape)?;
    let at = toks
        .get(after)
        .ok_or_else(|| RewriteError::Shape("token out of range".into()))?
        .end;
    Ok(format!("{} CHARACTER SET binary{}", &sql[..at], &sql[at..]))
}

/// Why a LOAD DATA file could not be encrypted.
#[derive(Debug, thiserror::Error)]
#[error("line {line} of the LOAD DATA file: {message}")]
pub struct InfileError {
    pub line: u64,
    pub message: String,
}

/// One field of a line: its raw bytes and its value (`None` for NULL).
struct Field {
    raw: std::ops::Range<usize>,
    value: Option<Vec<u8>>,
}

/// The longest line warden buffers while waiting for its end (a client that never sends a
/// terminator must not make it hold unbounded memory).
const MAX_LINE_BYTES: usize = 64 << 20;

/// Re-cuts a LOAD DATA file into lines and encrypts the protected fields. Feed it the file's
/// bytes in any chunks; it returns the bytes to send on, whole lines only.
pub struct InfileEncoder {
    plan: Arc<LoadDataPlan>,
    buf: Vec<u8>,
    line: u64,
}

enum Scan {
    /// A whole line: its fields, the bytes it used, whether it ended with the terminator.
    Line(Vec<Field>, usize, bool),
    NeedMore,
}

impl InfileEncoder {
    pub fn new(plan: Arc<LoadDataPlan>) -> InfileEncoder {
        InfileEncoder {
            plan,
            buf: Vec::new(),
            line: 0,
        }
    }

    /// Takes the next chunk of the file; appends what can be sent to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), InfileError> {
        self.buf.extend_from_slice(data);
        self.drain(false, out)
    }

    /// The end of the file: the last line, if it had no terminator.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), InfileError> {
        self.drain(true, out)
    }

    fn drain(&mut self, eof: bool, out: &mut Vec<u8>) -> Result<(), InfileError> {
        let mut start = 0;
        while start < self.buf.len() {
            let (fields, used, terminated) = match self.scan(&self.buf[start..], eof) {
                Scan::Line(f, used, t) => (f, used, t),
                Scan::NeedMore => break,
            };
            self.line += 1;
            let raw = &self.buf[start..start + used];
            if self.line <= self.plan.format.ignore_lines {
                out.extend_from_slice(raw);
            } else {
                self.encode_line(raw, &fields, terminated, out)?;
            }
            start += used;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(InfileError {
                line: self.line + 1,
                message: format!(
                    "the line is longer than {MAX_LINE_BYTES} bytes; warden re-cuts files loaded into tables with encrypted columns and holds no more than that"
                ),
            });
        }
        Ok(())
    }

    fn encode_line(
        &self,
        raw: &[u8],
        fields: &[Field],
        terminated: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), InfileError> {
        let format = &self.plan.format;
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(&format.field_term);
            }
            match (self.plan.fields.get(i).cloned().flatten(), &f.value) {
                (Some(crypto), Some(value)) => {
                    let err = |message: String| InfileError {
                        line: self.line,
                        message,
                    };
                    let stored = crypto.encrypt_text(value).map_err(|e| err(e.to_string()))?;
                    let bytes = match crypto.storage() {
                        Storage::Binary => stored,
                        Storage::Text => crypto.stored_to_db_text(&stored).into_bytes(),
                    };
                    self.write_value(&bytes, out).map_err(err)?;
                }
                _ => out.extend_from_slice(&raw[f.raw.clone()]),
            }
        }
        if terminated {
            out.extend_from_slice(&format.line_term);
        }
        Ok(())
    }

    /// Writes a value so that the server reads exactly `bytes` back.
    fn write_value(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let f = &self.plan.format;
        if let Some(x) = f.escaped {
            for &b in bytes {
                let special = b == x
                    || Some(b) == f.enclosed
                    || Some(&b) == f.field_term.first()
                    || Some(&b) == f.line_term.first();
                match b {
                    0 => out.extend_from_slice(&[x, b'0']),
                    b'\n' => out.extend_from_slice(&[x, b'n']),
                    b'\r' => out.extend_from_slice(&[x, b'r']),
                    b'\t' => out.extend_from_slice(&[x, b't']),
                    0x08 => out.extend_from_slice(&[x, b'b']),
                    0x1a => out.extend_from_slice(&[x, b'Z']),
                    _ if special => out.extend_from_slice(&[x, b]),
                    _ => out.push(b),
                }
            }
            return Ok(());
        }
        if let Some(e) = f.enclosed {
            out.push(e);
            for &b in bytes {
                out.push(b);
                if b == e {
                    out.push(e);
                }
            }
            out.push(e);
            return Ok(());
        }
        if bytes.windows(f.field_term.len()).any(|w| w == f.field_term)
            || bytes.windows(f.line_term.len()).any(|w| w == f.line_term)
        {
            return Err("an encrypted value contains a terminator and the format has no escape or enclosure".into());
        }
        out.extend_from_slice(bytes);
        Ok(())
    }

    /// Reads one line from `buf`.
    fn scan(&self, buf: &[u8], eof: bool) -> Scan {
        let f = &self.plan.format;
        let mut fields = Vec::new();
        let mut i = 0;
        loop {
            // One field from `i`.
            let start = i;
            let mut value = Vec::new();
            let enclosed = f.enclosed.filter(|&e| buf.get(i) == Some(&e));
            let mut end_of_line = false;
            if let Some(e) = enclosed {
                i += 1;
                loop {
                    let Some(&b) = buf.get(i) else {
                        if !eof {
                            return Scan::NeedMore;
                        }
                        end_of_line = true;
                        break;
                    };
                    if Some(b) == f.escaped {
                        let Some(&n) = buf.get(i + 1) else {
                            if !eof {
                                return Scan::NeedMore;
                            }
                            value.push(b);
                            i += 1;
                            continue;
                        };
                        value.push(unescape(n));
                        i += 2;
                    } else if b == e {
                        let after = &buf[i + 1..];
                        if after.first() == Some(&e) {
                            value.push(e);
                            i += 2;
                        } else if after.starts_with(&f.field_term) {
                            i += 1;
                            break;
                        } else if after.starts_with(&f.line_term) {
                            i += 1;
                            end_of_line = true;
                            break;
                        } else if !eof && (after.len() < f.field_term.len().max(f.line_term.len()))
                        {
                            return Scan::NeedMore;
                        } else if after.is_empty() {
                            i += 1;
                            end_of_line = true;
                            break;
                        } else {
                            value.push(b);
                            i += 1;
                        }
                    } else {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            // Unenclosed bytes (or what follows a closing enclosure) up to a terminator.
            loop {
                if end_of_line && enclosed.is_some() {
                    break;
                }
                let rest = &buf[i..];
                if rest.starts_with(&f.field_term) {
                    break;
                }
                if rest.starts_with(&f.line_term) {
                    end_of_line = true;
                    break;
                }
                if rest.is_empty() {
                    if !eof {
                        return Scan::NeedMore;
                    }
                    end_of_line = true;
                    break;
                }
                if !eof && (f.field_term.starts_with(rest) || f.line_term.starts_with(rest)) {
                    return Scan::NeedMore;
                }
                let b = rest[0];
                if Some(b) == f.escaped {
                    match rest.get(1) {
                        Some(&n) => {
                            value.push(unescape(n));
                            i += 2;
                        }
                        None if !eof => return Scan::NeedMore,
                        None => {
                            value.push(b);
                            i += 1;
                        }
                    }
                } else {
                    value.push(b);
                    i += 1;
                }
            }
            let raw = &buf[start..i];
            let is_null = enclosed.is_none()
                && ((f.escaped.is_some_and(|x| raw == [x, b'N']))
                    || (f.enclosed.is_some() && raw == b"NULL"));
            fields.push(Field {
                raw: start..i,
                value: (!is_null).then_some(value),
            });
            if end_of_line {
                let terminated = buf[i..].starts_with(&f.line_term);
                let used = if terminated { i + f.line_term.len() } else { i };
                if !terminated && !eof {
                    return Scan::NeedMore;
                }
                return Scan::Line(fields, used, terminated);
            }
            i += f.field_term.len();
        }
    }
}

/// The byte an escape sequence `\c` stands for.
fn unescape(c: u8) -> u8 {
    match c {
        b'0' => 0,
        b'b' => 0x08,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'Z' => 0x1a,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::EncryptionPolicy;
    use warden_crypto::{Algorithm, ColumnKey, DataKey, KeyParams, Mode};

    const POLICY: &str = r#"
[[encrypt]]
column = "db.people.card"
key = "card"
algorithm = "sm4"
mode = "deterministic"
type = "varchar(18)"

[[encrypt]]
column = "db.people.pay"
key = "pay"
algorithm = "sm4"
mode = "ope"
type = "decimal(12,2)"
storage = "text"
"#;

    fn catalog() -> Catalog {
        let data_key = DataKey::from_bytes([9; 32]);
        let mut keys = BTreeMap::new();
        for (name, mode) in [
            ("card", Mode::Deterministic),
            ("pay", Mode::OrderPreserving),
        ] {
            let key = ColumnKey::new(
                name,
                1,
                Algorithm::Sm4,
                mode,
                &KeyParams::default(),
                [(1, &data_key)],
                1,
            )
            .unwrap();
            keys.insert(name.to_string(), Arc::new(key));
        }
        let row = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        Catalog::from_mysql_rows(
            &EncryptionPolicy::parse(POLICY).unwrap(),
            &keys,
            &[
                row(&["db", "people", "1", "id", "int", "int(11)"]),
                row(&["db", "people", "2", "card", "varbinary", "varbinary(99)"]),
                row(&["db", "people", "3", "pay", "text", "text"]),
            ],
            &[row(&["db", "people", "warden_enc_pay"])],
            vec!["db".into()],
        )
        .unwrap()
    }

    fn planned(sql: &str) -> LoadDataPlan {
        match plan(sql, Dialect::MYSQL_DEFAULT, &catalog()) {
            LoadData::Planned(p) => p,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn refused(sql: &str) -> String {
        match plan(sql, Dialect::MYSQL_DEFAULT, &catalog()) {
            LoadData::Refused(r) => r.to_string(),
            other => panic!("{sql}: {other:?}"),
        }
    }

    /// Encodes `file` in two chunks split at every position, and checks they all agree.
    fn encode(p: &LoadDataPlan, file: &[u8]) -> Vec<u8> {
        let p = Arc::new(p.clone());
        let mut whole = Vec::new();
        let mut e = InfileEncoder::new(Arc::clone(&p));
        e.push(file, &mut whole).unwrap();
        e.finish(&mut whole).unwrap();
        for cut in 0..file.len() {
            let mut out = Vec::new();
            let mut e = InfileEncoder::new(Arc::clone(&p));
            e.push(&file[..cut], &mut out).unwrap();
            e.push(&file[cut..], &mut out).unwrap();
            e.finish(&mut out).unwrap();
            assert_eq!(out.len(), whole.len(), "cut at {cut}");
        }
        whole
    }

    /// Reads an encoded file back the way the server does, decrypting protected fields.
    fn decode(p: &LoadDataPlan, encoded: &[u8]) -> Vec<Vec<Option<String>>> {
        let e = InfileEncoder::new(Arc::new(p.clone()));
        let mut lines = Vec::new();
        let mut at = 0;
        while at < encoded.len() {
            let Scan::Line(fields, used, _) = e.scan(&encoded[at..], true) else {
                panic!("incomplete")
            };
            lines.push(
                fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        f.value.as_ref().map(|v| {
                            let skipped = (lines.len() as u64) < p.format.ignore_lines;
                            let v = match p.fields.get(i).cloned().flatten().filter(|_| !skipped) {
                                Some(c) => {
                                    let stored = match c.storage() {
                                        Storage::Binary => v.clone(),
                                        Storage::Text => c.stored_from_db_text(v).unwrap(),
                                    };
                                    c.decrypt_to_text(&stored).unwrap()
                                }
                                None => v.clone(),
                            };
                            String::from_utf8(v).unwrap()
                        })
                    })
                    .collect(),
            );
            at += used;
        }
        lines
    }

    #[test]
    fn statements_are_read_and_refused_where_needed() {
        let p = planned("LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE people");
        assert_eq!(p.format, LoadFormat::default());
        assert_eq!(
            p.fields.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert!(p.charset_after.is_some());
        let p = planned(
            "load data low_priority local infile 'f' replace into table db.people character set binary \
             columns terminated by ',' optionally enclosed by '\"' escaped by '' \
             lines terminated by '\\r\\n' ignore 1 lines (@skip, pay, `card`) set id = 7;",
        );
        assert_eq!(p.format.field_term, b",");
        assert_eq!(p.format.enclosed, Some(b'"'));
        assert_eq!(p.format.escaped, None);
        assert_eq!(p.format.line_term, b"\r\n");
        assert_eq!(p.format.ignore_lines, 1);
        assert_eq!(
            p.fields.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert!(p.charset_after.is_none());
        assert!(refused("LOAD DATA INFILE 'f' INTO TABLE people").contains("LOCAL"));
        assert!(
            refused("LOAD DATA LOCAL INFILE 'f' INTO TABLE people SET card = 'x'").contains("SET")
        );
        assert!(
            refused("LOAD DATA LOCAL INFILE 'f' INTO TABLE people CHARACTER SET utf8mb4")
                .contains("binary")
        );
        assert!(
            refused("LOAD DATA LOCAL INFILE 'f' INTO TABLE people FIELDS ESCAPED BY ''")
                .contains("ESCAPED BY")
        );
        assert!(
            refused("LOAD DATA LOCAL INFILE 'f' INTO TABLE people LINES STARTING BY 'x'")
                .contains("STARTING")
        );
        assert!(matches!(
            plan(
                "LOAD DATA LOCAL INFILE 'f' INTO TABLE other",
                Dialect::MYSQL_DEFAULT,
                &catalog()
            ),
            LoadData::Untouched
        ));
        assert!(matches!(
            plan(
                "LOAD DATA LOCAL INFILE 'f' INTO TABLE people (id, @a, @b)",
                Dialect::MYSQL_DEFAULT,
                &catalog()
            ),
            LoadData::Untouched
        ));
        assert!(matches!(
            plan(
                "LOAD DATA LOCAL INFILE 'f' INTO TABLE other; SELECT 1",
                Dialect::MYSQL_DEFAULT,
                &catalog()
            ),
            LoadData::Unreadable
        ));
        assert!(matches!(
            plan("SELECT 1", Dialect::MYSQL_DEFAULT, &catalog()),
            LoadData::NotLoadData
        ));
        let sql = "LOAD DATA LOCAL INFILE 'f' INTO TABLE people PARTITION (p0) (id, card, pay)";
        let p = planned(sql);
        assert_eq!(
            rewrite(sql, &p, Dialect::MYSQL_DEFAULT).unwrap(),
            "LOAD DATA LOCAL INFILE 'f' INTO TABLE people PARTITION (p0) CHARACTER SET binary (id, card, pay)"
        );
    }

    #[test]
    fn files_are_re_cut_and_protected_fields_encrypted() {
        let p = planned("LOAD DATA LOCAL INFILE 'f' INTO TABLE people");
        let file = b"1\t110101199003074578\t12.5\n2\t\\N\t\\N\n3\ta\\tb\\\\c\t-1\n4\t\t0";
        let encoded = encode(&p, file);
        assert!(!encoded.windows(6).any(|w| w == b"110101"));
        assert_eq!(
            decode(&p, &encoded),
            vec![
                vec![
                    Some("1".into()),
                    Some("110101199003074578".into()),
                    Some("12.50".into())
                ],
                vec![Some("2".into()), None, None],
                vec![
                    Some("3".into()),
                    Some("a\tb\\c".into()),
                    Some("-1.00".into())
                ],
                vec![Some("4".into()), Some(String::new()), Some("0.00".into())],
            ]
        );
        let csv = planned(
            "LOAD DATA LOCAL INFILE 'f' INTO TABLE people FIELDS TERMINATED BY ',' ENCLOSED BY '\"' \
             LINES TERMINATED BY '\\r\\n' IGNORE 1 LINES",
        );
        let file = b"id,card,pay\r\n\"1\",\"a,\"\"b\",\"3\"\r\n2,NULL,\"4\"\r\n";
        let encoded = encode(&csv, file);
        assert!(encoded.starts_with(b"id,card,pay\r\n"));
        let lines = decode(&csv, &encoded);
        assert_eq!(
            lines[1],
            vec![Some("1".into()), Some("a,\"b".into()), Some("3.00".into())]
        );
        assert_eq!(lines[2], vec![Some("2".into()), None, Some("4.00".into())]);
        // A bad value names the line.
        let mut e = InfileEncoder::new(Arc::new(p));
        let err = e
            .push(b"1\tx\tnot a number\n", &mut Vec::new())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("line 1 of the LOAD DATA file: people.pay"),
            "{err}"
        );
    }
}
