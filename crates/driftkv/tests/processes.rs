//! Real `driftkv node` processes on loopback: convergence, a killed node and hinted handoff,
//! siblings and their resolution, CRDTs under concurrent updates, restarts from disk, bad input
//! and bad config, and a node of another cluster. Every process is killed by PID on drop.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Cluster, Node, Response, members, poll, replicas, request, run_to_exit};

/// Ample for anything that should happen within a second or two on an idle machine; the
/// tests run in parallel on two cores, so polls wait longer than the happy path needs.
const CONVERGE: Duration = Duration::from_secs(15);

fn assert_status(r: &Response, want: u16, what: &str) {
    assert_eq!(r.status, want, "{what}: got {r}");
}

/// A 2xx answer (some writes answer 200 with a body, others 204).
fn assert_ok(r: &Response, what: &str) {
    assert!((200..300).contains(&r.status), "{what}: got {r}");
}

/// A 4xx answer whose JSON body names the problem in `"error"`; returns that message.
fn assert_json_4xx(r: &Response, what: &str) -> String {
    assert!(
        (400..500).contains(&r.status),
        "{what}: wanted a 4xx, got {r}"
    );
    let js = r
        .json()
        .unwrap_or_else(|| panic!("{what}: the {} answer is not JSON: {r}", r.status));
    match js.get("error").and_then(Value::as_str) {
        Some(e) if !e.is_empty() => e.to_string(),
        _ => panic!("{what}: the JSON body has no \"error\" message: {js}"),
    }
}

/// Waits until `node`'s replicas view of `key` shows exactly the nodes `owners`, each
/// reachable and holding exactly `values`; returns the view.
fn wait_replicas_hold(
    node: &Node,
    key: &str,
    owners: &[&str],
    values: &[&str],
) -> Vec<support::Replica> {
    let want_nodes: BTreeSet<&str> = owners.iter().copied().collect();
    let mut want_values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    want_values.sort();
    poll(
        &format!(
            "{key} to be {values:?} on replicas {owners:?} (asking {})",
            node.id
        ),
        CONVERGE,
        || {
            let view = replicas(node, key)?;
            let nodes: BTreeSet<&str> = view.iter().map(|r| r.node.as_str()).collect();
            let ok = nodes == want_nodes
                && view.len() == owners.len()
                && view.iter().all(|r| r.reachable && r.values == want_values);
            if ok {
                Ok(view)
            } else {
                Err(format!("{view:?}"))
            }
        },
    )
}

#[test]
fn three_nodes_converge_after_a_write_to_one() {
    let c = Cluster::start(3);
    let [n1, n2, n3] = &c.nodes[..] else {
        unreachable!()
    };
    let sent = Instant::now();
    assert_status(&n1.put("/kv/k?w=one", b"v1"), 204, "PUT /kv/k?w=one on n1");
    let acked = sent.elapsed();
    // Ask a different node each round: any node's view must come to show all three copies.
    let mut round = 0;
    let view = poll("all three replicas of k to hold v1", CONVERGE, || {
        round += 1;
        let asked = &c.nodes[round % 3];
        let view = replicas(asked, "k")?;
        let nodes: BTreeSet<&str> = view.iter().map(|r| r.node.as_str()).collect();
        if nodes == BTreeSet::from(["n1", "n2", "n3"])
            && view.iter().all(|r| r.reachable && r.values == ["v1"])
        {
            Ok(view)
        } else {
            Err(format!("{} shows {view:?}", asked.id))
        }
    });
    let converged = sent.elapsed();
    assert!(
        view.iter().all(|r| !r.stale),
        "identical copies are not stale: {view:?}"
    );
    for node in [n1, n2, n3] {
        let r = node.get("/kv/k?r=all");
        assert_status(&r, 200, &format!("GET /kv/k?r=all on {}", node.id));
        assert_eq!(r.body, b"v1", "GET /kv/k?r=all on {}", node.id);
        assert!(
            r.header("x-causal-context").is_some_and(|t| !t.is_empty()),
            "a read answers with its causal context"
        );
    }
    println!(
        "w=one write acknowledged after {:.1} ms; all three replicas held it {:.1} ms after the PUT was sent",
        acked.as_secs_f64() * 1e3,
        converged.as_secs_f64() * 1e3
    );
}

