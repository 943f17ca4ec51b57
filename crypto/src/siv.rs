//! Deterministic authenticated encryption: a synthetic-IV (SIV) construction over SM4 or AES-256.
//!
//! Why: the deterministic column mode must give byte-identical ciphertexts for equal plaintexts
//! in one key domain (so the database's B-tree index, UNIQUE, PK and FK work on ciphertext), and
//! must still detect any modification. SIV (Rogaway–Shrimpton, the idea behind RFC 5297 and
//! RFC 8452) does both: the IV is a PRF of everything that is authenticated, and it doubles as
//! the tag.
//!
//! ```text
//! S  = GHASH_H(aad ‖ plaintext ‖ lengths)     H: 128-bit hash key
//! V  = E_K1(S[0..12] ‖ 00000002)               the synthetic IV (16 bytes) and the tag
//! C  = P ⊕ E_K2(V[0..12] ‖ 2), E_K2(V[0..12] ‖ 3), …     GCM's counter layout (inc32)
//! output V ‖ C
//! ```
//!
//! `x ↦ E_K1(x[0..12] ‖ 2)` after GHASH is a PRF because GHASH with a length block is
//! ε-almost-universal (ε ≤ (ℓ+1)/2^96 once truncated to 96 bits, for ℓ-block inputs) and `E`
//! is a PRP; that PRF over (aad, plaintext) makes the scheme a deterministic authenticated
//! encryption (DAE). `H`, `K1` and `K2` are independent keys (derived from the column's data key
//! with distinct labels), which keeps the analysis to the textbook case. The 96-bit/counter
//! layout is GCM's, so that for AES-256 both block-cipher steps run through `ring`'s AES-GCM
//! keystream (its tag is discarded). The `aes` crate is erratic here: on AVX-512 machines it
//! broadcasts the round keys on every call, through a closure that LLVM sometimes leaves
//! un-inlined (a 16-byte value then costs 216 ns instead of 104 ns, depending on the build),
//! and it encrypts fewer than 64 blocks one at a time; `ring` costs a steady ~85 ns per call.
//! Compared with
//! RFC 5297's CMAC-SIV the hash is GHASH (one carry-less multiplication per block, no
//! block-cipher call), so a short value costs two block-cipher passes in sequence (the PRF,
//! then the keystream) against one for the randomized mode.
//!
//! What it leaks, on purpose: equality of (aad, plaintext) pairs, hence the frequency of each
//! value in a column. Nothing else beyond length.

use ghash::GHash;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::block::BlockCipher128;
use crate::gcm::AeadError;
use crate::multi::{CtrJob, ctr_many};

/// Length of the synthetic IV (and tag).
pub const SIV_LEN: usize = 16;

/// Longest plaintext: 2^32 blocks of keystream from one IV.
const MAX_LEN: u64 = (1 << 36) - 16;

/// Widest pass of any [`BlockCipher128`].
const MAX_PASS: usize = 16;

/// SIV with GHASH and a 128-bit block cipher.
#[derive(Clone)]
pub struct Siv<C: BlockCipher128> {
    prf: C,
    enc: C,
    ghash: GHash,
}

/// SIV over SM4 (keys: 16-byte PRF key, 16-byte CTR key, 16-byte hash key).
pub type Sm4Siv = Siv<crate::sm4::Sm4>;

impl<C: BlockCipher128> Siv<C> {
    /// A key from its three independent parts.
    pub fn new(prf_key: &[u8], enc_key: &[u8], hash_key: &[u8; 16]) -> Self {
        Siv {
            prf: C::from_key(prf_key),
            enc: C::from_key(enc_key),
            ghash: GHash::new(&(*hash_key).into()),
        }
    }

    /// Encrypts `buf` in place and returns the synthetic IV.
    pub fn seal_in_place(&self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; SIV_LEN], AeadError> {
        if buf.len() as u64 > MAX_LEN {
            return Err(AeadError);
        }
        let iv = self.synthetic_iv(aad, buf);
        self.apply_keystream(&iv, buf);
        Ok(iv)
    }

    /// Decrypts `buf` in place and checks it against the synthetic IV. On failure `buf` is
    /// zeroed, so no unauthenticated plaintext escapes.
    pub fn open_in_place(
        &self,
        aad: &[u8],
        buf: &mut [u8],
        iv: &[u8; SIV_LEN],
    ) -> Result<(), AeadError> {
        if buf.len() as u64 > MAX_LEN {
            return Err(AeadError);
        }
        self.apply_keystream(iv, buf);
        let expect = self.synthetic_iv(aad, buf);
        if bool::from(expect.ct_eq(iv)) {
            Ok(())
        } else {
            buf.zeroize();
            Err(AeadError)
        }
    }

