//! `driftkv sim`: runs the deterministic simulator on a scenario file and writes its report
//! (text, JSON, SVG plots); `--seeds A..B` sweeps seeds, `--sweep` compares every R/W,
//! `--compare` compares write paths and the healing machinery.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use driftkv_sim::report::CompareRow;
use driftkv_sim::{Progress, Report, Scenario, SweepRow};

#[derive(Args)]
pub struct SimArgs {
    /// The scenario file (TOML); see scenarios/ for examples. With --seeds, a directory:
    /// every scenario file in it is swept in turn (scenarios/sweeps/, say).
    scenario: PathBuf,
    /// Directory for report.txt, report.json and the plots (created if missing). Without it
    /// the text report goes to stdout only.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replaces the scenario's seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Runs every seed of an inclusive range (`1..1000` is seeds 1 to 1000) in parallel and
    /// lists the seeds whose checks failed, each with the command that replays it.
    #[arg(long, value_name = "A..B")]
    seeds: Option<String>,
    /// Runs every R and W from 1 to N and prints a comparison table.
    #[arg(long, conflicts_with = "seeds")]
    sweep: bool,
    /// Runs the scenario (or every scenario of a directory) beside two variants of itself:
    /// the other write path, and read repair, hints and anti-entropy switched the other way.
    /// Prints a t-visibility table (with the scenario's published figures) and, with --out,
    /// writes compare.txt, compare.json and one plot of every curve (compare.svg).
    #[arg(long, conflicts_with_all = ["seeds", "sweep"])]
    compare: bool,
    /// Replaces the scenario's write path for lww writes: `replica` or `direct`.
    #[arg(long, value_name = "PATH")]
    write_path: Option<String>,
    /// Replaces the scenario's read quorum (one, quorum, all or a number).
    #[arg(long)]
    r: Option<String>,
    /// Replaces the scenario's write quorum.
    #[arg(long)]
    w: Option<String>,
    /// Client sessions send no session tokens: their reads are only watched, to count how
    /// often they go back in time (for scenarios with `sessions`).
    #[arg(long)]
    no_session_tokens: bool,
    /// Worker threads for --seeds and --sweep (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// No progress indicator on stderr.
    #[arg(long)]
    quiet: bool,
}

fn parse_seeds(text: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = text
        .split_once("..=")
        .or_else(|| text.split_once(".."))
        .with_context(|| format!("--seeds takes a range A..B, got {text:?}"))?;
    let a: u64 = a.trim().parse().context("--seeds: start is not a number")?;
    let b: u64 = b.trim().parse().context("--seeds: end is not a number")?;
    if b < a {
        bail!("--seeds: the range {a}..{b} is empty");
    }
    Ok((a, b))
}

/// A one-line progress indicator on stderr, redrawn at most every 200 ms, only on a terminal.
struct Indicator {
    enabled: bool,
    last: Instant,
    label: String,
}

impl Indicator {
    fn new(quiet: bool, label: String) -> Indicator {
        Indicator {
            enabled: !quiet && std::io::stderr().is_terminal(),
            last: Instant::now(),
            label,
        }
    }

    fn update(&mut self, p: &Progress) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let phase = if p.virtual_ms < 0.0 {
            "warming up".to_string()
        } else if p.virtual_ms < p.traffic_ms {
            format!("traffic {:.0}%", 100.0 * p.virtual_ms / p.traffic_ms)
        } else {
            format!("settling {:.1} s", (p.virtual_ms - p.traffic_ms) / 1000.0)
        };
        eprint!(
            "\r\x1b[K{}: {phase}, virtual {:.1} s, {} events, {} messages",
            self.label,
            p.virtual_ms / 1000.0,
            p.events,
            p.messages
        );
    }

    fn done(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}

fn write_report(dir: &Path, report: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    std::fs::write(dir.join("report.txt"), report.to_text())?;
    std::fs::write(dir.join("report.json"), report.to_json())?;
    for (name, svg) in report.plots() {
        std::fs::write(dir.join(name), svg)?;
    }
    Ok(())
}

