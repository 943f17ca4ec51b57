//! SM4 (GB/T 32907-2016), constant-time, with a fast AES-NI backend and a portable fallback.
//!
//! Why our own SM4: the RustCrypto `sm4` crate looks its S-box up in a table indexed by secret
//! bytes (not constant-time) and encrypts one block at a time (~80 MB/s here). Warden decrypts
//! whole result sets of SM4 columns, so SM4 is the proxy's dominant cost unless it is fast.
//!
//! Two backends, chosen once per key by runtime CPU detection ([`Sm4::new`]):
//!
//! - [`Sm4Backend::AesNi`] (x86-64 with AES-NI and SSSE3): computes the SM4 S-box with the AES
//!   S-box instruction (`AESENCLAST`), using the affine isomorphism between the two S-boxes
//!   (see [`field`]), on 4 blocks per register set and 8 blocks per pass
//!   ([`aesni`]). The instruction's timing does not depend on the data.
//! - [`Sm4Backend::Portable`]: a bitsliced circuit on 16 blocks per pass ([`portable`]), for
//!   everything else. No secret-dependent memory access or branch either.
//!
//! [`Sm4`] implements the RustCrypto `cipher` 0.5 block-cipher traits, with the backend's
//! parallel width as `ParBlocksSize`, so vetted generic constructions (`ctr`, `fpe`'s FF1,
//! `aes-gcm`'s `AesGcm`) run on it unchanged. Warden's own SM4-GCM ([`crate::gcm`]) calls
//! [`Sm4::encrypt_blocks`] directly so that the tag mask and the keystream of a short value come
//! out of one parallel pass.

mod field;
mod portable;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod aesni;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod gfni;

use core::fmt;

use cipher::{
    AlgorithmName, Block, BlockCipherDecBackend, BlockCipherDecClosure, BlockCipherDecrypt,
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, InOut,
    InOutBuf, Key, KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
    consts::{U8, U16},
};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// SM4 block size in bytes.
pub const BLOCK_LEN: usize = 16;
/// SM4 key size in bytes.
pub const KEY_LEN: usize = 16;

/// One SM4 block.
pub type Sm4Block = [u8; BLOCK_LEN];

/// The system parameter FK of the key schedule (GB/T 32907 §7.3).
const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

/// The fixed parameters CK: byte `j` of `CK[i]` is `(4i + j) · 7 mod 256` (GB/T 32907 §7.3).
const CK: [u32; 32] = {
    let mut ck = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut bytes = [0u8; 4];
        let mut j = 0;
        while j < 4 {
            bytes[j] = ((4 * i + j) * 7 % 256) as u8;
            j += 1;
        }
        ck[i] = u32::from_be_bytes(bytes);
        i += 1;
    }
    ck
};

/// Which implementation an [`Sm4`] key runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sm4Backend {
    /// Bitsliced, constant-time, any CPU; 16 blocks per pass.
    Portable,
    /// AES-NI S-box with SSSE3 affine maps, constant-time; x86-64; 8 blocks per pass.
    AesNi,
    /// GFNI affine-inverse S-box with AVX2, constant-time; x86-64 (Ice Lake, Zen 4 and later);
    /// 16 blocks per pass.
    Gfni,
}

impl Sm4Backend {
    /// Every backend, fastest first.
    pub const ALL: [Sm4Backend; 3] = [Sm4Backend::Gfni, Sm4Backend::AesNi, Sm4Backend::Portable];

    /// The fastest backend this CPU supports.
    pub fn best() -> Self {
        Self::ALL
            .into_iter()
            .find(|b| b.is_available())
            .unwrap_or(Sm4Backend::Portable)
    }

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Sm4Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::AesNi => aesni::AesNi::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::Gfni => gfni::Gfni::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Sm4Backend::AesNi | Sm4Backend::Gfni => false,
        }
    }

    /// Blocks the backend encrypts in one pass; callers batching work should fill this many.
    pub fn parallel_blocks(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::AesNi => aesni::PAR_BLOCKS,
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::Gfni => gfni::PAR_BLOCKS,
            _ => portable::PAR_BLOCKS,
        }
    }
}

impl fmt::Display for Sm4Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sm4Backend::Portable => "portable (bitsliced)",
            Sm4Backend::AesNi => "AES-NI",
            Sm4Backend::Gfni => "GFNI",
        })
    }
}

/// The requested SM4 backend cannot run on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the SM4 {0} backend is not supported by this CPU")]
pub struct BackendUnavailable(pub Sm4Backend);

