//! What a hostile client can send through the public requests, held against the protocol:
//! forged causal contexts, blind writes without end, counters at the edge of their range.
//! Every case must end in a clear error or a bounded state, never a panic or a poisoned key.

use bytes::Bytes;
use driftkv_causal::vv::COUNTER_MAX;
use driftkv_causal::{Actor, VersionVector};
use driftkv_core::local::{LocalCluster as Harness, reply_context as context};
use driftkv_wire::{ErrorKind, Key, Quorum, Reply, Request};
use proptest::prelude::*;

fn written(reply: &Reply) -> bool {
    matches!(reply, Reply::Written { .. })
}

/// The actor that coordinated the first write of `key` (the only actor in its context).
fn coordinator_actor(h: &mut Harness, key: &str) -> Actor {
    let reply = h.put(0, key, "first", VersionVector::new(), Quorum::All);
    let ctx = context(&reply);
    assert_eq!(ctx.len(), 1, "{ctx:?}");
    ctx.iter().next().unwrap().0.clone()
}

fn forged(pairs: &[(Actor, u64)]) -> VersionVector {
    pairs.iter().cloned().collect()
}

#[test]
fn a_context_claiming_the_last_event_of_the_coordinator_is_refused_and_the_key_stays_writable() {
    let mut h = Harness::new(3, |_| {});
    let me = coordinator_actor(&mut h, "k");
    for counter in [u64::MAX, u64::MAX - 1, COUNTER_MAX + 1] {
        let reply = h.put(
            0,
            "k",
            "evil",
            forged(&[(me.clone(), counter)]),
            Quorum::All,
        );
        assert!(
            matches!(&reply, Reply::Error { kind: ErrorKind::BadRequest, message, .. }
                if message.contains("causal context")),
            "counter {counter}: {reply:?}"
        );
    }
    // Every node goes on writing the key: nothing was stored from the forged contexts.
    for i in 0..3 {
        let ctx = context(&h.get(i, "k", Quorum::All));
        assert!(ctx.iter().all(|(_, n)| *n < 100), "{ctx:?}");
        assert!(written(&h.put(i, "k", "next", ctx, Quorum::All)));
    }
}

#[test]
fn a_coordinator_never_trusts_claims_about_its_own_events_beyond_what_it_issued() {
    let mut h = Harness::new(3, |_| {});
    let me = coordinator_actor(&mut h, "k");
    // Just under the refusal bound: accepted, but lowered to what the coordinator issued.
    let reply = h.put(
        0,
        "k",
        "v2",
        forged(&[(me.clone(), COUNTER_MAX)]),
        Quorum::All,
    );
    assert!(written(&reply), "{reply:?}");
    assert_eq!(
        context(&reply).get(&me),
        2,
        "the next dot, not COUNTER_MAX + 1"
    );
    // The poison does not spread: every replica's own writes go on counting from where they
    // were, and the key never reaches the end of its range.
    for i in 0..3 {
        let ctx = context(&h.get(i, "k", Quorum::All));
        assert!(ctx.iter().all(|(_, n)| *n < 10), "{ctx:?}");
        assert!(written(&h.put(i, "k", "again", ctx, Quorum::All)));
    }
    assert_eq!(h.nodes[0].stats().contexts_trimmed, 1);
}

#[test]
fn claims_about_other_members_cannot_exhaust_their_counters() {
    let mut h = Harness::new(3, |_| {});
    coordinator_actor(&mut h, "k");
    // Every node writes once, so the key's context names all three actors.
    for i in 1..3 {
        let ctx = context(&h.get(i, "k", Quorum::All));
        assert!(written(&h.put(i, "k", "v", ctx, Quorum::All)));
    }
    let ctx = context(&h.get(0, "k", Quorum::All));
    assert_eq!(ctx.len(), 3, "{ctx:?}");
    let pairs: Vec<(Actor, u64)> = ctx.iter().map(|(a, _)| (a.clone(), COUNTER_MAX)).collect();
    let reply = h.put(0, "k", "forged", forged(&pairs), Quorum::All);
    assert!(written(&reply), "{reply:?}");
    for i in 0..3 {
        let ctx = context(&h.get(i, "k", Quorum::All));
        assert!(
            ctx.iter().all(|(_, n)| *n < COUNTER_MAX / 2),
            "node {i} sees {ctx:?}"
        );
        let reply = h.put(i, "k", "honest", ctx, Quorum::All);
        assert!(
            written(&reply),
            "node {i} can no longer write the key: {reply:?}"
        );
    }
}

