//! AES-256-GCM, from `ring` (BoringSSL's assembly: AES-NI, CLMUL/VPCLMULQDQ, about 90 ns for a
//! short value on this project's machines), behind the same small interface as
//! [`crate::gcm::Sm4Gcm`] so that the column modes treat both alike.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use crate::gcm::{AeadError, NONCE_LEN, TAG_LEN};

/// AES-256-GCM with 96-bit nonces and 128-bit tags.
pub struct Aes256Gcm {
    key: LessSafeKey,
}

impl Aes256Gcm {
    /// A key from 32 bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, key).expect("AES-256-GCM takes 32-byte keys");
        Aes256Gcm {
            key: LessSafeKey::new(key),
        }
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn encrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| AeadError)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Checks the tag and decrypts `buf` in place. On failure the contents of `buf` are
    /// unspecified and must not be used.
    pub fn decrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(*tag),
                buf,
                0..,
            )
            .map(|_| ())
            .map_err(|_| AeadError)
    }
}

impl core::fmt::Debug for Aes256Gcm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Aes256Gcm { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count 0 with 128-bit plaintext):
    /// the McGrew–Viega test case 14 (AES-256, zero key, zero IV, one zero block).
    #[test]
    fn mcgrew_viega_test_case_14() {
        let gcm = Aes256Gcm::new(&[0u8; 32]);
        let mut buf = [0u8; 16];
        let tag = gcm
            .encrypt_in_place_detached(&[0u8; 12], &[], &mut buf)
            .unwrap();
        assert_eq!(hex::encode(buf), "cea7403d4d606b6e074ec5d3baf39d18");
        assert_eq!(hex::encode(tag), "d0d1c8a799996bf0265b98b5d48ab919");
        gcm.decrypt_in_place_detached(&[0u8; 12], &[], &mut buf, &tag)
            .unwrap();
        assert_eq!(buf, [0u8; 16]);
        assert!(
            gcm.decrypt_in_place_detached(&[1u8; 12], &[], &mut buf, &tag)
                .is_err()
        );
    }
}
