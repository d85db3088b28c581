//! Real `driftkv node` processes healing without client reads: active anti-entropy refills a
//! node that missed 10,000 writes and a node whose disk was wiped (which comes back as a new
//! actor, so its writes are never shadowed by its old life: Riak's kv679, also checked across
//! wipes within one second), deletes that never come back through anti-entropy, restarts or
//! tombstone collection, a node joining and another leaving under a write load without losing
//! an acknowledged write, and a node that left staying out of the ring when the rest restart.
//!
//! Hinted handoff and read repair are turned off where only anti-entropy may heal, and the
//! tests make no client reads of the keys they watch (the replicas view never repairs).

#[allow(dead_code)] // shared with processes.rs, which uses the parts this file does not
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Cluster, Node, members, metric, poll, replicas, request, run_to_exit};

/// Client threads that drive a bulk load or a bulk check (two cores, three or four nodes).
const CLIENT_THREADS: usize = 8;
/// Ample for what should take a second or two; the tests run in parallel on two cores.
const CONVERGE: Duration = Duration::from_secs(20);

/// A TOML config file shared by every node of a test, kept while the test runs.
struct ConfigFile {
    _dir: tempfile::TempDir,
    /// `--config PATH`, to give a node.
    args: Vec<String>,
}

fn config_file(toml: &str) -> ConfigFile {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, toml).expect("write the config file");
    ConfigFile {
        args: vec!["--config".into(), path.display().to_string()],
        _dir: dir,
    }
}

/// Runs `check` on every item, spread over `CLIENT_THREADS` threads; returns the failures.
fn par_each<T: Sync>(items: &[T], check: impl Fn(&T) -> Result<(), String> + Sync) -> Vec<String> {
    if items.is_empty() {
        return Vec::new();
    }
    let chunk = items.len().div_ceil(CLIENT_THREADS);
    std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let check = &check;
                s.spawn(move || {
                    part.iter()
                        .filter_map(|i| check(i).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a client thread panicked"))
            .collect()
    })
}

/// Writes every `(key, value)` with `PUT /kv/{key}?w=LEVEL`, key `i` through `ports[i % len]`;
/// returns the writes that were not acknowledged.
fn put_all(ports: &[u16], keys: &[(String, String)], w: &str) -> Vec<String> {
    let jobs: Vec<(u16, &str, &str)> = keys
        .iter()
        .enumerate()
        .map(|(i, (k, v))| (ports[i % ports.len()], k.as_str(), v.as_str()))
        .collect();
    par_each(&jobs, |(port, k, v)| {
        match request(*port, "PUT", &format!("/kv/{k}?w={w}"), &[], v.as_bytes()) {
            Ok(r) if r.status == 204 => Ok(()),
            Ok(r) => Err(format!("PUT {k} via :{port}: {r}")),
            Err(e) => Err(format!("PUT {k} via :{port}: {e}")),
        }
    })
}

/// `node`'s own copy of `key` as its replicas view shows it: `Ok(values)` when reachable.
fn own_copy(node: &Node, key: &str) -> Result<Vec<String>, String> {
    let view = replicas(node, key)?;
    match view.iter().find(|r| r.node == node.id) {
        Some(r) if r.reachable => Ok(r.values.clone()),
        _ => Err(format!(
            "{} shows no copy of its own for {key}: {view:?}",
            node.id
        )),
    }
}

/// Waits until `node`'s own copy of every key holds exactly its value; each round checks only
/// the keys still missing. Returns how long it took.
fn wait_own_copies(node: &Node, keys: &[(String, String)], deadline: Duration) -> Duration {
    let started = Instant::now();
    let mut missing: Vec<&(String, String)> = keys.iter().collect();
    poll(
        &format!(
            "{} to hold its own copy of all {} keys",
            node.id,
            keys.len()
        ),
        deadline,
        || {
            let wrong = par_each(&missing, |(k, v)| match own_copy(node, k) {
                Ok(values) if values == [v.as_str()] => Ok(()),
                Ok(values) => Err(format!("{k}: {values:?}")),
                Err(e) => Err(format!("{k}: {e}")),
            });
            let still: BTreeSet<&str> = wrong.iter().filter_map(|w| w.split(':').next()).collect();
            missing.retain(|(k, _)| still.contains(k.as_str()));
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} keys not (yet) right, for example {:?}",
                    wrong.len(),
                    &wrong[..wrong.len().min(5)]
                ))
            }
        },
    );
    started.elapsed()
}

/// What `GET /kv/{key}?r=LEVEL` answered: its status and values (the one value of a 200, the
/// siblings of a 300, none for a 404), sorted.
fn read(port: u16, key: &str, r: &str) -> Result<(u16, Vec<String>), String> {
    let resp = request(port, "GET", &format!("/kv/{key}?r={r}"), &[], b"")?;
    match resp.status {
        200 => Ok((200, vec![resp.text()])),
        300 => {
            let js = resp
                .json()
                .ok_or_else(|| format!("300 without JSON: {resp}"))?;
            let mut values: Vec<String> = js["siblings"]
                .as_array()
                .ok_or_else(|| format!("300 without \"siblings\": {js}"))?
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect();
            values.sort();
            Ok((300, values))
        }
        404 => Ok((404, Vec::new())),
        _ => Err(format!("GET {key} r={r}: {resp}")),
    }
}

