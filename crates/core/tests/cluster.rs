//! Protocol behaviour of several nodes wired by the in-process network of `core::local`: no
//! sockets, no clock. A test advances time to fire timeouts and handoff.

use bytes::Bytes;
use driftkv_causal::{ConflictMode, VersionVector};
use driftkv_core::local::{LocalCluster as Harness, name, reply_context as context};
use driftkv_core::node::register_values;
use driftkv_core::{BucketProps, Input};
use driftkv_wire::{ErrorKind, Key, Quorum, Reply, Request};

fn values(reply: &Reply) -> Vec<String> {
    match reply {
        Reply::Values { values, .. } => {
            let mut v: Vec<String> = values
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            v.sort();
            v
        }
        other => panic!("expected values, got {other:?}"),
    }
}

/// Writes a fresh value (no context) through node `i` and checks it was acknowledged.
fn put_new(h: &mut Harness, i: usize, key: &str, value: &str, w: Quorum) {
    let reply = h.put(i, key, value, VersionVector::new(), w);
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
}

#[test]
fn a_write_to_one_node_reaches_every_replica() {
    let mut h = Harness::new(3, |_| {});
    put_new(&mut h, 0, "name", "Alice", Quorum::Quorum);
    assert_eq!(h.copies("name"), vec![vec!["Alice".to_string()]; 3]);
    for i in 0..3 {
        assert_eq!(values(&h.get(i, "name", Quorum::One)), ["Alice"]);
    }
}

#[test]
fn w_one_answers_before_the_other_replicas_have_the_write() {
    let mut h = Harness::new(3, |_| {});
    let client = 99;
    let request = Request::Put {
        key: Key::default_bucket("k"),
        value: Some(Bytes::from("v")),
        context: VersionVector::new(),
        expires_ms: None,
        w: Quorum::One,
    };
    h.step(0, Input::Request { client, request });
    assert!(
        h.replies
            .iter()
            .any(|(_, c, r)| *c == client && matches!(r, Reply::Written { .. })),
        "answered from the local write alone"
    );
    let copies = h.copies("k");
    assert_eq!(
        copies.iter().filter(|c| c.is_empty()).count(),
        2,
        "replication is asynchronous: {copies:?}"
    );
    h.deliver_all();
    assert_eq!(h.copies("k"), vec![vec!["v".to_string()]; 3]);
}

#[test]
fn a_quorum_write_with_one_node_down_succeeds_and_the_node_catches_up_by_handoff() {
    let mut h = Harness::new(3, |_| {});
    h.set_up(2, false);
    put_new(&mut h, 0, "hh", "v1", Quorum::Quorum);
    assert_eq!(h.copies("hh")[2], Vec::<String>::new());
    assert!(
        h.nodes[0].hints_pending() >= 1,
        "the coordinator keeps a hint for the down primary"
    );
    h.set_up(2, true);
    h.tick(100);
    assert_eq!(h.copies("hh")[2], ["v1"]);
    h.tick(100);
    assert_eq!(h.nodes[0].hints_pending(), 0, "a delivered hint is deleted");
    assert!(h.nodes[0].stats().hints_delivered >= 1);
}

#[test]
fn hints_for_a_primary_that_stays_down_expire_at_their_age_and_not_before() {
    let age_ms = 10_000;
    let mut h = Harness::new(3, |cfg| cfg.hint_age_max_ms = age_ms);
    h.set_up(2, false);
    for key in ["a", "b", "c"] {
        put_new(&mut h, 0, key, "v", Quorum::Quorum);
        h.tick(1_000);
    }
    let held = h.nodes[0].hints_pending();
    assert_eq!(held, 3, "one hint per key for the down primary");
    // The last hint was made 1 s after the second and 2 s after the first: ticking until
    // just before the first one's age expires nothing (looks in between may be skipped, never
    // an expiry).
    for _ in 0..(age_ms / 100 - 31) {
        h.tick(100);
    }
    assert_eq!(h.nodes[0].hints_pending(), 3);
    assert_eq!(h.nodes[0].stats().hints_expired, 0);
    // Then each expires on the first tick past its age, and no later.
    for left in [2, 1, 0] {
        h.tick(200);
        assert_eq!(
            h.nodes[0].hints_pending(),
            left,
            "one more hint expired at its age"
        );
        for _ in 0..8 {
            h.tick(100);
        }
        assert_eq!(h.nodes[0].hints_pending(), left, "the next is not yet due");
    }
    assert_eq!(h.nodes[0].stats().hints_expired, 3);
    assert_eq!(
        h.copies("a")[2],
        Vec::<String>::new(),
        "an expired hint is never delivered"
    );
}

/// The look at a down primary's hints reads a batch of them in key order: once an expired one
/// in it is deleted, the next look reaches further keys at once, and an expired hint there
/// goes on that tick too (not when the rest of the batch is due).
#[test]
fn an_expired_hint_beyond_the_batch_goes_as_soon_as_the_batch_moves_on_to_it() {
    let age_ms = 10_000;
    let mut h = Harness::new(3, |cfg| {
        cfg.hint_age_max_ms = age_ms;
        cfg.handoff_batch_max = 2;
    });
    // Three keys in the order their hints are stored in.
    let hint_order = |h: &Harness, key: &str| {
        let key = Key::default_bucket(key.to_string());
        let partition = h.nodes[0].ring().partition_for_hash(key.key_hash());
        driftkv_core::keys::data_key(partition, &key)
    };
    let mut keys: Vec<String> = (0..3).map(|i| format!("key{i}")).collect();
    keys.sort_by_key(|k| hint_order(&h, k));
    let (first, second, third) = (&keys[0], &keys[1], &keys[2]);
    h.set_up(2, false);
    let made_second = h.now_ms;
    // The batch (the first two in key order) holds a young hint and an old one; an old one
    // waits beyond it.
    for (key, wait_ms) in [(second, 1_000), (third, 5_000), (first, 1_000)] {
        put_new(&mut h, 0, key, "v", Quorum::Quorum);
        h.tick(wait_ms);
    }
    assert_eq!(h.nodes[0].hints_pending(), 3);
    // Up to just past the third key's age (made 1 s after the second's): both old ones gone.
    while h.now_ms < made_second + 1_000 + age_ms + 200 {
        h.tick(100);
    }
    assert_eq!(
        h.nodes[0].hints_pending(),
        1,
        "only the young hint is left; the old one beyond the batch went when it was reached"
    );
}

