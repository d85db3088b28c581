//! The zipfian key chooser of YCSB (Gray et al., "Quickly generating billion-record synthetic
//! databases", SIGMOD 1994): item `i` of `n` is chosen with probability proportional to
//! `1 / (i + 1)^theta`, item 0 the most popular, in constant time per choice once the
//! normalising sum `zeta(n, theta)` is known.
//!
//! The method is exact for items 0 and 1 and an approximation (the one YCSB uses) above; it
//! needs `0 < theta < 1` (YCSB's default is 0.99).

/// Terms of `zeta(n, theta)` summed one by one; past them, the rest of the sum is taken from
/// the integral of `x^-theta` (the sum's Euler-Maclaurin midpoint estimate), so setting up a
/// billion keys costs what a million does.
const ZETA_TERMS_EXACT: u64 = 1_000_000;

/// A zipfian chooser over `[0, n)`.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
    /// `1 + 0.5^theta`: `zeta(2, theta)`, the bound under which item 1 is chosen.
    zeta_2: f64,
}

/// Why a zipfian chooser cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZipfError {
    #[error("the zipfian exponent must be above 0 and below 1 (YCSB's default is 0.99); got {0}")]
    Exponent(f64),
    #[error("a zipfian chooser needs at least one key")]
    NoKeys,
}

/// `sum over i in 1..=n of 1 / i^theta`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    let exact = n.min(ZETA_TERMS_EXACT);
    // Smallest terms first: the sum loses less to rounding.
    let mut sum: f64 = (1..=exact).rev().map(|i| (i as f64).powf(-theta)).sum();
    if n > exact {
        let power = 1.0 - theta;
        let upper = (n as f64 + 0.5).powf(power);
        let lower = (exact as f64 + 0.5).powf(power);
        sum += (upper - lower) / power;
    }
    sum
}

impl Zipf {
    pub fn new(n: u64, theta: f64) -> Result<Zipf, ZipfError> {
        if !(theta > 0.0 && theta < 1.0) {
            return Err(ZipfError::Exponent(theta));
        }
        if n == 0 {
            return Err(ZipfError::NoKeys);
        }
        let zeta_n = zeta(n, theta);
        let zeta_2 = 1.0 + 0.5f64.powf(theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Ok(Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta,
            zeta_2,
        })
    }

    pub fn items(&self) -> u64 {
        self.n
    }

    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// The item for a uniform number `u` in `[0, 1)`.
    pub fn item(&self, u: f64) -> u64 {
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.zeta_2 {
            return 1.min(self.n - 1);
        }
        let x = self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        // `as` saturates (and maps NaN to 0): the clamp keeps rounding at the top in range.
        (x as u64).min(self.n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn counts(n: u64, theta: f64, draws: usize) -> Vec<u64> {
        let z = Zipf::new(n, theta).unwrap();
        let mut rng = Rng::new(42, 0);
        let mut c = vec![0u64; n as usize];
        for _ in 0..draws {
            let i = z.item(rng.next_f64());
            assert!(i < n, "item {i} out of 0..{n}");
            c[i as usize] += 1;
        }
        c
    }

    #[test]
    fn every_choice_is_in_range_even_at_the_ends_of_the_unit_interval() {
        for n in [1, 2, 3, 10, 1000, 5_000_000] {
            let z = Zipf::new(n, 0.99).unwrap();
            for u in [0.0, 1e-12, 0.3, 0.5, 0.999_999, 1.0 - f64::EPSILON] {
                assert!(z.item(u) < n, "n {n} u {u}");
            }
        }
        assert_eq!(Zipf::new(1, 0.5).unwrap().item(0.99), 0);
    }

    #[test]
    fn the_first_items_are_drawn_as_often_as_the_law_says() {
        let n = 1000;
        let theta = 0.99;
        let draws = 200_000;
        let c = counts(n, theta, draws);
        let zeta_n = zeta(n, theta);
        for (i, &count) in c.iter().enumerate().take(2) {
            let expected = draws as f64 / ((i + 1) as f64).powf(theta) / zeta_n;
            let got = count as f64;
            assert!(
                (got - expected).abs() < 0.05 * expected,
                "item {i}: {got} draws, expected about {expected:.0}"
            );
        }
    }

    #[test]
    fn a_high_exponent_skews_toward_the_first_keys_and_a_low_one_barely() {
        let n = 10_000;
        let draws = 100_000;
        let top_share = |theta| {
            let c = counts(n, theta, draws);
            // The most popular 1 % of the keys.
            c[..(n / 100) as usize].iter().sum::<u64>() as f64 / draws as f64
        };
        let skewed = top_share(0.99);
        let mild = top_share(0.1);
        assert!(skewed > 0.45, "theta 0.99: top 1 % had {skewed:.3}");
        assert!(mild < 0.05, "theta 0.1: top 1 % had {mild:.3}");
        let c = counts(n, 0.99, draws);
        assert!(
            c[0] > c[10] && c[10] > c[1000],
            "popularity falls with rank"
        );
        assert!(
            c[(n / 2) as usize..].iter().sum::<u64>() > 0,
            "the tail is reached"
        );
    }

    #[test]
    fn the_tail_estimate_of_zeta_is_close_to_the_exact_sum() {
        let n = 3 * ZETA_TERMS_EXACT;
        let exact: f64 = (1..=n).rev().map(|i| (i as f64).powf(-0.99)).sum();
        let estimate = zeta(n, 0.99);
        assert!(
            ((estimate - exact) / exact).abs() < 1e-9,
            "{estimate} vs {exact}"
        );
    }

    #[test]
    fn exponents_outside_the_open_unit_interval_are_refused() {
        for theta in [0.0, 1.0, 1.5, -0.2, f64::NAN] {
            assert!(matches!(Zipf::new(10, theta), Err(ZipfError::Exponent(_))));
        }
        assert_eq!(Zipf::new(0, 0.5).unwrap_err(), ZipfError::NoKeys);
    }
}
