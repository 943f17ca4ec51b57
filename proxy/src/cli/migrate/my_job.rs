//! Carrying out one online migration of one column on MySQL / MariaDB.
//!
//! The same plan as on PostgreSQL (`job.rs`), in MariaDB's terms:
//!
//! 1. setup: the shadow column `<column>__warden` (of the storage type when encrypting, the
//!    logical MySQL type when decrypting) and two triggers, BEFORE INSERT and BEFORE UPDATE
//!    (MariaDB has one event per trigger), that empty a row's shadow value when the
//!    application writes the column;
//! 2. passes over the primary key in batches on one connection: read `pk, value` as text where
//!    the shadow value is missing, convert in warden, write with one `UPDATE … JOIN (SELECT …
//!    UNION ALL SELECT …)` per batch (autocommit: each batch its own transaction), guarded so
//!    a row changed since it was read is left for the next pass;
//! 3. the swap, under `LOCK TABLES … WRITE`: the last rows, then one `ALTER TABLE` (atomic in
//!    MariaDB) that drops the column and renames the shadow into its place (`AFTER` the column
//!    before it, with its `NOT NULL` and comment), drops and adds again the indexes that
//!    contain it, and adds (encrypt) or drops (decrypt) the check constraint
//!    `warden_enc_<column>`; then the triggers are dropped and the tables unlocked. The lock
//!    closes the window in which the application could change a row between the last batch
//!    and the `ALTER` (its new value would be lost); the application waits for it, as it waits
//!    for the `ALTER`'s own metadata lock anyway.
//!
//! Interrupted before the swap, a run resumes: the shadow column and triggers are in place and
//! only the rows still missing are done. `rekey` rewrites, in place and in batches, the values
//! whose envelope names an older key version. The table needs a single-column primary key;
//! foreign keys from or to the column, a `DEFAULT` on it (encrypt), generated columns and
//! full-text or spatial indexes over it are refused before anything is changed.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use warden_encryption::Storage;

use super::Direction;
use super::convert::{Converter, Row};
use super::job::Outcome;
use super::my_sql::{self, Index, Names, Read, Swap};
use super::progress::{Progress, rate, thousands};
use crate::mysql::service::{Rows, ServiceClient, ServiceError};

/// Error numbers after which a statement is simply tried again: lock wait timeout, deadlock.
const RETRYABLE: [u16; 2] = [1205, 1213];
/// Attempts of a retryable statement (and of taking the swap's lock).
const ATTEMPTS: u32 = 10;
/// Passes before the swap finishes the remaining rows under its lock.
const MAX_PASSES: u32 = 5;

/// One column of the table, from `information_schema.COLUMNS`.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    nullable: bool,
    default: Option<String>,
    comment: String,
    extra: String,
}

/// What the job learned about the table before starting.
#[derive(Debug)]
pub struct Table {
    column: Column,
    /// The column before the migrated one (not counting the shadow column).
    after: Option<String>,
    indexes: Vec<Index>,
}

