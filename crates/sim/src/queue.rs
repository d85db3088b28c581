//! The simulator's event queue: a radix heap keyed by (virtual time, sequence number).
//!
//! Virtual time never goes back, so the queue is monotone: nothing is pushed before the last
//! event popped. A radix heap uses that. Entries wait in buckets by the highest bit in which
//! their key differs from the last key popped; a push is one append, and a pop that finds the
//! lowest bucket empty takes the lowest non-empty one, makes its smallest key the new last,
//! and spreads it over strictly lower buckets. Each entry moves a few times in its life
//! instead of sifting through the levels of a binary heap on every push and pop, and nothing
//! compares whole entries.
//!
//! The sequence number is unique per push, so the order is total and exact: (time, push order),
//! what a binary heap of the same keys gives (property-tested below).

/// A min-queue of `T` by `(at, seq)` keys that never go below the last key popped.
pub struct RadixQueue<T> {
    /// The last key popped (0 before the first pop).
    last: u128,
    /// Bucket `b` holds the entries whose key differs from `last` first in bit `b - 1` (bucket
    /// 0: equal to `last`, so at most one entry, keys being unique).
    buckets: Vec<Vec<Entry<T>>>,
    /// Bit `(b - 1) % 64` of word `(b - 1) / 64` set: bucket `b` (1..=128) is non-empty. Two
    /// words, not a `u128`: shifting a `u128` by a variable amount is a dozen instructions, on
    /// every move of every entry.
    occupied: [u64; 2],
}

struct Entry<T> {
    at: u64,
    seq: u64,
    item: T,
}

impl<T> Entry<T> {
    fn key(&self) -> u128 {
        key(self.at, self.seq)
    }
}

fn key(at: u64, seq: u64) -> u128 {
    ((at as u128) << 64) | seq as u128
}

/// The bucket of a key that differs from the last popped one by `diff` (xor).
fn bucket(diff: u128) -> usize {
    (u128::BITS - diff.leading_zeros()) as usize
}

impl<T> Default for RadixQueue<T> {
    fn default() -> Self {
        RadixQueue {
            last: 0,
            buckets: (0..=u128::BITS).map(|_| Vec::new()).collect(),
            occupied: [0; 2],
        }
    }
}

impl<T> RadixQueue<T> {
    pub fn is_empty(&self) -> bool {
        self.occupied == [0; 2] && self.buckets[0].is_empty()
    }

    /// How many entries are queued (counted: only the tests ask).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Queues `item` at `(at, seq)`, which must not be below the last key popped (virtual
    /// time does not go back) nor equal any key queued.
    pub fn push(&mut self, at: u64, seq: u64, item: T) {
        let k = key(at, seq);
        assert!(
            k >= self.last,
            "an event scheduled in the past ({at}, {seq})"
        );
        self.put(Entry { at, seq, item }, k);
    }

    fn put(&mut self, entry: Entry<T>, k: u128) {
        let b = bucket(k ^ self.last);
        if b > 0 {
            self.occupied[(b - 1) / 64] |= 1 << ((b - 1) % 64);
        }
        self.buckets[b].push(entry);
    }

    /// The smallest key queued, made the last one: bucket 0 holds it afterwards.
    fn settle(&mut self) -> bool {
        if !self.buckets[0].is_empty() {
            return true;
        }
        if self.occupied == [0; 2] {
            return false;
        }
        let b = match self.occupied {
            [0, high] => high.trailing_zeros() as usize + 65,
            [low, _] => low.trailing_zeros() as usize + 1,
        };
        let mut spread = std::mem::take(&mut self.buckets[b]);
        self.occupied[(b - 1) / 64] &= !(1 << ((b - 1) % 64));
        self.last = spread
            .iter()
            .map(Entry::key)
            .min()
            .expect("an occupied bucket holds an entry");
        // Every entry lands in a lower bucket: they agree with the new last above bit b - 1.
        while let Some(entry) = spread.pop() {
            let k = entry.key();
            self.put(entry, k);
        }
        // Back in its place, keeping its allocation. What it replaces is the empty vector
        // `take` left, which owns nothing: forgotten rather than dropped, which would be a call
        // (dropping a vector of events is a loop over them) on every settle for nothing.
        let left = std::mem::replace(&mut self.buckets[b], spread);
        debug_assert!(left.capacity() == 0);
        std::mem::forget(left);
        true
    }

    /// Takes the entry with the smallest key.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        if !self.settle() {
            return None;
        }
        let entry = self.buckets[0].pop()?;
        Some((entry.at, entry.item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    proptest! {
        /// Any monotone interleaving of pushes and pops comes out as a binary heap of the same
        /// (time, seq) keys gives it.
        #[test]
        fn pops_in_the_order_of_a_binary_heap(
            steps in proptest::collection::vec((any::<bool>(), 0u64..3, 0u64..5_000), 1..400),
            far in 0u32..64,
        ) {
            let mut queue = RadixQueue::default();
            let mut heap = BinaryHeap::new();
            let (mut now, mut seq) = (0u64, 0u64);
            for (is_pop, scale, delay) in steps {
                if is_pop {
                    let got = queue.pop();
                    let want = heap.pop().map(|Reverse((at, s))| (at, s));
                    prop_assert_eq!(got, want);
                    if let Some((at, _)) = want {
                        now = at;
                    }
                } else {
                    seq += 1;
                    // Delays of several magnitudes, some far ahead, many at the same time.
                    let at = now + (delay << (scale as u32 * (far % 21)));
                    queue.push(at, seq, seq);
                    heap.push(Reverse((at, seq)));
                }
                prop_assert_eq!(queue.len(), heap.len());
            }
            while let Some(Reverse((at, s))) = heap.pop() {
                prop_assert_eq!(queue.pop(), Some((at, s)));
            }
            prop_assert!(queue.is_empty());
            prop_assert_eq!(queue.pop(), None);
        }
    }

    #[test]
    #[should_panic(expected = "scheduled in the past")]
    fn refuses_a_key_below_the_last_popped() {
        let mut queue = RadixQueue::default();
        queue.push(10, 1, ());
        queue.pop();
        queue.push(9, 2, ());
    }
}
