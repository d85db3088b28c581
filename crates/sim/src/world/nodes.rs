//! The simulated nodes: each a production `Node` over its own `MemStore`, with a drifting
//! clock, a driver holding its outputs, and what the oracle tracks of it per life.

use std::collections::VecDeque;

use bytes::Bytes;
use driftkv_causal::ConflictMode;
use driftkv_core::fasthash::FastMap;
use driftkv_core::{BucketProps, Driver, MemStore, Node, NodeConfig, Store, WritePath};
use driftkv_ring::{NodeId, RingConfig};
use driftkv_wire::{Key, Object, ReqId};

use super::expected::Expected;
use super::time::{US_PER_MS, US_PER_MS_F64};
use super::{EPOCH_MS, Sim};
use crate::history::HistRef;
use crate::rng::Rng;
use crate::scenario::{MembershipMode, Scenario};

/// Drift is given in parts per million.
const PARTS_PER_MILLION: f64 = 1e6;

/// Where a node is in its membership: the ring the simulator judges primaries by holds the
/// `Member`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// Named by a `join` fault that has not happened yet: not booted, known to nobody.
    Waiting,
    Member,
    /// Told to leave: it runs (and restarts after a crash) until drained.
    Leaving,
    /// Left the cluster for good: never booted again.
    Gone,
}

pub(super) struct SimNode {
    pub(super) name: NodeId,
    pub(super) cfg: NodeConfig,
    /// `None` while crashed.
    pub(super) node: Option<Node>,
    pub(super) store: MemStore,
    /// Bumped on every crash: a message or sync scheduled for an earlier life is void.
    pub(super) epoch: u64,
    /// The next fresh incarnation, should the node come back without its data.
    pub(super) next_incarnation: u32,
    pub(super) offset_us: f64,
    pub(super) drift: f64,
    pub(super) region: Option<String>,
    /// Group commit: a sync is in flight; the driver holds its outputs and those waiting for
    /// the next.
    pub(super) syncing: bool,
    pub(super) driver: Driver,
    /// Reads this node coordinates, by the request id of their replica reads: when a reply
    /// comes (or the read expires) the read may repair this node's own copy of the key.
    pub(super) read_reqs: FastMap<ReqId, usize>,
    /// The same reads by when they expire (virtual time), oldest first.
    pub(super) read_expiry: VecDeque<(u64, ReqId)>,
    /// Overlapping crash faults on this node; it restarts when the last one ends.
    pub(super) crash_depth: u32,
    /// Client writes coordinated here since the last sync (`(record, coordination index)`),
    /// kept when a crash before the sync would lose them (`Disk::crash_loses_unsynced`).
    pub(super) unsynced: Vec<(HistRef, usize)>,
    pub(super) life: Life,
    /// A leaving node: when it was first seen drained (reset if it holds something again).
    pub(super) drained_since_us: Option<u64>,
}

impl SimNode {
    /// The incarnation the node writes under now: the core takes a new one after handing over
    /// copies of its own writes, so the configuration it started with may be behind.
    pub(super) fn live_incarnation(&self) -> u32 {
        self.node
            .as_ref()
            .map_or(self.cfg.incarnation, |n| n.config().incarnation)
    }

    /// Forgets the reads it coordinated (its life ended).
    pub(super) fn forget_reads(&mut self) {
        self.read_reqs.clear();
        self.read_expiry.clear();
    }
}

/// Every node of the scenario, in name order, not booted yet. Each node's clock skew is drawn
/// here from the seed's "clocks" stream, node by node.
pub(super) fn build(
    sc: &Scenario,
    names: &[String],
    initial: &[&String],
    ring_cfg: &RingConfig,
    expect: &Expected,
) -> Vec<SimNode> {
    let mut rng_clock = Rng::stream(sc.seed, "clocks");
    let mut nodes = Vec::with_capacity(names.len());
    for name in names {
        let cfg = node_config(sc, name, initial, ring_cfg);
        let clock = sc.clocks.get(name).cloned().unwrap_or_default();
        let skew = &sc.clock_skew;
        let offset_ms = clock.offset_ms + (rng_clock.unit() * 2.0 - 1.0) * skew.offset_ms_max;
        let drift_ppm = clock.drift_ppm + (rng_clock.unit() * 2.0 - 1.0) * skew.drift_ppm_max;
        nodes.push(SimNode {
            name: NodeId::from(name.as_str()),
            cfg,
            node: None,
            store: MemStore::with_capacity(sc.durability_policy(), expect.keys_per_node),
            epoch: 0,
            next_incarnation: 0,
            offset_us: offset_ms * US_PER_MS_F64,
            drift: drift_ppm / PARTS_PER_MILLION,
            region: sc.regions.get(name).cloned(),
            syncing: false,
            driver: Driver::new(),
            read_reqs: Default::default(),
            read_expiry: VecDeque::new(),
            crash_depth: 0,
            unsynced: Vec::new(),
            life: if sc.initial_member(name) {
                Life::Member
            } else {
                Life::Waiting
            },
            drained_since_us: None,
        });
    }
    nodes
}

