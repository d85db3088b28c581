//! Summaries of measured samples: percentiles with exact nearest-rank, rounded for the report.

use serde::Serialize;

/// Latency-style summary of samples in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Rounds to microseconds: enough precision for milliseconds, and short stable JSON.
pub fn round_us(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Rounds a ratio to 6 decimals.
pub fn round_ratio(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (any order). All zero when there are none.
    pub fn of(samples: &mut [f64]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let rank = |p: f64| {
            let n = samples.len();
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            round_us(samples[i])
        };
        let sum: f64 = samples.iter().sum();
        Percentiles {
            count: samples.len() as u64,
            mean: round_us(sum / samples.len() as f64),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            p999: rank(0.999),
            max: round_us(samples[samples.len() - 1]),
        }
    }

    pub fn line(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        format!(
            "p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms (mean {} ms, {} samples)",
            self.p50, self.p90, self.p99, self.p999, self.max, self.mean, self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_thousand() {
        let mut v: Vec<f64> = (1..=1000).rev().map(|x| x as f64).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.p999, p.max, p.count),
            (500.0, 900.0, 990.0, 999.0, 1000.0, 1000)
        );
        assert_eq!(p.mean, 500.5);
    }

    #[test]
    fn no_samples_is_all_zero_not_nan() {
        let p = Percentiles::of(&mut []);
        assert_eq!(p, Percentiles::default());
        assert_eq!(Percentiles::of(&mut [2.0]).p999, 2.0);
    }
}
