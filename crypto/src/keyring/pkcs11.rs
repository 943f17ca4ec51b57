//! Master key on a PKCS#11 token (an HSM, a 密码机 with a PKCS#11 interface, SoftHSM2).
//!
//! The master key is an AES-256 secret-key object on the token, found by its label, created
//! sensitive and non-extractable. Wrapping and unwrapping run inside the token with
//! `CKM_AES_GCM` (12-byte IV from the host's generator, the wrap's associated data as GCM AAD,
//! 128-bit tag): the data key goes in, its wrapped form comes out, and the master key never
//! leaves the token. Tokens that implement SM4 do so through vendor mechanisms, which this
//! provider does not use; SoftHSM2 has none.
//!
//! The library is loaded and `C_Initialize`d once per module path per process; sessions are
//! opened per master key, logged in as the user with the PIN from an environment variable or a
//! file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::master::{MasterKey, MasterKeyError, WrapAlgorithm};
use crate::gcm::{NONCE_LEN, TAG_LEN};
use crate::rng;

/// Where to find the token and the key.
#[derive(Debug, Clone)]
pub struct Pkcs11Location {
    /// The PKCS#11 module (for SoftHSM2 on Debian: `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The master key object's label.
    pub key_label: String,
}

/// An AES-256 master key on a PKCS#11 token.
pub struct Pkcs11MasterKey {
    location: Pkcs11Location,
    session: Mutex<Session>,
    key: ObjectHandle,
}

fn unavailable(
    location: &Pkcs11Location,
    what: &str,
    e: impl core::fmt::Display,
) -> MasterKeyError {
    MasterKeyError::Unavailable(format!(
        "PKCS#11 token {:?} (module {}): {what}: {e}",
        location.token_label,
        location.module.display()
    ))
}

/// The module, loaded and initialised once per process.
fn context(location: &Pkcs11Location) -> Result<Pkcs11, MasterKeyError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = contexts.get(&location.module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(&location.module)
        .map_err(|e| unavailable(location, "cannot load the module", e))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(unavailable(location, "C_Initialize failed", e)),
    }
    contexts.insert(location.module.clone(), ctx.clone());
    Ok(ctx)
}

/// Opens a logged-in read-write session on the token with the given label.
fn session(location: &Pkcs11Location, pin: &str) -> Result<Session, MasterKeyError> {
    let ctx = context(location)?;
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| unavailable(location, "cannot list slots", e))?;
    let mut labels = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| unavailable(location, "cannot read token information", e))?;
        if info.label().trim_end() == location.token_label {
            let session = ctx
                .open_rw_session(slot)
                .map_err(|e| unavailable(location, "cannot open a session", e))?;
            // Login state belongs to the application, not the session: another open session
            // may already have logged in.
            match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
                Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => {
                    return Err(unavailable(location, "login failed", "wrong user PIN"));
                }
                Err(e) => return Err(unavailable(location, "login failed", e)),
            }
            return Ok(session);
        }
        labels.push(info.label().trim_end().to_owned());
    }
    Err(unavailable(
        location,
        "no such token",
        format!("tokens present: {labels:?}"),
    ))
}

fn key_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

impl Pkcs11MasterKey {
    /// Logs in to the token and finds the master key by its label.
    pub fn open(location: Pkcs11Location, pin: &str) -> Result<Self, MasterKeyError> {
        let session = session(&location, pin)?;
        let found = session
            .find_objects(&key_template(&location.key_label))
            .map_err(|e| unavailable(&location, "cannot search for the master key", e))?;
        let key = match found.as_slice() {
            [key] => *key,
            [] => {
                return Err(unavailable(
                    &location,
                    "no master key",
                    format!(
                        "no secret key labelled {:?}; create one with `warden keys init --create-token-key`",
                        location.key_label
                    ),
                ));
            }
            more => {
                return Err(unavailable(
                    &location,
                    "ambiguous master key",
                    format!(
                        "{} secret keys are labelled {:?}",
                        more.len(),
                        location.key_label
                    ),
                ));
            }
        };
        Ok(Pkcs11MasterKey {
            location,
            session: Mutex::new(session),
            key,
        })
    }

