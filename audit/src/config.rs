//! The `[audit]` section of the Warden configuration file.
//!
//! The proxy embeds [`AuditConfig`] in its own TOML configuration; the auditor CLI reads the
//! same section to find the store. Unknown keys are errors, so a typo never silently changes
//! where or how audit records are kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AuditError;

/// How hard each written batch is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Every batch is fsynced when it commits (SQLite `synchronous=FULL` in WAL mode): a written
    /// batch survives a power loss. The default.
    #[default]
    Full,
    /// Batches reach the operating system when they commit but are fsynced only at WAL
    /// checkpoints (`synchronous=NORMAL`): they survive a crash of the proxy, but the last
    /// seconds of records can be lost on a power loss or kernel crash.
    Normal,
}

/// Settings of the audit trail (the `[audit]` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Directory of the embedded store: one SQLite file per UTC day, `audit-YYYY-MM-DD.db`.
    pub dir: PathBuf,
    /// Records the queue holds before sessions wait for the writer (backpressure).
    pub queue_capacity: usize,
    /// Records written in one transaction at most.
    pub batch_size: usize,
    /// A batch that is not full is written at the latest this long after its first record.
    pub flush_interval_ms: u64,
    /// `full` (fsync every batch) or `normal` (fsync at WAL checkpoints only).
    pub durability: Durability,
    /// Keep a full-text index of the SQL and messages (`query --text` uses it; without it the
    /// text filter scans). Costs write throughput.
    pub full_text_index: bool,
    /// File holding the checkpoint key (hex, at least 16 bytes). With a key, every batch ends
    /// with a checkpoint authenticated by HMAC-SM3, so rewriting the files is detectable.
    pub checkpoint_key_file: Option<PathBuf>,
    /// Environment variable holding the checkpoint key (hex), instead of a file.
    pub checkpoint_key_env: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            dir: PathBuf::from("audit"),
            queue_capacity: 65_536,
            batch_size: 1024,
            flush_interval_ms: 100,
            durability: Durability::Full,
            full_text_index: true,
            checkpoint_key_file: None,
            checkpoint_key_env: None,
        }
    }
}

impl AuditConfig {
    /// A configuration with defaults, storing in `dir`.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        AuditConfig {
            dir: dir.into(),
            ..AuditConfig::default()
        }
    }

    /// Makes relative paths (`dir`, `checkpoint_key_file`) relative to `base`, normally the
    /// directory of the configuration file.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.dir.is_relative() {
            self.dir = base.join(&self.dir);
        }
        if let Some(key) = &mut self.checkpoint_key_file
            && key.is_relative()
        {
            *key = base.join(&*key);
        }
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), AuditError> {
        let bad = |msg: &str| Err(AuditError::Config(msg.to_owned()));
        if self.dir.as_os_str().is_empty() {
            return bad("audit.dir is empty: name the directory of the audit store");
        }
        if self.queue_capacity == 0 {
            return bad("audit.queue_capacity must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("audit.batch_size must be at least 1");
        }
        if self.flush_interval_ms == 0 {
            return bad("audit.flush_interval_ms must be at least 1");
        }
        if self.checkpoint_key_file.is_some() && self.checkpoint_key_env.is_some() {
            return bad(
                "audit.checkpoint_key_file and audit.checkpoint_key_env are both set: keep one",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: AuditConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, AuditConfig::default());
        c.validate().unwrap();
        let err = serde_json::from_str::<AuditConfig>(r#"{"queue_capacty": 5}"#).unwrap_err();
        assert!(err.to_string().contains("queue_capacty"), "{err}");
        let c: AuditConfig =
            serde_json::from_str(r#"{"dir": "x", "durability": "normal", "batch_size": 5}"#)
                .unwrap();
        assert_eq!(c.durability, Durability::Normal);
        assert_eq!(c.batch_size, 5);
        assert_eq!(c.queue_capacity, 65_536);
    }

    #[test]
    fn resolves_relative_paths_only() {
        let mut c = AuditConfig::with_dir("audit");
        c.checkpoint_key_file = Some("/etc/warden/audit.key".into());
        c.resolve_paths(Path::new("/etc/warden"));
        assert_eq!(c.dir, Path::new("/etc/warden/audit"));
        assert_eq!(
            c.checkpoint_key_file.as_deref(),
            Some(Path::new("/etc/warden/audit.key"))
        );
    }

    #[test]
    fn rejects_nonsense() {
        for c in [
            AuditConfig {
                queue_capacity: 0,
                ..Default::default()
            },
            AuditConfig {
                batch_size: 0,
                ..Default::default()
            },
            AuditConfig {
                checkpoint_key_file: Some("k".into()),
                checkpoint_key_env: Some("K".into()),
                ..Default::default()
            },
        ] {
            assert!(c.validate().is_err());
        }
    }
}
