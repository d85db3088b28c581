//! Joins and leaves under load: a node joins a running cluster and another leaves it while
//! clients write every data type over a lossy network. Every checker must pass on the final
//! ring, the data must end up on the new primaries only (the node that left holds nothing, the
//! one that joined holds its share), and a run replays byte for byte.

use driftkv_sim::world::{Outcomes, Sim};
use driftkv_sim::{Scenario, run};

/// Four nodes at the start; n5 joins at 600 ms and n2 leaves at 1200 ms, with traffic going on.
const GROW_SHRINK: &str = r#"
name = "membership_test"
duration_ms = 1800
warmup_ms = 1000
nodes = 5
n = 3
r = "quorum"
w = "quorum"
partitions = 16
request_timeout_ms = 400
client_timeout_ms = 1500
anti_entropy_interval_ms = 200

[delays]
write = { mix = [ { weight = 0.9, pareto = { scale_ms = 0.3, shape = 3.0 } }, { weight = 0.1, exponential = { rate_per_ms = 0.1 } } ] }
ack = { exponential = { rate_per_ms = 0.5 } }
read_request = { uniform = { min_ms = 0.1, max_ms = 3.0 } }
read_response = { normal = { mean_ms = 1.0, stddev_ms = 0.5 } }
client = { uniform = { min_ms = 0.0, max_ms = 1.0 } }
disk_sync = { uniform = { min_ms = 0.0, max_ms = 1.5 } }

[network]
loss = 0.02
duplicate = 0.01
reorder = 0.02

[[faults]]
at_ms = 600
join = "n5"

[[faults]]
at_ms = 1200
leave = "n2"

[workload]
rate_per_s = 250
keys = 12
popularity = { zipf = 1.0 }
mix = { get = 0.2, put = 0.3, counter_add = 0.15, counter_get = 0.05, set_add = 0.15, set_remove = 0.1, set_get = 0.05 }
register_modes = ["siblings", "lww"]
blind_writes = 0.3
set_members = 4
counter_deltas = [1, 2, -1]

[visibility]
t_ms = [0, 5]
trials = 4
"#;

fn scenario(seed: u64) -> Scenario {
    let mut s = Scenario::from_toml(GROW_SHRINK).expect("the test scenario is valid");
    s.seed = seed;
    s
}

fn outcomes(s: &Scenario) -> Outcomes {
    Sim::new(s).run(&mut |_| {})
}

/// Where every key's records are at the end, judged against its final primaries.
fn assert_placed_on_new_primaries(o: &Outcomes, seed: u64) {
    let (n2, n5) = (1, 4);
    let states: Vec<&str> = o.nodes_at_end.iter().map(|n| n.state).collect();
    assert_eq!(
        states,
        ["member", "left", "member", "member", "member"],
        "seed {seed}"
    );
    assert_eq!(
        o.nodes_at_end[n2].records, 0,
        "seed {seed}: n2 left but holds data"
    );
    assert!(
        o.nodes_at_end[n5].records > 0,
        "seed {seed}: n5 joined but holds nothing"
    );
    let mut n5_primary_of = 0;
    let mut held = 0;
    for (slot, rec) in o.hist.keys.iter().enumerate() {
        assert!(
            !rec.primaries.contains(&n2),
            "seed {seed}: {:?} still has n2, which left, as a primary",
            rec.key
        );
        assert_eq!(rec.primaries.len(), 3, "seed {seed}: {:?}", rec.key);
        let holders = &o.holders[slot];
        assert!(
            holders.iter().all(|h| rec.primaries.contains(h)),
            "seed {seed}: {:?} is held by {holders:?}, its primaries are {:?}",
            rec.key,
            rec.primaries
        );
        if o.final_objects[slot].is_some() {
            held += 1;
            // Every primary holds the key (they converged), the joiner included.
            assert_eq!(
                holders,
                &rec.primaries_sorted(),
                "seed {seed}: {:?} is not on every primary",
                rec.key
            );
            if rec.primaries.contains(&n5) {
                n5_primary_of += 1;
            }
        }
    }
    assert!(held > 30, "seed {seed}: only {held} keys hold data");
    assert!(
        n5_primary_of > 0 && o.nodes_at_end[n5].records == n5_primary_of,
        "seed {seed}: n5 is a primary of {n5_primary_of} written keys and holds {} records",
        o.nodes_at_end[n5].records
    );
}

