//! Portable, constant-time SM4: a bitsliced implementation for CPUs without AES-NI.
//!
//! Why bitsliced: the usual SM4 code looks the S-box up in a 256-byte table indexed by secret
//! bytes, which leaks the index through the cache. Here the state of up to 16 blocks is kept as
//! bit planes (plane `k` of a word holds bit `k` of every byte of that word, for all blocks at
//! once), and the S-box is computed as a circuit of AND/XOR gates: the affine map of the
//! standard, an inversion in GF(2^8) as `x^254` (four multiplications and seven squarings, see
//! [`super::field`]), and the affine map again. No branch and no memory address depends on a
//! secret. SM4's linear transform `L` becomes plane renumbering and shifts within each
//! 4-bit group. The result is about as fast as the table-based `sm4` crate for full batches of 16
//! blocks and slower for single blocks; it only runs where AES-NI is missing.
//!
//! Layout: in a plane, bit `4·b + j` belongs to block `b` (0..16) and big-endian byte `j` (0..4)
//! of the word.

use super::field::{SM4_A, SM4_C};

/// Blocks processed by one pass.
pub(crate) const PAR_BLOCKS: usize = 16;

/// Eight bit planes of one 32-bit word for 16 blocks.
type Planes = [u64; 8];

const NIBBLE_LOW1: u64 = 0x7777_7777_7777_7777;
const NIBBLE_HIGH1: u64 = 0x8888_8888_8888_8888;
const NIBBLE_LOW2: u64 = 0x3333_3333_3333_3333;
const NIBBLE_HIGH2: u64 = 0xcccc_cccc_cccc_cccc;
const NIBBLE_LOW3: u64 = 0x1111_1111_1111_1111;
const NIBBLE_HIGH3: u64 = 0xeeee_eeee_eeee_eeee;

/// Within every 4-bit group, output bit `j` takes input bit `(j + m) mod 4`: for every word,
/// big-endian byte `j` becomes byte `j + m`, i.e. the word rotated left by `8·m` bits.
#[inline(always)]
fn byte_rotate<const M: u32>(p: u64) -> u64 {
    match M {
        1 => ((p >> 1) & NIBBLE_LOW1) | ((p << 3) & NIBBLE_HIGH1),
        2 => ((p >> 2) & NIBBLE_LOW2) | ((p << 2) & NIBBLE_HIGH2),
        3 => ((p >> 3) & NIBBLE_LOW3) | ((p << 1) & NIBBLE_HIGH3),
        _ => p,
    }
}

/// Bitsliced `A · x ⊕ 0xD3` (the SM4 S-box's affine map). The loops run over public constants.
#[inline(always)]
fn affine(x: &Planes) -> Planes {
    let mut out = [0u64; 8];
    for (i, o) in out.iter_mut().enumerate() {
        for (j, xj) in x.iter().enumerate() {
            if (SM4_A[j] >> i) & 1 == 1 {
                *o ^= *xj;
            }
        }
        if (SM4_C >> i) & 1 == 1 {
            *o = !*o;
        }
    }
    out
}

/// Reduces a product of degree ≤ 14 modulo x^8+x^7+x^6+x^5+x^4+x^2+1.
#[inline(always)]
fn reduce(mut c: [u64; 15]) -> Planes {
    // x^8 = x^7 + x^6 + x^5 + x^4 + x^2 + 1; fold from the top so carries cascade correctly.
    for k in (8..15).rev() {
        let t = c[k];
        for p in [0usize, 2, 4, 5, 6, 7] {
            c[k - 8 + p] ^= t;
        }
    }
    let mut out = [0u64; 8];
    out.copy_from_slice(&c[..8]);
    out
}

#[inline(always)]
fn gf_mul(a: &Planes, b: &Planes) -> Planes {
    let mut c = [0u64; 15];
    for (i, ai) in a.iter().enumerate() {
        for (j, bj) in b.iter().enumerate() {
            c[i + j] ^= ai & bj;
        }
    }
    reduce(c)
}

