//! The auditor's side of a day file: opening it read-only, checking it is a Warden audit file,
//! and turning rows back into records.
//!
//! Files come from disk and may be damaged or forged, so nothing here panics on their content:
//! every problem becomes an error naming the file and, for rows, the column.

use std::path::{Path, PathBuf};

use rusqlite::types::FromSql;
use rusqlite::{Connection, OpenFlags, Row};
use time::Date;
use time::macros::format_description;

use super::schema::{self, meta_key};
use crate::chain::ChainHash;
use crate::error::AuditError;
use crate::record::{AuditRecord, StoredRecord};
use crate::timefmt;

/// What a day file's meta table says about its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMeta {
    pub day: Date,
    pub first_seq: u64,
    pub prev_hash: ChainHash,
    /// `None` when this file starts the chain.
    pub prev_file: Option<String>,
    pub prev_checkpoint_seq: u64,
    /// The day is over and the sealed indexes are built.
    pub sealed: bool,
    /// The full-text index is built.
    pub full_text: bool,
}

/// Opens a day file for reading only.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| AuditError::sqlite(path, e))?;
    // The writer holds its write transaction briefly; readers wait for it rather than fail.
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| AuditError::sqlite(path, e))?;
    Ok(conn)
}

fn not_audit(path: &Path, reason: impl Into<String>) -> AuditError {
    AuditError::NotAuditFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and checks the meta table.
pub(crate) fn read_meta(conn: &Connection, path: &Path) -> Result<FileMeta, AuditError> {
    let get = |key: &str| -> Result<String, AuditError> {
        match schema::meta_value(conn, key) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(not_audit(
                path,
                format!("its meta table has no {key:?} entry"),
            )),
            Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => {
                Err(not_audit(path, "it has no meta table"))
            }
            Err(e) => Err(not_audit(path, e.to_string())),
        }
    };
    let format = get(meta_key::FORMAT)?;
    if format != schema::FORMAT_NAME {
        return Err(not_audit(path, format!("its format is {format:?}")));
    }
    let version = get(meta_key::SCHEMA_VERSION)?;
    if version != schema::SCHEMA_VERSION {
        return Err(not_audit(
            path,
            format!(
                "it has schema version {version}; this Warden reads version {}",
                schema::SCHEMA_VERSION
            ),
        ));
    }
    let day_text = get(meta_key::DAY)?;
    let day = Date::parse(&day_text, format_description!("[year]-[month]-[day]"))
        .map_err(|_| not_audit(path, format!("its day {day_text:?} is not a date")))?;
    let first_seq_text = get(meta_key::FIRST_SEQ)?;
    let first_seq: u64 = first_seq_text.parse().map_err(|_| {
        not_audit(
            path,
            format!("its first_seq {first_seq_text:?} is not a number"),
        )
    })?;
    let prev_hash_text = get(meta_key::PREV_HASH)?;
    let prev_hash = parse_hash(&prev_hash_text).ok_or_else(|| {
        not_audit(
            path,
            format!("its prev_hash {prev_hash_text:?} is not a hash"),
        )
    })?;
    let prev_file = get(meta_key::PREV_FILE)?;
    let prev_file = (!prev_file.is_empty()).then_some(prev_file);
    let prev_cp_text = get(meta_key::PREV_CHECKPOINT_SEQ)?;
    let prev_checkpoint_seq = prev_cp_text.parse().map_err(|_| {
        not_audit(
            path,
            format!("its prev_checkpoint_seq {prev_cp_text:?} is not a number"),
        )
    })?;
    let sealed = get(meta_key::SEALED)? == "1";
    let full_text = get(meta_key::FULL_TEXT)? == "1";
    Ok(FileMeta {
        day,
        first_seq,
        prev_hash,
        prev_file,
        prev_checkpoint_seq,
        sealed,
        full_text,
    })
}

/// A 32-byte hash from 64 hex digits.
pub(crate) fn parse_hash(text: &str) -> Option<ChainHash> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// Opens a day file read-only and reads its meta table.
pub(crate) fn open_day_file(path: &Path) -> Result<(Connection, FileMeta), AuditError> {
    let conn = open_read_only(path)?;
    let meta = read_meta(&conn, path)?;
    Ok((conn, meta))
}

/// The `(min, max)` event time in a file, `None` when it has no records.
pub(crate) fn time_span(conn: &Connection, path: &Path) -> Result<Option<(i64, i64)>, AuditError> {
    conn.query_row("SELECT min(time_us), max(time_us) FROM records", [], |r| {
        Ok(
            match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            },
        )
    })
    .map_err(|e| not_audit(path, format!("cannot read its records: {e}")))
}

