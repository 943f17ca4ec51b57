//! Writing records out: JSON Lines (lossless, for machines), CSV (for spreadsheets) and an
//! aligned table (for a terminal).
//!
//! All three stream: records are written as the query yields them (the table buffers only the
//! rows it shows). Every format lists the fields in [`FIELDS`] order.

use std::io::Write;
use std::str::FromStr;

use crate::error::AuditError;
use crate::record::StoredRecord;
use crate::timefmt;

/// The fields of an exported record, in order: JSON keys and CSV header names.
pub const FIELDS: [&str; 31] = [
    "seq",
    "time",
    "event",
    "session_id",
    "upstream",
    "protocol",
    "user",
    "database",
    "client_ip",
    "client_port",
    "client_mac",
    "program",
    "client_host",
    "os_user",
    "tls_subject",
    "statement_kind",
    "fingerprint",
    "sql",
    "statement_count",
    "tables",
    "columns",
    "datasets",
    "rows",
    "result_bytes",
    "latency_us",
    "result",
    "error_code",
    "message",
    "decision",
    "rule",
    "hash",
];

/// A file format for exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line, every field present (`null` when absent). Lossless.
    Jsonl,
    /// RFC 4180 CSV with a header row; lists as JSON arrays, absent values as empty cells,
    /// and cells a spreadsheet would run as a formula prefixed with `'`.
    Csv,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" | "json" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(format!("unknown export format {other:?} (jsonl or csv)")),
        }
    }
}

fn io_err(e: std::io::Error) -> AuditError {
    AuditError::Export(e.to_string())
}

/// Writes `records` in `format` to `out`; returns how many were written. CSV gets a UTF-8
/// byte-order mark first when `bom` is set (Excel and WPS need it to read Chinese text).
pub fn write_records<W: Write>(
    records: impl IntoIterator<Item = Result<StoredRecord, AuditError>>,
    format: ExportFormat,
    out: W,
    bom: bool,
) -> Result<u64, AuditError> {
    match format {
        ExportFormat::Jsonl => write_jsonl(records, out),
        ExportFormat::Csv => write_csv(records, out, bom),
    }
}

/// Writes `records` as JSON Lines.
pub fn write_jsonl<W: Write>(
    records: impl IntoIterator<Item = Result<StoredRecord, AuditError>>,
    out: W,
) -> Result<u64, AuditError> {
    let mut out = std::io::BufWriter::new(out);
    let mut n = 0;
    for r in records {
        let r = r?;
        serde_json::to_writer(&mut out, &r).map_err(|e| AuditError::Export(e.to_string()))?;
        out.write_all(b"\n").map_err(io_err)?;
        n += 1;
    }
    out.flush().map_err(io_err)?;
    Ok(n)
}

/// Writes `records` as CSV with a header row.
pub fn write_csv<W: Write>(
    records: impl IntoIterator<Item = Result<StoredRecord, AuditError>>,
    mut out: W,
    bom: bool,
) -> Result<u64, AuditError> {
    if bom {
        out.write_all("\u{feff}".as_bytes()).map_err(io_err)?;
    }
    let mut w = csv::Writer::from_writer(out);
    let csv_err = |e: csv::Error| AuditError::Export(e.to_string());
    w.write_record(FIELDS).map_err(csv_err)?;
    let mut n = 0;
    for r in records {
        w.write_record(csv_cells(&r?)).map_err(csv_err)?;
        n += 1;
    }
    w.flush().map_err(io_err)?;
    Ok(n)
}

/// The CSV cells of a record, in [`FIELDS`] order.
pub fn csv_cells(s: &StoredRecord) -> Vec<String> {
    let r = &s.record;
    let opt = |v: &Option<String>| v.as_deref().map(neutralise).unwrap_or_default();
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let list = |v: &Vec<String>| neutralise(&serde_json::to_string(v).unwrap_or_default());
    vec![
        s.seq.to_string(),
        timefmt::format_micros(r.time),
        r.event.to_string(),
        r.session_id.to_string(),
        neutralise(&r.upstream),
        r.protocol.to_string(),
        neutralise(&r.user),
        neutralise(&r.database),
        r.client_ip.to_string(),
        r.client_port.to_string(),
        r.client_mac.map(|m| m.to_string()).unwrap_or_default(),
        opt(&r.program),
        opt(&r.client_host),
        opt(&r.os_user),
        opt(&r.tls_subject),
        opt(&r.statement_kind),
        opt(&r.fingerprint),
        opt(&r.sql),
        num(r.statement_count.map(u64::from)),
        list(&r.tables),
        list(&r.columns),
        list(&r.datasets),
        num(r.rows),
        num(r.result_bytes),
        num(r.latency_us),
        r.result.to_string(),
        opt(&r.error_code),
        opt(&r.message),
        opt(&r.decision),
        opt(&r.rule),
        s.hash.clone(),
    ]
}