#[test]
fn quorum_writes_survive_a_killed_node_and_it_catches_up_by_hinted_handoff() {
    let mut c = Cluster::start(3);
    c.nodes[2].kill();
    let [n1, n2, _] = &c.nodes[..] else {
        unreachable!()
    };
    assert_status(
        &n1.put("/kv/hh?w=quorum", b"v1"),
        204,
        "PUT w=quorum with n3 killed",
    );
    let r = n2.get("/kv/hh?r=quorum");
    assert_status(&r, 200, "GET r=quorum on n2 with n3 killed");
    assert_eq!(r.text(), "v1", "GET r=quorum on n2 with n3 killed");

    // Once the failure detector has marked n3, a write that needs all three cannot succeed.
    let state = poll("n1 to see n3 not up", CONVERGE, || {
        let m = members(n1)?;
        match m.iter().find(|(id, _)| id == "n3") {
            Some((_, state)) if state != "up" => Ok(state.clone()),
            _ => Err(format!("{m:?}")),
        }
    });
    let r = n1.put("/kv/hh-all?w=all", b"x");
    assert_status(&r, 503, &format!("PUT w=all while n1 sees n3 {state}"));
    let js = r.json().unwrap_or_else(|| panic!("503 without JSON: {r}"));
    assert!(js["error"].is_string(), "503 names the problem: {js}");
    let (answered, needed) = (js["answered"].as_u64(), js["needed"].as_u64());
    assert_eq!(needed, Some(3), "w=all of n=3 needs 3: {js}");
    assert!(
        answered.is_some_and(|a| a < 3),
        "fewer than 3 answered: {js}"
    );

    // The coordinator keeps n3's copy as a hint while n3 is down.
    let hints = poll("n1 to hold a hint for n3", CONVERGE, || {
        let r = n1.get("/cluster");
        let js = r.json().ok_or(r.to_string())?;
        match js["hints_pending"].as_u64() {
            Some(h) if h >= 1 => Ok(h),
            _ => Err(js.to_string()),
        }
    });

    let restarted = Instant::now();
    c.nodes[2].start();
    let [n1, _, n3] = &c.nodes[..] else {
        unreachable!()
    };
    poll(
        "restarted n3's own copy of hh to be v1",
        Duration::from_secs(30),
        || {
            let view = replicas(n1, "hh")?;
            match view.iter().find(|r| r.node == "n3") {
                Some(r) if r.reachable && r.values == ["v1"] => Ok(()),
                _ => Err(format!("{view:?}")),
            }
        },
    );
    let caught_up = restarted.elapsed();
    // n3 answers from its own disk now too.
    let own = replicas(n3, "hh").expect("n3's replicas view");
    assert!(
        own.iter().any(|r| r.node == "n3" && r.values == ["v1"]),
        "n3's view of its own copy: {own:?}"
    );
    // Handed-off hints are deleted once n3 acknowledged them.
    poll("n1's hints to be handed off", CONVERGE, || {
        let r = n1.get("/cluster");
        let js = r.json().ok_or(r.to_string())?;
        match js["hints_pending"].as_u64() {
            Some(0) => Ok(()),
            _ => Err(js.to_string()),
        }
    });
    println!(
        "n3 was marked {state}; w=all answered 503 {js}; n1 held {hints} hint(s); \
         n3 had the quorum write {:.2} s after its restart began",
        caught_up.as_secs_f64()
    );
}

