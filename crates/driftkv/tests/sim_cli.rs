//! `driftkv sim` as a user runs it: the report files and their contract keys, byte-identical
//! reruns, a failing check that exits non-zero naming the seed, seed ranges and R/W sweeps.

use std::path::Path;
use std::process::{Command, Output};

const SMALL: &str = r#"
name = "cli"
duration_ms = 800
warmup_ms = 1000
nodes = 3
r = "one"
w = "one"
partitions = 16

[delays]
write = { mix = [ { weight = 0.9, pareto = { scale_ms = 0.2, shape = 10.0 } }, { weight = 0.1, exponential = { rate_per_ms = 1.5 } } ] }

[workload]
rate_per_s = 200
keys = 10
mix = { get = 0.5, put = 0.3, counter_add = 0.1, set_add = 0.1 }

[visibility]
t_ms = [0, 1, 10]
trials = 5
setup_gap_ms = 200
"#;

/// All three nodes of `SMALL` crash together near the end of its traffic.
const EVERY_NODE_CRASHES: &str = r#"
[[faults]]
at_ms = 700
until_ms = 750
crash = "n1"
[[faults]]
at_ms = 700
until_ms = 750
crash = "n2"
[[faults]]
at_ms = 700
until_ms = 750
crash = "n3"
"#;

fn driftkv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftkv"))
        .args(args)
        .output()
        .expect("the driftkv binary runs")
}

fn write_scenario(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn sim_writes_a_deterministic_report_with_the_contract_keys_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), "small.toml", SMALL);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let run = driftkv(&["sim", &scenario, "--out", out.to_str().unwrap()]);
        assert!(run.status.success(), "{}", text(&run.stderr));
        assert!(text(&run.stdout).contains("t-visibility"));
    }
    let json_a = std::fs::read(a.join("report.json")).unwrap();
    assert_eq!(json_a, std::fs::read(b.join("report.json")).unwrap());
    let report: serde_json::Value = serde_json::from_slice(&json_a).unwrap();
    for key in [
        "t_visibility",
        "inconsistency_window_ms",
        "stale_read_ratio",
        "read_latency_ms",
        "write_latency_ms",
        "checks",
    ] {
        assert!(report.get(key).is_some(), "report.json lacks {key}");
    }
    let checks = report["checks"].as_object().unwrap();
    assert!(!checks.is_empty() && checks.values().all(|v| v == "pass"));
    assert_eq!(report["t_visibility"].as_array().unwrap().len(), 3);
    assert!(a.join("report.txt").exists());
    let svg = std::fs::read_to_string(a.join("t_visibility.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
}

#[test]
fn a_failing_check_exits_non_zero_and_names_the_seed_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    // Every replica loses its unsynced data at once under durability "none".
    let doomed = format!("{SMALL}\n{EVERY_NODE_CRASHES}").replace(
        "partitions = 16",
        "partitions = 16\ndurability = \"none\"\nseed = 77",
    );
    let scenario = write_scenario(dir.path(), "doomed.toml", &doomed);
    let run = driftkv(&["sim", &scenario]);
    assert!(!run.status.success());
    let err = text(&run.stderr);
    assert!(err.contains("seed 77"), "{err}");
    assert!(
        err.contains("--seed 77"),
        "the replay command is printed: {err}"
    );
    assert!(text(&run.stdout).contains("FAIL (seed 77)"));
}

#[test]
fn seed_ranges_and_sweeps_run_and_summarise() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), "small.toml", SMALL);
    let run = driftkv(&["sim", &scenario, "--seeds", "1..3", "--quiet"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains("3 seeds (1..=3) of cli: 3 passed, 0 failed"),
        "{}",
        text(&run.stdout)
    );
    let two = SMALL.replace("nodes = 3", "nodes = 2\nn = 2");
    let scenario = write_scenario(dir.path(), "two.toml", &two);
    let out = dir.path().join("sweep");
    let run = driftkv(&[
        "sim",
        &scenario,
        "--sweep",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let table = text(&run.stdout);
    let rows = table
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(rows, 4, "one row per (R, W) with N = 2:\n{table}");
    assert!(out.join("t_visibility_sweep.svg").exists());
    assert!(out.join("r2-w2").join("report.json").exists());
}

#[test]
fn a_bad_scenario_is_refused_with_the_field_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), "bad.toml", "duration_ms = 10\nr = \"most\"\n");
    let run = driftkv(&["sim", &scenario]);
    assert!(!run.status.success());
    let err = text(&run.stderr);
    assert!(err.contains("bad.toml") && err.contains("r:"), "{err}");
}

