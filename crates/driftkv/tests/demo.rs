//! `driftkv demo` runs from start to end: three real nodes, every step of the story, and the
//! processes and data cleaned up after.

use std::process::Command;

#[test]
fn the_demo_tells_the_whole_story_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_driftkv"))
        .arg("demo")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("driftkv demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for line in [
        "all three replicas hold it",
        "while n3 is down: 204",
        "cannot gather 3 acknowledgements: 503",
        "n3 caught up",
        "GET on n3: 300",
        "GET: 200 milk,eggs",
        "was acknowledged and is gone",
        "every node reads [15, 15, 15]",
        "removed their data",
    ] {
        assert!(
            stdout.contains(line),
            "the demo did not say {line:?}:\n{stdout}"
        );
    }
    // The session read answers the session's write, at once or after refusing to go back.
    let session = stdout
        .lines()
        .filter(|l| l.contains("session read") || l.contains("retried until it answered"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        session.contains("200 \"hello again\""),
        "the session read never answered the session's write:\n{stdout}"
    );
    assert!(
        !session.contains("200 \"hello\""),
        "a session read went back in time:\n{stdout}"
    );
    let data = stdout
        .lines()
        .find_map(|l| l.strip_prefix("(data and logs under "))
        .and_then(|l| l.strip_suffix(')'))
        .expect("the demo names its data directory");
    assert!(
        !std::path::Path::new(data).exists(),
        "the demo left {data} behind"
    );
}