    fn synthetic_iv(&self, aad: &[u8], plaintext: &[u8]) -> [u8; SIV_LEN] {
        let mut block = prf_input(crate::gcm::ghash_blocks(&self.ghash, aad, plaintext));
        self.prf.encrypt_batch(core::slice::from_mut(&mut block));
        block
    }

    fn apply_keystream(&self, iv: &[u8; SIV_LEN], buf: &mut [u8]) {
        let width = self.enc.parallel_blocks().min(MAX_PASS);
        let first = first_counter(iv);
        let mut blocks = [[0u8; 16]; MAX_PASS];
        let mut index = 0u32;
        for chunk in buf.chunks_mut(16 * width) {
            let n = chunk.len().div_ceil(16);
            for block in blocks[..n].iter_mut() {
                *block = crate::multi::nth_counter(&first, index);
                index = index.wrapping_add(1);
            }
            self.enc.encrypt_batch(&mut blocks[..n]);
            crate::multi::xor_blocks(chunk, &blocks[..n]);
        }
    }
}

/// The PRF's input: the first 96 bits of the hash, then the counter value 2.
fn prf_input(hash: [u8; 16]) -> [u8; 16] {
    let mut block = hash;
    block[12..].copy_from_slice(&2u32.to_be_bytes());
    block
}

/// The first keystream counter block: the first 96 bits of the IV, then 2.
fn first_counter(iv: &[u8; SIV_LEN]) -> [u8; 16] {
    prf_input(*iv)
}

/// One value of a batch for [`Siv::seal_many`] / [`Siv::open_many`].
pub struct SivItem<'a> {
    /// The value's associated data.
    pub aad: &'a [u8],
    /// Plaintext in, ciphertext out (or the reverse).
    pub data: &'a mut [u8],
    /// The synthetic IV: written by `seal_many`, checked by `open_many`.
    pub iv: [u8; SIV_LEN],
}

impl<C: BlockCipher128> Siv<C> {
    /// Seals many values: the PRF calls share cipher passes, then the keystreams do.
    pub fn seal_many(&self, items: &mut [SivItem<'_>]) -> Result<(), AeadError> {
        if items.iter().any(|it| it.data.len() as u64 > MAX_LEN) {
            return Err(AeadError);
        }
        let mut ivs: Vec<[u8; 16]> = items
            .iter()
            .map(|it| prf_input(crate::gcm::ghash_blocks(&self.ghash, it.aad, it.data)))
            .collect();
        self.prf.encrypt_batch(&mut ivs);
        let mut jobs: Vec<CtrJob<'_>> = items
            .iter_mut()
            .zip(&ivs)
            .map(|(it, iv)| {
                it.iv = *iv;
                CtrJob {
                    first: first_counter(iv),
                    data: &mut *it.data,
                }
            })
            .collect();
        ctr_many(&self.enc, &mut jobs, None);
        Ok(())
    }

    /// Opens many values in place; `ok[i]` says whether value `i` authenticated. The data of
    /// values that did not is zeroed.
    pub fn open_many(&self, items: &mut [SivItem<'_>], ok: &mut Vec<bool>) {
        ok.clear();
        {
            let mut jobs: Vec<CtrJob<'_>> = items
                .iter_mut()
                .map(|it| CtrJob {
                    first: first_counter(&it.iv),
                    data: &mut *it.data,
                })
                .collect();
            ctr_many(&self.enc, &mut jobs, None);
        }
        let mut expect: Vec<[u8; 16]> = items
            .iter()
            .map(|it| prf_input(crate::gcm::ghash_blocks(&self.ghash, it.aad, it.data)))
            .collect();
        self.prf.encrypt_batch(&mut expect);
        for (item, e) in items.iter_mut().zip(&expect) {
            let good = item.data.len() as u64 <= MAX_LEN && bool::from(e.ct_eq(&item.iv));
            if !good {
                item.data.zeroize();
            }
            ok.push(good);
        }
    }
}

/// The same SIV over AES-256, with both block-cipher steps run by `ring`'s AES-256-GCM (its
/// keystream; the GCM tags are discarded): `E_K1(S96 ‖ 2)` is the first keystream block of
/// AES-GCM under `K1` with nonce `S96`, and the encryption is AES-GCM under `K2` with nonce
/// `V96`. Identical output to `Siv<aes::Aes256>` (a test checks).
pub struct Aes256Siv {
    prf: LessSafeKey,
    enc: LessSafeKey,
    ghash: GHash,
}

fn ring_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("AES-256 keys are 32 bytes"))
}

/// Applies the AES-GCM keystream `E_K(nonce ‖ 2), …` to `data` (the tag is not used).
fn ring_keystream(key: &LessSafeKey, nonce: &[u8; 16], data: &mut [u8]) -> Result<(), AeadError> {
    let n = Nonce::try_assume_unique_for_key(&nonce[..12]).map_err(|_| AeadError)?;
    key.seal_in_place_separate_tag(n, Aad::empty(), data)
        .map(|_| ())
        .map_err(|_| AeadError)
}