#[inline(always)]
fn gf_square(a: &Planes) -> Planes {
    // Squaring is linear in characteristic 2: the coefficients just spread to even degrees.
    let mut c = [0u64; 15];
    for (i, ai) in a.iter().enumerate() {
        c[2 * i] = *ai;
    }
    reduce(c)
}

/// `x^254`, which is `x^-1` for `x ≠ 0` and 0 for 0.
#[inline(always)]
fn gf_invert(x: &Planes) -> Planes {
    let x2 = gf_square(x);
    let x3 = gf_mul(&x2, x);
    let x6 = gf_square(&x3);
    let x12 = gf_square(&x6);
    let x15 = gf_mul(&x12, &x3);
    let x14 = gf_mul(&x12, &x2);
    let x30 = gf_square(&x15);
    let x60 = gf_square(&x30);
    let x120 = gf_square(&x60);
    let x240 = gf_square(&x120);
    gf_mul(&x240, &x14)
}

/// The SM4 S-box on every byte slot of the planes.
#[inline(always)]
fn sbox(x: &Planes) -> Planes {
    affine(&gf_invert(&affine(x)))
}

/// SM4's `L` on bitsliced words: `B ⊕ (B<<<2) ⊕ (B<<<10) ⊕ (B<<<18) ⊕ (B<<<24)`, computed as
/// `B ⊕ (B<<<24) ⊕ ((B ⊕ B<<<8 ⊕ B<<<16) <<< 2)`.
#[inline(always)]
fn linear(s: &Planes) -> Planes {
    let mut z = [0u64; 8];
    for k in 0..8 {
        z[k] = s[k] ^ byte_rotate::<1>(s[k]) ^ byte_rotate::<2>(s[k]);
    }
    let mut out = [0u64; 8];
    for k in 0..8 {
        // Rotating a word left by 2 bits: bit k of byte j comes from bit k-2 of byte j, or for
        // k < 2 from bit k+6 of byte j+1.
        let rot2 = if k >= 2 {
            z[k - 2]
        } else {
            byte_rotate::<1>(z[k + 6])
        };
        out[k] = s[k] ^ byte_rotate::<3>(s[k]) ^ rot2;
    }
    out
}

/// Plane masks of a round key: every block sees the same key word.
#[inline(always)]
fn key_planes(rk: u32) -> Planes {
    let bytes = rk.to_be_bytes();
    let mut planes = [0u64; 8];
    for (k, plane) in planes.iter_mut().enumerate() {
        let mut nibble = 0u64;
        for (j, byte) in bytes.iter().enumerate() {
            nibble |= u64::from((byte >> k) & 1) << j;
        }
        *plane = nibble * 0x1111_1111_1111_1111;
    }
    planes
}

/// Transposes an 8×8 bit matrix held in a `u64` (byte `i` is row `i`, bit `j` of it column `j`).
#[inline(always)]
fn transpose8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00aa_00aa_00aa_00aa;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_cccc_0000_cccc;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_f0f0_f0f0;
    x ^= t ^ (t << 28);
    x
}

/// Bitslices word `w` of up to 16 blocks (missing blocks read as zero).
#[inline(always)]
fn load_word(blocks: &[[u8; 16]], w: usize) -> Planes {
    let mut planes = [0u64; 8];
    for pair in 0..PAR_BLOCKS / 2 {
        let mut chunk = [0u8; 8];
        for half in 0..2 {
            if let Some(block) = blocks.get(2 * pair + half) {
                chunk[4 * half..4 * half + 4].copy_from_slice(&block[4 * w..4 * w + 4]);
            }
        }
        let t = transpose8(u64::from_le_bytes(chunk)).to_le_bytes();
        for (k, plane) in planes.iter_mut().enumerate() {
            *plane |= u64::from(t[k]) << (8 * pair);
        }
    }
    planes
}

