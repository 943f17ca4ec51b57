//! Sealing a finished day file: building the indexes the writer does not maintain.
//!
//! Keeping an index on client IP, program, statement kind, touched tables and full text up to
//! date record by record costs more than everything else the writer does (measured: it cuts
//! throughput by more than half). So the file being written carries only the cheap indexes
//! (time, user, session, failures, non-statement events), and when its day is over a background
//! thread builds the rest in bulk. Queries work on both: on an unsealed file the other filters
//! scan the rows in the time range. Sealing never changes a record, so the chain is unaffected.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, InterruptHandle, params};

use super::read;
use super::schema::{self, meta_key};
use crate::error::AuditError;

/// The names under which a record is found by `--table`: each table lower-cased (ASCII, as
/// SQL folds unquoted names), plus the last component of qualified names.
pub(crate) fn table_index_names(tables: &[String]) -> Vec<String> {
    let mut names = Vec::with_capacity(tables.len() * 2);
    for t in tables {
        let lower = t.to_ascii_lowercase();
        if let Some((_, last)) = lower.rsplit_once('.')
            && !last.is_empty()
        {
            names.push(last.to_owned());
        }
        names.push(lower);
    }
    names.sort();
    names.dedup();
    names
}

/// Lets another thread stop a sealing in progress.
#[derive(Default, Clone)]
pub(crate) struct SealStop {
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<InterruptHandle>>>,
}

impl SealStop {
    /// Stops the sealing in progress (its transaction rolls back) and any later one.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = &*self.current.lock().unwrap_or_else(|e| e.into_inner()) {
            h.interrupt();
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    fn watch(&self, conn: Option<&Connection>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            conn.map(Connection::get_interrupt_handle);
    }
}

/// Seals the day file at `path`: builds its sealed indexes and table list and, with
/// `full_text`, its full-text index. Returns whether anything was built (`false`: already
/// sealed). The file must not be the one a writer is appending to.
pub fn seal_day_file(path: &Path, full_text: bool) -> Result<bool, AuditError> {
    seal(path, full_text, &SealStop::default())
}

pub(crate) fn seal(path: &Path, full_text: bool, stop: &SealStop) -> Result<bool, AuditError> {
    let err = |e: rusqlite::Error| AuditError::sqlite(path, e);
    let mut conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(err)?;
    let meta = read::read_meta(&conn, path)?;
    let build_text = full_text && !meta.full_text;
    if meta.sealed && !build_text {
        return Ok(false);
    }
    stop.watch(Some(&conn));
    let result = (|| {
        if !meta.sealed && !stop.stopped() {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(schema::SEAL_INDEXES).map_err(err)?;
            {
                let mut read = tx
                    .prepare("SELECT seq, tables_json FROM records")
                    .map_err(err)?;
                let mut insert = tx.prepare(schema::INSERT_TABLE).map_err(err)?;
                let mut rows = read.query([]).map_err(err)?;
                while let Some(row) = rows.next().map_err(err)? {
                    let seq: i64 = row.get(0).map_err(err)?;
                    // A malformed list is for verify to report; it just cannot be indexed.
                    let json: String = row.get(1).unwrap_or_default();
                    let tables: Vec<String> = serde_json::from_str(&json).unwrap_or_default();
                    for name in table_index_names(&tables) {
                        insert.execute(params![name, seq]).map_err(err)?;
                    }
                }
            }
            tx.execute(
                "UPDATE meta SET value = '1' WHERE key = ?1",
                [meta_key::SEALED],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        if build_text && !stop.stopped() {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(schema::CREATE_FULL_TEXT).map_err(err)?;
            tx.execute(schema::FILL_FULL_TEXT, []).map_err(err)?;
            tx.execute(
                "UPDATE meta SET value = '1' WHERE key = ?1",
                [meta_key::FULL_TEXT],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(true)
    })();
    stop.watch(None);
    if result.is_ok() {
        conn.close().map_err(|(_, e)| err(e))?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_include_unqualified() {
        let names = table_index_names(&["Public.Users".into(), "orders".into(), "users".into()]);
        assert_eq!(names, ["orders", "public.users", "users"]);
    }
}
