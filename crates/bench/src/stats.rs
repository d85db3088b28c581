//! What a run counts: each client counts into its own [`Local`] (no sharing on the hot path)
//! and adds it to the run's [`Shared`] totals every [`FLUSH_INTERVAL`] and at its end; the
//! progress line and the report read the totals.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::workload::Op;

/// How often a client adds its counts to the run's totals.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// The latency histograms' range: 1 µs resolution at the low end (values are nanoseconds),
/// an hour at the top (larger values are recorded as an hour), three significant digits.
const LATENCY_NS_LOW: u64 = 1_000;
const LATENCY_NS_HIGH: u64 = 3_600 * 1_000_000_000;
const LATENCY_DIGITS: u8 = 3;
/// Characters of the first error kept for the report.
const ERROR_CHARS_MAX: usize = 300;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_NS_LOW, LATENCY_NS_HIGH, LATENCY_DIGITS)
        .expect("the latency histogram's bounds are valid")
}

/// The run's totals, shared by its clients.
pub struct Shared {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    /// Clients that stopped early because their node refused connections again and again.
    pub clients_gave_up: AtomicU64,
    /// Latencies of every answered request, in nanoseconds.
    pub latency_ns: Mutex<Histogram<u64>>,
    /// The first error seen, for the report.
    pub first_error: Mutex<Option<String>>,
    /// Closed loop with `--requests`: requests no client has claimed yet.
    pub unclaimed: AtomicU64,
}

impl Shared {
    pub fn new(unclaimed: u64) -> Shared {
        Shared {
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            clients_gave_up: AtomicU64::new(0),
            latency_ns: Mutex::new(histogram()),
            first_error: Mutex::new(None),
            unclaimed: AtomicU64::new(unclaimed),
        }
    }

    /// Takes up to `want` requests of the run's total; 0 once none are left.
    pub fn claim(&self, want: u64) -> u64 {
        match self
            .unclaimed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                (left > 0).then(|| left - left.min(want))
            }) {
            Ok(left) => left.min(want),
            Err(_) => 0,
        }
    }

    /// Keeps `why` if it is the run's first error.
    pub fn note_error(&self, why: impl FnOnce() -> String) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            let mut text = why();
            if let Some((at, _)) = text.char_indices().nth(ERROR_CHARS_MAX) {
                text.truncate(at);
            }
            *first = Some(text);
        }
    }

    /// The 99th percentile so far, in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        let h = self.latency_ns.lock().unwrap_or_else(|p| p.into_inner());
        ns_to_ms(h.value_at_quantile(0.99))
    }
}

/// Nanoseconds as milliseconds, to the microsecond.
pub fn ns_to_ms(ns: u64) -> f64 {
    (ns as f64 / 1_000.0).round() / 1_000.0
}

/// One client's counts since its last flush.
pub struct Local {
    pub latency_ns: Histogram<u64>,
    ops: u64,
    errors: u64,
    reads: u64,
    writes: u64,
    flushed_at: Instant,
    /// Whether this client has told the run about an error already (only the first is kept).
    noted_error: bool,
}

impl Local {
    pub fn new(now: Instant) -> Local {
        Local {
            latency_ns: histogram(),
            ops: 0,
            errors: 0,
            reads: 0,
            writes: 0,
            flushed_at: now,
            noted_error: false,
        }
    }

    /// A request that ended: answered after `latency` (None: no answer), successfully or not.
    pub fn done(&mut self, op: Op, ok: bool, latency: Option<Duration>) {
        self.ops += 1;
        match op {
            Op::Read => self.reads += 1,
            Op::Write => self.writes += 1,
        }
        if !ok {
            self.errors += 1;
        }
        if let Some(l) = latency {
            let ns = u64::try_from(l.as_nanos()).unwrap_or(u64::MAX);
            self.latency_ns.saturating_record(ns);
        }
    }

    /// Notes an error's description with the run, the first time this client sees one.
    pub fn error(&mut self, shared: &Shared, why: impl FnOnce() -> String) {
        if !self.noted_error {
            self.noted_error = true;
            shared.note_error(why);
        }
    }

    /// Adds these counts to the run's totals if a flush is due (or `now` is None: always).
    pub fn flush(&mut self, shared: &Shared, now: Option<Instant>) {
        if let Some(now) = now {
            if now.duration_since(self.flushed_at) < FLUSH_INTERVAL {
                return;
            }
            self.flushed_at = now;
        }
        if self.ops == 0 {
            return;
        }
        {
            let mut h = shared.latency_ns.lock().unwrap_or_else(|p| p.into_inner());
            // Same bounds on both sides: adding cannot fail.
            let _ = h.add(&self.latency_ns);
        }
        self.latency_ns.reset();
        shared.ops.fetch_add(self.ops, Ordering::Relaxed);
        shared.errors.fetch_add(self.errors, Ordering::Relaxed);
        shared.reads.fetch_add(self.reads, Ordering::Relaxed);
        shared.writes.fetch_add(self.writes, Ordering::Relaxed);
        self.ops = 0;
        self.errors = 0;
        self.reads = 0;
        self.writes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_never_hand_out_more_than_the_total() {
        let s = Shared::new(10);
        assert_eq!(s.claim(4), 4);
        assert_eq!(s.claim(4), 4);
        assert_eq!(s.claim(4), 2);
        assert_eq!(s.claim(4), 0);
    }

    #[test]
    fn flushed_counts_add_up_and_only_the_first_error_is_kept() {
        let s = Shared::new(0);
        let t = Instant::now();
        let mut a = Local::new(t);
        a.done(Op::Read, true, Some(Duration::from_micros(300)));
        a.done(Op::Write, false, None);
        a.error(&s, || "first".into());
        a.error(&s, || "second".into());
        a.flush(&s, Some(t)); // not due yet
        assert_eq!(s.ops.load(Ordering::Relaxed), 0);
        a.flush(&s, None);
        let mut b = Local::new(t);
        b.done(Op::Write, true, Some(Duration::from_millis(2)));
        b.error(&s, || "third".into());
        b.flush(&s, Some(t + FLUSH_INTERVAL));
        assert_eq!(s.ops.load(Ordering::Relaxed), 3);
        assert_eq!(s.errors.load(Ordering::Relaxed), 1);
        assert_eq!(s.reads.load(Ordering::Relaxed), 1);
        assert_eq!(s.writes.load(Ordering::Relaxed), 2);
        assert_eq!(s.first_error.lock().unwrap().as_deref(), Some("first"));
        let h = s.latency_ns.lock().unwrap();
        assert_eq!(h.len(), 2, "unanswered requests have no latency");
        assert!((ns_to_ms(h.max()) - 2.0).abs() < 0.01);
    }
}
