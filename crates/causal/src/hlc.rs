//! Hybrid logical clock: timestamps that follow wall time but never run backwards and always
//! order an event after every event it has seen, even across skewed clocks.

use serde::{Deserialize, Serialize};

/// Bits of a [`Timestamp`] that count events within one millisecond.
const LOGICAL_BITS: u32 = 16;
const LOGICAL_MAX: u64 = (1 << LOGICAL_BITS) - 1;

/// Physical milliseconds in the high 48 bits, a logical counter in the low 16: ordering the
/// `u64` orders the pair.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn new(physical_ms: u64, logical: u16) -> Self {
        Timestamp((physical_ms << LOGICAL_BITS) | logical as u64)
    }

    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MAX) as u16
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.logical())
    }
}

/// One node's hybrid logical clock. The wall time is an argument: the caller owns the clock.
#[derive(Clone, Debug, Default)]
pub struct Hlc {
    last: Timestamp,
}

impl Hlc {
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a clock that must stay ahead of `last` (e.g. the highest timestamp on disk).
    pub fn starting_after(last: Timestamp) -> Self {
        Hlc { last }
    }

    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A timestamp for a local event: greater than every timestamp this clock gave or saw.
    pub fn now(&mut self, wall_ms: u64) -> Timestamp {
        self.advance(self.last, wall_ms)
    }

    /// Takes in a timestamp from a message or a stored value, and returns a timestamp for the
    /// receive event, greater than both it and everything before.
    pub fn observe(&mut self, remote: Timestamp, wall_ms: u64) -> Timestamp {
        self.advance(self.last.max(remote), wall_ms)
    }

    fn advance(&mut self, floor: Timestamp, wall_ms: u64) -> Timestamp {
        let wall = Timestamp::new(wall_ms.min(u64::MAX >> LOGICAL_BITS), 0);
        let next = if wall > floor {
            wall
        } else if floor.logical() as u64 == LOGICAL_MAX {
            if floor.physical_ms() >= u64::MAX >> LOGICAL_BITS {
                // The end of time (only a forged timestamp gets here): the clock stays.
                self.last = floor;
                return floor;
            }
            // 65536 events in one millisecond: borrow the next millisecond.
            Timestamp::new(floor.physical_ms() + 1, 0)
        } else {
            Timestamp(floor.0 + 1)
        };
        debug_assert!(next > self.last && next > floor);
        self.last = next;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_timestamp_at_the_end_of_time_stops_the_clock_rather_than_wrapping_it() {
        let mut c = Hlc::new();
        let end = Timestamp(u64::MAX);
        assert_eq!(c.observe(end, 100), end);
        assert_eq!(c.now(100), end, "never back to the start");
        let below = Timestamp::new(u64::MAX >> LOGICAL_BITS, LOGICAL_MAX as u16 - 1);
        let mut d = Hlc::new();
        assert_eq!(d.observe(below, 5), end);
    }

    #[test]
    fn follows_wall_time_when_it_moves_forward() {
        let mut c = Hlc::new();
        assert_eq!(c.now(100), Timestamp::new(100, 0));
        assert_eq!(c.now(100), Timestamp::new(100, 1));
        assert_eq!(
            c.now(90),
            Timestamp::new(100, 2),
            "a clock stepping back does not reorder"
        );
        assert_eq!(c.now(101), Timestamp::new(101, 0));
    }

    #[test]
    fn a_message_from_a_clock_ahead_pulls_this_clock_forward() {
        let mut c = Hlc::new();
        let t = c.observe(Timestamp::new(5000, 3), 10);
        assert_eq!(t, Timestamp::new(5000, 4));
        assert!(c.now(11) > t);
    }

    #[test]
    fn logical_overflow_borrows_the_next_millisecond() {
        let mut c = Hlc::starting_after(Timestamp::new(7, u16::MAX));
        assert_eq!(c.now(0), Timestamp::new(8, 0));
    }

    proptest! {
        #[test]
        fn timestamps_strictly_increase_whatever_the_inputs(steps in proptest::collection::vec((any::<bool>(), 0u64..1000, 0u64..1_000_000), 1..100)) {
            let mut c = Hlc::new();
            let mut prev = Timestamp::default();
            for (remote, wall, r) in steps {
                let r = Timestamp(r);
                let t = if remote { c.observe(r, wall) } else { c.now(wall) };
                prop_assert!(t > prev);
                if remote { prop_assert!(t > r); }
                prop_assert!(t.physical_ms() >= wall.min(prev.physical_ms()));
                prev = t;
            }
        }
    }
}
