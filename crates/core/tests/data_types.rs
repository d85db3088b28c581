//! The data applications keep, on several nodes wired in process (`core::local`): expiry,
//! deletes of every kind, maps and key listing. Time is the harness's number, advanced by hand.

use bytes::Bytes;
use driftkv_core::local::LocalCluster as Harness;
use driftkv_wire::{FieldValue, Key, ListCursor, ObjectKind, Quorum, Reply, Request};

fn key(k: &str) -> Key {
    Key::default_bucket(k.to_string())
}

fn write(h: &mut Harness, i: usize, k: Key, value: &str, expires_ms: Option<u64>) {
    let reply = h.request(
        i,
        Request::Overwrite {
            key: k,
            value: Some(Bytes::from(value.to_string())),
            expires_ms,
            w: Quorum::All,
        },
    );
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
}

fn read(h: &mut Harness, i: usize, k: &str, r: Quorum) -> Reply {
    h.request(i, Request::Get { key: key(k), r })
}

/// Whether node `i` holds a record of `k` at all.
fn records(h: &mut Harness, i: usize, k: &str) -> bool {
    h.nodes[i]
        .local_object(&h.stores[i], &key(k))
        .unwrap()
        .is_some()
}

#[test]
fn an_expired_value_reads_as_missing_on_every_node_never_returns_and_is_collected() {
    let mut h = Harness::new(3, |cfg| {
        cfg.tombstone_grace_ms = 5_000;
        cfg.hint_age_max_ms = 5_000;
        cfg.aae.interval_ms = 200;
    });
    let at = h.now_ms + 3_000;
    // n3 is down while the key is written: it gets the write later, by hint.
    h.up[2] = false;
    h.refresh_membership();
    let reply = h.request(
        0,
        Request::Overwrite {
            key: key("session"),
            value: Some(Bytes::from_static(b"token")),
            expires_ms: Some(at),
            w: Quorum::Quorum,
        },
    );
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    for i in 0..2 {
        assert!(
            matches!(
                read(&mut h, i, "session", Quorum::One),
                Reply::Values { .. }
            ),
            "readable before it expires"
        );
    }
    h.tick(3_000);
    for i in 0..2 {
        assert!(
            matches!(
                read(&mut h, i, "session", Quorum::Quorum),
                Reply::NotFound { .. }
            ),
            "missing everywhere once expired"
        );
    }
    // n3 comes back after the expiry: hints, repair and anti-entropy hand it an expired
    // value, which reads as missing there too.
    h.set_up(2, true);
    for _ in 0..20 {
        h.tick(200);
        for i in 0..3 {
            let reply = read(&mut h, i, "session", Quorum::One);
            assert!(
                matches!(reply, Reply::NotFound { .. }),
                "n{} {reply:?}",
                i + 1
            );
        }
    }
    // Past the grace the expired key is collected like a tombstone, on every node.
    let mut ticks = 0;
    while (0..3).any(|i| records(&mut h, i, "session")) {
        ticks += 1;
        assert!(ticks < 500, "the expired key was never collected");
        h.tick(200);
    }
}

