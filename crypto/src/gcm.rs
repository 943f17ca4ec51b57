//! SM4-GCM (NIST SP 800-38D with SM4 as the block cipher, as in RFC 8998) and SM4-CTR.
//!
//! Why not `aes-gcm`'s generic `AesGcm<Sm4, U12>`: it encrypts the tag mask `E(J0)` and the
//! keystream in separate calls, so a 16-byte value pays two full SM4 latencies in sequence.
//! Here the counter blocks `J0, J0+1, …` go through [`Sm4::encrypt_blocks_in_place`] together,
//! as many per pass as the backend runs in parallel, so a short value costs one pass. GHASH is
//! the RustCrypto `ghash` crate's (carry-less multiplication where the CPU has it); nothing of
//! GCM's authenticator is written here. The RFC 8998 vector and a comparison with `aes-gcm` over
//! the `sm4` crate on random inputs keep this honest.
//!
//! SM4-CTR for bulk data is the vetted `ctr` crate's mode over [`Sm4`] ([`Sm4Ctr`]): the `ctr`
//! crate already hands the cipher its full parallel width.
//!
//! Hygiene: the key, its round keys and the hash key `H` are wiped when dropped. Per-value
//! keystream blocks and tag masks are not: they reveal nothing about the key and nothing beyond
//! the one value they encrypt, which the caller holds in clear anyway, and wiping them byte by
//! byte costs more than GHASH on a short value.

use ghash::{GHash, universal_hash::UniversalHash};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::multi::{CtrJob, ctr_many};
use crate::sm4::{Sm4, Sm4Block};

/// SM4 in counter mode with a 128-bit big-endian counter (the `ctr` crate's `Ctr128BE`).
pub type Sm4Ctr = ctr::Ctr128BE<Sm4>;

/// GCM nonce length (96 bits, the only length Warden uses).
pub const NONCE_LEN: usize = 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;

/// Longest plaintext GCM allows: 2^36 − 32 bytes (SP 800-38D).
const P_MAX: u64 = (1 << 36) - 32;

/// An authenticated-encryption failure: a wrong key, a wrong nonce or associated data, a
/// modified ciphertext or tag, or a value longer than the mode allows. Deliberately says no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AeadError;

/// SM4-GCM with 96-bit nonces and 128-bit tags.
#[derive(Clone)]
pub struct Sm4Gcm {
    cipher: Sm4,
    ghash: GHash,
}

impl Sm4Gcm {
    /// A key for the fastest SM4 backend of this CPU.
    pub fn new(key: &[u8; 16]) -> Self {
        Self::from_cipher(Sm4::new_from_key(key))
    }

    /// Uses an already expanded key (for example one forced onto a given backend).
    pub fn from_cipher(cipher: Sm4) -> Self {
        let mut h = [0u8; 16];
        cipher.encrypt_block_in_place(&mut h);
        let ghash = GHash::new(&h.into());
        h.zeroize();
        Sm4Gcm { cipher, ghash }
    }

    /// The underlying block cipher.
    pub fn cipher(&self) -> &Sm4 {
        &self.cipher
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn encrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        check_len(buf.len())?;
        // Everything GHASH needs except the ciphertext is prepared first: it does not depend on
        // the keystream, so the CPU does it in the shadow of the latency-bound SM4 pass.
        let ghash = GhashInput::new(&self.ghash, aad, buf.len());
        let mask = self.apply_keystream(nonce, buf);
        Ok(masked(ghash.finish(buf), &mask))
    }

