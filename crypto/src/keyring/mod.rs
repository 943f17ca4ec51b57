//! The keyring: per-column data keys, versioned, wrapped under the master key, in one file.
//!
//! - [`Keyring::create`] makes a new, empty keyring (never over an existing one);
//! - [`Keyring::open`] checks the master key and the file's integrity, then unwraps every data
//!   key into memory (wiped on drop), so the proxy never touches the file or the master key
//!   per statement;
//! - [`Keyring::add_key`] creates a named column key (algorithm, mode, parameters) at version 1;
//! - [`Keyring::rotate`] adds a version and makes it the active one: new values are sealed
//!   with it, values of older versions still open (their envelope names the version), and a
//!   re-encryption job ([`crate::ColumnKey::reencrypt`]) moves them at its own pace;
//! - [`Keyring::column_key`] gives the [`ColumnKey`] the rest of Warden encrypts with.
//!
//! The master key comes from a provider chosen in the `[keys]` section of the configuration
//! ([`KeysConfig`]): an environment variable, a file, or a PKCS#11 token. File format and write
//! discipline: [`file`].

mod config;
mod file;
mod master;
pub mod pkcs11;
mod provider_env;
mod provider_file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

pub use config::{KeysConfig, MasterKeyConfig};
pub use file::{FORMAT, VERSION};
pub use master::{LocalMasterKey, MASTER_KEY_LEN, MasterKey, MasterKeyError, WrapAlgorithm};
pub use provider_env::master_key_from_env;
pub use provider_file::{master_key_from_file, write_new_master_key_file};

use self::file::{KeyEntry, KeyringFile, VersionEntry, WriteLock};
use crate::data_key::{DATA_KEY_LEN, DataKey};
use crate::error::CryptoError;
use crate::modes::{ColumnKey, KeyParams};
use crate::scheme::{Algorithm, Mode};
use crate::sm3::hmac_sm3;

/// Why a keyring operation failed. Nothing was written when any of these is returned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyringError {
    /// The file system refused.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// `init` on an existing keyring.
    #[error(
        "keyring {} already exists{}; Warden never overwrites a keyring, because its keys are the \
         only way to read the data they encrypted. To start over, move the file away yourself \
         (and keep it as long as any data encrypted with it exists)",
        path.display(),
        keys.map(|n| format!(" with {n} key(s)")).unwrap_or_default()
    )]
    Exists {
        /// The file.
        path: PathBuf,
        /// How many keys it holds, if it could be read.
        keys: Option<usize>,
    },
    /// No keyring at the path.
    #[error("keyring {} does not exist; create it with `warden keys init`", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a keyring this Warden reads.
    #[error("{} is not a valid Warden keyring: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The master key does not open this keyring.
    #[error(
        "the master key ({master}) does not open keyring {} (key check failed); nothing was \
         changed. Configure the master key this keyring was created with",
        path.display()
    )]
    WrongMasterKey {
        /// The file.
        path: PathBuf,
        /// The provider, described.
        master: String,
    },
    /// The file was modified outside Warden.
    #[error(
        "keyring {} fails its integrity check: it was modified outside Warden ({what}); nothing \
         was changed. Restore it from a backup",
        path.display()
    )]
    Tampered {
        /// The file.
        path: PathBuf,
        /// What failed.
        what: String,
    },
    /// The master key provider failed.
    #[error("master key: {0}")]
    MasterKey(#[from] MasterKeyError),
    /// No key of that name.
    #[error(
        "no key named {name:?} in the keyring (it holds: {known}); add it with `warden keys add`"
    )]
    UnknownKey {
        /// The name asked for.
        name: String,
        /// The names held.
        known: String,
    },
    /// `add` of a name that exists.
    #[error(
        "the keyring already has a key named {name:?}; use `warden keys rotate {name}` to add a version"
    )]
    DuplicateKey {
        /// The name.
        name: String,
    },
    /// A key name Warden does not accept.
    #[error("invalid key name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Building a column key failed (for example a bad FF1 alphabet).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Randomness was unavailable.
    #[error("{0}")]
    Rng(String),
}