#[test]
fn a_key_rewritten_without_expiry_lives_on_past_the_old_expiry() {
    let mut h = Harness::new(3, |_| {});
    let at = h.now_ms + 1_000;
    write(&mut h, 0, key("k"), "short", Some(at));
    write(&mut h, 1, key("k"), "kept", None);
    h.tick(2_000);
    match read(&mut h, 2, "k", Quorum::All) {
        Reply::Values { values, .. } => assert_eq!(values, vec![Bytes::from_static(b"kept")]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_delete_removes_a_key_of_every_kind_and_a_missing_key_is_not_written() {
    let mut h = Harness::new(3, |_| {});
    let w = Quorum::All;
    write(&mut h, 0, key("reg"), "v", None);
    h.request(
        0,
        Request::CounterAdd {
            key: key("cnt"),
            delta: 5,
            w,
        },
    );
    h.request(
        1,
        Request::SetUpdate {
            key: key("set"),
            add: vec![Bytes::from_static(b"a")],
            remove: vec![],
            w,
        },
    );
    h.request(
        2,
        Request::MapUpdate {
            key: key("map"),
            set: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"x"))],
            increment: vec![(Bytes::from_static(b"n"), 2)],
            remove: vec![],
            w,
        },
    );
    for (i, k) in ["reg", "cnt", "set", "map"].into_iter().enumerate() {
        let reply = h.request(
            i % 3,
            Request::Delete {
                key: key(k),
                kind: None,
                w,
            },
        );
        assert_eq!(reply, Reply::Deleted { existed: true }, "{k}");
        let again = h.request(
            (i + 1) % 3,
            Request::Delete {
                key: key(k),
                kind: None,
                w,
            },
        );
        assert_eq!(again, Reply::Deleted { existed: false }, "{k} twice");
    }
    for i in 0..3 {
        let r = Quorum::One;
        assert!(matches!(read(&mut h, i, "reg", r), Reply::NotFound { .. }));
        assert!(matches!(read(&mut h, i, "cnt", r), Reply::NotFound { .. }));
        let counter = h.request(i, Request::CounterGet { key: key("cnt"), r });
        assert_eq!(counter, Reply::Counter { value: 0 });
        let set = h.request(i, Request::SetGet { key: key("set"), r });
        assert_eq!(set, Reply::Set { members: vec![] });
        match h.request(i, Request::MapGet { key: key("map"), r }) {
            Reply::Map { fields, .. } => assert!(fields.is_empty(), "{fields:?}"),
            other => panic!("{other:?}"),
        }
    }
    // Counting on after a delete starts from zero.
    let reply = h.request(
        1,
        Request::CounterAdd {
            key: key("cnt"),
            delta: 2,
            w,
        },
    );
    assert_eq!(reply, Reply::Counter { value: 2 });
    // A delete of a key no node holds writes nothing.
    let reply = h.request(
        0,
        Request::Delete {
            key: key("never"),
            kind: Some(ObjectKind::Counter),
            w,
        },
    );
    assert_eq!(reply, Reply::Deleted { existed: false });
    assert!((0..3).all(|i| !records(&mut h, i, "never")));
    // A delete that names a kind refuses a key of another.
    let reply = h.request(
        0,
        Request::Delete {
            key: key("cnt"),
            kind: Some(ObjectKind::Set),
            w,
        },
    );
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: driftkv_wire::ErrorKind::WrongType,
                ..
            }
        ),
        "{reply:?}"
    );
}

#[test]
fn map_fields_written_on_different_nodes_merge_and_a_concurrent_increment_survives_a_remove() {
    let mut h = Harness::new(3, |_| {});
    let update =
        |h: &mut Harness, i: usize, set: &[(&str, &str)], inc: &[(&str, i64)], rm: &[&str]| {
            h.request(
                i,
                Request::MapUpdate {
                    key: key("profile"),
                    set: set
                        .iter()
                        .map(|(n, v)| (Bytes::from(n.to_string()), Bytes::from(v.to_string())))
                        .collect(),
                    increment: inc
                        .iter()
                        .map(|(n, d)| (Bytes::from(n.to_string()), *d))
                        .collect(),
                    remove: rm.iter().map(|n| Bytes::from(n.to_string())).collect(),
                    w: Quorum::One,
                },
            )
        };
    update(&mut h, 0, &[("name", "ann")], &[], &[]);
    update(&mut h, 1, &[("city", "oslo")], &[("visits", 2)], &[]);
    update(&mut h, 2, &[], &[("visits", 3)], &[]);
    let fields = |h: &mut Harness, i: usize| match h.request(
        i,
        Request::MapGet {
            key: key("profile"),
            r: Quorum::All,
        },
    ) {
        Reply::Map { fields, .. } => fields,
        other => panic!("{other:?}"),
    };
    let want = vec![
        (
            Bytes::from_static(b"city"),
            FieldValue::Bytes(Bytes::from_static(b"oslo")),
        ),
        (
            Bytes::from_static(b"name"),
            FieldValue::Bytes(Bytes::from_static(b"ann")),
        ),
        (Bytes::from_static(b"visits"), FieldValue::Int(5)),
    ];
    assert_eq!(fields(&mut h, 0), want);
    // n1 removes "visits" while n3, cut off, increments it: the increment survives the
    // remove (add wins), counting only what n3 added since (reset-remove): the 3 the remove
    // saw never come back with it.
    h.set_up(2, false);
    update(&mut h, 0, &[], &[], &["visits"]);
    h.set_up(2, true);
    h.up[0] = false;
    h.up[1] = false;
    update(&mut h, 2, &[], &[("visits", 1)], &[]);
    h.up[0] = true;
    h.up[1] = true;
    h.refresh_membership();
    let merged = fields(&mut h, 1);
    let visits = merged
        .iter()
        .find(|(n, _)| n == &Bytes::from_static(b"visits"));
    assert_eq!(
        visits.map(|(_, v)| v.clone()),
        Some(FieldValue::Int(1)),
        "n3's increment since the remove survives it, and only that"
    );
    assert!(
        merged
            .iter()
            .any(|(n, _)| n == &Bytes::from_static(b"name"))
    );
}

