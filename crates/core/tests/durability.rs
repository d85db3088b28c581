//! Honest durability: a node confirms nothing its last sync did not make durable. A failing
//! disk is injected into the in-process cluster's stores; each test then crashes the node whose
//! sync failed and checks that nothing it confirmed is gone.

use driftkv_causal::VersionVector;
use driftkv_core::local::{LocalCluster, name};
use driftkv_core::store::PPM;
use driftkv_core::{
    Durability, Entries, Input, MemStore, Node, NodeConfig, Output, Store, StoreError, StoreFaults,
    keys,
};
use driftkv_wire::{ErrorKind, Key, MemberInfo, MemberState, Message, Quorum, Reply, Request};

const KEYS: usize = 48;

fn key(i: usize) -> String {
    format!("k{i}")
}

fn member(i: usize) -> MemberInfo {
    MemberInfo {
        id: name(i),
        listen: "".into(),
        http: "".into(),
        state: MemberState::Up,
    }
}

/// Node `i` loses what it did not sync and starts again from its store.
fn crash(c: &mut LocalCluster, i: usize) {
    c.stores[i].crash();
    c.drivers[i].clear();
    let cfg = c.nodes[i].config().clone();
    c.nodes[i] = Node::open(cfg, &mut c.stores[i]).expect("the node reopens");
}

/// Whether node `i` holds a copy of `k` (its object cache mirrors its store).
fn holds(c: &mut LocalCluster, i: usize, k: &str) -> bool {
    let key = Key::default_bucket(k.to_string());
    c.nodes[i]
        .local_object(&c.stores[i], &key)
        .expect("the store reads")
        .is_some()
}

/// With N = 1, n1 holds every key alone until n2 joins and takes half the partitions: n1 hands
/// them over and deletes its copies once n2 confirms the transfer. If n2's sync fails, its
/// confirmation must not go out, or a crash of n2 loses keys no one else holds.
#[test]
fn a_transfer_is_not_confirmed_after_a_failed_sync() {
    let mut c = LocalCluster::new(2, |cfg| cfg.ring.n = 1);
    for n in &mut c.nodes {
        n.set_members([member(0)]);
    }
    for i in 0..KEYS {
        let reply = c.put(0, &key(i), "v", VersionVector::new(), Quorum::One);
        assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    }
    c.stores[1].fail_next_syncs(u32::MAX);
    for n in &mut c.nodes {
        n.set_members([member(0), member(1)]);
    }
    for _ in 0..40 {
        c.tick(600);
    }
    let refused = c.drivers[1].counts().confirmations_refused;
    crash(&mut c, 1);
    for i in 0..KEYS {
        let k = key(i);
        assert!(
            holds(&mut c, 0, &k) || holds(&mut c, 1, &k),
            "{k} was lost: n1 deleted it on a confirmation n2's disk never backed"
        );
    }
    assert!(
        refused > 0,
        "n2 was sent partitions and refused to confirm them"
    );

    // Once n2's disk works again the hand-over completes: n2 holds every key it owns and n1
    // keeps only its own.
    c.stores[1].fail_next_syncs(0);
    for _ in 0..40 {
        c.tick(600);
    }
    assert_eq!(c.nodes[0].partitions_to_transfer(), 0);
    crash(&mut c, 1);
    for i in 0..KEYS {
        let k = key(i);
        let (on_1, on_2) = (holds(&mut c, 0, &k), holds(&mut c, 1, &k));
        assert!(
            on_1 != on_2,
            "{k} is held by exactly one node (n1 {on_1}, n2 {on_2})"
        );
    }
}

/// A coordinator whose own sync fails answers its client with an error, not "written".
#[test]
fn a_write_is_not_confirmed_after_the_coordinators_sync_fails() {
    let mut c = LocalCluster::new(1, |cfg| cfg.ring.n = 1);
    c.stores[0].fail_next_syncs(1);
    let reply = c.put(0, "k", "v", VersionVector::new(), Quorum::One);
    match &reply {
        Reply::Error { kind, message, .. } => {
            assert_eq!(*kind, ErrorKind::Internal);
            assert!(message.contains("durable"), "{message}");
        }
        other => panic!("a write whose sync failed was confirmed: {other:?}"),
    }
    assert_eq!(c.drivers[0].counts().syncs_failed, 1);
    crash(&mut c, 0);
    // And a write after a good sync is confirmed and survives.
    let reply = c.put(0, "k", "w", VersionVector::new(), Quorum::One);
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
    crash(&mut c, 0);
    assert!(holds(&mut c, 0, "k"));
}

