//! What the node core costs per operation, in process: client puts and gets through the same
//! `Driver` loop the node thread runs, over `MemStore` (the core alone) and over `FjallStore`
//! without fsync (the core and the storage engine), one operation per batch or many; and a
//! three-node cluster (N = 3, quorum reads and writes) wired in memory. No sockets, no RESP: a
//! regression of the put or get path shows here as a number before it shows in `driftkv bench`.
//!
//! Run: `cargo bench -p driftkv-server --bench core_path` (add `-- put` or `-- 3 nodes` to run
//! only the cases whose name holds the filter).

use std::time::{Duration, Instant};

use bytes::Bytes;
use driftkv_causal::VersionVector;
use driftkv_core::local::LocalCluster;
use driftkv_core::{Driver, Input, MemStore, Node, NodeConfig, Output, Store};
use driftkv_storage::{Durability, FjallStore};
use driftkv_wire::{Key, Quorum, Reply, Request};

/// Distinct keys the operations cycle over.
const KEYS: u64 = 10_000;
/// Bytes per value.
const VALUE_BYTES: usize = 100;
/// Operations per measured run of a one-node case, and of the three-node case.
const OPS_ONE_NODE: u64 = 200_000;
const OPS_THREE_NODES: u64 = 50_000;
/// Runs per case; the best is reported (the machine is shared and noisy).
const RUNS: usize = 3;
/// Virtual milliseconds between batches (the node's clock; no timer fires in a case).
const BATCH_GAP_MS: u64 = 1;

fn key_name(i: u64) -> String {
    format!("key:{:06}", i % KEYS)
}

fn key(i: u64) -> Key {
    Key::default_bucket(key_name(i))
}

fn put(i: u64, value: &Bytes) -> Request {
    Request::Put {
        key: key(i),
        value: Some(value.clone()),
        context: VersionVector::new(),
        expires_ms: None,
        w: Quorum::One,
    }
}

fn get(i: u64) -> Request {
    Request::Get {
        key: key(i),
        r: Quorum::One,
    }
}

/// One node owning every key (N = 1) over `store`, driven as the node thread drives it:
/// `batch` requests per sync. Returns the wall time of `ops` operations made by `make`.
fn one_node<S: Store>(
    store: &mut S,
    batch: u64,
    ops: u64,
    make: &dyn Fn(u64) -> Request,
) -> Duration {
    let mut cfg = NodeConfig::new("n1");
    cfg.ring.n = 1;
    let mut node = Node::open(cfg, store).expect("the node opens");
    let mut driver = Driver::with_loopback(node.id().clone());
    let mut released: Vec<Output> = Vec::new();
    let mut now_ms = 1_000;
    let started = Instant::now();
    let mut i = 0;
    while i < ops {
        let end = (i + batch).min(ops);
        for op in i..end {
            let input = Input::Request {
                client: op,
                request: make(op),
            };
            driver.step(&mut node, store, now_ms, input);
        }
        driver
            .commit(store, &mut released)
            .expect("the store syncs");
        assert_eq!(
            released.len() as u64,
            end - i,
            "one answer per request, and nothing else, from a lone node"
        );
        for output in released.drain(..) {
            match output.into_plain() {
                Output::Reply { reply, .. } => assert!(
                    !matches!(reply, Reply::Error { .. }),
                    "the node refused: {reply:?}"
                ),
                other => panic!("a lone node sent {other:?}"),
            }
        }
        i = end;
        now_ms += BATCH_GAP_MS;
    }
    started.elapsed()
}

fn report(name: &str, ops: u64, best: Duration) {
    let per_op_ns = best.as_nanos() as f64 / ops as f64;
    let rate = ops as f64 / best.as_secs_f64();
    println!("{name:<46} {rate:>12.0} op/s {per_op_ns:>9.0} ns/op");
}

fn best_of(mut run: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| run()).min().expect("at least one run")
}

/// The one-node cases: the store is filled by the put run, and the get run reads it back.
fn one_node_cases(filter: &str, value: &Bytes) {
    let puts = |i| put(i, value);
    for batch in [1, 64] {
        for (store_name, fjall) in [("MemStore", false), ("fjall, no fsync", true)] {
            let put_name = format!("put, 1 node, {store_name}, batch {batch}");
            let get_name = format!("get, 1 node, {store_name}, batch {batch}");
            if !put_name.contains(filter) && !get_name.contains(filter) {
                continue;
            }
            let (mut put_best, mut get_best) = (Duration::MAX, Duration::MAX);
            for _ in 0..RUNS {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let (p, g) = if fjall {
                    let mut store =
                        FjallStore::open(dir.path(), Durability::None).expect("fjall opens");
                    let p = one_node(&mut store, batch, OPS_ONE_NODE, &puts);
                    (p, one_node(&mut store, batch, OPS_ONE_NODE, &get))
                } else {
                    let mut store = MemStore::new(Durability::GroupCommit);
                    let p = one_node(&mut store, batch, OPS_ONE_NODE, &puts);
                    (p, one_node(&mut store, batch, OPS_ONE_NODE, &get))
                };
                put_best = put_best.min(p);
                get_best = get_best.min(g);
            }
            if put_name.contains(filter) {
                report(&put_name, OPS_ONE_NODE, put_best);
            }
            if get_name.contains(filter) {
                report(&get_name, OPS_ONE_NODE, get_best);
            }
        }
    }
}

/// Three nodes, N = 3, quorum writes and reads through node 1, over the in-memory network:
/// every operation is a full coordination (replica messages and acknowledgements included).
fn three_node_case(filter: &str, value: &Bytes) {
    for (name, write) in [
        ("put, 3 nodes N=3 quorum", true),
        ("get, 3 nodes N=3 quorum", false),
    ] {
        if !name.contains(filter) {
            continue;
        }
        let best = best_of(|| {
            let mut cluster = LocalCluster::new(3, |_| {});
            if !write {
                for i in 0..KEYS {
                    cluster.put(0, &key_name(i), "v", VersionVector::new(), Quorum::One);
                }
            }
            let started = Instant::now();
            for i in 0..OPS_THREE_NODES {
                let request = if write {
                    Request::Put {
                        key: key(i),
                        value: Some(value.clone()),
                        context: VersionVector::new(),
                        expires_ms: None,
                        w: Quorum::Quorum,
                    }
                } else {
                    Request::Get {
                        key: key(i),
                        r: Quorum::Quorum,
                    }
                };
                let reply = cluster.request(0, request);
                assert!(!matches!(reply, Reply::Error { .. }), "{reply:?}");
            }
            started.elapsed()
        });
        report(name, OPS_THREE_NODES, best);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is a filter on the case names.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    one_node_cases(&filter, &value);
    three_node_case(&filter, &value);
}
