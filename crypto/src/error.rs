//! Errors of the column modes, worded for the DBA who reads them in a log: what failed, on
//! which key, and what to do about it.

use crate::envelope::EnvelopeError;
use crate::rng::RngError;
use crate::scheme::{Algorithm, Mode};

/// Why a value could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The stored bytes are not a well-formed ciphertext.
    #[error("column key {key:?}: {source}")]
    Malformed {
        /// The column key.
        key: String,
        /// What is wrong with the bytes.
        #[source]
        source: EnvelopeError,
    },
    /// The value names another key.
    #[error(
        "the value was encrypted under key id {found}, but column key {key:?} has id {expected}: \
         the column's policy names the wrong key, or the value was copied from another column"
    )]
    WrongKey {
        /// The column key.
        key: String,
        /// This key's id.
        expected: u32,
        /// The id in the value's header.
        found: u32,
    },
    /// The value was written with another algorithm or mode than the key's.
    #[error(
        "the value is {found_algorithm}/{found_mode} ciphertext, but column key {key:?} is \
         {algorithm}/{mode}: the column's policy does not match how its data was encrypted"
    )]
    WrongScheme {
        /// The column key.
        key: String,
        /// This key's algorithm.
        algorithm: Algorithm,
        /// This key's mode.
        mode: Mode,
        /// The algorithm in the value's header.
        found_algorithm: Algorithm,
        /// The mode in the value's header.
        found_mode: Mode,
    },
    /// The value names a key version the keyring does not hold.
    #[error(
        "the value was encrypted with version {version} of key {key:?}, which this keyring does \
         not hold (it holds {held}); use the keyring that has that version (a newer copy, or a \
         backup) — never re-create a key with `warden keys init`"
    )]
    UnknownVersion {
        /// The column key.
        key: String,
        /// The version in the value's header.
        version: u32,
        /// The versions held, for the message.
        held: String,
    },
    /// Authentication failed.
    #[error(
        "the value does not authenticate under version {version} of key {key:?} in key domain \
         {domain:?}: it was modified, copied from another column or key domain, or the keyring's \
         key differs from the one that encrypted it"
    )]
    Authentication {
        /// The column key.
        key: String,
        /// The key version tried.
        version: u32,
        /// The key domain.
        domain: String,
    },
    /// The plaintext does not suit the mode.
    #[error("column key {key:?} ({mode}) cannot encrypt this value: {reason}")]
    InvalidPlaintext {
        /// The column key.
        key: String,
        /// The key's mode.
        mode: Mode,
        /// Why.
        reason: String,
    },
    /// Randomness was unavailable.
    #[error("{0}")]
    Rng(String),
}

impl From<RngError> for CryptoError {
    fn from(e: RngError) -> Self {
        CryptoError::Rng(e.to_string())
    }
}