/// A replica whose sync fails does not acknowledge the write: with W = all the coordinator
/// cannot gather its quorum and says so.
#[test]
fn a_replica_does_not_acknowledge_a_write_it_could_not_sync() {
    let mut c = LocalCluster::new(2, |cfg| cfg.ring.n = 2);
    c.stores[1].fail_next_syncs(u32::MAX);
    let reply = c.put(0, "k", "v", VersionVector::new(), Quorum::All);
    assert!(
        !matches!(reply, Reply::Written { .. }),
        "W = all was confirmed though one replica's sync failed: {reply:?}"
    );
    assert!(c.drivers[1].counts().confirmations_refused > 0);
    // With the replica's disk back, the same write goes through.
    c.stores[1].fail_next_syncs(0);
    let reply = c.put(0, "k", "v", VersionVector::new(), Quorum::All);
    assert!(matches!(reply, Reply::Written { .. }), "{reply:?}");
}

/// A record write that fails must not leave the partition's hash tree claiming the new record:
/// anti-entropy would then take the stale replica for in sync and never repair it.
#[test]
fn a_failed_record_write_leaves_no_tree_claiming_it() {
    let mut c = LocalCluster::new(1, |cfg| cfg.ring.n = 1);
    for i in 0..KEYS {
        c.put(0, &key(i), "v", VersionVector::new(), Quorum::One);
    }
    // The trees are built in the background, a batch per tick.
    for _ in 0..200 {
        c.tick(100);
        if c.nodes[0].aae_trees_check(&c.stores[0]).0 > 0 {
            break;
        }
    }
    let (built, consistent) = c.nodes[0].aae_trees_check(&c.stores[0]);
    assert!(built > 0 && consistent, "trees built first ({built})");
    c.stores[0].set_faults(StoreFaults {
        write_fail_ppm: PPM,
        ..StoreFaults::default()
    });
    for i in 0..KEYS {
        let reply = c.put(0, &key(i), "w", VersionVector::new(), Quorum::One);
        assert!(matches!(reply, Reply::Error { .. }), "{reply:?}");
    }
    c.stores[0].set_faults(StoreFaults::default());
    let (_, consistent) = c.nodes[0].aae_trees_check(&c.stores[0]);
    assert!(consistent, "a tree claims a record its store does not hold");
}

/// A store whose writes of the node's incarnation record fail: everything else works.
struct NoNewIdentity(MemStore);

impl Store for NoNewIdentity {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if key == keys::meta_key("incarnation") {
            return Err(StoreError::Io(
                "the incarnation record cannot be written".into(),
            ));
        }
        self.0.put(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.0.delete(key)
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.0.scan(prefix, after, limit)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.0.sync()
    }
}

/// A node handing over records that hold its own writes takes a new identity first; if that
/// cannot be stored, it keeps the records (and its old identity) rather than delete them and
/// later issue the same dots again.
#[test]
fn records_of_own_writes_stay_until_a_new_identity_is_stored() {
    let mut store = NoNewIdentity(MemStore::new(Durability::GroupCommit));
    let mut cfg = NodeConfig::new(name(0));
    cfg.ring.n = 1;
    let mut node = Node::open(cfg, &mut store).unwrap();
    node.set_members([member(0)]);
    let mut out = Vec::new();
    for i in 0..KEYS {
        let request = Request::Put {
            key: Key::default_bucket(key(i)),
            value: Some("v".into()),
            context: VersionVector::new(),
            expires_ms: None,
            w: Quorum::One,
        };
        let client = i as u64;
        node.handle(
            &mut store,
            1_000,
            Input::Request { client, request },
            &mut out,
        );
    }
    node.set_members([member(0), member(1)]);
    out.clear();
    node.handle(&mut store, 5_000, Input::Tick, &mut out);
    let (xid, sent) = out
        .iter()
        .find_map(|o| match o {
            Output::Send {
                message: Message::Transfer { xid, objects, .. },
                ..
            } => Some((*xid, objects.len())),
            _ => None,
        })
        .expect("n1 hands a partition to n2");
    assert!(sent > 0);
    let receipt = Message::TransferAck { xid, ok: true };
    let from = name(1);
    node.handle(
        &mut store,
        5_001,
        Input::Message {
            from,
            message: receipt,
        },
        &mut out,
    );
    assert_eq!(node.stats().actor_renewals, 0);
    assert_eq!(
        node.stats().keys_transferred,
        0,
        "nothing deleted without a new identity"
    );
    for i in 0..KEYS {
        let key = Key::default_bucket(key(i));
        assert!(
            node.local_object(&store, &key).unwrap().is_some(),
            "n1 still holds {key:?}"
        );
    }
}
