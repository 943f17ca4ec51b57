//! COPY through warden on tables with encrypted columns: the rows of `COPY … FROM STDIN` have
//! their protected fields encrypted on the way to the database, and those of `COPY … TO
//! STDOUT` decrypted on the way back, in PostgreSQL's text or CSV format.
//!
//! COPY data arrives in CopyData messages that need not end at row boundaries, so the codec
//! keeps the incomplete tail of the last message until the next one (or the end of the copy)
//! completes it. A CSV row ends at a newline outside quotes; a text row at any newline (newlines
//! in text-format values are escaped). Rows are re-encoded field by field; fields of
//! unprotected columns are copied byte for byte.

use std::sync::Arc;

use warden_encryption::{ColumnCrypto, CopyFormat, CopyPlan};

/// The longest row warden buffers while waiting for its end (a peer that never sends a
/// newline must not make it hold unbounded memory).
const MAX_ROW_BYTES: usize = 64 << 20;

/// Encrypts or decrypts the protected fields of one COPY's rows.
pub struct CopyCodec {
    plan: Arc<CopyPlan>,
    /// Bytes of an incomplete row.
    tail: Vec<u8>,
    /// The CSV header line is still to come.
    header: bool,
    /// Rows seen, for messages.
    row: u64,
}

/// One field of a row: its bytes as written, and (CSV) whether it was quoted.
struct RawField<'a> {
    bytes: &'a [u8],
    quoted: bool,
}

impl CopyCodec {
    pub fn new(plan: Arc<CopyPlan>) -> CopyCodec {
        let header = matches!(plan.format, CopyFormat::Csv { header: true, .. });
        CopyCodec {
            plan,
            tail: Vec::new(),
            header,
            row: 0,
        }
    }

    /// Feeds COPY data; returns the re-encoded complete rows it finishes.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<u8>, String> {
        self.tail.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.tail.len() + self.tail.len() / 2);
        let mut start = 0;
        while let Some(end) = self.row_end(start) {
            let line = self.tail[start..end].to_vec();
            self.line(&line, &mut out)?;
            out.push(b'\n');
            start = end + 1;
        }
        self.tail.drain(..start);
        if self.tail.len() > MAX_ROW_BYTES {
            return Err(format!(
                "COPY row {} is longer than {MAX_ROW_BYTES} bytes; warden re-cuts rows of tables with encrypted columns and holds no more than that",
                self.row + 1
            ));
        }
        Ok(out)
    }

    /// The end of the copy: re-encodes a last row that has no newline.
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        if !self.tail.is_empty() {
            let line = std::mem::take(&mut self.tail);
            self.line(&line, &mut out)?;
        }
        Ok(out)
    }

    /// The index of the newline ending the row that starts at `start`, if it has arrived.
    fn row_end(&self, start: usize) -> Option<usize> {
        let data = &self.tail[start..];
        match &self.plan.format {
            CopyFormat::Text { .. } => data.iter().position(|&b| b == b'\n').map(|i| start + i),
            CopyFormat::Csv { quote, escape, .. } => {
                let mut quoted = false;
                let mut i = 0;
                while i < data.len() {
                    let b = data[i];
                    if quoted && b == *escape && escape != quote {
                        i += 2;
                        continue;
                    }
                    if b == *quote {
                        quoted = !quoted;
                    } else if b == b'\n' && !quoted {
                        return Some(start + i);
                    }
                    i += 1;
                }
                None
            }
        }
    }

    /// Re-encodes one row (without its newline) into `out`.
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let (line, cr) = match line.strip_suffix(b"\r") {
            Some(l) => (l, true),
            None => (line, false),
        };
        if self.header || line == b"\\." {
            self.header = false;
            out.extend_from_slice(line);
            if cr {
                out.push(b'\r');
            }
            return Ok(());
        }
        self.row += 1;
        let fields = match &self.plan.format {
            CopyFormat::Text { delimiter, .. } => line
                .split(|b| b == delimiter)
                .map(|bytes| RawField {
                    bytes,
                    quoted: false,
                })
                .collect::<Vec<_>>(),
            CopyFormat::Csv {
                delimiter,
                quote,
                escape,
                ..
            } => split_csv(line, *delimiter, *quote, *escape),
        };
        if fields.len() != self.plan.fields.len() {
            return Err(format!(
                "COPY row {} has {} fields; the columns copied are {}",
                self.row,
                fields.len(),
                self.plan.fields.len()
            ));
        }
        for (i, (field, column)) in fields.iter().zip(self.plan.fields.iter()).enumerate() {
            if i > 0 {
                out.push(self.delimiter());
            }
            match column {
                None => self.copy_raw(field, out),
                Some(c) => self.convert(field, c, out)?,
            }
        }
        if cr {
            out.push(b'\r');
        }
        Ok(())
    }

    fn delimiter(&self) -> u8 {
        match &self.plan.format {
            CopyFormat::Text { delimiter, .. } | CopyFormat::Csv { delimiter, .. } => *delimiter,
        }
    }

    fn copy_raw(&self, field: &RawField<'_>, out: &mut Vec<u8>) {
        match &self.plan.format {
            CopyFormat::Csv { quote, escape, .. } if field.quoted => {
                write_csv_quoted(field.bytes, *quote, *escape, out)
            }
            _ => out.extend_from_slice(field.bytes),
        }
    }

    /// Encrypts or decrypts one protected field.
    fn convert(
        &self,
        field: &RawField<'_>,
        column: &ColumnCrypto,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        match &self.plan.format {
            CopyFormat::Text { delimiter, null } => {
                if field.bytes == null.as_bytes() {
                    out.extend_from_slice(field.bytes);
                    return Ok(());
                }
                let converted = self.transcode(column, &unescape_text(field.bytes))?;
                escape_text(&converted, *delimiter, out);
            }
            CopyFormat::Csv {
                delimiter,
                quote,
                escape,
                null,
                ..
            } => {
                if !field.quoted && field.bytes == null.as_bytes() {
                    out.extend_from_slice(field.bytes);
                    return Ok(());
                }
                let value = if field.quoted {
                    unquote_csv(field.bytes, *quote, *escape)
                } else {
                    field.bytes.to_vec()
                };
                let converted = self.transcode(column, &value)?;
                let needs_quotes = converted.is_empty()
                    || converted.as_slice() == null.as_bytes()
                    || converted.iter().any(|&b| {
                        b == *delimiter || b == *quote || b == *escape || b == b'\n' || b == b'\r'
                    });
                if needs_quotes {
                    write_csv_quoted(&converted, *quote, *escape, out);
                } else {
                    out.extend_from_slice(&converted);
                }
            }
        }
        Ok(())
    }
}

