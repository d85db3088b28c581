//! Direct writes (`write_path = direct`, lww buckets): any node stamps the write and sends it
//! to every replica itself, answering after W of them; its dots never repeat across restarts.

use bytes::Bytes;
use driftkv_causal::{ConflictMode, VersionVector};
use driftkv_core::local::{LocalCluster as Harness, name};
use driftkv_core::{BucketProps, Input, Node, NodeConfig, WritePath};
use driftkv_wire::{Key, Message, Object, Quorum, Reply, Request};

/// Four nodes, keys of the default bucket on two of them (so two nodes are not replicas),
/// lww writes on the direct path.
fn cluster() -> Harness {
    Harness::new(4, tweak)
}

fn tweak(cfg: &mut NodeConfig) {
    cfg.buckets.insert(
        Bytes::from("default"),
        BucketProps {
            mode: ConflictMode::Lww,
            write_path: WritePath::Direct,
            n: Some(2),
            ..Default::default()
        },
    );
}

fn put(key: &str, value: &str, w: Quorum) -> Request {
    Request::Put {
        key: Key::default_bucket(key.to_string()),
        value: Some(Bytes::from(value.to_string())),
        context: VersionVector::new(),
        expires_ms: None,
        w,
    }
}

/// The nodes holding `key` after a write through node 0 (its replicas), and the others.
fn replicas_and_others(h: &mut Harness, key: &str) -> (Vec<usize>, Vec<usize>) {
    let reply = h.request(0, put(key, "seed", Quorum::All));
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    (0..4).partition(|&i| !h.copies(key)[i].is_empty())
}

/// The replicas of `key` and the other nodes, found without writing it.
fn replicas_unwritten(h: &mut Harness, key: &str) -> (Vec<usize>, Vec<usize>) {
    let reply = h.request(
        0,
        Request::Inspect {
            key: Key::default_bucket(key.to_string()),
        },
    );
    let Reply::Replicas { replicas, .. } = reply else {
        panic!("expected replicas, got {reply:?}");
    };
    assert!(replicas.iter().all(|r| r.object.is_none()), "never written");
    let ids: Vec<usize> = replicas.iter().map(|r| h.index(&r.node)).collect();
    (0..4).partition(|i| ids.contains(i))
}

/// The one sibling's dot counter and timestamp of node `i`'s copy of `key`.
fn stamp(h: &mut Harness, i: usize, key: &str) -> (u64, u64) {
    let key = Key::default_bucket(key.to_string());
    match h.nodes[i].local_object(&h.stores[i], &key).unwrap() {
        Some(Object::Register(reg)) => {
            let (dot, s) = reg.dvv().siblings().next().expect("one sibling");
            (dot.counter, s.timestamp.0)
        }
        other => panic!("expected a register, got {other:?}"),
    }
}

