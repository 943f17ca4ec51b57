//! Key derivation: HMAC-SM3 in counter mode (NIST SP 800-108r1 §4.1).
//!
//! Every data key in the keyring is 32 random bytes; each column mode derives the keys it
//! needs (an encryption key, a MAC key, a GHASH key…) with a distinct label, so one data key
//! never feeds two primitives directly, and adding a mode never changes what another derives.

use crate::sm3::{DIGEST_LEN, hmac_sm3};

/// Fills `out` with `KDF(key, label, context)`:
/// `HMAC-SM3(key, [i]₃₂ ‖ label ‖ 0x00 ‖ context ‖ [8·len(out)]₃₂)` for `i = 1, 2, …`.
pub fn derive(key: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) {
    let bits = u32::try_from(out.len() * 8).expect("derived keys are short");
    let mut input = Vec::with_capacity(4 + label.len() + 1 + context.len() + 4);
    for (i, chunk) in out.chunks_mut(DIGEST_LEN).enumerate() {
        input.clear();
        input.extend_from_slice(&(i as u32 + 1).to_be_bytes());
        input.extend_from_slice(label);
        input.push(0);
        input.extend_from_slice(context);
        input.extend_from_slice(&bits.to_be_bytes());
        let block = hmac_sm3(key, &input);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// `N` derived bytes.
pub fn derive_array<const N: usize>(key: &[u8], label: &str) -> [u8; N] {
    let mut out = [0u8; N];
    derive(key, label.as_bytes(), &[], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_lengths_separate_outputs() {
        let k = [7u8; 32];
        let a: [u8; 32] = derive_array(&k, "warden/a");
        let b: [u8; 32] = derive_array(&k, "warden/b");
        let a16: [u8; 16] = derive_array(&k, "warden/a");
        assert_ne!(a, b);
        // The output length is an input, so a short key is not a prefix of a long one.
        assert_ne!(a[..16], a16);
        let long: [u8; 48] = derive_array(&k, "warden/a");
        assert_ne!(long[..32], a);
    }

    #[test]
    fn first_block_is_hmac_of_the_documented_input() {
        let mut out = [0u8; 32];
        derive(b"key", b"label", b"ctx", &mut out);
        let mut input = vec![0, 0, 0, 1];
        input.extend_from_slice(b"label\0ctx");
        input.extend_from_slice(&256u32.to_be_bytes());
        assert_eq!(out, hmac_sm3(b"key", &input));
    }
}