#[test]
fn blind_concurrent_writes_become_siblings_and_a_context_write_resolves_them() {
    let c = Cluster::start(3);
    let [n1, n2, n3] = &c.nodes[..] else {
        unreachable!()
    };
    assert_status(&n1.put("/kv/s1?w=all", b"a"), 204, "PUT a w=all on n1");
    assert_status(&n2.put("/kv/s1?w=all", b"b"), 204, "PUT b w=all on n2");

    let r = n3.get("/kv/s1?r=all");
    assert_status(&r, 300, "GET r=all on n3 after two blind writes");
    let js = r.json().unwrap_or_else(|| panic!("300 without JSON: {r}"));
    let mut siblings: Vec<&str> = js["siblings"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"siblings\" list: {js}"))
        .iter()
        .map(|v| v.as_str().unwrap_or("?"))
        .collect();
    siblings.sort();
    assert_eq!(siblings, ["a", "b"], "{js}");
    let token = js["context"]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("no \"context\" token: {js}"))
        .to_string();

    // Both writes were acknowledged by all three, so every copy holds both siblings now.
    let view = replicas(n1, "s1").expect("replicas view");
    assert_eq!(view.len(), 3, "{view:?}");
    for r in &view {
        assert!(r.reachable && r.values == ["a", "b"], "{view:?}");
    }

    let r = n1.request("PUT", "/kv/s1", &[("X-Causal-Context", &token)], b"c");
    assert_status(&r, 204, "PUT c with the read's context");
    wait_replicas_hold(n2, "s1", &["n1", "n2", "n3"], &["c"]);
    for node in [n1, n2, n3] {
        let r = node.get("/kv/s1");
        assert_status(&r, 200, &format!("GET s1 on {} after resolution", node.id));
        assert_eq!(r.text(), "c", "GET s1 on {}", node.id);
    }
}

