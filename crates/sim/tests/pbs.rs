//! The PBS reproduction: the shipped mixtures, run on the direct write path as the paper
//! models, agree with its published figures; the forward hop of the replica path costs what
//! it should; k-staleness and the comparison's variants say what they claim.
//!
//! Runs here are shortened (fewer trials, a shorter traffic phase) so that debug builds take
//! seconds; `driftkv sim scenarios/pbs --compare` is the full run of the README's table.

use std::path::Path;

use driftkv_core::WritePath;
use driftkv_sim::report::compare_variants;
use driftkv_sim::{Report, Scenario, run};

/// A shipped PBS scenario, with `trials` trials over a traffic phase sized to them.
fn pbs(file: &str, trials: u32) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/pbs")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut s = Scenario::from_toml_at(&text, &path, &mut |p| std::fs::read_to_string(p)).unwrap();
    s.visibility.trials = trials;
    s.duration_ms = 20_000 + u64::from(trials) * 5;
    s.validate().unwrap();
    s
}

/// The measured probability at `t_ms`.
fn at(report: &Report, t_ms: f64) -> f64 {
    report
        .t_visibility
        .iter()
        .find(|p| p.t_ms == t_ms)
        .and_then(|p| p.probability)
        .unwrap_or_else(|| panic!("no figure at {t_ms} ms"))
}

fn assert_passed(report: &Report) {
    assert!(report.passed(), "{:?}", report.failures());
}

#[test]
fn lnkd_disk_on_the_direct_path_agrees_with_the_paper_and_the_forward_hop_costs_points() {
    let direct = run(&pbs("lnkd_disk.toml", 6_000));
    assert_passed(&direct);
    assert_eq!(direct.cluster.write_path, "direct");
    let (t0, t10) = (at(&direct, 0.0), at(&direct, 10.0));
    // The paper: 43.9 % and 92.5 %. 6,000 reads per t: a standard error under 0.7 points.
    assert!((t0 - 0.439).abs() < 0.02, "t = 0: {t0}");
    assert!((t10 - 0.925).abs() < 0.02, "t = 10 ms: {t10}");
    // The published figures travel into the report.
    assert!(
        direct
            .published
            .iter()
            .any(|p| p.t_ms == 0.0 && p.p == 0.439)
    );

    let mut forwarded = pbs("lnkd_disk.toml", 6_000);
    forwarded.write_path = WritePath::Replica;
    let forwarded = run(&forwarded);
    assert_passed(&forwarded);
    let hop = at(&forwarded, 0.0);
    assert!(
        t0 - hop > 0.03,
        "a write forwarded to one replica, answered from it alone, is fresh less often right after: direct {t0}, forwarded {hop}"
    );
}

#[test]
fn ymmr_agrees_with_the_paper_at_0_and_10_ms() {
    let report = run(&pbs("ymmr.toml", 6_000));
    assert_passed(&report);
    let (t0, t10) = (at(&report, 0.0), at(&report, 10.0));
    assert!((t0 - 0.893).abs() < 0.02, "t = 0: {t0}");
    assert!((t10 - 0.939).abs() < 0.02, "t = 10 ms: {t10}");
}

#[test]
fn wan_keys_have_a_replica_per_datacenter_so_a_third_of_reads_are_fresh_until_the_ocean_is_crossed()
{
    let report = run(&pbs("wan.toml", 3_000));
    assert_passed(&report);
    let t0 = at(&report, 0.0);
    assert!((t0 - 1.0 / 3.0).abs() < 0.03, "t = 0: {t0}");
    assert!(at(&report, 50.0) < 0.4, "nothing crosses before 75 ms");
    assert!(at(&report, 113.0) > 0.99, "crossed by 113 ms");
    // Until the ocean is crossed a write is on its local replica alone: k-staleness is the
    // closed form's.
    let k = report.k_staleness.as_ref().expect("three versions");
    let first = &k.points[0];
    for (measured, closed) in first.within_k.iter().zip(&k.closed_form_without_spread) {
        assert!((measured - closed).abs() < 0.03, "{measured} vs {closed}");
    }
}

#[test]
fn k_staleness_rises_with_k_and_t_and_the_closed_form_is_the_papers() {
    let report = run(&pbs("lnkd_disk.toml", 2_000));
    assert_passed(&report);
    let k = report.k_staleness.as_ref().expect("three versions");
    assert_eq!(k.versions, 3);
    // N = 3, R = W = 1: a read misses a write's one replica with probability 2/3.
    let closed = [1.0 / 3.0, 1.0 - 4.0 / 9.0, 1.0 - 8.0 / 27.0];
    for (got, want) in k.closed_form_without_spread.iter().zip(closed) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    for p in &k.points {
        assert_eq!(p.reads, 2_000, "every trial reads once at every t");
        assert!(
            p.within_k.windows(2).all(|w| w[0] <= w[1]),
            "one of the last k+1 is at least as likely as one of the last k: {p:?}"
        );
    }
    for pair in k.points.windows(2) {
        assert!(
            pair[0].within_k[0] <= pair[1].within_k[0] + 0.02,
            "fresher later: {pair:?}"
        );
    }
    // k = 1 is t-visibility itself.
    for (p, t) in k.points.iter().zip(&report.t_visibility) {
        assert_eq!(Some(p.within_k[0]), t.probability);
    }
    // Writes spread past their one replica by themselves: far above the closed form.
    assert!(k.points[0].within_k[1] > k.closed_form_without_spread[1] + 0.15);
}

#[test]
fn healing_makes_later_reads_fresher_through_the_repairs_of_earlier_ones() {
    let s = pbs("lnkd_disk.toml", 2_000);
    let variants = compare_variants(&s);
    let names: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["direct, no heal", "replica, no heal", "direct, healing"]
    );
    let (_, healed) = &variants[2];
    assert!(healed.read_repair && healed.hinted_handoff && healed.anti_entropy);
    assert_eq!(healed.write_path, WritePath::Direct);
    let (_, other) = &variants[1];
    assert_eq!(other.write_path, WritePath::Replica);
    assert!(!other.read_repair && !other.anti_entropy);
    let plain = run(&variants[0].1);
    let healed = run(&variants[2].1);
    assert_passed(&healed);
    assert!(
        at(&healed, 5.0) > at(&plain, 5.0) + 0.1,
        "reads at 0, 1 and 2 ms repaired what the 5 ms read finds: {} vs {}",
        at(&healed, 5.0),
        at(&plain, 5.0)
    );
}

#[test]
fn visibility_settings_are_checked() {
    let base = "duration_ms = 1000\n[visibility]\n";
    for (bad, says) in [
        ("versions = 0", "visibility.versions"),
        ("versions = 17", "visibility.versions"),
        ("version_gap_ms = -1", "version_gap_ms"),
        (
            "replicas_in_distinct_regions = true",
            "needs every node in [regions]",
        ),
        (
            "published = [ { t_ms = 0, p = 1.5, source = \"x\" } ]",
            "visibility.published",
        ),
    ] {
        let err = Scenario::from_toml(&format!("{base}{bad}\n")).unwrap_err();
        assert!(err.to_string().contains(says), "{bad}: {err}");
    }
}
