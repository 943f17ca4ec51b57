//! Format-preserving mode ([`crate::ff1`]): UTF-8 text in, a token of the same format out,
//! with the key domain's digest as the FF1 tweak. No envelope: the token must look like the
//! plaintext, so the key version comes from the column's policy (rotation re-tokenises).

use crate::data_key::DataKey;
use crate::domain::KeyDomain;
use crate::ff1::{Alphabet, Ff1Cipher};
use crate::scheme::Algorithm;

use super::EngineError;

pub(crate) struct Ff1Engine(Ff1Cipher);

impl Ff1Engine {
    pub(crate) fn new(algorithm: Algorithm, key: &DataKey, alphabet: Alphabet) -> Self {
        Ff1Engine(match algorithm {
            Algorithm::Sm4 => {
                Ff1Cipher::sm4(&key.derive::<16>("warden/v1/sm4/ff1/key").0, alphabet)
            }
            Algorithm::Aes256 => {
                Ff1Cipher::aes256(&key.derive::<32>("warden/v1/aes-256/ff1/key").0, alphabet)
            }
        })
    }

    pub(crate) fn transform(
        &self,
        domain: &KeyDomain,
        input: &[u8],
        encrypt: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let text = core::str::from_utf8(input).map_err(|_| {
            EngineError::InvalidPlaintext("format-preserving values are UTF-8 text".into())
        })?;
        let result = if encrypt {
            self.0.encrypt_str(domain.digest(), text)
        } else {
            self.0.decrypt_str(domain.digest(), text)
        }
        .map_err(|e| EngineError::InvalidPlaintext(e.to_string()))?;
        out.extend_from_slice(result.as_bytes());
        Ok(())
    }
}