/// Reads a scenario file (following its `extends`) and applies the command line's overrides.
fn load(path: &Path, args: &SimArgs) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read scenario {}", path.display()))?;
    let mut scenario = Scenario::from_toml_at(&text, path, &mut |p| std::fs::read_to_string(p))
        .with_context(|| format!("in scenario {}", path.display()))?;
    if scenario.name.is_empty() {
        scenario.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if args.no_session_tokens {
        scenario.workload.session_tokens = false;
    }
    if let Some(path) = &args.write_path {
        scenario.write_path = path
            .parse()
            .map_err(anyhow::Error::msg)
            .context("--write-path")?;
    }
    if args.r.is_some() || args.w.is_some() {
        let r = args.r.clone().unwrap_or(scenario.r.clone());
        let w = args.w.clone().unwrap_or(scenario.w.clone());
        scenario = driftkv_sim::with_levels(&scenario, &r, &w);
        scenario
            .validate()
            .map_err(anyhow::Error::msg)
            .context("--r/--w")?;
    }
    Ok(scenario)
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if args.compare {
        return run_compare(&args, jobs);
    }
    if args.scenario.is_dir() {
        let Some(range) = &args.seeds else {
            bail!(
                "{} is a directory: only --seeds runs every scenario in one",
                args.scenario.display()
            );
        };
        return run_seeds_of_dir(&args, parse_seeds(range)?, jobs);
    }
    let scenario = load(&args.scenario, &args)?;
    if let Some(range) = &args.seeds {
        return run_seeds(&args, &args.scenario, &scenario, parse_seeds(range)?, jobs);
    }
    if args.sweep {
        return run_sweep(&args, &scenario, jobs);
    }
    let mut indicator = Indicator::new(args.quiet, format!("sim {}", scenario.name));
    let started = Instant::now();
    let report = driftkv_sim::run_with_progress(&scenario, &mut |p| indicator.update(p));
    indicator.done();
    print!("{}", report.to_text());
    if let Some(dir) = &args.out {
        write_report(dir, &report)?;
        println!("report written to {}", dir.display());
    }
    eprintln!(
        "simulated {} events in {:.2} s of wall time",
        report.events,
        started.elapsed().as_secs_f64()
    );
    if !report.passed() {
        for (check, failure) in report.failures() {
            eprintln!("check {check} failed: {failure}");
        }
        bail!(
            "checks failed for seed {}; replay with: driftkv sim {} --seed {}",
            scenario.seed,
            args.scenario.display(),
            scenario.seed
        );
    }
    Ok(())
}

/// Runs `count` simulations on `jobs` threads with a `label: n/count runs done` line on a
/// terminal; the reports come back in job order.
fn run_all(
    args: &SimArgs,
    label: &str,
    count: usize,
    jobs: usize,
    run: impl Fn(usize) -> Report + Sync,
) -> Vec<Report> {
    let done = AtomicUsize::new(0);
    let show = !args.quiet && std::io::stderr().is_terminal();
    let reports = parallel(count, jobs, |i| {
        let report = run(i);
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if show {
            eprint!("\r\x1b[K{label}: {n}/{count} runs done");
        }
        report
    });
    if show {
        eprint!("\r\x1b[K");
    }
    reports
}

/// Runs `count` jobs on `jobs` threads; results come back in job order (deterministic output).
fn parallel<T: Send>(count: usize, jobs: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, count.max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let result = work(i);
                    results.lock().expect("no worker panics holding it")[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("workers are done")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// The scenario files of a directory (`*.toml`, not those of its subdirectories), in name
/// order.
fn scenario_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no scenario files (*.toml) in {}", dir.display());
    }
    Ok(files)
}

/// `--compare`: every variant of every scenario given, run in parallel, then the table, and
/// with `--out` the files.
fn run_compare(args: &SimArgs, jobs: usize) -> anyhow::Result<()> {
    let files = match args.scenario.is_dir() {
        true => scenario_files(&args.scenario)?,
        false => vec![args.scenario.clone()],
    };
    let mut runs = Vec::new();
    for path in &files {
        let scenario = load(path, args)?;
        for (variant, s) in driftkv_sim::report::compare_variants(&scenario) {
            runs.push((scenario.name.clone(), variant, s));
        }
    }
    let started = Instant::now();
    let reports = run_all(args, "compare", runs.len(), jobs, |i| {
        driftkv_sim::run(&runs[i].2)
    });
    let rows: Vec<CompareRow> = runs
        .into_iter()
        .zip(reports)
        .map(|((scenario, variant, _), report)| CompareRow {
            scenario,
            variant,
            report,
        })
        .collect();
    let table = driftkv_sim::report::compare_table(&rows);
    print!("{table}");
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        std::fs::write(dir.join("compare.txt"), &table)?;
        std::fs::write(
            dir.join("compare.json"),
            driftkv_sim::report::compare_json(&rows),
        )?;
        std::fs::write(
            dir.join("compare.svg"),
            driftkv_sim::report::compare_plot(&rows),
        )?;
        println!("comparison written to {}", dir.display());
    }
    eprintln!(
        "{} runs in {:.1} s of wall time",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<String> = rows
        .iter()
        .filter(|row| !row.report.passed())
        .map(|row| format!("{} ({})", row.scenario, row.variant))
        .collect();
    if !failed.is_empty() {
        let _ = std::io::stdout().flush();
        bail!("checks failed for {}", failed.join(", "));
    }
    Ok(())
}

