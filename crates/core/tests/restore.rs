//! Restoring a backup's state (`Request::Restore`) on nodes wired in process: a join at every
//! replica, idempotent, and held to the bounds a hostile batch would break.

use bytes::Bytes;
use driftkv_causal::{Actor, ConflictMode, Register, Timestamp, VersionVector};
use driftkv_core::local::LocalCluster as Harness;
use driftkv_core::node::{RESTORE_CLOCK_LEAD_MAX_MS, RESTORE_CONTEXT_ACTORS_MAX};
use driftkv_crdt::PnCounter;
use driftkv_wire::{ErrorKind, Key, Object, Quorum, Reply, Request};

fn key(k: &str) -> Key {
    Key::default_bucket(k.to_string())
}

fn restore(h: &mut Harness, i: usize, k: &str, object: Object) -> Reply {
    h.request(
        i,
        Request::Restore {
            key: key(k),
            object,
            w: Quorum::All,
        },
    )
}

fn register(actor: &str, value: &[u8], physical_ms: u64) -> Object {
    let mut reg = Register::new();
    reg.write(
        ConflictMode::Siblings,
        &Actor::new(actor, 7),
        &VersionVector::new(),
        Some(Bytes::copy_from_slice(value)),
        Timestamp::new(physical_ms, 0),
    )
    .unwrap();
    Object::Register(reg)
}

fn counter(actors: std::ops::Range<usize>) -> Object {
    let mut c = PnCounter::new();
    for a in actors {
        c.apply(&Actor::new(format!("old{a}"), 1), 1).unwrap();
    }
    Object::Counter(c)
}

fn refused(reply: &Reply, says: &str) {
    match reply {
        Reply::Error {
            kind: ErrorKind::BadRequest,
            message,
            ..
        } => assert!(message.contains(says), "{message}"),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_restore_merges_into_every_replica_and_a_second_changes_nothing() {
    let mut h = Harness::new(3, |_| {});
    let written = h.put(0, "cart", "new", VersionVector::new(), Quorum::All);
    assert!(matches!(written, Reply::Written { .. }), "{written:?}");
    // The backup's value was written concurrently by a node of another cluster.
    for _ in 0..2 {
        let reply = restore(&mut h, 1, "cart", register("elsewhere", b"old", 1));
        assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
        h.deliver_all();
        for copy in h.copies("cart") {
            assert_eq!(copy, ["new", "old"], "every replica holds both, once");
        }
    }
    // A counter restored twice counts once.
    for _ in 0..2 {
        let reply = restore(&mut h, 2, "visits", counter(0..7));
        assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    }
    let read = h.request(
        0,
        Request::CounterGet {
            key: key("visits"),
            r: Quorum::All,
        },
    );
    assert_eq!(read, Reply::Counter { value: 7 });
}

#[test]
fn a_restore_is_held_to_the_bounds_of_a_key() {
    let mut h = Harness::new(3, |cfg| cfg.value_bytes_max = 1024);
    let max = RESTORE_CONTEXT_ACTORS_MAX;
    refused(&restore(&mut h, 0, "c", counter(0..max + 1)), "nodes");
    // Restores add up: a second one that would pass the bound is refused, the first kept.
    let half = max / 2 + 1;
    assert!(matches!(
        restore(&mut h, 0, "c", counter(0..half)),
        Reply::Written { .. }
    ));
    refused(
        &restore(&mut h, 0, "c", counter(half..2 * half)),
        "would leave the key",
    );
    let value = h.request(
        1,
        Request::CounterGet {
            key: key("c"),
            r: Quorum::All,
        },
    );
    assert_eq!(
        value,
        Reply::Counter {
            value: half as i128
        }
    );
    // A value over the value limit, a timestamp far ahead of every clock.
    refused(
        &restore(&mut h, 0, "big", register("n9", &[b'x'; 2048], 1)),
        "bytes",
    );
    let ahead = 10 * RESTORE_CLOCK_LEAD_MAX_MS + 1_000_000;
    refused(
        &restore(&mut h, 0, "future", register("n9", b"v", ahead)),
        "ahead",
    );
    // After all that, an ordinary write of another key is stamped by the clock as it was.
    let reply = h.put(0, "plain", "v", VersionVector::new(), Quorum::All);
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
}

#[test]
fn a_backup_from_before_a_delete_does_not_take_the_key_written_again() {
    let mut h = Harness::new(3, |_| {});
    let reply = h.put(0, "k", "new", VersionVector::new(), Quorum::All);
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    // The key as node 0 holds it: one value under node 0's first dot for the key.
    let Some(Object::Register(held)) = h.nodes[0].local_object(&h.stores[0], &key("k")).unwrap()
    else {
        panic!("no register held")
    };
    let (dot, _) = held.dvv().siblings().next().unwrap();
    // A backup from the key's earlier life, before it was deleted and its tombstone
    // collected: the same first dot, another value, an older time.
    let mut old = Register::new();
    old.write(
        ConflictMode::Siblings,
        &dot.actor,
        &VersionVector::new(),
        Some(Bytes::from_static(b"old")),
        Timestamp::new(1, 0),
    )
    .unwrap();
    refused(
        &restore(&mut h, 0, "k", Object::Register(old)),
        "written again",
    );
    h.deliver_all();
    for copy in h.copies("k") {
        assert_eq!(copy, ["new"], "the newer value stays");
    }
}