#[test]
fn a_primary_back_after_many_ticks_down_gets_its_hints_at_once() {
    let mut h = Harness::new(3, |_| {});
    h.set_up(2, false);
    put_new(&mut h, 0, "late", "v", Quorum::Quorum);
    for _ in 0..50 {
        h.tick(100);
    }
    assert_eq!(h.nodes[0].hints_pending(), 1);
    h.set_up(2, true);
    h.tick(100);
    assert_eq!(
        h.copies("late")[2],
        ["v"],
        "handed off on the first tick it is up"
    );
    h.tick(100);
    assert_eq!(h.nodes[0].hints_pending(), 0);
}

#[test]
fn a_write_needing_more_replicas_than_are_up_fails_with_the_count() {
    let mut h = Harness::new(3, |_| {});
    h.set_up(1, false);
    h.set_up(2, false);
    let reply = h.put(0, "k", "v", VersionVector::new(), Quorum::All);
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::Unavailable,
                needed: 3,
                ..
            }
        ),
        "{reply:?}"
    );
}

#[test]
fn a_replica_that_never_answers_makes_a_quorum_write_time_out_with_the_count() {
    let mut h = Harness::new(3, |_| {});
    // The membership layer has not noticed yet: nodes 2 and 3 look up but drop everything.
    h.up[1] = false;
    h.up[2] = false;
    let reply = h.put(0, "k", "v", VersionVector::new(), Quorum::Quorum);
    match reply {
        Reply::Error {
            kind: ErrorKind::Unavailable,
            answered: 1,
            needed: 2,
            ..
        } => {}
        other => panic!("expected 503 with 1 of 2, got {other:?}"),
    }
    assert!(
        h.nodes[0].hints_pending() >= 2,
        "the replicas that missed the write get hints"
    );
}

#[test]
fn blind_concurrent_writes_become_siblings_and_a_context_write_resolves_them() {
    let mut h = Harness::new(3, |_| {});
    h.put(0, "s1", "a", VersionVector::new(), Quorum::All);
    h.put(1, "s1", "b", VersionVector::new(), Quorum::All);
    let read = h.get(2, "s1", Quorum::All);
    assert_eq!(values(&read), ["a", "b"]);
    assert_eq!(
        h.copies("s1"),
        vec![vec!["a".to_string(), "b".to_string()]; 3]
    );
    h.put(1, "s1", "c", context(&read), Quorum::All);
    assert_eq!(values(&h.get(0, "s1", Quorum::All)), ["c"]);
    assert_eq!(h.copies("s1"), vec![vec!["c".to_string()]; 3]);
}

#[test]
fn lww_keeps_one_of_two_concurrent_writes_and_counts_the_conflict() {
    let mut h = Harness::new(3, |cfg| {
        cfg.buckets.insert(
            Bytes::from("default"),
            BucketProps {
                mode: ConflictMode::Lww,
                ..Default::default()
            },
        );
    });
    // Replication cut: each write lands on its coordinator only, then the network heals.
    h.up[1] = false;
    h.up[2] = false;
    let client = 7;
    let put = |v: &str| Request::Put {
        key: Key::default_bucket("k"),
        value: Some(Bytes::from(v.to_string())),
        context: VersionVector::new(),
        expires_ms: None,
        w: Quorum::One,
    };
    h.step(
        0,
        Input::Request {
            client,
            request: put("first"),
        },
    );
    h.queue.clear();
    h.up = vec![false, true, false];
    h.now_ms += 5;
    h.step(
        1,
        Input::Request {
            client,
            request: put("second"),
        },
    );
    h.queue.clear();
    h.up = vec![true; 3];
    let read = h.get(2, "k", Quorum::All);
    assert_eq!(values(&read), ["second"], "the later timestamp wins");
    h.deliver_all();
    let conflicts: u64 = h.nodes.iter().map(|n| n.stats().conflicts).sum();
    let discarded: u64 = h.nodes.iter().map(|n| n.stats().lww_discarded).sum();
    assert!(
        conflicts >= 1 && discarded >= 1,
        "conflicts {conflicts}, discarded {discarded}"
    );
}

#[test]
fn read_repair_heals_a_stale_replica() {
    let mut h = Harness::new(3, |_| {});
    h.put(0, "k", "old", VersionVector::new(), Quorum::All);
    // n3 misses the overwrite, and no hint reaches it.
    h.up[2] = false;
    let read = h.get(0, "k", Quorum::Quorum);
    let ctx = context(&read);
    let client = 5;
    let request = Request::Put {
        key: Key::default_bucket("k"),
        value: Some(Bytes::from("new")),
        context: ctx,
        expires_ms: None,
        w: Quorum::Quorum,
    };
    h.step(0, Input::Request { client, request });
    h.deliver_all();
    h.up[2] = true;
    assert_eq!(h.copies("k")[2], ["old"]);
    let read = h.get(1, "k", Quorum::One);
    assert_eq!(values(&read), ["new"]);
    // The read answers after R replies, then waits for the rest and repairs.
    h.tick(10);
    assert_eq!(h.copies("k"), vec![vec!["new".to_string()]; 3]);
    assert!(h.nodes[1].stats().read_repairs_sent >= 1);
}