/// The causal context of a read: the header of a 200, the `"context"` of a 300.
fn read_context(port: u16, key: &str) -> String {
    let resp = request(port, "GET", &format!("/kv/{key}"), &[], b"")
        .unwrap_or_else(|e| panic!("GET {key}: {e}"));
    let token = match resp.status {
        200 | 404 => resp.header("x-causal-context").map(str::to_string),
        300 => resp
            .json()
            .and_then(|js| js["context"].as_str().map(str::to_string)),
        _ => None,
    };
    token
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("GET {key} answered no causal context: {resp}"))
}

/// The sum of a metric over `nodes`.
fn metric_sum(nodes: &[Node], name: &str) -> f64 {
    nodes
        .iter()
        .map(|n| metric(n, name).unwrap_or_else(|e| panic!("{e}")))
        .sum()
}

/// The actors of node `id` (`id`, or `id#incarnation`) in the version vectors of every copy
/// of `key`, as `node`'s replicas view shows them.
fn actors_of(node: &Node, key: &str, id: &str) -> BTreeSet<String> {
    let view = replicas(node, key).unwrap_or_else(|e| panic!("{e}"));
    view.iter()
        .filter_map(|r| r.raw["version_vector"].as_object())
        .flat_map(|vv| vv.keys().cloned())
        .filter(|a| a == id || a.starts_with(&format!("{id}#")))
        .collect()
}

/// The `/cluster` JSON of a node.
fn cluster_view(node: &Node) -> Result<Value, String> {
    let r = node.try_request("GET", "/cluster", &[], b"")?;
    r.json()
        .filter(|_| r.status == 200)
        .ok_or_else(|| r.to_string())
}

