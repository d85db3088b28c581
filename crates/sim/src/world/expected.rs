//! How much a run is expected to record, from its scenario.

use super::time::MS_PER_S;
use crate::scenario::Scenario;

/// How much a run is expected to record, from its scenario: the oracle's tables and the
/// stores are sized for it at the start, since growing a large one copies (or rehashes) all of
/// it. An estimate only (a run may record more, and grows then); capped, so a scenario of
/// absurd rates does not reserve absurd memory.
pub(super) struct Expected {
    pub(super) keys: usize,
    pub(super) keys_per_node: usize,
    pub(super) writes: usize,
    pub(super) trials: usize,
}

/// Each trial writes its key once, then each measured version.
const SETUP_WRITES_PER_TRIAL: f64 = 1.0;

impl Expected {
    const CAP: usize = 1 << 22;

    pub(super) fn of(sc: &Scenario) -> Expected {
        let trials = sc.visibility.trial_count();
        let mix = &sc.workload.mix;
        let total = mix.get
            + mix.put
            + mix.counter_add
            + mix.counter_get
            + mix.set_add
            + mix.set_remove
            + mix.set_get;
        let put_share = if total > 0.0 { mix.put / total } else { 0.0 };
        let ops = sc.workload.rate_per_s.max(0.0) * sc.duration_ms as f64 / MS_PER_S;
        let cap = |x: f64| (x.max(0.0) as usize).min(Self::CAP);
        // A key per trial beside the workload's.
        let keys = cap(sc.workload.keys as f64 + trials as f64);
        let replicas = sc.n.min(sc.nodes.max(1)) as f64 / sc.nodes.max(1) as f64;
        Expected {
            keys,
            keys_per_node: cap(keys as f64 * replicas),
            writes: cap(ops * put_share
                + (SETUP_WRITES_PER_TRIAL + sc.visibility.versions as f64) * trials as f64),
            trials: trials.min(Self::CAP),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The sizes a run is prepared for are those the classic scenario then records: every
    /// key and write counted, none far over (the estimate is what spares the regrowth).
    #[test]
    fn the_expected_sizes_are_what_a_run_records() {
        let sc = crate::Scenario::from_toml(include_str!("../../../../scenarios/classic.toml"))
            .expect("the shipped scenario parses");
        let expect = super::Expected::of(&sc);
        let run = crate::world::Sim::new(&sc).run(&mut |_| {});
        let (keys, writes) = (run.hist.keys.len(), run.hist.writes.len());
        assert!(
            (keys..=keys + keys / 10).contains(&expect.keys),
            "expected {} keys, recorded {keys}",
            expect.keys
        );
        assert!(
            (writes * 9 / 10..=writes * 11 / 10).contains(&expect.writes),
            "expected {} writes, recorded {writes}",
            expect.writes
        );
        assert_eq!(expect.trials, run.trials.len());
    }
}
