//! Order-preserving encryption (OPE) of 64-bit values, after Boldyreva, Chenette, Lee and
//! O'Neill (Eurocrypt 2009).
//!
//! Why: range predicates (`<`, `>`, `BETWEEN`) and `ORDER BY` on an encrypted column can only
//! use the database's own B-tree if the stored ciphertexts sort like the plaintexts. No usable
//! crate exists (the `ope` crate has a 16-bit domain and platform-dependent output), so the
//! scheme is implemented here.
//!
//! # The scheme
//!
//! The key defines a pseudorandom order-preserving function from the domain `[0, 2^64)` to the
//! range `[0, 2^128)`, sampled lazily along the path of each value: at a node with `M`
//! plaintexts and a range of `2^b` ciphertexts, the number `x` of plaintexts that map into the
//! lower half of the range is drawn from the hypergeometric distribution `HGD(2^b, M, 2^(b-1))`
//! ([`hgd`]), with coins from a PRF of the node; the value then descends into the half that
//! holds it. When one plaintext is left, its ciphertext is drawn uniformly from the remaining
//! range. Decryption walks the same path using the ciphertext and checks, at the leaf, that the
//! ciphertext is exactly the one the key assigns: a random 128-bit string is accepted with
//! probability about 2^-64, so the decoder also detects corruption.
//!
//! The range nodes are dyadic intervals, identified by their midpoint (distinct for distinct
//! intervals), so a node's coins are `E_K(E_K(d) ⊕ midpoint)`: two-block CBC-MAC (a PRF on
//! fixed-length input) over the key domain `d` and the node. Each key domain (column, or group
//! of columns that must compare) therefore gets its own function under one key. About 65 PRF
//! calls per value: ~7 µs with SM4 on GFNI, ~13 µs with SM4 on AES-NI, ~3 µs with AES-256.
//!
//! # Stored form: bytea / VARBINARY, compared with memcmp
//!
//! A ciphertext is 16 bytes, big-endian, fixed width, so byte-wise comparison (`memcmp`, then
//! length) equals numeric order. That is how PostgreSQL compares `bytea` and MySQL/MariaDB
//! compare `VARBINARY`/`BINARY`, so the same stored form indexes and sorts correctly in both,
//! travels unchanged through both text (hex) and binary protocols, and costs nothing to
//! produce. A numeric column (PostgreSQL `numeric`, MySQL `DECIMAL(39,0)`) would also sort
//! correctly but needs base-10000 or decimal-string conversion on every value, compares more
//! slowly, and differs between the two databases' wire formats. `bytea` it is. Where a text
//! column is unavoidable, the text form is lowercase hex, which sorts the same way under the
//! `C` collation.
//!
//! Plaintexts are signed: `i64` is mapped to `u64` by flipping the sign bit, which preserves
//! order. Decimals with a fixed scale, dates and timestamps are encoded as `i64` by
//! [`value::OrderedKind`].
//!
//! # Leakage
//!
//! The leakiest mode, opt-in per column: it reveals the total order of the column's values,
//! equality, and (Boldyreva, Chenette and O'Neill, Crypto 2011) roughly the upper half of each
//! plaintext's bits to someone who sees the ciphertexts; with auxiliary knowledge of the data
//! distribution, sorting attacks recover much more. Use it only for columns that need ranges.
//!
//! # Key versions and rotation
//!
//! Ciphertexts of two key versions are not comparable, so one column must hold a single
//! version for its range queries to be right. The column stores the header *after* the
//! ciphertext (see [`crate::envelope::OPE_STORED_LEN`]) so it never disturbs the order, and names
//! the version for decryption; rotating an OPE column means re-encrypting it (a re-encryption
//! job), not mixing versions.

mod hgd;
pub mod value;

use crate::block::BlockCipher128;

/// Length of an OPE ciphertext.
pub const CIPHERTEXT_LEN: usize = 16;

/// A 128-bit value that is not the image of any plaintext under this key and domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an order-preserving ciphertext of this key and key domain")]
pub struct InvalidOpeCiphertext;

/// The per-domain whitening block `E_K(d)`, computed once per value or cached per column.
#[derive(Clone, Copy)]
pub struct OpeTweak([u8; 16]);

/// An order-preserving encryption key over a 128-bit block cipher.
#[derive(Clone)]
pub struct Ope<C: BlockCipher128> {
    prf: C,
}