#[test]
fn counters_converge_to_the_sum_of_increments_through_every_node() {
    let mut h = Harness::new(3, |_| {});
    let key = Key::default_bucket("hits");
    for round in 0..10 {
        for i in 0..3 {
            let reply = h.request(
                i,
                Request::CounterAdd {
                    key: key.clone(),
                    delta: if round == 9 { -1 } else { 1 },
                    w: Quorum::One,
                },
            );
            assert!(matches!(reply, Reply::Counter { .. }), "{reply:?}");
        }
    }
    for i in 0..3 {
        assert_eq!(
            h.request(
                i,
                Request::CounterGet {
                    key: key.clone(),
                    r: Quorum::One
                }
            ),
            Reply::Counter { value: 24 }
        );
    }
}

#[test]
fn sets_converge_with_add_wins() {
    let mut h = Harness::new(3, |_| {});
    let key = Key::default_bucket("tags");
    let b = |s: &str| Bytes::from(s.to_string());
    h.request(
        0,
        Request::SetUpdate {
            key: key.clone(),
            add: vec![b("x"), b("y")],
            remove: vec![],
            w: Quorum::All,
        },
    );
    // n1 removes x while n2, cut off, re-adds it: the add wins.
    h.up[1] = false;
    h.request(
        0,
        Request::SetUpdate {
            key: key.clone(),
            add: vec![],
            remove: vec![b("x")],
            w: Quorum::One,
        },
    );
    h.up = vec![false, true, false];
    h.request(
        1,
        Request::SetUpdate {
            key: key.clone(),
            add: vec![b("x")],
            remove: vec![],
            w: Quorum::One,
        },
    );
    h.up = vec![true; 3];
    let reply = h.request(
        2,
        Request::SetGet {
            key: key.clone(),
            r: Quorum::All,
        },
    );
    assert_eq!(
        reply,
        Reply::Set {
            members: vec![b("x"), b("y")]
        }
    );
}

#[test]
fn a_write_to_a_node_outside_the_replicas_is_forwarded_to_one() {
    let mut h = Harness::new(5, |_| {});
    // Find a key whose replicas exclude n1.
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let p = h.nodes[0]
                .ring()
                .partition_for_key(b"default", k.as_bytes());
            !h.nodes[0].ring().owners(p).contains(&name(0))
        })
        .unwrap();
    put_new(&mut h, 0, &key, "v", Quorum::Quorum);
    assert_eq!(h.nodes[0].stats().forwarded, 1);
    assert!(
        h.copies(&key)[0].is_empty(),
        "the forwarding node keeps no copy"
    );
    assert_eq!(
        h.copies(&key)
            .iter()
            .filter(|c| *c == &["v".to_string()])
            .count(),
        3
    );
}

#[test]
fn a_fallback_keeps_a_hint_and_hands_it_to_the_returning_primary() {
    let mut h = Harness::new(5, |_| {});
    let key = "sloppy";
    let p = h.nodes[0]
        .ring()
        .partition_for_key(b"default", key.as_bytes());
    let owners = h.nodes[0].ring().owners(p).to_vec();
    let down = h.index(&owners[2]);
    h.set_up(down, false);
    let reply = h.put(
        h.index(&owners[0]),
        key,
        "v",
        VersionVector::new(),
        Quorum::All,
    );
    assert!(
        matches!(reply, Reply::Written { .. }),
        "sloppy quorum: a fallback counts toward W: {reply:?}"
    );
    let holders = h.copies(key).iter().filter(|c| !c.is_empty()).count();
    assert_eq!(holders, 3, "two primaries and one fallback hold the write");
    h.set_up(down, true);
    h.tick(100);
    h.tick(100);
    assert_eq!(h.copies(key)[down], ["v"]);
    assert_eq!(h.nodes.iter().map(|n| n.hints_pending()).sum::<usize>(), 0);
}

#[test]
fn bad_requests_are_refused_with_a_reason_and_the_node_keeps_serving() {
    let mut h = Harness::new(3, |cfg| cfg.value_bytes_max = 16);
    let big = "x".repeat(17);
    let reply = h.put(0, "k", &big, VersionVector::new(), Quorum::One);
    assert!(
        matches!(&reply, Reply::Error { kind: ErrorKind::BadRequest, message, .. } if message.contains("limit")),
        "{reply:?}"
    );
    let reply = h.put(0, &"k".repeat(2000), "v", VersionVector::new(), Quorum::One);
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::BadRequest,
                ..
            }
        ),
        "{reply:?}"
    );
    let reply = h.put(0, "k", "v", VersionVector::new(), Quorum::Count(4));
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::BadRequest,
                ..
            }
        ),
        "{reply:?}"
    );
    let reply = h.request(
        0,
        Request::CounterAdd {
            key: Key::default_bucket("reg"),
            delta: 1,
            w: Quorum::One,
        },
    );
    assert!(matches!(reply, Reply::Counter { value: 1 }));
    // A register read of a counter answers its value (as Redis's GET after INCR); of a set,
    // the wrong type.
    let reply = h.get(0, "reg", Quorum::One);
    assert!(
        matches!(&reply, Reply::Values { values, .. } if values == &[Bytes::from_static(b"1")]),
        "{reply:?}"
    );
    let reply = h.request(
        0,
        Request::SetUpdate {
            key: Key::default_bucket("members"),
            add: vec![Bytes::from_static(b"a")],
            remove: vec![],
            w: Quorum::One,
        },
    );
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    let reply = h.get(0, "members", Quorum::One);
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::WrongType,
                ..
            }
        ),
        "{reply:?}"
    );
    assert!(matches!(
        h.put(0, "k", "fine", VersionVector::new(), Quorum::One),
        Reply::Written { .. }
    ));
}

