//! Finding records: the filter auditors give, and a streaming merge across the day files.
//!
//! Each day file is read by one streaming query on its own thread, through a bounded channel, so
//! memory stays bounded however many records match. A record can land in the file of a later day
//! than its event time (it was written after midnight), so files' time spans overlap a little;
//! the iterator keeps one cursor per overlapping file and merges them, opening a file only when
//! the merge reaches its first record, and closing it when it is exhausted.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc;

use rusqlite::Connection;
use rusqlite::types::Value;
use time::{Duration, OffsetDateTime};

use crate::error::AuditError;
use crate::record::{AuditEvent, AuditResult, StoredRecord};
use crate::store::read::{self, FileMeta};
use crate::store::schema::RECORD_COLUMNS;
use crate::store::{AuditStore, DayFile};
use crate::timefmt;

/// In which order records come out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest event first (ties in write order).
    #[default]
    TimeAsc,
    /// Newest event first.
    TimeDesc,
    /// Write order: the order of the hash chain.
    Sequence,
}

/// A client address filter: one address, or a network in CIDR notation (`10.1.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpMatch {
    /// Exactly this address.
    Exact(IpAddr),
    /// Any address in this network.
    Network {
        /// Network address.
        addr: IpAddr,
        /// Prefix length in bits.
        prefix: u8,
    },
}

impl IpMatch {
    /// Whether `ip` matches.
    pub fn matches(&self, ip: IpAddr) -> bool {
        match *self {
            IpMatch::Exact(a) => a == ip,
            IpMatch::Network { addr, prefix } => match (addr, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    u32::from(n) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            },
        }
    }
}

impl FromStr for IpMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an IP address or a CIDR network (10.1.0.0/16)");
        match s.split_once('/') {
            None => s.parse().map(IpMatch::Exact).map_err(|_| bad()),
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| bad())?;
                let prefix: u8 = prefix.parse().map_err(|_| bad())?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if prefix > max {
                    return Err(bad());
                }
                Ok(IpMatch::Network { addr, prefix })
            }
        }
    }
}

/// Which records to return. Every set field must match (AND); unset fields match anything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Event time at or after this.
    pub from: Option<OffsetDateTime>,
    /// Event time before this.
    pub to: Option<OffsetDateTime>,
    /// Database user, exactly.
    pub user: Option<String>,
    /// Client address or network.
    pub client_ip: Option<IpMatch>,
    /// Client program, exactly.
    pub program: Option<String>,
    /// A table the statement touches: `users` matches `users` and `public.users`;
    /// `public.users` matches only that. Case-insensitive.
    pub table: Option<String>,
    /// Statement kind: `ddl` matches `ddl` and every `ddl.*` kind.
    pub kind: Option<String>,
    /// Event.
    pub event: Option<AuditEvent>,
    /// Result.
    pub result: Option<AuditResult>,
    /// Session id.
    pub session_id: Option<u64>,
    /// Text in the SQL or the message (substring, case-insensitive).
    pub text: Option<String>,
    /// At most this many records.
    pub limit: Option<u64>,
    /// Output order.
    pub order: Order,
}

/// Records a file's reader thread may run ahead of the merge.
const CHANNEL: usize = 256;