#[test]
fn a_non_replica_sends_the_write_to_every_replica_at_once_and_forwards_nothing() {
    let mut h = cluster();
    let (replicas, others) = replicas_and_others(&mut h, "k");
    assert_eq!((replicas.len(), others.len()), (2, 2), "N = 2 of 4 nodes");
    let coordinator = others[0];
    let direct_before = h.nodes[coordinator].stats().direct_writes;
    let client = 42;
    h.step(
        coordinator,
        Input::Request {
            client,
            request: put("k", "v", Quorum::One),
        },
    );
    let sent: Vec<(String, &'static str)> = h
        .queue
        .iter()
        .map(|(_, to, m)| {
            let kind = match m {
                Message::ReplicaWrite { .. } => "replica_write",
                Message::Forward { .. } => "forward",
                _ => "other",
            };
            (to.to_string(), kind)
        })
        .collect();
    let mut expected: Vec<(String, &'static str)> = replicas
        .iter()
        .map(|&i| (name(i).to_string(), "replica_write"))
        .collect();
    expected.sort();
    let mut sent_sorted = sent.clone();
    sent_sorted.sort();
    assert_eq!(
        sent_sorted, expected,
        "one write to each replica, no forward"
    );
    assert!(
        h.replies.iter().all(|(_, c, _)| *c != client),
        "a coordinator that holds no copy does not count itself towards W"
    );
    h.deliver_all();
    let answered = h
        .replies
        .iter()
        .find(|(n, c, _)| *n == coordinator && *c == client)
        .map(|(_, _, r)| r.clone());
    assert!(
        matches!(answered, Some(Reply::Written { .. })),
        "{answered:?}"
    );
    let copies = h.copies("k");
    for &i in &replicas {
        assert_eq!(copies[i], ["v"], "replica n{} has the write", i + 1);
    }
    assert!(
        copies[coordinator].is_empty(),
        "the coordinator keeps no copy"
    );
    let stats = h.nodes[coordinator].stats();
    assert_eq!(
        (stats.direct_writes - direct_before, stats.forwarded),
        (1, 0)
    );
}

#[test]
fn a_replica_coordinating_a_direct_write_counts_itself_once() {
    let mut h = cluster();
    let (replicas, _) = replicas_and_others(&mut h, "r");
    let (client, coordinator) = (7, replicas[0]);
    h.step(
        coordinator,
        Input::Request {
            client,
            request: put("r", "mine", Quorum::One),
        },
    );
    assert!(
        h.replies.iter().any(|(n, c, r)| *n == coordinator
            && *c == client
            && matches!(r, Reply::Written { .. })),
        "W = 1 is its own copy"
    );
    assert_eq!(h.copies("r")[coordinator], ["mine"]);
    h.deliver_all();
    for &i in &replicas {
        assert_eq!(h.copies("r")[i], ["mine"]);
    }
    // At W = all (2) with the other replica dropping what it is sent, its own copy is one.
    h.up[replicas[1]] = false;
    let reply = h.request(coordinator, put("r", "again", Quorum::All));
    assert!(
        matches!(&reply, Reply::Error { message, .. } if message.contains("1 of 2")),
        "{reply:?}"
    );
}

#[test]
fn a_direct_bucket_holds_registers_only_and_its_deletes_leave_a_tombstone() {
    let mut h = cluster();
    let (_, others) = replicas_and_others(&mut h, "t");
    let key = Key::default_bucket("t");
    for request in [
        Request::CounterAdd {
            key: key.clone(),
            delta: 1,
            w: Quorum::One,
        },
        Request::SetUpdate {
            key: key.clone(),
            add: vec![Bytes::from("m")],
            remove: vec![],
            w: Quorum::One,
        },
    ] {
        let reply = h.request(others[0], request);
        assert!(
            matches!(&reply, Reply::Error { message, .. } if message.contains("registers only")),
            "{reply:?}"
        );
    }
    // A delete whose coordinator has not received the write it follows still leaves a
    // tombstone (later by its clock), so the write does not outlive it when it lands.
    let (replicas, others) = replicas_unwritten(&mut h, "u");
    h.step(
        others[0],
        Input::Request {
            client: 1,
            request: put("u", "v", Quorum::One),
        },
    );
    let in_flight: Vec<_> = h.queue.drain(..).collect();
    h.now_ms += 5;
    let reply = h.request(
        others[1],
        Request::Delete {
            key: Key::default_bucket("u"),
            kind: None,
            w: Quorum::All,
        },
    );
    assert!(matches!(reply, Reply::Deleted { .. }), "{reply:?}");
    h.queue.extend(in_flight);
    h.deliver_all();
    let copies = h.copies("u");
    for &i in &replicas {
        assert!(copies[i].is_empty(), "n{} holds {:?}", i + 1, copies[i]);
    }
}

#[test]
fn w_all_waits_for_every_replica_and_a_missing_one_makes_it_unavailable() {
    let mut h = cluster();
    let (replicas, others) = replicas_and_others(&mut h, "w");
    // A replica that drops what it is sent, while the others still think it is up.
    h.up[replicas[1]] = false;
    let reply = h.request(others[0], put("w", "v2", Quorum::All));
    assert!(
        matches!(&reply, Reply::Error { message, .. } if message.contains("1 of 2")),
        "{reply:?}"
    );
}

#[test]
fn concurrent_direct_writes_settle_on_the_later_timestamp_everywhere() {
    let mut h = cluster();
    let (replicas, others) = replicas_and_others(&mut h, "c");
    let (a, b) = (others[0], others[1]);
    h.step(
        a,
        Input::Request {
            client: 1,
            request: put("c", "earlier", Quorum::One),
        },
    );
    h.now_ms += 3;
    h.step(
        b,
        Input::Request {
            client: 2,
            request: put("c", "later", Quorum::One),
        },
    );
    // The later write reaches the replicas first: the earlier one must still lose.
    let mut queue: Vec<_> = h.queue.drain(..).collect();
    queue.reverse();
    h.queue.extend(queue);
    h.deliver_all();
    for &i in &replicas {
        assert_eq!(h.copies("c")[i], ["later"], "n{}", i + 1);
    }
    let discarded: u64 = h.nodes.iter().map(|n| n.stats().lww_discarded).sum();
    assert!(discarded >= 1, "the earlier write is counted as discarded");
}

#[test]
fn a_restarted_node_never_issues_a_direct_dot_or_timestamp_below_its_last() {
    let mut h = cluster();
    h.now_ms += 60_000;
    let (replicas, others) = replicas_and_others(&mut h, "d");
    let coordinator = others[0];
    let reply = h.request(coordinator, put("d", "before", Quorum::All));
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    let (dot_before, ts_before) = stamp(&mut h, replicas[0], "d");
    // The node restarts from its store, with its wall clock set back ten seconds.
    let mut cfg = NodeConfig::new(name(coordinator));
    tweak(&mut cfg);
    h.nodes[coordinator] = Node::open(cfg, &mut h.stores[coordinator]).unwrap();
    h.refresh_membership();
    h.now_ms -= 10_000;
    // Its clock is behind where its writer was: it writes nothing directly until it catches
    // up, rather than stamp ahead of every other node's clock.
    let reply = h.request(coordinator, put("d", "early", Quorum::All));
    assert!(
        matches!(&reply, Reply::Error { message, .. } if message.contains("resume in")),
        "{reply:?}"
    );
    // Back where it was, and past the lease it held then (100 ms).
    h.now_ms += 10_200;
    let reply = h.request(coordinator, put("d", "after", Quorum::All));
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    let (dot_after, ts_after) = stamp(&mut h, replicas[0], "d");
    assert!(dot_after > dot_before, "dot {dot_after} after {dot_before}");
    assert!(
        ts_after > ts_before,
        "timestamp {ts_after} after {ts_before}"
    );
    for &i in &replicas {
        assert_eq!(
            h.copies("d")[i],
            ["after"],
            "the later write wins at n{}",
            i + 1
        );
    }
}

#[test]
fn deletes_and_other_buckets_keep_the_replica_path() {
    let mut h = Harness::new(4, |cfg| {
        tweak(cfg);
        cfg.buckets.insert(
            Bytes::from("plain"),
            BucketProps {
                mode: ConflictMode::Lww,
                n: Some(2),
                ..Default::default()
            },
        );
    });
    let (_, others) = replicas_and_others(&mut h, "x");
    let coordinator = others[0];
    let direct_before = h.nodes[coordinator].stats().direct_writes;
    let reply = h.request(
        coordinator,
        Request::Delete {
            key: Key::default_bucket("x"),
            kind: None,
            w: Quorum::All,
        },
    );
    assert!(
        matches!(reply, Reply::Deleted { existed: true }),
        "{reply:?}"
    );
    let plain = Request::Put {
        key: Key::new(Bytes::from("plain"), "y"),
        value: Some(Bytes::from("v")),
        context: VersionVector::new(),
        expires_ms: None,
        w: Quorum::All,
    };
    let reply = h.request(coordinator, plain);
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    let stats = h.nodes[coordinator].stats();
    assert_eq!(
        stats.direct_writes, direct_before,
        "only register writes of direct buckets"
    );
    assert!(
        stats.forwarded >= 1,
        "the delete was forwarded to a replica"
    );
}