#[test]
fn inspect_shows_each_copy_and_never_repairs() {
    let mut h = Harness::new(3, |_| {});
    h.put(0, "k", "old", VersionVector::new(), Quorum::All);
    h.up[2] = false;
    let ctx = context(&h.get(0, "k", Quorum::Quorum));
    h.put(0, "k", "new", ctx, Quorum::Quorum);
    h.up[2] = true;
    let reply = h.request(
        1,
        Request::Inspect {
            key: Key::default_bucket("k"),
        },
    );
    let Reply::Replicas { replicas, .. } = reply else {
        panic!("{reply:?}")
    };
    let seen: Vec<(String, bool, Vec<Bytes>)> = replicas
        .iter()
        .map(|r| {
            (
                r.node.to_string(),
                r.reachable,
                r.object.as_ref().map(register_values).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(_, reachable, _)| *reachable));
    assert_eq!(h.copies("k")[2], ["old"], "inspection does not repair");
}

#[test]
fn a_delete_while_a_node_is_down_does_not_come_back() {
    let mut h = Harness::new(3, |_| {});
    h.put(0, "gone", "x", VersionVector::new(), Quorum::All);
    let ctx = context(&h.get(0, "gone", Quorum::All));
    h.set_up(1, false);
    let reply = h.request(
        0,
        Request::Put {
            key: Key::default_bucket("gone"),
            value: None,
            context: ctx,
            expires_ms: None,
            w: Quorum::Quorum,
        },
    );
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    h.set_up(1, true);
    h.tick(100);
    h.tick(100);
    for i in 0..3 {
        assert!(matches!(
            h.get(i, "gone", Quorum::All),
            Reply::NotFound { .. }
        ));
    }
    assert_eq!(h.copies("gone"), vec![Vec::<String>::new(); 3]);
}

#[test]
fn an_overwrite_replaces_what_its_coordinator_has_seen_but_not_a_concurrent_write() {
    let mut h = Harness::new(3, |_| {});
    h.put(0, "k", "a", VersionVector::new(), Quorum::All);
    h.put(1, "k", "b", VersionVector::new(), Quorum::All);
    assert_eq!(values(&h.get(2, "k", Quorum::All)), ["a", "b"]);
    let overwrite = |v: &str, w: Quorum| Request::Overwrite {
        key: Key::default_bucket("k"),
        value: Some(Bytes::from(v.to_string())),
        expires_ms: None,
        w,
    };
    let reply = h.request(0, overwrite("c", Quorum::All));
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    assert_eq!(
        values(&h.get(2, "k", Quorum::All)),
        ["c"],
        "both siblings were seen by n1"
    );
    // Cut n2 off; an overwrite through n2 does not see n1's next overwrite: siblings again.
    h.up[1] = false;
    h.request(0, overwrite("d", Quorum::One));
    h.up = vec![false, true, false];
    h.request(1, overwrite("e", Quorum::One));
    h.up = vec![true; 3];
    assert_eq!(values(&h.get(2, "k", Quorum::All)), ["d", "e"]);
}

#[test]
fn anti_entropy_heals_a_replica_that_missed_writes_without_any_read() {
    let mut h = Harness::new(3, |cfg| {
        cfg.hinted_handoff = false;
        cfg.read_repair = false;
        cfg.aae.interval_ms = 100;
    });
    // n3 is cut off (its peers still count it up, so no fallback takes its writes).
    h.up[2] = false;
    for i in 0..200 {
        h.put(
            i % 2,
            &format!("k{i}"),
            &format!("v{i}"),
            VersionVector::new(),
            Quorum::Quorum,
        );
    }
    let read = h.get(0, "k7", Quorum::Quorum);
    h.put(0, "k7", "v7-again", context(&read), Quorum::Quorum);
    h.up[2] = true;
    let behind = (0..200)
        .filter(|i| h.copies(&format!("k{i}"))[2].is_empty())
        .count();
    assert_eq!(behind, 200, "n3 missed every write");
    let mut rounds = 0;
    while (0..200).any(|i| {
        let c = h.copies(&format!("k{i}"));
        c[0] != c[2] || c[1] != c[2]
    }) {
        rounds += 1;
        assert!(rounds < 2_000, "anti-entropy did not converge");
        h.tick(100);
    }
    assert_eq!(h.copies("k7")[2], ["v7-again"]);
    let s: Vec<_> = h.nodes.iter().map(|n| n.stats().clone()).collect();
    let repaired: u64 = s.iter().map(|s| s.aae_keys_repaired).sum();
    assert!(
        repaired >= 200,
        "every key was repaired by exchanges: {repaired}"
    );
    let exchanges: u64 = s.iter().map(|s| s.aae_exchanges).sum();
    println!("converged after {rounds} ticks, {exchanges} exchanges, {repaired} keys repaired");
    // Once in sync, exchanges find nothing to move.
    let before: u64 = h.nodes.iter().map(|n| n.stats().aae_keys_repaired).sum();
    for _ in 0..100 {
        h.tick(100);
    }
    let after: u64 = h.nodes.iter().map(|n| n.stats().aae_keys_repaired).sum();
    assert_eq!(before, after);
    assert!(h.nodes.iter().map(|n| n.stats().aae_in_sync).sum::<u64>() > 0);
    assert_eq!(
        h.nodes
            .iter()
            .map(|n| n.stats().aae_tree_mismatches)
            .sum::<u64>(),
        0,
        "incremental trees match storage"
    );
}

/// A write that reached one replica of five, with nothing to read it: the first exchange that
/// moves it makes its initiator go round the partition's other replicas before walking on, so
/// the rest get it within a few ticks instead of one partition walk (64 exchanges) per peer.
#[test]
fn an_exchange_that_moved_data_goes_round_the_other_replicas_of_its_partition() {
    let mut h = Harness::new(5, |cfg| {
        cfg.ring.n = 5;
        cfg.hinted_handoff = false;
        cfg.read_repair = false;
        cfg.aae.interval_ms = 100;
    });
    // Build every tree first (a tree builds over ticks), so exchanges are what is measured.
    for _ in 0..200 {
        h.tick(100);
    }
    // Only n1 takes the write: the others are cut off (still counted up, so no fallback).
    for i in 1..5 {
        h.up[i] = false;
    }
    h.put(0, "lone", "v", VersionVector::new(), Quorum::One);
    for i in 1..5 {
        h.up[i] = true;
    }
    let holders = |h: &mut Harness| {
        h.copies("lone")
            .iter()
            .filter(|c| c.as_slice() == ["v"])
            .count()
    };
    assert_eq!(holders(&mut h), 1);
    let mut ticks = 0;
    while holders(&mut h) < 2 {
        ticks += 1;
        assert!(ticks < 1_000, "no exchange ever moved the write");
        h.tick(100);
    }
    let first = ticks;
    while holders(&mut h) < 5 {
        ticks += 1;
        assert!(ticks < 1_000, "anti-entropy did not spread the write");
        h.tick(100);
    }
    // At most two ticks per remaining replica (an exchange that moves it, one that confirms);
    // the next replica's exchange starts as soon as the confirmation comes back.
    println!("second replica at tick {first}, all five at tick {ticks}");
    assert!(
        ticks - first <= 2 * 3 + 2,
        "the write reached a second replica at tick {first} but the fifth only at {ticks}"
    );
}

/// A restarted node may have lost unsynced writes and the hints of the writes it was
/// coordinating: it walks its partitions once at tick pace, then keeps the interval's pace. A
/// node that did not restart keeps the interval throughout.
#[test]
fn a_restarted_node_walks_its_partitions_once_at_tick_pace_then_keeps_the_interval() {
    let mut h = Harness::new(3, |cfg| cfg.aae.interval_ms = 1_000);
    for i in 0..50 {
        h.put(
            i % 3,
            &format!("k{i}"),
            "v",
            VersionVector::new(),
            Quorum::All,
        );
    }
    for _ in 0..100 {
        h.tick(100);
    }
    let cfg = h.nodes[0].config().clone();
    h.nodes[0] = driftkv_core::Node::open(cfg, &mut h.stores[0]).unwrap();
    h.refresh_membership();
    let exchanges = |h: &Harness, i: usize| h.nodes[i].stats().aae_exchanges;
    let others = exchanges(&h, 1);
    for _ in 0..40 {
        h.tick(100);
    }
    let (restarted, other) = (exchanges(&h, 0), exchanges(&h, 1) - others);
    println!("in 4 s: {restarted} exchanges by the restarted node, {other} by another");
    // (Trees are rebuilt after the restart too, and an exchange on an unbuilt one waits.)
    assert!(
        restarted >= 15,
        "the restarted node walks fast: {restarted} in 40 ticks"
    );
    assert!(
        other <= 6,
        "the other keeps the 1 s interval: {other} in 4 s"
    );
    // One walk over its 64 partitions, then the interval again.
    for _ in 0..120 {
        h.tick(100);
    }
    let after_walk = exchanges(&h, 0);
    println!("after 16 s: {after_walk}");
    assert!(after_walk >= 64, "one whole walk: {after_walk}");
    for _ in 0..50 {
        h.tick(100);
    }
    let later = exchanges(&h, 0) - after_walk;
    assert!(later <= 7, "back at the interval: {later} in 5 s");
}

fn members(ids: &[usize], leaving: &[usize]) -> Vec<driftkv_wire::MemberInfo> {
    ids.iter()
        .map(|&i| driftkv_wire::MemberInfo {
            id: name(i),
            listen: "".into(),
            http: "".into(),
            state: if leaving.contains(&i) {
                driftkv_wire::MemberState::Leaving
            } else {
                driftkv_wire::MemberState::Up
            },
        })
        .collect()
}

fn records(h: &mut Harness, i: usize, key: &str) -> bool {
    h.nodes[i]
        .local_object(&h.stores[i], &Key::default_bucket(key.to_string()))
        .unwrap()
        .is_some()
}

#[test]
fn tombstones_are_collected_only_once_every_primary_holds_them_and_never_resurrect() {
    let mut h = Harness::new(3, |cfg| {
        cfg.tombstone_grace_ms = 5_000;
        cfg.hint_age_max_ms = 5_000;
        cfg.read_repair = false;
        cfg.aae.interval_ms = 200;
    });
    let read = {
        h.put(0, "gone", "v", VersionVector::new(), Quorum::All);
        h.get(0, "gone", Quorum::All)
    };
    // n3 is cut off while the key is deleted: it keeps the old value.
    h.up[2] = false;
    let reply = h.request(
        0,
        Request::Put {
            key: Key::default_bucket("gone"),
            value: None,
            context: context(&read),
            expires_ms: None,
            w: Quorum::Quorum,
        },
    );
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    for _ in 0..100 {
        h.tick(200); // 20 s: far past the grace, but n3 cannot confirm
    }
    assert!(
        records(&mut h, 0, "gone") && records(&mut h, 1, "gone"),
        "not collected while a primary lacks the tombstone"
    );
    h.up[2] = true;
    let mut ticks = 0;
    while records(&mut h, 0, "gone") || records(&mut h, 1, "gone") || records(&mut h, 2, "gone") {
        ticks += 1;
        assert!(ticks < 500, "the tombstone was never collected");
        h.tick(200);
    }
    assert!(
        h.nodes
            .iter()
            .map(|n| n.stats().tombstones_collected)
            .sum::<u64>()
            >= 3
    );
    // Gone everywhere, and it stays gone: nothing brings the old value back.
    for _ in 0..50 {
        h.tick(200);
    }
    assert!(matches!(
        h.get(2, "gone", Quorum::All),
        Reply::NotFound { .. }
    ));
    assert_eq!(h.copies("gone"), vec![Vec::<String>::new(); 3]);
}

#[test]
fn a_joining_node_receives_its_partitions_and_a_leaving_node_hands_all_of_its_off() {
    let mut h = Harness::new(4, |cfg| cfg.aae.enabled = false);
    // Start as a three-node cluster; n4 is not a member yet.
    for i in 0..4 {
        h.nodes[i].set_members(members(&[0, 1, 2], &[]));
    }
    h.nodes[3].set_members(members(&[0, 1, 2, 3], &[]));
    for i in 0..300 {
        h.put(
            i % 3,
            &format!("k{i}"),
            &format!("v{i}"),
            VersionVector::new(),
            Quorum::All,
        );
    }
    assert!((0..300).all(|i| !records(&mut h, 3, &format!("k{i}"))));
    // n4 joins: the ring moves partitions to it; old owners transfer them and let go.
    for i in 0..4 {
        h.nodes[i].set_members(members(&[0, 1, 2, 3], &[]));
    }
    let owned_by = |h: &mut Harness, i: usize| -> usize {
        (0..300).filter(|k| records(h, i, &format!("k{k}"))).count()
    };
    let mut ticks = 0;
    while h
        .nodes
        .iter()
        .map(|n| n.partitions_to_transfer())
        .sum::<usize>()
        > 0
        || owned_by(&mut h, 3) == 0
    {
        ticks += 1;
        assert!(ticks < 500, "transfer to the new node did not finish");
        h.tick(500);
    }
    let n4 = owned_by(&mut h, 3);
    assert!(
        n4 > 100,
        "n4 holds its share: {n4} of 300 keys (N=3 of 4 nodes)"
    );
    for i in 0..300 {
        let key = format!("k{i}");
        assert_eq!(values(&h.get(i % 4, &key, Quorum::All)), [format!("v{i}")]);
        assert_eq!(
            h.copies(&key).iter().filter(|c| !c.is_empty()).count(),
            3,
            "{key}: exactly N copies"
        );
    }
    // n1 leaves: it owns nothing, hands every record off, and is drained.
    h.nodes[0].leave(&mut h.stores[0]).unwrap();
    // Restarted at once, it remembers that it is leaving.
    let cfg = h.nodes[0].config().clone();
    h.nodes[0] = driftkv_core::Node::open(cfg, &mut h.stores[0]).unwrap();
    assert!(h.nodes[0].is_leaving(), "a restart forgot the leave");
    assert!(
        !h.nodes[0].ring().members().contains(h.nodes[0].id()),
        "restarted while leaving, it owns nothing from the start (no member change needed)"
    );
    h.nodes[0].set_members(members(&[0, 1, 2, 3], &[0]));
    for i in 1..4 {
        h.nodes[i].set_members(members(&[0, 1, 2, 3], &[0]));
    }
    let mut ticks = 0;
    while !h.nodes[0].drained(&h.stores[0]) {
        ticks += 1;
        assert!(ticks < 500, "the leaving node never drained");
        h.tick(500);
    }
    for i in 0..300 {
        let key = format!("k{i}");
        assert_eq!(
            values(&h.get(1 + i % 3, &key, Quorum::All)),
            [format!("v{i}")],
            "{key} survived the leave"
        );
    }
    assert!(
        h.nodes
            .iter()
            .map(|n| n.stats().keys_transferred)
            .sum::<u64>()
            >= 300
    );
}

#[test]
fn a_late_reply_meant_for_a_previous_life_is_not_taken_for_a_new_request() {
    let mut h = Harness::new(3, |_| {});
    let (a, b) = (Key::default_bucket("a"), Key::default_bucket("b"));
    put_new(&mut h, 1, "a", "Alice", Quorum::All);
    let add = Request::CounterAdd {
        key: b.clone(),
        delta: 5,
        w: Quorum::All,
    };
    assert!(matches!(h.request(1, add), Reply::Counter { value: 5 }));
    // n1 reads the counter; n2's answer is slow to come back...
    let read_b = Request::CounterGet {
        key: b,
        r: Quorum::All,
    };
    h.step(
        0,
        Input::Request {
            client: 900,
            request: read_b,
        },
    );
    let at = h
        .queue
        .iter()
        .position(|(_, to, _)| *to == name(1))
        .unwrap();
    let (from, _, message) = h.queue.remove(at).unwrap();
    h.queue.clear();
    h.step(1, Input::Message { from, message });
    let late = h.queue.pop_front().unwrap();
    assert!(matches!(
        late.2,
        driftkv_wire::Message::ReplicaReadReply { .. }
    ));
    // ...n1 restarts meanwhile and reads the register...
    driftkv_core::Store::sync(&mut h.stores[0]).unwrap();
    let cfg = h.nodes[0].config().clone();
    h.nodes[0] = driftkv_core::Node::open(cfg, &mut h.stores[0]).unwrap();
    h.refresh_membership();
    h.replies.clear();
    let read_a = Request::Get {
        key: a,
        r: Quorum::Quorum,
    };
    h.step(
        0,
        Input::Request {
            client: 901,
            request: read_a,
        },
    );
    // ...when the counter's old answer arrives: it must not count as an answer for "a".
    h.step(
        0,
        Input::Message {
            from: late.0,
            message: late.2,
        },
    );
    h.deliver_all();
    let reply = h
        .replies
        .iter()
        .find(|(node, client, _)| *node == 0 && *client == 901)
        .map(|(_, _, r)| r.clone())
        .expect("the read was answered");
    assert_eq!(values(&reply), ["Alice"]);
    assert_eq!(
        h.copies("a"),
        vec![vec!["Alice".to_string()]; 3],
        "read repair spread nothing foreign"
    );
}

#[test]
fn a_forward_delivered_twice_is_applied_once() {
    let mut h = Harness::new(5, |_| {});
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let p = h.nodes[0]
                .ring()
                .partition_for_key(b"default", k.as_bytes());
            !h.nodes[0].ring().owners(p).contains(&name(0))
        })
        .unwrap();
    let key = Key::default_bucket(key);
    let add = Request::CounterAdd {
        key: key.clone(),
        delta: 3,
        w: Quorum::Quorum,
    };
    h.step(
        0,
        Input::Request {
            client: 7,
            request: add,
        },
    );
    let forward = h.queue.back().cloned().unwrap();
    assert!(matches!(forward.2, driftkv_wire::Message::Forward { .. }));
    h.queue.push_back(forward); // the network delivers it twice
    h.deliver_all();
    let read = Request::CounterGet {
        key,
        r: Quorum::All,
    };
    assert_eq!(h.request(1, read), Reply::Counter { value: 3 });
    let ignored: u64 = h.nodes.iter().map(|n| n.stats().duplicate_forwards).sum();
    assert_eq!(ignored, 1);
}