/// What `warden keys list` shows of a key (never key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// The id written into envelopes.
    pub id: u32,
    /// The block cipher.
    pub algorithm: Algorithm,
    /// The mode.
    pub mode: Mode,
    /// Mode-specific parameters.
    pub params: KeyParams,
    /// The version new values are sealed with.
    pub active_version: u32,
    /// Every version, with its creation time (RFC 3339, UTC).
    pub versions: Vec<(u32, String)>,
}

/// An open keyring: verified metadata and every data key, unwrapped.
pub struct Keyring {
    path: PathBuf,
    master: Arc<dyn MasterKey>,
    file: KeyringFile,
    integrity_key: Zeroizing<Vec<u8>>,
    data_keys: BTreeMap<(u32, u32), DataKey>,
}

impl core::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .field("master", &self.master.describe())
            .field(
                "keys",
                &self.file.keys.iter().map(|k| &k.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn integrity_aad(keyring_id: &str) -> Vec<u8> {
    let mut aad = b"warden/v1/keyring/integrity-key\0".to_vec();
    aad.extend_from_slice(keyring_id.as_bytes());
    aad
}

fn data_key_aad(keyring_id: &str, entry: &KeyEntry, version: u32) -> Vec<u8> {
    let mut aad = b"warden/v1/keyring/data-key\0".to_vec();
    aad.extend_from_slice(keyring_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&entry.id.to_be_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.push(entry.algorithm.code());
    aad.push(entry.mode.code());
    aad.extend_from_slice(entry.name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&serde_json::to_vec(&entry.params).expect("params serialise"));
    aad
}

fn validate_name(name: &str) -> Result<(), KeyringError> {
    let err = |reason| KeyringError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 128 {
        return Err(err("names are 1 to 128 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(err(
            "use letters, digits, '.', '_' and '-' (for example customers.id_card)",
        ));
    }
    Ok(())
}

impl Keyring {
    /// Creates an empty keyring at `path`. `wrap` defaults to the master key's preference
    /// (SM4-GCM for local keys, AES-256-GCM in a PKCS#11 token). Refuses if `path` exists.
    pub fn create(
        path: &Path,
        master: Arc<dyn MasterKey>,
        wrap: Option<WrapAlgorithm>,
    ) -> Result<Self, KeyringError> {
        if let Ok(existing) = KeyringFile::read(path).map(|f| f.keys.len()) {
            return Err(KeyringError::Exists {
                path: path.to_owned(),
                keys: Some(existing),
            });
        }
        if path.exists() {
            return Err(KeyringError::Exists {
                path: path.to_owned(),
                keys: None,
            });
        }
        let _lock = WriteLock::acquire(path)?;
        let wrap = wrap.unwrap_or_else(|| master.default_wrap());
        let keyring_id = hex::encode(
            crate::rng::secret_bytes::<16>().map_err(|e| KeyringError::Rng(e.to_string()))?,
        );
        let integrity_key = Zeroizing::new(
            crate::rng::secret_bytes::<32>()
                .map_err(|e| KeyringError::Rng(e.to_string()))?
                .to_vec(),
        );
        let wrapped = master.wrap(wrap, &integrity_key, &integrity_aad(&keyring_id))?;
        let mut file = KeyringFile {
            format: file::FORMAT.into(),
            version: file::VERSION,
            keyring_id,
            created_at: now(),
            wrap,
            integrity_key: BASE64.encode(wrapped),
            next_key_id: 1,
            keys: Vec::new(),
            mac: String::new(),
        };
        file.mac = hex::encode(hmac_sm3(&integrity_key, &file.mac_input()));
        file::write_atomic(path, &file, true)?;
        Ok(Keyring {
            path: path.to_owned(),
            master,
            file,
            integrity_key,
            data_keys: BTreeMap::new(),
        })
    }

    /// Opens the keyring at `path`: checks the master key and the file's integrity, and
    /// unwraps every data key.
    pub fn open(path: &Path, master: Arc<dyn MasterKey>) -> Result<Self, KeyringError> {
        let file = KeyringFile::read(path)?;
        let integrity_key = Self::check(path, master.as_ref(), &file)?;
        let mut keyring = Keyring {
            path: path.to_owned(),
            master,
            file,
            integrity_key,
            data_keys: BTreeMap::new(),
        };
        keyring.unwrap_all()?;
        Ok(keyring)
    }

    /// Unwraps the integrity key (the master-key check) and verifies the MAC.
    fn check(
        path: &Path,
        master: &dyn MasterKey,
        file: &KeyringFile,
    ) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        let wrapped = BASE64
            .decode(&file.integrity_key)
            .map_err(|_| KeyringError::Format {
                path: path.to_owned(),
                reason: "integrity_key is not base64".into(),
            })?;
        let key = master
            .unwrap(file.wrap, &wrapped, &integrity_aad(&file.keyring_id))
            .map_err(|e| match e {
                MasterKeyError::Authentication => KeyringError::WrongMasterKey {
                    path: path.to_owned(),
                    master: master.describe(),
                },
                other => KeyringError::MasterKey(other),
            })?;
        let expect = hmac_sm3(&key, &file.mac_input());
        let given = hex::decode(&file.mac).unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expect[..], &given[..])) {
            return Err(KeyringError::Tampered {
                path: path.to_owned(),
                what: "the MAC over its contents does not match".into(),
            });
        }
        Ok(key)
    }

    fn unwrap_all(&mut self) -> Result<(), KeyringError> {
        let mut keys = BTreeMap::new();
        for entry in &self.file.keys {
            for v in &entry.versions {
                if keys.contains_key(&(entry.id, v.version)) {
                    continue;
                }
                let wrapped = BASE64
                    .decode(&v.wrapped)
                    .map_err(|_| KeyringError::Format {
                        path: self.path.clone(),
                        reason: format!(
                            "key {:?} version {}: wrapped key is not base64",
                            entry.name, v.version
                        ),
                    })?;
                let bytes = self
                    .master
                    .unwrap(
                        self.file.wrap,
                        &wrapped,
                        &data_key_aad(&self.file.keyring_id, entry, v.version),
                    )
                    .map_err(|e| match e {
                        MasterKeyError::Authentication => KeyringError::Tampered {
                            path: self.path.clone(),
                            what: format!(
                                "key {:?} version {} does not unwrap",
                                entry.name, v.version
                            ),
                        },
                        other => KeyringError::MasterKey(other),
                    })?;
                let raw: [u8; DATA_KEY_LEN] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| KeyringError::Tampered {
                            path: self.path.clone(),
                            what: format!(
                                "key {:?} version {} has the wrong length",
                                entry.name, v.version
                            ),
                        })?;
                keys.insert((entry.id, v.version), DataKey::from_bytes(raw));
            }
        }
        self.data_keys = keys;
        Ok(())
    }

    /// Runs `change` on the current file contents under the write lock, then seals and writes
    /// the result atomically. The in-memory keyring follows only if everything succeeded.
    fn modify<R>(
        &mut self,
        change: impl FnOnce(&mut KeyringFile, &dyn MasterKey) -> Result<R, KeyringError>,
    ) -> Result<R, KeyringError> {
        let _lock = WriteLock::acquire(&self.path)?;
        // Another administrator may have changed the file since it was opened.
        let mut file = KeyringFile::read(&self.path)?;
        if file.keyring_id != self.file.keyring_id {
            return Err(KeyringError::Tampered {
                path: self.path.clone(),
                what: "it was replaced by another keyring while open".into(),
            });
        }
        let integrity_key = Self::check(&self.path, self.master.as_ref(), &file)?;
        let result = change(&mut file, self.master.as_ref())?;
        file.mac = hex::encode(hmac_sm3(&integrity_key, &file.mac_input()));
        file::write_atomic(&self.path, &file, false)?;
        self.file = file;
        self.integrity_key = integrity_key;
        self.unwrap_all()?;
        Ok(result)
    }

    /// Adds a named column key at version 1.
    pub fn add_key(
        &mut self,
        name: &str,
        algorithm: Algorithm,
        mode: Mode,
        params: KeyParams,
    ) -> Result<KeyInfo, KeyringError> {
        validate_name(name)?;
        // Build once with a throw-away key to validate the parameters before writing anything.
        let probe = DataKey::from_bytes([0u8; DATA_KEY_LEN]);
        ColumnKey::new(name, 0, algorithm, mode, &params, [(1, &probe)], 1)?;
        self.modify(|file, master| {
            if file.keys.iter().any(|k| k.name == name) {
                return Err(KeyringError::DuplicateKey {
                    name: name.to_owned(),
                });
            }
            let mut entry = KeyEntry {
                name: name.to_owned(),
                id: file.next_key_id,
                algorithm,
                mode,
                params,
                active_version: 1,
                versions: Vec::new(),
            };
            let key = DataKey::generate().map_err(|e| KeyringError::Rng(e.to_string()))?;
            let wrapped = master.wrap(
                file.wrap,
                key.expose(),
                &data_key_aad(&file.keyring_id, &entry, 1),
            )?;
            entry.versions.push(VersionEntry {
                version: 1,
                created_at: now(),
                wrapped: BASE64.encode(wrapped),
            });
            file.next_key_id += 1;
            file.keys.push(entry);
            Ok(())
        })?;
        self.info(name)
    }

    /// Adds a version to a key and makes it the active one. Older versions still open.
    pub fn rotate(&mut self, name: &str) -> Result<KeyInfo, KeyringError> {
        self.modify(|file, master| {
            let keyring_id = file.keyring_id.clone();
            let known = Self::names(file);
            let entry = file
                .keys
                .iter_mut()
                .find(|k| k.name == name)
                .ok_or_else(|| KeyringError::UnknownKey {
                    name: name.to_owned(),
                    known,
                })?;
            let version = entry.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
            let key = DataKey::generate().map_err(|e| KeyringError::Rng(e.to_string()))?;
            let wrapped = master.wrap(
                file.wrap,
                key.expose(),
                &data_key_aad(&keyring_id, entry, version),
            )?;
            entry.versions.push(VersionEntry {
                version,
                created_at: now(),
                wrapped: BASE64.encode(wrapped),
            });
            entry.active_version = version;
            Ok(())
        })?;
        self.info(name)
    }

    fn names(file: &KeyringFile) -> String {
        if file.keys.is_empty() {
            "no keys".into()
        } else {
            file.keys
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    fn entry(&self, name: &str) -> Result<&KeyEntry, KeyringError> {
        self.file
            .keys
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyringError::UnknownKey {
                name: name.to_owned(),
                known: Self::names(&self.file),
            })
    }

    /// A key's metadata.
    pub fn info(&self, name: &str) -> Result<KeyInfo, KeyringError> {
        Ok(Self::info_of(self.entry(name)?))
    }

    fn info_of(e: &KeyEntry) -> KeyInfo {
        KeyInfo {
            name: e.name.clone(),
            id: e.id,
            algorithm: e.algorithm,
            mode: e.mode,
            params: e.params.clone(),
            active_version: e.active_version,
            versions: e
                .versions
                .iter()
                .map(|v| (v.version, v.created_at.clone()))
                .collect(),
        }
    }

    /// Every key's metadata, in the order they were added.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.file.keys.iter().map(Self::info_of).collect()
    }

    /// The column key named `name`, with all its versions, ready to seal and open.
    pub fn column_key(&self, name: &str) -> Result<ColumnKey, KeyringError> {
        let e = self.entry(name)?;
        let versions = e.versions.iter().map(|v| {
            let key = self
                .data_keys
                .get(&(e.id, v.version))
                .expect("unwrapped at open");
            (v.version, key)
        });
        Ok(ColumnKey::new(
            &e.name,
            e.id,
            e.algorithm,
            e.mode,
            &e.params,
            versions,
            e.active_version,
        )?)
    }

    /// Every column key by name.
    pub fn column_keys(&self) -> Result<BTreeMap<String, Arc<ColumnKey>>, KeyringError> {
        self.file
            .keys
            .iter()
            .map(|e| Ok((e.name.clone(), Arc::new(self.column_key(&e.name)?))))
            .collect()
    }

    /// The keyring file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the data keys are wrapped.
    pub fn wrap_algorithm(&self) -> WrapAlgorithm {
        self.file.wrap
    }

    /// When the keyring was created (RFC 3339, UTC).
    pub fn created_at(&self) -> &str {
        &self.file.created_at
    }

    /// The master key's provider, described.
    pub fn master_description(&self) -> String {
        self.master.describe()
    }
}

#[cfg(test)]
mod tests;
