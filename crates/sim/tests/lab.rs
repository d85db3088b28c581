//! The lab's promises: a run replays byte for byte from its seed; the checkers catch real
//! losses and divergence (and name the seed); the measurements say what the theory says
//! (strict quorums are never stale, R = W = 1 is, LWW loses writes that siblings keep).

use driftkv_sim::{Delay, Scenario, run};

const SMALL: &str = r#"
seed = 9
duration_ms = 1500
warmup_ms = 1000
nodes = 3
n = 3
r = "one"
w = "one"
partitions = 16

[delays]
write = { exponential = { rate_per_ms = 0.2 } }
ack = { exponential = { rate_per_ms = 0.2 } }
read_request = { exponential = { rate_per_ms = 1.0 } }
read_response = { exponential = { rate_per_ms = 1.0 } }

[network]
loss = 0.01

[workload]
rate_per_s = 300
keys = 10
mix = { get = 0.4, put = 0.4, counter_add = 0.1, set_add = 0.1 }
register_modes = ["siblings", "lww"]

[visibility]
t_ms = [0, 2, 10, 100]
trials = 40
setup_gap_ms = 300
"#;

fn small() -> Scenario {
    Scenario::from_toml(SMALL).unwrap()
}

#[test]
fn the_same_seed_replays_byte_for_byte_and_another_seed_does_not() {
    let s = small();
    let a = run(&s).to_json();
    let b = run(&s).to_json();
    assert_eq!(a, b, "same scenario, same seed, different report");
    let mut other = s.clone();
    other.seed += 1;
    assert_ne!(a, run(&other).to_json());
    // And the JSON carries the contract's series.
    let json: serde_json::Value = serde_json::from_str(&a).unwrap();
    for key in [
        "t_visibility",
        "inconsistency_window_ms",
        "stale_read_ratio",
        "read_latency_ms",
        "write_latency_ms",
        "checks",
    ] {
        assert!(json.get(key).is_some(), "report.json lacks {key}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["read_latency_ms"][key].is_number());
        assert!(json["write_latency_ms"][key].is_number());
    }
    assert_eq!(json["t_visibility"][0]["t_ms"], 0.0);
    assert!(json["t_visibility"][0]["probability"].is_number());
    assert!(json["checks"].as_object().unwrap().len() >= 6);
}

#[test]
fn wiping_every_replica_loses_acknowledged_writes_and_the_checker_says_so_with_the_seed() {
    // Durability "none" and all three replicas crashing at once: what was acknowledged is gone
    // from every disk. The checkers must notice (and this is not a bug of the store: every
    // replica of the writes failed).
    let mut s = small();
    s.durability = "none".into();
    s.network.loss = 0.0;
    for node in ["n1", "n2", "n3"] {
        s.faults.push(driftkv_sim::scenario::Fault {
            at_ms: 1_000,
            until_ms: Some(1_100),
            crash: Some(node.into()),
            ..Default::default()
        });
    }
    let report = run(&s);
    assert!(!report.passed());
    let lost = &report.checks["acknowledged_writes_survive"];
    assert!(lost.starts_with("FAIL (seed 9)"), "{lost}");
    assert!(lost.contains("is gone"), "{lost}");
    let counters = &report.checks["counters_match_increments"];
    assert!(counters.starts_with("FAIL (seed 9)"), "{counters}");
    // The timeline shows what happened.
    assert!(
        report
            .timeline
            .iter()
            .any(|e| e.what.contains("n2 crashed"))
    );
}

#[test]
fn without_any_repair_a_lossy_network_leaves_replicas_diverged() {
    let mut s = small();
    s.read_repair = false;
    s.hinted_handoff = false;
    s.anti_entropy = false;
    s.network.loss = 0.2;
    s.settle.max_ms = 2_000;
    let report = run(&s);
    let verdict = &report.checks["convergence"];
    assert!(verdict.starts_with("FAIL (seed 9)"), "{verdict}");
    assert!(verdict.contains("still differ"), "{verdict}");
    assert_eq!(report.convergence.converged_after_ms, None);
    // Everything else still holds: divergence is not loss.
    assert_eq!(report.checks["siblings_only_for_concurrent_writes"], "pass");
}

#[test]
fn strict_quorums_are_never_stale_and_single_replica_quorums_are() {
    let mut slow = small();
    slow.network.loss = 0.0;
    // Slow replication, fast reads: the window where a read misses the write is wide.
    slow.delays.write = Delay::Exponential { rate_per_ms: 0.05 };
    let one = run(&slow);
    assert!(one.passed(), "{:?}", one.failures());
    let p0 = one.t_visibility[0].probability.unwrap();
    let p100 = one.t_visibility[3].probability.unwrap();
    assert!(
        p0 < 0.9,
        "R=W=1 with 20 ms replication should be stale often at t=0: {p0}"
    );
    assert!(p100 > p0, "staleness fades with t: {p0} then {p100}");

    let strict = driftkv_sim::with_levels(&slow, "2", "2");
    let two = run(&strict);
    assert!(two.passed(), "{:?}", two.failures());
    for point in &two.t_visibility {
        assert_eq!(
            point.probability,
            Some(1.0),
            "R+W>N read missed an acknowledged write at t={}",
            point.t_ms
        );
    }
    assert_eq!(two.stale_read_ratio, 0.0);
    assert!(one.stale_read_ratio > 0.0);
}

#[test]
fn session_reads_never_go_back_and_the_same_sessions_without_tokens_do() {
    // Registers only, spread over 10 client sessions.
    let mut sc = Scenario::from_toml(&SMALL.replace(
        "mix = { get = 0.4, put = 0.4, counter_add = 0.1, set_add = 0.1 }",
        "mix = { get = 0.6, put = 0.4 }\nsessions = 10",
    ))
    .unwrap();
    sc.network.loss = 0.0;
    sc.duration_ms = 4000;
    sc.workload.rate_per_s = 600.0;
    // Slow replication: clients come back to their keys through another node before it lands.
    sc.delays.write = Delay::Exponential { rate_per_ms: 0.05 };

    let with = run(&sc);
    assert!(with.passed(), "{:?}", with.failures());
    let s = with.sessions.clone().expect("sessions are reported");
    assert!(s.tokens && s.reads > 1000, "{s:?}");
    assert_eq!(s.went_back, 0, "a session read went back in time: {s:?}");

    let mut watched = sc.clone();
    watched.workload.session_tokens = false;
    let without = run(&watched);
    let w = without.sessions.clone().expect("sessions are reported");
    assert!(!w.tokens);
    assert!(
        w.went_back > 0,
        "R=W=1 over slow replication: some reads of the same sessions go back: {w:?}"
    );
    // Session tokens cost latency (a read waits for a caught-up replica), never correctness.
    assert!(without.passed(), "{:?}", without.failures());
}

#[test]
fn lww_loses_concurrent_writes_that_siblings_keep() {
    let mut s = small();
    s.network.loss = 0.0;
    s.workload.keys = 2;
    s.workload.blind_writes = 1.0;
    s.workload.mix.get = 0.2;
    s.workload.mix.put = 0.8;
    s.workload.mix.counter_add = 0.0;
    s.workload.mix.set_add = 0.0;
    s.clock_skew.offset_ms_max = 30.0;
    let report = run(&s);
    assert!(report.passed(), "{:?}", report.failures());
    let c = &report.conflicts;
    assert!(c.writes_lost_by_lww > 0, "{c:?}");
    assert!(c.writes_lost_by_lww <= c.lww_acknowledged_writes);
    assert!(
        c.sibling_reads > 0,
        "blind concurrent writes show as siblings: {c:?}"
    );
    assert!(c.concurrent_merges > 0);
}

fn scenario_files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    names
}