    /// Checks the tag and, only if it matches, decrypts `buf` in place. On failure `buf` is
    /// left as it was.
    pub fn decrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        check_len(buf.len())?;
        // GHASH over the ciphertext and the first SM4 pass (E(J0) and the first keystream
        // blocks) are independent; the keystream is applied only once the tag has been checked.
        let hash = ghash_blocks(&self.ghash, aad, buf);
        let mut first = [[0u8; 16]; MAX_PASS];
        let (pass, first_len) = self.first_pass(nonce, buf.len(), &mut first);
        let expect = masked(hash, &first[0]);
        let ok: bool = expect.ct_eq(tag).into();
        if !ok {
            return Err(AeadError);
        }
        xor_keystream(&mut buf[..first_len], &first[1..pass]);
        self.apply_rest(nonce, &mut buf[first_len..], pass as u32);
        Ok(())
    }

    /// `E(J0)` and the keystream for the first blocks, in one pass. Returns the number of
    /// blocks filled (including `J0`) and how many bytes of data they cover.
    fn first_pass(
        &self,
        nonce: &[u8; NONCE_LEN],
        len: usize,
        out: &mut [Sm4Block; MAX_PASS],
    ) -> (usize, usize) {
        let width = self.cipher.backend().parallel_blocks().min(MAX_PASS);
        let data_blocks = len.div_ceil(16).min(width - 1);
        let pass = 1 + data_blocks;
        for (i, block) in out[..pass].iter_mut().enumerate() {
            *block = counter_block(nonce, 1 + i as u32);
        }
        self.cipher.encrypt_blocks_in_place(&mut out[..pass]);
        (pass, (data_blocks * 16).min(len))
    }

    /// Encrypts or decrypts `buf` with the keystream from `J0 + 1`; returns `E(J0)`.
    fn apply_keystream(&self, nonce: &[u8; NONCE_LEN], buf: &mut [u8]) -> Sm4Block {
        let mut first = [[0u8; 16]; MAX_PASS];
        let (pass, first_len) = self.first_pass(nonce, buf.len(), &mut first);
        xor_keystream(&mut buf[..first_len], &first[1..pass]);
        let mask = first[0];
        self.apply_rest(nonce, &mut buf[first_len..], pass as u32);
        mask
    }

    /// Keystream from counter block `J0 + offset` on, full passes at a time.
    fn apply_rest(&self, nonce: &[u8; NONCE_LEN], buf: &mut [u8], mut offset: u32) {
        if buf.is_empty() {
            return;
        }
        let width = self.cipher.backend().parallel_blocks().min(MAX_PASS);
        let mut blocks = [[0u8; 16]; MAX_PASS];
        for chunk in buf.chunks_mut(16 * width) {
            let n = chunk.len().div_ceil(16);
            for (i, block) in blocks[..n].iter_mut().enumerate() {
                *block = counter_block(nonce, 1u32.wrapping_add(offset).wrapping_add(i as u32));
            }
            self.cipher.encrypt_blocks_in_place(&mut blocks[..n]);
            xor_keystream(chunk, &blocks[..n]);
            offset = offset.wrapping_add(n as u32);
        }
    }
}

/// Copies `data` into blocks, the last one zero-padded (full blocks as fixed-size moves).
#[inline]
fn load_padded(blocks: &mut [ghash::Block], data: &[u8]) {
    let (full, tail) = data.as_chunks::<16>();
    for (block, chunk) in blocks.iter_mut().zip(full) {
        block.0 = *chunk;
    }
    if !tail.is_empty() {
        let mut last = [0u8; 16];
        for (d, s) in last.iter_mut().zip(tail) {
            *d = *s;
        }
        blocks[full.len()].0 = last;
    }
}

fn masked(mut hash: [u8; 16], mask: &Sm4Block) -> [u8; TAG_LEN] {
    for (t, m) in hash.iter_mut().zip(mask) {
        *t ^= m;
    }
    hash
}

/// `GHASH_H(pad(a) ‖ pad(b) ‖ [len(a)]₆₄ ‖ [len(b)]₆₄)` with the `ghash` crate. Short inputs
/// (the usual column value) are laid out in one stack buffer and handed over in a single
/// `update`, so that the crate's four-block aggregated path runs instead of one call per part.
pub(crate) fn ghash_blocks(key: &GHash, a: &[u8], b: &[u8]) -> [u8; 16] {
    GhashInput::new(key, a, b.len()).finish(b)
}

/// GHASH of `pad(a) ‖ pad(b) ‖ lengths`, set up before `b` is known. Short inputs (the usual
/// column value) are laid out in one stack buffer and handed over in a single `update`, so that
/// the `ghash` crate's four-block aggregated path runs, more than twice as fast as calls per
/// part.
struct GhashInput<'a> {
    ghash: GHash,
    a: &'a [u8],
    na: usize,
    lengths: [u8; 16],
    blocks: [ghash::Block; GHASH_STACK_BLOCKS],
}

const GHASH_STACK_BLOCKS: usize = 8;

impl<'a> GhashInput<'a> {
    #[inline]
    fn new(key: &GHash, a: &'a [u8], b_len: usize) -> Self {
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&(a.len() as u64 * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&(b_len as u64 * 8).to_be_bytes());
        let na = a.len().div_ceil(16);
        let mut blocks = [ghash::Block::default(); GHASH_STACK_BLOCKS];
        if na + b_len.div_ceil(16) < GHASH_STACK_BLOCKS {
            load_padded(&mut blocks[..na], a);
        }
        GhashInput {
            ghash: key.clone(),
            a,
            na,
            lengths,
            blocks,
        }
    }