#[test]
fn a_fallback_whose_copy_was_handed_over_never_reissues_its_counts() {
    let mut h = Harness::new(5, |_| {});
    // A key, a primary of it that will be down, and the fallback standing in for it.
    let (key, down, fallback) = (0..1000)
        .find_map(|i| {
            let key = format!("k{i}");
            let ring = h.nodes[0].ring();
            let p = ring.partition_for_key(b"default", key.as_bytes());
            let down = ring.owners(p)[2].clone();
            let list = ring.preference_list(p, |n| *n != down);
            let fallback = list
                .iter()
                .find(|t| t.role != driftkv_ring::Role::Primary)?;
            Some((key, h.index(&down), h.index(&fallback.node)))
        })
        .unwrap();
    let key = Key::default_bucket(key);
    let add = Request::CounterAdd {
        key: key.clone(),
        delta: 1,
        w: Quorum::Quorum,
    };
    for round in 0..2 {
        h.set_up(down, false);
        let reply = h.request(fallback, add.clone());
        assert!(matches!(reply, Reply::Counter { .. }), "{reply:?}");
        // The primary returns: hints are handed off, and whatever the fallback holds of the
        // key moves to the primaries and is deleted there.
        h.set_up(down, true);
        for _ in 0..20 {
            h.tick(1_000);
        }
        let gone = h.nodes[fallback]
            .local_object(&h.stores[fallback], &key)
            .unwrap()
            .is_none();
        assert!(gone, "round {round}: the fallback still holds the key");
    }
    let read = Request::CounterGet {
        key,
        r: Quorum::All,
    };
    assert_eq!(h.request(0, read), Reply::Counter { value: 2 });
}

