//! The column cipher modes, behind the one trait the rest of Warden uses: [`ColumnCipher`].
//!
//! | mode | what the database can do | what it leaks |
//! |---|---|---|
//! | randomized (SM4-GCM, AES-256-GCM) | store and return | length |
//! | deterministic (SIV) | `=`, `IN`, joins, `GROUP BY`, UNIQUE, PK/FK | equality, frequency, length |
//! | order-preserving | ranges, `ORDER BY`, `MIN`/`MAX`, equality | order, ~half the bits, frequency |
//! | format-preserving (FF1) | store a token of the value's shape | equality, length, separators |
//!
//! Every mode binds its values to a [`KeyDomain`]. A [`ColumnKey`] is one named key with all its
//! versions: it seals with the active version and opens whatever version a value's header names.
//! Plaintexts and stored values are bytes; for the order-preserving mode the plaintext is an
//! 8-byte big-endian `i64` and for FF1 it is UTF-8 text.

mod batch;
mod column_key;
mod deterministic;
mod ff1;
mod ope;
mod randomized;
#[cfg(test)]
mod tests;

use std::ops::Range;

pub use column_key::{ColumnKey, KeyParams};
pub use ope::OPE_PLAINTEXT_LEN;

use crate::domain::KeyDomain;
use crate::envelope;
use crate::error::CryptoError;
use crate::rng::RngError;
use crate::scheme::{Algorithm, Mode};

/// Encrypts and decrypts the values of protected columns.
///
/// `seal_into` and `open_into` append to `out` and leave it as it was on error; the batch
/// methods process a column of a result set at once (the SM4 modes then fill the cipher's
/// parallel lanes across values, several times faster per value than one call each).
pub trait ColumnCipher: Send + Sync {
    /// The key's name (for messages and audit).
    fn key_name(&self) -> &str;
    /// The block cipher.
    fn algorithm(&self) -> Algorithm;
    /// The mode.
    fn mode(&self) -> Mode;

    /// Appends the stored form of `plaintext`.
    fn seal_into(
        &self,
        plaintext: &[u8],
        domain: &KeyDomain,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError>;

    /// Appends the plaintext of a stored value.
    fn open_into(
        &self,
        stored: &[u8],
        domain: &KeyDomain,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError>;

    /// The stored form of `plaintext`.
    fn seal(&self, plaintext: &[u8], domain: &KeyDomain) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + 48);
        self.seal_into(plaintext, domain, &mut out)?;
        Ok(out)
    }

    /// The plaintext of a stored value.
    fn open(&self, stored: &[u8], domain: &KeyDomain) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(stored.len());
        self.open_into(stored, domain, &mut out)?;
        Ok(out)
    }

    /// Seals many values; results land in `out` in order (it is cleared first).
    fn seal_batch(&self, plaintexts: &[&[u8]], domain: &KeyDomain, out: &mut Batch) {
        out.clear();
        for p in plaintexts {
            out.push_with(|buf| self.seal_into(p, domain, buf));
        }
    }

    /// Opens many values; results land in `out` in order (it is cleared first).
    fn open_batch(&self, stored: &[&[u8]], domain: &KeyDomain, out: &mut Batch) {
        out.clear();
        for s in stored {
            out.push_with(|buf| self.open_into(s, domain, buf));
        }
    }

    /// The text form of the stored value (base64, or hex for the order-preserving mode), for
    /// columns that must stay text.
    fn seal_text(&self, plaintext: &[u8], domain: &KeyDomain) -> Result<String, CryptoError> {
        Ok(envelope::to_text(
            self.mode(),
            &self.seal(plaintext, domain)?,
        ))
    }

    /// Opens a text form.
    fn open_text(&self, text: &str, domain: &KeyDomain) -> Result<Vec<u8>, CryptoError> {
        let stored =
            envelope::from_text(self.mode(), text).map_err(|source| CryptoError::Malformed {
                key: self.key_name().to_owned(),
                source,
            })?;
        self.open(&stored, domain)
    }
}