/// The 32 round keys in encryption order.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct RoundKeys([u32; 32]);

impl RoundKeys {
    /// The key schedule (GB/T 32907 §7.3), with the backend's constant-time τ.
    fn expand(key: &[u8; KEY_LEN], tau: impl Fn(u32) -> u32) -> Self {
        let mut k = [0u32; 4];
        for (i, word) in k.iter_mut().enumerate() {
            *word = u32::from_be_bytes(key[4 * i..4 * i + 4].try_into().expect("4 bytes")) ^ FK[i];
        }
        let mut rk = [0u32; 32];
        for (i, out) in rk.iter_mut().enumerate() {
            let t = k[1] ^ k[2] ^ k[3] ^ CK[i];
            let next = k[0] ^ field::l_prime(tau(t));
            k = [k[1], k[2], k[3], next];
            *out = next;
        }
        k.zeroize();
        RoundKeys(rk)
    }

    fn reversed(&self) -> Self {
        let mut rk = self.0;
        rk.reverse();
        RoundKeys(rk)
    }
}

/// Round keys for the x86 backends: in the M-domain of [`field`], with `C1` folded in, as
/// broadcastable little-endian lane values (so a lane's bytes sit in big-endian word order).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct DomainKeys {
    enc: [i32; 32],
    dec: [i32; 32],
}

#[cfg(target_arch = "x86_64")]
impl DomainKeys {
    fn new(rk: &RoundKeys) -> Self {
        let mut enc = [0i32; 32];
        for (out, &k) in enc.iter_mut().zip(&rk.0) {
            // `apply` is branch-free: no secret-dependent branch or index here either.
            *out = i32::from_le_bytes(
                k.to_be_bytes()
                    .map(|b| field::apply(&field::M, b) ^ field::C1),
            );
        }
        let mut dec = enc;
        dec.reverse();
        DomainKeys { enc, dec }
    }
}

#[derive(Clone)]
enum Keys {
    Portable {
        enc: RoundKeys,
        dec: RoundKeys,
    },
    #[cfg(target_arch = "x86_64")]
    AesNi {
        keys: DomainKeys,
        cpu: aesni::AesNi,
    },
    #[cfg(target_arch = "x86_64")]
    Gfni {
        keys: DomainKeys,
        cpu: gfni::Gfni,
    },
}

/// An SM4 key, expanded for one backend.
#[derive(Clone)]
pub struct Sm4 {
    keys: Keys,
}

impl Sm4 {
    /// Expands `key` for the fastest backend of this CPU.
    pub fn new_from_key(key: &[u8; KEY_LEN]) -> Self {
        Self::with_backend(key, Sm4Backend::best()).expect("the best backend is available")
    }

