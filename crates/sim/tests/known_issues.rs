//! Bugs the simulator found in the core, kept as regression tests: each failed before its fix.

use driftkv_sim::{Scenario, run};

/// n4 is cut off alone twice, each time long enough for its failure detector to call every
/// other node down. With W = 1 it keeps taking writes as a fallback for keys whose primaries
/// are all "down" (sloppy quorum). After each heal its fallback copies are handed to the
/// primaries and deleted. Coordinating from empty copies in the second isolation, it would
/// reissue the dots and PN-counter totals it used the first time, so those acknowledged writes
/// would vanish wherever the first ones were seen (Riak's kv679, through handoff). The core
/// prevents it by taking a new incarnation when it hands over copies of its own writes.
const ISOLATED_TWICE: &str = r#"
name = "isolated_twice"
seed = 1
nodes = 4
n = 3
r = "one"
w = "one"
partitions = 16
duration_ms = 16000
anti_entropy_interval_ms = 200

[[faults]]
at_ms = 1000
until_ms = 6000
split = [["n4"]]

[[faults]]
at_ms = 9000
until_ms = 14000
split = [["n4"]]

[workload]
rate_per_s = 200
keys = 5
mix = { counter_add = 0.5, put = 0.3, set_add = 0.2 }
register_modes = ["siblings"]

[visibility]
trials = 0
"#;

#[test]
fn a_node_isolated_twice_never_reissues_dots_or_counter_totals() {
    let report = run(&Scenario::from_toml(ISOLATED_TWICE).unwrap());
    assert_eq!(report.checks["dots_issued_once"], "pass");
    assert_eq!(report.checks["counters_match_increments"], "pass");
    assert!(report.passed(), "{:#?}", report.failures());
}
