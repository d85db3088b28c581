//! A fixed, fast hasher for lookup-only maps and sets (`MemStore`'s point index, the simulator's
//! keys to slots, the table of interned actor names). Fixed means no random state: nothing may
//! depend on a hash map's iteration order anyway, and these are only ever looked up, never
//! iterated.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Eight bytes at a time, mixed at the end so every input bit reaches the indexed bits.
#[derive(Clone, Copy, Default)]
pub struct FastHasher(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.mix(tail_word(rest));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's final mix.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The last one to seven bytes as one word, without a variable-length copy (which would be a
/// call to `memcpy` for every short key): two overlapping reads and the length. One to seven
/// bytes map to distinct words (the reads cover every byte), so no tails collide.
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    let (lo, hi) = if n >= 4 {
        let first = u32::from_le_bytes(rest[..4].try_into().expect("four bytes"));
        let last = u32::from_le_bytes(rest[n - 4..].try_into().expect("four bytes"));
        (u64::from(first), u64::from(last))
    } else {
        let first = u64::from(rest[0]) | u64::from(rest[n / 2]) << 8;
        (first, u64::from(rest[n - 1]))
    };
    lo | ((hi << 32) ^ ((n as u64) << 61))
}

/// A hash map for lookups only (see the module comment).
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::tail_word;
    use std::collections::HashMap;

    #[test]
    fn tails_of_one_to_seven_bytes_are_distinct_words() {
        // Every tail over a small alphabet, all lengths: no two share a word.
        let alphabet = [0u8, 1, 0x7f, 0xff];
        let mut seen: HashMap<u64, Vec<u8>> = HashMap::new();
        for n in 1..=7u32 {
            for mut code in 0..alphabet.len().pow(n) {
                let tail: Vec<u8> = (0..n)
                    .map(|_| {
                        let b = alphabet[code % alphabet.len()];
                        code /= alphabet.len();
                        b
                    })
                    .collect();
                if let Some(other) = seen.insert(tail_word(&tail), tail.clone()) {
                    panic!("{tail:?} and {other:?} give one word");
                }
            }
        }
    }
}
