//! Sampling the hypergeometric distribution from PRF coins, deterministically on every platform.
//!
//! The order-preserving scheme asks, at each node: of the `M` plaintexts left, how many map
//! into the lower half of a range of `N = 2^b` ciphertexts? For a uniformly random
//! order-preserving function the answer is hypergeometric: `x ~ HGD(N, M, N/2)`, with support
//! `[max(0, M − N/2), min(M, N/2)]`, mean `M/2` (the distribution is symmetric because exactly
//! half the range is drawn) and variance `M(N−M) / (4(N−1))`.
//!
//! - When the standard deviation is below [`EXACT_BELOW_SIGMA`], the sample is exact: inverse
//!   transform over the probability mass function, built from the mode outward with the ratio
//!   `P(x+1)/P(x) = (M−x)(N/2−x) / ((x+1)(N/2−M+x+1))` and truncated where the weights fall
//!   below 10⁻¹⁸ of the mode's.
//! - Above it, the sample is the normal approximation with continuity correction (the
//!   de Moivre–Laplace regime: M in the hundreds or more, so the error in total variation is
//!   of order 10⁻³ or less, and far smaller near the top of the tree where M is about 2^64).
//!
//! Any sample inside the support keeps the function order-preserving and invertible; the
//! approximation only affects how closely the keyed function resembles a uniformly random
//! order-preserving one.
//!
//! Determinism matters more than anything here: a different result on another machine would
//! make ciphertexts undecryptable there. Only IEEE-754 basic operations (`+ − × ÷ √`, exactly
//! rounded everywhere, and Rust never fuses them) are used; the logarithm and the inverse
//! normal CDF are computed in this file rather than taken from the platform's libm.

/// Standard deviation below which the exact sampler runs.
pub(crate) const EXACT_BELOW_SIGMA: f64 = 8.0;

/// Weight cut-off of the exact sampler, relative to the mode.
const NEGLIGIBLE: f64 = 1e-18;

/// A uniform double in (0, 1), never 0 or 1 exactly, from the top 52 bits of the coins:
/// `(k + ½) / 2^52` is exactly representable for every `k < 2^52`.
fn uniform(coins: u128) -> f64 {
    ((coins >> 76) as f64 + 0.5) / 4_503_599_627_370_496.0 // 2^52
}

/// `2^b` as a double, exactly.
fn pow2(b: u32) -> f64 {
    f64::from_bits(u64::from(1023 + b) << 52)
}

/// The number of the `m` remaining plaintexts that fall into the lower half of a range of
/// `2^range_bits` ciphertexts (`range_bits ≥ 1`, `m ≤ 2^range_bits`).
pub(crate) fn sample_lower_half(coins: u128, m: u128, range_bits: u32) -> u128 {
    debug_assert!((1..=128).contains(&range_bits));
    let half: u128 = 1u128 << (range_bits - 1);
    let lo = m.saturating_sub(half);
    let hi = m.min(half);
    if lo == hi {
        return lo;
    }
    let n_total = pow2(range_bits);
    let mf = m as f64;
    let variance = mf * (n_total - mf) / (4.0 * (n_total - 1.0));
    if variance < EXACT_BELOW_SIGMA * EXACT_BELOW_SIGMA {
        exact(coins, m, half, n_total, lo, hi)
    } else {
        normal(coins, m, variance.sqrt(), lo, hi)
    }
}

/// Normal approximation, rounded and clamped to the support.
fn normal(coins: u128, m: u128, sigma: f64, lo: u128, hi: u128) -> u128 {
    let z = inverse_normal_cdf(uniform(coins));
    // x = round(M/2 + σz), with the integer part of M/2 kept exact.
    let offset = sigma * z + if m % 2 == 1 { 1.0 } else { 0.5 };
    let offset = floor(offset);
    let center = (m / 2) as i128;
    // |σz| < 9·2^32, so the offset fits comfortably.
    let x = (center + offset as i128).max(0) as u128;
    x.clamp(lo, hi)
}

/// `⌊v⌋` for |v| < 2^62, with basic operations only.
fn floor(v: f64) -> f64 {
    let t = v as i64 as f64; // truncation toward zero, exact for this range
    if t > v { t - 1.0 } else { t }
}

/// Exact inverse-transform sampling over the truncated mass function.
fn exact(coins: u128, m: u128, half: u128, n_total: f64, lo: u128, hi: u128) -> u128 {
    // σ < 8, so the mass beyond about 10σ of the mode is below the cut-off: 192 slots suffice.
    const SLOTS: usize = 192;
    let mf = m as f64;
    let nf = half as f64; // draws = N/2
    let other = n_total - mf; // N − M
    // P(x+1)/P(x)
    let ratio = |x: f64| (mf - x) * (nf - x) / ((x + 1.0) * (other - nf + x + 1.0));

    let center = (m / 2).clamp(lo, hi);
    let mut weights = [0f64; SLOTS];
    let mid = SLOTS / 2;
    weights[mid] = 1.0;
    // Upward from the centre.
    let mut top = mid;
    let mut w = 1.0;
    let mut x = center;
    while x < hi && top + 1 < SLOTS {
        w *= ratio(x as f64);
        if w < NEGLIGIBLE {
            break;
        }
        top += 1;
        weights[top] = w;
        x += 1;
    }
    // Downward.
    let mut bottom = mid;
    let mut w = 1.0;
    let mut x = center;
    while x > lo && bottom > 0 {
        w /= ratio((x - 1) as f64);
        if w < NEGLIGIBLE {
            break;
        }
        bottom -= 1;
        weights[bottom] = w;
        x -= 1;
    }
    let total: f64 = weights[bottom..=top].iter().sum();
    let target = uniform(coins) * total;
    let mut acc = 0.0;
    for (i, w) in weights[bottom..=top].iter().enumerate() {
        acc += w;
        if target < acc {
            return center + i as u128 - (mid - bottom) as u128;
        }
    }
    center + (top - mid) as u128
}