    /// Expands `key` for a given backend (tests and benchmarks force each one with this).
    pub fn with_backend(
        key: &[u8; KEY_LEN],
        backend: Sm4Backend,
    ) -> Result<Self, BackendUnavailable> {
        let unavailable = BackendUnavailable(backend);
        let keys = match backend {
            Sm4Backend::Portable => {
                let enc = RoundKeys::expand(key, portable::tau);
                let dec = enc.reversed();
                Keys::Portable { enc, dec }
            }
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::AesNi => {
                let cpu = aesni::AesNi::detect().ok_or(unavailable)?;
                let rk = RoundKeys::expand(key, |w| cpu.tau(w));
                Keys::AesNi {
                    keys: DomainKeys::new(&rk),
                    cpu,
                }
            }
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::Gfni => {
                let cpu = gfni::Gfni::detect().ok_or(unavailable)?;
                let rk = match aesni::AesNi::detect() {
                    Some(ni) => RoundKeys::expand(key, |w| ni.tau(w)),
                    None => RoundKeys::expand(key, portable::tau),
                };
                Keys::Gfni {
                    keys: DomainKeys::new(&rk),
                    cpu,
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            Sm4Backend::AesNi | Sm4Backend::Gfni => return Err(unavailable),
        };
        Ok(Sm4 { keys })
    }

    /// The backend this key runs on.
    pub fn backend(&self) -> Sm4Backend {
        match self.keys {
            Keys::Portable { .. } => Sm4Backend::Portable,
            #[cfg(target_arch = "x86_64")]
            Keys::AesNi { .. } => Sm4Backend::AesNi,
            #[cfg(target_arch = "x86_64")]
            Keys::Gfni { .. } => Sm4Backend::Gfni,
        }
    }

    /// Encrypts blocks in place, as many per pass as the backend can.
    pub fn encrypt_blocks_in_place(&self, blocks: &mut [Sm4Block]) {
        match &self.keys {
            Keys::Portable { enc, .. } => {
                for chunk in blocks.chunks_mut(portable::PAR_BLOCKS) {
                    portable::crypt_blocks(&enc.0, chunk);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Keys::AesNi { keys, cpu } => cpu.crypt(&keys.enc, blocks),
            #[cfg(target_arch = "x86_64")]
            Keys::Gfni { keys, cpu } => cpu.crypt(&keys.enc, blocks),
        }
    }

    /// Decrypts blocks in place.
    pub fn decrypt_blocks_in_place(&self, blocks: &mut [Sm4Block]) {
        match &self.keys {
            Keys::Portable { dec, .. } => {
                for chunk in blocks.chunks_mut(portable::PAR_BLOCKS) {
                    portable::crypt_blocks(&dec.0, chunk);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Keys::AesNi { keys, cpu } => cpu.crypt(&keys.dec, blocks),
            #[cfg(target_arch = "x86_64")]
            Keys::Gfni { keys, cpu } => cpu.crypt(&keys.dec, blocks),
        }
    }

    /// Encrypts one block.
    pub fn encrypt_block_in_place(&self, block: &mut Sm4Block) {
        self.encrypt_blocks_in_place(core::slice::from_mut(block));
    }

    /// Decrypts one block.
    pub fn decrypt_block_in_place(&self, block: &mut Sm4Block) {
        self.decrypt_blocks_in_place(core::slice::from_mut(block));
    }
}

impl fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sm4 {{ backend: {}, .. }}", self.backend())
    }
}

impl ZeroizeOnDrop for Sm4 {}

// ---- RustCrypto `cipher` traits ---------------------------------------------------------------

impl KeySizeUser for Sm4 {
    type KeySize = U16;
}

impl KeyInit for Sm4 {
    fn new(key: &Key<Self>) -> Self {
        Sm4::new_from_key(&key.0)
    }
}

impl BlockSizeUser for Sm4 {
    type BlockSize = U16;
}

impl AlgorithmName for Sm4 {
    fn write_alg_name(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SM4")
    }
}

/// Runs `n` inout blocks through `f` on a stack copy (in and out may be different buffers).
#[inline(always)]
fn with_copied_blocks(mut blocks: InOutBuf<'_, '_, Block<Sm4>>, f: impl FnOnce(&mut [Sm4Block])) {
    let n = blocks.len();
    let mut buf = [[0u8; BLOCK_LEN]; portable::PAR_BLOCKS];
    debug_assert!(n <= buf.len());
    for (dst, src) in buf.iter_mut().zip(blocks.get_in()) {
        dst.copy_from_slice(src);
    }
    f(&mut buf[..n]);
    for (dst, src) in blocks.get_out().iter_mut().zip(&buf[..n]) {
        dst.copy_from_slice(src);
    }
    buf[..n].as_flattened_mut().zeroize();
}

/// A backend of the `cipher` traits: a direction, a key, and the parallel width `P`.
struct CipherBackend<'a, P> {
    sm4: &'a Sm4,
    decrypt: bool,
    _width: core::marker::PhantomData<P>,
}

impl<P: cipher::array::ArraySize> BlockSizeUser for CipherBackend<'_, P> {
    type BlockSize = U16;
}

impl<P: cipher::array::ArraySize> ParBlocksSizeUser for CipherBackend<'_, P> {
    type ParBlocksSize = P;
}

impl<'a, P: cipher::array::ArraySize> CipherBackend<'a, P> {
    fn new(sm4: &'a Sm4, decrypt: bool) -> Self {
        debug_assert!(P::USIZE >= sm4.backend().parallel_blocks());
        CipherBackend {
            sm4,
            decrypt,
            _width: core::marker::PhantomData,
        }
    }

    #[inline(always)]
    fn run(&self, blocks: &mut [Sm4Block]) {
        if self.decrypt {
            self.sm4.decrypt_blocks_in_place(blocks)
        } else {
            self.sm4.encrypt_blocks_in_place(blocks)
        }
    }

    #[inline(always)]
    fn one(&self, mut block: InOut<'_, '_, Block<Sm4>>) {
        let mut b: Sm4Block = block.get_in().0;
        self.run(core::slice::from_mut(&mut b));
        block.get_out().0 = b;
        b.zeroize();
    }