/// Ticks and delivers like `Harness::tick`, counting the objects anti-entropy moves.
fn tick_counting_aae_objects(h: &mut Harness, advance_ms: u64) -> usize {
    h.now_ms += advance_ms;
    for i in 0..h.nodes.len() {
        h.step(i, Input::Tick);
    }
    let mut moved = 0;
    for _ in 0..100_000 {
        let Some((from, to, message)) = h.queue.pop_front() else {
            return moved;
        };
        if let driftkv_wire::Message::AaeSync { objects, .. }
        | driftkv_wire::Message::AaeObjects { objects, .. } = &message
        {
            moved += objects.len();
        }
        let t = h.index(&to);
        h.step(t, Input::Message { from, message });
    }
    panic!("the network never went quiet");
}

#[test]
fn anti_entropy_moves_each_differing_key_at_most_once_each_way_and_keeps_siblings() {
    let mut h = Harness::new(2, |cfg| {
        cfg.hinted_handoff = false;
        cfg.read_repair = false;
        cfg.aae.interval_ms = 100;
    });
    for key in ["newer-on-1", "newer-on-2", "concurrent"] {
        h.put(0, key, "old", VersionVector::new(), Quorum::All);
    }
    // Each write reaches one node only: the other is cut off while it happens.
    let on = |h: &mut Harness, i: usize, key: &str, value: &str| {
        let context = context(&h.get(i, key, Quorum::One));
        h.up = vec![i == 0, i == 1];
        h.put(i, key, value, context, Quorum::One);
        h.up = vec![true, true];
    };
    on(&mut h, 0, "newer-on-1", "one");
    on(&mut h, 1, "newer-on-2", "two");
    on(&mut h, 0, "concurrent", "left");
    on(&mut h, 1, "concurrent", "right");
    assert_eq!(h.copies("newer-on-1"), [vec!["one"], vec!["old"]]);
    assert_eq!(h.copies("concurrent"), [vec!["left"], vec!["right"]]);

    let mut moved = 0;
    let mut ticks = 0;
    while ["newer-on-1", "newer-on-2", "concurrent"]
        .iter()
        .any(|k| h.copies(k)[0] != h.copies(k)[1])
    {
        ticks += 1;
        assert!(ticks < 2_000, "anti-entropy did not converge");
        moved += tick_counting_aae_objects(&mut h, 100);
    }
    assert_eq!(h.copies("newer-on-1"), [vec!["one"], vec!["one"]]);
    assert_eq!(h.copies("newer-on-2"), [vec!["two"], vec!["two"]]);
    assert_eq!(
        h.copies("concurrent"),
        [vec!["left", "right"], vec!["left", "right"]],
        "concurrent writes meet as siblings on both replicas"
    );
    // A key whose newer copy the peer holds crosses once; one the initiator holds newer
    // crosses twice (the peer's stale copy, then the merged state back); siblings twice.
    assert!(moved <= 6, "{moved} objects moved for 3 differing keys");
    // In sync: further exchanges move nothing.
    for _ in 0..200 {
        assert_eq!(tick_counting_aae_objects(&mut h, 100), 0);
    }
}