impl AuditFilter {
    /// The WHERE clause (without keyset) and its parameters for a file, using the sealed
    /// indexes when the file has them.
    fn where_clause(&self, sealed: bool, full_text: bool) -> (String, Vec<Value>) {
        let mut terms: Vec<String> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        if let Some(from) = self.from {
            terms.push("time_us >= ?".into());
            params.push(Value::Integer(timefmt::to_micros(from)));
        }
        if let Some(to) = self.to {
            terms.push("time_us < ?".into());
            params.push(Value::Integer(timefmt::to_micros(to)));
        }
        if let Some(user) = &self.user {
            terms.push("user_name = ?".into());
            params.push(Value::Text(user.clone()));
        }
        if let Some(IpMatch::Exact(ip)) = self.client_ip {
            terms.push("client_ip = ?".into());
            params.push(Value::Text(ip.to_string()));
        }
        if let Some(program) = &self.program {
            terms.push("program = ?".into());
            params.push(Value::Text(program.clone()));
        }
        if let Some(table) = &self.table {
            let table = table.to_ascii_lowercase();
            if sealed {
                terms.push("seq IN (SELECT seq FROM record_tables WHERE name = ?)".into());
                params.push(Value::Text(table));
            } else {
                // Same matching as the sealed table list: the name, or `anything.name`.
                terms.push(
                    "EXISTS (SELECT 1 FROM json_each(records.tables_json) AS t \
                     WHERE lower(t.value) = ? OR substr(lower(t.value), -?) = ?)"
                        .into(),
                );
                let suffix_len = table.chars().count() as i64 + 1;
                let dotted = format!(".{table}");
                params.push(Value::Text(table));
                params.push(Value::Integer(suffix_len));
                params.push(Value::Text(dotted));
            }
        }
        if let Some(kind) = &self.kind {
            // `kind` itself, or `kind.` < k < `kind/` ('/' follows '.'): index-friendly prefix.
            terms
                .push("(statement_kind = ? OR (statement_kind > ? AND statement_kind < ?))".into());
            params.push(Value::Text(kind.clone()));
            params.push(Value::Text(format!("{kind}.")));
            params.push(Value::Text(format!("{kind}/")));
        }
        if let Some(event) = self.event {
            terms.push("event = ?".into());
            params.push(Value::Text(event.as_str().into()));
            if event != AuditEvent::Statement {
                terms.push("event <> 'statement'".into()); // lets SQLite use the partial index
            }
        }
        if let Some(result) = self.result {
            terms.push("result = ?".into());
            params.push(Value::Text(result.as_str().into()));
            if result != AuditResult::Ok {
                terms.push("result <> 'ok'".into()); // lets SQLite use the partial index
            }
        }
        if let Some(session) = self.session_id {
            terms.push("session_id = ?".into());
            params.push(Value::Integer(session as i64));
        }
        if let Some(text) = &self.text {
            // The trigram index needs at least three characters; shorter text scans.
            if full_text && text.chars().count() >= 3 {
                terms.push(
                    "seq IN (SELECT rowid FROM records_fts WHERE records_fts MATCH ?)".into(),
                );
                params.push(Value::Text(format!("\"{}\"", text.replace('"', "\"\""))));
            } else {
                terms.push("(sql_text LIKE ? ESCAPE '\\' OR message LIKE ? ESCAPE '\\')".into());
                let pattern = format!("%{}%", like_escape(text));
                params.push(Value::Text(pattern.clone()));
                params.push(Value::Text(pattern));
            }
        }
        let clause = if terms.is_empty() {
            "1".to_owned()
        } else {
            terms.join(" AND ")
        };
        (clause, params)
    }

    /// Checks done in Rust after SQL (a CIDR network cannot be matched on the stored text).
    fn post_filter(&self, r: &StoredRecord) -> bool {
        match self.client_ip {
            Some(m @ IpMatch::Network { .. }) => m.matches(r.record.client_ip),
            _ => true,
        }
    }
}

fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A merge key, normalised so smaller always comes first whatever the order.
type Key = (i64, i64);

fn normalise(order: Order, key: Key) -> Key {
    match order {
        Order::TimeDesc => (!key.0, !key.1),
        Order::TimeAsc | Order::Sequence => key,
    }
}

/// One file being read: its own thread runs the query once and streams the matching records
/// through a small bounded channel, so memory stays bounded and SQLite sorts (when the plan
/// needs a sort) once per file rather than once per page.
struct Cursor {
    rx: mpsc::Receiver<Result<StoredRecord, AuditError>>,
    front: Option<StoredRecord>,
}

impl Cursor {
    fn key(order: Order, r: &StoredRecord) -> Key {
        match order {
            Order::Sequence => (r.seq as i64, 0),
            _ => (r.record.time_micros(), r.seq as i64),
        }
    }