    #[inline(always)]
    fn par(&self, blocks: InOut<'_, '_, ParBlocks<Self>>) {
        with_copied_blocks(blocks.into_buf(), |b| self.run(b));
    }
}

impl<P: cipher::array::ArraySize> BlockCipherEncBackend for CipherBackend<'_, P> {
    #[inline(always)]
    fn encrypt_block(&self, block: InOut<'_, '_, Block<Self>>) {
        self.one(block)
    }
    #[inline(always)]
    fn encrypt_par_blocks(&self, blocks: InOut<'_, '_, ParBlocks<Self>>) {
        self.par(blocks)
    }
    #[inline(always)]
    fn encrypt_tail_blocks(&self, blocks: InOutBuf<'_, '_, Block<Self>>) {
        with_copied_blocks(blocks, |b| self.run(b));
    }
}

impl<P: cipher::array::ArraySize> BlockCipherDecBackend for CipherBackend<'_, P> {
    #[inline(always)]
    fn decrypt_block(&self, block: InOut<'_, '_, Block<Self>>) {
        self.one(block)
    }
    #[inline(always)]
    fn decrypt_par_blocks(&self, blocks: InOut<'_, '_, ParBlocks<Self>>) {
        self.par(blocks)
    }
    #[inline(always)]
    fn decrypt_tail_blocks(&self, blocks: InOutBuf<'_, '_, Block<Self>>) {
        with_copied_blocks(blocks, |b| self.run(b));
    }
}

impl BlockCipherEncrypt for Sm4 {
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        match self.backend().parallel_blocks() {
            8 => f.call(&CipherBackend::<U8>::new(self, false)),
            _ => f.call(&CipherBackend::<U16>::new(self, false)),
        }
    }
}