#[test]
fn anti_entropy_yields_to_heavy_client_traffic_but_is_never_starved() {
    let mut h = Harness::new(3, |cfg| {
        cfg.hinted_handoff = false;
        cfg.read_repair = false;
        cfg.aae.interval_ms = 100;
        cfg.aae.busy_requests = 20;
        cfg.aae.defer_max = 3;
    });
    // n3 misses a write, so there is something to repair.
    h.up[2] = false;
    h.put(0, "k", "v", VersionVector::new(), Quorum::Quorum);
    h.up[2] = true;
    let mut ticks = 0;
    // Heavy traffic on every node between ticks: more requests than `busy_requests`.
    while h.copies("k")[2].is_empty() {
        ticks += 1;
        assert!(ticks < 200, "anti-entropy starved under load");
        for i in 0..3 {
            for _ in 0..25 {
                h.get(i, "other", Quorum::One);
            }
        }
        h.tick(100);
    }
    let deferred: u64 = h.nodes.iter().map(|n| n.stats().aae_deferred).sum();
    assert!(deferred > 0, "exchanges were put off for the traffic");
    // Quiet again: nothing is put off.
    let before: Vec<u64> = h.nodes.iter().map(|n| n.stats().aae_deferred).collect();
    for _ in 0..20 {
        h.tick(100);
    }
    let after: Vec<u64> = h.nodes.iter().map(|n| n.stats().aae_deferred).collect();
    assert_eq!(before, after);
}