/// The configuration node `name` runs with, as its command line would give it.
fn node_config(
    sc: &Scenario,
    name: &str,
    initial: &[&String],
    ring_cfg: &RingConfig,
) -> NodeConfig {
    let mut cfg = NodeConfig::new(name);
    cfg.listen = format!("sim:{name}");
    cfg.http = format!("sim-http:{name}");
    if sc.membership == MembershipMode::Gossip {
        // A joiner's seeds are the initial members, as its `--join` list would be.
        cfg.seeds = initial
            .iter()
            .filter(|n| n.as_str() != name)
            .map(|n| format!("sim:{n}"))
            .collect();
    }
    cfg.ring = ring_cfg.clone();
    cfg.r = sc.quorum_r();
    cfg.w = sc.quorum_w();
    cfg.request_timeout_ms = sc.request_timeout_ms;
    cfg.read_repair = sc.read_repair;
    cfg.hinted_handoff = sc.hinted_handoff;
    cfg.aae.enabled = sc.anti_entropy;
    cfg.aae.interval_ms = sc.anti_entropy_interval_ms;
    for (bucket, mode, write_path) in [
        ("siblings", ConflictMode::Siblings, WritePath::Replica),
        ("lww", ConflictMode::Lww, sc.write_path),
    ] {
        cfg.buckets.insert(
            Bytes::from_static(bucket.as_bytes()),
            BucketProps {
                mode,
                write_path,
                ..Default::default()
            },
        );
    }
    cfg.buckets.insert(
        Bytes::from_static(b"probes"),
        BucketProps {
            mode: sc.probe_mode(),
            write_path: sc.write_path,
            ..Default::default()
        },
    );
    cfg
}

impl Sim<'_> {
    /// Boots node `i` from its store, as the server does.
    pub(super) fn boot(&mut self, i: usize) {
        let members = (self.sc.membership == MembershipMode::Static).then(|| self.static_members());
        let sn = &mut self.nodes[i];
        // As the server does: the incarnation is kept in the store, and chosen fresh when the
        // store has none (new, or lost to a crash under durability "none").
        let key = driftkv_core::keys::meta_key("incarnation");
        let kept = sn
            .store
            .get(&key)
            .ok()
            .flatten()
            .and_then(|raw| <[u8; 4]>::try_from(raw.as_slice()).ok())
            .map(u32::from_be_bytes);
        // The shell's own writes at boot (the incarnation, a repeated leave) meet a working disk:
        // a node whose disk fails at boot would not come up, and the scenario is about a
        // running node's failing syncs and writes.
        let faults = sn.store.take_faults();
        let incarnation = match kept {
            Some(i) => i,
            None => {
                let fresh = sn.next_incarnation;
                sn.store
                    .put(&key, &fresh.to_be_bytes())
                    .expect("MemStore never fails");
                fresh
            }
        };
        sn.next_incarnation = sn.next_incarnation.max(incarnation + 1);
        sn.cfg.incarnation = incarnation;
        let mut node =
            Node::open(sn.cfg.clone(), &mut sn.store).expect("a MemStore the node wrote opens");
        if let Some(members) = members {
            node.set_members(members);
        }
        if sn.life == Life::Leaving && !node.is_leaving() {
            // Told to leave while it was down: it is told again as it comes back.
            node.leave(&mut sn.store).expect("MemStore never fails");
        }
        sn.store.sync().expect("MemStore never fails");
        sn.store.set_faults(faults);
        sn.node = Some(node);
    }

    pub(super) fn is_up(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    /// Node `i`'s clock now, in its milliseconds.
    pub(super) fn local_ms(&self, i: usize) -> u64 {
        let sn = &self.nodes[i];
        let v = self.time.now_us as f64;
        let local_us = EPOCH_MS as f64 * US_PER_MS_F64 + v + sn.offset_us + v * sn.drift;
        (local_us.max(0.0) / US_PER_MS_F64) as u64
    }

    pub(super) fn node_index(&self, id: &NodeId) -> Option<usize> {
        self.sc.node_index(id.as_str())
    }

    /// Node `i`'s copy of the key (`None`: it is down, or holds none).
    pub(super) fn copy(&mut self, i: usize, key: &Key) -> Option<Object> {
        let sn = &mut self.nodes[i];
        let node = sn.node.as_mut()?;
        node.local_object(&sn.store, key).ok().flatten()
    }
}

/// The request timeout a node with `drift` keeps in its own (drifting) time, in ours.
pub(super) fn timeout_us(timeout_ms: u64, drift: f64) -> u64 {
    let timeout_us = (timeout_ms * US_PER_MS) as f64 / (1.0 + drift);
    timeout_us.ceil() as u64
}
