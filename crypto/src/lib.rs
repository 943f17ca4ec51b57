//! Warden's cryptography.
//!
//! Every protected value in Warden passes through this crate: block ciphers (SM4, AES), hashes
//! (SM3), the column cipher modes built on them, the ciphertext envelope and the keyring. It
//! depends on nothing else of Warden's, so the proxy, the audit trail and the masking jobs all
//! share one audited implementation.
//!
//! The rest of Warden talks to [`ColumnCipher`] (implemented by [`ColumnKey`], one named key
//! with its versions) and to [`keyring::Keyring`], which holds the data keys wrapped under the
//! master key. The primitives are public for tests, benchmarks and the masking jobs.
//!
//! `unsafe` code lives only in the SM4 x86 backends (`sm4::aesni`, `sm4::gfni`): CPU
//! intrinsics behind runtime feature detection.

#![deny(unsafe_code)]

pub mod aes_gcm;
pub mod block;
pub mod data_key;
pub mod domain;
pub mod envelope;
pub mod error;
pub mod ff1;
pub mod gcm;
pub mod kdf;
pub mod keyring;
pub mod modes;
mod multi;
pub mod ope;
pub mod rng;
pub mod scheme;
pub mod siv;
pub mod sm3;
pub mod sm4;

pub use data_key::DataKey;
pub use domain::KeyDomain;
pub use error::CryptoError;
pub use keyring::{KeyInfo, Keyring, KeyringError, KeysConfig, MasterKey, MasterKeyConfig};
pub use modes::{Batch, ColumnCipher, ColumnKey, KeyParams};
pub use scheme::{Algorithm, Mode};