#[test]
fn a_session_read_never_returns_less_than_the_session_has_seen() {
    let mut h = Harness::new(3, |cfg| {
        cfg.hinted_handoff = false;
        cfg.read_repair = false;
        cfg.aae.enabled = false;
    });
    let old = h.put(0, "k", "old", VersionVector::new(), Quorum::All);
    // The new version reaches n1 only.
    h.up = vec![true, false, false];
    let written = h.put(0, "k", "new", context(&old), Quorum::One);
    let Reply::Written { context: seen } = written else {
        panic!("{written:?}")
    };
    h.up = vec![true; 3];
    let key = Key::default_bucket("k");
    let session_get = |seen: &VersionVector| Request::SessionGet {
        key: key.clone(),
        r: Quorum::One,
        seen: seen.clone(),
    };
    // A plain R=1 read at n2 answers its own stale copy; the session read waits for a replica
    // that has the session's write.
    assert_eq!(values(&h.get(1, "k", Quorum::One)), ["old"]);
    let reply = h.request(1, session_get(&seen));
    assert_eq!(values(&reply), ["new"]);
    // Monotonic reads: what a session read returned is the floor of the next one.
    let floor = context(&reply);
    assert!(floor.descends(&seen));
    // With n1 cut off, no replica that answers has caught up: the read fails, never goes back.
    h.up = vec![false, true, true];
    let reply = h.request(1, session_get(&floor));
    assert!(
        matches!(&reply, Reply::Error { kind: ErrorKind::Unavailable, message, .. }
            if message.contains("session")),
        "{reply:?}"
    );
    assert_eq!(h.nodes[1].stats().session_reads_behind, 1);
    // An empty token is a plain read.
    assert_eq!(
        values(&h.request(1, session_get(&VersionVector::new()))),
        ["old"]
    );
}

#[test]
fn trees_are_built_a_batch_per_tick_and_writes_during_a_build_are_not_missed() {
    // One partition, so its tree takes several ticks of 8192 records to build.
    let mut h = Harness::new(2, |cfg| {
        cfg.ring.partitions = 1;
        cfg.hinted_handoff = false;
        cfg.read_repair = false;
        cfg.aae.interval_ms = 100;
    });
    const KEYS: usize = 20_000;
    for i in 0..KEYS {
        h.put(
            i % 2,
            &format!("k{i:05}"),
            "v",
            VersionVector::new(),
            Quorum::All,
        );
    }
    // n1 restarts: no trees. Its tree builds over the next ticks while writes go on, some to
    // records the scan has passed, some to records it has yet to reach.
    let cfg = h.nodes[0].config().clone();
    h.nodes[0] = driftkv_core::Node::open(cfg, &mut h.stores[0]).unwrap();
    h.refresh_membership();
    let mut ticks = 0;
    while h.nodes[0].aae_trees_check(&h.stores[0]).0 == 0 {
        ticks += 1;
        assert!(ticks < 20, "the tree never finished building");
        for j in 0..10 {
            let i = (ticks * 997 + j * 1931) % KEYS;
            h.put(
                0,
                &format!("k{i:05}"),
                &format!("w{ticks}-{j}"),
                VersionVector::new(),
                Quorum::All,
            );
        }
        h.tick(50);
    }
    assert!(
        ticks >= 3,
        "20,000 records in batches of 8192 take 3 ticks, took {ticks}"
    );
    for i in 0..2 {
        assert_eq!(
            h.nodes[i].aae_trees_check(&h.stores[i]),
            (1, true),
            "n{}'s tree equals a fresh scan",
            i + 1
        );
    }
    // And the two replicas agree: exchanges find them in sync.
    for _ in 0..20 {
        h.tick(100);
    }
    let in_sync: u64 = h.nodes.iter().map(|n| n.stats().aae_in_sync).sum();
    assert!(in_sync > 0);
    assert_eq!(
        h.nodes
            .iter()
            .map(|n| n.stats().aae_keys_repaired)
            .sum::<u64>(),
        0,
        "nothing differed"
    );
}

#[test]
fn a_joining_node_serves_no_client_until_it_has_heard_from_a_member() {
    // A node started to join (it has seeds) but alone so far.
    let mut cfg = driftkv_core::NodeConfig::new("n9");
    cfg.seeds = vec!["127.0.0.1:1".into()];
    let mut store = driftkv_core::MemStore::new(driftkv_core::Durability::GroupCommit);
    let mut node = driftkv_core::Node::open(cfg, &mut store).unwrap();
    let mut out = Vec::new();
    let put = Request::Put {
        key: Key::default_bucket("k"),
        value: Some(Bytes::from_static(b"v")),
        context: VersionVector::new(),
        expires_ms: None,
        w: Quorum::Quorum,
    };
    node.handle(
        &mut store,
        1_000,
        Input::Request {
            client: 1,
            request: put.clone(),
        },
        &mut out,
    );
    let replies: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            driftkv_core::Output::Reply { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&replies[..], [Reply::Error { kind: ErrorKind::Unavailable, message, .. }]
            if message.contains("has not reached a member")),
        "{replies:?}"
    );
    assert!(
        node.local_object(&store, &Key::default_bucket("k"))
            .unwrap()
            .is_none(),
        "nothing was written"
    );
    // Once it knows the cluster, it serves.
    node.set_members(
        (0..2)
            .map(|i| driftkv_wire::MemberInfo {
                id: if i == 0 { "n9".into() } else { "n1".into() },
                listen: "".into(),
                http: "".into(),
                state: driftkv_wire::MemberState::Up,
            })
            .collect::<Vec<_>>(),
    );
    out.clear();
    node.handle(
        &mut store,
        1_000,
        Input::Request {
            client: 2,
            request: put,
        },
        &mut out,
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, driftkv_core::Output::Send { .. })),
        "the write goes to the replicas: {out:?}"
    );
}