#[test]
fn a_node_that_missed_10000_writes_converges_by_anti_entropy_alone() {
    const KEYS: usize = 10_000;
    let cfg = config_file(
        "hinted_handoff = false\nread_repair = false\nanti_entropy_interval_ms = 200\ndurability = \"none\"\n",
    );
    let mut c = Cluster::start_with(3, &cfg.args);
    c.nodes[2].kill();
    let keys: Vec<(String, String)> = (0..KEYS)
        .map(|i| (format!("ae-{i:05}"), format!("value-{i}")))
        .collect();
    let load = Instant::now();
    let failed = put_all(&[c.nodes[0].http, c.nodes[1].http], &keys, "quorum");
    assert!(
        failed.is_empty(),
        "{} quorum writes with n3 down failed, for example {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let load_took = load.elapsed();
    assert_eq!(
        metric_sum(&c.nodes[..2], "driftkv_hints_stored_total"),
        0.0,
        "hinted handoff is off: nothing may heal n3 but anti-entropy"
    );

    let back = Instant::now();
    c.nodes[2].start();
    let serving = back.elapsed();
    let n3 = &c.nodes[2];
    let mut samples = Vec::new();
    let repaired = poll(
        &format!("n3's driftkv_aae_keys_repaired_total to reach {KEYS}"),
        Duration::from_secs(45),
        || {
            let repaired = metric(n3, "driftkv_aae_keys_repaired_total")?;
            samples.push((back.elapsed(), repaired));
            if repaired >= KEYS as f64 {
                Ok(repaired)
            } else {
                Err(format!("{repaired} so far"))
            }
        },
    );
    let converged = back.elapsed();
    let checked_in = wait_own_copies(n3, &keys, CONVERGE);

    // Nothing but the exchanges touched n3: no client read, no read repair, no hint.
    for name in [
        "driftkv_coordinated_reads_total",
        "driftkv_read_repairs_sent_total",
        "driftkv_hints_delivered_total",
    ] {
        assert_eq!(metric_sum(&c.nodes, name), 0.0, "{name} over the cluster");
    }
    let exchanges = metric_sum(&c.nodes, "driftkv_aae_exchanges_total");
    let in_sync = metric_sum(&c.nodes, "driftkv_aae_exchanges_in_sync_total");
    let bytes = metric_sum(&c.nodes, "driftkv_aae_bytes_sent_total");
    let mismatches = metric_sum(&c.nodes, "driftkv_aae_tree_mismatches_total");
    assert_eq!(mismatches, 0.0, "hash trees that drifted from storage");
    let halfway = samples
        .iter()
        .find(|(_, r)| *r >= KEYS as f64 / 2.0)
        .map_or(converged, |(t, _)| *t);
    println!(
        "{KEYS} quorum writes with n3 down took {:.1} s; n3 restarted and anti-entropy repaired \
         {repaired} keys on it {:.2} s after its restart began (it served HTTP after {:.2} s; \
         half the keys by {:.2} s), every copy verified {:.2} s later; {exchanges} exchanges \
         ({in_sync} in sync), {:.1} MiB of objects sent",
        load_took.as_secs_f64(),
        converged.as_secs_f64(),
        serving.as_secs_f64(),
        halfway.as_secs_f64(),
        checked_in.as_secs_f64(),
        bytes / (1024.0 * 1024.0)
    );
}

#[test]
fn a_wiped_node_refills_every_key_and_its_writes_are_never_shadowed_by_its_old_life() {
    const KEYS: usize = 3_000;
    const WHILE_DOWN: usize = 300;
    const KV679: usize = 20;
    // Hinted handoff stays on (the writes n3 misses while down come back by hints); read
    // repair is off, so the reads below change nothing.
    let cfg =
        config_file("read_repair = false\nanti_entropy_interval_ms = 200\ndurability = \"none\"\n");
    let mut c = Cluster::start_with(3, &cfg.args);
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.http).collect();
    let mut keys: Vec<(String, String)> = (0..KEYS)
        .map(|i| (format!("wipe-{i:04}"), format!("value-{i}")))
        .collect();
    let failed = put_all(&ports, &keys, "all");
    assert!(failed.is_empty(), "w=all writes failed: {failed:?}");

    // Keys n3 wrote three times each, each write on top of the last: every replica's version
    // vector holds n3's dots 1..3 under its first incarnation.
    let kv679: Vec<String> = (0..KV679).map(|i| format!("kv679-{i:02}")).collect();
    for (i, key) in kv679.iter().enumerate() {
        let mut context: Option<String> = None;
        for round in 1..=3 {
            let headers: Vec<(&str, &str)> = context
                .as_deref()
                .map(|t| vec![("X-Causal-Context", t)])
                .unwrap_or_default();
            let r = c.nodes[2].request(
                "PUT",
                &format!("/kv/{key}?w=all"),
                &headers,
                format!("old-{i}-{round}").as_bytes(),
            );
            assert_eq!(r.status, 204, "PUT {key} round {round} via n3: {r}");
            context = r.header("x-causal-context").map(str::to_string);
        }
    }
    let old_actors = actors_of(&c.nodes[0], &kv679[0], "n3");
    assert_eq!(
        old_actors.len(),
        1,
        "n3's actor before the wipe: {old_actors:?}"
    );

    c.nodes[2].kill();
    let down_keys: Vec<(String, String)> = (0..WHILE_DOWN)
        .map(|i| (format!("down-{i:03}"), format!("missed-{i}")))
        .collect();
    let failed = put_all(&ports[..2], &down_keys, "quorum");
    assert!(
        failed.is_empty(),
        "quorum writes with n3 down failed: {failed:?}"
    );
    keys.extend(down_keys);

    c.nodes[2].wipe_data();
    let back = Instant::now();
    c.nodes[2].start();
    let n3 = &c.nodes[2];
    // A w=all write through n3 needs n3 to see its peers up.
    poll("the wiped n3 to see every member up", CONVERGE, || {
        let m = members(n3)?;
        if m.len() == 3 && m.iter().all(|(_, s)| s == "up") {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    });

    // Blind writes coordinated by the wiped node, as early as it can take them: under its old
    // actor its first dot would be (n3, 1), which every other replica has seen, so they would
    // drop the new value as old news (kv679). Under a new incarnation it is a sibling.
    let mut not_refilled = 0;
    for (i, key) in kv679.iter().enumerate() {
        if own_copy(n3, key)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
        {
            not_refilled += 1;
        }
        let r = n3.put(&format!("/kv/{key}?w=all"), format!("new-{i}").as_bytes());
        assert_eq!(r.status, 204, "blind PUT {key} w=all via the wiped n3: {r}");
    }
    for (i, key) in kv679.iter().enumerate() {
        let want = [format!("new-{i}"), format!("old-{i}-3")];
        for node in &c.nodes {
            let got = read(node.http, key, "all").unwrap_or_else(|e| panic!("{e}"));
            assert!(
                got.1.contains(&want[0]),
                "kv679: the blind write {:?} through the wiped n3 was shadowed by n3's old \
                 life; GET {key} r=all on {} answered {got:?}",
                want[0],
                node.id
            );
            assert_eq!(
                got,
                (300, want.to_vec()),
                "a blind write beside the old value is a sibling of it (GET {key} r=all on {})",
                node.id
            );
        }
    }
    let now_actors = actors_of(&c.nodes[0], &kv679[0], "n3");
    assert!(
        now_actors.is_superset(&old_actors) && now_actors.len() == 2,
        "after the wipe n3 writes as a new actor beside its old one: before {old_actors:?}, \
         now {now_actors:?}"
    );

    // Every key comes back to the wiped node: by anti-entropy, and by hints for the writes it
    // missed while down.
    let refilled = wait_own_copies(n3, &keys, Duration::from_secs(40));
    let refill_took = back.elapsed();
    let repaired = metric(n3, "driftkv_aae_keys_repaired_total").unwrap_or_else(|e| panic!("{e}"));
    let hinted = metric_sum(&c.nodes[..2], "driftkv_hints_delivered_total");
    assert!(
        repaired >= KEYS as f64,
        "anti-entropy repaired {repaired} keys on the wiped n3; it lacked at least {KEYS}"
    );

    // A write coordinated by the refilled node with the context of a read through it is what
    // every node reads afterwards.
    let mut sample: Vec<String> = keys.iter().step_by(100).map(|(k, _)| k.clone()).collect();
    sample.extend(kv679.iter().cloned());
    for key in &sample {
        let token = read_context(n3.http, key);
        let value = format!("final-{key}");
        let r = n3.request(
            "PUT",
            &format!("/kv/{key}?w=all"),
            &[("X-Causal-Context", &token)],
            value.as_bytes(),
        );
        assert_eq!(r.status, 204, "PUT {key} with its context via n3: {r}");
        for node in &c.nodes {
            let got = read(node.http, key, "one").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                got,
                (200, vec![value.clone()]),
                "GET {key} r=one on {} after a context write through the refilled n3",
                node.id
            );
        }
        let view = replicas(&c.nodes[0], key).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            view.len() == 3
                && view
                    .iter()
                    .all(|r| r.reachable && r.values == [value.clone()]),
            "every copy of {key} is {value:?}: {view:?}"
        );
    }
    println!(
        "the wiped n3 took {KV679} blind writes ({not_refilled} of them to keys it had not \
         refilled yet), none shadowed; it held all {} keys {:.2} s after its restart began \
         (the last check took {:.2} s): {repaired} repaired by anti-entropy, {hinted} hints \
         delivered; {} context writes through it read back everywhere",
        keys.len(),
        refill_took.as_secs_f64(),
        refilled.as_secs_f64(),
        sample.len()
    );
}

