//! Delay distributions for messages, clients and disks, in the scenario files' syntax.
//!
//! ```toml
//! write = { mix = [ { weight = 0.9, pareto = { scale_ms = 0.2, shape = 10.0 } },
//!                   { weight = 0.1, exponential = { rate_per_ms = 1.5 } } ] }
//! ack = { constant = { ms = 0.5 } }
//! read_request = { uniform = { min_ms = 0.1, max_ms = 2.0 } }
//! read_response = { normal = { mean_ms = 1.0, stddev_ms = 0.3 } }   # clamped at 0
//! ```
//!
//! Every sample is a non-negative number of milliseconds.

use serde::Deserialize;

use crate::rng::Rng;

/// Most entries a mixture may have: a scenario is written by hand, and a bound keeps sampling
/// cheap and a typo from building something enormous.
pub const MIX_ENTRIES_MAX: usize = 64;

/// A delay distribution in milliseconds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Delay {
    /// Always `ms`.
    Constant { ms: f64 },
    /// Uniform in `[min_ms, max_ms]`.
    Uniform { min_ms: f64, max_ms: f64 },
    /// Normal, clamped at 0 (so the mean shifts up a little when `stddev_ms` is near `mean_ms`).
    Normal { mean_ms: f64, stddev_ms: f64 },
    /// Exponential with rate `rate_per_ms` (mean `1 / rate_per_ms`).
    Exponential { rate_per_ms: f64 },
    /// Pareto (type I): at least `scale_ms`, tail index `shape`; mean
    /// `scale_ms * shape / (shape - 1)` when `shape > 1`. Bailis et al. fit LinkedIn's and
    /// Yammer's replica latencies with this shape mixed with an exponential.
    Pareto { scale_ms: f64, shape: f64 },
    /// A weighted mixture: picks an entry with probability `weight / sum of weights`.
    Mix(Vec<Weighted>),
}

/// One entry of a mixture: `{ weight = 0.9, pareto = { ... } }`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Weighted {
    pub weight: f64,
    #[serde(flatten)]
    pub delay: Delay,
}

impl Delay {
    pub fn constant(ms: f64) -> Delay {
        Delay::Constant { ms }
    }

