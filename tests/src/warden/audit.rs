//! Audit records as the auditor's CLI prints them (`warden audit query --format json`).
//!
//! Tests read the audit trail the way an auditor does, through the binary, and never through the
//! audit crate's types: the JSON is the contract. Each record is one JSON object whose keys are
//! the audit crate's export fields (`seq`, `time`, `event`, `session_id`, `upstream`, `user`,
//! `database`, `client_ip`, `client_port`, `client_mac`, `program`, `tls_subject`,
//! `statement_kind`, `fingerprint`, `sql`, `tables`, `columns`, `rows`, `latency_us`, `result`,
//! `error_code`, `message`, ...). The output may be a JSON array or one object per line.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord(pub Value);

impl AuditRecord {
    /// A string field (`None` when absent or null).
    pub fn str(&self, field: &str) -> Option<&str> {
        self.0.get(field).and_then(Value::as_str)
    }

    /// An unsigned integer field.
    pub fn u64(&self, field: &str) -> Option<u64> {
        self.0.get(field).and_then(Value::as_u64)
    }

    /// A list-of-strings field (`tables`, `columns`).
    pub fn strings(&self, field: &str) -> Vec<String> {
        self.0
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `login`, `login_failed`, `statement` or `session_end`.
    pub fn event(&self) -> &str {
        self.str("event").unwrap_or("")
    }

    /// The statement kind (`select`, `insert`, `ddl.create`...).
    pub fn statement_kind(&self) -> &str {
        self.str("statement_kind").unwrap_or("")
    }

    /// The stored (redacted) SQL.
    pub fn sql(&self) -> &str {
        self.str("sql").unwrap_or("")
    }

    /// `ok`, `error` or `refused`.
    pub fn result(&self) -> &str {
        self.str("result").unwrap_or("")
    }

    /// The SQLSTATE of a failed statement or login.
    pub fn error_code(&self) -> Option<&str> {
        self.str("error_code")
    }

    /// The position in the hash chain.
    pub fn seq(&self) -> Option<u64> {
        self.u64("seq")
    }

    /// Whether any of the record's tables ends with `table` (qualified names match too).
    pub fn touches_table(&self, table: &str) -> bool {
        self.strings("tables").iter().any(|t| {
            let t = t.to_ascii_lowercase();
            t == table || t.ends_with(&format!(".{table}"))
        })
    }

    /// The record as pretty JSON, for messages.
    pub fn pretty(&self) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_default()
    }
}

/// Parses the output of `warden audit query --format json`: a JSON array, or JSON Lines.
pub fn parse_records(output: &str) -> Result<Vec<AuditRecord>> {
    let trimmed = output.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Value> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).context("the audit query output is not a JSON array")?
    } else {
        trimmed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| {
                    format!(
                        "line {} of the audit query output is not JSON: {line}",
                        i + 1
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    values
        .into_iter()
        .map(|v| {
            if v.is_object() {
                Ok(AuditRecord(v))
            } else {
                bail!("an audit record is not a JSON object: {v}")
            }
        })
        .collect()
}

/// Records as a short listing, for assertion messages.
pub fn summarize(records: &[AuditRecord]) -> String {
    records
        .iter()
        .map(|r| {
            format!(
                "#{} {} {} {} rows={:?} {} {:?}",
                r.seq().unwrap_or(0),
                r.event(),
                r.statement_kind(),
                r.result(),
                r.u64("rows"),
                r.error_code().unwrap_or(""),
                r.sql()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arrays_and_json_lines() {
        let lines = "{\"seq\":1,\"event\":\"login\",\"tables\":[]}\n{\"seq\":2,\"event\":\"statement\",\"tables\":[\"public.t\"]}\n";
        let records = parse_records(lines).unwrap();
        assert_eq!(records.len(), 2);
        assert!(records[1].touches_table("t"));
        assert!(!records[0].touches_table("t"));
        let array =
            parse_records("[{\"seq\":7,\"result\":\"error\",\"error_code\":\"22012\"}]").unwrap();
        assert_eq!(array[0].seq(), Some(7));
        assert_eq!(array[0].error_code(), Some("22012"));
        assert!(parse_records("[1]").is_err());
        assert!(parse_records("").unwrap().is_empty());
    }
}