/// Natural logarithm for `x > 0`, from basic operations only (|error| ≲ 1e-16).
pub(crate) fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    const LN2: f64 = core::f64::consts::LN_2;
    const SQRT2: f64 = core::f64::consts::SQRT_2;
    let mut x = x;
    let mut e = 0i32;
    // Normalise subnormals, then split x = m · 2^e with m in [1, 2).
    if x < f64::MIN_POSITIVE {
        x *= pow2(54);
        e -= 54;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > SQRT2 {
        m /= 2.0;
        e += 1;
    }
    // ln m = 2 atanh(s), s = (m − 1)/(m + 1), |s| < 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    for _ in 0..12 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    f64::from(e) * LN2 + 2.0 * sum
}

/// Φ⁻¹(p) for p in (0, 1): P. J. Acklam's rational approximation (relative error < 1.2e-9),
/// which is plenty for a sampler.
pub(crate) fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.024_25;
    let tail = |p: f64| {
        let q = (-2.0 * ln(p)).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail(p)
    } else if p > 1.0 - P_LOW {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_std_closely() {
        let mut x = 1e-300;
        while x < 1e300 {
            let (ours, std) = (ln(x), x.ln());
            assert!(
                (ours - std).abs() <= 4e-16 * std.abs().max(1.0),
                "ln({x}): {ours} vs {std}"
            );
            x *= 1.37;
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn inverse_normal_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.841_344_746_068_542_9, 1.0),
            (0.001, -3.090_232_306_167_813_5),
            (1e-10, -6.361_340_902_404_056),
            (0.999_999, 4.753_424_308_822_899),
        ] {
            let got = inverse_normal_cdf(p);
            assert!(
                (got - z).abs() < 1e-8 * z.abs().max(1.0),
                "Φ⁻¹({p}) = {got}, want {z}"
            );
        }
    }

    #[test]
    fn samples_stay_in_the_support() {
        for range_bits in [1u32, 2, 3, 8, 40, 64, 127, 128] {
            let max_m: u128 = if range_bits == 128 {
                u128::MAX
            } else {
                1u128 << range_bits
            };
            for m in [1u128, 2, 3, 7, 64, 255, 1000, 1 << 40, 1 << 63, 1 << 64] {
                if m > max_m {
                    continue;
                }
                let half = 1u128 << (range_bits - 1);
                for coins in [
                    0u128,
                    1,
                    u128::MAX,
                    0x8000_0000_0000_0000_0000_0000_0000_0000,
                    0x1234_5678_9abc_def0_1234_5678_9abc_def0,
                ] {
                    let x = sample_lower_half(coins, m, range_bits);
                    assert!(
                        x >= m.saturating_sub(half) && x <= m.min(half),
                        "m={m} b={range_bits} x={x}"
                    );
                }
            }
        }
    }

    /// The exact sampler's empirical distribution against the hypergeometric mean and variance.
    #[test]
    fn exact_sampler_moments() {
        // M = 40 in a range of 2^20: close to Binomial(40, 1/2): mean 20, variance ≈ 10.
        let (m, bits) = (40u128, 20u32);
        let n = 20_000;
        let mut sum = 0f64;
        let mut sq = 0f64;
        let mut state = 0x0123_4567_89ab_cdefu128;
        for _ in 0..n {
            state = state
                .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
                .wrapping_add(0x5851_f42d_4c95_7f2d);
            let x = sample_lower_half(state, m, bits) as f64;
            sum += x;
            sq += x * x;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!((mean - 20.0).abs() < 0.1, "mean {mean}");
        assert!((var - 10.0).abs() < 0.6, "variance {var}");
    }

    /// The normal branch: M = 10^6 in a range of 2^60.
    #[test]
    fn normal_sampler_moments() {
        let (m, bits) = (1_000_000u128, 60u32);
        let n = 20_000;
        let mut sum = 0f64;
        let mut sq = 0f64;
        let mut state = 0xfeed_u128;
        for _ in 0..n {
            state = state
                .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
                .wrapping_add(0x5851_f42d_4c95_7f2d);
            let x = sample_lower_half(state, m, bits) as f64;
            sum += x;
            sq += x * x;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!((mean - 500_000.0).abs() < 25.0, "mean {mean}");
        assert!((var / 250_000.0 - 1.0).abs() < 0.05, "variance {var}");
    }
}