/// Inverse of [`load_word`]: writes word `w` of each output block.
#[inline(always)]
fn store_word(planes: &Planes, blocks: &mut [[u8; 16]], w: usize) {
    for pair in 0..PAR_BLOCKS / 2 {
        let mut t = [0u8; 8];
        for (k, byte) in t.iter_mut().enumerate() {
            *byte = (planes[k] >> (8 * pair)) as u8;
        }
        let chunk = transpose8(u64::from_le_bytes(t)).to_le_bytes();
        for half in 0..2 {
            if let Some(block) = blocks.get_mut(2 * pair + half) {
                block[4 * w..4 * w + 4].copy_from_slice(&chunk[4 * half..4 * half + 4]);
            }
        }
    }
}

/// Runs the 32 rounds on up to 16 blocks in place, with round keys in the given order
/// (encryption order to encrypt, reversed to decrypt).
pub(crate) fn crypt_blocks(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    debug_assert!(blocks.len() <= PAR_BLOCKS);
    let mut x = [
        load_word(blocks, 0),
        load_word(blocks, 1),
        load_word(blocks, 2),
        load_word(blocks, 3),
    ];
    for &k in rk {
        let key = key_planes(k);
        let mut t = [0u64; 8];
        for p in 0..8 {
            t[p] = x[1][p] ^ x[2][p] ^ x[3][p] ^ key[p];
        }
        let l = linear(&sbox(&t));
        let mut next = [0u64; 8];
        for p in 0..8 {
            next[p] = x[0][p] ^ l[p];
        }
        x = [x[1], x[2], x[3], next];
    }
    // The output is (X35, X34, X33, X32).
    store_word(&x[3], blocks, 0);
    store_word(&x[2], blocks, 1);
    store_word(&x[1], blocks, 2);
    store_word(&x[0], blocks, 3);
}

/// The S-box applied to the four bytes of one word (the key schedule's τ), constant-time.
pub(crate) fn tau(word: u32) -> u32 {
    let bytes = word.to_be_bytes();
    let mut planes = [0u64; 8];
    for (k, plane) in planes.iter_mut().enumerate() {
        for (j, byte) in bytes.iter().enumerate() {
            *plane |= u64::from((byte >> k) & 1) << j;
        }
    }
    let s = sbox(&planes);
    let mut out = [0u8; 4];
    for (j, byte) in out.iter_mut().enumerate() {
        for (k, plane) in s.iter().enumerate() {
            *byte |= (((plane >> j) & 1) as u8) << k;
        }
    }
    u32::from_be_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::super::field::{l, tests::STANDARD_SBOX};
    use super::*;

    #[test]
    fn bitsliced_sbox_matches_the_standard_table() {
        for x in 0..=255u8 {
            let word = u32::from_be_bytes([x, x.wrapping_add(1), x ^ 0x5a, !x]);
            let expect = u32::from_be_bytes(word.to_be_bytes().map(|b| STANDARD_SBOX[b as usize]));
            assert_eq!(tau(word), expect, "tau({word:#010x})");
        }
    }

    #[test]
    fn load_store_round_trip_and_bitsliced_l() {
        let mut blocks = [[0u8; 16]; PAR_BLOCKS];
        for (b, block) in blocks.iter_mut().enumerate() {
            for (i, byte) in block.iter_mut().enumerate() {
                *byte = (b * 37 + i * 11 + 5) as u8;
            }
        }
        let planes = load_word(&blocks, 1);
        let mut out = [[0u8; 16]; PAR_BLOCKS];
        store_word(&planes, &mut out, 1);
        for b in 0..PAR_BLOCKS {
            assert_eq!(out[b][4..8], blocks[b][4..8]);
        }
        let lin = linear(&planes);
        store_word(&lin, &mut out, 2);
        for b in 0..PAR_BLOCKS {
            let w = u32::from_be_bytes(blocks[b][4..8].try_into().unwrap());
            assert_eq!(out[b][8..12], l(w).to_be_bytes());
        }
    }
}