    #[inline]
    fn finish(mut self, b: &[u8]) -> [u8; 16] {
        let (na, nb) = (self.na, b.len().div_ceil(16));
        if na + nb < GHASH_STACK_BLOCKS {
            load_padded(&mut self.blocks[na..na + nb], b);
            self.blocks[na + nb] = self.lengths.into();
            self.ghash.update(&self.blocks[..na + nb + 1]);
        } else {
            self.ghash.update_padded(self.a);
            self.ghash.update_padded(b);
            self.ghash.update(&[self.lengths.into()]);
        }
        self.ghash.finalize().into()
    }
}

/// One value of a batch for [`Sm4Gcm::encrypt_many`] / [`Sm4Gcm::decrypt_many`].
pub struct GcmItem<'a> {
    /// The value's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The value's associated data.
    pub aad: &'a [u8],
    /// Plaintext in, ciphertext out (or the reverse).
    pub data: &'a mut [u8],
    /// The tag: written by `encrypt_many`, checked by `decrypt_many`.
    pub tag: [u8; TAG_LEN],
}

impl Sm4Gcm {
    /// Seals many values, packing their counter blocks into shared SM4 passes.
    pub fn encrypt_many(&self, items: &mut [GcmItem<'_>]) -> Result<(), AeadError> {
        for item in items.iter() {
            check_len(item.data.len())?;
        }
        let mut masks = vec![[0u8; 16]; items.len()];
        {
            let mut jobs: Vec<CtrJob<'_>> = items
                .iter_mut()
                .map(|it| CtrJob {
                    first: counter_block(&it.nonce, 1),
                    data: &mut *it.data,
                })
                .collect();
            ctr_many(&self.cipher, &mut jobs, Some(&mut masks));
        }
        for (item, mask) in items.iter_mut().zip(&masks) {
            item.tag = masked(ghash_blocks(&self.ghash, item.aad, item.data), mask);
        }
        Ok(())
    }

    /// Opens many values in place; `ok[i]` says whether value `i` authenticated. The data of
    /// values that did not is zeroed.
    pub fn decrypt_many(&self, items: &mut [GcmItem<'_>], ok: &mut Vec<bool>) {
        ok.clear();
        let hashes: Vec<Option<[u8; 16]>> = items
            .iter()
            .map(|it| {
                check_len(it.data.len())
                    .ok()
                    .map(|()| ghash_blocks(&self.ghash, it.aad, it.data))
            })
            .collect();
        let mut masks = vec![[0u8; 16]; items.len()];
        {
            let mut jobs: Vec<CtrJob<'_>> = items
                .iter_mut()
                .map(|it| CtrJob {
                    first: counter_block(&it.nonce, 1),
                    data: &mut *it.data,
                })
                .collect();
            ctr_many(&self.cipher, &mut jobs, Some(&mut masks));
        }
        for ((item, mask), hash) in items.iter_mut().zip(&masks).zip(&hashes) {
            let good = hash.is_some_and(|h| bool::from(masked(h, mask).ct_eq(&item.tag)));
            if !good {
                item.data.zeroize();
            }
            ok.push(good);
        }
    }
}

impl core::fmt::Debug for Sm4Gcm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sm4Gcm")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// Blocks in one pass at most (the widest backend's parallel width).
const MAX_PASS: usize = 16;

fn check_len(len: usize) -> Result<(), AeadError> {
    if len as u64 > P_MAX {
        Err(AeadError)
    } else {
        Ok(())
    }
}

/// `J0 + i` for a 96-bit nonce: `nonce ‖ (1 + i) mod 2^32` (SP 800-38D inc32).
#[inline]
fn counter_block(nonce: &[u8; NONCE_LEN], counter: u32) -> Sm4Block {
    let mut block = [0u8; 16];
    block[..12].copy_from_slice(nonce);
    block[12..].copy_from_slice(&counter.to_be_bytes());
    block
}

#[inline]
fn xor_keystream(data: &mut [u8], keystream: &[Sm4Block]) {
    crate::multi::xor_blocks(data, keystream);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sm4::Sm4Backend;
    use aes_gcm::KeyInit as _;
    use aes_gcm::aead::AeadInOut;
    use cipher::{KeyIvInit, StreamCipher};
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    fn ciphers(key: &[u8; 16]) -> Vec<Sm4Gcm> {
        Sm4Backend::ALL
            .into_iter()
            .filter_map(|b| Sm4::with_backend(key, b).ok())
            .map(Sm4Gcm::from_cipher)
            .collect()
    }

    /// RFC 8998 Appendix A.1 (SM4-GCM).
    #[test]
    fn rfc_8998_sm4_gcm_vector() {
        let key: [u8; 16] = unhex("0123456789ABCDEFFEDCBA9876543210")
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = unhex("00001234567800000000ABCD").try_into().unwrap();
        let aad = unhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
        let pt = unhex(
            "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD
             EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
        );
        let ct = unhex(
            "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735
             D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D",
        );
        let tag = unhex("83DE3541E4C2B58177E065A9BF7B62EC");
        for gcm in ciphers(&key) {
            let mut buf = pt.clone();
            let got = gcm
                .encrypt_in_place_detached(&nonce, &aad, &mut buf)
                .unwrap();
            assert_eq!(buf, ct, "{:?}", gcm.cipher().backend());
            assert_eq!(got.as_slice(), tag.as_slice());
            gcm.decrypt_in_place_detached(&nonce, &aad, &mut buf, &got)
                .unwrap();
            assert_eq!(buf, pt);
        }
    }

    /// The CTR vector of draft-ribose-cfrg-sm4 (128-bit counter).
    #[test]
    fn sm4_ctr_vector() {
        let key = unhex("0123456789abcdeffedcba9876543210");
        let iv = unhex("000102030405060708090a0b0c0d0e0f");
        let mut buf = unhex("aaaaaaaabbbbbbbbccccccccddddddddeeeeeeeeffffffffaaaaaaaabbbbbbbb");
        let mut ctr = Sm4Ctr::new_from_slices(&key, &iv).unwrap();
        ctr.apply_keystream(&mut buf);
        assert_eq!(
            hex::encode(&buf),
            "ac3236cb861dd316e6413b4e3c7524b781e9e3a5bf5c03fe703bb94f3abb16a1"
        );
    }

    #[test]
    fn sm4_ctr_matches_the_sm4_crate_over_long_buffers() {
        let key = [9u8; 16];
        let iv = [0xffu8; 16]; // exercises the 128-bit counter wrap
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut ours = data.clone();
        Sm4Ctr::new(&key.into(), &iv.into()).apply_keystream(&mut ours);
        let mut theirs = data;
        ctr::Ctr128BE::<sm4::Sm4>::new(&key.into(), &iv.into()).apply_keystream(&mut theirs);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn tampering_is_rejected_and_leaves_the_buffer_alone() {
        let gcm = Sm4Gcm::new(&[1u8; 16]);
        let nonce = [2u8; 12];
        let mut buf = b"salary 12345".to_vec();
        let tag = gcm
            .encrypt_in_place_detached(&nonce, b"hr.pay", &mut buf)
            .unwrap();
        let ct = buf.clone();
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        assert_eq!(
            gcm.decrypt_in_place_detached(&nonce, b"hr.pay", &mut buf, &bad_tag),
            Err(AeadError)
        );
        assert_eq!(buf, ct);
        assert!(
            gcm.decrypt_in_place_detached(&nonce, b"hr.paz", &mut buf, &tag)
                .is_err()
        );
        assert!(
            gcm.decrypt_in_place_detached(&[3u8; 12], b"hr.pay", &mut buf, &tag)
                .is_err()
        );
        buf[3] ^= 0x40;
        assert!(
            gcm.decrypt_in_place_detached(&nonce, b"hr.pay", &mut buf, &tag)
                .is_err()
        );
    }

    proptest! {
        /// Every length around the pass boundaries, on every backend, against `aes-gcm` over
        /// the `sm4` crate.
        #[test]
        fn matches_aes_gcm_over_the_sm4_crate(
            key: [u8; 16],
            nonce: [u8; 12],
            aad in proptest::collection::vec(any::<u8>(), 0..40),
            pt in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let reference = aes_gcm::AesGcm::<sm4::Sm4, aes_gcm::aead::consts::U12>::new(&key.into());
            let mut expect = pt.clone();
            let expect_tag = reference
                .encrypt_inout_detached(&nonce.into(), &aad, expect.as_mut_slice().into())
                .unwrap();
            for gcm in ciphers(&key) {
                let mut buf = pt.clone();
                let tag = gcm.encrypt_in_place_detached(&nonce, &aad, &mut buf).unwrap();
                prop_assert_eq!(&buf, &expect);
                prop_assert_eq!(tag.as_slice(), expect_tag.as_slice());
                gcm.decrypt_in_place_detached(&nonce, &aad, &mut buf, &tag).unwrap();
                prop_assert_eq!(&buf, &pt);
            }
        }
    }
}