/// Every node's answer to a quorum read of each deleted key is 404, and to each kept key its
/// value; `r_one_too` also reads each node's own copy (`r=one`), for when every replica is
/// expected to have caught up.
fn reads_show_deleted(
    nodes: &[Node],
    deleted: &[String],
    kept: &[(String, String)],
    r_one_too: bool,
) -> Result<(), String> {
    let levels: &[&str] = if r_one_too {
        &["quorum", "one"]
    } else {
        &["quorum"]
    };
    for node in nodes {
        for r in levels {
            for key in deleted {
                let got = read(node.http, key, r)?;
                if got.0 != 404 {
                    return Err(format!(
                        "RESURRECTED: GET {key} r={r} on {} answered {got:?} after its delete",
                        node.id
                    ));
                }
            }
            for (key, value) in kept {
                let got = read(node.http, key, r)?;
                if got != (200, vec![value.clone()]) {
                    return Err(format!(
                        "GET {key} r={r} on {} answered {got:?}, not {value:?}",
                        node.id
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A node's copy of a key: `(node, None)` for no record, `(node, Some(values))` for a record.
type HeldCopy = (String, Option<Vec<String>>);

/// What each copy of `key` holds, as `node`'s replicas view shows it: `None` for no record at
/// all, `Some(values)` for a record (a tombstone has no values). Unreachable copies are errors.
fn copies(node: &Node, key: &str) -> Result<Vec<HeldCopy>, String> {
    let view = replicas(node, key)?;
    if view.len() != 3 || !view.iter().all(|r| r.reachable) {
        return Err(format!("not every copy of {key} is reachable: {view:?}"));
    }
    Ok(view
        .iter()
        .map(|r| {
            let held = r.raw.get("tombstone").is_some() || !r.values.is_empty();
            (r.node.clone(), held.then(|| r.values.clone()))
        })
        .collect())
}

/// Waits until each of `nodes` sees the member `id` down.
fn wait_seen_down(nodes: &[Node], id: &str) {
    for node in nodes {
        poll(&format!("{} to see {id} down", node.id), CONVERGE, || {
            let m = members(node)?;
            if m.iter().any(|(i, state)| i == id && state == "down") {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        });
    }
}

/// Kills every node, then starts them all again and waits until they see each other up.
fn restart_all(c: &mut Cluster) {
    for node in &mut c.nodes {
        node.kill();
    }
    for node in &mut c.nodes {
        node.start();
    }
    c.wait_all_up(CONVERGE);
}

#[test]
fn a_key_deleted_while_a_node_was_down_never_comes_back() {
    const DELETED: usize = 20;
    const KEPT: usize = 20;
    /// Anti-entropy rounds to keep watching (the interval is 200 ms).
    const WATCH: Duration = Duration::from_secs(3);
    // Only anti-entropy carries the tombstones to the returning node (no hints, no read
    // repair). 8 partitions, so the tombstone sweep (a partition a second) comes round soon.
    let cfg = config_file(
        "hinted_handoff = false\nread_repair = false\nanti_entropy_interval_ms = 200\n\
         tombstone_grace_ms = 8000\nhint_age_max_ms = 8000\npartitions = 8\n",
    );
    let mut c = Cluster::start_with(3, &cfg.args);
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.http).collect();
    let deleted: Vec<String> = (0..DELETED).map(|i| format!("gone-{i:02}")).collect();
    let kept: Vec<(String, String)> = (0..KEPT)
        .map(|i| (format!("kept-{i:02}"), format!("kept-value-{i}")))
        .collect();
    let mut all: Vec<(String, String)> = deleted
        .iter()
        .map(|k| (k.clone(), format!("doomed-{k}")))
        .collect();
    all.extend(kept.iter().cloned());
    let failed = put_all(&ports, &all, "all");
    assert!(failed.is_empty(), "w=all writes failed: {failed:?}");

    c.nodes[2].kill();
    // The deletes go out once n1 and n2 know n3 is down, so none is sent (or queued) to it.
    wait_seen_down(&c.nodes[..2], "n3");
    let deleted_at = Instant::now();
    for (i, key) in deleted.iter().enumerate() {
        let node = &c.nodes[i % 2];
        let r = node.request("DELETE", &format!("/kv/{key}?w=quorum"), &[], b"");
        assert_eq!(
            r.status, 204,
            "DELETE {key} w=quorum via {} with n3 down: {r}",
            node.id
        );
    }
    reads_show_deleted(&c.nodes[..2], &deleted, &kept, false).unwrap_or_else(|e| panic!("{e}"));

    // n3 returns with the old values. From the moment it can take quorum reads, no node may
    // answer one of the deleted keys, and anti-entropy brings n3 the tombstones.
    c.nodes[2].start();
    c.wait_all_up(CONVERGE);
    let returned = deleted_at.elapsed();
    poll(
        "anti-entropy to bring every tombstone to n3 (no reads answering a deleted key)",
        CONVERGE,
        || {
            reads_show_deleted(&c.nodes, &deleted, &kept, false).unwrap_or_else(|e| panic!("{e}"));
            for key in &deleted {
                let held = copies(&c.nodes[0], key)?;
                if held
                    .iter()
                    .any(|(_, v)| v.as_ref().is_some_and(|v| !v.is_empty()))
                {
                    return Err(format!("{key}: {held:?}"));
                }
            }
            Ok(())
        },
    );
    let tombstoned = deleted_at.elapsed();
    let repaired =
        metric(&c.nodes[2], "driftkv_aae_keys_repaired_total").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        repaired >= DELETED as f64,
        "the tombstones reached n3 by anti-entropy: it repaired {repaired} keys"
    );
    assert_eq!(
        metric_sum(&c.nodes, "driftkv_hints_stored_total"),
        0.0,
        "hinted handoff is off"
    );
    // Keep watching a few rounds of anti-entropy: the old values never come back.
    let watch = Instant::now();
    let mut rounds = 0;
    while watch.elapsed() < WATCH {
        rounds += 1;
        reads_show_deleted(&c.nodes, &deleted, &kept, true).unwrap_or_else(|e| panic!("{e}"));
        for key in &deleted {
            let held = copies(&c.nodes[rounds % 3], key).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                held.iter()
                    .all(|(_, v)| v.as_ref().is_none_or(|v| v.is_empty())),
                "RESURRECTED: a copy of {key} holds a value again: {held:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let collected_before_restart = metric_sum(&c.nodes, "driftkv_tombstones_collected_total");

    // Every node restarts from its disk: still deleted.
    restart_all(&mut c);
    poll(
        "deleted keys to stay deleted after every node restarted",
        CONVERGE,
        || reads_show_deleted(&c.nodes, &deleted, &kept, true),
    );

    // The tombstones are collected once every primary holds them past the grace.
    let mut collected_view = Vec::new();
    let collected = poll(
        &format!("the tombstones of all {DELETED} deleted keys to be collected on all three"),
        Duration::from_secs(45),
        || {
            reads_show_deleted(&c.nodes, &deleted, &kept, false).unwrap_or_else(|e| panic!("{e}"));
            let collected = collected_before_restart
                + metric_sum(&c.nodes, "driftkv_tombstones_collected_total");
            for key in &deleted {
                let held = copies(&c.nodes[0], key)?;
                if held.iter().any(|(_, v)| v.is_some()) {
                    return Err(format!(
                        "{collected} collected so far; {key} is still held: {held:?}"
                    ));
                }
                collected_view = held;
            }
            if collected >= (3 * DELETED) as f64 {
                Ok(collected)
            } else {
                Err(format!("{collected} collected so far"))
            }
        },
    );
    let collected_after = deleted_at.elapsed();
    assert!(collected_view.iter().all(|(_, v)| v.is_none()));

    // Gone for good: through more rounds of anti-entropy, and after every node restarts.
    let watch = Instant::now();
    while watch.elapsed() < WATCH {
        reads_show_deleted(&c.nodes, &deleted, &kept, true).unwrap_or_else(|e| panic!("{e}"));
        for key in &deleted {
            let held = copies(&c.nodes[1], key).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                held.iter().all(|(_, v)| v.is_none()),
                "a collected key is back: {held:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    restart_all(&mut c);
    poll(
        "collected keys to stay deleted after every node restarted",
        CONVERGE,
        || {
            reads_show_deleted(&c.nodes, &deleted, &kept, true)?;
            for key in &deleted {
                let held = copies(&c.nodes[2], key)?;
                if held.iter().any(|(_, v)| v.is_some()) {
                    return Err(format!("a collected key is back: {key} {held:?}"));
                }
            }
            Ok(())
        },
    );
    println!(
        "{DELETED} keys deleted with n3 down; n3 back {:.1} s after the deletes, tombstones on all \
         three by {:.1} s ({rounds} watch rounds, nothing came back); {collected} tombstones \
         collected ({collected_before_restart} before the first full restart), all gone by \
         {:.1} s; still deleted after a second full restart",
        returned.as_secs_f64(),
        tombstoned.as_secs_f64(),
        collected_after.as_secs_f64(),
    );
}

/// A client writing new keys (`w=quorum`) through `ports` in turn until `stop`, `count` writes or
/// `deadline`; returns every acknowledged `(key, value)` and what was not acknowledged. `acked`
/// counts acknowledgements as they come.
fn write_load(
    ports: &[u16],
    stop: &AtomicBool,
    acked_so_far: &AtomicUsize,
    count: usize,
    deadline: Duration,
) -> (Vec<(String, String)>, Vec<String>) {
    let started = Instant::now();
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for i in 0..count {
        if stop.load(Ordering::Relaxed) || started.elapsed() > deadline {
            break;
        }
        let port = ports[i % ports.len()];
        let (key, value) = (format!("load-{i:05}"), format!("load-value-{i}"));
        match request(
            port,
            "PUT",
            &format!("/kv/{key}?w=quorum"),
            &[],
            value.as_bytes(),
        ) {
            Ok(r) if r.status == 204 => {
                acked.push((key, value));
                acked_so_far.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => refused.push(format!("PUT {key} via :{port}: {r}")),
            Err(e) => refused.push(format!("PUT {key} via :{port}: {e}")),
        }
    }
    (acked, refused)
}

/// Reads every key at `r=quorum` through `nodes` in turn; returns the keys that did not read
/// back exactly their value.
fn unreadable(nodes: &[Node], keys: &[(String, String)]) -> Vec<String> {
    let jobs: Vec<(u16, &str, &str)> = keys
        .iter()
        .enumerate()
        .map(|(i, (k, v))| (nodes[i % nodes.len()].http, k.as_str(), v.as_str()))
        .collect();
    par_each(&jobs, |(port, key, value)| {
        match read(*port, key, "quorum") {
            Ok((200, got)) if got == [*value] => Ok(()),
            Ok(got) => Err(format!(
                "GET {key} r=quorum via :{port}: {got:?}, not {value:?}"
            )),
            Err(e) => Err(format!("GET {key} r=quorum via :{port}: {e}")),
        }
    })
}

/// Waits until no node holds records of a partition it does not own (`/cluster` "handoff"),
/// continuously for a second (the scan behind it runs every 500 ms); returns each node's
/// `keys_transferred`.
fn wait_handoff_done(nodes: &[Node], deadline: Duration) -> Vec<(String, u64)> {
    let mut since: Option<Instant> = None;
    poll(
        "every node to have handed off what it no longer owns",
        deadline,
        || {
            let mut transferred = Vec::new();
            for node in nodes {
                let v = cluster_view(node)?;
                let pending = v["handoff"]["partitions_to_transfer"].as_u64();
                if pending != Some(0) {
                    since = None;
                    return Err(format!(
                        "{} has {pending:?} partitions to transfer",
                        node.id
                    ));
                }
                let keys = v["handoff"]["keys_transferred"]
                    .as_u64()
                    .ok_or_else(|| format!("no handoff.keys_transferred in {v}"))?;
                transferred.push((node.id.clone(), keys));
            }
            let start = *since.get_or_insert_with(Instant::now);
            if start.elapsed() >= Duration::from_secs(1) {
                Ok(transferred)
            } else {
                Err(format!(
                    "nothing to transfer for {:?} so far",
                    start.elapsed()
                ))
            }
        },
    )
}

/// Each of `nodes` shows member `gone` leaving and owning no partition, and every other member
/// up and owning all `partitions` (as many nodes as replicas remain).
fn shows_left(nodes: &[Node], gone: &str, partitions: u64) -> Result<(), String> {
    for node in nodes {
        let v = cluster_view(node)?;
        let list = v["members"].as_array().cloned().unwrap_or_default();
        let gone_ok = list
            .iter()
            .find(|m| m["id"] == gone)
            .is_some_and(|m| m["state"] == "leaving" && m["partitions"] == 0);
        let owners_ok = list
            .iter()
            .filter(|m| m["id"] != gone)
            .all(|m| m["state"] == "up" && m["partitions"] == partitions);
        if !(gone_ok && owners_ok) {
            return Err(format!("{} shows members {}", node.id, v["members"]));
        }
    }
    Ok(())
}

#[test]
fn a_node_joins_and_another_leaves_under_load_without_losing_an_acknowledged_write() {
    const BASE: usize = 2_000;
    const LOAD_MAX: usize = 20_000;
    const LOAD_DEADLINE: Duration = Duration::from_secs(45);
    // 16 partitions: a transfer sends one batch per partition every 500 ms at most.
    let cfg = config_file("anti_entropy_interval_ms = 200\npartitions = 16\n");
    let mut c = Cluster::start_with(3, &cfg.args);
    let base: Vec<(String, String)> = (0..BASE)
        .map(|i| (format!("base-{i:04}"), format!("base-value-{i}")))
        .collect();
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.http).collect();
    let failed = put_all(&ports, &base, "quorum");
    assert!(failed.is_empty(), "quorum writes failed: {failed:?}");

    let mut join = cfg.args.clone();
    join.extend(["--join".into(), format!("127.0.0.1:{}", c.nodes[0].listen)]);
    let n4 = Node::new("n4", &join);
    let mut ports = ports;
    ports.push(n4.http);
    let stop = AtomicBool::new(false);
    let acked_so_far = AtomicUsize::new(0);
    let mut n4 = Some(n4);
    let mut marks: Vec<(&str, Duration, usize)> = Vec::new();
    let began = Instant::now();
    let mut mark = |what: &'static str, acked: &AtomicUsize| {
        marks.push((what, began.elapsed(), acked.load(Ordering::Relaxed)));
    };
    let (acked, refused, exit, leaving_seen_by) = std::thread::scope(|s| {
        let writer = s.spawn(|| write_load(&ports, &stop, &acked_so_far, LOAD_MAX, LOAD_DEADLINE));
        mark("n4 starts", &acked_so_far);
        let mut n4 = n4.take().expect("n4");
        n4.start();
        c.nodes.push(n4);
        c.wait_all_up(CONVERGE);
        mark("all four up", &acked_so_far);
        let transferred = wait_handoff_done(&c.nodes, Duration::from_secs(40));
        mark("join handoff done", &acked_so_far);
        for (id, keys) in &transferred[..3] {
            assert!(
                *keys > 0,
                "{id} gave n4 its share of the partitions but transferred no key: {transferred:?}"
            );
        }

        let url = format!("http://127.0.0.1:{}", c.nodes[0].http);
        let (status, stderr) = run_to_exit(
            &["leave".into(), "--node".into(), url],
            Duration::from_secs(10),
        );
        assert!(status.success(), "driftkv leave: {status}: {stderr}");
        mark("n1 told to leave", &acked_so_far);
        let mut leaving_seen_by: BTreeSet<String> = BTreeSet::new();
        let (n1, rest) = c.nodes.split_at_mut(1);
        let exit = poll(
            "n1 to hand everything off and exit by itself",
            Duration::from_secs(50),
            || {
                for node in rest.iter() {
                    if let Ok(m) = members(node)
                        && m.iter().any(|(id, state)| id == "n1" && state == "leaving")
                    {
                        leaving_seen_by.insert(node.id.clone());
                    }
                }
                if let Ok(v) = cluster_view(&n1[0])
                    && v["leaving"] == Value::Bool(true)
                {
                    leaving_seen_by.insert("n1 itself".into());
                }
                n1[0].exited().ok_or_else(|| {
                    let handoff = cluster_view(&n1[0]).map(|v| v["handoff"].clone());
                    format!("n1 still runs; its handoff: {handoff:?}")
                })
            },
        );
        mark("n1 exited", &acked_so_far);
        stop.store(true, Ordering::Relaxed);
        let (acked, refused) = writer.join().expect("the writer panicked");
        (acked, refused, exit, leaving_seen_by)
    });
    assert!(exit.success(), "n1 exits cleanly after leaving: {exit}");
    assert!(
        leaving_seen_by.iter().any(|id| id != "n1 itself"),
        "no other node's /cluster showed n1 \"leaving\" (seen by {leaving_seen_by:?})"
    );
    // n1's process is gone; keep its log for a failure report.
    let n1 = c.nodes.remove(0);
    let during = |from: &str, to: &str| {
        let at = |what: &str| marks.iter().find(|m| m.0 == what).map_or(0, |m| m.2);
        at(to).saturating_sub(at(from))
    };
    assert!(
        during("n4 starts", "join handoff done") > 0 && during("n1 told to leave", "n1 exited") > 0,
        "the load kept writing through the join and the leave: {marks:?}"
    );

    // The three that stay own everything; n1 is shown leaving and owns nothing.
    poll("the remaining nodes to show n1 left", CONVERGE, || {
        shows_left(&c.nodes, "n1", 16)
    });
    wait_handoff_done(&c.nodes, CONVERGE);

    let mut expected = base.clone();
    expected.extend(acked.iter().cloned());
    let lost = unreadable(&c.nodes, &expected);
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes do not read back at r=quorum after n4 joined and n1 \
         left, for example {:?}",
        lost.len(),
        expected.len(),
        &lost[..lost.len().min(10)]
    );
    // Writes refused by a node that was not running are expected; others are worth a look.
    let answered: Vec<&String> = refused
        .iter()
        .filter(|r| !r.contains("Connection refused"))
        .collect();
    println!(
        "{} keys before the join, {} acknowledged by the load ({} not, {} of them answered by \
         a running node: {:?}); timeline (s, acked so far): {:?}; n1 left with exit {exit}, \
         seen leaving by {leaving_seen_by:?}; every acknowledged key reads back at r=quorum",
        base.len(),
        acked.len(),
        refused.len(),
        answered.len(),
        &answered[..answered.len().min(5)],
        marks
            .iter()
            .map(|(w, t, a)| format!("{w} {:.1} s {a}", t.as_secs_f64()))
            .collect::<Vec<_>>(),
    );

    drop(n1);
}

#[test]
fn a_node_that_left_stays_out_of_the_ring_when_the_others_restart() {
    const KEYS: usize = 500;
    let cfg = config_file(
        "partitions = 16
",
    );
    let mut c = Cluster::start_with(4, &cfg.args);
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.http).collect();
    let keys: Vec<(String, String)> = (0..KEYS)
        .map(|i| (format!("stay-{i:03}"), format!("stay-value-{i}")))
        .collect();
    let failed = put_all(&ports, &keys, "all");
    assert!(failed.is_empty(), "w=all writes failed: {failed:?}");

    // `driftkv leave --wait` follows the handoff (progress on stderr) until n1 has exited.
    let url = format!("http://127.0.0.1:{}", c.nodes[0].http);
    let (status, progress) = run_to_exit(
        &["leave".into(), "--wait".into(), "--node".into(), url],
        Duration::from_secs(60),
    );
    assert!(
        status.success(),
        "driftkv leave --wait: {status}: {progress}"
    );
    assert!(
        progress.contains("partitions still to hand off"),
        "leave --wait shows the handoff's progress: {progress:?}"
    );
    let exit = poll(
        "n1 to have exited when leave --wait returned",
        Duration::from_secs(5),
        || {
            c.nodes[0]
                .exited()
                .ok_or_else(|| "still running".to_string())
        },
    );
    assert!(exit.success(), "n1 exits cleanly after leaving: {exit}");
    let n1 = c.nodes.remove(0);
    poll("n2..n4 to show n1 left", CONVERGE, || {
        shows_left(&c.nodes, "n1", 16)
    });
    wait_handoff_done(&c.nodes, CONVERGE);
    let lost = unreadable(&c.nodes, &keys);
    assert!(lost.is_empty(), "lost in the leave: {lost:?}");

    // Each remaining node remembers its members on disk. A member that left must stay gone
    // after they all restart: not back in the ring as a down owner of partitions that no live
    // node may then hand data to (transfers wait for every owner to be up).
    restart_all(&mut c);
    let watching = Instant::now();
    let ring = loop {
        match shows_left(&c.nodes, "n1", 16) {
            Ok(()) => break Ok(()),
            Err(e) if watching.elapsed() >= Duration::from_secs(10) => break Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    // Whether reads still work with the ring as it is, for the report either way.
    let lost = unreadable(&c.nodes, &keys);
    let handoff: Vec<String> = c
        .nodes
        .iter()
        .map(|n| match cluster_view(n) {
            Ok(v) => format!("{}: {}", n.id, v["handoff"]),
            Err(e) => e,
        })
        .collect();
    assert!(
        ring.is_ok(),
        "after n1 left and n2..n4 restarted from their disks, n1 is back in the ring: {}; \
         handoff: {handoff:?}; {} of {KEYS} keys do not read back at r=quorum {:?}",
        ring.unwrap_err(),
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    wait_handoff_done(&c.nodes, CONVERGE);
    assert!(lost.is_empty(), "after the restart: {lost:?}");
    drop(n1);
}

#[test]
fn a_node_wiped_again_and_again_never_reuses_an_actor() {
    /// Lives of n3, each ended by a wipe; short lives make two of them fall in one second.
    const LIVES: usize = 10;
    let c = Cluster::start(2);
    let mut n3 = Node::new(
        "n3",
        &["--join".into(), format!("127.0.0.1:{}", c.nodes[0].listen)],
    );
    // The key each life wrote first, and the actor that life wrote it as.
    let mut previous: Option<(String, String)> = None;
    let mut actors: Vec<String> = Vec::new();
    let mut reused = 0;
    let lives_began = Instant::now();
    for life in 0..LIVES {
        n3.start();
        poll(
            &format!("n3 (life {life}) to see every member up"),
            CONVERGE,
            || {
                let m = members(&n3)?;
                if m.len() == 3 && m.iter().all(|(_, s)| s == "up") {
                    Ok(())
                } else {
                    Err(format!("{m:?}"))
                }
            },
        );
        // This life's first write: its dot is (n3#incarnation, 1), and n1 and n2 store it.
        let key = format!("life-{life}");
        let r = n3.put(
            &format!("/kv/{key}?w=one"),
            format!("old-{life}").as_bytes(),
        );
        assert_eq!(r.status, 204, "PUT {key} w=one via n3 (life {life}): {r}");
        poll(&format!("n1 and n2 to store {key}"), CONVERGE, || {
            let view = replicas(&c.nodes[0], &key)?;
            let stored = view
                .iter()
                .filter(|r| r.node != "n3" && r.values == [format!("old-{life}")])
                .count();
            if stored == 2 {
                Ok(())
            } else {
                Err(format!("{view:?}"))
            }
        });
        let mine = actors_of(&c.nodes[0], &key, "n3");
        assert_eq!(mine.len(), 1, "the actor of n3's life {life}: {mine:?}");
        let actor = mine.into_iter().next().expect("one actor");

        // A blind write of the previous life's key: the wiped node has no copy of it, so its
        // dot is (n3#incarnation, 1) again. Under the previous life's actor that dot names
        // the previous life's write, and replicas would keep the old value for the new one.
        if let Some((old_key, old_actor)) = &previous {
            if *old_actor == actor {
                reused += 1;
            }
            let value = format!("new-{life}");
            let r = n3.try_request(
                "PUT",
                &format!("/kv/{old_key}?w=all"),
                &[],
                value.as_bytes(),
            );
            let seen = replicas(&c.nodes[1], old_key);
            let crashed: Vec<&str> = c
                .nodes
                .iter()
                .filter(|n| n.log().contains("one dot, one value"))
                .map(|n| n.id.as_str())
                .collect();
            assert!(
                crashed.is_empty(),
                "kv679: life {life} of the wiped n3 wrote as {actor}, the actor of its previous \
                 life, so its first dot on {old_key} named another value; merging it made \
                 {crashed:?} panic (\"one dot, one value\"). PUT: {:?}",
                r.map(|r| r.to_string())
            );
            let r = r.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                r.status, 204,
                "blind PUT {old_key} w=all via n3 (life {life}): {r}"
            );
            let view = seen.unwrap_or_else(|e| panic!("{e}"));
            assert!(
                view.iter().all(|r| r.values.contains(&value)),
                "kv679: the blind write {value:?} of life {life} (actor {actor}; previous life \
                 {old_actor}) was acknowledged by all three but a copy of {old_key} does not \
                 hold it: {view:?}"
            );
        }
        actors.push(actor.clone());
        previous = Some((key, actor));
        n3.kill();
        n3.wipe_data();
    }
    let distinct: BTreeSet<&String> = actors.iter().collect();
    println!(
        "{LIVES} lives of a wiped n3 in {:.1} s wrote as {} distinct actors ({reused} reused the \
         previous life's): {actors:?}",
        lives_began.elapsed().as_secs_f64(),
        distinct.len()
    );
    assert_eq!(
        distinct.len(),
        LIVES,
        "every life of a wiped node is a new actor: {actors:?}"
    );
}
