//! SM3 (GB/T 32905-2016) and HMAC-SM3.
//!
//! Thin wrappers over the RustCrypto `sm3` and `hmac` crates, so that the rest of Warden (the
//! audit hash chain, blind indexes, key derivation) names one function instead of a generic
//! digest stack.

use hmac::{KeyInit, Mac};
use sm3::{Digest, Sm3};

/// Length of an SM3 digest in bytes.
pub const DIGEST_LEN: usize = 32;

/// SM3 digest of `data`.
pub fn sm3(data: &[u8]) -> [u8; DIGEST_LEN] {
    Sm3::digest(data).into()
}

/// Incremental SM3, for inputs that arrive in pieces.
#[derive(Clone, Default)]
pub struct Sm3Hasher(Sm3);

impl Sm3Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self(Sm3::new())
    }

    /// Feeds more input.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything fed so far.
    pub fn finalize(self) -> [u8; DIGEST_LEN] {
        self.0.finalize().into()
    }
}

/// HMAC-SM3 of `data` under `key` (any key length, as HMAC allows).
pub fn hmac_sm3(key: &[u8], data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut mac =
        <hmac::Hmac<Sm3> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// GB/T 32905-2016 Appendix A, example 1: "abc".
    #[test]
    fn gbt_32905_example_1() {
        assert_eq!(
            hex(&sm3(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    /// GB/T 32905-2016 Appendix A, example 2: "abcd" repeated 16 times.
    #[test]
    fn gbt_32905_example_2() {
        let input = b"abcd".repeat(16);
        assert_eq!(
            hex(&sm3(&input)),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
        let mut h = Sm3Hasher::new();
        for chunk in input.chunks(7) {
            h.update(chunk);
        }
        assert_eq!(h.finalize(), sm3(&input));
    }

    /// More digests recomputed from the standard's algorithm (research notes, section 4.2).
    #[test]
    fn further_digests() {
        for (input, digest) in [
            (
                &b""[..],
                "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b",
            ),
            (
                &b"abcdefghABCDEFGH12345678"[..],
                "d670c7f027fd5f9f0c163f4bfe98f9003fe597d3f52dbab0885ec2ca8dd23e9b",
            ),
            (
                &b"abcdefghABCDEFGH12345678abcdefghABCDEFGH12345678abcdefgh"[..],
                "1cf3bafec325d7d9102cd67ba46b09195af4e613b6c2b898122363d810308b11",
            ),
        ] {
            assert_eq!(hex(&sm3(input)), digest);
        }
    }

    /// HMAC-SM3 against RFC 2104 written out with the SM3 digest (64-byte blocks), for a short
    /// key and for a key longer than a block (which HMAC hashes first).
    #[test]
    fn hmac_sm3_is_rfc_2104() {
        fn reference(key: &[u8], msg: &[u8]) -> [u8; DIGEST_LEN] {
            let mut k = [0u8; 64];
            if key.len() > 64 {
                k[..32].copy_from_slice(&sm3(key));
            } else {
                k[..key.len()].copy_from_slice(key);
            }
            let mut inner = Sm3Hasher::new();
            inner.update(&k.map(|b| b ^ 0x36));
            inner.update(msg);
            let mut outer = Sm3Hasher::new();
            outer.update(&k.map(|b| b ^ 0x5c));
            outer.update(&inner.finalize());
            outer.finalize()
        }
        assert_eq!(
            hex(&hmac_sm3(b"key", b"abc")),
            "28e63256e7c5a087b1f073265dc53092163f7b82729735d06f28f10af9d52393"
        );
        for key in [&b"key"[..], &[0x0b; 20][..], &[0xaa; 100][..]] {
            assert_eq!(hmac_sm3(key, b"Hi There"), reference(key, b"Hi There"));
        }
    }
}
