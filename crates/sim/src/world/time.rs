//! Virtual time: microseconds since the run began, the instants that split a run into its
//! phases (warm-up, traffic, settling), and conversions from the scenario's milliseconds.

use crate::scenario::Scenario;

/// Virtual time is kept in microseconds; scenarios give milliseconds.
pub(super) const US_PER_MS: u64 = 1_000;
/// [`US_PER_MS`] as a float, for durations measured in fractions of a millisecond.
pub(super) const US_PER_MS_F64: f64 = 1_000.0;
/// Microseconds in a second (a rate per second gives a mean gap in microseconds).
pub(super) const US_PER_S: f64 = 1e6;
/// Milliseconds in a second.
pub(super) const MS_PER_S: f64 = 1_000.0;

/// Where a run is in virtual time.
pub(super) struct Timeline {
    pub(super) now_us: u64,
    /// Traffic starts (the warm-up is over).
    pub(super) t0_us: u64,
    /// Traffic stops and every fault heals.
    pub(super) traffic_end_us: u64,
    /// The settle bound: the run ends here whatever happens.
    pub(super) deadline_us: u64,
}

impl Timeline {
    pub(super) fn new(sc: &Scenario) -> Timeline {
        let t0_us = sc.warmup_ms * US_PER_MS;
        let traffic_end_us = t0_us + sc.duration_ms * US_PER_MS;
        Timeline {
            now_us: 0,
            t0_us,
            traffic_end_us,
            deadline_us: traffic_end_us + sc.settle.max_ms * US_PER_MS,
        }
    }

    /// Virtual milliseconds since traffic started, for logs and reports.
    pub(super) fn rel_ms(&self, at_us: u64) -> f64 {
        (at_us as f64 - self.t0_us as f64) / US_PER_MS_F64
    }

    /// Now plus `ms` whole milliseconds, in microseconds.
    pub(super) fn after_ms(&self, ms: u64) -> u64 {
        self.now_us + ms * US_PER_MS
    }

    /// Now on a wall clock without skew (the clients'): the nodes' epoch plus virtual time.
    pub(super) fn wall_ms(&self) -> u64 {
        super::EPOCH_MS + self.now_us / US_PER_MS
    }
}

/// Microseconds as (fractional) milliseconds.
pub(super) fn ms(us: u64) -> f64 {
    us as f64 / US_PER_MS_F64
}

/// Milliseconds to whole microseconds, rounded half away from zero (negative and NaN: 0).
/// Exactly `(ms * 1000.0).round().max(0.0) as u64`, without the call out to libm's `round`
/// (every message's delay goes through here): below 2^52 the fraction `x - trunc(x)` is exact,
/// and above it every value is whole already.
pub(super) fn us(ms: f64) -> u64 {
    let x = ms * US_PER_MS_F64;
    let whole = x as u64; // saturating: negative and NaN give 0, beyond u64 its maximum
    if x - whole as f64 >= 0.5 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn microseconds_round_as_f64_round_does() {
        let reference = |ms: f64| (ms * 1000.0).round().max(0.0) as u64;
        let mut samples = vec![
            0.0,
            -0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            0.0005,
            0.0004999999999999999,
            0.0015,
            0.0025,
            4.5e12,
            4.503599627370497e12,
            (u64::MAX / 1000) as f64,
        ];
        // Halfway points and their neighbours, and a sweep of ordinary delays.
        for n in 0..2000u64 {
            let half = (n as f64 + 0.5) / 1000.0;
            samples.extend([
                half,
                f64::from_bits(half.to_bits() - 1),
                f64::from_bits(half.to_bits() + 1),
            ]);
            samples.push(n as f64 * 0.37 + 0.000_123);
        }
        for ms in samples {
            assert_eq!(super::us(ms), reference(ms), "{ms:e} ms");
        }
    }
}
