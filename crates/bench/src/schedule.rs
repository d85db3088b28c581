//! The open loop's timetable (`--rate`), as in wrk2: request `g` of the whole run is meant to
//! start `g / rate` seconds after the run's start, whatever happened to the ones before it.
//! Client `i` of `C` sends requests `i`, `i + C`, `i + 2C`, ... so the clients together keep
//! the total rate, evenly spaced. A request's latency is measured from its intended start: a
//! client that fell behind sends late requests at once and is charged for the wait (no
//! coordinated omission). Pure: offsets from the start, no clock.

use std::time::Duration;

/// How much a run does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    /// This many requests in all, across clients.
    Requests(u64),
    /// Requests meant to start within this long after the start.
    Duration(Duration),
}

/// One client's share of the open loop's timetable.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    rate_per_s: f64,
    clients: u64,
    client: u64,
    amount: Amount,
}

impl Schedule {
    /// Client `client` of `clients` at `rate_per_s` requests per second in all (positive).
    pub fn new(rate_per_s: f64, clients: u64, client: u64, amount: Amount) -> Schedule {
        debug_assert!(rate_per_s > 0.0 && client < clients);
        Schedule {
            rate_per_s,
            clients,
            client,
            amount,
        }
    }

    /// When this client's `k`-th request (from 0) is meant to start, after the run's start;
    /// `None` once the run holds no such request.
    pub fn offset(&self, k: u64) -> Option<Duration> {
        let g = k.checked_mul(self.clients)?.checked_add(self.client)?;
        let at = Duration::try_from_secs_f64(g as f64 / self.rate_per_s).ok()?;
        match self.amount {
            Amount::Requests(n) => (g < n).then_some(at),
            Amount::Duration(d) => (at < d).then_some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every client's offsets, merged and sorted.
    fn timetable(rate: f64, clients: u64, amount: Amount) -> Vec<Duration> {
        let mut all = Vec::new();
        for c in 0..clients {
            let s = Schedule::new(rate, clients, c, amount);
            let mut k = 0;
            while let Some(at) = s.offset(k) {
                all.push(at);
                k += 1;
                assert!(k < 1_000_000, "the schedule ends");
            }
        }
        all.sort();
        all
    }

    #[test]
    fn the_clients_together_send_every_request_once_evenly_spaced() {
        let t = timetable(500.0, 8, Amount::Requests(1000));
        assert_eq!(t.len(), 1000);
        for (g, at) in t.iter().enumerate() {
            let expected = g as f64 / 500.0;
            assert!(
                (at.as_secs_f64() - expected).abs() < 1e-9,
                "request {g} at {at:?}"
            );
        }
    }

    #[test]
    fn a_duration_holds_rate_times_duration_requests() {
        let t = timetable(500.0, 8, Amount::Duration(Duration::from_secs(3)));
        assert_eq!(t.len(), 1500);
        assert!(t.last().unwrap() < &Duration::from_secs(3));
        let odd = timetable(3.0, 2, Amount::Duration(Duration::from_millis(1500)));
        assert_eq!(odd.len(), 5, "0, 1/3, 2/3, 1, 4/3 s");
    }

    #[test]
    fn each_client_keeps_its_own_pace() {
        let s = Schedule::new(100.0, 4, 1, Amount::Requests(u64::MAX));
        let gaps: Vec<Duration> = (0..5)
            .map(|k| s.offset(k + 1).unwrap() - s.offset(k).unwrap())
            .collect();
        for gap in gaps {
            assert!((gap.as_secs_f64() - 0.04).abs() < 1e-9, "{gap:?}");
        }
        assert_eq!(s.offset(0), Some(Duration::from_millis(10)));
    }

    #[test]
    fn more_clients_than_requests_leaves_some_idle() {
        let s = Schedule::new(10.0, 8, 5, Amount::Requests(3));
        assert_eq!(s.offset(0), None);
        let far = Schedule::new(1.0, 2, 1, Amount::Requests(u64::MAX));
        assert_eq!(far.offset(u64::MAX), None, "overflow ends the schedule");
    }
}
