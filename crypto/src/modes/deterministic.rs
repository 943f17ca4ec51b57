//! Deterministic mode: SIV over SM4 or AES-256 ([`crate::siv`]).
//!
//! Equal plaintexts in one key domain give byte-identical envelopes, so `=`, `IN`, joins,
//! `GROUP BY`, `DISTINCT`, UNIQUE, primary and foreign keys work on the ciphertext with the
//! database's own indexes (a query's literal is sealed the same way and compared). Leakage:
//! equality and therefore the frequency of every value in the column; low-entropy columns
//! (gender, province) are open to frequency analysis and should stay randomized.

use crate::data_key::DataKey;
use crate::envelope::{HEADER_LEN, SIV_LEN};
use crate::scheme::Algorithm;
use crate::siv::{Aes256Siv, Siv, Sm4Siv};

use super::EngineError;

// Built once per key version and used for every value: an indirection would cost more
// than the unused bytes of the smaller variants.
#[allow(clippy::large_enum_variant)]
pub(crate) enum DeterministicEngine {
    Sm4(Sm4Siv),
    Aes(Aes256Siv),
}

impl DeterministicEngine {
    pub(crate) fn new(algorithm: Algorithm, key: &DataKey) -> Self {
        let hash = key.derive::<16>(&format!("warden/v1/{algorithm}/deterministic/hash-key"));
        match algorithm {
            Algorithm::Sm4 => {
                let prf = key.derive::<16>("warden/v1/sm4/deterministic/prf-key");
                let enc = key.derive::<16>("warden/v1/sm4/deterministic/ctr-key");
                DeterministicEngine::Sm4(Siv::new(&prf.0, &enc.0, &hash.0))
            }
            Algorithm::Aes256 => {
                let prf = key.derive::<32>("warden/v1/aes-256/deterministic/prf-key");
                let enc = key.derive::<32>("warden/v1/aes-256/deterministic/ctr-key");
                DeterministicEngine::Aes(Aes256Siv::new(&prf.0, &enc.0, &hash.0))
            }
        }
    }

    /// Appends `header ‖ synthetic IV ‖ ciphertext`.
    pub(crate) fn seal(
        &self,
        header: &[u8; HEADER_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        out.reserve(HEADER_LEN + SIV_LEN + plaintext.len());
        out.extend_from_slice(header);
        let iv_at = out.len();
        out.extend_from_slice(&[0u8; SIV_LEN]);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let iv = match self {
            DeterministicEngine::Sm4(s) => s.seal_in_place(aad, &mut out[start..]),
            DeterministicEngine::Aes(s) => s.seal_in_place(aad, &mut out[start..]),
        }
        .map_err(|_| EngineError::InvalidPlaintext("longer than the mode allows".into()))?;
        out[iv_at..start].copy_from_slice(&iv);
        Ok(())
    }

    /// Appends the plaintext of `body` (= synthetic IV ‖ ciphertext).
    pub(crate) fn open(
        &self,
        aad: &[u8],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let (iv, ct) = body.split_at(SIV_LEN);
        let iv: &[u8; SIV_LEN] = iv.try_into().expect("16 bytes");
        let start = out.len();
        out.extend_from_slice(ct);
        let r = match self {
            DeterministicEngine::Sm4(s) => s.open_in_place(aad, &mut out[start..], iv),
            DeterministicEngine::Aes(s) => s.open_in_place(aad, &mut out[start..], iv),
        };
        if r.is_err() {
            super::wipe_tail(out, start);
            return Err(EngineError::Authentication);
        }
        Ok(())
    }
}
