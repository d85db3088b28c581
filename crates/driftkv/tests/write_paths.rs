//! The direct write path with real processes: an lww bucket with `write_path = "direct"` on
//! five nodes (N = 3, so two nodes in five are not replicas of a key): writes through every
//! node reach every replica without a forward, later writes win, and a restarted node goes on
//! writing above what it wrote before.

#[allow(dead_code)] // shared with the other process tests, which use the parts this file does not
mod support;

use std::time::Duration;

use support::{Cluster, metric, poll};

const KEYS: usize = 20;

fn config(dir: &std::path::Path) -> Vec<String> {
    let path = dir.join("node.toml");
    let toml = "[buckets.fast]\nmode = \"lww\"\nwrite_path = \"direct\"\n";
    std::fs::write(&path, toml).expect("write the config file");
    vec![
        "--config".into(),
        path.display().to_string(),
        "--n".into(),
        "3".into(),
    ]
}

/// Writes `value` to every key, through the nodes in turn (starting at `first`), at W = all.
fn write_all(c: &Cluster, first: usize, value: &str) {
    for k in 0..KEYS {
        let node = &c.nodes[(first + k) % c.nodes.len()];
        let r = node.put(&format!("/buckets/fast/kv/k{k}?w=all"), value.as_bytes());
        assert_eq!(r.status, 204, "PUT k{k} through {}: {r}", node.id);
    }
}

/// Every key reads `value` at R = all from every node.
fn assert_every_node_reads(c: &Cluster, value: &str) {
    for k in 0..KEYS {
        for node in &c.nodes {
            let r = node.get(&format!("/buckets/fast/kv/k{k}?r=all"));
            assert_eq!(
                (r.status, r.text()),
                (200, value.to_string()),
                "k{k} at {}",
                node.id
            );
        }
    }
}

fn total(c: &Cluster, name: &str) -> f64 {
    c.nodes.iter().map(|n| metric(n, name).unwrap()).sum()
}

#[test]
fn direct_writes_reach_every_replica_without_a_forward_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start_with(5, &config(dir.path()));
    write_all(&c, 0, "first");
    assert_every_node_reads(&c, "first");
    // Later writes through other nodes win everywhere.
    write_all(&c, 2, "second");
    assert_every_node_reads(&c, "second");
    assert_eq!(
        total(&c, "driftkv_direct_writes_total"),
        (2 * KEYS) as f64,
        "every write was direct"
    );
    assert_eq!(
        total(&c, "driftkv_forwarded_writes_total"),
        0.0,
        "no write was forwarded"
    );

    // A node stopped and started again keeps its direct writer above what it issued.
    let n3 = &mut c.nodes[2];
    let status = n3.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(status.success(), "{status}");
    n3.start();
    c.wait_all_up(Duration::from_secs(20));
    // Every key again, through the restarted node: eight of them hold values it wrote, under
    // its writer's dots, before its stop.
    // Its links to the others are made again as it starts: a W = all write may miss an
    // acknowledgement for a moment (503) and is tried again, as a client would.
    for k in 0..KEYS {
        let what = format!("PUT k{k} through n3 after its restart");
        poll(&what, Duration::from_secs(20), || {
            let r = c.nodes[2].put(&format!("/buckets/fast/kv/k{k}?w=all"), b"third");
            match r.status {
                204 => Ok(()),
                503 => Err(r.to_string()),
                _ => panic!("{what}: {r}"),
            }
        });
    }
    poll(
        "every replica to hold the third write",
        Duration::from_secs(20),
        || {
            for k in 0..KEYS {
                let r = c.nodes[0].get(&format!("/buckets/fast/kv/k{k}?r=all"));
                if r.text() != "third" {
                    return Err(format!("k{k}: {r}"));
                }
            }
            Ok(())
        },
    );
    assert_every_node_reads(&c, "third");
    // Had the restarted writer begun its dots again, the replicas would have taken its new
    // writes for ones they had seen (and kept "second"), or met two values under one dot.
    assert_eq!(total(&c, "driftkv_dot_clashes_total"), 0.0);
}

#[test]
fn a_direct_write_path_on_a_siblings_bucket_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[buckets.b]\nwrite_path = \"direct\"\n").unwrap();
    let data = dir.path().join("data");
    let args: Vec<String> = [
        "node",
        "--id",
        "n1",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        path.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (status, stderr) = support::run_to_exit(&args, Duration::from_secs(20));
    assert!(!status.success());
    assert!(
        stderr.contains("write_path") && stderr.contains("lww"),
        "{stderr}"
    );
}
