//! Deterministic content: record fields and the padding of a virtual `.edb`,
//! generated from a seed and a position, in O(1) memory.

use crate::core::mix::mix64;
use crate::core::outbuf::OutByte;

/// The eight per-word constants of a 64-byte block (see [`word`]).
const LANES: [u64; 8] = {
    let mut l = [0u64; 8];
    let mut j = 0;
    while j < 8 {
        l[j] = (j as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
        j += 1;
    }
    l
};

/// The 8-byte word `index` of the padding stream for `seed`.
///
/// One mixed key per 64-byte block, spread over its eight words with a cheap
/// odd-multiplier step, so filling runs near memory speed and every byte still
/// depends on the seed and its absolute position.
#[inline(always)]
fn word(seed: u64, index: u64) -> u64 {
    let key = mix64(seed ^ (index >> 3).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    key ^ ((index & 7) + 1).wrapping_mul(0xA076_1D64_78BD_642F)
}

/// Fills `buf` with the padding bytes at absolute offsets `offset..offset+buf.len()`.
/// `buf` may be uninitialised (`[MaybeUninit<u8>]`): it is only written.
pub fn fill<B: OutByte>(seed: u64, offset: u64, buf: &mut [B]) {
    let mut pos = offset;
    let mut out = &mut buf[..];
    // Leading partial word.
    let lead = ((8 - (pos % 8)) % 8) as usize;
    if lead > 0 {
        let n = lead.min(out.len());
        let w = word(seed, pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        B::copy(&mut out[..n], &w[start..start + n]);
        pos += n as u64;
        out = &mut out[n..];
    }
    let mut idx = pos / 8;
    // Words up to the next 64-byte block boundary.
    while idx % 8 != 0 && out.len() >= 8 {
        B::copy_array(&mut out[..8], word(seed, idx).to_le_bytes());
        out = &mut out[8..];
        idx += 1;
    }
    // Whole blocks: one mix64 per block, its eight words are key ^ LANES[j].
    let mut blocks = out.chunks_exact_mut(64);
    for blk in &mut blocks {
        let key = mix64(seed ^ (idx >> 3).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let mut tmp = [0u8; 64];
        for (j, w) in tmp.chunks_exact_mut(8).enumerate() {
            w.copy_from_slice(&(key ^ LANES[j]).to_le_bytes());
        }
        B::copy_array(blk, tmp);
        idx += 8;
    }
    let mut chunks = blocks.into_remainder().chunks_exact_mut(8);
    for c in &mut chunks {
        B::copy_array(c, word(seed, idx).to_le_bytes());
        idx += 1;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let w = word(seed, idx).to_le_bytes();
        let n = tail.len();
        B::copy(tail, &w[..n]);
    }
}

/// Checks `buf` against the padding at `offset`; returns the first differing absolute offset.
pub fn verify(seed: u64, offset: u64, buf: &[u8]) -> Option<u64> {
    let mut expect = [0u8; 4096];
    let mut done = 0usize;
    while done < buf.len() {
        let n = (buf.len() - done).min(expect.len());
        fill(seed, offset + done as u64, &mut expect[..n]);
        if expect[..n] != buf[done..done + n] {
            let i = expect[..n]
                .iter()
                .zip(&buf[done..done + n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Some(offset + (done + i) as u64);
        }
        done += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_gives_the_same_bytes() {
        let mut whole = vec![0u8; 1000];
        fill(7, 13, &mut whole);
        for cut in [0usize, 1, 3, 8, 9, 500, 999] {
            let mut a = vec![0u8; cut];
            let mut b = vec![0u8; 1000 - cut];
            fill(7, 13, &mut a);
            fill(7, 13 + cut as u64, &mut b);
            a.extend(b);
            assert_eq!(a, whole, "cut at {cut}");
        }
        assert_eq!(verify(7, 13, &whole), None);
        whole[321] ^= 1;
        assert_eq!(verify(7, 13, &whole), Some(13 + 321));
    }

    #[test]
    fn seed_and_position_matter() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        fill(1, 0, &mut a);
        fill(2, 0, &mut b);
        assert_ne!(a, b);
        fill(1, 64, &mut b);
        assert_ne!(a, b);
    }
}

#[cfg(test)]
mod block_equivalence {
    #[test]
    fn block_fill_matches_word_definition() {
        for seed in [0u64, 1, 0xEDB, u64::MAX] {
            for off in [
                0u64,
                1,
                7,
                8,
                9,
                56,
                63,
                64,
                65,
                100,
                1 << 40,
                u64::MAX - 10_000,
            ] {
                for len in [
                    0usize, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 200, 4999, 5000,
                ] {
                    let mut a = vec![0u8; len];
                    super::fill(seed, off, &mut a);
                    let r: Vec<u8> = (0..len as u64)
                        .map(|i| {
                            let p = off + i;
                            super::word(seed, p / 8).to_le_bytes()[(p % 8) as usize]
                        })
                        .collect();
                    assert_eq!(a, r, "seed {seed} off {off} len {len}");
                }
            }
        }
    }
}
