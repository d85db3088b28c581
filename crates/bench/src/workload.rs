//! What each request does: YCSB's core workloads (A: 50 % reads, 50 % updates; B: 95 % reads;
//! C: reads only) and `w` (writes only), over keys chosen uniformly or zipfian, named
//! `key:NNNNNNNNNNNN` like redis-benchmark's keys so both tools send the same bytes.

use std::sync::Arc;

use crate::rng::Rng;
use crate::zipf::Zipf;

/// Keys a run may address at most: their names are 12 digits.
pub const KEYS_MAX: u64 = 1_000_000_000_000;
/// Digits of a key's number (zero-padded).
const KEY_DIGITS: usize = 12;
/// Bytes of every key's name: `key:` and the digits.
pub const KEY_BYTES: usize = 4 + KEY_DIGITS;

/// A YCSB core workload, or writes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// YCSB A: 50 % reads, 50 % updates.
    A,
    /// YCSB B: 95 % reads, 5 % updates.
    B,
    /// YCSB C: reads only.
    C,
    /// Writes only (redis-benchmark's SET test).
    W,
}

impl Workload {
    /// Reads in every 100 operations.
    pub fn read_percent(self) -> u64 {
        match self {
            Workload::A => 50,
            Workload::B => 95,
            Workload::C => 100,
            Workload::W => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::W => "w",
        }
    }
}

/// One request's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// GET: a missing key (nil, 404) and siblings (300) are answers, not errors.
    Read,
    /// SET or PUT of the run's value.
    Write,
}

/// How keys are chosen.
#[derive(Clone, Debug)]
pub enum Keys {
    Uniform(u64),
    Zipfian(Arc<Zipf>),
}

impl Keys {
    pub fn count(&self) -> u64 {
        match self {
            Keys::Uniform(n) => *n,
            Keys::Zipfian(z) => z.items(),
        }
    }
}

/// One client's chooser of operations and keys.
#[derive(Clone, Debug)]
pub struct Chooser {
    read_percent: u64,
    keys: Keys,
    rng: Rng,
}

impl Chooser {
    pub fn new(workload: Workload, keys: Keys, rng: Rng) -> Chooser {
        Chooser {
            read_percent: workload.read_percent(),
            keys,
            rng,
        }
    }

    /// The next request: its kind and its key's number.
    pub fn choose(&mut self) -> (Op, u64) {
        let op = match self.read_percent {
            0 => Op::Write,
            100 => Op::Read,
            p if self.rng.below(100) < p => Op::Read,
            _ => Op::Write,
        };
        let key = match &self.keys {
            Keys::Uniform(n) => self.rng.below(*n),
            Keys::Zipfian(z) => z.item(self.rng.next_f64()),
        };
        (op, key)
    }
}

/// Appends key number `n`'s name (`key:` and 12 zero-padded digits) to `out`.
pub fn put_key(out: &mut Vec<u8>, n: u64) {
    debug_assert!(n < KEYS_MAX);
    let mut digits = [b'0'; KEY_DIGITS];
    let mut rest = n;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(b"key:");
    out.extend_from_slice(&digits);
}

/// Appends `n` in decimal to `out`, without allocating.
pub fn put_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_like_redis_benchmark_keys() {
        let mut out = Vec::new();
        put_key(&mut out, 42);
        assert_eq!(out, b"key:000000000042");
        assert_eq!(out.len(), KEY_BYTES);
        out.clear();
        put_key(&mut out, KEYS_MAX - 1);
        assert_eq!(out, b"key:999999999999");
    }

    #[test]
    fn decimals_are_written_in_full() {
        for n in [0usize, 7, 10, 1234, usize::MAX] {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn each_workload_reads_its_share() {
        let share = |w: Workload| {
            let mut c = Chooser::new(w, Keys::Uniform(10), Rng::new(3, 0));
            (0..10_000).filter(|_| c.choose().0 == Op::Read).count()
        };
        assert_eq!(share(Workload::C), 10_000);
        assert_eq!(share(Workload::W), 0);
        let a = share(Workload::A);
        assert!((4_700..5_300).contains(&a), "A read {a} of 10000");
        let b = share(Workload::B);
        assert!((9_350..9_650).contains(&b), "B read {b} of 10000");
    }
}
