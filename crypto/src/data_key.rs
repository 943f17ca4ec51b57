//! A column's data key: 32 random bytes, held only in memory, wiped when dropped.
//!
//! Each mode derives the keys its primitives need from it ([`crate::kdf`]), so a data key has
//! the same shape whatever its algorithm and mode, and the keyring wraps every key alike.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::kdf;
use crate::rng::{self, RngError};

/// Length of a data key.
pub const DATA_KEY_LEN: usize = 32;

/// Key material of one version of a column key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl DataKey {
    /// A fresh key from the operating system's random generator.
    pub fn generate() -> Result<Self, RngError> {
        Ok(DataKey(rng::secret_bytes()?))
    }

    /// A key from bytes (unwrapping, tests).
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        DataKey(bytes)
    }

    /// The raw bytes, for wrapping under the master key.
    pub fn expose(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }

    /// A subkey for one purpose, e.g. `derive::<16>("warden/v1/sm4/randomized/gcm")`.
    pub(crate) fn derive<const N: usize>(&self, label: &str) -> Subkey<N> {
        Subkey(kdf::derive_array(&self.0, label))
    }
}

impl core::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Derived key bytes, wiped when dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct Subkey<const N: usize>(pub(crate) [u8; N]);