/// The results of a batch: one buffer, one entry per value.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    items: Vec<Result<Range<usize>, CryptoError>>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all results, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }

    /// Number of results.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no results.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The `i`-th result.
    pub fn get(&self, i: usize) -> Result<&[u8], &CryptoError> {
        match &self.items[i] {
            Ok(r) => Ok(&self.data[r.clone()]),
            Err(e) => Err(e),
        }
    }

    /// All results in order.
    pub fn iter(&self) -> impl Iterator<Item = Result<&[u8], &CryptoError>> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Appends one result produced by `f` writing into the shared buffer.
    pub(crate) fn push_with(&mut self, f: impl FnOnce(&mut Vec<u8>) -> Result<(), CryptoError>) {
        let start = self.data.len();
        match f(&mut self.data) {
            Ok(()) => self.items.push(Ok(start..self.data.len())),
            Err(e) => {
                wipe_tail(&mut self.data, start);
                self.items.push(Err(e));
            }
        }
    }

    /// Reserves a result slot of `len` zero bytes and returns its index (filled in by batch
    /// paths).
    pub(crate) fn push_slot(&mut self, len: usize) -> usize {
        let start = self.data.len();
        self.data.resize(start + len, 0);
        self.items.push(Ok(start..start + len));
        self.items.len() - 1
    }

    pub(crate) fn push_err(&mut self, e: CryptoError) {
        self.items.push(Err(e));
    }

    /// The bytes of slot `i` (which must be a success).
    pub(crate) fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        match &self.items[i] {
            Ok(r) => &mut self.data[r.clone()],
            Err(_) => &mut [],
        }
    }

    /// Marks a slot as failed and wipes what it held.
    pub(crate) fn fail(&mut self, i: usize, e: CryptoError) {
        if let Ok(r) = &self.items[i] {
            let r = r.clone();
            zeroize::Zeroize::zeroize(&mut self.data[r]);
        }
        self.items[i] = Err(e);
    }

    /// Disjoint mutable views into successful slots, in slot order: for slot `i` with byte
    /// range `r`, `pick(i, r)` chooses the sub-range to lend (or `None` to skip the slot).
    pub(crate) fn sub_slices_mut(
        &mut self,
        mut pick: impl FnMut(usize, &Range<usize>) -> Option<Range<usize>>,
    ) -> Vec<(usize, &mut [u8])> {
        let mut rest: &mut [u8] = &mut self.data;
        let mut consumed = 0;
        let mut out = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            let Ok(r) = item else { continue };
            let Some(sub) = pick(i, r) else { continue };
            debug_assert!(sub.start >= r.start && sub.end <= r.end && sub.start >= consumed);
            let (_, tail) = core::mem::take(&mut rest).split_at_mut(sub.start - consumed);
            let (mine, tail) = tail.split_at_mut(sub.end - sub.start);
            out.push((i, mine));
            rest = tail;
            consumed = sub.end;
        }
        out
    }
}

/// What an engine reports; [`ColumnKey`] adds the key, version and domain to make a
/// [`CryptoError`].
#[derive(Debug)]
pub(crate) enum EngineError {
    Authentication,
    InvalidPlaintext(String),
    Rng(RngError),
}

impl From<RngError> for EngineError {
    fn from(e: RngError) -> Self {
        EngineError::Rng(e)
    }
}

/// Zeroes and drops whatever was appended to `out` after `start`.
pub(crate) fn wipe_tail(out: &mut Vec<u8>, start: usize) {
    zeroize::Zeroize::zeroize(&mut out[start..]);
    out.truncate(start);
}

/// Calls `f` with the associated data `header ‖ domain digest` (28 bytes, two GHASH blocks).
pub(crate) fn with_aad<R>(
    header: &[u8; envelope::HEADER_LEN],
    domain: &KeyDomain,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let mut aad = [0u8; envelope::HEADER_LEN + 16];
    aad[..envelope::HEADER_LEN].copy_from_slice(header);
    aad[envelope::HEADER_LEN..].copy_from_slice(domain.digest());
    f(&aad)
}
