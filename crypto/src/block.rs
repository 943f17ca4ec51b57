//! The one thing the modes need from a block cipher: encrypt a batch of 128-bit blocks, as
//! many per pass as the implementation runs in parallel. Implemented for Warden's [`Sm4`] and
//! for the `aes` crate's AES-256 (AES-NI where present, constant-time bitsliced otherwise), so
//! that the deterministic, order-preserving and format-preserving modes are written once for
//! both algorithms.

use cipher::{BlockCipherEncrypt, KeyInit, array::Array};

use crate::sm4::Sm4;

/// A 128-bit block cipher, encryption direction.
pub trait BlockCipher128: Clone + Send + Sync + 'static {
    /// Key length in bytes.
    const KEY_LEN: usize;
    /// Builds the cipher from a key of [`Self::KEY_LEN`] bytes.
    fn from_key(key: &[u8]) -> Self;
    /// Encrypts blocks in place.
    fn encrypt_batch(&self, blocks: &mut [[u8; 16]]);
    /// How many blocks one pass handles; callers batching work fill this many.
    fn parallel_blocks(&self) -> usize;
}

impl BlockCipher128 for Sm4 {
    const KEY_LEN: usize = 16;
    fn from_key(key: &[u8]) -> Self {
        Sm4::new_from_key(key.try_into().expect("SM4 keys are 16 bytes"))
    }
    fn encrypt_batch(&self, blocks: &mut [[u8; 16]]) {
        self.encrypt_blocks_in_place(blocks)
    }
    fn parallel_blocks(&self) -> usize {
        self.backend().parallel_blocks()
    }
}

impl BlockCipher128 for aes::Aes256 {
    const KEY_LEN: usize = 32;
    fn from_key(key: &[u8]) -> Self {
        <aes::Aes256 as KeyInit>::new_from_slice(key).expect("AES-256 keys are 32 bytes")
    }
    fn encrypt_batch(&self, blocks: &mut [[u8; 16]]) {
        BlockCipherEncrypt::encrypt_blocks(self, Array::cast_slice_from_core_mut(blocks));
    }
    fn parallel_blocks(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS-197 Appendix C.3 (AES-256).
    #[test]
    fn aes256_fips_197_vector() {
        let key = hex::decode("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .unwrap();
        let aes = <aes::Aes256 as BlockCipher128>::from_key(&key);
        let mut blocks = [hex::decode("00112233445566778899aabbccddeeff")
            .unwrap()
            .try_into()
            .unwrap(); 3];
        aes.encrypt_batch(&mut blocks);
        for b in blocks {
            assert_eq!(hex::encode(b), "8ea2b7ca516745bfeafc49904b496089");
        }
    }
}
