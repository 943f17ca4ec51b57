//! Exports parse back to the records they came from.

mod common;

use common::*;
use serde_json::{Map, Value};
use warden_audit::export::{self, ExportFormat, FIELDS};
use warden_audit::store::AuditStore;
use warden_audit::{AuditFilter, Order, StoredRecord};

async fn records() -> (tempfile::TempDir, Vec<StoredRecord>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    three_day_store(&dir).await;
    let records = all(&dir);
    (tmp, records)
}

fn export(dir: &std::path::Path, format: ExportFormat, bom: bool) -> Vec<u8> {
    let filter = AuditFilter {
        order: Order::Sequence,
        ..Default::default()
    };
    let store = AuditStore::open(dir).unwrap();
    let mut out = Vec::new();
    let n = export::write_records(store.query(&filter).unwrap(), format, &mut out, bom).unwrap();
    assert_eq!(n, 28);
    out
}

#[tokio::test]
async fn json_lines_parse_back_exactly() {
    let (tmp, records) = records().await;
    let out = export(&tmp.path().join("audit"), ExportFormat::Jsonl, false);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), records.len());
    for (line, original) in lines.iter().zip(&records) {
        let value: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected_keys = FIELDS.to_vec();
        expected_keys.sort();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        assert_eq!(keys_sorted, expected_keys, "every field, always present");
        let back: StoredRecord = serde_json::from_value(value).unwrap();
        assert_eq!(&back, original);
    }
    assert!(
        lines[0].starts_with("{\"seq\":1,\"time\":\"2025-03-01T12:00:00.000000Z\""),
        "{}",
        lines[0]
    );
}

/// Rebuilds a record from a CSV row: empty cells are absent values, lists are JSON, and
/// formula-looking cells lose their protective quote.
fn from_csv(headers: &csv::StringRecord, row: &csv::StringRecord) -> StoredRecord {
    let numbers = [
        "seq",
        "session_id",
        "client_port",
        "statement_count",
        "rows",
        "result_bytes",
        "latency_us",
    ];
    let lists = ["tables", "columns", "datasets"];
    let mut object = Map::new();
    for (name, cell) in headers.iter().zip(row.iter()) {
        let cell = export::unneutralise(cell);
        let value = if lists.contains(&name) {
            serde_json::from_str(cell).unwrap()
        } else if cell.is_empty() {
            Value::Null
        } else if numbers.contains(&name) {
            Value::from(cell.parse::<u64>().unwrap())
        } else {
            Value::from(cell)
        };
        object.insert(name.to_owned(), value);
    }
    serde_json::from_value(Value::Object(object)).unwrap()
}

#[tokio::test]
async fn csv_parses_back_and_defuses_formulas() {
    let (tmp, records) = records().await;
    for bom in [false, true] {
        let out = export(&tmp.path().join("audit"), ExportFormat::Csv, bom);
        assert_eq!(out.starts_with("\u{feff}".as_bytes()), bom);
        let body = if bom { &out[3..] } else { &out[..] };
        let mut reader = csv::Reader::from_reader(body);
        let headers = reader.headers().unwrap().clone();
        assert_eq!(headers.iter().collect::<Vec<_>>(), FIELDS);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), records.len());
        for (row, original) in rows.iter().zip(&records) {
            assert_eq!(&from_csv(&headers, row), original);
            let sql = &row[FIELDS.iter().position(|f| *f == "sql").unwrap()];
            assert!(!sql.starts_with('='), "a formula reached the CSV: {sql}");
        }
    }
}

#[tokio::test]
async fn the_table_shows_the_records_without_control_characters() {
    let (_tmp, mut records) = records().await;
    records[0].record.sql = Some("SELECT '\u{1b}[2J' -- clears a terminal".into());
    let mut out = Vec::new();
    export::write_table(&records, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains('\u{1b}'));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), records.len() + 1);
    assert!(lines[0].starts_with("SEQ"));
    assert!(text.contains("参保人员"));
    // Columns line up, Chinese text included: CLIENT starts at the same terminal cell on
    // every line.
    let column = |line: &str, at: &str| export::display_width(&line[..line.find(at).unwrap()]);
    let header_at = column(lines[0], " CLIENT") + 1;
    for line in &lines[1..] {
        assert_eq!(column(line, " 10.") + 1, header_at, "{text}");
    }
}
