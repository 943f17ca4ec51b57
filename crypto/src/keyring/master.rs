//! The master key: wraps and unwraps the keyring's data keys, and never leaves its provider.
//!
//! Two kinds of provider implement [`MasterKey`]:
//!
//! - [`LocalMasterKey`]: 32 bytes held in process memory (from an environment variable or a
//!   file). It wraps with SM4-GCM or AES-256-GCM under a key-encryption key derived from it
//!   ([`crate::kdf`], one label per algorithm).
//! - [`super::pkcs11::Pkcs11MasterKey`]: an AES-256 key object on a PKCS#11 token (an HSM, a
//!   密码机, or SoftHSM2 in tests); the token itself runs AES-GCM, so the master key never
//!   leaves it.
//!
//! A wrapped value is `nonce (12) ‖ ciphertext ‖ tag (16)`, with associated data that names
//! what is wrapped (keyring, key, version), so a wrapped key cannot be moved to another slot of
//! the keyring without failing to unwrap.

use zeroize::Zeroizing;

use crate::aes_gcm::Aes256Gcm;
use crate::gcm::{NONCE_LEN, Sm4Gcm, TAG_LEN};
use crate::kdf;
use crate::rng;

/// How the keyring's data keys are wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WrapAlgorithm {
    /// SM4-GCM (the national algorithm; the default for local master keys).
    #[serde(rename = "sm4-gcm")]
    Sm4Gcm,
    /// AES-256-GCM (the only one PKCS#11 tokens without SM4 support can run).
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl WrapAlgorithm {
    /// The name used in configuration and in the keyring file.
    pub fn name(self) -> &'static str {
        match self {
            WrapAlgorithm::Sm4Gcm => "sm4-gcm",
            WrapAlgorithm::Aes256Gcm => "aes-256-gcm",
        }
    }
}

impl core::fmt::Display for WrapAlgorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for WrapAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sm4-gcm" | "sm4" => Ok(WrapAlgorithm::Sm4Gcm),
            "aes-256-gcm" | "aes" | "aes-256" => Ok(WrapAlgorithm::Aes256Gcm),
            other => Err(format!(
                "unknown wrap algorithm {other:?}; expected sm4-gcm or aes-256-gcm"
            )),
        }
    }
}

/// Why the master key could not wrap or unwrap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    /// The provider could not be reached or is misconfigured (variable unset, file unreadable,
    /// token absent, wrong PIN…).
    #[error("{0}")]
    Unavailable(String),
    /// The wrapped value did not authenticate: another master key, or a modified value.
    #[error("the wrapped key does not authenticate under this master key")]
    Authentication,
    /// The provider cannot run this wrap algorithm.
    #[error("{provider} cannot wrap with {algorithm}")]
    Unsupported {
        /// The provider.
        provider: String,
        /// The algorithm asked for.
        algorithm: WrapAlgorithm,
    },
}

/// A master key, wherever it lives.
pub trait MasterKey: Send + Sync {
    /// Where the key comes from, for messages (never the key itself).
    fn describe(&self) -> String;
    /// The algorithm a new keyring wraps with when none is configured.
    fn default_wrap(&self) -> WrapAlgorithm;
    /// Wraps `plaintext` under the master key, binding `aad`.
    fn wrap(
        &self,
        algorithm: WrapAlgorithm,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, MasterKeyError>;
    /// Unwraps what [`MasterKey::wrap`] produced with the same `aad`.
    fn unwrap(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, MasterKeyError>;
}

/// Length of a local master key.
pub const MASTER_KEY_LEN: usize = 32;

/// A master key held in process memory (from an environment variable or a file).
pub struct LocalMasterKey {
    key: Zeroizing<[u8; MASTER_KEY_LEN]>,
    source: String,
}

impl LocalMasterKey {
    /// A key and a description of where it came from.
    pub fn new(key: [u8; MASTER_KEY_LEN], source: impl Into<String>) -> Self {
        LocalMasterKey {
            key: Zeroizing::new(key),
            source: source.into(),
        }
    }

    /// Parses a master key written as 64 hex digits, 44 base64 characters, or (for files) the
    /// 32 raw bytes.
    pub fn parse(bytes: &[u8], source: impl Into<String>) -> Result<Self, MasterKeyError> {
        use base64::Engine as _;
        let source = source.into();
        let text = core::str::from_utf8(bytes).ok().map(str::trim);
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        if let Some(t) = text.filter(|t| t.len() == 2 * MASTER_KEY_LEN) {
            hex::decode_to_slice(t, &mut key[..]).map_err(|_| {
                MasterKeyError::Unavailable(format!("{source}: 64 characters but not hex"))
            })?;
        } else if let Some(t) = text.filter(|t| t.len() == 44) {
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(|_| {
                        MasterKeyError::Unavailable(format!(
                            "{source}: 44 characters but not base64"
                        ))
                    })?,
            );
            if decoded.len() != MASTER_KEY_LEN {
                return Err(MasterKeyError::Unavailable(format!(
                    "{source}: base64 of {} bytes, need 32",
                    decoded.len()
                )));
            }
            key.copy_from_slice(&decoded);
        } else if bytes.len() == MASTER_KEY_LEN {
            key.copy_from_slice(bytes);
        } else {
            return Err(MasterKeyError::Unavailable(format!(
                "{source}: a master key is 32 bytes, written as 64 hex digits or 44 base64 characters \
                 (generate one with `warden keys new-master-key`)"
            )));
        }
        Ok(LocalMasterKey { key, source })
    }

    /// A fresh random key.
    pub fn generate(source: impl Into<String>) -> Result<Self, rng::RngError> {
        Ok(Self::new(rng::secret_bytes()?, source))
    }

    /// The key as 64 hex digits, for writing a new key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.key[..]))
    }
}