impl BlockCipherDecrypt for Sm4 {
    fn decrypt_with_backend(&self, f: impl BlockCipherDecClosure<BlockSize = Self::BlockSize>) {
        match self.backend().parallel_blocks() {
            8 => f.call(&CipherBackend::<U8>::new(self, true)),
            _ => f.call(&CipherBackend::<U16>::new(self, true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn backends() -> Vec<Sm4Backend> {
        Sm4Backend::ALL
            .into_iter()
            .filter(|b| b.is_available())
            .collect()
    }

    /// The reference: the RustCrypto `sm4` crate.
    fn reference(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
        let c = <sm4::Sm4 as cipher::KeyInit>::new(&(*key).into());
        let mut b = (*block).into();
        cipher::BlockCipherEncrypt::encrypt_block(&c, &mut b);
        b.into()
    }

    #[test]
    fn key_schedule_constants() {
        assert_eq!(CK[0], 0x0007_0e15);
        assert_eq!(CK[31], 0x646b_7279);
        // GB/T 32907 Appendix A: rk0 and rk31 of the example key.
        let key = unhex::<16>("0123456789abcdeffedcba9876543210");
        let mut taus: Vec<Box<dyn Fn(u32) -> u32>> = vec![Box::new(portable::tau)];
        #[cfg(target_arch = "x86_64")]
        if let Some(ni) = aesni::AesNi::detect() {
            taus.push(Box::new(move |w| ni.tau(w)));
        }
        for tau in taus {
            let rk = RoundKeys::expand(&key, tau);
            assert_eq!(rk.0[0], 0xf121_86f9);
            assert_eq!(rk.0[31], 0x9124_a012);
        }
    }

    /// GB/T 32907-2016 Appendix A, example 1, on every backend, both directions.
    #[test]
    fn gbt_32907_example_1() {
        let key = unhex::<16>("0123456789abcdeffedcba9876543210");
        let expect = unhex::<16>("681edf34d206965e86b3e94f536e4246");
        for backend in backends() {
            let c = Sm4::with_backend(&key, backend).unwrap();
            let mut b = key;
            c.encrypt_block_in_place(&mut b);
            assert_eq!(b, expect, "{backend}");
            c.decrypt_block_in_place(&mut b);
            assert_eq!(b, key, "{backend}");
        }
    }

    /// GB/T 32907-2016 Appendix A, example 2: 1,000,000 encryptions fed back, on every backend.
    #[test]
    fn gbt_32907_example_2_million_iterations() {
        let key = unhex::<16>("0123456789abcdeffedcba9876543210");
        let expect = unhex::<16>("595298c7c6fd271f0402f804c33d3f66");
        for backend in backends() {
            let c = Sm4::with_backend(&key, backend).unwrap();
            let mut b = key;
            for _ in 0..1_000_000 {
                c.encrypt_block_in_place(&mut b);
            }
            assert_eq!(b, expect, "{backend}");
        }
    }

    /// A second key from draft-ribose-cfrg-sm4.
    #[test]
    fn second_key_vector() {
        let key = unhex::<16>("fedcba98765432100123456789abcdef");
        let pt = unhex::<16>("0123456789abcdeffedcba9876543210");
        let expect = unhex::<16>("336099f2c3f9a0e015c6536bc88ed7f7");
        for backend in backends() {
            let c = Sm4::with_backend(&key, backend).unwrap();
            let mut b = pt;
            c.encrypt_block_in_place(&mut b);
            assert_eq!(b, expect, "{backend}");
        }
    }

    /// On this project's machines (x86-64 with AES-NI) a hardware backend is the one selected,
    /// and the AES-NI backend is available so that every test above and below runs it too.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn hardware_backend_is_selected_on_x86_64() {
        assert!(
            Sm4Backend::AesNi.is_available(),
            "this test machine has no AES-NI; the fast constant-time SM4 path cannot be exercised"
        );
        let expect = if Sm4Backend::Gfni.is_available() {
            Sm4Backend::Gfni
        } else {
            Sm4Backend::AesNi
        };
        assert_eq!(Sm4Backend::best(), expect);
        assert_eq!(Sm4::new_from_key(&[7u8; 16]).backend(), expect);
        let c = <Sm4 as cipher::KeyInit>::new(&[7u8; 16].into());
        assert_eq!(c.backend(), expect);
        assert_eq!(
            Sm4::with_backend(&[7u8; 16], Sm4Backend::AesNi)
                .unwrap()
                .backend(),
            Sm4Backend::AesNi
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn gfni_matrix_layout() {
        for x in 0..=255u8 {
            if let Some(y) = gfni::affine_byte(&field::M, x) {
                assert_eq!(y, field::apply(&field::M, x));
            }
        }
    }

    #[test]
    fn unavailable_backend_is_reported() {
        for backend in Sm4Backend::ALL {
            let r = Sm4::with_backend(&[1u8; 16], backend);
            assert_eq!(r.is_ok(), backend.is_available(), "{backend}");
        }
    }

    #[test]
    fn both_backends_agree_with_the_sm4_crate_for_every_batch_length() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in 0..=40usize {
            let mut key = [0u8; 16];
            key.iter_mut().for_each(|b| *b = next() as u8);
            let blocks: Vec<[u8; 16]> = (0..len)
                .map(|_| {
                    let mut b = [0u8; 16];
                    b.iter_mut().for_each(|x| *x = next() as u8);
                    b
                })
                .collect();
            let expect: Vec<[u8; 16]> = blocks.iter().map(|b| reference(&key, b)).collect();
            for backend in backends() {
                let c = Sm4::with_backend(&key, backend).unwrap();
                let mut got = blocks.clone();
                c.encrypt_blocks_in_place(&mut got);
                assert_eq!(got, expect, "{backend}, {len} blocks");
                c.decrypt_blocks_in_place(&mut got);
                assert_eq!(got, blocks, "{backend}, {len} blocks");

                // Through the `cipher` traits (parallel and tail paths, buffer to buffer).
                let inp: Vec<Block<Sm4>> = blocks.iter().map(|b| (*b).into()).collect();
                let mut out = vec![Block::<Sm4>::default(); len];
                c.encrypt_blocks_b2b(&inp, &mut out).unwrap();
                assert!(
                    out.iter().zip(&expect).all(|(a, b)| a.0 == *b),
                    "{backend} b2b"
                );
                let mut back = out.clone();
                BlockCipherDecrypt::decrypt_blocks(&c, &mut back);
                assert!(
                    back.iter().zip(&blocks).all(|(a, b)| a.0 == *b),
                    "{backend} dec"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn random_keys_and_blocks_match_the_sm4_crate(key: [u8; 16], block: [u8; 16]) {
            let expect = reference(&key, &block);
            for backend in backends() {
                let c = Sm4::with_backend(&key, backend).unwrap();
                let mut b = block;
                c.encrypt_block_in_place(&mut b);
                prop_assert_eq!(b, expect);
                c.decrypt_block_in_place(&mut b);
                prop_assert_eq!(b, block);
            }
        }
    }

    #[test]
    fn key_init_from_generic_array() {
        let key = [0x42u8; 16];
        let c = <Sm4 as KeyInit>::new(&key.into());
        let mut b = Block::<Sm4>::default();
        BlockCipherEncrypt::encrypt_block(&c, &mut b);
        assert_eq!(b.0, reference(&key, &[0u8; 16]));
    }
}