/// OPE with SM4 as the PRF.
pub type Sm4Ope = Ope<crate::sm4::Sm4>;
/// OPE with AES-256 as the PRF.
pub type Aes256Ope = Ope<aes::Aes256>;

enum Target {
    Plain(u64),
    Cipher(u128),
}

impl<C: BlockCipher128> Ope<C> {
    /// A key of `C::KEY_LEN` bytes.
    pub fn new(key: &[u8]) -> Self {
        Ope {
            prf: C::from_key(key),
        }
    }

    /// The tweak for a key domain, given as 16 bytes (for example a digest of its name).
    pub fn tweak(&self, domain: &[u8; 16]) -> OpeTweak {
        let mut block = *domain;
        self.prf.encrypt_batch(core::slice::from_mut(&mut block));
        OpeTweak(block)
    }

    /// Encrypts an unsigned value.
    pub fn encrypt(&self, tweak: &OpeTweak, plaintext: u64) -> u128 {
        match self.walk(tweak, Target::Plain(plaintext)) {
            Ok((_, c)) => c,
            Err(_) => unreachable!("every plaintext has a path"),
        }
    }

    /// Decrypts to an unsigned value, rejecting anything not produced by this key and tweak.
    pub fn decrypt(&self, tweak: &OpeTweak, ciphertext: u128) -> Result<u64, InvalidOpeCiphertext> {
        self.walk(tweak, Target::Cipher(ciphertext)).map(|(m, _)| m)
    }

    /// Encrypts a signed value to its 16-byte big-endian stored form.
    pub fn encrypt_i64(&self, tweak: &OpeTweak, plaintext: i64) -> [u8; CIPHERTEXT_LEN] {
        self.encrypt(tweak, value::i64_to_ordered(plaintext))
            .to_be_bytes()
    }

    /// Decrypts a 16-byte stored form to a signed value.
    pub fn decrypt_i64(
        &self,
        tweak: &OpeTweak,
        ciphertext: &[u8; CIPHERTEXT_LEN],
    ) -> Result<i64, InvalidOpeCiphertext> {
        self.decrypt(tweak, u128::from_be_bytes(*ciphertext))
            .map(value::ordered_to_i64)
    }

    fn coins(&self, tweak: &OpeTweak, node: u128) -> u128 {
        let mut block = (u128::from_be_bytes(tweak.0) ^ node).to_be_bytes();
        self.prf.encrypt_batch(core::slice::from_mut(&mut block));
        u128::from_be_bytes(block)
    }

    /// Walks from the root to the leaf of the plaintext (or of the ciphertext) and returns both.
    fn walk(&self, tweak: &OpeTweak, target: Target) -> Result<(u64, u128), InvalidOpeCiphertext> {
        // Domain [d_lo, d_lo + d_size), range [r_lo, r_lo + 2^r_bits).
        let mut d_lo: u128 = 0;
        let mut d_size: u128 = 1 << 64;
        let mut r_lo: u128 = 0;
        let mut r_bits: u32 = 128;
        while d_size > 1 {
            let half = 1u128 << (r_bits - 1);
            let x = hgd::sample_lower_half(self.coins(tweak, r_lo + half), d_size, r_bits);
            let left = match target {
                Target::Plain(m) => u128::from(m) < d_lo + x,
                Target::Cipher(c) => c < r_lo + half,
            };
            if left {
                if x == 0 {
                    return Err(InvalidOpeCiphertext);
                }
                d_size = x;
            } else {
                if d_size == x {
                    return Err(InvalidOpeCiphertext);
                }
                d_lo += x;
                d_size -= x;
                r_lo += half;
            }
            r_bits -= 1;
        }
        // One plaintext left: its ciphertext is uniform in the remaining range.
        let c = if r_bits == 0 {
            r_lo
        } else {
            let coins = self.coins(tweak, r_lo + (1u128 << (r_bits - 1)));
            let mask = if r_bits == 128 {
                u128::MAX
            } else {
                (1u128 << r_bits) - 1
            };
            r_lo + (coins & mask)
        };
        if let Target::Cipher(given) = target
            && given != c
        {
            return Err(InvalidOpeCiphertext);
        }
        Ok((d_lo as u64, c))
    }
}

