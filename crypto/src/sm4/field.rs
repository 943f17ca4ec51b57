//! The algebra behind both constant-time SM4 S-box implementations, evaluated at compile time.
//!
//! The SM4 S-box is an inversion in GF(2^8) wrapped in two copies of one affine map
//! (GB/T 32907 does not say so, but the structure is well known and the tests prove it against
//! the published table):
//!
//! ```text
//! S(x) = A · inv(A · x ⊕ 0xD3) ⊕ 0xD3,   inv in GF(2^8) mod x^8+x^7+x^6+x^5+x^4+x^2+1 (0x1F5)
//! ```
//!
//! where row `i` of the 8×8 bit matrix `A` is `0xA7` rotated left by `i`. The portable backend
//! evaluates exactly this with a bitsliced inversion.
//!
//! The AES-NI backend uses the AES S-box instead. The AES field (mod 0x11B) and the SM4 field
//! are isomorphic: mapping `x ↦ β` for a root `β` of 0x1F5 in the AES field gives a linear
//! bijection `T` with `T(inv_sm4(a)) = inv_aes(T(a))`. Since `S_aes(z) = A_aes · inv_aes(z) ⊕ 0x63`:
//!
//! ```text
//! S(x) = A2 · S_aes(M · x ⊕ c1) ⊕ c2,   M = T·A, c1 = T·0xD3,
//!                                        A2 = A·T⁻¹·A_aes⁻¹, c2 = A2·0x63 ⊕ 0xD3
//! ```
//!
//! Everything here is a `const fn` over 8×8 bit matrices stored as their eight columns
//! (`m[j]` is the image of bit `j`), so no table in the binary is typed in by hand: the tests in
//! this module check the derivation against the S-box table of the standard for all 256 inputs.

/// The SM4 field polynomial x^8+x^7+x^6+x^5+x^4+x^2+1.
pub(crate) const SM4_POLY: u16 = 0x1F5;
/// The AES field polynomial x^8+x^4+x^3+x+1.
pub(crate) const AES_POLY: u16 = 0x11B;
/// The additive constant of the SM4 S-box's affine map.
pub(crate) const SM4_C: u8 = 0xD3;
/// The additive constant of the AES S-box's affine map.
const AES_C: u8 = 0x63;

/// An 8×8 matrix over GF(2), as its columns: `m[j]` is the image of the unit vector `1 << j`.
pub(crate) type BitMatrix = [u8; 8];

/// `m · x`.
pub(crate) const fn apply(m: &BitMatrix, x: u8) -> u8 {
    let mut y = 0;
    let mut j = 0;
    while j < 8 {
        // Branch-free on purpose (this also runs at run time in the key setup paths).
        y ^= m[j] & 0u8.wrapping_sub((x >> j) & 1);
        j += 1;
    }
    y
}

/// `a · b` (apply `b` first).
pub(crate) const fn compose(a: &BitMatrix, b: &BitMatrix) -> BitMatrix {
    let mut m = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        m[j] = apply(a, b[j]);
        j += 1;
    }
    m
}

/// The inverse of an invertible matrix, found by exhaustive search of preimages (256 × 8 steps,
/// compile time only). Fails compilation if `m` is singular.
pub(crate) const fn invert(m: &BitMatrix) -> BitMatrix {
    let mut inv = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        let mut x = 0u16;
        let mut found = false;
        while x < 256 {
            if apply(m, x as u8) == 1 << j {
                inv[j] = x as u8;
                found = true;
                break;
            }
            x += 1;
        }
        assert!(found, "singular matrix");
        j += 1;
    }
    inv
}

/// The matrix of the map whose output bit `i` is the parity of `rows[i] & x`.
const fn from_rows(rows: [u8; 8]) -> BitMatrix {
    let mut m = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        let mut i = 0;
        while i < 8 {
            m[j] |= ((rows[i] >> j) & 1) << i;
            i += 1;
        }
        j += 1;
    }
    m
}

/// Multiplication in GF(2^8) modulo `poly`.
pub(crate) const fn gf_mul(mut a: u8, mut b: u8, poly: u16) -> u8 {
    let mut r = 0u8;
    let mut i = 0;
    while i < 8 {
        r ^= a & 0u8.wrapping_sub(b & 1);
        let carry = a >> 7;
        a = (a << 1) ^ ((poly as u8) & 0u8.wrapping_sub(carry));
        b >>= 1;
        i += 1;
    }
    r
}