/// The primaries in node order, as `holders` lists them.
trait Sorted {
    fn primaries_sorted(&self) -> Vec<usize>;
}

impl Sorted for driftkv_sim::history::KeyRec {
    fn primaries_sorted(&self) -> Vec<usize> {
        let mut p = self.primaries.clone();
        p.sort_unstable();
        p
    }
}

#[test]
fn a_join_and_a_leave_under_load_keep_every_write_on_the_new_primaries() {
    let s = scenario(1);
    // One run, judged for placement and then reported.
    let o = outcomes(&s);
    assert_placed_on_new_primaries(&o, 1);
    let findings = driftkv_sim::check::run_checks(&s, &o);
    let report = driftkv_sim::Report::build(&s, o, findings);
    assert!(report.passed(), "{:#?}", report.failures());
    assert!(
        report.ops.values().map(|o| o.ok).sum::<u64>() > 300,
        "the workload hardly ran: {:?}",
        report.ops
    );
    let m = report.membership.as_ref().expect("a membership summary");
    assert_eq!(m.members_at_start, ["n1", "n2", "n3", "n4"]);
    assert_eq!(m.members_at_end, ["n1", "n3", "n4", "n5"]);
    assert!(m.keys_transferred > 0, "nothing was transferred");
    assert_eq!(m.keys_off_their_primaries, 0);
    let timeline: Vec<&str> = report.timeline.iter().map(|e| e.what.as_str()).collect();
    for needle in ["n5 boots and joins", "n2 is told to leave", "n2 is drained"] {
        assert!(
            timeline.iter().any(|w| w.starts_with(needle)),
            "{needle:?} not in the timeline {timeline:?}"
        );
    }
    assert!(report.to_text().contains("n2 left (0 records)"));
}

#[test]
fn the_run_replays_byte_for_byte() {
    let s = scenario(3);
    let a = run(&s);
    let b = run(&s);
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.to_text(), b.to_text());
    let mut other = s.clone();
    other.seed = 4;
    assert_ne!(a.to_json(), run(&other).to_json(), "the seed matters");
}

#[test]
fn ten_seeds_pass_every_check_and_place_data_on_the_new_primaries() {
    for seed in 11..21 {
        let s = scenario(seed);
        let o = outcomes(&s);
        let findings = driftkv_sim::check::run_checks(&s, &o);
        let failed: Vec<_> = findings
            .checks
            .iter()
            .filter(|(_, v)| *v != "pass")
            .collect();
        assert!(failed.is_empty(), "seed {seed}: {failed:#?}");
        assert_placed_on_new_primaries(&o, seed);
    }
}

#[test]
fn a_node_that_leaves_while_crashed_leaves_once_it_is_back() {
    let mut s = scenario(5);
    let crash = driftkv_sim::scenario::Fault {
        at_ms: 1000,
        until_ms: Some(1500),
        crash: Some("n2".into()),
        ..Default::default()
    };
    s.faults.push(crash);
    s.validate().unwrap();
    let report = run(&s);
    assert!(report.passed(), "{:#?}", report.failures());
    let timeline: Vec<&str> = report.timeline.iter().map(|e| e.what.as_str()).collect();
    assert!(
        timeline
            .iter()
            .any(|w| w.starts_with("n2 is told to leave while down")),
        "{timeline:?}"
    );
    let m = report.membership.expect("a membership summary");
    assert_eq!(m.members_at_end, ["n1", "n3", "n4", "n5"]);
    assert_eq!(m.nodes[1].state, "left");
    assert_eq!(m.nodes[1].records, 0);
}

#[test]
fn the_shipped_grow_shrink_scenario_passes() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/grow_shrink.toml"
    ))
    .unwrap();
    let s = Scenario::from_toml(&text).unwrap();
    let report = run(&s);
    assert!(report.passed(), "{:#?}", report.failures());
    let m = report.membership.expect("a membership summary");
    assert_eq!(m.members_at_end, ["n1", "n3", "n4", "n5"]);
    assert_eq!(m.keys_off_their_primaries, 0);
}
