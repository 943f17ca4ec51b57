//! SM4 on x86-64 with the AES S-box instruction: constant-time and several blocks per pass.
//!
//! The SM4 S-box is `A2 · S_aes(M · x ⊕ C1) ⊕ C2` ([`super::field`]), and `AESENCLAST` with a
//! chosen round key computes `S_aes` on all 16 bytes of a register in constant time.
//!
//! How the round is arranged (the idea of Markku-Juhani Saarinen's `sm4ni`, worked out
//! differently here to shorten the dependency chain of one round, which is what bounds the
//! latency of a short value):
//!
//! - *Transposed state.* Four blocks are processed together: register `X[w]` holds word `w` of
//!   each of the four blocks, one per 32-bit lane, bytes in big-endian order. Two such sets are
//!   interleaved, so one pass encrypts 8 blocks.
//! - *The M-domain.* The state is kept as `M · x` for every byte (`M` is linear, so XOR commutes
//!   with it). The S-box input map then costs nothing: `C1` is folded into the round keys.
//! - *Output map, `L` and `M` fused.* After `AESENCLAST` (whose round key folds in the output
//!   constant), `M · L(A2 · y)` is a linear map on the word; it splits into four byte-to-byte
//!   maps, each one a pair of `PSHUFB` nibble tables, followed by a byte permutation that
//!   both rotates the word and undoes `AESENCLAST`'s ShiftRows. One round is therefore one
//!   `AESENCLAST`, eight nibble look-ups, four permutations and XORs, about 13 cycles of latency.
//!
//! Every table is derived at compile time from the matrices in [`super::field`]; the tests in
//! the parent module compare this backend with the `sm4` crate and the standard vectors.
//!
//! This is the only module of the crate with `unsafe` code: CPU intrinsics behind
//! `#[target_feature]`, reached only through an [`AesNi`] value, which only
//! `is_x86_feature_detected!` confirming AES-NI and SSSE3 can produce.

use core::arch::x86_64::{
    __m128i, _mm_aesenclast_si128, _mm_and_si128, _mm_cvtsi32_si128, _mm_cvtsi128_si32,
    _mm_loadu_si128, _mm_set1_epi8, _mm_set1_epi32, _mm_setzero_si128, _mm_shuffle_epi8,
    _mm_srli_epi16, _mm_storeu_si128, _mm_unpackhi_epi32, _mm_unpackhi_epi64, _mm_unpacklo_epi32,
    _mm_unpacklo_epi64, _mm_xor_si128,
};

use super::field::{A2, BitMatrix, C1, C2, L_PARTS, M, M_INV, apply, compose, invert};

/// Blocks per pass: two interleaved sets of four.
pub(crate) const PAR_BLOCKS: usize = 8;
/// Blocks per register set.
const LANES: usize = 4;

/// `PSHUFB` tables of a linear byte map: `[low nibble → image, high nibble → image]`.
const fn nibble_tables(m: &BitMatrix) -> [[u8; 16]; 2] {
    let mut t = [[0u8; 16]; 2];
    let mut n = 0;
    while n < 16 {
        t[0][n] = apply(m, n as u8);
        t[1][n] = apply(m, (n as u8) << 4);
        n += 1;
    }
    t
}

/// Into the M-domain (plaintext side).
const M_TABLES: [[u8; 16]; 2] = nibble_tables(&M);
/// Out of the M-domain (ciphertext side).
const M_INV_TABLES: [[u8; 16]; 2] = nibble_tables(&M_INV);
/// The S-box output map alone (the key schedule's τ works outside the M-domain).
const A2_TABLES: [[u8; 16]; 2] = nibble_tables(&A2);

/// `M · L_k · A2` for the four byte offsets `k` of `L`.
const ROUND_TABLES: [[[u8; 16]; 2]; 4] = {
    let mut t = [[[0u8; 16]; 2]; 4];
    let mut k = 0;
    while k < 4 {
        t[k] = nibble_tables(&compose(&M, &compose(&L_PARTS[k], &A2)));
        k += 1;
    }
    t
};

/// `AESENCLAST` adds its round key after the S-box: adding `A2⁻¹ · C2` there makes the linear
/// output tables produce `A2 · S_aes(..) ⊕ C2`.
const AES_KEY_BYTE: u8 = apply(&invert(&A2), C2);

/// Undoes AES ShiftRows: AES byte `r + 4c` (row `r`, column `c`) went to `r + 4(c − r)`.
const INV_SHIFT_ROWS: [u8; 16] = {
    let mut idx = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let (r, c) = (i % 4, i / 4);
        idx[i] = (r + 4 * ((c + 4 - r) % 4)) as u8;
        i += 1;
    }
    idx
};

