//! Counter-mode keystream for many values at once.
//!
//! A short column value needs one or two counter blocks, far fewer than the 8 or 16 blocks an
//! SM4 backend encrypts in one pass for the price of one. When the proxy decrypts a column of a
//! result set, the counter blocks of consecutive values are packed into the same passes, so
//! the per-value cost drops to a fraction of the single-value latency.

use crate::block::BlockCipher128;

/// Widest pass of any [`BlockCipher128`].
pub(crate) const MAX_PASS: usize = 16;

/// One value's share of a multi-value keystream.
pub(crate) struct CtrJob<'a> {
    /// The first counter block. Later blocks increment its last 32 bits (mod 2^32).
    pub(crate) first: [u8; 16],
    /// The data the keystream is XORed into.
    pub(crate) data: &'a mut [u8],
}

/// XORs keystream blocks into `data`: whole 16-byte words for full blocks (so that the next
/// reader of the data gets its bytes forwarded from one store), bytes for the tail.
#[inline]
pub(crate) fn xor_blocks(data: &mut [u8], keystream: &[[u8; 16]]) {
    let (full, tail) = data.as_chunks_mut::<16>();
    for (chunk, ks) in full.iter_mut().zip(keystream) {
        *chunk = (u128::from_ne_bytes(*chunk) ^ u128::from_ne_bytes(*ks)).to_ne_bytes();
    }
    if let Some(ks) = keystream.get(full.len()) {
        for (d, k) in tail.iter_mut().zip(ks) {
            *d ^= k;
        }
    }
}

/// `counter + i` with the last 32 bits incremented modulo 2^32 (SP 800-38D inc32).
#[inline]
pub(crate) fn nth_counter(first: &[u8; 16], i: u32) -> [u8; 16] {
    let mut block = *first;
    let c = u32::from_be_bytes([first[12], first[13], first[14], first[15]]).wrapping_add(i);
    block[12..].copy_from_slice(&c.to_be_bytes());
    block
}

/// XORs each job's keystream into its data. With `masks`, the first keystream block of job
/// `i` is written to `masks[i]` instead of being used (GCM's `E(J0)`), and the data takes the
/// blocks after it.
pub(crate) fn ctr_many<C: BlockCipher128>(
    cipher: &C,
    jobs: &mut [CtrJob<'_>],
    mut masks: Option<&mut [[u8; 16]]>,
) {
    let width = cipher.parallel_blocks().clamp(1, MAX_PASS);
    let skip = usize::from(masks.is_some());
    let mut blocks = [[0u8; 16]; MAX_PASS];
    // (job, block index within the job) of each filled slot.
    let mut slots = [(0usize, 0usize); MAX_PASS];
    let mut n = 0;
    for j in 0..jobs.len() {
        let count = skip + jobs[j].data.len().div_ceil(16);
        for b in 0..count {
            blocks[n] = nth_counter(&jobs[j].first, b as u32);
            slots[n] = (j, b);
            n += 1;
            if n == width {
                flush(
                    cipher,
                    jobs,
                    &mut masks,
                    skip,
                    &mut blocks[..n],
                    &slots[..n],
                );
                n = 0;
            }
        }
    }
    if n > 0 {
        flush(
            cipher,
            jobs,
            &mut masks,
            skip,
            &mut blocks[..n],
            &slots[..n],
        );
    }
}

fn flush<C: BlockCipher128>(
    cipher: &C,
    jobs: &mut [CtrJob<'_>],
    masks: &mut Option<&mut [[u8; 16]]>,
    skip: usize,
    blocks: &mut [[u8; 16]],
    slots: &[(usize, usize)],
) {
    cipher.encrypt_batch(blocks);
    for (ks, &(j, b)) in blocks.iter().zip(slots) {
        if b < skip {
            if let Some(m) = masks.as_deref_mut() {
                m[j] = *ks;
            }
            continue;
        }
        let start = (b - skip) * 16;
        xor_blocks(&mut jobs[j].data[start..], core::slice::from_ref(ks));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sm4::{Sm4, Sm4Backend};

    /// Many jobs of assorted lengths give exactly what one-at-a-time CTR gives.
    #[test]
    fn matches_one_value_at_a_time() {
        for backend in Sm4Backend::ALL.into_iter().filter(|b| b.is_available()) {
            let c = Sm4::with_backend(&[3u8; 16], backend).unwrap();
            let lens = [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 250, 7, 0, 64];
            let mut bufs: Vec<Vec<u8>> = lens
                .iter()
                .map(|&l| (0..l).map(|i| i as u8).collect())
                .collect();
            let expect: Vec<(Vec<u8>, [u8; 16])> = lens
                .iter()
                .enumerate()
                .map(|(j, &l)| {
                    let first = [j as u8 ^ 0xf0; 16];
                    let mut mask = [first];
                    c.encrypt_blocks_in_place(&mut mask);
                    let mut data: Vec<u8> = (0..l).map(|i| i as u8).collect();
                    for (b, chunk) in data.chunks_mut(16).enumerate() {
                        let mut k = [nth_counter(&first, b as u32 + 1)];
                        c.encrypt_blocks_in_place(&mut k);
                        chunk.iter_mut().zip(k[0]).for_each(|(d, k)| *d ^= k);
                    }
                    (data, mask[0])
                })
                .collect();
            let mut masks = vec![[0u8; 16]; lens.len()];
            let mut jobs: Vec<CtrJob<'_>> = bufs
                .iter_mut()
                .enumerate()
                .map(|(j, d)| CtrJob {
                    first: [j as u8 ^ 0xf0; 16],
                    data: d,
                })
                .collect();
            ctr_many(&c, &mut jobs, Some(&mut masks));
            for (j, (data, mask)) in expect.iter().enumerate() {
                assert_eq!(&bufs[j], data, "{backend} job {j}");
                assert_eq!(&masks[j], mask, "{backend} job {j}");
            }
        }
    }

    #[test]
    fn counter_wraps_in_the_last_32_bits() {
        let mut first = [0xffu8; 16];
        first[11] = 7;
        let next = nth_counter(&first, 1);
        assert_eq!(next[12..], [0, 0, 0, 0]);
        assert_eq!(next[11], 7);
    }
}