    /// Creates an AES-256 master key on the token (sensitive, non-extractable, for encrypt and
    /// decrypt only). Refuses if a key with that label exists.
    pub fn create_key(location: &Pkcs11Location, pin: &str) -> Result<(), MasterKeyError> {
        let session = session(location, pin)?;
        let existing = session
            .find_objects(&key_template(&location.key_label))
            .map_err(|e| unavailable(location, "cannot search for keys", e))?;
        if !existing.is_empty() {
            return Err(unavailable(
                location,
                "refusing to create the master key",
                format!(
                    "a secret key labelled {:?} already exists",
                    location.key_label
                ),
            ));
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32u64.into()),
            Attribute::Label(location.key_label.as_bytes().to_vec()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
        ];
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| unavailable(location, "cannot generate the master key", e))?;
        Ok(())
    }

    fn gcm(
        &self,
        encrypt: bool,
        iv: &mut [u8; NONCE_LEN],
        aad: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, P11Error> {
        let params = GcmParams::new(iv, aad, ((TAG_LEN * 8) as u64).into())?;
        let mechanism = Mechanism::AesGcm(params);
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if encrypt {
            session.encrypt(&mechanism, self.key, data)
        } else {
            session.decrypt(&mechanism, self.key, data)
        }
    }
}

impl MasterKey for Pkcs11MasterKey {
    fn describe(&self) -> String {
        format!(
            "PKCS#11 key {:?} on token {:?} (module {})",
            self.location.key_label,
            self.location.token_label,
            self.location.module.display()
        )
    }

    fn default_wrap(&self) -> WrapAlgorithm {
        WrapAlgorithm::Aes256Gcm
    }

    fn wrap(
        &self,
        algorithm: WrapAlgorithm,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, MasterKeyError> {
        if algorithm != WrapAlgorithm::Aes256Gcm {
            return Err(MasterKeyError::Unsupported {
                provider: self.describe(),
                algorithm,
            });
        }
        let mut iv = rng::nonce12().map_err(|e| MasterKeyError::Unavailable(e.to_string()))?;
        let ct = self
            .gcm(true, &mut iv, aad, plaintext)
            .map_err(|e| unavailable(&self.location, "C_Encrypt (AES-GCM) failed", e))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap(
        &self,
        algorithm: WrapAlgorithm,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
        if algorithm != WrapAlgorithm::Aes256Gcm {
            return Err(MasterKeyError::Unsupported {
                provider: self.describe(),
                algorithm,
            });
        }
        if wrapped.len() < NONCE_LEN + TAG_LEN {
            return Err(MasterKeyError::Authentication);
        }
        let (iv, ct) = wrapped.split_at(NONCE_LEN);
        let mut iv: [u8; NONCE_LEN] = iv.try_into().expect("12 bytes");
        match self.gcm(false, &mut iv, aad, ct) {
            Ok(pt) => Ok(Zeroizing::new(pt)),
            // A tag mismatch: the standard codes, and CKR_GENERAL_ERROR, which is what SoftHSM2
            // returns for it (a token that really failed will fail the next call too).
            Err(P11Error::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::GeneralError,
                _,
            )) => Err(MasterKeyError::Authentication),
            Err(e) => Err(unavailable(&self.location, "C_Decrypt (AES-GCM) failed", e)),
        }
    }
}

/// Reads a PIN from an environment variable or a file (first line).
pub fn read_pin(
    pin_env: Option<&str>,
    pin_file: Option<&Path>,
) -> Result<Zeroizing<String>, MasterKeyError> {
    match (pin_env, pin_file) {
        (Some(var), None) => std::env::var(var).map(Zeroizing::new).map_err(|_| {
            MasterKeyError::Unavailable(format!("the token PIN variable {var} is not set"))
        }),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Zeroizing::new(s.lines().next().unwrap_or("").to_owned()))
            .map_err(|e| {
                MasterKeyError::Unavailable(format!("token PIN file {}: {e}", path.display()))
            }),
        _ => Err(MasterKeyError::Unavailable(
            "a PKCS#11 master key needs exactly one of pin_env or pin_file".into(),
        )),
    }
}