/// `a^e` in GF(2^8) modulo `poly`.
pub(crate) const fn gf_pow(a: u8, mut e: u32, poly: u16) -> u8 {
    let mut r = 1u8;
    let mut base = a;
    while e > 0 {
        if e & 1 == 1 {
            r = gf_mul(r, base, poly);
        }
        base = gf_mul(base, base, poly);
        e >>= 1;
    }
    r
}

/// The multiplicative inverse (`inv(0) = 0`), as `a^254`.
#[cfg(test)]
pub(crate) const fn gf_inv(a: u8, poly: u16) -> u8 {
    gf_pow(a, 254, poly)
}

/// The linear part of the SM4 S-box's affine map: row `i` is `0xA7` rotated left by `i`.
pub(crate) const SM4_A: BitMatrix = {
    let mut rows = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        rows[i] = 0xA7u8.rotate_left(i as u32);
        i += 1;
    }
    from_rows(rows)
};

/// The linear part of the AES S-box's affine map: bit `i` is `x_i ⊕ x_{i+4} ⊕ … ⊕ x_{i+7}`.
const AES_A: BitMatrix = {
    let mut rows = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        rows[i] = 0xF1u8.rotate_left(i as u32);
        i += 1;
    }
    from_rows(rows)
};

/// The smallest root of the SM4 field polynomial in the AES field.
const BETA: u8 = {
    let mut b = 2u16;
    let mut root = 0u8;
    while b < 256 {
        let mut acc = 0u8;
        let mut i = 0;
        while i <= 8 {
            if (SM4_POLY >> i) & 1 == 1 {
                acc ^= gf_pow(b as u8, i, AES_POLY);
            }
            i += 1;
        }
        if acc == 0 {
            root = b as u8;
            break;
        }
        b += 1;
    }
    assert!(root != 0, "0x1F5 has a root in GF(2^8)");
    root
};

/// The field isomorphism SM4 field → AES field: `x^j ↦ β^j`.
const ISO: BitMatrix = {
    let mut m = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        m[j] = gf_pow(BETA, j as u32, AES_POLY);
        j += 1;
    }
    m
};

/// Input map of the AES-NI S-box: `S(x) = A2·S_aes(M·x ⊕ C1) ⊕ C2`.
pub(crate) const M: BitMatrix = compose(&ISO, &SM4_A);
/// Inverse of [`M`], to leave the M-domain after the last round.
pub(crate) const M_INV: BitMatrix = invert(&M);
/// Additive constant of the input map.
pub(crate) const C1: u8 = apply(&ISO, SM4_C);
/// Linear part of the output map.
pub(crate) const A2: BitMatrix = compose(&compose(&SM4_A, &invert(&ISO)), &invert(&AES_A));
/// Additive constant of the output map.
pub(crate) const C2: u8 = apply(&A2, AES_C) ^ SM4_C;
/// The map after a bare AES-field inversion: `S(x) = G · inv_aes(M · x ⊕ C1) ⊕ 0xD3`, which is
/// what GFNI's `GF2P8AFFINEINVQB` computes in one instruction.
pub(crate) const G: BitMatrix = compose(&SM4_A, &invert(&ISO));

/// The SM4 S-box through its algebraic definition (compile-time and tests; not constant-time
/// only because of `gf_pow`'s loop on a public exponent, which is fine: the exponent is fixed).
#[cfg(test)]
pub(crate) const fn sbox_algebraic(x: u8) -> u8 {
    apply(&SM4_A, gf_inv(apply(&SM4_A, x) ^ SM4_C, SM4_POLY)) ^ SM4_C
}

/// The AES S-box through its algebraic definition.
#[cfg(test)]
pub(crate) const fn aes_sbox(x: u8) -> u8 {
    apply(&AES_A, gf_inv(x, AES_POLY)) ^ AES_C
}

/// SM4's linear transform L (GB/T 32907 §6.2).
pub(crate) const fn l(b: u32) -> u32 {
    b ^ b.rotate_left(2) ^ b.rotate_left(10) ^ b.rotate_left(18) ^ b.rotate_left(24)
}

/// The key schedule's linear transform L'.
pub(crate) const fn l_prime(b: u32) -> u32 {
    b ^ b.rotate_left(13) ^ b.rotate_left(23)
}