/// Reads the table's shape and refuses what the migration cannot keep: returns the names (with
/// the primary key) and the table.
pub async fn inspect(
    client: &mut ServiceClient,
    schema: &str,
    table: &str,
    column: &str,
    direction: Direction,
) -> Result<(Names, Table)> {
    let qualified = format!("{schema}.{table}.{column}");
    let probe = Names::new(schema, table, column, "", false);
    let rows = client.query(&probe.columns()).await?;
    let field = |row: &Vec<Option<String>>, i: usize| row.get(i).cloned().flatten();
    let columns: Vec<(Column, String)> = rows
        .iter()
        .map(|r| {
            (
                Column {
                    name: field(r, 0).unwrap_or_default(),
                    nullable: field(r, 2).as_deref() == Some("YES"),
                    default: field(r, 3),
                    comment: field(r, 4).unwrap_or_default(),
                    extra: field(r, 5).unwrap_or_default(),
                },
                field(r, 6).unwrap_or_default().to_lowercase(),
            )
        })
        .filter(|(c, _)| c.name != probe.shadow_name)
        .collect();
    let position = columns
        .iter()
        .position(|(c, _)| c.name.eq_ignore_ascii_case(column))
        .ok_or_else(|| anyhow!("column {qualified} does not exist"))?;
    let (live, _) = columns[position].clone();
    let after = position.checked_sub(1).map(|p| columns[p].0.name.clone());

    let stats = client.query(&probe.indexes()).await?;
    let mut pk = Vec::new();
    let mut indexes: Vec<Index> = Vec::new();
    for row in &stats {
        let name = field(row, 0).unwrap_or_default();
        let part_column = field(row, 2).unwrap_or_default();
        if name == "PRIMARY" {
            pk.push(part_column);
            continue;
        }
        let kind = field(row, 5).unwrap_or_default();
        if matches!(kind.as_str(), "FULLTEXT" | "SPATIAL") {
            bail!(
                "{qualified} is in the {kind} index {name}, which cannot hold ciphertext; drop it first"
            );
        }
        if indexes.last().is_none_or(|i| i.name != name) {
            indexes.push(Index {
                name: name.clone(),
                unique: field(row, 1).as_deref() == Some("0"),
                parts: Vec::new(),
            });
        }
        let index = indexes.last_mut().expect("pushed above");
        index.parts.push((
            part_column,
            field(row, 3),
            field(row, 4).as_deref() == Some("D"),
        ));
    }
    let pk = match pk.as_slice() {
        [one] => one.clone(),
        [] => bail!(
            "table {schema}.{table} has no primary key; the migration works through it in batches \
             by primary key, so add one first"
        ),
        several => bail!(
            "table {schema}.{table} has a primary key of {} columns; the migration supports \
             single-column primary keys only for now",
            several.len()
        ),
    };
    if pk.eq_ignore_ascii_case(column) {
        bail!("{qualified} is the primary key of its table; the migration cannot convert it");
    }
    let pk_numeric = columns.iter().any(|(c, data_type)| {
        c.name == pk
            && matches!(
                data_type.as_str(),
                "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "decimal"
            )
    });
    let foreign = client.query(&probe.foreign_keys()).await?;
    if let Some(fk) = foreign.first() {
        bail!(
            "{qualified} is in the foreign key {} of {}; drop it first (ciphertext cannot match \
             another column's values)",
            field(fk, 0).unwrap_or_default(),
            field(fk, 1).unwrap_or_default()
        );
    }
    if live.extra.to_uppercase().contains("GENERATED") {
        bail!("{qualified} is a generated column; it cannot be migrated");
    }
    // MariaDB shows a nullable column without a default as the default `NULL`.
    if direction == Direction::Encrypt
        && let Some(default) = live.default.as_deref().filter(|d| *d != "NULL")
    {
        bail!(
            "{qualified} has the default {default}, which would store plaintext in the encrypted \
             column; drop it first (ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT)",
            probe.table,
            probe.column
        );
    }
    Ok((
        Names::new(schema, table, column, &pk, pk_numeric),
        Table {
            column: live,
            after,
            indexes,
        },
    ))
}

/// One migration of one column.
pub struct Job<'a> {
    pub client: &'a mut ServiceClient,
    pub converter: Converter,
    pub names: Names,
    pub table: Table,
    pub batch: usize,
    pub stop_after_batches: Option<u64>,
    pub batches: u64,
    pub out: &'a mut dyn std::io::Write,
}

/// What one pass over the key range found.
#[derive(Debug, Default)]
struct Pass {
    found: u64,
    written: u64,
    stopped: bool,
}