#[test]
fn invented_incarnations_of_members_do_not_grow_the_context() {
    let mut h = Harness::new(3, |_| {});
    coordinator_actor(&mut h, "k");
    for round in 0..5u32 {
        let mut pairs: Vec<(Actor, u64)> = context(&h.get(0, "k", Quorum::All))
            .iter()
            .map(|(a, n)| (a.clone(), *n))
            .collect();
        for i in 0..200u32 {
            pairs.push((Actor::new("n2", 1000 + round * 200 + i), 3));
        }
        assert!(written(&h.put(0, "k", "x", forged(&pairs), Quorum::All)));
    }
    let ctx = context(&h.get(2, "k", Quorum::All));
    assert!(
        ctx.len() <= driftkv_core::node::CONTEXT_ACTORS_MAX,
        "{} actors",
        ctx.len()
    );
    // Still writable by every node with what it reads.
    for i in 0..3 {
        let ctx = context(&h.get(i, "k", Quorum::All));
        assert!(written(&h.put(i, "k", "honest", ctx, Quorum::All)));
    }
}

#[test]
fn sets_stop_at_object_bytes_max() {
    let mut h = Harness::new(3, |cfg| cfg.object_bytes_max = 10_000);
    let add = |h: &mut Harness, from: u32| {
        let add: Vec<Bytes> = (from..from + 50)
            .map(|i| Bytes::from(format!("{i:0>100}")))
            .collect();
        h.request(
            0,
            Request::SetUpdate {
                key: Key::default_bucket("s"),
                add,
                remove: Vec::new(),
                w: Quorum::All,
            },
        )
    };
    assert!(written(&add(&mut h, 0)));
    let reply = add(&mut h, 50);
    assert!(
        matches!(&reply, Reply::Error { message, .. } if message.contains("object_bytes_max")),
        "{reply:?}"
    );
}

#[test]
fn forged_actors_do_not_grow_the_key_context() {
    let mut h = Harness::new(3, |_| {});
    let me = coordinator_actor(&mut h, "k");
    for round in 0..3 {
        let mut pairs: Vec<(Actor, u64)> = (0..360)
            .map(|i| (Actor::new(format!("fake-{round}-{i}"), 7), 1_000))
            .collect();
        pairs.push((me.clone(), 1));
        let reply = h.put(0, "k", "x", forged(&pairs), Quorum::All);
        assert!(written(&reply), "{reply:?}");
    }
    // The context stops at its bound however many rounds come, and stays usable.
    let ctx = context(&h.get(1, "k", Quorum::All));
    assert!(
        ctx.len() <= driftkv_core::node::CONTEXT_ACTORS_MAX,
        "{} actors",
        ctx.len()
    );
    assert!(
        ctx.iter()
            .all(|(_, n)| *n <= driftkv_core::node::CONTEXT_AHEAD_MAX)
    );
    for i in 0..3 {
        let ctx = context(&h.get(i, "k", Quorum::All));
        assert!(written(&h.put(i, "k", "honest", ctx, Quorum::All)));
    }
}

#[test]
fn long_invented_names_cannot_push_a_context_past_the_token_limit() {
    let mut h = Harness::new(3, |_| {});
    coordinator_actor(&mut h, "k");
    for round in 0..8 {
        let mut pairs: Vec<(Actor, u64)> = context(&h.get(0, "k", Quorum::All))
            .iter()
            .map(|(a, n)| (a.clone(), *n))
            .collect();
        for i in 0..30 {
            pairs.push((Actor::new(format!("{round}-{i}-{}", "x".repeat(180)), 1), 1));
        }
        assert!(written(&h.put(0, "k", "x", forged(&pairs), Quorum::All)));
    }
    let ctx = context(&h.get(1, "k", Quorum::All));
    assert!(ctx.iter().all(|(a, _)| a.node.len() <= 64), "{ctx:?}");
    let token = driftkv_causal::ContextToken::encode(&ctx, b"default", b"k");
    assert!(token.len() < driftkv_causal::token::TOKEN_CHARS_MAX);
}

#[test]
fn blind_writes_stop_at_siblings_max_with_an_error_naming_it() {
    let mut h = Harness::new(3, |cfg| cfg.siblings_max = 5);
    for i in 0..5 {
        let reply = h.put(
            i % 3,
            "k",
            &format!("v{i}"),
            VersionVector::new(),
            Quorum::All,
        );
        assert!(written(&reply), "{reply:?}");
    }
    let reply = h.put(0, "k", "one too many", VersionVector::new(), Quorum::All);
    assert!(
        matches!(&reply, Reply::Error { kind: ErrorKind::BadRequest, message, .. }
            if message.contains("siblings_max")),
        "{reply:?}"
    );
    // Writing with the context resolves them.
    let ctx = context(&h.get(0, "k", Quorum::All));
    assert!(written(&h.put(0, "k", "resolved", ctx, Quorum::All)));
    assert_eq!(h.copies("k"), vec![vec!["resolved".to_string()]; 3]);
}

#[test]
fn writes_past_object_bytes_max_are_refused() {
    let mut h = Harness::new(3, |cfg| cfg.object_bytes_max = 1000);
    let big = "x".repeat(600);
    assert!(written(&h.put(
        0,
        "k",
        &big,
        VersionVector::new(),
        Quorum::All
    )));
    let reply = h.put(1, "k", &big, VersionVector::new(), Quorum::All);
    assert!(
        matches!(&reply, Reply::Error { message, .. } if message.contains("object_bytes_max")),
        "{reply:?}"
    );
    // One value of the same size, replacing the other, still fits.
    let ctx = context(&h.get(0, "k", Quorum::All));
    assert!(written(&h.put(1, "k", &big, ctx, Quorum::All)));
}