/// The byte-to-byte pieces of `L`: output byte `j` (big-endian index) of `L(w)` is
/// `⊕_k L_PARTS[k] · (byte (j+k) mod 4 of w)`. `L` is a sum of rotations, so it commutes with
/// byte rotations and the pieces do not depend on `j` (a test checks all `j`).
pub(crate) const L_PARTS: [BitMatrix; 4] = {
    let mut parts = [[0u8; 8]; 4];
    let mut k = 0;
    while k < 4 {
        let mut bit = 0;
        while bit < 8 {
            // A word whose only non-zero byte is byte k (big-endian index), holding 1 << bit.
            let w = (1u32 << bit) << (8 * (3 - k));
            parts[k][bit] = (l(w) >> 24) as u8;
            bit += 1;
        }
        k += 1;
    }
    parts
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The S-box of GB/T 32907-2016, Table 1 (the standard's own table, used only to check).
    pub(crate) const STANDARD_SBOX: [u8; 256] = [
        0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c,
        0x05, 0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86,
        0x06, 0x99, 0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed,
        0xcf, 0xac, 0x62, 0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa,
        0x75, 0x8f, 0x3f, 0xa6, 0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c,
        0x19, 0xe6, 0x85, 0x4f, 0xa8, 0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb,
        0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35, 0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25,
        0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87, 0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52,
        0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e, 0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38,
        0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1, 0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34,
        0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3, 0x1d, 0xf6, 0xe2, 0x2e, 0x82,
        0x66, 0xca, 0x60, 0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f, 0xd5, 0xdb, 0x37, 0x45,
        0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51, 0x8d, 0x1b, 0xaf,
        0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8, 0x0a, 0xc1,
        0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0, 0x89,
        0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
        0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39,
        0x48,
    ];

    #[test]
    fn algebraic_sbox_matches_the_standard_table() {
        for x in 0..=255u8 {
            assert_eq!(sbox_algebraic(x), STANDARD_SBOX[x as usize], "S({x:#04x})");
        }
    }

    #[test]
    fn aes_sbox_is_the_aes_sbox() {
        // FIPS-197 Figure 7 spot checks.
        assert_eq!(aes_sbox(0x00), 0x63);
        assert_eq!(aes_sbox(0x01), 0x7c);
        assert_eq!(aes_sbox(0x53), 0xed);
        assert_eq!(aes_sbox(0xff), 0x16);
    }

    #[test]
    fn isomorphism_carries_inversion() {
        for a in 0..=255u8 {
            assert_eq!(
                apply(&ISO, gf_inv(a, SM4_POLY)),
                gf_inv(apply(&ISO, a), AES_POLY)
            );
        }
    }

    /// The composition the AES-NI backend relies on, for all 256 inputs.
    #[test]
    fn sm4_sbox_is_affine_conjugate_of_aes_sbox() {
        for x in 0..=255u8 {
            let via_aes = apply(&A2, aes_sbox(apply(&M, x) ^ C1)) ^ C2;
            assert_eq!(via_aes, STANDARD_SBOX[x as usize], "S({x:#04x})");
        }
    }

    #[test]
    fn sbox_is_an_affine_map_of_an_aes_field_inversion() {
        for x in 0..=255u8 {
            let s = apply(&G, gf_inv(apply(&M, x) ^ C1, AES_POLY)) ^ SM4_C;
            assert_eq!(s, STANDARD_SBOX[x as usize], "S({x:#04x})");
        }
    }

    #[test]
    fn l_decomposes_into_byte_pieces_for_every_output_byte() {
        for word in [
            0x0123_4567u32,
            0xdead_beef,
            0x8000_0001,
            0xffff_ffff,
            0x1357_9bdf,
        ] {
            let bytes = word.to_be_bytes();
            let mut out = [0u8; 4];
            for (j, o) in out.iter_mut().enumerate() {
                for (k, part) in L_PARTS.iter().enumerate() {
                    *o ^= apply(part, bytes[(j + k) % 4]);
                }
            }
            assert_eq!(u32::from_be_bytes(out), l(word));
        }
    }

    #[test]
    fn matrix_inverse_and_compose() {
        let id = compose(&M, &M_INV);
        for (j, col) in id.iter().enumerate() {
            assert_eq!(*col, 1 << j);
        }
    }
}