/// For byte offset `k`: output byte `r` of each lane takes byte `(r + k) mod 4` of that lane,
/// after undoing ShiftRows.
const ROUND_PERMS: [[u8; 16]; 4] = {
    let mut p = [[0u8; 16]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 16 {
            let (r, c) = (i % 4, i / 4);
            p[k][i] = INV_SHIFT_ROWS[(r + k) % 4 + 4 * c];
            i += 1;
        }
        k += 1;
    }
    p
};

/// Proof that this CPU has AES-NI and SSSE3 (and whether it has AVX): only
/// [`AesNi::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AesNi {
    avx: bool,
}

impl AesNi {
    pub(crate) fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("ssse3"))
            .then(|| AesNi {
                avx: std::arch::is_x86_feature_detected!("avx"),
            })
    }

    /// Runs the 32 rounds (M-domain round keys, in the order given) on the blocks in place.
    pub(crate) fn crypt(self, rk: &[i32; 32], blocks: &mut [[u8; 16]]) {
        for chunk in blocks.chunks_mut(PAR_BLOCKS) {
            // SAFETY (all four calls): `self` exists only if `detect` found AES-NI and SSSE3,
            // and `self.avx` records whether it also found AVX.
            match (self.avx, chunk.len() <= LANES) {
                (true, true) => unsafe { vex::crypt_sets::<1>(rk, chunk) },
                (true, false) => unsafe { vex::crypt_sets::<2>(rk, chunk) },
                (false, true) => unsafe { legacy::crypt_sets::<1>(rk, chunk) },
                (false, false) => unsafe { legacy::crypt_sets::<2>(rk, chunk) },
            }
        }
    }

    /// The S-box on the four bytes of a word, for the key schedule.
    pub(crate) fn tau(self, word: u32) -> u32 {
        // SAFETY: `self` exists only if `detect` found AES-NI and SSSE3.
        unsafe { legacy::tau_ni(word) }
    }
}

