//! The arithmetic of the report: medians of repeated runs and latency percentiles.
//!
//! Percentiles use the nearest-rank definition on the sorted samples (the value below which
//! `p` percent of the samples fall, never an interpolation between two of them), so every
//! reported latency is one a transaction really had.

/// Latency percentiles of a set of per-transaction measurements, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    /// Samples they were computed from.
    pub samples: usize,
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending); `None` if empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps binary rounding (0.999 × 1000 = 999.0000000000001) from moving the rank.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and p99.9 of `samples` (microseconds); `None` if there are none.
pub fn percentiles(mut samples: Vec<u64>) -> Option<Percentiles> {
    samples.sort_unstable();
    Some(Percentiles {
        p50: percentile(&samples, 50.0)? as f64,
        p99: percentile(&samples, 99.0)? as f64,
        p999: percentile(&samples, 99.9)? as f64,
        samples: samples.len(),
    })
}

/// The median (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `a / b`, or `None` when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), Some(500));
        assert_eq!(percentile(&v, 99.0), Some(990));
        assert_eq!(percentile(&v, 99.9), Some(999));
        assert_eq!(percentile(&v, 100.0), Some(1000));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // Ten samples: p99 and p99.9 are the largest; p50 is the fifth.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 50.0), Some(5));
        assert_eq!(percentile(&ten, 99.0), Some(10));
    }

    #[test]
    fn percentiles_sort_their_input() {
        let p = percentiles(vec![5, 1, 4, 2, 3]).unwrap();
        assert_eq!((p.p50, p.p99, p.p999, p.samples), (3.0, 5.0, 5.0, 5));
        assert!(percentiles(Vec::new()).is_none());
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
        assert_eq!(ratio(1.0, 2.0), Some(0.5));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
