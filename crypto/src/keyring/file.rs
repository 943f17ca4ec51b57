//! The keyring file: its JSON format, its integrity MAC, and how it is written.
//!
//! ```json
//! {
//!   "format": "warden-keyring",
//!   "version": 1,
//!   "keyring_id": "<32 hex digits>",
//!   "created_at": "2026-07-01T08:00:00Z",
//!   "wrap": "sm4-gcm",
//!   "integrity_key": "<base64: the MAC key, wrapped under the master key>",
//!   "next_key_id": 3,
//!   "keys": [
//!     {
//!       "name": "customers.id_card",
//!       "id": 1,
//!       "algorithm": "sm4",
//!       "mode": "deterministic",
//!       "active_version": 2,
//!       "versions": [
//!         { "version": 1, "created_at": "…", "wrapped": "<base64: nonce ‖ wrapped data key ‖ tag>" },
//!         { "version": 2, "created_at": "…", "wrapped": "…" }
//!       ]
//!     }
//!   ],
//!   "mac": "<64 hex digits: HMAC-SM3 over the file with \"mac\" empty>"
//! }
//! ```
//!
//! Each data key is wrapped with associated data naming the keyring, the key's id, name,
//! algorithm, mode, parameters and version, so a wrapped key cannot be moved to another
//! entry. The MAC (keyed by a random integrity key that is itself wrapped under the master key)
//! covers everything else: active versions, names, the list of versions. Unwrapping the
//! integrity key is also the master-key check: a wrong master key is detected before anything
//! is read or written.
//!
//! Writes are atomic: a temporary file in the same directory (mode 0600), `fsync`, `rename`
//! over the keyring, `fsync` of the directory. Read-modify-write cycles hold an exclusive lock
//! on `<keyring>.lock`, so two administrators rotating at once cannot lose a version.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::KeyringError;
use super::master::WrapAlgorithm;
use crate::modes::KeyParams;
use crate::scheme::{Algorithm, Mode};

/// The `format` field's value.
pub const FORMAT: &str = "warden-keyring";
/// The file format version this code writes.
pub const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyringFile {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) keyring_id: String,
    pub(crate) created_at: String,
    pub(crate) wrap: WrapAlgorithm,
    pub(crate) integrity_key: String,
    pub(crate) next_key_id: u32,
    pub(crate) keys: Vec<KeyEntry>,
    #[serde(default)]
    pub(crate) mac: String,
}

/// One named column key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyEntry {
    pub(crate) name: String,
    pub(crate) id: u32,
    pub(crate) algorithm: Algorithm,
    pub(crate) mode: Mode,
    #[serde(default, skip_serializing_if = "is_default")]
    pub(crate) params: KeyParams,
    pub(crate) active_version: u32,
    pub(crate) versions: Vec<VersionEntry>,
}

fn is_default(p: &KeyParams) -> bool {
    *p == KeyParams::default()
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionEntry {
    pub(crate) version: u32,
    pub(crate) created_at: String,
    pub(crate) wrapped: String,
}

impl KeyringFile {
    /// The bytes the MAC covers: the file as serialised with an empty `mac`.
    pub(crate) fn mac_input(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac.clear();
        serde_json::to_vec(&copy).expect("the keyring serialises")
    }

    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Self, KeyringError> {
        let file: KeyringFile =
            serde_json::from_slice(bytes).map_err(|e| KeyringError::Format {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if file.format != FORMAT {
            return Err(KeyringError::Format {
                path: path.to_owned(),
                reason: format!("the format field is {:?}, not {FORMAT:?}", file.format),
            });
        }
        if file.version != VERSION {
            return Err(KeyringError::Format {
                path: path.to_owned(),
                reason: format!(
                    "keyring file version {} is not supported (this Warden reads {VERSION})",
                    file.version
                ),
            });
        }
        Ok(file)
    }

    pub(crate) fn read(path: &Path) -> Result<Self, KeyringError> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                KeyringError::NotFound {
                    path: path.to_owned(),
                }
            } else {
                io_error(path, "read", e)
            }
        })?;
        Self::parse(path, &bytes)
    }
}

pub(crate) fn io_error(path: &Path, action: &'static str, source: std::io::Error) -> KeyringError {
    KeyringError::Io {
        path: path.to_owned(),
        action,
        source: std::sync::Arc::new(source),
    }
}

/// An exclusive advisory lock on `<keyring>.lock`, released when dropped.
pub(crate) struct WriteLock {
    _file: File,
}

impl WriteLock {
    pub(crate) fn acquire(keyring: &Path) -> Result<Self, KeyringError> {
        let path = sidecar(keyring, ".lock");
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .map_err(|e| io_error(&path, "create the lock file", e))?;
        file.lock().map_err(|e| io_error(&path, "lock", e))?;
        Ok(WriteLock { _file: file })
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `file` to `path` atomically and durably. With `create_only`, fails if `path` exists.
pub(crate) fn write_atomic(
    path: &Path,
    file: &KeyringFile,
    create_only: bool,
) -> Result<(), KeyringError> {
    let mut json = serde_json::to_vec_pretty(file).expect("the keyring serialises");
    json.push(b'\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let suffix: [u8; 6] =
        crate::rng::secret_bytes().map_err(|e| KeyringError::Rng(e.to_string()))?;
    let tmp = sidecar(
        path,
        &format!(".tmp-{}-{}", std::process::id(), hex::encode(suffix)),
    );
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options
            .open(&tmp)
            .map_err(|e| io_error(&tmp, "create", e))?;
        f.write_all(&json).map_err(|e| io_error(&tmp, "write", e))?;
        f.sync_all().map_err(|e| io_error(&tmp, "fsync", e))?;
        drop(f);
        if create_only {
            // Linking fails if the keyring appeared meanwhile; rename would replace it.
            std::fs::hard_link(&tmp, path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyringError::Exists {
                        path: path.to_owned(),
                        keys: None,
                    }
                } else {
                    io_error(path, "create", e)
                }
            })?;
            std::fs::remove_file(&tmp).map_err(|e| io_error(&tmp, "remove", e))?;
        } else {
            std::fs::rename(&tmp, path).map_err(|e| io_error(path, "replace", e))?;
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&dir, "fsync the directory of", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
