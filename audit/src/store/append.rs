//! The writer's side of a day file: creating it, finding where the chain ends, and appending
//! a batch of records (with its checkpoint) in one transaction.
//!
//! Only the writer thread uses this. A new day file is built under a temporary name and renamed
//! into place, so a crash never leaves a half-initialised file that would stop the next start.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior, params};
use time::{Date, OffsetDateTime};

use super::read::{self, FileMeta};
use super::schema::{self, meta_key};
use super::{DayFile, day_file_name};
use crate::chain::{self, ChainHash, Checkpoint, CheckpointKey, GENESIS_HASH};
use crate::config::Durability;
use crate::error::AuditError;
use crate::record::AuditRecord;
use crate::timefmt;

/// Where the chain ends: what the next record links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainTail {
    /// `seq` of the last record written (0: none yet).
    pub last_seq: u64,
    /// Its hash (the genesis hash when none).
    pub last_hash: ChainHash,
    /// `seq` of the last checkpoint (0: none).
    pub last_checkpoint_seq: u64,
    /// The day file that holds the last record, if any file exists.
    pub file_name: Option<String>,
}

impl ChainTail {
    /// The tail of an empty store.
    pub fn genesis() -> Self {
        ChainTail {
            last_seq: 0,
            last_hash: GENESIS_HASH,
            last_checkpoint_seq: 0,
            file_name: None,
        }
    }
}

/// How the writer opens files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendOptions {
    pub durability: Durability,
}

/// An open day file being appended to.
pub(crate) struct DayAppender {
    path: PathBuf,
    day: Date,
    conn: Connection,
    tail: ChainTail,
    scratch: Vec<u8>,
    json: Vec<u8>,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |e| AuditError::sqlite(path, e)
}

fn configure(conn: &Connection, path: &Path, durability: Durability) -> Result<(), AuditError> {
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite(path))?;
    conn.pragma_update(None, "synchronous", sync)
        .map_err(sqlite(path))?;
    // 32 MiB of page cache keeps the indexes' hot pages in memory.
    conn.pragma_update(None, "cache_size", -32_768)
        .map_err(sqlite(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite(path))?;
    Ok(())
}