/// Every page of a listing of `bucket` with `prefix`, followed to its end.
fn list_all(
    h: &mut Harness,
    i: usize,
    bucket: &str,
    prefix: &str,
    limit: u32,
    whole: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<ListCursor> = None;
    for _ in 0..10_000 {
        let reply = h.request(
            i,
            Request::ListKeys {
                key: Key::new(bucket.to_string(), prefix.to_string()),
                after: after.clone(),
                limit,
                whole_segments: whole,
            },
        );
        let Reply::Keys { keys, next } = reply else {
            panic!("{reply:?}")
        };
        if !whole {
            assert!(keys.len() <= limit as usize, "a page over its limit");
        }
        out.extend(
            keys.into_iter()
                .map(|(k, _)| String::from_utf8_lossy(&k).into_owned()),
        );
        match next {
            None => return out,
            Some(c) => {
                if whole {
                    // A whole-segment page's cursor is one RESP's SCAN can carry as a number.
                    let n = driftkv_core::keys::scan_number(&c).expect("ends at a segment's end");
                    assert_eq!(driftkv_core::keys::scan_cursor(n).unwrap(), Some(c.clone()));
                }
                after = Some(c)
            }
        }
    }
    panic!("the listing never ended");
}

#[test]
fn a_listing_pages_through_every_live_key_once_and_leaves_out_the_dead() {
    let mut h = Harness::new(4, |cfg| {
        cfg.ring.n = 3;
        cfg.ring.partitions = 16;
    });
    let mut want = Vec::new();
    for i in 0..150 {
        let k = Key::new("people", format!("user-{i:04}"));
        write(&mut h, i % 4, k, "v", None);
        want.push(format!("user-{i:04}"));
    }
    write(&mut h, 0, Key::new("people", "other"), "x", None);
    write(&mut h, 0, Key::new("elsewhere", "user-9999"), "x", None);
    // Deleted, expiring and emptied keys are not listed.
    write(&mut h, 1, Key::new("people", "user-dead"), "x", None);
    h.request(
        2,
        Request::Delete {
            key: Key::new("people", "user-dead"),
            kind: None,
            w: Quorum::All,
        },
    );
    let soon = h.now_ms + 500;
    write(&mut h, 1, Key::new("people", "user-brief"), "x", Some(soon));
    h.tick(1_000);
    want.sort();
    for (limit, whole) in [
        (7, false),
        (70, false),
        (1000, false),
        (7, true),
        (1000, true),
    ] {
        let mut got = list_all(&mut h, 3, "people", "user-", limit, whole);
        let n = got.len();
        got.sort();
        got.dedup();
        assert_eq!(
            got.len(),
            n,
            "a key listed twice (limit {limit}, whole {whole})"
        );
        assert_eq!(got, want, "limit {limit}, whole segments {whole}");
    }
    // With a replica down, the others cover its partitions.
    h.set_up(1, false);
    let mut got = list_all(&mut h, 0, "people", "user-", 50, false);
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn a_listing_cursor_from_outside_is_checked() {
    let mut h = Harness::new(3, |cfg| cfg.ring.partitions = 16);
    for (after, limit) in [
        (
            Some(ListCursor {
                partition: 16,
                after: None,
            }),
            10,
        ),
        (
            Some(ListCursor {
                partition: 2,
                after: Some(Bytes::from_static(b"dxxxx")),
            }),
            10,
        ),
        (None, 0),
        (None, 1_000_000),
    ] {
        let reply = h.request(
            0,
            Request::ListKeys {
                key: Key::default_bucket(""),
                after,
                limit,
                whole_segments: false,
            },
        );
        assert!(
            matches!(
                reply,
                Reply::Error {
                    kind: driftkv_wire::ErrorKind::BadRequest,
                    ..
                }
            ),
            "{reply:?}"
        );
    }
}

#[test]
fn a_future_stamped_message_does_not_expire_keys_early() {
    use driftkv_causal::{Actor, ConflictMode, Register, Timestamp, VersionVector};
    use driftkv_core::Input;
    use driftkv_core::local::name;
    use driftkv_wire::{Message, Object};
    let mut h = Harness::new(3, |_| {});
    let hour = 3_600_000;
    let at = h.now_ms + hour;
    write(&mut h, 0, key("ttl"), "kept", Some(at));
    // A peer's repair of another key, stamped two hours ahead (a forged message, or a peer
    // whose clock ran ahead): n1's hybrid clock follows it.
    let mut far = Register::new();
    far.write(
        ConflictMode::Siblings,
        &Actor::new("n2", 0),
        &VersionVector::new(),
        Some(Bytes::from_static(b"x")),
        Timestamp::new(h.now_ms + 2 * hour, 0),
    )
    .unwrap();
    h.step(
        0,
        Input::Message {
            from: name(1),
            message: Message::Repair {
                key: key("other"),
                object: Object::Register(far),
            },
        },
    );
    h.deliver_all();
    // A write n1 coordinates carries its clock to the others.
    write(&mut h, 0, key("another"), "v", None);
    for i in 0..3 {
        let reply = read(&mut h, i, "ttl", Quorum::One);
        assert!(
            matches!(reply, Reply::Values { .. }),
            "n{} {reply:?}",
            i + 1
        );
        let Reply::Object { now_ms, .. } = h.request(
            i,
            Request::Read {
                key: key("ttl"),
                r: Quorum::One,
            },
        ) else {
            panic!("a read of any kind answers the object")
        };
        assert!(
            now_ms <= h.now_ms + driftkv_core::node::EXPIRY_CLOCK_LEAD_MAX_MS,
            "expiry judged {} ms ahead of the clock",
            now_ms - h.now_ms
        );
    }
}

#[test]
fn a_dead_key_reads_empty_as_any_kind_and_a_key_over_its_limits_can_be_deleted() {
    let mut h = Harness::new(3, |cfg| cfg.object_bytes_max = 100);
    // An expired string read as a hash, a counter or a set: empty, not the wrong type.
    let soon = h.now_ms + 500;
    write(&mut h, 0, key("shape"), "v", Some(soon));
    h.tick(1_000);
    let r = Quorum::All;
    match h.request(
        1,
        Request::MapGet {
            key: key("shape"),
            r,
        },
    ) {
        Reply::Map { fields, .. } => assert!(fields.is_empty()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.request(
            2,
            Request::CounterGet {
                key: key("shape"),
                r
            }
        ),
        Reply::Counter { value: 0 }
    );
    // Two sides of a split each grow a map within the limit; merged, it is over it.
    let incr = |h: &mut Harness, i: usize, field: &str| {
        h.request(
            i,
            Request::MapUpdate {
                key: key("big"),
                set: vec![],
                increment: vec![(Bytes::from(field.to_string()), 1)],
                remove: vec![],
                w: Quorum::One,
            },
        )
    };
    h.set_up(2, false);
    for f in ["a0", "a1"] {
        assert!(matches!(incr(&mut h, 0, f), Reply::Map { .. }));
    }
    h.set_up(2, true);
    h.set_up(0, false);
    h.set_up(1, false);
    for f in ["b0", "b1"] {
        assert!(matches!(incr(&mut h, 2, f), Reply::Map { .. }));
    }
    h.set_up(0, true);
    h.set_up(1, true);
    match h.request(
        0,
        Request::MapGet {
            key: key("big"),
            r: Quorum::All,
        },
    ) {
        Reply::Map { fields, .. } => assert_eq!(fields.len(), 4, "merged past the limit"),
        other => panic!("{other:?}"),
    }
    let grow = incr(&mut h, 0, "c0");
    assert!(
        matches!(&grow, Reply::Error { message, .. } if message.contains("object_bytes_max")),
        "{grow:?}"
    );
    let reply = h.request(
        0,
        Request::Delete {
            key: key("big"),
            kind: None,
            w: Quorum::All,
        },
    );
    assert_eq!(
        reply,
        Reply::Deleted { existed: true },
        "a delete only takes away"
    );
}