#[test]
fn a_directory_of_scenarios_extending_one_base_is_swept_whole_and_fails_if_one_seed_does() {
    let dir = tempfile::tempdir().unwrap();
    write_scenario(dir.path(), "base.toml.in", SMALL);
    let variants = dir.path().join("variants");
    std::fs::create_dir(&variants).unwrap();
    write_scenario(
        &variants,
        "a_fine.toml",
        "extends = \"../base.toml.in\"\nname = \"fine\"\nnodes = 4\n",
    );
    write_scenario(
        &variants,
        "b_quorums.toml",
        "extends = \"../base.toml.in\"\nname = \"quorums\"\nr = \"quorum\"\nw = \"quorum\"\n",
    );
    let dir_arg = variants.to_str().unwrap();
    let run = driftkv(&["sim", dir_arg, "--seeds", "1..2", "--quiet"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = text(&run.stdout);
    assert!(out.contains("2 seeds (1..=2) of fine: 2 passed"), "{out}");
    assert!(
        out.contains("2 seeds (1..=2) of quorums: 2 passed"),
        "{out}"
    );
    assert!(out.contains("2 scenarios of"), "{out}");

    // One variant whose every replica loses its data: the sweep goes on, then fails naming it.
    write_scenario(
        &variants,
        "c_doomed.toml",
        &format!(
            "extends = \"../base.toml.in\"\nname = \"doomed\"\ndurability = \"none\"\n\
             {EVERY_NODE_CRASHES}"
        ),
    );
    let run = driftkv(&["sim", dir_arg, "--seeds", "1..2", "--quiet"]);
    assert!(!run.status.success());
    let out = text(&run.stdout);
    assert!(out.contains("of doomed: 0 passed, 2 failed"), "{out}");
    assert!(
        out.contains("c_doomed.toml --seed 1"),
        "the replay names the file: {out}"
    );
    assert!(
        out.contains("2 with every seed passing, 1 with failures"),
        "{out}"
    );
    assert!(text(&run.stderr).contains("c_doomed.toml"));

    // A directory takes --seeds only.
    let run = driftkv(&["sim", dir_arg, "--quiet"]);
    assert!(!run.status.success());
    assert!(text(&run.stderr).contains("only --seeds"));
}

#[test]
fn the_shipped_data_types_scenario_passes_a_few_seeds_and_reports_its_checks() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/data_types.toml");
    let scenario = scenario.to_str().unwrap();
    let run = driftkv(&["sim", scenario, "--seeds", "1..3", "--quiet"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains("3 seeds (1..=3) of data_types: 3 passed, 0 failed"),
        "{}",
        text(&run.stdout)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dt");
    let run = driftkv(&[
        "sim",
        scenario,
        "--seed",
        "4",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for check in [
        "map_fields_match_history",
        "expired_values_stay_gone",
        "deletes_remove_what_they_saw",
    ] {
        assert_eq!(report["checks"][check], "pass", "{check}");
    }
    assert!(report["data_types"]["nx_double_success_rate"].is_number());
    assert!(text(&run.stdout).contains("set if not exists"));
}

#[test]
fn compare_runs_each_scenario_beside_the_other_path_and_healing_and_writes_one_plot() {
    let dir = tempfile::tempdir().unwrap();
    let published = "published = [ { t_ms = 0, p = 0.5, source = \"a paper\" } ]\n";
    let scenario = write_scenario(
        dir.path(),
        "small.toml",
        &format!("{SMALL}versions = 2\n{published}"),
    );
    let out = dir.path().join("cmp");
    let o = driftkv(&[
        "sim",
        &scenario,
        "--compare",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    for line in [
        "published",
        "replica, heal",
        "direct, heal",
        "replica, no heal",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(line)),
            "{line:?} missing from:\n{stdout}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let runs = json.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let paths: Vec<&str> = runs
        .iter()
        .map(|r| r["write_path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["replica", "direct", "replica"]);
    assert_eq!(
        runs[2]["read_repair"], false,
        "healing switched the other way"
    );
    let svg = std::fs::read_to_string(out.join("compare.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    assert!(
        svg.contains(r#"width="9" height="9""#),
        "the published figure is drawn as a square marker"
    );

    let o = driftkv(&["sim", &scenario, "--write-path", "sideways"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("write path"),
        "{}",
        text(&o.stderr)
    );
}
