//! Scratch directories for servers and clients, and unique names for test objects.
//!
//! Every directory the harness creates lives under the system temp dir with the prefix
//! `warden-test-` and holds an `.owner` file naming the test process (pid and start time). A
//! process killed with SIGKILL cannot clean up after itself, so the first scratch directory a test
//! process creates sweeps away those whose owner is gone.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

/// The prefix of every scratch directory the harness creates.
pub const PREFIX: &str = "warden-test-";

/// A scratch directory, removed when dropped (unless `WARDEN_TEST_KEEP` is set).
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Scratch {
    /// A new directory named `warden-test-<what>-XXXXXX`.
    pub fn new(what: &str) -> Result<Scratch> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{what}-"))
            .tempdir()
            .context("cannot create a scratch directory in the system temp dir")?;
        // Written under another name and renamed, so a sweeping process never reads a half-written
        // owner file.
        let tmp = dir.path().join(".owner.tmp");
        std::fs::write(&tmp, owner_tag(std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, dir.path().join(".owner")))
            .context("cannot write the scratch directory's owner file")?;
        let path = dir.path().to_path_buf();
        let dir = if std::env::var_os("WARDEN_TEST_KEEP").is_some() {
            let _ = dir.keep();
            None
        } else {
            Some(dir)
        };
        Ok(Scratch { dir, path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Keeps the directory on disk and returns its path; the caller takes over cleaning up.
    pub fn into_path(mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }
}

/// `pid starttime`: identifies a process even if its pid is reused later.
fn owner_tag(pid: u32) -> String {
    format!("{pid} {}", process_start_time(pid).unwrap_or(0))
}

/// Field 22 of /proc/PID/stat: the start time in clock ticks since boot.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that wrote `tag` is known to be gone (a tag that does not parse says
/// nothing, and the directory is left alone).
fn owner_gone(tag: &str) -> bool {
    let mut parts = tag.split_whitespace();
    let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    process_start_time(pid) != Some(start)
}

/// Removes scratch directories left behind by test processes that no longer exist (done
/// automatically when a process creates its first scratch directory).
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let path = entry.path();
        let stale = match std::fs::read_to_string(path.join(".owner")) {
            Ok(tag) => owner_gone(&tag),
            // No owner file: being created right now, or very old.
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(3600)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A name no other test in any concurrently running test process uses: `prefix_<pid>_<n>`,
/// lowercase, safe as an SQL identifier, a role or database name, and an application_name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}