impl<C: BlockCipher128> core::fmt::Debug for Ope<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ope { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sm4(key: u8) -> (Sm4Ope, OpeTweak) {
        let ope = Sm4Ope::new(&[key; 16]);
        let t = ope.tweak(&[0x11; 16]);
        (ope, t)
    }

    const EXTREMES: [i64; 9] = [
        i64::MIN,
        i64::MIN + 1,
        -1_000_000,
        -1,
        0,
        1,
        1_000_000,
        i64::MAX - 1,
        i64::MAX,
    ];

    #[test]
    fn extremes_are_ordered_and_round_trip() {
        let (ope, t) = sm4(1);
        let cts: Vec<[u8; 16]> = EXTREMES.iter().map(|&v| ope.encrypt_i64(&t, v)).collect();
        for w in cts.windows(2) {
            assert!(w[0] < w[1], "memcmp order must follow plaintext order");
        }
        for (v, c) in EXTREMES.iter().zip(&cts) {
            assert_eq!(ope.decrypt_i64(&t, c).unwrap(), *v);
        }
    }

    #[test]
    fn aes_variant_round_trips() {
        let ope = Aes256Ope::new(&[9u8; 32]);
        let t = ope.tweak(&[0; 16]);
        let mut prev = None;
        for v in EXTREMES {
            let c = ope.encrypt_i64(&t, v);
            assert_eq!(ope.decrypt_i64(&t, &c).unwrap(), v);
            if let Some(p) = prev {
                assert!(p < c);
            }
            prev = Some(c);
        }
    }

    #[test]
    fn dense_neighbours_keep_order() {
        let (ope, t) = sm4(2);
        let mut prev = ope.encrypt_i64(&t, -500);
        for v in -499..500 {
            let c = ope.encrypt_i64(&t, v);
            assert!(prev < c, "{v}");
            prev = c;
        }
    }

    #[test]
    fn keys_and_domains_give_different_functions() {
        let (a, ta) = sm4(3);
        let (b, tb) = sm4(4);
        let tc = a.tweak(&[0x22; 16]);
        for v in [0i64, 1, 42, -7] {
            assert_ne!(a.encrypt_i64(&ta, v), b.encrypt_i64(&tb, v));
            assert_ne!(a.encrypt_i64(&ta, v), a.encrypt_i64(&tc, v));
        }
        let c = a.encrypt_i64(&ta, 42);
        // Another key or domain rejects the ciphertext (with overwhelming probability).
        assert!(b.decrypt_i64(&tb, &c).is_err());
        assert!(a.decrypt_i64(&tc, &c).is_err());
    }

    #[test]
    fn random_and_modified_ciphertexts_are_rejected() {
        let (ope, t) = sm4(5);
        let c = ope.encrypt_i64(&t, 123_456);
        for i in 0..16 {
            let mut bad = c;
            bad[i] ^= 0x01;
            assert!(ope.decrypt_i64(&t, &bad).is_err(), "byte {i}");
        }
        assert!(ope.decrypt(&t, 0).is_err() || ope.encrypt(&t, 0) == 0);
        assert!(ope.decrypt(&t, u128::MAX).is_err() || ope.encrypt(&t, u64::MAX) == u128::MAX);
    }

    /// The top bits of ciphertexts spread over the range rather than clustering.
    #[test]
    fn ciphertexts_spread_over_the_range() {
        let (ope, t) = sm4(6);
        let mut high_bits = [0u32; 16];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let c = ope.encrypt(&t, state);
            high_bits[(c >> 124) as usize] += 1;
        }
        for count in high_bits {
            assert!((70..=190).contains(&count), "{high_bits:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn order_is_preserved_for_random_pairs(a: i64, b: i64) {
            let (ope, t) = sm4(7);
            let (ca, cb) = (ope.encrypt_i64(&t, a), ope.encrypt_i64(&t, b));
            prop_assert_eq!(a.cmp(&b), ca.cmp(&cb));
            prop_assert_eq!(ope.decrypt_i64(&t, &ca).unwrap(), a);
            prop_assert_eq!(ope.encrypt_i64(&t, a), ca, "deterministic");
        }

        #[test]
        fn nearby_pairs_keep_order(a in any::<i64>(), d in 1i64..1000) {
            let (ope, t) = sm4(8);
            let b = a.saturating_add(d);
            prop_assume!(b != a);
            prop_assert!(ope.encrypt_i64(&t, a) < ope.encrypt_i64(&t, b));
        }
    }
}
