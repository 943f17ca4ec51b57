//! Randomized mode: SM4-GCM or AES-256-GCM with a fresh 96-bit nonce per value.
//!
//! The default for every protected column. Leakage: the value's length (and that a value is
//! present); two encryptions of the same plaintext look unrelated, so the database can do
//! nothing with the ciphertext but store and return it. Nonces are random, so a key should seal
//! fewer than 2^32 values (SP 800-38D's limit for random nonces); rotate before that.

use crate::aes_gcm::Aes256Gcm;
use crate::data_key::DataKey;
use crate::envelope::{HEADER_LEN, NONCE_LEN, TAG_LEN};
use crate::gcm::Sm4Gcm;
use crate::rng;
use crate::scheme::Algorithm;

use super::EngineError;

pub(crate) enum RandomizedEngine {
    Sm4(Sm4Gcm),
    Aes(Aes256Gcm),
}

impl RandomizedEngine {
    pub(crate) fn new(algorithm: Algorithm, key: &DataKey) -> Self {
        match algorithm {
            Algorithm::Sm4 => {
                let k = key.derive::<16>("warden/v1/sm4/randomized/gcm-key");
                RandomizedEngine::Sm4(Sm4Gcm::new(&k.0))
            }
            Algorithm::Aes256 => {
                let k = key.derive::<32>("warden/v1/aes-256/randomized/gcm-key");
                RandomizedEngine::Aes(Aes256Gcm::new(&k.0))
            }
        }
    }

    /// Appends `header ‖ nonce ‖ ciphertext ‖ tag`.
    pub(crate) fn seal(
        &self,
        header: &[u8; HEADER_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let nonce = rng::nonce12()?;
        out.reserve(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(header);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = match self {
            RandomizedEngine::Sm4(g) => g.encrypt_in_place_detached(&nonce, aad, &mut out[start..]),
            RandomizedEngine::Aes(g) => g.encrypt_in_place_detached(&nonce, aad, &mut out[start..]),
        }
        .map_err(|_| EngineError::InvalidPlaintext("longer than GCM allows".into()))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Appends the plaintext of `body` (= nonce ‖ ciphertext ‖ tag, length checked by the
    /// envelope parser).
    pub(crate) fn open(
        &self,
        aad: &[u8],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let (nonce, rest) = body.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("12 bytes");
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("16 bytes");
        let start = out.len();
        out.extend_from_slice(ct);
        let r = match self {
            RandomizedEngine::Sm4(g) => {
                g.decrypt_in_place_detached(nonce, aad, &mut out[start..], tag)
            }
            RandomizedEngine::Aes(g) => {
                g.decrypt_in_place_detached(nonce, aad, &mut out[start..], tag)
            }
        };
        if r.is_err() {
            super::wipe_tail(out, start);
            return Err(EngineError::Authentication);
        }
        Ok(())
    }
}