impl MasterKey for LocalMasterKey {
    fn describe(&self) -> String {
        self.source.clone()
    }

    fn default_wrap(&self) -> WrapAlgorithm {
        WrapAlgorithm::Sm4Gcm
    }

    fn wrap(
        &self,
        algorithm: WrapAlgorithm,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, MasterKeyError> {
        let nonce = rng::nonce12().map_err(|e| MasterKeyError::Unavailable(e.to_string()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = match algorithm {
            WrapAlgorithm::Sm4Gcm => {
                let kek = Zeroizing::new(kdf::derive_array::<16>(
                    &self.key[..],
                    "warden/v1/keyring/kek/sm4-gcm",
                ));
                Sm4Gcm::new(&kek).encrypt_in_place_detached(&nonce, aad, &mut out[NONCE_LEN..])
            }
            WrapAlgorithm::Aes256Gcm => {
                let kek = Zeroizing::new(kdf::derive_array::<32>(
                    &self.key[..],
                    "warden/v1/keyring/kek/aes-256-gcm",
                ));
                Aes256Gcm::new(&kek).encrypt_in_place_detached(&nonce, aad, &mut out[NONCE_LEN..])
            }
        }
        .map_err(|_| MasterKeyError::Authentication)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn unwrap(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
        if wrapped.len() < NONCE_LEN + TAG_LEN {
            return Err(MasterKeyError::Authentication);
        }
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("12 bytes");
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("16 bytes");
        let mut out = Zeroizing::new(ct.to_vec());
        match algorithm {
            WrapAlgorithm::Sm4Gcm => {
                let kek = Zeroizing::new(kdf::derive_array::<16>(
                    &self.key[..],
                    "warden/v1/keyring/kek/sm4-gcm",
                ));
                Sm4Gcm::new(&kek).decrypt_in_place_detached(nonce, aad, &mut out, tag)
            }
            WrapAlgorithm::Aes256Gcm => {
                let kek = Zeroizing::new(kdf::derive_array::<32>(
                    &self.key[..],
                    "warden/v1/keyring/kek/aes-256-gcm",
                ));
                Aes256Gcm::new(&kek).decrypt_in_place_detached(nonce, aad, &mut out, tag)
            }
        }
        .map_err(|_| MasterKeyError::Authentication)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_round_trip_and_bind_aad_and_key() {
        let a = LocalMasterKey::new([1u8; 32], "test a");
        let b = LocalMasterKey::new([2u8; 32], "test b");
        for alg in [WrapAlgorithm::Sm4Gcm, WrapAlgorithm::Aes256Gcm] {
            let w = a.wrap(alg, b"data key", b"slot 1").unwrap();
            assert_eq!(
                a.unwrap(alg, &w, b"slot 1").unwrap().as_slice(),
                b"data key"
            );
            assert_eq!(
                a.unwrap(alg, &w, b"slot 2"),
                Err(MasterKeyError::Authentication)
            );
            assert_eq!(
                b.unwrap(alg, &w, b"slot 1"),
                Err(MasterKeyError::Authentication)
            );
            assert_eq!(
                a.unwrap(alg, &w[..20], b"slot 1"),
                Err(MasterKeyError::Authentication)
            );
        }
        let w = a.wrap(WrapAlgorithm::Sm4Gcm, b"k", b"").unwrap();
        assert!(a.unwrap(WrapAlgorithm::Aes256Gcm, &w, b"").is_err());
    }

    #[test]
    fn parses_hex_base64_and_raw() {
        let hex = "00".repeat(31) + "ff";
        let k = LocalMasterKey::parse(format!("{hex}\n").as_bytes(), "hex").unwrap();
        assert_eq!(k.key[31], 0xff);
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=";
        assert_eq!(
            LocalMasterKey::parse(b64.as_bytes(), "b64").unwrap().key[31],
            1
        );
        assert_eq!(LocalMasterKey::parse(&[7u8; 32], "raw").unwrap().key[0], 7);
        let err = LocalMasterKey::parse(b"too short", "env WARDEN_MASTER_KEY")
            .err()
            .unwrap();
        assert!(err.to_string().contains("env WARDEN_MASTER_KEY"), "{err}");
        assert!(LocalMasterKey::parse("zz".repeat(32).as_bytes(), "x").is_err());
        let generated = LocalMasterKey::generate("new").unwrap();
        assert_eq!(
            LocalMasterKey::parse(generated.to_hex().as_bytes(), "again")
                .unwrap()
                .key,
            generated.key
        );
    }
}