/// The shipped scenarios, and the chaos variants of `scenarios/sweeps/` (each extends
/// `chaos.toml`), as the CLI reads them.
#[test]
fn shipped_scenarios_parse_and_pass_when_shortened() {
    let shipped = scenario_files("../../scenarios");
    assert!(shipped.len() >= 5, "{shipped:?}");
    let sweeps = scenario_files("../../scenarios/sweeps");
    assert!(sweeps.len() >= 5, "{sweeps:?}");
    for path in shipped.into_iter().chain(sweeps) {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut s = Scenario::from_toml_at(&text, &path, &mut |p| std::fs::read_to_string(p))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The full runs belong to the release contract check; here, their first seconds.
        let scale = 1_500.0 / s.duration_ms as f64;
        s.duration_ms = 1_500;
        for f in &mut s.faults {
            f.at_ms = (f.at_ms as f64 * scale) as u64;
            f.until_ms = f
                .until_ms
                .map(|u| ((u as f64 * scale) as u64).max(f.at_ms + 1));
        }
        s.visibility.trials = s.visibility.trials.min(5);
        s.visibility.setup_gap_ms = 200;
        let report = run(&s);
        assert!(
            report.passed(),
            "{}: {:#?}",
            path.display(),
            report.failures()
        );
    }
}
