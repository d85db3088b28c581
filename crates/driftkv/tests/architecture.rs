//! Architecture invariants, checked rather than only written down: the pure crates (causal,
//! CRDT, ring, wire, core) depend on no I/O, runtime, clock or randomness crate, and their
//! sources name no socket, file, thread, clock, environment or process API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The crates that must stay deterministic state and logic.
const PURE: &[&str] = &[
    "driftkv-causal",
    "driftkv-crdt",
    "driftkv-ring",
    "driftkv-wire",
    "driftkv-core",
];

/// Crates that would bring I/O, a runtime, wall clocks or entropy into a pure crate.
const FORBIDDEN_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "async-std",
    "smol",
    "hyper",
    "axum",
    "reqwest",
    "tonic",
    "fjall",
    "redb",
    "rocksdb",
    "sled",
    "rand",
    "getrandom",
    "chrono",
    "time",
    "tracing-subscriber",
    "metrics-exporter-prometheus",
    "libc",
    "nix",
];

/// Source fragments a pure crate must not contain (in any file, tests included: a test that
/// needs the clock belongs to an I/O crate).
const FORBIDDEN_SOURCE: &[&str] = &[
    "std::net",
    "std::fs",
    "std::thread",
    "std::time",
    "SystemTime",
    "Instant::now",
    "std::env",
    "std::process",
    "tokio::",
    "thread_rng",
    "std::io::stdin",
];

/// The host target triple, so metadata resolves only the crates this platform builds.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .trim()
        .to_string()
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host_triple(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Every package a pure crate pulls in for normal (non-dev, non-build) use, transitively.
fn normal_closure(meta: &serde_json::Value, root: &str) -> BTreeSet<String> {
    let packages = meta["packages"].as_array().unwrap();
    let name_of: BTreeMap<&str, &str> = packages
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let deps_of: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .map(|n| {
            let normal = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), normal)
        })
        .collect();
    let root_id = name_of
        .iter()
        .find(|(_, n)| **n == root)
        .map(|(id, _)| *id)
        .expect("pure crate is in the workspace");
    let mut seen = BTreeSet::new();
    let mut stack = vec![root_id];
    while let Some(id) = stack.pop() {
        for dep in deps_of.get(id).into_iter().flatten() {
            if seen.insert(name_of[dep].to_string()) {
                stack.push(dep);
            }
        }
    }
    seen
}

#[test]
fn pure_crates_depend_on_no_io_runtime_clock_or_randomness_crate() {
    let meta = metadata();
    let mut violations = Vec::new();
    for krate in PURE {
        let closure = normal_closure(&meta, krate);
        for bad in FORBIDDEN_CRATES {
            if closure.contains(*bad) {
                violations.push(format!("{krate} depends on {bad}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "architecture invariant broken:\n{}",
        violations.join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn pure_crate_sources_name_no_socket_file_clock_thread_or_process_api() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut violations = Vec::new();
    for krate in PURE {
        let dir = crates_dir.join(krate.trim_start_matches("driftkv-"));
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        assert!(
            !files.is_empty(),
            "no sources found for {krate} in {}",
            dir.display()
        );
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (line_no, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for bad in FORBIDDEN_SOURCE {
                    if code.contains(bad) {
                        violations.push(format!("{}:{}: {bad}", file.display(), line_no + 1));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "pure crates must stay free of I/O:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    rust_files(crates_dir, &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! line saying what they are for:\n{}",
        missing.join("\n")
    );
}

/// Lines a source file of the core or the simulator may hold: each concern in a file of its
/// own, readable whole (the node and the simulator's world were once single files of thousands
/// of lines that every change landed in).
const SOURCE_LINES_MAX: usize = 1_000;

#[test]
fn core_and_simulator_sources_stay_within_a_thousand_lines() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut long = Vec::new();
    for krate in ["core", "sim"] {
        let mut files = Vec::new();
        rust_files(&crates_dir.join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "no sources found for {krate}");
        for file in files {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > SOURCE_LINES_MAX {
                long.push(format!("{}: {lines} lines", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {SOURCE_LINES_MAX} lines (split them by concern):\n{}",
        long.join("\n")
    );
}

/// The top-level module a source file of a crate belongs to (`src/resp/parse.rs` is `resp`).
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

/// The modules a source text names through `crate::` paths, `use crate::{a, b}` lists included.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                let inner = list.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    if let Some(first) = words(item).into_iter().next() {
                        named.insert(first);
                    }
                }
            } else if let Some(first) = words(rest).into_iter().next() {
                named.insert(first);
            }
        }
    }
    named
}

#[test]
fn server_modules_import_each_other_in_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = top_module(&src, file);
        if from == "lib" {
            continue; // the crate root declares every module
        }
        let text = std::fs::read_to_string(file).unwrap();
        for to in named_modules(&text) {
            if to != from && modules.contains(&to) && to != "lib" {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a back edge, naming the cycle it closes.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in &modules {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!(
                "server modules import each other in a cycle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_cycle_finder_sees_use_lists_and_paths() {
    let named = named_modules(
        "use crate::{handle::Handle, metrics};\nlet x = crate::resp::serve(); // crate::http",
    );
    let expected: BTreeSet<String> = ["handle", "metrics", "resp"].map(String::from).into();
    assert_eq!(named, expected);
}
