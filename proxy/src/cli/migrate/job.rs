//! Carrying out one online migration of one column on PostgreSQL.
//!
//! `encrypt` and `decrypt` write the new values into a shadow column next to the old one, then
//! swap them in one short transaction, so the column keeps its position, its `NOT NULL` and its
//! indexes, and the application keeps reading and writing (through the proxy) throughout:
//!
//! 1. setup: the shadow column (`<column>__warden`, of the new type) and a trigger that empties
//!    a row's shadow value whenever the application changes the column, so rows written during
//!    the migration are done again;
//! 2. passes over the primary key in batches: read `pk, column` where the shadow value is
//!    missing, convert the values in warden (encrypt or decrypt), write them with one `UPDATE …
//!    FROM (VALUES …)` per batch, each its own transaction, guarded so a row changed since it
//!    was read is left for the next pass. Passes repeat while rows keep coming back;
//! 3. the swap, in one transaction holding the table's ACCESS EXCLUSIVE lock: the last rows, the
//!    trigger dropped, then one `ALTER TABLE` that gives the column the shadow's values and type
//!    (rewriting the table once and rebuilding the column's indexes, UNIQUE and PRIMARY KEY
//!    included), drops the shadow column and adds (encrypt) or drops (decrypt) the
//!    `warden_enc_<column>` envelope check.
//!
//! Everything before the swap can be interrupted at any point: running the command again finds
//! the shadow column and the trigger in place and does only the rows still missing. `rekey`
//! needs no shadow: it rewrites, in place and in batches, the values whose envelope names an
//! older key version.
//!
//! A value that fails to convert (a wrong key, a value that does not fit the logical type)
//! stops the migration with the row's primary key; that batch writes nothing.
//!
//! The passes keep the database and warden busy at once: on a second (reader) connection the
//! next batch is read, and the previous one written, while the current one is converted.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::Direction;
use super::convert::{Converter, Row};
use super::progress::{Progress, rate, thousands};
use super::sql::{self, Names};
use crate::pg::service::{Rows, ServiceClient, ServiceError};

/// SQLSTATEs after which a statement is simply tried again: lock_not_available (our
/// `lock_timeout`), deadlock_detected, serialization_failure.
const RETRYABLE: [&str; 3] = ["55P03", "40P01", "40001"];
/// Attempts of a retryable statement (and of taking the swap's lock).
const ATTEMPTS: u32 = 10;
/// Passes before the swap finishes the remaining rows under its lock even if the application
/// keeps changing rows.
const MAX_PASSES: u32 = 5;

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The migration is complete; `rows` values were converted by this run.
    Done { rows: u64 },
    /// Stopped early as asked (`--stop-after-batches`); running again resumes.
    Stopped { rows: u64, batches: u64 },
}

/// One migration of one column.
pub struct Job<'a> {
    /// The connection that writes (and holds the swap's transaction).
    pub client: &'a mut ServiceClient,
    /// A second connection that reads the next batch while the current one is converted and
    /// the previous one written. Its plans are pinned to the primary key's order
    /// ([`sql::READER_SETTINGS`]).
    pub reader: ServiceClient,
    pub converter: Converter,
    pub names: Names,
    pub batch: usize,
    pub stop_after_batches: Option<u64>,
    pub batches: u64,
    pub out: &'a mut dyn std::io::Write,
}

/// What one pass over the key range found.
#[derive(Debug, Default)]
struct Pass {
    /// Rows read.
    found: u64,
    /// Rows written.
    written: u64,
    /// Stopped by `--stop-after-batches`.
    stopped: bool,
}

