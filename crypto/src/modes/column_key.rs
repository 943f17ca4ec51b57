//! A named column key with all its versions: seals with the active version, opens any version
//! a value's header names, and tells a re-encryption job which values are not yet on the active
//! version.

use std::collections::BTreeMap;

use crate::data_key::DataKey;
use crate::domain::KeyDomain;
use crate::envelope::{self, Envelope, HEADER_LEN, Header};
use crate::error::CryptoError;
use crate::ff1::Alphabet;
use crate::scheme::{Algorithm, Mode};

use super::deterministic::DeterministicEngine;
use super::ff1::Ff1Engine;
use super::ope::OpeEngine;
use super::randomized::RandomizedEngine;
use super::{Batch, ColumnCipher, EngineError, with_aad};

/// Mode-specific settings of a column key, kept in the keyring next to the key.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyParams {
    /// FF1 only: the alphabet's name (`digits`, `alnum-upper`, `alnum-lower`, `alnum`,
    /// `id-card`, `chars:<characters>`); `digits` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabet: Option<String>,
}

// Built once per key version and used for every value: an indirection would cost more
// than the unused bytes of the smaller variants.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Engine {
    Randomized(RandomizedEngine),
    Deterministic(DeterministicEngine),
    Ope(OpeEngine),
    Ff1(Ff1Engine),
}

/// One named column key, ready to use: every version's primitives are expanded.
pub struct ColumnKey {
    pub(super) name: String,
    id: u32,
    algorithm: Algorithm,
    mode: Mode,
    active: u32,
    versions: BTreeMap<u32, Engine>,
}

impl ColumnKey {
    /// Builds a column key from its versions' data keys. `active` must be one of them.
    pub fn new<'a>(
        name: impl Into<String>,
        id: u32,
        algorithm: Algorithm,
        mode: Mode,
        params: &KeyParams,
        versions: impl IntoIterator<Item = (u32, &'a DataKey)>,
        active: u32,
    ) -> Result<Self, CryptoError> {
        let name = name.into();
        let alphabet = match (mode, &params.alphabet) {
            (Mode::FormatPreserving, Some(a)) => {
                Some(
                    Alphabet::from_name(a).map_err(|e| CryptoError::InvalidPlaintext {
                        key: name.clone(),
                        mode,
                        reason: e.to_string(),
                    })?,
                )
            }
            (Mode::FormatPreserving, None) => Some(Alphabet::digits()),
            _ => None,
        };
        let versions: BTreeMap<u32, Engine> = versions
            .into_iter()
            .map(|(v, key)| {
                let engine = match mode {
                    Mode::Randomized => Engine::Randomized(RandomizedEngine::new(algorithm, key)),
                    Mode::Deterministic => {
                        Engine::Deterministic(DeterministicEngine::new(algorithm, key))
                    }
                    Mode::OrderPreserving => Engine::Ope(OpeEngine::new(algorithm, key)),
                    Mode::FormatPreserving => Engine::Ff1(Ff1Engine::new(
                        algorithm,
                        key,
                        alphabet.clone().expect("set for FF1 above"),
                    )),
                };
                (v, engine)
            })
            .collect();
        let key = ColumnKey {
            name,
            id,
            algorithm,
            mode,
            active,
            versions,
        };
        key.engine(active)?;
        Ok(key)
    }

    /// The keyring's id of this key (written in every envelope).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The version new values are sealed with.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// Every version this key can open, ascending.
    pub fn versions(&self) -> Vec<u32> {
        self.versions.keys().copied().collect()
    }

    /// The key version a stored value was sealed with (`None` for FF1 tokens, which carry no
    /// version). Does not decrypt.
    pub fn stored_version(&self, stored: &[u8]) -> Result<Option<u32>, CryptoError> {
        let header = match self.mode {
            Mode::FormatPreserving => return Ok(None),
            Mode::OrderPreserving => envelope::parse_ope(stored).map(|(_, h)| h),
            Mode::Randomized | Mode::Deterministic => Envelope::parse(stored).map(|e| e.header),
        }
        .map_err(|source| self.malformed(source))?;
        self.check_header(&header)?;
        Ok(Some(header.key_version))
    }

    /// For a re-encryption job: the value sealed with the active version, or `None` if it
    /// already is.
    pub fn reencrypt(
        &self,
        stored: &[u8],
        domain: &KeyDomain,
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        if self.mode == Mode::FormatPreserving || self.stored_version(stored)? == Some(self.active)
        {
            return Ok(None);
        }
        let plaintext = zeroize::Zeroizing::new(self.open(stored, domain)?);
        self.seal(&plaintext, domain).map(Some)
    }

    /// Opens an FF1 token with a given version (tokens do not name their version; during a
    /// rotation the job re-tokenising a column knows it).
    pub fn open_version_into(
        &self,
        version: u32,
        stored: &[u8],
        domain: &KeyDomain,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        match self.engine(version)? {
            Engine::Ff1(e) => e
                .transform(domain, stored, false, out)
                .map_err(|e| self.engine_error(e, version, domain)),
            _ => self.open_into(stored, domain, out),
        }
    }

