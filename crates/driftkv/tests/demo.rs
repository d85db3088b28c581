//! `driftkv demo` runs from start to end: three real nodes, every step of its story checked by
//! the demo itself against what happened and held, and the processes and data cleaned up after.

use std::time::{Duration, Instant};

#[allow(dead_code)] // shared with the other process tests, which use the parts this file does not
mod support;

/// The most the whole demo may take: it takes seconds, and each of its waits is bounded.
const DEMO_DEADLINE: Duration = Duration::from_secs(240);
/// How often the test looks whether the demo has exited.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The PIDs of `pid`'s children (the demo's nodes), from `/proc`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Runs `driftkv demo` to its end (at most `DEMO_DEADLINE`: past it, its nodes and then the
/// demo are killed by PID and the test fails); whether it succeeded, and what it wrote.
fn run_demo() -> (bool, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("demo.out");
    let mut demo = support::spawn(&["demo".to_string()], &out);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = demo.exited() {
            break Some(status);
        }
        if start.elapsed() > DEMO_DEADLINE {
            break None;
        }
        std::thread::sleep(POLL_EVERY);
    };
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    let Some(status) = status else {
        for node in children(demo.pid()) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &node.to_string()])
                .status();
        }
        drop(demo);
        panic!("the demo did not finish within {DEMO_DEADLINE:?}:\n{said}");
    };
    (status.success(), said)
}

#[test]
fn the_demo_tells_the_whole_story_every_step_holds_and_it_cleans_up() {
    let (succeeded, said) = run_demo();
    assert!(succeeded, "the demo failed:\n{said}");
    assert!(
        !said.to_lowercase().contains("differed") && !said.contains("NOT AS TOLD"),
        "a step of the demo did not go as its story says:\n{said}"
    );
    for n in 1..=6 {
        assert!(
            said.contains(&format!("\n== {n}. ")),
            "the demo has no step {n}:\n{said}"
        );
    }
    assert_eq!(
        said.matches("\n   the story: ").count(),
        6,
        "every step states its story:\n{said}"
    );
    for line in [
        // Step 1.
        "[as told] every replica holds \"hello\"",
        // Step 2.
        "while n3 is down: 204",
        "[as told] the write at w=quorum is acknowledged without n3",
        "cannot gather 3 acknowledgements: 503",
        "[as told] n1 keeps a hint of the write for n3",
        "[as told] n3 serves clients again",
        "[as told] n3 catches up on the write it missed",
        "[as told] n1 hands its hints off to n3",
        // Step 3: what was measured, then what the demo made of it.
        "a read on n3 with r=one: 200 \"hello again\"; the same read on n1: 200 \"hello at last\"",
        "[as told] a stale read: n3 answers its own older copy",
        "[as told] the session read is refused (503)",
        "[as told] healed, n3 catches up on the write",
        "the session read on n3 again: 200 \"hello at last\"",
        // Step 4.
        "GET on n3: 300",
        "GET: 200 milk,eggs",
        "[as told] every replica keeps both",
        // Step 5.
        "GET on n3: 200 \"eggs\"",
        "was acknowledged and is gone",
        // Step 6.
        "every node reads [15, 15, 15]",
        "Done, every step as told",
        "removed their data",
    ] {
        assert!(
            said.contains(line),
            "the demo did not say {line:?}:\n{said}"
        );
    }
    // A session read never answers older than the session's write, whatever the demo says.
    for line in said.lines().filter(|l| l.contains("as a session read")) {
        // The demo prints `...: STATUS after N ms: ANSWER`.
        let went_back = line.contains("): 200 after") && line.ends_with(": \"hello again\"");
        assert!(
            !went_back,
            "a session read went back in time: {line}\n{said}"
        );
    }
    let data = said
        .lines()
        .find_map(|l| l.strip_prefix("(data and logs under "))
        .and_then(|l| l.strip_suffix(')'))
        .expect("the demo names its data directory");
    assert!(
        !std::path::Path::new(data).exists(),
        "the demo left {data} behind"
    );
}
