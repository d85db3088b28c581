//! How fast the simulator runs the real core: simulated node-to-node messages (and events) per
//! second of wall time, on the shipped classic scenario, a fault-heavy variant of it, a
//! thousand-node cluster with static membership and with gossip, and a million operations.
//!
//! Run with `cargo bench -p driftkv-sim` (release build; prints a small table), or
//! `cargo bench -p driftkv-sim -- large` for the cases whose name holds "large" (add `--once`
//! to run each case once, for a profiler).

use std::time::Instant;

/// The allocator the `driftkv` binary runs with, so the figures are the CLI's.
#[global_allocator]
static ALLOCATOR: driftkv_alloc::Allocator = driftkv_alloc::Allocator;

use driftkv_sim::{MembershipMode, Scenario, run};

const CLASSIC: &str = include_str!("../../../scenarios/classic.toml");

fn measure(name: &str, scenario: &Scenario, runs: usize) {
    // `cargo bench -p driftkv-sim -- large` runs only the cases whose name holds "large".
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    // The small scenarios: one warm-up run, then the best of three (the figure is the
    // simulator's speed, not the machine's noise). The large ones run once, and every case
    // does with `--once` (for a profiler or an instruction counter).
    let runs = if std::env::args().any(|a| a == "--once") {
        1
    } else {
        runs
    };
    if runs > 1 {
        let _ = run(scenario);
    }
    let mut best: Option<(f64, u64, u64, f64, u64)> = None;
    for _ in 0..runs {
        let started = Instant::now();
        let report = run(scenario);
        let secs = started.elapsed().as_secs_f64();
        assert!(report.passed(), "{name}: {:?}", report.failures());
        // The whole simulated span: warm-up, traffic, and the settling until convergence.
        let virtual_ms =
            (scenario.warmup_ms + scenario.duration_ms) as f64 + report.convergence.settle_ms;
        // The workload's operations (the visibility trials' writes and reads are not counted).
        let ops = report.ops.values().map(|o| o.issued).sum::<u64>();
        let sample = (
            secs,
            report.messages_total.delivered,
            report.events,
            virtual_ms / 1000.0,
            ops,
        );
        if best.is_none_or(|b| secs < b.0) {
            best = Some(sample);
        }
    }
    let (secs, messages, events, virtual_s, ops) = best.expect("at least one run");
    println!(
        "{name:<30} {virtual_s:>7.1} s virtual in {secs:>6.3} s wall ({:>6.1}x): {ops:>8} workload ops, {messages:>8} messages, {:>10.0} messages/s, {:>10.0} events/s",
        virtual_s / secs,
        messages as f64 / secs,
        events as f64 / secs,
    );
}

fn main() {
    let classic = Scenario::from_toml(CLASSIC).expect("the shipped scenario parses");
    measure("classic (3 nodes, 400 op/s)", &classic, 3);

    let mut busy = classic.clone();
    busy.nodes = 5;
    busy.workload.rate_per_s = 2_000.0;
    busy.workload.keys = 2_000;
    busy.visibility.trials = 0;
    busy.network.loss = 0.01;
    busy.network.duplicate = 0.01;
    busy.chaos.crashes = 2;
    busy.chaos.splits = 1;
    busy.r = "quorum".into();
    busy.w = "quorum".into();
    busy.anti_entropy_interval_ms = 500;
    measure("busy (5 nodes, 2000 op/s)", &busy, 3);

    // A thousand-node cluster: what must stay cheap is everything a node does per tick and
    // per ring (building it, walking its partitions), which a few nodes never show.
    let mut large = classic.clone();
    large.nodes = 1_000;
    large.partitions = 1_024;
    large.membership = MembershipMode::Static;
    large.duration_ms = 5_000;
    large.workload.rate_per_s = 2_000.0;
    large.workload.keys = 10_000;
    large.visibility.trials = 0;
    measure("large (1000 nodes, static)", &large, 1);

    let mut gossip = large.clone();
    gossip.membership = MembershipMode::Gossip;
    measure("large (1000 nodes, gossip)", &gossip, 1);

    // A million-operation study: the classic cluster at 10,000 op/s for 100 s over 100,000
    // keys (the oracle follows every write to the end, and every checker runs).
    let mut million = classic.clone();
    million.duration_ms = 100_000;
    million.workload.rate_per_s = 10_000.0;
    million.workload.keys = 100_000;
    million.visibility.trials = 0;
    measure("large (3 nodes, 1M operations)", &million, 1);
}