impl CopyCodec {
    /// One protected value: the application's text to the stored text form (in), or back
    /// (out).
    fn transcode(&self, column: &ColumnCrypto, value: &[u8]) -> Result<Vec<u8>, String> {
        let fail = |e: &dyn std::fmt::Display| format!("COPY row {}: {e}", self.row);
        if self.plan.into_database {
            let stored = column.encrypt_text(value).map_err(|e| fail(&e))?;
            Ok(column.stored_to_db_text(&stored).into_bytes())
        } else {
            let stored = column.stored_from_db_text(value).map_err(|e| fail(&e))?;
            column.decrypt_to_text(&stored).map_err(|e| fail(&e))
        }
    }
}

/// Splits a CSV row into fields; quoted fields keep their quotes off and are marked.
fn split_csv(line: &[u8], delimiter: u8, quote: u8, escape: u8) -> Vec<RawField<'_>> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut was_quoted = false;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if quoted && b == escape && escape != quote && i + 1 < line.len() {
            i += 2;
            continue;
        }
        if b == quote {
            quoted = !quoted;
            was_quoted = true;
        } else if b == delimiter && !quoted {
            fields.push(csv_field(&line[start..i], quote, was_quoted));
            start = i + 1;
            was_quoted = false;
        }
        i += 1;
    }
    fields.push(csv_field(&line[start..], quote, was_quoted));
    fields
}

fn csv_field(bytes: &[u8], quote: u8, quoted: bool) -> RawField<'_> {
    if quoted && bytes.len() >= 2 && bytes[0] == quote && bytes[bytes.len() - 1] == quote {
        RawField {
            bytes: &bytes[1..bytes.len() - 1],
            quoted: true,
        }
    } else {
        RawField {
            bytes,
            quoted: false,
        }
    }
}

/// The value of a quoted CSV field's inside.
fn unquote_csv(inside: &[u8], quote: u8, escape: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(inside.len());
    let mut i = 0;
    while i < inside.len() {
        let b = inside[i];
        if b == escape
            && i + 1 < inside.len()
            && (inside[i + 1] == quote || inside[i + 1] == escape)
        {
            out.push(inside[i + 1]);
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

fn write_csv_quoted(value: &[u8], quote: u8, escape: u8, out: &mut Vec<u8>) {
    out.push(quote);
    for &b in value {
        if b == quote || (b == escape && escape != quote) {
            out.push(escape);
        }
        out.push(b);
    }
    out.push(quote);
}

/// The value of a text-format field (backslash escapes resolved).
fn unescape_text(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' || i + 1 == field.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(next - b'0');
                let mut n = 1;
                while n < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    v = v * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' if i < field.len() && field[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    v = v * 16 + (field[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// Writes a value as a text-format field.
fn escape_text(value: &[u8], delimiter: u8, out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' if delimiter == b'\t' => out.extend_from_slice(b"\\t"),
            b if b == delimiter => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_round_trip() {
        let value = b"a\\b\tc\nd\re";
        let mut escaped = Vec::new();
        escape_text(value, b'\t', &mut escaped);
        assert_eq!(escaped, b"a\\\\b\\tc\\nd\\re");
        assert_eq!(unescape_text(&escaped), value);
        assert_eq!(unescape_text(b"\\101\\x42\\q"), b"ABq");
    }

    #[test]
    fn csv_fields_split_and_unquote() {
        let fields = split_csv(b"1,\"a,\"\"b\"\"\",,\"\"", b',', b'"', b'"');
        let shown: Vec<(Vec<u8>, bool)> = fields
            .iter()
            .map(|f| (unquote_csv(f.bytes, b'"', b'"'), f.quoted))
            .collect();
        assert_eq!(
            shown,
            [
                (b"1".to_vec(), false),
                (b"a,\"b\"".to_vec(), true),
                (b"".to_vec(), false),
                (b"".to_vec(), true),
            ]
        );
    }
}