impl Job<'_> {
    /// Runs the migration to its end (or to `--stop-after-batches`).
    pub async fn run(&mut self) -> Result<Outcome> {
        for setting in my_sql::SESSION_SETTINGS {
            self.client
                .execute(setting)
                .await
                .context("cannot set up the migration session")?;
        }
        // One migration of a column at a time; the lock ends with the connection.
        let locked = self
            .client
            .query(&my_sql::try_lock(&self.converter.qualified))
            .await?;
        if locked.first().and_then(|r| r.first()).cloned().flatten() != Some("1".into()) {
            bail!(
                "another migration of {} is running (it holds the named lock of the column); \
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

    /// How the column's current values are read.
    fn read(&self) -> Read {
        match (self.converter.direction, self.converter.crypto.storage()) {
            (Direction::Encrypt, _) => Read::Plain,
            (_, Storage::Binary) => Read::Hex,
            (_, Storage::Text) => Read::Text,
        }
    }

    fn storage_type(&self) -> String {
        let crypto = &self.converter.crypto;
        my_sql::storage_type(crypto.logical(), crypto.mode(), crypto.storage())
    }

    fn shadow_type(&self) -> String {
        match self.converter.direction {
            Direction::Decrypt => my_sql::logical_type(self.converter.crypto.logical()),
            _ => self.storage_type(),
        }
    }

    async fn count(&mut self, sql: &str) -> Result<u64> {
        let rows = query_retrying(self.client, sql).await?;
        rows.first()
            .and_then(|r| r.first())
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("a count returned no number"))
    }

    async fn shadow_migration(&mut self) -> Result<Outcome> {
        let shadow_type = self.shadow_type();
        self.check_shadow(&shadow_type).await?;
        for statement in self.names.setup(&shadow_type) {
            execute_retrying(self.client, &statement)
                .await
                .with_context(|| {
                    format!(
                        "cannot add the shadow column and triggers to {}",
                        self.names.table
                    )
                })?;
        }
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
        while remaining > self.batch as u64 && passes < MAX_PASSES {
            passes += 1;
            let pass = self.shadow_pass(&mut progress).await?;
            if pass.stopped {
                progress.finish();
                return Ok(Outcome::Stopped {
                    rows: progress.done(),
                    batches: self.batches,
                });
            }
            remaining = self.count(&self.names.count_remaining()).await?;
            progress.grow(remaining);
        }
        let locked = self.swap(&mut progress).await?;
        progress.finish();
        self.summary(progress.done(), progress.elapsed())?;
        writeln!(
            self.out,
            "the swap locked {} (LOCK TABLES … WRITE) for {:.2} s: the last rows and the ALTER TABLE",
            self.names.table,
            locked.as_secs_f64()
        )?;
        Ok(Outcome::Done {
            rows: progress.done(),
        })
    }

    /// A shadow column left by an earlier run must be of the kind this run writes (an
    /// interrupted `encrypt` cannot be resumed by `decrypt`, and the other way round).
    async fn check_shadow(&mut self, shadow_type: &str) -> Result<()> {
        let rows = self.client.query(&self.names.shadow_column()).await?;
        let Some(row) = rows.first() else {
            return Ok(());
        };
        let found = row.first().cloned().flatten().unwrap_or_default();
        let ascii = row.get(1).cloned().flatten().as_deref() == Some("ascii");
        let wants_ascii = shadow_type.contains("CHARACTER SET ascii");
        if found.to_lowercase() != my_sql::data_type(shadow_type) || ascii != wants_ascii {
            bail!(
                "{} has a column {} of type {found}, left by an interrupted migration in the other direction \
                 (this one writes {shadow_type}); finish that one first, or drop the column and the triggers {} yourself",
                self.names.table,
                self.names.shadow,
                self.names.triggers.join(", ")
            );
        }
        Ok(())
    }

    async fn shadow_pass(&mut self, progress: &mut Progress) -> Result<Pass> {
        let names = self.names.clone();
        let (limit, read) = (self.batch, self.read());
        self.pass(
            &|last| names.select_missing(read, last, limit),
            &|rows| names.update(&names.shadow, read, rows),
            progress,
            true,
        )
        .await
    }

    /// One pass over the primary key range: reads a batch, converts it, writes it (one
    /// autocommitted statement). Statements are tried again on lock timeouts and deadlocks
    /// when `retry` (not under the swap's lock). Stops early after `--stop-after-batches`
    /// batches.
    async fn pass(
        &mut self,
        select: &dyn Fn(Option<&str>) -> String,
        update: &dyn Fn(&[Row]) -> String,
        progress: &mut Progress,
        retry: bool,
    ) -> Result<Pass> {
        let mut pass = Pass::default();
        let mut last: Option<String> = None;
        loop {
            let sql = select(last.as_deref());
            let rows = if retry {
                query_retrying(self.client, &sql).await?
            } else {
                self.client.query(&sql).await?
            };
            let full = rows.len() >= self.batch;
            let Some(last_row) = rows.last() else {
                return Ok(pass);
            };
            last = last_row.first().cloned().flatten();
            pass.found += rows.len() as u64;
            let batch = self.converter.batch(rows)?;
            if !batch.is_empty() {
                let sql = update(&batch);
                let written = if retry {
                    execute_retrying(self.client, &sql).await?
                } else {
                    self.client.execute(&sql).await?
                };
                pass.written += written;
                progress.add(written);
            }
            if retry && self.batch_done() {
                pass.stopped = true;
                return Ok(pass);
            }
            if !full {
                return Ok(pass);
            }
        }
    }

    /// Counts a batch as done; whether `--stop-after-batches` says to stop now.
    fn batch_done(&mut self) -> bool {
        self.batches += 1;
        self.stop_after_batches
            .is_some_and(|stop| self.batches >= stop)
    }

    /// The swap under `LOCK TABLES`; returns how long the table was locked.
    async fn swap(&mut self, progress: &mut Progress) -> Result<Duration> {
        let lock = self.names.lock();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.client.execute(&lock).await {
                Ok(_) => break,
                Err(e) if is_retryable(&e) && attempt < ATTEMPTS => pause(attempt).await,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot lock {} for the swap", self.names.table));
                }
            }
        }
        let locked = Instant::now();
        let result = self.swap_locked(progress).await;
        let unlocked = self.client.execute("UNLOCK TABLES").await;
        result?;
        unlocked?;
        Ok(locked.elapsed())
    }

    async fn swap_locked(&mut self, progress: &mut Progress) -> Result<()> {
        let names = self.names.clone();
        let (limit, read) = (self.batch, self.read());
        self.pass(
            &|last| names.select_missing(read, last, limit),
            &|rows| names.update(&names.shadow, read, rows),
            progress,
            false,
        )
        .await?;
        let left = self.count(&self.names.count_remaining()).await?;
        if left > 0 {
            bail!(
                "{left} row(s) of {} still have no converted value under the swap's lock; nothing was changed",
                self.converter.qualified
            );
        }
        let crypto = &self.converter.crypto;
        let encrypt = self.converter.direction == Direction::Encrypt;
        let swap = Swap {
            new_type: self.shadow_type(),
            not_null: !self.table.column.nullable,
            comment: self.table.column.comment.clone(),
            after: self.table.after.clone(),
            indexes: self.table.indexes.clone(),
            drop_check: !encrypt,
            add_check: encrypt
                .then(|| my_sql::envelope_check(&names.column, crypto.mode(), crypto.storage())),
        };
        self.client
            .execute(&names.swap(&swap))
            .await
            .with_context(|| {
                format!(
                    "the swap of {} failed; nothing was changed",
                    self.converter.qualified
                )
            })?;
        for drop in names.drop_triggers() {
            self.client.execute(&drop).await.with_context(|| {
                format!(
                    "the swap of {} is done, but dropping its trigger failed: drop {} yourself \
                     (they name the dropped shadow column, so writes to the table fail until then)",
                    self.converter.qualified,
                    names.triggers.join(" and ")
                )
            })?;
        }
        Ok(())
    }

    async fn rekey(&mut self) -> Result<Outcome> {
        let crypto = &self.converter.crypto;
        let active = self.converter.key.active_version();
        let stale = self
            .names
            .not_version(crypto.mode(), crypto.storage(), active);
        let mut remaining = self.count(&self.names.count_stale(&stale)).await?;
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
            let (limit, read) = (self.batch, self.read());
            let pass = self
                .pass(
                    &|last| names.select_stale(read, &stale, last, limit),
                    &|rows| names.update(&names.column, read, rows),
                    &mut progress,
                    true,
                )
                .await?;
            if pass.stopped {
                progress.finish();
                return Ok(Outcome::Stopped {
                    rows: progress.done(),
                    batches: self.batches,
                });
            }
            remaining = if pass.written < pass.found {
                self.count(&self.names.count_stale(&stale)).await?
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
        let (direction, qualified) = (self.converter.direction, &self.converter.qualified);
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
                self.storage_type(),
                self.names.constraint
            )?,
            Direction::Decrypt => writeln!(
                self.out,
                "{qualified} holds plaintext {} again; running proxies pass it through from their next catalog refresh",
                self.shadow_type()
            )?,
            Direction::Rekey => {}
        }
        Ok(())
    }
}

/// Runs a query, trying again (with a growing pause) while it fails on a lock wait timeout or
/// a deadlock.
async fn query_retrying(client: &mut ServiceClient, sql: &str) -> Result<Rows, ServiceError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.query(sql).await {
            Err(e) if is_retryable(&e) && attempt < ATTEMPTS => pause(attempt).await,
            other => return other,
        }
    }
}

/// Runs a statement, trying again as [`query_retrying`] does; returns the affected rows.
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

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
}

fn is_retryable(e: &ServiceError) -> bool {
    e.code().is_some_and(|code| RETRYABLE.contains(&code))
}