/// The round code, compiled twice: with legacy SSE encoding for any AES-NI CPU, and with VEX
/// (three-operand AVX encoding, fewer register copies) where AVX is present.
macro_rules! backend {
    ($module:ident, $features:literal) => {
        mod $module {
            use super::*;

            #[inline]
            #[target_feature(enable = $features)]
            fn load(bytes: &[u8; 16]) -> __m128i {
                // SAFETY: `bytes` is 16 readable bytes; `loadu` has no alignment requirement.
                unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
            }

            /// A linear byte map on every byte, through its nibble tables.
            #[inline]
            #[target_feature(enable = $features)]
            fn byte_map(x: __m128i, tables: &[[u8; 16]; 2]) -> __m128i {
                let low_nibbles = _mm_set1_epi8(0x0f);
                let lo = _mm_and_si128(x, low_nibbles);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), low_nibbles);
                _mm_xor_si128(
                    _mm_shuffle_epi8(load(&tables[0]), lo),
                    _mm_shuffle_epi8(load(&tables[1]), hi),
                )
            }

            /// 4×4 transpose of 32-bit lanes: four blocks ⇄ four words. Its own inverse.
            #[inline]
            #[target_feature(enable = $features)]
            fn transpose(b: [__m128i; 4]) -> [__m128i; 4] {
                let t0 = _mm_unpacklo_epi32(b[0], b[1]);
                let t1 = _mm_unpacklo_epi32(b[2], b[3]);
                let t2 = _mm_unpackhi_epi32(b[0], b[1]);
                let t3 = _mm_unpackhi_epi32(b[2], b[3]);
                [
                    _mm_unpacklo_epi64(t0, t1),
                    _mm_unpackhi_epi64(t0, t1),
                    _mm_unpacklo_epi64(t2, t3),
                    _mm_unpackhi_epi64(t2, t3),
                ]
            }

            /// One output part: `perm_k(M · L_k · A2 · y)`.
            #[inline]
            #[target_feature(enable = $features)]
            fn part(lo: __m128i, hi: __m128i, k: usize) -> __m128i {
                _mm_xor_si128(
                    _mm_shuffle_epi8(load(&ROUND_TABLES[k][0]), lo),
                    _mm_shuffle_epi8(load(&ROUND_TABLES[k][1]), hi),
                )
            }

            /// An opaque copy: keeps LLVM from re-associating the XOR tree that shapes the
            /// critical path.
            #[inline]
            #[target_feature(enable = $features)]
            fn pin(mut x: __m128i) -> __m128i {
                // SAFETY: an empty assembly block that only claims to read and write a register.
                unsafe {
                    core::arch::asm!("/* {0} */", inout(xmm_reg) x, options(pure, nomem, nostack))
                };
                x
            }

            /// The S-box-and-`L` parts of a round, each permuted into place.
            #[inline]
            #[target_feature(enable = $features)]
            fn parts(t: __m128i) -> [__m128i; 4] {
                let low_nibbles = _mm_set1_epi8(0x0f);
                let y = _mm_aesenclast_si128(t, _mm_set1_epi8(AES_KEY_BYTE as i8));
                let lo = _mm_and_si128(y, low_nibbles);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(y), low_nibbles);
                [
                    _mm_shuffle_epi8(part(lo, hi, 0), load(&ROUND_PERMS[0])),
                    _mm_shuffle_epi8(part(lo, hi, 1), load(&ROUND_PERMS[1])),
                    _mm_shuffle_epi8(part(lo, hi, 2), load(&ROUND_PERMS[2])),
                    _mm_shuffle_epi8(part(lo, hi, 3), load(&ROUND_PERMS[3])),
                ]
            }

            /// Encrypts (or, with reversed keys, decrypts) up to `4 · SETS` blocks in place.
            ///
            /// # Safety
            /// The CPU must support the features this module is compiled for.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn crypt_sets<const SETS: usize>(
                rk: &[i32; 32],
                blocks: &mut [[u8; 16]],
            ) {
                debug_assert!(blocks.len() <= SETS * LANES);
                let mut state = [[_mm_setzero_si128(); 4]; SETS];
                for (s, words) in state.iter_mut().enumerate() {
                    let mut regs = [_mm_setzero_si128(); LANES];
                    for (lane, reg) in regs.iter_mut().enumerate() {
                        if let Some(block) = blocks.get(s * LANES + lane) {
                            *reg = load(block);
                        }
                    }
                    let w = transpose(regs);
                    *words = [
                        byte_map(w[0], &M_TABLES),
                        byte_map(w[1], &M_TABLES),
                        byte_map(w[2], &M_TABLES),
                        byte_map(w[3], &M_TABLES),
                    ];
                }

                // The round input t = X1 ⊕ X2 ⊕ X3 ⊕ rk of round 0; afterwards each round
                // forms the next one's t straight from its parts (X2 ⊕ X3 ⊕ X4 ⊕ rk', with
                // X4 = X0 ⊕ parts), which takes one XOR level off the critical path.
                let mut t = [_mm_setzero_si128(); SETS];
                let k0 = _mm_set1_epi32(rk[0]);
                for (ts, xs) in t.iter_mut().zip(&state) {
                    *ts = _mm_xor_si128(_mm_xor_si128(xs[1], xs[2]), _mm_xor_si128(xs[3], k0));
                }
                for i in 0..32 {
                    let k_next = _mm_set1_epi32(rk[(i + 1) % 32]);
                    for (ts, xs) in t.iter_mut().zip(state.iter_mut()) {
                        let p = parts(*ts);
                        let x4 = _mm_xor_si128(
                            _mm_xor_si128(_mm_xor_si128(xs[0], p[0]), p[1]),
                            _mm_xor_si128(p[2], p[3]),
                        );
                        let early = pin(_mm_xor_si128(
                            _mm_xor_si128(xs[2], xs[3]),
                            _mm_xor_si128(xs[0], k_next),
                        ));
                        let a = pin(_mm_xor_si128(early, p[0]));
                        let b = pin(_mm_xor_si128(a, p[1]));
                        let c = pin(_mm_xor_si128(p[2], p[3]));
                        *ts = _mm_xor_si128(b, c);
                        *xs = [xs[1], xs[2], xs[3], x4];
                    }
                }

                for (s, w) in state.iter().enumerate() {
                    // The ciphertext is (X35, X34, X33, X32).
                    let out = transpose([
                        byte_map(w[3], &M_INV_TABLES),
                        byte_map(w[2], &M_INV_TABLES),
                        byte_map(w[1], &M_INV_TABLES),
                        byte_map(w[0], &M_INV_TABLES),
                    ]);
                    for (lane, reg) in out.into_iter().enumerate() {
                        if let Some(block) = blocks.get_mut(s * LANES + lane) {
                            // SAFETY: `block` is 16 writable bytes; `storeu` has no alignment
                            // requirement.
                            unsafe { _mm_storeu_si128(block.as_mut_ptr().cast(), reg) };
                        }
                    }
                }
            }

            /// The plain SM4 S-box on the four bytes of `word` (outside the M-domain).
            ///
            /// # Safety
            /// The CPU must support the features this module is compiled for.
            #[allow(dead_code)]
            #[target_feature(enable = $features)]
            pub(super) unsafe fn tau_ni(word: u32) -> u32 {
                let x = _mm_cvtsi32_si128(i32::from_le_bytes(word.to_be_bytes()));
                let x = _mm_xor_si128(byte_map(x, &M_TABLES), _mm_set1_epi8(C1 as i8));
                let y = _mm_aesenclast_si128(x, _mm_set1_epi8(AES_KEY_BYTE as i8));
                let y = _mm_shuffle_epi8(y, load(&INV_SHIFT_ROWS));
                let s = byte_map(y, &A2_TABLES);
                u32::from_be_bytes(_mm_cvtsi128_si32(s).to_le_bytes())
            }
        }
    };
}

backend!(legacy, "sse2,ssse3,aes");
backend!(vex, "avx,aes");