impl Aes256Siv {
    /// A key from its three independent parts.
    pub fn new(prf_key: &[u8; 32], enc_key: &[u8; 32], hash_key: &[u8; 16]) -> Self {
        Aes256Siv {
            prf: ring_key(prf_key),
            enc: ring_key(enc_key),
            ghash: GHash::new(&(*hash_key).into()),
        }
    }

    fn synthetic_iv(&self, aad: &[u8], plaintext: &[u8]) -> Result<[u8; SIV_LEN], AeadError> {
        let hash = crate::gcm::ghash_blocks(&self.ghash, aad, plaintext);
        let mut v = [0u8; SIV_LEN];
        ring_keystream(&self.prf, &hash, &mut v)?;
        Ok(v)
    }

    /// Encrypts `buf` in place and returns the synthetic IV.
    pub fn seal_in_place(&self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; SIV_LEN], AeadError> {
        if buf.len() as u64 > MAX_LEN {
            return Err(AeadError);
        }
        let iv = self.synthetic_iv(aad, buf)?;
        ring_keystream(&self.enc, &iv, buf)?;
        Ok(iv)
    }

    /// Decrypts `buf` in place and checks it against the synthetic IV. On failure `buf` is
    /// zeroed.
    pub fn open_in_place(
        &self,
        aad: &[u8],
        buf: &mut [u8],
        iv: &[u8; SIV_LEN],
    ) -> Result<(), AeadError> {
        if buf.len() as u64 > MAX_LEN {
            return Err(AeadError);
        }
        ring_keystream(&self.enc, iv, buf)?;
        let good = self
            .synthetic_iv(aad, buf)
            .is_ok_and(|expect| bool::from(expect.ct_eq(iv)));
        if good {
            Ok(())
        } else {
            buf.zeroize();
            Err(AeadError)
        }
    }

