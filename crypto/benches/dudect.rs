//! A dudect-style timing check of the SM4 backends (Reparaz, Balasch, Verbauwhede,
//! "Dude, is my code constant time?", DATE 2017).
//!
//! Run: `cargo bench -p warden-crypto --bench dudect` (add `-- --quick` for fewer samples).
//!
//! For each backend, encryptions of two classes of input are timed in random interleaving:
//! class 0 a fixed plaintext (all zeros), class 1 fresh random plaintexts, under one random key.
//! Welch's t-test compares the two timing distributions, on all samples and on samples cropped
//! at several percentiles (as dudect does, to look at the fast, less noisy part). |t| below
//! 4.5 is no evidence of a data-dependent timing; above 10 is a leak. The table-based `sm4`
//! crate is measured as a reference (its leak is through the cache, which this test, with the
//! table always cached, may well not see). A statistical check like this can only fail to find
//! a leak; the backends are constant-time by construction (no secret-dependent branch or
//! address), which is the actual argument. On a shared virtual machine the cropped statistics
//! swing in both directions from run to run (the reference's too): read several runs, and trust
//! a leak only if it shows with the same sign every time.

use std::hint::black_box;
use std::time::Instant;

use cipher::{BlockCipherEncrypt, KeyInit};
use warden_crypto::sm4::{Sm4, Sm4Backend};

/// Encryptions per timed sample (to rise well above the timer's resolution).
const PER_SAMPLE: usize = 32;

struct Welch {
    n: [f64; 2],
    mean: [f64; 2],
    m2: [f64; 2],
}

impl Welch {
    fn new() -> Self {
        Welch {
            n: [0.0; 2],
            mean: [0.0; 2],
            m2: [0.0; 2],
        }
    }

    fn push(&mut self, class: usize, x: f64) {
        self.n[class] += 1.0;
        let d = x - self.mean[class];
        self.mean[class] += d / self.n[class];
        self.m2[class] += d * (x - self.mean[class]);
    }

    fn t(&self) -> f64 {
        let var = |c: usize| self.m2[c] / (self.n[c] - 1.0);
        (self.mean[0] - self.mean[1]) / (var(0) / self.n[0] + var(1) / self.n[1]).sqrt()
    }
}

/// xorshift64*: the class sequence and the random plaintexts (test data, not secrets).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn check(name: &str, samples: usize, mut encrypt: impl FnMut(&mut [[u8; 16]; PER_SAMPLE])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut times = Vec::with_capacity(samples);
    // One buffer for both classes: the class must not change where the data lives (a second
    // buffer can sit differently in the cache and alias with the stack, which shows up as a
    // "leak" that flips sign with the address layout).
    let mut buf = [[0u8; 16]; PER_SAMPLE];
    // Warm up.
    for _ in 0..samples / 10 {
        encrypt(&mut buf);
    }
    for _ in 0..samples {
        let class = (rng.next() & 1) as usize;
        for b in buf.iter_mut() {
            if class == 1 {
                b[..8].copy_from_slice(&rng.next().to_le_bytes());
                b[8..].copy_from_slice(&rng.next().to_le_bytes());
            } else {
                // Same work as class 1, fixed result.
                let _ = black_box(rng.next() ^ rng.next());
                *b = [0u8; 16];
            }
        }
        let t = Instant::now();
        encrypt(black_box(&mut buf));
        times.push((class, t.elapsed().as_nanos() as f64));
    }
    let mut sorted: Vec<f64> = times.iter().map(|&(_, t)| t).collect();
    sorted.sort_by(f64::total_cmp);
    let mut worst: f64 = 0.0;
    let mut cells = Vec::new();
    for pct in [100.0, 90.0, 75.0, 50.0] {
        let cut = sorted[((sorted.len() - 1) as f64 * pct / 100.0) as usize];
        let mut w = Welch::new();
        for &(class, t) in &times {
            if t <= cut {
                w.push(class, t);
            }
        }
        let t = w.t();
        worst = worst.max(t.abs());
        cells.push(format!("{t:+.2}"));
    }
    let verdict = if worst < 4.5 {
        "no evidence of a leak"
    } else if worst < 10.0 {
        "inconclusive (rerun on a quiet machine)"
    } else {
        "**timing depends on the data**"
    };
    let mut all = Welch::new();
    for &(class, t) in &times {
        all.push(class, t);
    }
    println!(
        "| {name} | {samples} | {} | {:.1} / {:.1} | {verdict} |",
        cells.join(" | "),
        all.mean[0],
        all.mean[1]
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let samples = if quick { 100_000 } else { 1_000_000 };
    let key: [u8; 16] = {
        let mut k = [0u8; 16];
        getrandom::fill(&mut k).expect("OS randomness");
        k
    };
    println!(
        "# dudect-style timing check: fixed vs random plaintext, {PER_SAMPLE} blocks per sample\n"
    );
    println!(
        "| implementation | samples | t (all) | t (≤p90) | t (≤p75) | t (≤p50) | mean ns fixed / random | verdict |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for backend in Sm4Backend::ALL.into_iter().filter(|b| b.is_available()) {
        let c = Sm4::with_backend(&key, backend).unwrap();
        let n = if backend == Sm4Backend::Portable {
            samples / 10
        } else {
            samples
        };
        check(&format!("Warden SM4, {backend}"), n, |b| {
            c.encrypt_blocks_in_place(b)
        });
    }
    let reference = sm4::Sm4::new(&key.into());
    check("sm4 crate (table S-box, reference)", samples, |b| {
        for block in b.iter_mut() {
            let mut x = (*block).into();
            reference.encrypt_block(&mut x);
            *block = x.into();
        }
    });
}
