//! Randomness: nonces from a fast per-thread generator, keys straight from the OS.
//!
//! A `getrandom` system call costs about 375 ns on this project's machines, more than sealing a
//! short value, so nonces come from a per-thread SM4-CTR generator seeded from the OS: the
//! keystream of a random key over distinct counter blocks never repeats a block, so 96-bit
//! nonces drawn from it collide only by chance (about 2^-96 per pair), exactly as OS-random
//! nonces would. Nonces are public, so the generator needs uniqueness, not secrecy; it still
//! reseeds from the OS every 2^20 nonces and whenever the process id changes (a fork).
//!
//! Caveat, documented where it matters: a fork copies up to one refill (20 nonces) of buffered
//! output; a process that forks must not seal in both parent and child before either exec's.
//! Warden never forks. Key material never comes from this generator: [`fill_secret`] reads the
//! OS generator directly.

use std::cell::RefCell;

use zeroize::Zeroize;

use crate::sm4::Sm4;

/// Counter blocks per refill (one pass of the widest SM4 backend).
const REFILL_BLOCKS: usize = 16;
/// Refills before reseeding from the OS.
const RESEED_AFTER: u32 = 1 << 16;

/// The OS random generator failed (it practically never does once the system has booted).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RngError(String);

struct NonceGenerator {
    cipher: Sm4,
    counter: u128,
    buffer: [u8; REFILL_BLOCKS * 16],
    used: usize,
    refills: u32,
    pid: u32,
}

impl NonceGenerator {
    fn seeded() -> Result<Self, RngError> {
        let mut seed = [0u8; 32];
        fill_secret(&mut seed)?;
        let mut key = [0u8; 16];
        key.copy_from_slice(&seed[..16]);
        let counter = u128::from_be_bytes(seed[16..].try_into().expect("16 bytes"));
        seed.zeroize();
        let cipher = Sm4::new_from_key(&key);
        key.zeroize();
        Ok(NonceGenerator {
            cipher,
            counter,
            buffer: [0u8; REFILL_BLOCKS * 16],
            used: REFILL_BLOCKS * 16,
            refills: 0,
            pid: std::process::id(),
        })
    }

    fn refill(&mut self) -> Result<(), RngError> {
        let pid = std::process::id();
        if self.refills >= RESEED_AFTER || pid != self.pid {
            *self = Self::seeded()?;
        }
        let mut blocks = [[0u8; 16]; REFILL_BLOCKS];
        for block in blocks.iter_mut() {
            *block = self.counter.to_be_bytes();
            self.counter = self.counter.wrapping_add(1);
        }
        self.cipher.encrypt_blocks_in_place(&mut blocks);
        for (chunk, block) in self.buffer.chunks_exact_mut(16).zip(&blocks) {
            chunk.copy_from_slice(block);
        }
        self.used = 0;
        self.refills += 1;
        Ok(())
    }

    fn take(&mut self, out: &mut [u8]) -> Result<(), RngError> {
        if self.used + out.len() > self.buffer.len() {
            self.refill()?;
        }
        let end = self.used + out.len();
        out.copy_from_slice(&self.buffer[self.used..end]);
        // Consumed output is wiped so that it cannot be handed out twice.
        self.buffer[self.used..end].zeroize();
        self.used = end;
        Ok(())
    }
}

thread_local! {
    static NONCES: RefCell<Option<NonceGenerator>> = const { RefCell::new(None) };
}

/// A fresh 96-bit nonce.
pub fn nonce12() -> Result<[u8; 12], RngError> {
    let mut out = [0u8; 12];
    NONCES.with(|cell| {
        let mut slot = cell.borrow_mut();
        let generator = match slot.as_mut() {
            Some(g) => g,
            None => slot.insert(NonceGenerator::seeded()?),
        };
        generator.take(&mut out)
    })?;
    Ok(out)
}

/// Fills `out` from the operating system's generator (for keys and seeds).
pub fn fill_secret(out: &mut [u8]) -> Result<(), RngError> {
    getrandom::fill(out).map_err(|e| RngError(e.to_string()))
}

/// `N` random bytes from the operating system's generator.
pub fn secret_bytes<const N: usize>() -> Result<[u8; N], RngError> {
    let mut out = [0u8; N];
    fill_secret(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn nonces_do_not_repeat_across_refills_and_threads() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(nonce12().unwrap()));
        }
        let other: Vec<[u8; 12]> =
            std::thread::spawn(|| (0..1000).map(|_| nonce12().unwrap()).collect())
                .join()
                .unwrap();
        for n in other {
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn nonce_bytes_look_uniform() {
        // Each bit of 4,000 nonces is set about half the time.
        let mut ones = [0u32; 96];
        let n = 4000;
        for _ in 0..n {
            let nonce = nonce12().unwrap();
            for (i, count) in ones.iter_mut().enumerate() {
                *count += u32::from((nonce[i / 8] >> (i % 8)) & 1);
            }
        }
        for count in ones {
            // 6 standard deviations of a binomial(4000, 1/2) is about 190.
            assert!(
                (1810..=2190).contains(&count),
                "bit set {count} times of {n}"
            );
        }
    }

    #[test]
    fn secret_bytes_differ() {
        assert_ne!(secret_bytes::<32>().unwrap(), secret_bytes::<32>().unwrap());
    }
}