    fn open(
        path: PathBuf,
        sql: String,
        params: Vec<Value>,
        filter: AuditFilter,
    ) -> Result<Self, AuditError> {
        let (tx, rx) = mpsc::sync_channel(CHANNEL);
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("warden-audit-read".into())
            .spawn(move || {
                if let Err(e) = stream(&thread_path, &sql, &params, &filter, &tx) {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| AuditError::io(&path, e))?;
        let mut cursor = Cursor { rx, front: None };
        cursor.advance()?;
        Ok(cursor)
    }

    /// Moves the next record into `front` (`None` when the file is exhausted).
    fn advance(&mut self) -> Result<(), AuditError> {
        self.front = match self.rx.recv() {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => return Err(e),
            Err(_) => None,
        };
        Ok(())
    }
}

/// Runs the query on one file and sends each matching record; stops early when the receiver
/// is gone (the caller dropped the iterator).
fn stream(
    path: &Path,
    sql: &str,
    params: &[Value],
    filter: &AuditFilter,
    tx: &mpsc::SyncSender<Result<StoredRecord, AuditError>>,
) -> Result<(), AuditError> {
    let err = |e| AuditError::sqlite(path, e);
    let conn = read::open_read_only(path)?;
    let mut stmt = conn.prepare(sql).map_err(err)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let r = read::decode_row(row).map_err(|m| AuditError::NotAuditFile {
            path: path.to_path_buf(),
            reason: format!(
                "record {} cannot be read: {}",
                m.seq.map_or("?".into(), |s| s.to_string()),
                m.reason
            ),
        })?;
        if filter.post_filter(&r) && tx.send(Ok(r)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A file that may hold matching records, not opened for reading yet.
struct Pending {
    file: DayFile,
    /// Normalised key below which the file has no records.
    bound: Key,
    sealed: bool,
    full_text: bool,
}

/// Matching records, in the filter's order, read lazily.
pub struct Records {
    filter: AuditFilter,
    pending: VecDeque<Pending>,
    /// Cursors by index; `None` once exhausted (its file is closed).
    cursors: Vec<Option<Cursor>>,
    heap: BinaryHeap<Reverse<(Key, usize)>>,
    remaining: Option<u64>,
    failed: bool,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// Starts a query over `store`.
pub(crate) fn run(store: &AuditStore, filter: &AuditFilter) -> Result<Records, AuditError> {
    let order = filter.order;
    // A record is written at or after its event time, so files from more than a day before
    // `from` cannot hold matches. Later files can (late records), their time span decides.
    let earliest_day = filter
        .from
        .and_then(|f| f.date().checked_sub(Duration::days(1)));
    let mut pending = Vec::new();
    for file in store.files() {
        if earliest_day.is_some_and(|d| file.day < d) {
            continue;
        }
        let (conn, meta): (Connection, FileMeta) = read::open_day_file(&file.path)?;
        let bound = match order {
            Order::Sequence => (meta.first_seq as i64, i64::MIN),
            Order::TimeAsc | Order::TimeDesc => {
                let Some((min, max)) = read::time_span(&conn, &file.path)? else {
                    continue;
                };
                let from = filter.from.map_or(i64::MIN, timefmt::to_micros);
                let to = filter.to.map_or(i64::MAX, timefmt::to_micros);
                if max < from || min >= to {
                    continue;
                }
                if order == Order::TimeAsc {
                    (min, i64::MIN)
                } else {
                    normalise(order, (max, i64::MAX))
                }
            }
        };
        pending.push(Pending {
            file: file.clone(),
            bound,
            sealed: meta.sealed,
            full_text: meta.full_text,
        });
    }
    pending.sort_by_key(|p| p.bound);
    Ok(Records {
        filter: filter.clone(),
        pending: pending.into(),
        cursors: Vec::new(),
        heap: BinaryHeap::new(),
        remaining: filter.limit,
        failed: false,
    })
}

impl Records {
    fn activate(&mut self, p: Pending) -> Result<(), AuditError> {
        let order = self.filter.order;
        let (clause, params) = self.filter.where_clause(p.sealed, p.full_text);
        let order_by = match order {
            Order::TimeAsc => "time_us, seq",
            Order::TimeDesc => "time_us DESC, seq DESC",
            Order::Sequence => "seq",
        };
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM records WHERE {clause} ORDER BY {order_by}");
        let cursor = Cursor::open(p.file.path, sql, params, self.filter.clone())?;
        if let Some(first) = &cursor.front {
            let key = normalise(order, Cursor::key(order, first));
            self.heap.push(Reverse((key, self.cursors.len())));
            self.cursors.push(Some(cursor));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<StoredRecord>, AuditError> {
        let order = self.filter.order;
        // Open every file whose records could come before the best one we hold.
        while let Some(p) = self.pending.front() {
            let due = match self.heap.peek() {
                None => true,
                Some(Reverse((key, _))) => p.bound <= *key,
            };
            if !due {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                self.activate(p)?;
            }
        }
        let Some(Reverse((_, idx))) = self.heap.pop() else {
            return Ok(None);
        };
        let Some(cursor) = self.cursors.get_mut(idx).and_then(Option::as_mut) else {
            return Ok(None);
        };
        let Some(record) = cursor.front.take() else {
            return Ok(None);
        };
        cursor.advance()?;
        if let Some(next) = &cursor.front {
            let key = normalise(order, Cursor::key(order, next));
            self.heap.push(Reverse((key, idx)));
        } else {
            // Exhausted: close the file.
            self.cursors[idx] = None;
        }
        Ok(Some(record))
    }
}

impl Iterator for Records {
    type Item = Result<StoredRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.remaining == Some(0) {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => {
                if let Some(n) = &mut self.remaining {
                    *n -= 1;
                }
                Some(Ok(r))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_matching() {
        let net: IpMatch = "10.1.0.0/16".parse().unwrap();
        assert!(net.matches("10.1.200.3".parse().unwrap()));
        assert!(!net.matches("10.2.0.1".parse().unwrap()));
        assert!(!net.matches("::1".parse().unwrap()));
        let all: IpMatch = "0.0.0.0/0".parse().unwrap();
        assert!(all.matches("192.0.2.1".parse().unwrap()));
        let v6: IpMatch = "2001:db8::/32".parse().unwrap();
        assert!(v6.matches("2001:db8:1::5".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpMatch>().is_err());
        assert!("host".parse::<IpMatch>().is_err());
        assert_eq!(
            "10.0.0.1".parse::<IpMatch>().unwrap(),
            IpMatch::Exact("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn desc_normalisation_reverses_order() {
        let a = normalise(Order::TimeDesc, (5, 1));
        let b = normalise(Order::TimeDesc, (6, 0));
        assert!(b < a);
        let c = normalise(Order::TimeDesc, (i64::MIN, i64::MIN));
        assert!(a < c);
    }
}