/// `--seeds` over every scenario file of a directory, in name order.
fn run_seeds_of_dir(args: &SimArgs, seeds: (u64, u64), jobs: usize) -> anyhow::Result<()> {
    let dir = &args.scenario;
    let files = scenario_files(dir)?;
    let mut failed = Vec::new();
    for path in &files {
        let scenario = load(path, args)?;
        if run_seeds(args, path, &scenario, seeds, jobs).is_err() {
            failed.push(path.display().to_string());
        }
    }
    println!(
        "{} scenarios of {}: {} with every seed passing, {} with failures",
        files.len(),
        dir.display(),
        files.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        bail!("seeds failed in {}", failed.join(", "));
    }
    Ok(())
}

fn run_seeds(
    args: &SimArgs,
    path: &Path,
    scenario: &Scenario,
    (first, last): (u64, u64),
    jobs: usize,
) -> anyhow::Result<()> {
    let count = (last - first + 1) as usize;
    let done = AtomicUsize::new(0);
    let failed_so_far = AtomicUsize::new(0);
    let show = !args.quiet && std::io::stderr().is_terminal();
    let started = Instant::now();
    let results = parallel(count, jobs, |i| {
        let result = run_seed(scenario, first + i as u64);
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        let f = failed_so_far.fetch_add(result.is_some() as usize, Ordering::Relaxed)
            + result.is_some() as usize;
        if show {
            eprint!("\r\x1b[Kseeds: {n}/{count} run, {f} failed");
        }
        result
    });
    if show {
        eprint!("\r\x1b[K");
    }
    let failures: Vec<(u64, &String)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|f| (first + i as u64, f)))
        .collect();
    for (seed, failure) in &failures {
        println!("seed {seed} FAILED:\n    {failure}");
        println!(
            "    replay: driftkv sim {} --seed {seed} --out sim-seed-{seed}",
            path.display()
        );
    }
    println!(
        "{} seeds ({first}..={last}) of {}: {} passed, {} failed, in {:.1} s",
        count,
        scenario.name,
        count - failures.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        bail!("{} seeds failed their checks", failures.len());
    }
    Ok(())
}

/// Runs `scenario` with `seed`: `None` if every check passed, else what failed.
fn run_seed(scenario: &Scenario, seed: u64) -> Option<String> {
    let mut s = scenario.clone();
    s.seed = seed;
    // A panic in the core is a finding too: report it with its seed.
    match std::panic::catch_unwind(|| driftkv_sim::run(&s)) {
        Ok(report) if report.passed() => None,
        Ok(report) => Some(
            report
                .failures()
                .iter()
                .map(|(c, f)| format!("{c}: {f}"))
                .collect::<Vec<_>>()
                .join("\n    "),
        ),
        Err(panic) => Some(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

fn run_sweep(args: &SimArgs, scenario: &Scenario, jobs: usize) -> anyhow::Result<()> {
    let levels = driftkv_sim::sweep_levels(scenario);
    let reports = run_all(args, "sweep", levels.len(), jobs, |i| {
        let (r, w) = &levels[i];
        driftkv_sim::run(&driftkv_sim::with_levels(scenario, r, w))
    });
    let rows: Vec<SweepRow> = levels
        .into_iter()
        .zip(reports)
        .map(|((r, w), report)| SweepRow { r, w, report })
        .collect();
    let n = scenario.n.min(scenario.nodes);
    let table = driftkv_sim::sweep_table(n, &rows);
    println!(
        "R/W sweep of {} (seed {}): P@t is the probability that a read t ms after a write's acknowledgement returns it",
        scenario.name, scenario.seed
    );
    print!("{table}");
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        std::fs::write(dir.join("sweep.txt"), &table)?;
        std::fs::write(
            dir.join("t_visibility_sweep.svg"),
            driftkv_sim::report::sweep_plot(&rows),
        )?;
        for row in &rows {
            let sub = dir.join(format!("r{}-w{}", row.r, row.w));
            write_report(&sub, &row.report)?;
        }
        println!("sweep written to {}", dir.display());
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|row| !row.report.passed())
        .map(|row| format!("R={} W={}", row.r, row.w))
        .collect();
    if !failed.is_empty() {
        let _ = std::io::stdout().flush();
        bail!("checks failed for {}", failed.join(", "));
    }
    Ok(())
}
