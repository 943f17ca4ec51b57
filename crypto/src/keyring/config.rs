//! The `[keys]` section of the Warden configuration file.
//!
//! ```toml
//! [keys]
//! keyring = "keyring.json"
//! master_key = { provider = "env", var = "WARDEN_MASTER_KEY" }
//! # master_key = { provider = "file", path = "master.key" }
//! # master_key = { provider = "pkcs11", module = "/usr/lib/softhsm/libsofthsm2.so",
//! #                token_label = "warden", pin_env = "WARDEN_HSM_PIN", key_label = "warden-master" }
//! # wrap = "sm4-gcm"   # how `init` wraps data keys: sm4-gcm (default for env/file) or aes-256-gcm
//! ```
//!
//! Relative paths are relative to the configuration file's directory
//! ([`KeysConfig::resolve_relative_to`]). Unknown keys are errors, so a typo never silently
//! changes where keys come from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::master::{MasterKey, WrapAlgorithm};
use super::pkcs11::{Pkcs11Location, Pkcs11MasterKey, read_pin};
use super::{Keyring, KeyringError, master_key_from_env, master_key_from_file};

/// `[keys]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The keyring file.
    pub keyring: PathBuf,
    /// Where the master key comes from.
    pub master_key: MasterKeyConfig,
    /// How a new keyring wraps its data keys (`warden keys init`); the provider's default when
    /// absent. An existing keyring always uses the algorithm it records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap: Option<WrapAlgorithm>,
}

/// `master_key = { provider = "…", … }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase", deny_unknown_fields)]
pub enum MasterKeyConfig {
    /// An environment variable holding 64 hex digits (or 44 base64 characters).
    Env {
        /// The variable's name.
        var: String,
    },
    /// A file holding the key (raw, hex or base64), mode 0600.
    File {
        /// The file.
        path: PathBuf,
    },
    /// An AES-256 key object on a PKCS#11 token.
    Pkcs11 {
        /// The PKCS#11 module (shared library).
        module: PathBuf,
        /// The token's label.
        token_label: String,
        /// An environment variable holding the user PIN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin_env: Option<String>,
        /// A file holding the user PIN (first line).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin_file: Option<PathBuf>,
        /// The master key object's label.
        key_label: String,
    },
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl KeysConfig {
    /// Makes relative paths relative to `base` (the configuration file's directory). The
    /// PKCS#11 module path is left alone when it is a bare library name, which the dynamic
    /// loader resolves.
    pub fn resolve_relative_to(&mut self, base: &Path) {
        resolve(base, &mut self.keyring);
        match &mut self.master_key {
            MasterKeyConfig::Env { .. } => {}
            MasterKeyConfig::File { path } => resolve(base, path),
            MasterKeyConfig::Pkcs11 {
                module, pin_file, ..
            } => {
                if module.components().count() > 1 {
                    resolve(base, module);
                }
                if let Some(p) = pin_file {
                    resolve(base, p);
                }
            }
        }
    }

    /// The PKCS#11 location, if the provider is a token.
    pub fn pkcs11_location(&self) -> Option<Pkcs11Location> {
        match &self.master_key {
            MasterKeyConfig::Pkcs11 {
                module,
                token_label,
                key_label,
                ..
            } => Some(Pkcs11Location {
                module: module.clone(),
                token_label: token_label.clone(),
                key_label: key_label.clone(),
            }),
            _ => None,
        }
    }

    /// The token PIN, if the provider is a token.
    pub fn pkcs11_pin(&self) -> Result<Option<zeroize::Zeroizing<String>>, KeyringError> {
        match &self.master_key {
            MasterKeyConfig::Pkcs11 {
                pin_env, pin_file, ..
            } => Ok(Some(read_pin(pin_env.as_deref(), pin_file.as_deref())?)),
            _ => Ok(None),
        }
    }

    /// Loads the master key from its provider.
    pub fn load_master_key(&self) -> Result<Arc<dyn MasterKey>, KeyringError> {
        Ok(match &self.master_key {
            MasterKeyConfig::Env { var } => Arc::new(master_key_from_env(var)?),
            MasterKeyConfig::File { path } => Arc::new(master_key_from_file(path)?),
            MasterKeyConfig::Pkcs11 { .. } => {
                let location = self.pkcs11_location().expect("a PKCS#11 provider");
                let pin = self.pkcs11_pin()?.expect("a PKCS#11 provider");
                Arc::new(Pkcs11MasterKey::open(location, &pin)?)
            }
        })
    }

    /// Opens the configured keyring with the configured master key.
    pub fn open_keyring(&self) -> Result<Keyring, KeyringError> {
        Keyring::open(&self.keyring, self.load_master_key()?)
    }

    /// Creates the configured keyring (see [`Keyring::create`]).
    pub fn create_keyring(&self) -> Result<Keyring, KeyringError> {
        Keyring::create(&self.keyring, self.load_master_key()?, self.wrap)
    }
}
