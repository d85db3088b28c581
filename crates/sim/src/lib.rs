//! driftkv's consistency lab: a deterministic simulator that runs N instances of the
//! production node core (`driftkv_core::Node`, not a model of it) on virtual time.
//!
//! One seed drives everything random: message delays per kind (constant, uniform, normal,
//! exponential, Pareto and weighted mixtures), loss, duplication, reordering, splits, crashes
//! with restart from durable state, clock skew and drift, and the client workload. The same
//! scenario and seed give the same run, byte for byte: any failing seed replays exactly.
//!
//! A run measures what eventual consistency looks like (PBS t-visibility, the inconsistency
//! window per write, stale reads, latency percentiles, conflicts, LWW losses, repair traffic)
//! and checks what must hold (convergence, no acknowledged write lost unless causally
//! replaced, siblings only for concurrent writes, CRDT values equal the operations applied).
//!
//! ```
//! let scenario = driftkv_sim::Scenario::from_toml("duration_ms = 200\nwarmup_ms = 500").unwrap();
//! let report = driftkv_sim::run(&scenario);
//! assert!(report.passed(), "{:?}", report.failures());
//! ```
//!
//! Pure like the core: no sockets, no threads, no host clock, no unseeded randomness.

#![forbid(unsafe_code)]

pub mod check;
pub mod dist;
pub mod history;
pub mod measure;
pub mod queue;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod svg;
pub mod workload;
pub mod world;

pub use dist::Delay;
pub use report::{Report, SweepRow, sweep_table};
pub use scenario::{MembershipMode, Scenario, ScenarioError};
pub use world::Progress;

/// Runs a scenario to the end and reports.
pub fn run(scenario: &Scenario) -> Report {
    run_with_progress(scenario, &mut |_| {})
}

/// Runs a scenario, calling `progress` every few thousand events (for an indicator).
pub fn run_with_progress(scenario: &Scenario, progress: &mut dyn FnMut(&Progress)) -> Report {
    let outcomes = world::Sim::new(scenario).run(progress);
    let findings = check::run_checks(scenario, &outcomes);
    Report::build(scenario, outcomes, findings)
}

/// The scenario with R and W replaced, for sweeps.
pub fn with_levels(scenario: &Scenario, r: &str, w: &str) -> Scenario {
    let mut s = scenario.clone();
    s.r = r.to_string();
    s.w = w.to_string();
    s
}

/// Every (R, W) pair from 1 to the effective N, in order: what `driftkv sim --sweep` runs.
pub fn sweep_levels(scenario: &Scenario) -> Vec<(String, String)> {
    let n = scenario.n.min(scenario.nodes);
    let mut out = Vec::new();
    for r in 1..=n {
        for w in 1..=n {
            out.push((r.to_string(), w.to_string()));
        }
    }
    out
}
