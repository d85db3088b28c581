//! Operating a cluster, on real processes: a graceful stop on SIGTERM and SIGINT under load,
//! backup and restore, removing a dead member, a rolling upgrade's mixed versions, a node with
//! another ring refused, log lines for machines, and the sample configuration of `deploy/`.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, Node, members, poll, request};

fn driftkv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftkv"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1")
        .output()
        .expect("run the driftkv binary")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn url(node: &Node) -> String {
    format!("http://127.0.0.1:{}", node.http)
}

fn join(first: &Node) -> Vec<String> {
    vec!["--join".into(), format!("127.0.0.1:{}", first.listen)]
}

/// Writes `t{k}-{i}` at w=all through `node` until `stop` or `count` writes, recording the
/// acknowledged ones.
fn writer(port: u16, k: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    for i in 0..2000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let key = format!("t{k}-{i}");
        let path = format!("/kv/{key}?w=all");
        if let Ok(r) = request(port, "PUT", &path, &[], key.as_bytes())
            && (r.status == 200 || r.status == 204)
        {
            acked.lock().unwrap().push(key);
        }
    }
}

#[test]
fn sigterm_under_load_exits_zero_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let (port, stop, acked) = (n.http, stop.clone(), acked.clone());
            std::thread::spawn(move || writer(port, k, stop, acked))
        })
        .collect();
    poll("writes to be acknowledged", Duration::from_secs(20), || {
        let count = acked.lock().unwrap().len();
        if count >= 100 {
            Ok(())
        } else {
            Err(format!("{count} acknowledged"))
        }
    });
    // n3 is written to as it stops: requests it took finish, later ones are refused.
    let status = cluster.nodes[2].signal_and_wait("TERM", Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(status.success(), "SIGTERM exited with {status}");
    let log = cluster.nodes[2].log();
    assert!(
        log.contains("SIGTERM: stopping gracefully") && log.contains("stopped: every write synced"),
        "the log tells the stop: {}",
        cluster.nodes[2].log_tail()
    );
    cluster.nodes[2].start();
    cluster.wait_all_up(Duration::from_secs(20));
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100);
    let n3 = &cluster.nodes[2];
    // Every write acknowledged at w=all was on n3's disk before it was acknowledged.
    let missing: Vec<&String> = acked
        .iter()
        .filter(|key| {
            let r = n3.get(&format!("/kv/{key}?r=one"));
            r.status != 200 || r.body != key.as_bytes()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing on the restarted node: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn sigint_stops_a_lone_node_with_status_zero_and_its_data_stays() {
    let mut node = Node::new("solo", &["--n".into(), "1".into()]);
    node.start();
    assert_eq!(node.put("/kv/k?w=one", b"v").status, 204);
    let status = node.signal_and_wait("INT", Duration::from_secs(20));
    assert!(status.success(), "SIGINT exited with {status}");
    node.start();
    assert_eq!(node.get("/kv/k").body, b"v");
}

#[test]
fn a_second_signal_during_a_stop_exits_at_once_with_130() {
    // n2 is cut off (a lab control), so a w=all write through n1 waits for it: the stop that
    // SIGTERM starts waits for that write, and a second signal does not.
    let lab = vec!["--lab".to_string(), "--n".into(), "2".into()];
    let mut n1 = Node::new("n1", &lab);
    n1.start();
    let mut extra = lab.clone();
    extra.extend(join(&n1));
    let mut n2 = Node::new("n2", &extra);
    n2.start();
    let mut cluster = Cluster {
        nodes: vec![n1, n2],
    };
    cluster.wait_all_up(Duration::from_secs(20));
    let r = cluster.nodes[1].post_json("/admin/isolate", &json!({}));
    assert_eq!(r.status, 200, "{r}");
    let port = cluster.nodes[0].http;
    let write = std::thread::spawn(move || request(port, "PUT", "/kv/held?w=all", &[], b"v"));
    poll(
        "the write to be in flight on n1",
        Duration::from_secs(10),
        || match support::metric(&cluster.nodes[0], "driftkv_requests_in_flight")? {
            n if n >= 1.0 => Ok(()),
            n => Err(format!("{n} in flight")),
        },
    );
    let pid = cluster.nodes[0].pid();
    let kill = |signal: &str| {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status();
        assert!(sent.unwrap().success());
    };
    kill("TERM");
    poll("n1 to begin its stop", Duration::from_secs(10), || {
        if cluster.nodes[0].log().contains("stopping gracefully") {
            Ok(())
        } else {
            Err(cluster.nodes[0].log_tail())
        }
    });
    let status = cluster.nodes[0].signal_and_wait("INT", Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(cluster.nodes[0].log().contains("a second signal"));
    let _ = write.join();
}

/// The values of a key holding siblings, sorted.
fn siblings(node: &Node, key: &str) -> Vec<String> {
    let r = node.get(&format!("/kv/{key}?r=all"));
    let js = r.json().unwrap_or(Value::Null);
    let mut values: Vec<String> = js["siblings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    values.sort();
    values
}

#[test]
fn backup_and_restore_keep_every_kind_and_never_overwrite_newer_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.backup");
    let file_arg = file.to_str().unwrap();
    {
        let old = Cluster::start(3);
        let (n1, n2) = (&old.nodes[0], &old.nodes[1]);
        assert_eq!(n1.put("/kv/cart?w=all", b"milk").status, 204);
        assert_eq!(n2.put("/kv/cart?w=all", b"eggs").status, 204);
        assert_eq!(siblings(n1, "cart"), ["eggs", "milk"]);
        assert_eq!(n1.put("/kv/plain?w=all", b"old").status, 204);
        assert_eq!(n1.put("/buckets/photos/kv/cat?w=all", b"meow").status, 204);
        assert_eq!(n1.put("/kv/gone?w=all", b"x").status, 204);
        assert_eq!(n1.request("DELETE", "/kv/gone?w=all", &[], b"").status, 204);
        let ok = |r: support::Response| assert!(r.status < 300, "{r}");
        ok(n1.post_json("/counters/visits?w=all", &json!({"delta": 7})));
        ok(n2.post_json("/sets/tags?w=all", &json!({"add": ["a", "b"]})));
        ok(n1.post_json(
            "/maps/user?w=all",
            &json!({"set": {"name": "ada"}, "increment": {"logins": 3}}),
        ));
        let out = driftkv(&["backup", "--node", &url(n1), "--out", file_arg]);
        assert!(out.status.success(), "backup failed: {}", text(&out));
        assert!(text(&out).contains("backed up"), "{}", text(&out));
    }
    let fresh = Cluster::start(3);
    let (f1, f3) = (&fresh.nodes[0], &fresh.nodes[2]);
    for _ in 0..2 {
        let out = driftkv(&["restore", file_arg, "--node", &url(f1)]);
        assert!(out.status.success(), "restore failed: {}", text(&out));
    }
    assert_eq!(
        siblings(f3, "cart"),
        ["eggs", "milk"],
        "siblings survive a backup"
    );
    assert_eq!(f3.get("/kv/plain?r=all").body, b"old");
    assert_eq!(f3.get("/buckets/photos/kv/cat?r=all").body, b"meow");
    assert_eq!(
        f3.get("/kv/gone?r=all").status,
        404,
        "a deleted key stays deleted"
    );
    assert_eq!(f3.get("/counters/visits?r=all").json().unwrap()["value"], 7);
    let mut tags: Vec<String> = f3.get("/sets/tags?r=all").json().unwrap()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["a", "b"]);
    let map = f3.get("/maps/user?r=all").json().unwrap();
    assert_eq!(map["fields"]["name"], "ada", "{map}");
    assert_eq!(map["fields"]["logins"], 3, "{map}");
    // Newer state than the backup's survives restoring it again.
    let read = f1.get("/kv/plain?r=all");
    let context = read.header("x-causal-context").unwrap().to_string();
    let r = f1.request(
        "PUT",
        "/kv/plain?w=all",
        &[("X-Causal-Context", &context)],
        b"newest",
    );
    assert_eq!(r.status, 204, "{r}");
    let r = f1.post_json("/counters/visits?w=all", &json!({"delta": 1}));
    assert!(r.status < 300, "{r}");
    let out = driftkv(&["restore", file_arg, "--node", &url(f1)]);
    assert!(out.status.success(), "restore failed: {}", text(&out));
    assert_eq!(f3.get("/kv/plain?r=all").body, b"newest");
    assert_eq!(f3.get("/counters/visits?r=all").json().unwrap()["value"], 8);
    // A cut-off backup restores nothing and says why.
    let whole = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.backup");
    std::fs::write(&cut, &whole[..whole.len() - 2]).unwrap();
    let out = driftkv(&["restore", cut.to_str().unwrap(), "--node", &url(f1)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("incomplete"), "{}", text(&out));
}

/// Whether every node in `nodes` has forgotten `gone` and the rest own every replica.
fn forgotten(nodes: &[Node], gone: &str) -> Result<(), String> {
    for n in nodes {
        let r = n.try_request("GET", "/cluster", &[], b"")?;
        let js = r.json().ok_or(r.to_string())?;
        let list = js["members"].as_array().cloned().unwrap_or_default();
        if list.iter().any(|m| m["id"] == gone) {
            return Err(format!("{} still lists {gone}", n.id));
        }
        let owned: u64 = list.iter().filter_map(|m| m["partitions"].as_u64()).sum();
        let want = js["n"].as_u64().unwrap_or(0) * js["partitions"].as_u64().unwrap_or(0);
        if owned != want {
            return Err(format!("{} sees {owned} of {want} replicas owned", n.id));
        }
    }
    Ok(())
}

#[test]
fn a_dead_member_is_removed_for_good_and_a_live_one_is_refused() {
    let mut cluster = Cluster::start(4);
    let n1 = url(&cluster.nodes[0]);
    for i in 0..20 {
        let r = cluster.nodes[0].put(&format!("/kv/before-{i}?w=all"), b"x");
        assert_eq!(r.status, 204, "{r}");
    }
    let out = driftkv(&["remove", "n4", "--node", &n1]);
    assert!(
        !out.status.success(),
        "removing a member that is up must be refused"
    );
    assert!(
        text(&out).contains("409") && text(&out).contains("up"),
        "{}",
        text(&out)
    );
    let out = driftkv(&["remove", "nobody", "--node", &n1]);
    assert!(
        !out.status.success() && text(&out).contains("404") && text(&out).contains("not a member"),
        "{}",
        text(&out)
    );
    cluster.nodes[3].kill();
    poll("n1 to see n4 down", Duration::from_secs(30), || {
        let m = members(&cluster.nodes[0])?;
        if m.contains(&("n4".to_string(), "down".to_string())) {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    });
    let out = driftkv(&["remove", "n4", "--node", &n1]);
    assert!(out.status.success(), "{}", text(&out));
    poll("every node to forget n4", Duration::from_secs(60), || {
        forgotten(&cluster.nodes[..3], "n4")
    });
    // The removal is on disk: a node restarted after it still leaves n4 out.
    cluster.nodes[1].kill();
    cluster.nodes[1].start();
    poll(
        "n2 restarted to leave n4 out",
        Duration::from_secs(30),
        || forgotten(&cluster.nodes[1..3], "n4"),
    );
    let left = &cluster.nodes[..3];
    // n2 was just restarted: its peers reconnect to it within moments.
    poll(
        "a w=all write on the three left",
        Duration::from_secs(20),
        || {
            let r = left[0].put("/kv/after-restart?w=all", b"y");
            if r.status == 204 {
                Ok(())
            } else {
                Err(r.to_string())
            }
        },
    );
    for i in 0..20 {
        let r = left[i % 3].put(&format!("/kv/after-{i}?w=all"), b"y");
        assert_eq!(r.status, 204, "w=all on the three left: {r}");
    }
    // Anti-entropy refills the partitions n4 held: every key on every replica.
    poll(
        "every replica to hold the keys written before",
        Duration::from_secs(60),
        || {
            for i in 0..20 {
                let key = format!("before-{i}");
                let reps = support::replicas(&left[0], &key)?;
                if reps.len() != 3 || reps.iter().any(|r| r.values != ["x"]) {
                    return Err(format!("{key}: {reps:?}"));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn a_mixed_cluster_of_two_versions_agrees_on_the_older_and_moves_data() {
    let mut n1 = Node::new("n1", &[]);
    n1.start();
    let mut nodes = vec![n1];
    for id in ["n2", "n3"] {
        let mut n = Node::new(id, &join(&nodes[0]));
        n.env = vec![("DRIFTKV_PROTOCOL_AHEAD".into(), "1".into())];
        n.start();
        nodes.push(n);
    }
    let cluster = Cluster { nodes };
    cluster.wait_all_up(Duration::from_secs(20));
    let v = u64::from(driftkv_wire::PROTOCOL_VERSION);
    poll(
        "the versions agreed to show",
        Duration::from_secs(10),
        || {
            let js = cluster.nodes[1].get("/cluster").json().unwrap();
            let of = |id: &str| {
                js["members"]
                    .as_array()
                    .and_then(|m| m.iter().find(|m| m["id"] == id))
                    .and_then(|m| m["protocol"].as_u64())
            };
            // n2 speaks this version and the next: the current build n1 agrees on this one,
            // the other build ahead n3 on the next.
            if of("n1") == Some(v) && of("n3") == Some(v + 1) {
                Ok(())
            } else {
                Err(js["members"].to_string())
            }
        },
    );
    for (i, node) in cluster.nodes.iter().enumerate() {
        let r = node.put(&format!("/kv/mixed-{i}?w=all"), format!("v{i}").as_bytes());
        assert_eq!(r.status, 204, "a write at w=all through {}: {r}", node.id);
    }
    for node in &cluster.nodes {
        for i in 0..3 {
            let r = node.get(&format!("/kv/mixed-{i}?r=all"));
            assert_eq!(
                r.body,
                format!("v{i}").as_bytes(),
                "{} reads mixed-{i}",
                node.id
            );
        }
    }
}

#[test]
fn a_node_with_another_ring_is_refused_and_both_logs_say_why() {
    let mut n1 = Node::new("n1", &[]);
    n1.start();
    let mut extra = join(&n1);
    extra.extend(["--partitions".into(), "128".into()]);
    let mut odd = Node::new("odd", &extra);
    odd.spawn();
    let said = "its ring differs, 128 partitions and n=3 there, 64 partitions and n=3 here";
    poll(
        "both logs to name the difference",
        Duration::from_secs(20),
        || {
            if n1.log().contains(said) && odd.log().contains(said) {
                Ok(())
            } else {
                Err(format!("n1: {}\nodd: {}", n1.log_tail(), odd.log_tail()))
            }
        },
    );
    let ids: BTreeSet<String> = members(&n1)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, BTreeSet::from(["n1".to_string()]));
}

#[test]
fn json_log_lines_are_one_object_each_naming_the_node() {
    let mut node = Node::new("jn", &["--n".into(), "1".into()]);
    node.env = vec![("DRIFTKV_LOG_FORMAT".into(), "json".into())];
    node.start();
    assert_eq!(node.put("/kv/k?w=one", b"v").status, 204);
    assert!(
        node.signal_and_wait("TERM", Duration::from_secs(20))
            .success()
    );
    let log = node.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("----- test harness"))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let js: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(js["node"], "jn", "{line}");
        assert!(js["level"].is_string() && js["ts"].is_string() && js["message"].is_string());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_driftkv"))
        .args(["node", "--id", "x", "--data-dir"])
        .arg(node.dir().join("other"))
        .env("DRIFTKV_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("DRIFTKV_LOG_FORMAT"), "{}", text(&out));
}

/// The repository's `deploy/` directory.
fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn the_sample_configuration_starts_a_secured_node_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let tls_arg = tls.to_str().unwrap();
    let users = deploy().join("users.toml");
    // The unit starts the sample's path and stops the node the way it stops gracefully.
    let unit = std::fs::read_to_string(deploy().join("driftkv.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/driftkv node --config /etc/driftkv/driftkv.toml")
    );
    assert!(unit.contains("KillSignal=SIGTERM"));
    let sample = std::fs::read_to_string(deploy().join("driftkv.toml")).unwrap();
    assert!(sample.contains("id = \"db1\""));
    // The sample's other machines do not exist here: it starts alone.
    let alone: String = sample
        .lines()
        .map(|l| {
            if l.starts_with("join = ") {
                "join = []"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(
        alone,
        sample.trim_end(),
        "the sample joins the other machines"
    );
    let config = dir.path().join("driftkv.toml");
    std::fs::write(&config, alone).unwrap();
    for args in [
        vec!["cert", "ca", "--dir", tls_arg],
        vec!["cert", "node", "--dir", tls_arg, "--id", "db1"],
    ] {
        let out = driftkv(&args);
        assert!(out.status.success(), "{}", text(&out));
    }
    // The sample as an operator installs it, but on loopback ports and a temporary disk (flags
    // override the file), alone (no --join of the sample's other machines).
    let (listen, http, resp) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let node = Node::new("db1", &[]);
    let data = node.dir().join("data");
    let mut args: Vec<String> = [
        "node",
        "--config",
        config.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--data-dir".into(),
        data.display().to_string(),
        "--tls-dir".into(),
        tls_arg.into(),
        "--listen".into(),
        format!("127.0.0.1:{listen}"),
        "--http".into(),
        format!("127.0.0.1:{http}"),
        "--resp".into(),
        format!("127.0.0.1:{resp}"),
        "--n".into(),
        "1".into(),
    ]);
    let _proc = support::spawn(&args, &node.log_path());
    let https = format!("https://127.0.0.1:{http}");
    let ca = tls.join("ca.pem");
    let ca_arg = ca.to_str().unwrap();
    let started = Instant::now();
    let status = poll(
        "the sample node to serve over TLS",
        Duration::from_secs(30),
        || {
            let out = driftkv(&[
                "status",
                "--node",
                &https,
                "--ca",
                ca_arg,
                "--user",
                "ops:change-me-ops",
                "--json",
            ]);
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(format!(
                    "{} after {:?}; log: {}",
                    text(&out),
                    started.elapsed(),
                    node.log_tail()
                ))
            }
        },
    );
    let js: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(js["node"], "db1");
    let put_as = |user: &str| {
        driftkv(&[
            "put", "k", "v", "--node", &https, "--ca", ca_arg, "--user", user,
        ])
    };
    let out = put_as("app:change-me-app");
    assert!(out.status.success(), "{}", text(&out));
    let out = put_as("reader:change-me-reader");
    assert!(
        !out.status.success(),
        "a reader cannot write: {}",
        text(&out)
    );
}