    pub(super) fn header(&self, version: u32) -> [u8; HEADER_LEN] {
        Header {
            algorithm: self.algorithm,
            mode: self.mode,
            key_id: self.id,
            key_version: version,
        }
        .to_bytes()
    }

    pub(super) fn engine(&self, version: u32) -> Result<&Engine, CryptoError> {
        self.versions
            .get(&version)
            .ok_or_else(|| CryptoError::UnknownVersion {
                key: self.name.clone(),
                version,
                held: if self.versions.is_empty() {
                    "no versions".into()
                } else {
                    let list: Vec<String> = self.versions.keys().map(u32::to_string).collect();
                    format!("versions {}", list.join(", "))
                },
            })
    }

    pub(super) fn check_header(&self, h: &Header) -> Result<(), CryptoError> {
        if h.algorithm != self.algorithm || h.mode != self.mode {
            return Err(CryptoError::WrongScheme {
                key: self.name.clone(),
                algorithm: self.algorithm,
                mode: self.mode,
                found_algorithm: h.algorithm,
                found_mode: h.mode,
            });
        }
        if h.key_id != self.id {
            return Err(CryptoError::WrongKey {
                key: self.name.clone(),
                expected: self.id,
                found: h.key_id,
            });
        }
        Ok(())
    }

    pub(super) fn too_long(&self) -> CryptoError {
        CryptoError::InvalidPlaintext {
            key: self.name.clone(),
            mode: self.mode,
            reason: "longer than the mode allows".into(),
        }
    }

    pub(super) fn malformed(&self, source: envelope::EnvelopeError) -> CryptoError {
        CryptoError::Malformed {
            key: self.name.clone(),
            source,
        }
    }

    fn engine_error(&self, e: EngineError, version: u32, domain: &KeyDomain) -> CryptoError {
        match e {
            EngineError::Authentication => CryptoError::Authentication {
                key: self.name.clone(),
                version,
                domain: domain.name().to_owned(),
            },
            EngineError::InvalidPlaintext(reason) => CryptoError::InvalidPlaintext {
                key: self.name.clone(),
                mode: self.mode,
                reason,
            },
            EngineError::Rng(e) => e.into(),
        }
    }
}

impl ColumnCipher for ColumnKey {
    fn key_name(&self) -> &str {
        &self.name
    }

    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn mode(&self) -> Mode {
        self.mode
    }

    fn seal_into(
        &self,
        plaintext: &[u8],
        domain: &KeyDomain,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let version = self.active;
        let header = self.header(version);
        let start = out.len();
        let r = match self.engine(version)? {
            Engine::Randomized(e) => {
                with_aad(&header, domain, |aad| e.seal(&header, aad, plaintext, out))
            }
            Engine::Deterministic(e) => {
                with_aad(&header, domain, |aad| e.seal(&header, aad, plaintext, out))
            }
            Engine::Ope(e) => e.seal(&header, domain, plaintext, out),
            Engine::Ff1(e) => e.transform(domain, plaintext, true, out),
        };
        r.map_err(|e| {
            super::wipe_tail(out, start);
            self.engine_error(e, version, domain)
        })
    }

    fn open_into(
        &self,
        stored: &[u8],
        domain: &KeyDomain,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        match self.mode {
            Mode::FormatPreserving => self.open_version_into(self.active, stored, domain, out),
            Mode::OrderPreserving => {
                let (ct, header) = envelope::parse_ope(stored).map_err(|e| self.malformed(e))?;
                self.check_header(&header)?;
                match self.engine(header.key_version)? {
                    Engine::Ope(e) => e
                        .open(domain, &ct, out)
                        .map_err(|e| self.engine_error(e, header.key_version, domain)),
                    _ => unreachable!("an OPE key has OPE engines"),
                }
            }
            Mode::Randomized | Mode::Deterministic => {
                let env = Envelope::parse(stored).map_err(|e| self.malformed(e))?;
                self.check_header(&env.header)?;
                let version = env.header.key_version;
                let r = match self.engine(version)? {
                    Engine::Randomized(e) => {
                        with_aad(env.header_bytes, domain, |aad| e.open(aad, env.body, out))
                    }
                    Engine::Deterministic(e) => {
                        with_aad(env.header_bytes, domain, |aad| e.open(aad, env.body, out))
                    }
                    _ => unreachable!("engines match the key's mode"),
                };
                r.map_err(|e| self.engine_error(e, version, domain))
            }
        }
    }

    fn seal_batch(&self, plaintexts: &[&[u8]], domain: &KeyDomain, out: &mut Batch) {
        if !self.seal_batch_fast(plaintexts, domain, out) {
            out.clear();
            for p in plaintexts {
                out.push_with(|buf| self.seal_into(p, domain, buf));
            }
        }
    }

    fn open_batch(&self, stored: &[&[u8]], domain: &KeyDomain, out: &mut Batch) {
        if !self.open_batch_fast(stored, domain, out) {
            out.clear();
            for s in stored {
                out.push_with(|buf| self.open_into(s, domain, buf));
            }
        }
    }
}

impl core::fmt::Debug for ColumnKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ColumnKey")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("mode", &self.mode)
            .field("active", &self.active)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .finish()
    }
}