    /// Checks the parameters; the error names the problem as a person would fix it.
    pub fn validate(&self) -> Result<(), String> {
        let finite_non_negative = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number >= 0, got {v}"))
            }
        };
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number > 0, got {v}"))
            }
        };
        match self {
            Delay::Constant { ms } => finite_non_negative("constant.ms", *ms),
            Delay::Uniform { min_ms, max_ms } => {
                finite_non_negative("uniform.min_ms", *min_ms)?;
                finite_non_negative("uniform.max_ms", *max_ms)?;
                if min_ms > max_ms {
                    return Err(format!("uniform.min_ms {min_ms} exceeds max_ms {max_ms}"));
                }
                Ok(())
            }
            Delay::Normal { mean_ms, stddev_ms } => {
                finite_non_negative("normal.mean_ms", *mean_ms)?;
                finite_non_negative("normal.stddev_ms", *stddev_ms)
            }
            Delay::Exponential { rate_per_ms } => positive("exponential.rate_per_ms", *rate_per_ms),
            Delay::Pareto { scale_ms, shape } => {
                positive("pareto.scale_ms", *scale_ms)?;
                positive("pareto.shape", *shape)
            }
            Delay::Mix(entries) => {
                if entries.is_empty() || entries.len() > MIX_ENTRIES_MAX {
                    return Err(format!(
                        "mix needs 1 to {MIX_ENTRIES_MAX} entries, got {}",
                        entries.len()
                    ));
                }
                for e in entries {
                    positive("mix weight", e.weight)?;
                    e.delay.validate()?;
                }
                Ok(())
            }
        }
    }

    /// One delay in milliseconds, never negative.
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        let v = match self {
            Delay::Constant { ms } => *ms,
            Delay::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * rng.unit(),
            Delay::Normal { mean_ms, stddev_ms } => mean_ms + stddev_ms * rng.standard_normal(),
            Delay::Exponential { rate_per_ms } => rng.exponential(1.0 / rate_per_ms),
            Delay::Pareto { scale_ms, shape } => scale_ms * rng.unit_open().powf(-1.0 / shape),
            Delay::Mix(entries) => {
                let total: f64 = entries.iter().map(|e| e.weight).sum();
                let mut pick = rng.unit() * total;
                let mut chosen = &entries[entries.len() - 1].delay;
                for e in entries {
                    if pick < e.weight {
                        chosen = &e.delay;
                        break;
                    }
                    pick -= e.weight;
                }
                chosen.sample(rng)
            }
        };
        if v.is_finite() { v.max(0.0) } else { 0.0 }
    }

    /// The mean in milliseconds (`None` for a Pareto with `shape <= 1`, whose mean is infinite;
    /// a normal's clamping at 0 is ignored).
    pub fn mean(&self) -> Option<f64> {
        match self {
            Delay::Constant { ms } => Some(*ms),
            Delay::Uniform { min_ms, max_ms } => Some((min_ms + max_ms) / 2.0),
            Delay::Normal { mean_ms, .. } => Some(*mean_ms),
            Delay::Exponential { rate_per_ms } => Some(1.0 / rate_per_ms),
            Delay::Pareto { scale_ms, shape } => {
                (*shape > 1.0).then(|| scale_ms * shape / (shape - 1.0))
            }
            Delay::Mix(entries) => {
                let total: f64 = entries.iter().map(|e| e.weight).sum();
                let mut mean = 0.0;
                for e in entries {
                    mean += e.weight / total * e.delay.mean()?;
                }
                Some(mean)
            }
        }
    }

    /// A short human description for reports: `pareto(0.2 ms, 10)`.
    pub fn describe(&self) -> String {
        match self {
            Delay::Constant { ms } => format!("constant {ms} ms"),
            Delay::Uniform { min_ms, max_ms } => format!("uniform {min_ms}..{max_ms} ms"),
            Delay::Normal { mean_ms, stddev_ms } => {
                format!("normal mean {mean_ms} ms sd {stddev_ms} ms")
            }
            Delay::Exponential { rate_per_ms } => format!("exponential {rate_per_ms}/ms"),
            Delay::Pareto { scale_ms, shape } => {
                format!("pareto scale {scale_ms} ms shape {shape}")
            }
            Delay::Mix(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|e| format!("{} x {}", e.weight, e.delay.describe()))
                    .collect();
                format!("mix [{}]", parts.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        write: Delay,
    }

    fn parse(text: &str) -> Delay {
        toml::from_str::<Holder>(text).unwrap().write
    }

    #[test]
    fn the_design_documents_mixture_syntax_parses() {
        let d = parse(
            "write = { mix = [ { weight = 0.9, pareto = { scale_ms = 0.2, shape = 10.0 } }, { weight = 0.1, exponential = { rate_per_ms = 1.5 } } ] }",
        );
        assert_eq!(
            d,
            Delay::Mix(vec![
                Weighted {
                    weight: 0.9,
                    delay: Delay::Pareto {
                        scale_ms: 0.2,
                        shape: 10.0
                    }
                },
                Weighted {
                    weight: 0.1,
                    delay: Delay::Exponential { rate_per_ms: 1.5 }
                },
            ])
        );
        assert!(d.validate().is_ok());
    }

    #[test]
    fn each_single_distribution_parses_with_integer_or_float_fields() {
        assert_eq!(
            parse("write = { constant = { ms = 5 } }"),
            Delay::constant(5.0)
        );
        assert_eq!(
            parse("write = { uniform = { min_ms = 1, max_ms = 2.5 } }"),
            Delay::Uniform {
                min_ms: 1.0,
                max_ms: 2.5
            }
        );
        assert_eq!(
            parse("write = { normal = { mean_ms = 3, stddev_ms = 1 } }"),
            Delay::Normal {
                mean_ms: 3.0,
                stddev_ms: 1.0
            }
        );
        assert_eq!(
            parse("write = { exponential = { rate_per_ms = 2 } }"),
            Delay::Exponential { rate_per_ms: 2.0 }
        );
    }

    #[test]
    fn unknown_fields_and_bad_parameters_are_refused() {
        assert!(toml::from_str::<Holder>("write = { constant = { msec = 5 } }").is_err());
        assert!(toml::from_str::<Holder>("write = { gamma = { k = 5 } }").is_err());
        assert!(
            parse("write = { uniform = { min_ms = 3, max_ms = 2 } }")
                .validate()
                .is_err()
        );
        assert!(
            parse("write = { exponential = { rate_per_ms = 0 } }")
                .validate()
                .is_err()
        );
        assert!(parse("write = { mix = [] }").validate().is_err());
    }

    fn sample_mean(d: &Delay, n: usize) -> f64 {
        let mut rng = Rng::new(11);
        (0..n).map(|_| d.sample(&mut rng)).sum::<f64>() / n as f64
    }

    #[test]
    fn sample_means_match_the_distributions() {
        let cases = [
            Delay::constant(4.0),
            Delay::Uniform {
                min_ms: 1.0,
                max_ms: 3.0,
            },
            Delay::Normal {
                mean_ms: 10.0,
                stddev_ms: 2.0,
            },
            Delay::Exponential { rate_per_ms: 0.5 },
            Delay::Pareto {
                scale_ms: 0.2,
                shape: 10.0,
            },
            Delay::Mix(vec![
                Weighted {
                    weight: 0.9,
                    delay: Delay::constant(1.0),
                },
                Weighted {
                    weight: 0.1,
                    delay: Delay::constant(11.0),
                },
            ]),
        ];
        for d in cases {
            let want = d.mean().unwrap();
            let got = sample_mean(&d, 40_000);
            assert!(
                (got - want).abs() <= 0.03 * want + 1e-9,
                "{}: sample mean {got}, expected {want}",
                d.describe()
            );
        }
    }

    #[test]
    fn a_wide_normal_is_clamped_at_zero() {
        let d = Delay::Normal {
            mean_ms: 0.0,
            stddev_ms: 5.0,
        };
        let mut rng = Rng::new(5);
        assert!((0..10_000).all(|_| d.sample(&mut rng) >= 0.0));
    }
}
