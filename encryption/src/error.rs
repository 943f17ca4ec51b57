//! Errors of the encryption layer that reach a client or an operator.

use warden_crypto::CryptoError;

use crate::logical::ValueError;

/// Why a value or statement could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The value does not fit the column's logical type.
    #[error("{column}: {source}")]
    Value {
        column: String,
        #[source]
        source: ValueError,
    },
    /// The cipher failed (wrong key, tampered or foreign ciphertext, …).
    #[error("{column}: {source}")]
    Crypto {
        column: String,
        #[source]
        source: CryptoError,
    },
    /// The policy and the keyring disagree.
    #[error("{column}: {message}")]
    Key { column: String, message: String },
}