    /// Seals many values (one at a time: `ring` is already fast per call).
    pub fn seal_many(&self, items: &mut [SivItem<'_>]) -> Result<(), AeadError> {
        for it in items.iter_mut() {
            it.iv = self.seal_in_place(it.aad, it.data)?;
        }
        Ok(())
    }

    /// Opens many values; `ok[i]` says whether value `i` authenticated (failed ones are zeroed).
    pub fn open_many(&self, items: &mut [SivItem<'_>], ok: &mut Vec<bool>) {
        ok.clear();
        for it in items.iter_mut() {
            let iv = it.iv;
            ok.push(self.open_in_place(it.aad, it.data, &iv).is_ok());
        }
    }
}

/// The batch interface both SIV implementations offer (used by the column batch paths).
pub(crate) trait SivBatch {
    fn seal_many(&self, items: &mut [SivItem<'_>]) -> Result<(), AeadError>;
    fn open_many(&self, items: &mut [SivItem<'_>], ok: &mut Vec<bool>);
}

impl<C: BlockCipher128> SivBatch for Siv<C> {
    fn seal_many(&self, items: &mut [SivItem<'_>]) -> Result<(), AeadError> {
        Siv::seal_many(self, items)
    }
    fn open_many(&self, items: &mut [SivItem<'_>], ok: &mut Vec<bool>) {
        Siv::open_many(self, items, ok)
    }
}

impl SivBatch for Aes256Siv {
    fn seal_many(&self, items: &mut [SivItem<'_>]) -> Result<(), AeadError> {
        Aes256Siv::seal_many(self, items)
    }
    fn open_many(&self, items: &mut [SivItem<'_>], ok: &mut Vec<bool>) {
        Aes256Siv::open_many(self, items, ok)
    }
}

impl core::fmt::Debug for Aes256Siv {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Aes256Siv { .. }")
    }
}

impl<C: BlockCipher128> core::fmt::Debug for Siv<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Siv { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghash::universal_hash::UniversalHash;
    use proptest::prelude::*;

    fn sm4() -> Sm4Siv {
        Siv::new(&[1u8; 16], &[2u8; 16], &[3u8; 16])
    }

    fn aes() -> Siv<aes::Aes256> {
        Siv::new(&[1u8; 32], &[2u8; 32], &[3u8; 16])
    }

    fn aes_ring() -> Aes256Siv {
        Aes256Siv::new(&[1u8; 32], &[2u8; 32], &[3u8; 16])
    }

    /// The `ring` path computes exactly the construction the generic one does with the `aes`
    /// crate.
    #[test]
    fn ring_aes_path_matches_the_generic_construction() {
        for len in [0usize, 1, 15, 16, 17, 100, 256, 1000] {
            let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let (mut a, mut b) = (pt.clone(), pt.clone());
            let iv_a = aes().seal_in_place(b"t.c", &mut a).unwrap();
            let iv_b = aes_ring().seal_in_place(b"t.c", &mut b).unwrap();
            assert_eq!(iv_a, iv_b, "{len}");
            assert_eq!(a, b, "{len}");
            aes_ring().open_in_place(b"t.c", &mut b, &iv_b).unwrap();
            assert_eq!(b, pt);
            if len > 0 {
                let mut bad = a.clone();
                bad[0] ^= 1;
                assert!(aes_ring().open_in_place(b"t.c", &mut bad, &iv_a).is_err());
            }
        }
    }

    fn round_trip<C: BlockCipher128>(siv: &Siv<C>, aad: &[u8], pt: &[u8]) {
        let mut buf = pt.to_vec();
        let iv = siv.seal_in_place(aad, &mut buf).unwrap();
        if !pt.is_empty() {
            assert_ne!(buf, pt);
        }
        let mut again = pt.to_vec();
        assert_eq!(
            siv.seal_in_place(aad, &mut again).unwrap(),
            iv,
            "deterministic"
        );
        assert_eq!(again, buf);
        siv.open_in_place(aad, &mut buf, &iv).unwrap();
        assert_eq!(buf, pt);
    }

    /// The construction written out by hand with the `sm4` crate and `ghash` directly.
    #[test]
    fn matches_an_independent_composition() {
        use cipher::{BlockCipherEncrypt, KeyInit};
        let (k1, k2, h) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let aad = b"domain";
        let pt = b"110101199003074578 and more than one block";
        let mut g = GHash::new(&h.into());
        g.update_padded(aad);
        g.update_padded(pt);
        let mut len = [0u8; 16];
        len[..8].copy_from_slice(&(aad.len() as u64 * 8).to_be_bytes());
        len[8..].copy_from_slice(&(pt.len() as u64 * 8).to_be_bytes());
        g.update(&[len.into()]);
        let mut v = g.finalize();
        v[12..].copy_from_slice(&[0, 0, 0, 2]);
        sm4::Sm4::new(&k1.into()).encrypt_block(&mut v);
        let enc = sm4::Sm4::new(&k2.into());
        let mut expect = pt.to_vec();
        for (i, chunk) in expect.chunks_mut(16).enumerate() {
            let mut ctr = v;
            ctr[12..].copy_from_slice(&(2 + i as u32).to_be_bytes());
            enc.encrypt_block(&mut ctr);
            chunk.iter_mut().zip(ctr.iter()).for_each(|(d, k)| *d ^= k);
        }
        let mut buf = pt.to_vec();
        let iv = sm4().seal_in_place(aad, &mut buf).unwrap();
        assert_eq!(iv.as_slice(), v.as_slice());
        assert_eq!(buf, expect);
    }

    #[test]
    fn round_trips() {
        for len in [0usize, 1, 15, 16, 17, 100, 255, 256, 257, 1000] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            round_trip(&sm4(), b"t.c", &pt);
            round_trip(&aes(), b"t.c", &pt);
            let mut buf = pt.clone();
            let iv = aes_ring().seal_in_place(b"t.c", &mut buf).unwrap();
            aes_ring().open_in_place(b"t.c", &mut buf, &iv).unwrap();
            assert_eq!(buf, pt);
        }
    }

    #[test]
    fn aad_and_tampering_change_the_outcome() {
        let siv = sm4();
        let mut a = b"13800138000".to_vec();
        let iv_a = siv.seal_in_place(b"users.phone", &mut a).unwrap();
        let mut b = b"13800138000".to_vec();
        let iv_b = siv.seal_in_place(b"staff.phone", &mut b).unwrap();
        assert_ne!(iv_a, iv_b);
        assert_ne!(a, b);
        let mut moved = a.clone();
        assert!(
            siv.open_in_place(b"staff.phone", &mut moved, &iv_a)
                .is_err()
        );
        assert_eq!(
            moved,
            vec![0u8; moved.len()],
            "no unauthenticated plaintext escapes"
        );
        let mut flipped = a.clone();
        flipped[0] ^= 1;
        assert!(
            siv.open_in_place(b"users.phone", &mut flipped, &iv_a)
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn any_value_round_trips(aad in proptest::collection::vec(any::<u8>(), 0..64),
                                 pt in proptest::collection::vec(any::<u8>(), 0..300)) {
            let siv = sm4();
            let mut buf = pt.clone();
            let iv = siv.seal_in_place(&aad, &mut buf).unwrap();
            siv.open_in_place(&aad, &mut buf, &iv).unwrap();
            prop_assert_eq!(buf, pt);
        }
    }
}
