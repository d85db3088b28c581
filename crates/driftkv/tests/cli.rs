//! The client CLI (`driftkv put|get|del|status`) against a real one-node cluster.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

// Ports below the ephemeral range (a port picked by binding port 0 is one an outgoing
// connection, redis-benchmark's say, can take before the node binds it).
#[allow(dead_code)]
mod support;
use support::free_port;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn driftkv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftkv"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn put_get_del_and_status_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, http) = (free_port(), free_port());
    let _node = Proc(
        Command::new(env!("CARGO_BIN_EXE_driftkv"))
            .args(["node", "--id", "solo", "--n", "1", "--data-dir"])
            .arg(dir.path().join("d"))
            .args([
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--http",
                &format!("127.0.0.1:{http}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{http}");
    let start = Instant::now();
    while !driftkv(&["status", "--node", &url]).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the node did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let put = driftkv(&["put", "colour", "teal", "--node", &url, "-w", "one"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    assert!(
        String::from_utf8_lossy(&put.stderr).starts_with("context: "),
        "put prints the new context"
    );
    let get = driftkv(&["get", "colour", "--node", &url]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "teal\n");
    let ctx = String::from_utf8_lossy(&get.stderr)
        .trim()
        .strip_prefix("context: ")
        .unwrap()
        .to_string();
    // A write with the read's context replaces the value (no siblings).
    let put = driftkv(&["put", "colour", "navy", "--node", &url, "--context", &ctx]);
    assert!(put.status.success());
    assert_eq!(
        String::from_utf8_lossy(&driftkv(&["get", "colour", "--node", &url]).stdout),
        "navy\n"
    );
    // The put's context as a session token: a session read answers that write.
    let written = String::from_utf8_lossy(&put.stderr)
        .trim()
        .strip_prefix("context: ")
        .unwrap()
        .to_string();
    let session = driftkv(&["get", "colour", "--node", &url, "--session", &written]);
    assert_eq!(String::from_utf8_lossy(&session.stdout), "navy\n");
    let bad = driftkv(&["get", "colour", "--node", &url, "--session", "nonsense"]);
    assert!(!bad.status.success(), "a bad session token is refused");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("X-Session-Token"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // A bucket of its own.
    assert!(
        driftkv(&["put", "k", "v", "--node", &url, "--bucket", "b2"])
            .status
            .success()
    );
    assert_eq!(
        String::from_utf8_lossy(&driftkv(&["get", "k", "--node", &url, "--bucket", "b2"]).stdout),
        "v\n"
    );
    assert!(
        !driftkv(&["get", "k", "--node", &url]).status.success(),
        "buckets are separate"
    );

    let status = driftkv(&["status", "--node", &url, "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("status --json prints JSON");
    assert_eq!(v["node"], "solo");
    assert_eq!(v["members"][0]["state"], "up");
    let table = String::from_utf8_lossy(&driftkv(&["status", "--node", &url]).stdout).to_string();
    assert!(
        table.contains("solo") && table.contains("up") && !table.contains('\x1b'),
        "a plain table when not a terminal: {table}"
    );

    let del = driftkv(&["del", "colour", "--node", &url]);
    assert!(del.status.success());
    let gone = driftkv(&["get", "colour", "--node", &url]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not found"));

    let bad = driftkv(&["put", "x", "y", "--node", &url, "-w", "most"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("400") && err.contains("most"), "{err}");
    let unreachable = driftkv(&["get", "x", "--node", "http://127.0.0.1:1"]);
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));
}
