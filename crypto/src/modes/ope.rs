//! Order-preserving mode ([`crate::ope`]): the plaintext is an `i64` (8 bytes, big-endian,
//! two's complement; see [`crate::ope::value::OrderedKind`] for decimals, dates and timestamps)
//! and the stored form is the 16-byte ciphertext followed by the 12-byte header as a trailer.

use crate::data_key::DataKey;
use crate::domain::KeyDomain;
use crate::envelope::HEADER_LEN;
use crate::ope::{Aes256Ope, CIPHERTEXT_LEN, Ope, Sm4Ope};
use crate::scheme::Algorithm;

use super::EngineError;

/// Plaintext length of the order-preserving mode.
pub const OPE_PLAINTEXT_LEN: usize = 8;

// Built once per key version and used for every value: an indirection would cost more
// than the unused bytes of the smaller variants.
#[allow(clippy::large_enum_variant)]
pub(crate) enum OpeEngine {
    Sm4(Sm4Ope),
    Aes(Aes256Ope),
}

impl OpeEngine {
    pub(crate) fn new(algorithm: Algorithm, key: &DataKey) -> Self {
        match algorithm {
            Algorithm::Sm4 => {
                OpeEngine::Sm4(Ope::new(&key.derive::<16>("warden/v1/sm4/ope/prf-key").0))
            }
            Algorithm::Aes256 => OpeEngine::Aes(Ope::new(
                &key.derive::<32>("warden/v1/aes-256/ope/prf-key").0,
            )),
        }
    }

    pub(crate) fn seal(
        &self,
        header: &[u8; HEADER_LEN],
        domain: &KeyDomain,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let v: [u8; OPE_PLAINTEXT_LEN] = plaintext.try_into().map_err(|_| {
            EngineError::InvalidPlaintext(format!(
                "order-preserving plaintexts are 8-byte big-endian integers, got {} bytes",
                plaintext.len()
            ))
        })?;
        let v = i64::from_be_bytes(v);
        let ct = match self {
            OpeEngine::Sm4(o) => o.encrypt_i64(&o.tweak(domain.digest()), v),
            OpeEngine::Aes(o) => o.encrypt_i64(&o.tweak(domain.digest()), v),
        };
        out.extend_from_slice(&ct);
        out.extend_from_slice(header);
        Ok(())
    }

    pub(crate) fn open(
        &self,
        domain: &KeyDomain,
        ct: &[u8; CIPHERTEXT_LEN],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let v = match self {
            OpeEngine::Sm4(o) => o.decrypt_i64(&o.tweak(domain.digest()), ct),
            OpeEngine::Aes(o) => o.decrypt_i64(&o.tweak(domain.digest()), ct),
        }
        .map_err(|_| EngineError::Authentication)?;
        out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
}