impl DayAppender {
    /// Creates the day file for `day` in `dir`, continuing the chain from `tail`.
    pub fn create(
        dir: &Path,
        day: Date,
        tail: &ChainTail,
        opts: AppendOptions,
        now: OffsetDateTime,
    ) -> Result<Self, AuditError> {
        let name = day_file_name(day);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.creating"));
        // A leftover from a crash during creation holds nothing: start it again.
        let _ = std::fs::remove_file(&tmp);
        {
            let mut conn = Connection::open(&tmp).map_err(sqlite(&tmp))?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sqlite(&tmp))?;
            let tx = conn.transaction().map_err(sqlite(&tmp))?;
            tx.execute_batch(schema::CREATE_TABLES)
                .map_err(sqlite(&tmp))?;
            let first_seq = (tail.last_seq + 1).to_string();
            let prev_hash = hex::encode(tail.last_hash);
            let prev_cp = tail.last_checkpoint_seq.to_string();
            let day_text = format!(
                "{:04}-{:02}-{:02}",
                day.year(),
                u8::from(day.month()),
                day.day()
            );
            let created = timefmt::format_micros(now);
            let created_by = format!("warden-audit {}", env!("CARGO_PKG_VERSION"));
            let entries: [(&str, &str); 11] = [
                (meta_key::FORMAT, schema::FORMAT_NAME),
                (meta_key::SCHEMA_VERSION, schema::SCHEMA_VERSION),
                (meta_key::DAY, &day_text),
                (meta_key::CREATED_AT, &created),
                (meta_key::FIRST_SEQ, &first_seq),
                (meta_key::PREV_HASH, &prev_hash),
                (meta_key::PREV_FILE, tail.file_name.as_deref().unwrap_or("")),
                (meta_key::PREV_CHECKPOINT_SEQ, &prev_cp),
                (meta_key::SEALED, "0"),
                (meta_key::FULL_TEXT, "0"),
                (meta_key::CREATED_BY, &created_by),
            ];
            for (k, v) in entries {
                tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", [k, v])
                    .map_err(sqlite(&tmp))?;
            }
            tx.commit().map_err(sqlite(&tmp))?;
            conn.close().map_err(|(_, e)| AuditError::sqlite(&tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| AuditError::io(&path, e))?;
        sync_dir(dir)?;
        let mut appender = Self::open_existing(
            &DayFile {
                day,
                path: path.clone(),
            },
            opts,
        )?;
        // open_existing read the tail back from the meta just written; name the file it is in.
        appender.tail.file_name = Some(name);
        Ok(appender)
    }

    /// Opens an existing day file to append to it, reading where its chain ends.
    pub fn open_existing(file: &DayFile, opts: AppendOptions) -> Result<Self, AuditError> {
        let path = file.path.clone();
        let conn = Connection::open(&path).map_err(sqlite(&path))?;
        let meta = read::read_meta(&conn, &path)?;
        if meta.day != file.day {
            return Err(AuditError::NotAuditFile {
                path,
                reason: format!(
                    "its meta table says it holds {} but its name says {}",
                    meta.day, file.day
                ),
            });
        }
        configure(&conn, &path, opts.durability)?;
        let tail = read_tail(&conn, &path, &meta, file.name())?;
        Ok(DayAppender {
            path,
            day: file.day,
            conn,
            tail,
            scratch: Vec::with_capacity(1024),
            json: Vec::with_capacity(256),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The day this file holds.
    pub fn day(&self) -> Date {
        self.day
    }

    /// Where the chain ends after the last committed batch.
    pub fn tail(&self) -> &ChainTail {
        &self.tail
    }

    /// Appends `records` (and a checkpoint, with `key`) in one transaction, continuing the
    /// chain. On error nothing is written and the tail is unchanged.
    pub fn append_batch(
        &mut self,
        records: &[AuditRecord],
        key: Option<&CheckpointKey>,
        now: OffsetDateTime,
    ) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = sqlite(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut seq = self.tail.last_seq;
        let mut hash = self.tail.last_hash;
        {
            let mut insert = tx.prepare_cached(schema::INSERT_RECORD).map_err(&err)?;
            for r in records {
                seq += 1;
                hash = chain::hash_record(&hash, seq, r, &mut self.scratch);
                let tables = to_json(&mut self.json, &r.tables);
                let columns = to_json(&mut self.json, &r.columns);
                let datasets = to_json(&mut self.json, &r.datasets);
                insert
                    .execute(params![
                        seq as i64,
                        r.time_micros(),
                        r.event.as_str(),
                        r.session_id as i64,
                        r.upstream,
                        r.protocol.as_str(),
                        r.user,
                        r.database,
                        r.client_ip.to_string(),
                        i64::from(r.client_port),
                        r.client_mac.map(|m| m.to_string()),
                        r.program,
                        r.client_host,
                        r.os_user,
                        r.tls_subject,
                        r.statement_kind,
                        r.fingerprint,
                        r.sql,
                        r.statement_count.map(i64::from),
                        tables,
                        columns,
                        datasets,
                        r.rows.map(|v| v as i64),
                        r.result_bytes.map(|v| v as i64),
                        r.latency_us.map(|v| v as i64),
                        r.result.as_str(),
                        r.error_code,
                        r.message,
                        r.decision,
                        r.rule,
                        &hash[..],
                    ])
                    .map_err(&err)?;
            }
            if let Some(key) = key {
                let cp = Checkpoint {
                    seq,
                    hash,
                    prev_seq: self.tail.last_checkpoint_seq,
                    written_at_us: timefmt::to_micros(now),
                };
                let mac = key.mac(&cp);
                tx.prepare_cached(schema::INSERT_CHECKPOINT)
                    .map_err(&err)?
                    .execute(params![
                        cp.seq as i64,
                        &cp.hash[..],
                        cp.prev_seq as i64,
                        cp.written_at_us,
                        key.id(),
                        &mac[..],
                    ])
                    .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        self.tail.last_seq = seq;
        self.tail.last_hash = hash;
        if key.is_some() {
            self.tail.last_checkpoint_seq = seq;
        }
        Ok(())
    }

    /// Closes the file, checkpointing its WAL into the main file.
    pub fn close(self) -> Result<(), AuditError> {
        let path = self.path;
        self.conn
            .close()
            .map_err(|(_, e)| AuditError::sqlite(&path, e))
    }
}

fn to_json(buf: &mut Vec<u8>, items: &[String]) -> String {
    buf.clear();
    // Serialising strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, items);
    String::from_utf8_lossy(buf).into_owned()
}

/// Where the chain in `conn` ends.
fn read_tail(
    conn: &Connection,
    path: &Path,
    meta: &FileMeta,
    file_name: String,
) -> Result<ChainTail, AuditError> {
    let err = sqlite(path);
    let last: Option<(i64, Vec<u8>)> = {
        let mut stmt = conn
            .prepare("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        match rows.next().map_err(&err)? {
            Some(row) => Some((row.get(0).map_err(&err)?, row.get(1).map_err(&err)?)),
            None => None,
        }
    };
    let (last_seq, last_hash) = match last {
        None => (meta.first_seq.saturating_sub(1), meta.prev_hash),
        Some((seq, hash)) => {
            let hash: ChainHash = hash.try_into().map_err(|_| AuditError::NotAuditFile {
                path: path.to_path_buf(),
                reason: format!("the hash of its last record ({seq}) is not 32 bytes"),
            })?;
            (seq as u64, hash)
        }
    };
    let last_cp: Option<i64> = conn
        .query_row("SELECT max(seq) FROM checkpoints", [], |r| r.get(0))
        .map_err(&err)?;
    Ok(ChainTail {
        last_seq,
        last_hash,
        last_checkpoint_seq: last_cp.map_or(meta.prev_checkpoint_seq, |s| s as u64),
        file_name: Some(file_name),
    })
}

/// Reads where the chain ends in an existing day file without keeping it open.
pub(crate) fn tail_of(file: &DayFile) -> Result<ChainTail, AuditError> {
    let conn = Connection::open(&file.path).map_err(sqlite(&file.path))?;
    let meta = read::read_meta(&conn, &file.path)?;
    let tail = read_tail(&conn, &file.path, &meta, file.name())?;
    drop(conn);
    Ok(tail)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    #[cfg(unix)]
    {
        let d = std::fs::File::open(dir).map_err(|e| AuditError::io(dir, e))?;
        d.sync_all().map_err(|e| AuditError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
