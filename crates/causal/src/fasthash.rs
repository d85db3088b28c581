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
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
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

/// A hash map for lookups only (see the module comment).
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