/// A row that cannot be turned back into a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedRow {
    pub seq: Option<u64>,
    pub reason: String,
}

fn col<T: FromSql>(row: &Row<'_>, idx: usize, name: &str) -> Result<T, String> {
    row.get::<_, T>(idx)
        .map_err(|e| format!("column {name}: {e}"))
}

fn text_enum<T: std::str::FromStr>(row: &Row<'_>, idx: usize, name: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let s: String = col(row, idx, name)?;
    s.parse().map_err(|e: T::Err| format!("column {name}: {e}"))
}

fn list(row: &Row<'_>, idx: usize, name: &str) -> Result<Vec<String>, String> {
    let s: String = col(row, idx, name)?;
    serde_json::from_str(&s).map_err(|e| format!("column {name}: not a JSON list of strings: {e}"))
}

fn opt_u64(row: &Row<'_>, idx: usize, name: &str) -> Result<Option<u64>, String> {
    Ok(col::<Option<i64>>(row, idx, name)?.map(|v| v as u64))
}

/// Decodes a row selected with [`schema::RECORD_COLUMNS`].
pub(crate) fn decode_row(row: &Row<'_>) -> Result<StoredRecord, MalformedRow> {
    let seq = row.get::<_, i64>(0).ok().map(|s| s as u64);
    decode_fields(row).map_err(|reason| MalformedRow { seq, reason })
}

fn decode_fields(row: &Row<'_>) -> Result<StoredRecord, String> {
    let seq = col::<i64>(row, 0, "seq")? as u64;
    let time_us: i64 = col(row, 1, "time_us")?;
    let time = timefmt::from_micros(time_us)
        .ok_or_else(|| format!("column time_us: {time_us} is out of range"))?;
    let client_ip: String = col(row, 8, "client_ip")?;
    let client_ip = client_ip
        .parse()
        .map_err(|_| format!("column client_ip: {client_ip:?} is not an IP address"))?;
    let client_port: i64 = col(row, 9, "client_port")?;
    let client_port = u16::try_from(client_port)
        .map_err(|_| format!("column client_port: {client_port} is not a port"))?;
    let client_mac = match col::<Option<String>>(row, 10, "client_mac")? {
        None => None,
        Some(m) => Some(m.parse().map_err(|e| format!("column client_mac: {e}"))?),
    };
    let statement_count = match col::<Option<i64>>(row, 18, "statement_count")? {
        None => None,
        Some(n) => Some(
            u32::try_from(n).map_err(|_| format!("column statement_count: {n} is out of range"))?,
        ),
    };
    let hash: Vec<u8> = col(row, 30, "hash")?;
    let record = AuditRecord {
        time,
        event: text_enum(row, 2, "event")?,
        session_id: col::<i64>(row, 3, "session_id")? as u64,
        upstream: col(row, 4, "upstream")?,
        protocol: text_enum(row, 5, "protocol")?,
        user: col(row, 6, "user_name")?,
        database: col(row, 7, "database_name")?,
        client_ip,
        client_port,
        client_mac,
        program: col(row, 11, "program")?,
        client_host: col(row, 12, "client_host")?,
        os_user: col(row, 13, "os_user")?,
        tls_subject: col(row, 14, "tls_subject")?,
        statement_kind: col(row, 15, "statement_kind")?,
        fingerprint: col(row, 16, "fingerprint")?,
        sql: col(row, 17, "sql_text")?,
        statement_count,
        tables: list(row, 19, "tables_json")?,
        columns: list(row, 20, "columns_json")?,
        datasets: list(row, 21, "datasets_json")?,
        rows: opt_u64(row, 22, "row_count")?,
        result_bytes: opt_u64(row, 23, "result_bytes")?,
        latency_us: opt_u64(row, 24, "latency_us")?,
        result: text_enum(row, 25, "result")?,
        error_code: col(row, 26, "error_code")?,
        message: col(row, 27, "message")?,
        decision: col(row, 28, "decision")?,
        rule: col(row, 29, "rule_name")?,
    };
    Ok(StoredRecord {
        seq,
        record,
        hash: hex::encode(hash),
    })
}

/// The directory a store lives in, checked to exist.
pub(crate) fn existing_dir(dir: &Path) -> Result<PathBuf, AuditError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(dir.to_path_buf()),
        Ok(_) => Err(AuditError::io(
            dir,
            std::io::Error::other("this is a file, not the audit directory"),
        )),
        Err(e) => Err(AuditError::io(dir, e)),
    }
}
