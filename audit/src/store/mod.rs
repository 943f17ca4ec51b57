//! The embedded store: a directory of SQLite files, one per UTC day.
//!
//! ```text
//! dir/
//!   .writer.lock            held by the one writing process
//!   audit-2025-03-01.db     records written on 1 March (UTC), WAL mode
//!   audit-2025-03-02.db     its meta table names audit-2025-03-01.db and that file's last hash
//! ```
//!
//! A file's day is the day the writer committed the batch, so the chain (which follows write
//! order) runs through the files in name order. [`schema`] defines the tables, `append` is the
//! writer's side, `seal` builds the heavy indexes once a day is over, and `read` is the
//! auditor's side.

pub(crate) mod append;
pub(crate) mod read;
pub mod schema;
pub(crate) mod seal;

pub use seal::seal_day_file;

use std::path::{Path, PathBuf};

use time::Date;
use time::macros::format_description;

use crate::error::AuditError;
use crate::query::{self, AuditFilter, Records};
use crate::verify::{self, VerifyOptions, VerifyReport};

/// File name prefix of day files.
const PREFIX: &str = "audit-";
/// File name suffix of day files.
const SUFFIX: &str = ".db";

/// The file name for records written on `day`: `audit-YYYY-MM-DD.db`.
pub fn day_file_name(day: Date) -> String {
    format!(
        "{PREFIX}{:04}-{:02}-{:02}{SUFFIX}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// The day a file name stands for, if it is a day file name.
pub fn parse_day_file_name(name: &str) -> Option<Date> {
    let date = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if date.len() != 10 {
        return None;
    }
    Date::parse(date, format_description!("[year]-[month]-[day]")).ok()
}

/// One day file of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFile {
    /// The UTC day in its name.
    pub day: Date,
    /// Its path.
    pub path: PathBuf,
}

impl DayFile {
    /// The file name without the directory.
    pub fn name(&self) -> String {
        day_file_name(self.day)
    }
}

/// The day files in `dir`, oldest first. Other files (WAL and shared-memory companions, the
/// lock file, anything an operator left there) are ignored.
pub fn list_day_files(dir: &Path) -> Result<Vec<DayFile>, AuditError> {
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io(dir, e))?;
        let name = entry.file_name();
        let Some(day) = name.to_str().and_then(parse_day_file_name) else {
            continue;
        };
        files.push(DayFile {
            day,
            path: entry.path(),
        });
    }
    files.sort_by_key(|f| f.day);
    Ok(files)
}

/// A store opened for reading: what auditors query, verify and export.
///
/// Reading never changes the files and works while a proxy is writing to them.
#[derive(Debug, Clone)]
pub struct AuditStore {
    dir: PathBuf,
    files: Vec<DayFile>,
}

impl AuditStore {
    /// Opens the store in `dir` (which must exist), listing its day files.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, AuditError> {
        let dir = read::existing_dir(dir.as_ref())?;
        let files = list_day_files(&dir)?;
        Ok(AuditStore { dir, files })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its day files, oldest first, as listed when the store was opened.
    pub fn files(&self) -> &[DayFile] {
        &self.files
    }

    /// The records matching `filter`, read lazily in the filter's order.
    pub fn query(&self, filter: &AuditFilter) -> Result<Records, AuditError> {
        query::run(self, filter)
    }

    /// Checks the hash chain (and, with a key, the checkpoints) across the day files.
    /// Problems in the files are in the report; the error is for failing to read at all.
    pub fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
        verify::run(self, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn names_round_trip() {
        let d = date!(2025 - 03 - 01);
        assert_eq!(day_file_name(d), "audit-2025-03-01.db");
        assert_eq!(parse_day_file_name("audit-2025-03-01.db"), Some(d));
        for other in [
            "audit-2025-03-01.db-wal",
            "audit-2025-3-1.db",
            "x-2025-03-01.db",
            "audit-2025-02-30.db",
            ".writer.lock",
        ] {
            assert_eq!(parse_day_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn lists_in_day_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "audit-2025-03-02.db",
            "audit-2025-03-01.db",
            "audit-2025-03-01.db-wal",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let files = list_day_files(dir.path()).unwrap();
        let names: Vec<_> = files.iter().map(DayFile::name).collect();
        assert_eq!(names, ["audit-2025-03-01.db", "audit-2025-03-02.db"]);
    }
}