fn counter_add(h: &mut Harness, i: usize, delta: i64) -> Reply {
    h.request(
        i,
        Request::CounterAdd {
            key: Key::default_bucket("c"),
            delta,
            w: Quorum::All,
        },
    )
}

#[test]
fn a_counter_refuses_to_leave_the_64_bit_range_and_is_unchanged() {
    let mut h = Harness::new(3, |_| {});
    assert!(
        matches!(counter_add(&mut h, 0, i64::MAX), Reply::Counter { value } if value == i64::MAX as i128)
    );
    for i in 0..3 {
        let reply = counter_add(&mut h, i, 1);
        assert!(
            matches!(&reply, Reply::Error { kind: ErrorKind::BadRequest, message, .. } if message.contains("overflow")),
            "{reply:?}"
        );
    }
    let reply = h.request(
        2,
        Request::CounterGet {
            key: Key::default_bucket("c"),
            r: Quorum::All,
        },
    );
    assert!(
        matches!(reply, Reply::Counter { value } if value == i64::MAX as i128),
        "{reply:?}"
    );
    assert!(
        matches!(counter_add(&mut h, 1, -5), Reply::Counter { value } if value == i64::MAX as i128 - 5)
    );
}

/// Any level a client can name, sensible or not (`Count(0)`, `Count(200)` on N = 3).
fn arb_level() -> impl Strategy<Value = Quorum> {
    prop_oneof![
        Just(Quorum::Default),
        Just(Quorum::One),
        Just(Quorum::Quorum),
        Just(Quorum::All),
        any::<u8>().prop_map(Quorum::Count),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any context a client can make (real actors or invented ones, any counters) gives an
    /// answer, never a panic, and afterwards every node can still write the key with what it
    /// reads.
    #[test]
    fn arbitrary_client_contexts_never_break_a_key(
        claims in proptest::collection::vec((0usize..6, 0u32..3, any::<u64>(), any::<bool>()), 0..12),
        value in proptest::collection::vec(any::<u8>(), 0..16),
        w in arb_level(),
        r in arb_level(),
    ) {
        let mut h = Harness::new(3, |_| {});
        let me = coordinator_actor(&mut h, "k");
        let pairs: Vec<(Actor, u64)> = claims
            .iter()
            .map(|&(who, inc, n, small)| {
                let n = if small { n % 8 } else { n };
                let actor = if who == 0 { me.clone() } else { Actor::new(format!("n{who}"), inc) };
                (actor, n)
            })
            .collect();
        let request = Request::Put {
            key: Key::default_bucket("k"),
            value: Some(Bytes::from(value)),
            context: forged(&pairs),
            expires_ms: None,
            w,
        };
        let reply = h.request(0, request);
        prop_assert!(matches!(reply, Reply::Written { .. } | Reply::Error { .. }), "{:?}", reply);
        let reply = h.request(1, Request::Get { key: Key::default_bucket("k"), r });
        prop_assert!(matches!(reply, Reply::Values { .. } | Reply::NotFound { .. } | Reply::Error { .. }), "{:?}", reply);
        for i in 0..3 {
            let ctx = context(&h.get(i, "k", Quorum::All));
            prop_assert!(ctx.iter().all(|(_, n)| *n <= COUNTER_MAX));
            let reply = h.put(i, "k", "after", ctx, Quorum::All);
            prop_assert!(written(&reply), "node {} could not write after: {:?}", i, reply);
        }
    }
}

#[test]
fn a_counter_summed_past_the_range_by_concurrent_increments_can_be_brought_back() {
    let mut h = Harness::new(3, |_| {});
    // Concurrent: each node increments before hearing of the others (w = one, no delivery).
    for i in 0..3 {
        let client = 900 + i as u64;
        h.step(
            i,
            driftkv_core::Input::Request {
                client,
                request: Request::CounterAdd {
                    key: Key::default_bucket("c"),
                    delta: i64::MAX,
                    w: Quorum::One,
                },
            },
        );
    }
    h.deliver_all();
    let reply = h.request(
        0,
        Request::CounterGet {
            key: Key::default_bucket("c"),
            r: Quorum::All,
        },
    );
    assert!(
        matches!(reply, Reply::Counter { value } if value == 3 * i64::MAX as i128),
        "{reply:?}"
    );
    assert!(
        matches!(counter_add(&mut h, 0, 1), Reply::Error { .. }),
        "further away is refused"
    );
    let reply = counter_add(&mut h, 0, -i64::MAX);
    assert!(
        matches!(reply, Reply::Counter { value } if value == 2 * i64::MAX as i128),
        "{reply:?}"
    );
}