impl Job<'_> {
    /// Runs the migration to its end (or to `--stop-after-batches`).
    pub async fn run(&mut self) -> Result<Outcome> {
        self.client
            .execute(sql::SESSION_SETTINGS)
            .await
            .context("cannot set up the migration session")?;
        self.reader
            .execute(&format!(
                "{}; {}",
                sql::SESSION_SETTINGS,
                sql::READER_SETTINGS
            ))
            .await
            .context("cannot set up the migration's reading session")?;
        // One migration of a column at a time: the lock is the session's, released when the
        // connection ends, however it ends.
        let locked = self
            .client
            .simple_query(&sql::try_lock(&self.converter.qualified))
            .await?;
        if locked.first().and_then(|r| r.first()).cloned().flatten() != Some("t".into()) {
            bail!(
                "another migration of {} is running (it holds the advisory lock of the column); \
                 let it finish, or stop it, before running `warden {}`",
                self.converter.qualified,
                self.converter.direction.command()
            );
        }
        match self.converter.direction {
            Direction::Encrypt | Direction::Decrypt => self.shadow_migration().await,
            Direction::Rekey => self.rekey().await,
        }
    }

    /// The type of the shadow column: the storage type when encrypting, the logical type when
    /// decrypting.
    fn shadow_type(&self) -> String {
        let crypto = &self.converter.crypto;
        match self.converter.direction {
            Direction::Decrypt => crypto.logical().sql_name(),
            _ => sql::storage_type(crypto.storage()).to_string(),
        }
    }

    async fn count(&mut self, sql: &str) -> Result<u64> {
        count(self.client, sql).await
    }

    async fn shadow_migration(&mut self) -> Result<Outcome> {
        let shadow_type = self.shadow_type();
        self.check_shadow(&shadow_type).await?;
        let setup = self.names.setup(&shadow_type);
        execute_retrying(self.client, &setup)
            .await
            .with_context(|| {
                format!(
                    "cannot add the shadow column and trigger to {}",
                    self.names.table
                )
            })?;
        let done_before = self.count(&self.names.count_done()).await?;
        let mut remaining = self.count(&self.names.count_remaining()).await?;
        if done_before > 0 {
            writeln!(
                self.out,
                "resuming: {} row(s) of {} were done by an earlier run",
                thousands(done_before),
                self.converter.qualified
            )?;
        }
        let mut progress = Progress::stderr(remaining);
        let mut passes = 0;
        while remaining > 0 {
            passes += 1;
            let pass = self.shadow_pass(&shadow_type, &mut progress).await?;
            if pass.stopped {
                progress.finish();
                return Ok(Outcome::Stopped {
                    rows: progress.done(),
                    batches: self.batches,
                });
            }
            remaining = self.count(&self.names.count_remaining()).await?;
            // Rows the application changed during the pass are counted again.
            progress.grow(remaining);
            if remaining <= self.batch as u64 || passes >= MAX_PASSES {
                break;
            }
        }
        let locked = self.swap(&shadow_type, &mut progress).await?;
        progress.finish();
        self.summary(progress.done(), progress.elapsed())?;
        writeln!(
            self.out,
            "the swap locked {} (ACCESS EXCLUSIVE) for {:.2} s: the last rows, the rewrite of the table and its indexes",
            self.names.table,
            locked.as_secs_f64()
        )?;
        Ok(Outcome::Done {
            rows: progress.done(),
        })
    }

    /// A shadow column left by an earlier run must have the type this run writes (an
    /// interrupted `encrypt` cannot be resumed by `decrypt`, and the other way round).
    async fn check_shadow(&mut self, shadow_type: &str) -> Result<()> {
        let sql = format!(
            "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = {}::regclass AND a.attname = {} AND NOT a.attisdropped",
            sql::literal(&self.names.table),
            sql::literal(&self.names.shadow_name)
        );
        let rows = query_retrying(self.client, &sql).await?;
        if let Some(found) = rows.first().and_then(|r| r.first()).and_then(|v| v.clone())
            && found != shadow_type
        {
            bail!(
                "{} has a column {} of type {found}, left by an interrupted migration in the other direction \
                 (this one writes {shadow_type}); finish that one first, or drop the column and the trigger {} yourself",
                self.names.table,
                self.names.shadow,
                self.names.trigger
            );
        }
        Ok(())
    }

    async fn shadow_pass(&mut self, shadow_type: &str, progress: &mut Progress) -> Result<Pass> {
        let names = self.names.clone();
        let limit = self.batch;
        self.pass(
            &|last| names.select_missing(last, limit),
            &|rows| names.update_shadow(shadow_type, rows),
            progress,
        )
        .await
    }

    /// One pass over the primary key range: reads batches with `select` (on the reader),
    /// converts them and writes them with `update` (on the writer), each batch its own
    /// transaction, statements tried again on lock timeouts. While batch k is converted, the
    /// reader fetches batch k+1 and the writer writes batch k-1 (their key ranges never
    /// overlap). Stops early after `--stop-after-batches` batches.
    async fn pass(
        &mut self,
        select: &dyn Fn(Option<&str>) -> String,
        update: &dyn Fn(&[Row]) -> String,
        progress: &mut Progress,
    ) -> Result<Pass> {
        let mut pass = Pass::default();
        let mut current = query_retrying(&mut self.reader, &select(None)).await?;
        // The update of the previous batch, not yet sent.
        let mut pending: Option<String> = None;
        loop {
            let full = current.len() >= self.batch;
            let last = current
                .last()
                .and_then(|row| row.first().cloned().flatten());
            pass.found += current.len() as u64;
            let next_select = match (&last, full) {
                (Some(last), true) => Some(select(Some(last))),
                _ => None,
            };
            let previous = pending.take();
            let rows = std::mem::take(&mut current);
            let (writer, reader, converter) =
                (&mut *self.client, &mut self.reader, &self.converter);
            // The futures are polled in order: both statements are sent before the batch is
            // converted, so the database works on them meanwhile.
            let (next, written, converted) = tokio::join!(
                async {
                    match &next_select {
                        Some(sql) => query_retrying(reader, sql).await.map(Some),
                        None => Ok(None),
                    }
                },
                async {
                    match &previous {
                        Some(sql) => execute_retrying(writer, sql).await.map(Some),
                        None => Ok(None),
                    }
                },
                async { converter.batch(rows) },
            );
            if let Some(written) = written? {
                pass.written += written;
                progress.add(written);
                if self.batch_done() {
                    pass.stopped = true;
                    return Ok(pass);
                }
            }
            let batch = converted?;
            if batch.is_empty() {
                if self.batch_done() {
                    pass.stopped = true;
                    return Ok(pass);
                }
            } else {
                pending = Some(update(&batch));
            }
            match next? {
                Some(rows) if !rows.is_empty() => current = rows,
                _ => break,
            }
        }
        if let Some(sql) = pending {
            let written = execute_retrying(self.client, &sql).await?;
            pass.written += written;
            progress.add(written);
            if self.batch_done() {
                pass.stopped = true;
            }
        }
        Ok(pass)
    }

    /// Counts a batch as done; whether `--stop-after-batches` says to stop now.
    fn batch_done(&mut self) -> bool {
        self.batches += 1;
        self.stop_after_batches
            .is_some_and(|stop| self.batches >= stop)
    }

    /// The last rows, on the writer inside the swap's transaction: one step at a time, no
    /// retries (a failed statement aborts the transaction, and no other session can hold a
    /// lock these wait for).
    async fn locked_pass(
        &mut self,
        select: &dyn Fn(Option<&str>) -> String,
        update: &dyn Fn(&[Row]) -> String,
        progress: &mut Progress,
    ) -> Result<()> {
        let mut last: Option<String> = None;
        loop {
            let rows = self.client.simple_query(&select(last.as_deref())).await?;
            let full = rows.len() >= self.batch;
            let Some(last_row) = rows.last() else {
                return Ok(());
            };
            last = last_row.first().cloned().flatten();
            let batch = self.converter.batch(rows)?;
            if !batch.is_empty() {
                progress.add(self.client.execute(&update(&batch)).await?);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The swap, in one transaction; its lock is tried again while the application holds
    /// conflicting locks. Returns how long the table was locked.
    async fn swap(&mut self, shadow_type: &str, progress: &mut Progress) -> Result<Duration> {
        let begin = format!(
            "BEGIN; SET LOCAL synchronous_commit = on; SET LOCAL lock_timeout = '2s'; \
             LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            self.names.table
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.client.execute(&begin).await {
                Ok(_) => break,
                Err(e) if is_retryable(&e) && attempt < ATTEMPTS => {
                    self.rollback().await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    let _ = self.rollback().await;
                    return Err(e)
                        .with_context(|| format!("cannot lock {} for the swap", self.names.table));
                }
            }
        }
        let locked = std::time::Instant::now();
        if let Err(e) = self.swap_locked(shadow_type, progress).await {
            let _ = self.rollback().await;
            return Err(e);
        }
        let locked = locked.elapsed();
        // The rewritten column has no statistics yet; the planner needs them for its indexes.
        let analyze = format!("ANALYZE {}", self.names.table);
        if let Err(e) = self.client.execute(&analyze).await {
            writeln!(
                self.out,
                "warning: {analyze} failed ({e}); run it yourself so the planner uses the rebuilt indexes"
            )?;
        }
        Ok(locked)
    }

    async fn swap_locked(&mut self, shadow_type: &str, progress: &mut Progress) -> Result<()> {
        let names = self.names.clone();
        let limit = self.batch;
        self.locked_pass(
            &|last| names.select_missing(last, limit),
            &|rows| names.update_shadow(shadow_type, rows),
            progress,
        )
        .await?;
        let left = self.count(&self.names.count_remaining()).await?;
        if left > 0 {
            bail!(
                "{} row(s) of {} still have no converted value under the swap's lock; nothing was changed",
                left,
                self.converter.qualified
            );
        }
        let crypto = &self.converter.crypto;
        let swap = match self.converter.direction {
            Direction::Encrypt => names.swap(
                sql::storage_type(crypto.storage()),
                true,
                Some(&sql::envelope_check(
                    &names.column,
                    crypto.mode(),
                    crypto.storage(),
                )),
            ),
            _ => names.swap(shadow_type, true, None),
        };
        self.client.execute(&swap).await.with_context(|| {
            format!(
                "the swap of {} failed; nothing was changed",
                self.converter.qualified
            )
        })?;
        self.client.execute("COMMIT").await?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), ServiceError> {
        if self.client.transaction_status() != b'I' {
            self.client.execute("ROLLBACK").await?;
        }
        Ok(())
    }

    async fn rekey(&mut self) -> Result<Outcome> {
        let (mode, storage) = (
            self.converter.crypto.mode(),
            self.converter.crypto.storage(),
        );
        let active = self.converter.key.active_version();
        let mut remaining = self
            .count(&self.names.count_stale(mode, storage, active))
            .await?;
        writeln!(
            self.out,
            "{} value(s) of {} are sealed with an older version of key {:?} than the active v{active}",
            thousands(remaining),
            self.converter.qualified,
            self.converter.crypto.column.key
        )?;
        let mut progress = Progress::stderr(remaining);
        let mut passes = 0;
        while remaining > 0 && passes < MAX_PASSES {
            passes += 1;
            let names = self.names.clone();
            let limit = self.batch;
            let pass = self
                .pass(
                    &|last| names.select_stale(mode, storage, active, last, limit),
                    &|rows| names.update_in_place(storage, rows),
                    &mut progress,
                )
                .await?;
            if pass.stopped {
                progress.finish();
                return Ok(Outcome::Stopped {
                    rows: progress.done(),
                    batches: self.batches,
                });
            }
            // Values changed while they were read were sealed anew by whoever changed them;
            // the count says whether any is still on an old version.
            remaining = if pass.written < pass.found {
                self.count(&self.names.count_stale(mode, storage, active))
                    .await?
            } else {
                0
            };
            progress.grow(remaining);
        }
        progress.finish();
        if remaining > 0 {
            bail!(
                "{} value(s) of {} are still on an older key version after {MAX_PASSES} passes: \
                 something keeps writing them (a proxy that has not reloaded the keyring?); run `warden rekey` again",
                thousands(remaining),
                self.converter.qualified
            );
        }
        self.summary(progress.done(), progress.elapsed())?;
        Ok(Outcome::Done {
            rows: progress.done(),
        })
    }

    fn summary(&mut self, rows: u64, elapsed: Duration) -> Result<()> {
        let Converter {
            direction,
            qualified,
            crypto,
            ..
        } = &self.converter;
        writeln!(
            self.out,
            "{} {} row(s) of {qualified} in {:.1} s ({} rows/s)",
            direction.past(),
            thousands(rows),
            elapsed.as_secs_f64(),
            thousands(rate(rows, elapsed).round() as u64)
        )?;
        match direction {
            Direction::Encrypt => writeln!(
                self.out,
                "{qualified} is now {} with the check constraint {}; running proxies encrypt and decrypt it from their next catalog refresh",
                sql::storage_type(crypto.storage()),
                self.names.constraint
            )?,
            Direction::Decrypt => writeln!(
                self.out,
                "{qualified} holds plaintext {} again; running proxies pass it through from their next catalog refresh",
                crypto.logical().sql_name()
            )?,
            Direction::Rekey => {}
        }
        Ok(())
    }
}

/// Runs a query, trying again (with a growing pause) while it fails on a lock timeout, a
/// deadlock or a serialization failure.
async fn query_retrying(client: &mut ServiceClient, sql: &str) -> Result<Rows, ServiceError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.simple_query(sql).await {
            Err(e) if is_retryable(&e) && attempt < ATTEMPTS => pause(attempt).await,
            other => return other,
        }
    }
}

/// Runs a statement, trying again as [`query_retrying`] does.
async fn execute_retrying(client: &mut ServiceClient, sql: &str) -> Result<u64, ServiceError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.execute(sql).await {
            Err(e) if is_retryable(&e) && attempt < ATTEMPTS => pause(attempt).await,
            other => return other,
        }
    }
}

/// The number a `SELECT count(*)` returns.
async fn count(client: &mut ServiceClient, sql: &str) -> Result<u64> {
    let rows = query_retrying(client, sql).await?;
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("a count returned no number"))
}

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
}

fn is_retryable(e: &ServiceError) -> bool {
    e.sqlstate().is_some_and(|code| RETRYABLE.contains(&code))
}