/// Prefixes `'` to text a spreadsheet would evaluate as a formula (CSV injection): cells
/// starting with `=`, `+`, `-`, `@`, tab or carriage return. Audited SQL is attacker-chosen.
pub fn neutralise(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

/// Undoes [`neutralise`], for reading a CSV export back.
pub fn unneutralise(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

/// Widest SQL column in the table, in terminal cells.
const SQL_WIDTH: usize = 70;

/// Writes `records` as an aligned table for a terminal. Control characters are replaced so
/// audited text cannot drive the auditor's terminal.
pub fn write_table<W: Write>(records: &[StoredRecord], mut out: W) -> Result<(), AuditError> {
    let header = [
        "SEQ",
        "TIME (UTC)",
        "EVENT",
        "USER",
        "CLIENT",
        "PROGRAM",
        "KIND",
        "RESULT",
        "ROWS",
        "MS",
        "SQL",
    ];
    let rows: Vec<[String; 11]> = records.iter().map(table_row).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| display_width(h)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(display_width(cell));
        }
    }
    let mut line = String::new();
    let numeric = [
        true, false, false, false, false, false, false, false, true, true, false,
    ];
    for cells in std::iter::once(header.map(str::to_owned)).chain(rows) {
        line.clear();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(display_width(cell));
            let last = i == cells.len() - 1;
            if numeric[i] {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if !last {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            if !last {
                line.push_str("  ");
            }
        }
        writeln!(out, "{}", line.trim_end()).map_err(io_err)?;
    }
    out.flush().map_err(io_err)
}

fn table_row(s: &StoredRecord) -> [String; 11] {
    let r = &s.record;
    let time = timefmt::format_micros(r.time);
    // "2025-03-01T08:00:00.123456Z" -> "2025-03-01 08:00:00.123"
    let time = format!("{} {}", &time[..10], &time[11..23.min(time.len())]);
    let result = match &r.error_code {
        Some(code) => format!("{} {}", r.result, code),
        None => r.result.to_string(),
    };
    let text = r.sql.as_deref().or(r.message.as_deref()).unwrap_or("");
    [
        s.seq.to_string(),
        time,
        r.event.to_string(),
        clean(&r.user, 24),
        r.client_ip.to_string(),
        clean(r.program.as_deref().unwrap_or("-"), 20),
        clean(r.statement_kind.as_deref().unwrap_or("-"), 16),
        clean(&result, 20),
        r.rows.map_or("-".into(), |n| n.to_string()),
        r.latency_us
            .map_or("-".into(), |us| format!("{}.{:03}", us / 1000, us % 1000)),
        clean(text, SQL_WIDTH),
    ]
}

/// Collapses whitespace, replaces control characters and truncates to `max` terminal cells.
fn clean(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut width = 0;
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_whitespace() {
            ' '
        } else if c.is_control() {
            '\u{fffd}'
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        let w = char_width(c);
        if width + w > max.saturating_sub(1) {
            out.push('…');
            return out;
        }
        width += w;
        out.push(c);
    }
    out
}

/// Terminal cells `text` takes.
pub fn display_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

/// Terminal cells a character takes: 2 for East Asian wide characters, else 1.
fn char_width(c: char) -> usize {
    let c = c as u32;
    let wide = matches!(c,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x20000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralises_formulas_and_undoes_it() {
        for t in ["=HYPERLINK(\"x\")", "+1", "-- comment", "@SUM(A1)"] {
            let n = neutralise(t);
            assert!(n.starts_with('\''));
            assert_eq!(unneutralise(&n), t);
        }
        assert_eq!(neutralise("select 1"), "select 1");
        assert_eq!(unneutralise("'quoted"), "'quoted");
    }

    #[test]
    fn cleans_and_measures() {
        assert_eq!(display_width("身份证号"), 8);
        assert_eq!(
            clean("select\n\t*  from\x1b[31m t", 80),
            "select * from\u{fffd}[31m t"
        );
        let long = clean(&"x".repeat(100), 10);
        assert_eq!(display_width(&long), 10);
        assert!(long.ends_with('…'));
        let wide = clean(&"身".repeat(10), 9);
        assert!(display_width(&wide) <= 9);
    }
}