#[test]
fn counters_and_sets_converge_under_concurrent_updates_through_different_nodes() {
    const ROUNDS: usize = 20;
    const LOAD_DEADLINE: Duration = Duration::from_secs(20);
    let c = Cluster::start(3);
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = c
            .nodes
            .iter()
            .map(|node| {
                let (id, port) = (node.id.clone(), node.http);
                s.spawn(move || {
                    let mut failures = Vec::new();
                    let json = [("Content-Type", "application/json")];
                    for i in 0..ROUNDS {
                        if started.elapsed() > LOAD_DEADLINE {
                            failures.push(format!("{id}: only {i} rounds in {LOAD_DEADLINE:?}"));
                            break;
                        }
                        let delta = json!({ "delta": 1 }).to_string();
                        let add = json!({ "add": [format!("{id}-{i}")] }).to_string();
                        for (path, body) in [("/counters/c", delta), ("/sets/s", add)] {
                            match request(port, "POST", path, &json, body.as_bytes()) {
                                Ok(r) if (200..300).contains(&r.status) => {}
                                Ok(r) => failures.push(format!("{id} POST {path}: {r}")),
                                Err(e) => failures.push(format!("{id} POST {path}: {e}")),
                            }
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a load thread panicked"))
            .collect()
    });
    assert!(failures.is_empty(), "updates failed: {failures:?}");
    let load_took = started.elapsed();

    let mut expected: Vec<String> = c
        .nodes
        .iter()
        .flat_map(|n| (0..ROUNDS).map(move |i| format!("{}-{i}", n.id)))
        .collect();
    expected.sort();
    let total = (ROUNDS * c.nodes.len()) as i64;
    let converged = || -> Result<(), String> {
        for node in &c.nodes {
            let r = node.get("/counters/c");
            if r.json() != Some(json!({ "value": total })) {
                return Err(format!("GET /counters/c on {}: {r}", node.id));
            }
            let view = replicas(node, "c")?;
            if view.len() != 3
                || !view
                    .iter()
                    .all(|r| r.reachable && r.raw["counter"] == json!(total))
            {
                return Err(format!("counter replicas seen from {}: {view:?}", node.id));
            }
        }
        Ok(())
    };
    poll(
        &format!("the counter to be {total} everywhere"),
        CONVERGE,
        converged,
    );
    let set_is = |want: &[String]| -> Result<(), String> {
        for node in &c.nodes {
            let r = node.get("/sets/s");
            let js = r.json().ok_or(r.to_string())?;
            let mut got: Vec<String> = js["members"]
                .as_array()
                .ok_or_else(|| format!("GET /sets/s on {}: {js}", node.id))?
                .iter()
                .map(|m| m.as_str().unwrap_or("?").to_string())
                .collect();
            got.sort();
            if got != want {
                return Err(format!(
                    "GET /sets/s on {} has {} members: {got:?}",
                    node.id,
                    got.len()
                ));
            }
            let view = replicas(node, "s")?;
            if view.len() != 3 || !view.iter().all(|r| r.reachable && r.values == want) {
                return Err(format!("set replicas seen from {}: {view:?}", node.id));
            }
        }
        Ok(())
    };
    poll(
        &format!("the set to have all {} members everywhere", expected.len()),
        CONVERGE,
        || set_is(&expected),
    );
    let converged_after = started.elapsed();

    let r = c.nodes[1].post_json("/sets/s", &json!({ "remove": ["n1-0"] }));
    assert_ok(&r, "POST /sets/s remove n1-0 on n2");
    expected.retain(|m| m != "n1-0");
    poll("n1-0 to be removed everywhere", CONVERGE, || {
        set_is(&expected)
    });
    println!(
        "{total} increments and {total} set adds through three nodes took {:.2} s; converged {:.2} s after the load began",
        load_took.as_secs_f64(),
        converged_after.as_secs_f64()
    );
}

#[test]
fn a_restarted_node_keeps_its_data() {
    let mut c = Cluster::start(3);
    let keys: Vec<(String, String)> = (0..5)
        .map(|i| (format!("keep-{i}"), format!("value-{i}")))
        .collect();
    for (i, (k, v)) in keys.iter().enumerate() {
        let node = &c.nodes[i % 3];
        assert_status(
            &node.put(&format!("/kv/{k}?w=all"), v.as_bytes()),
            204,
            &format!("PUT {k} w=all on {}", node.id),
        );
    }
    for node in &mut c.nodes {
        node.kill();
    }
    c.nodes[0].start();
    let n1 = &c.nodes[0];
    for (k, v) in &keys {
        let view = poll(
            &format!("n1's own copy of {k} after the restart"),
            CONVERGE,
            || {
                let view = replicas(n1, k)?;
                match view.iter().find(|r| r.node == "n1") {
                    Some(r) if r.reachable && r.values == [v.as_str()] => Ok(view),
                    _ => Err(format!("{view:?}")),
                }
            },
        );
        let nodes: BTreeSet<&str> = view.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(
            nodes,
            BTreeSet::from(["n1", "n2", "n3"]),
            "n1 remembers the owners of {k} across its restart: {view:?}"
        );
        for r in view.iter().filter(|r| r.node != "n1") {
            assert!(
                !r.reachable && r.values.is_empty(),
                "{} is down, so its copy is unreachable: {view:?}",
                r.node
            );
        }
        let r = n1.get(&format!("/kv/{k}?r=one"));
        assert_status(&r, 200, &format!("GET {k} r=one on n1 alone"));
        assert_eq!(r.text(), *v, "GET {k} r=one on n1 alone");
    }
}

#[test]
fn bad_input_gets_json_4xx_and_the_node_keeps_serving() {
    let config_dir = tempfile::tempdir().expect("a temporary directory");
    let config = config_dir.path().join("node.toml");
    std::fs::write(&config, "value_bytes_max = 1024\n").expect("write the config file");
    let mut node = Node::new("solo", &["--config".into(), config.display().to_string()]);
    node.start();
    let json = [("Content-Type", "application/json")];

    let mut cases: Vec<(String, Response)> = vec![
        (
            "malformed JSON to /write".into(),
            node.request("POST", "/write", &json, b"{not json"),
        ),
        (
            "malformed JSON to /counters".into(),
            node.request("POST", "/counters/c", &json, b"{\"delta\": "),
        ),
        (
            "malformed JSON to /sets".into(),
            node.request("POST", "/sets/s", &json, b"[\"a\", "),
        ),
        ("unknown w level".into(), node.put("/kv/k?w=most", b"v")),
        ("unknown r level".into(), node.get("/kv/k?r=most")),
        (
            "a 2000-byte value over a 1024-byte limit".into(),
            node.put("/kv/big", &[b'x'; 2000]),
        ),
        (
            "a 2000-byte value through /write".into(),
            node.post_json(
                "/write",
                &json!({ "key": "big", "value": "x".repeat(2000) }),
            ),
        ),
        (
            "a 1100-byte key".into(),
            node.put(&format!("/kv/{}", "k".repeat(1100)), b"v"),
        ),
        (
            "random base64 as a context".into(),
            node.request(
                "PUT",
                "/kv/k",
                &[("X-Causal-Context", "bm90IGEgY29udGV4dCB0b2tlbiBhdCBhbGw")],
                b"v",
            ),
        ),
        (
            "a context that is not base64".into(),
            node.request("PUT", "/kv/k", &[("X-Causal-Context", "!!!***")], b"v"),
        ),
        (
            "a counter delta that is a string".into(),
            node.post_json("/counters/c", &json!({ "delta": "one" })),
        ),
        (
            "a counter delta that is a fraction".into(),
            node.post_json("/counters/c", &json!({ "delta": 1.5 })),
        ),
        (
            "a counter body without delta".into(),
            node.post_json("/counters/c", &json!({ "by": 1 })),
        ),
        ("an unknown route".into(), node.get("/no/such/route")),
        (
            "a method the route does not take".into(),
            node.request("PATCH", "/kv/k", &[], b"v"),
        ),
        ("a key that is not UTF-8".into(), node.get("/kv/%FF%FE")),
        (
            "a set update that is not an object".into(),
            node.post_json("/sets/s", &json!(["a"])),
        ),
    ];
    // A valid token, but for another key: refused rather than applied to this one.
    let r = node.put("/kv/other", b"o");
    assert_status(&r, 204, "PUT /kv/other");
    let other = r
        .header("x-causal-context")
        .unwrap_or_else(|| panic!("a write answers with its context: {r}"))
        .to_string();
    cases.push((
        "another key's context".into(),
        node.request("PUT", "/kv/k", &[("X-Causal-Context", &other)], b"v"),
    ));
    // That token with one character changed: the checksum catches it.
    let mut corrupt: Vec<char> = other.chars().collect();
    let at = corrupt.len() / 2;
    corrupt[at] = if corrupt[at] == 'A' { 'B' } else { 'A' };
    let corrupt: String = corrupt.into_iter().collect();
    cases.push((
        "a corrupted context".into(),
        node.request("PUT", "/kv/other", &[("X-Causal-Context", &corrupt)], b"v"),
    ));
    cases.push((
        "another key's session token".into(),
        node.request("GET", "/kv/k", &[("X-Session-Token", &other)], b""),
    ));
    cases.push((
        "a corrupted session token".into(),
        node.request("GET", "/kv/other", &[("X-Session-Token", &corrupt)], b""),
    ));
    // The write's context as a session token: the read answers that write (or newer).
    let r = node.request("GET", "/kv/other", &[("X-Session-Token", &other)], b"");
    assert_status(&r, 200, "a session read with the write's context");
    assert_eq!(r.text(), "o");

    for (what, r) in &cases {
        let message = assert_json_4xx(r, what);
        println!("{what}: {} {message}", r.status);
    }
    let status_of = |what: &str| cases.iter().find(|(w, _)| w == what).map(|(_, r)| r.status);
    assert_eq!(
        status_of("a 2000-byte value over a 1024-byte limit"),
        Some(413)
    );
    assert_eq!(status_of("an unknown route"), Some(404));

    assert_status(&node.get("/health"), 200, "/health after the bad requests");
    // The limit is the configured one, not the default: exactly 1024 bytes is fine.
    assert_status(
        &node.put("/kv/big", &[b'y'; 1024]),
        204,
        "a 1024-byte value",
    );
    assert_eq!(
        node.get("/kv/big").body,
        [b'y'; 1024],
        "the 1024-byte value"
    );
    // Nothing of the refused writes to k was stored: a first write reads back alone.
    assert_status(&node.put("/kv/k", b"fine"), 204, "a normal PUT");
    let r = node.get("/kv/k");
    assert_status(&r, 200, "a normal GET");
    assert_eq!(r.text(), "fine");
    assert!(
        !node.log().contains("panicked"),
        "the node panicked:\n{}",
        node.log_tail()
    );
    node.kill();

    // Bad configuration: a clear message and a non-zero exit, never a panic.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = |id: &str| -> Vec<String> {
        let mut a: Vec<String> = ["node", "--id", id, "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(dir.path().join(id).display().to_string());
        a.extend([
            "--listen".into(),
            format!("127.0.0.1:{}", support::free_port()),
            "--http".into(),
            format!("127.0.0.1:{}", support::free_port()),
        ]);
        a
    };
    let malformed = dir.path().join("malformed.toml");
    std::fs::write(&malformed, "id = \n[[[buckets\n").expect("write the config file");
    let mut bad_r = base("bad-r");
    bad_r.extend(["--r".into(), "most".into()]);
    let mut bad_file = base("bad-file");
    bad_file.extend(["--config".into(), malformed.display().to_string()]);
    for (what, args, mentions) in [
        ("--r most", bad_r, "most"),
        ("a malformed TOML file", bad_file, "config file"),
    ] {
        let (status, stderr) = run_to_exit(&args, Duration::from_secs(10));
        assert!(
            !status.success(),
            "a node with {what} should not start; stderr: {stderr}"
        );
        assert!(
            stderr.contains(mentions),
            "the error for {what} should mention {mentions:?}; stderr: {stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "{what} made the node panic: {stderr}"
        );
        println!("{what}: {status}: {}", stderr.trim());
    }
}

#[test]
fn a_node_of_another_cluster_is_refused() {
    let mut a = Node::new("n1", &["--cluster".into(), "a".into()]);
    a.start();
    let mut b = Node::new(
        "n2",
        &[
            "--cluster".into(),
            "b".into(),
            "--join".into(),
            format!("127.0.0.1:{}", a.listen),
        ],
    );
    b.start();
    // The refusing node names the mismatch in its own log; the refused one is told nothing
    // (a stranger must not learn the cluster's name), so it can only say it was refused.
    let line = poll("the node joined to log a refusal", CONVERGE, || {
        a.log()
            .lines()
            .find(|l| l.contains("refused"))
            .map(str::to_string)
            .ok_or_else(|| a.log_tail())
    });
    assert!(
        line.contains("cluster") && line.contains("\"b\""),
        "the refusal names the cluster mismatch: {line}"
    );
    poll(
        "the joining node to log that it was refused",
        CONVERGE,
        || {
            b.log()
                .lines()
                .find(|l| l.contains("refused"))
                .map(str::to_string)
                .ok_or_else(|| b.log_tail())
        },
    );
    assert!(
        !b.log().contains("\"a\""),
        "the refused node learned the cluster's name: {}",
        b.log_tail()
    );
    let seen = members(&a).expect("n1's /cluster");
    assert_eq!(
        seen,
        [("n1".to_string(), "up".to_string())],
        "n1 of cluster a must not list a node of cluster b"
    );
    println!("n1 (cluster a) logged: {line}");
}
