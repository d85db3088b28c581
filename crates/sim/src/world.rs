//! The event loop: N production nodes (`driftkv_core::Node` over `MemStore`), a network of
//! delayed, lost, duplicated and cut messages, clients, faults and virtual time.
//!
//! One run is a pure function of its scenario and seed. Events wait in a queue ordered by
//! (virtual time in microseconds, sequence number), so ties break by scheduling order; every
//! random draw comes from seeded streams; every map is ordered. Nothing reads the host clock.
//!
//! Each node runs the caller's loop the core asks for: `Node::handle`, then `Store::sync`, then
//! the outputs leave. With a disk-sync delay the sync takes virtual time: outputs wait for it
//! (group commit), and a crash before it completes loses those writes and their messages.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use driftkv_causal::{Actor, ConflictMode, Dot, VersionVector};
use driftkv_core::store::PPM;
use driftkv_core::{
    BucketProps, ClientId, Driver, Input, MemStore, Node, NodeConfig, Output, Stats, Store,
    StoreFaults,
};
use driftkv_ring::{NodeId, Ring, RingConfig};
use driftkv_wire::{Key, MemberInfo, MemberState, Message, Object, Quorum, Reply, ReqId, Request};

use crate::dist::Delay;
use crate::history::{
    Coordination, Coordinations, HistRef, History, KeyKind, Outcome, SetOpRec, WriteRec,
};
use crate::queue::RadixQueue;
use crate::rng::Rng;
use crate::scenario::{CoordinatorChoice, MembershipMode, Scenario};
use crate::workload::{KeyChooser, KindChooser, OpKind};

/// Node clocks read this many milliseconds at virtual time zero (plus their skew): a
/// realistic epoch, so HLC timestamps look like the real thing.
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// Events one run may process at most: a protocol that never goes quiet ends the run with a
/// failed check instead of hanging it.
pub const EVENTS_MAX: u64 = 500_000_000;
/// Forwards are remembered for this many client timeouts (then no copy can be in flight).
pub const FORWARD_MEMORY_TIMEOUTS: u64 = 4;
/// How often (in events) the progress callback is called.
pub const PROGRESS_EVERY_EVENTS: u64 = 1 << 14;
/// A leaving node exits this long after it was first seen drained (and still is), as the
/// server gives its last acknowledgements and gossip a moment to go out.
pub const LEAVE_GRACE_MS: u64 = 500;

/// Where a node is in its membership: the ring the simulator judges primaries by holds the
/// `Member`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Named by a `join` fault that has not happened yet: not booted, known to nobody.
    Waiting,
    Member,
    /// Told to leave: it runs (and restarts after a crash) until drained.
    Leaving,
    /// Left the cluster for good: never booted again.
    Gone,
}

/// Where a run is, for a progress indicator.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Virtual milliseconds since traffic started (negative during warm-up).
    pub virtual_ms: f64,
    /// Virtual milliseconds at which traffic stops.
    pub traffic_ms: f64,
    /// The latest the run can end (traffic plus the settle bound).
    pub end_ms_max: f64,
    pub events: u64,
    pub messages: u64,
}

enum Event {
    Tick(usize),
    /// A node-to-node message arrives (boxed, as the other large payloads: the queue moves
    /// small events).
    Deliver(Box<Delivery>),
    /// A client's request reaches its node.
    AtNode(Box<(usize, ClientId, Request)>),
    /// A reply reaches its client.
    AtClient(Box<(ClientId, Reply)>),
    ClientTimeout(ClientId),
    /// A node's sync completes, unless the node restarted since (its epoch, as `u32`: the
    /// queue moves events of 16 bytes, and no run restarts a node four billion times).
    SyncDone {
        node: u32,
        epoch: u32,
    },
    Arrival,
    ProbeStart(usize),
    ProbeWrite(usize),
    ProbeRead(usize),
    FaultStart(usize),
    FaultEnd(usize),
    TrafficEnd,
    ReadSweep,
    Poll,
}

// The queue moves events by value, each beside its 16-byte key: kept at 16 bytes (large
// payloads are boxed).
const _: () = assert!(std::mem::size_of::<Event>() == 16);

struct Delivery {
    from: usize,
    to: usize,
    from_epoch: u64,
    to_epoch: u64,
    message: Message,
}

/// The delay class of a node-to-node message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Write,
    Ack,
    ReadRequest,
    ReadResponse,
    Gossip,
    AntiEntropy,
}

fn class_of(m: &Message) -> Class {
    match m {
        Message::Forward { .. }
        | Message::ReplicaWrite { .. }
        | Message::Repair { .. }
        | Message::Purge { .. } => Class::Write,
        Message::ForwardReply { .. }
        | Message::ReplicaWriteAck { .. }
        | Message::TransferAck { .. } => Class::Ack,
        Message::ReplicaRead { .. } => Class::ReadRequest,
        Message::ReplicaReadReply { .. } => Class::ReadResponse,
        Message::Gossip { .. } => Class::Gossip,
        Message::AaeRoot { .. }
        | Message::AaeRootDiffers { .. }
        | Message::AaeNotReady { .. }
        | Message::AaeMids { .. }
        | Message::AaeLeaves { .. }
        | Message::AaeKeys { .. }
        | Message::AaeSync { .. }
        | Message::AaeObjects { .. }
        | Message::Transfer { .. } => Class::AntiEntropy,
    }
}

/// Every message kind's name, indexed by [`message_kind`].
pub const MESSAGE_NAMES: [&str; 19] = [
    "forward",
    "forward_reply",
    "replica_write",
    "replica_write_ack",
    "replica_read",
    "replica_read_reply",
    "repair",
    "gossip",
    "aae_root",
    "aae_root_differs",
    "aae_mids",
    "aae_leaves",
    "aae_keys",
    "aae_sync",
    "aae_objects",
    "purge",
    "transfer",
    "transfer_ack",
    "aae_not_ready",
];

/// A message's kind as an index into [`MESSAGE_NAMES`].
pub fn message_kind(m: &Message) -> usize {
    match m {
        Message::Forward { .. } => 0,
        Message::ForwardReply { .. } => 1,
        Message::ReplicaWrite { .. } => 2,
        Message::ReplicaWriteAck { .. } => 3,
        Message::ReplicaRead { .. } => 4,
        Message::ReplicaReadReply { .. } => 5,
        Message::Repair { .. } => 6,
        Message::Gossip { .. } => 7,
        Message::AaeRoot { .. } => 8,
        Message::AaeRootDiffers { .. } => 9,
        Message::AaeMids { .. } => 10,
        Message::AaeLeaves { .. } => 11,
        Message::AaeKeys { .. } => 12,
        Message::AaeSync { .. } => 13,
        Message::AaeObjects { .. } => 14,
        Message::Purge { .. } => 15,
        Message::Transfer { .. } => 16,
        Message::TransferAck { .. } => 17,
        Message::AaeNotReady { .. } => 18,
    }
}

pub fn message_name(m: &Message) -> &'static str {
    MESSAGE_NAMES[message_kind(m)]
}

/// What happened to the messages of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageCounts {
    pub sent: u64,
    pub delivered: u64,
    /// Lost to `network.loss` or a fault's loss.
    pub lost: u64,
    /// Dropped by a cut link (at send or while in flight).
    pub cut: u64,
    /// Arrived at a crashed node, or at one restarted since it was sent (its connection died).
    pub to_down_node: u64,
    /// Extra copies the network made.
    pub duplicated: u64,
}

/// What happened to the client operations of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpCounts {
    pub issued: u64,
    pub ok: u64,
    pub failed: u64,
    pub timed_out: u64,
}

/// Node counters summed over every node and every life of it (a restart resets a node's own).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeTotals {
    pub reads: u64,
    pub writes: u64,
    pub forwarded: u64,
    pub unavailable: u64,
    pub stale_replicas_found: u64,
    pub read_repairs_sent: u64,
    pub conflicts: u64,
    pub lww_discarded: u64,
    pub sibling_reads: u64,
    pub hints_stored: u64,
    pub hints_delivered: u64,
    pub hints_expired: u64,
    pub hints_refused: u64,
    pub aae_exchanges: u64,
    pub aae_keys_repaired: u64,
    pub aae_bytes_sent: u64,
    pub keys_transferred: u64,
    pub storage_errors: u64,
    pub bad_messages: u64,
    /// Syncs that failed (only under injected disk faults) and the confirmations they refused.
    #[serde(skip_serializing_if = "is_zero")]
    pub syncs_failed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub confirmations_refused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl NodeTotals {
    fn add(&mut self, s: &Stats) {
        self.reads += s.reads;
        self.writes += s.writes;
        self.forwarded += s.forwarded;
        self.unavailable += s.unavailable;
        self.stale_replicas_found += s.stale_replicas_found;
        self.read_repairs_sent += s.read_repairs_sent;
        self.conflicts += s.conflicts;
        self.lww_discarded += s.lww_discarded;
        self.sibling_reads += s.sibling_reads;
        self.hints_stored += s.hints_stored;
        self.hints_delivered += s.hints_delivered;
        self.hints_expired += s.hints_expired;
        self.hints_refused += s.hints_refused;
        self.aae_exchanges += s.aae_exchanges;
        self.aae_keys_repaired += s.aae_keys_repaired;
        self.aae_bytes_sent += s.aae_bytes_sent;
        self.keys_transferred += s.keys_transferred;
        self.storage_errors += s.storage_errors;
        self.bad_messages += s.bad_messages;
    }
}

struct SimNode {
    name: NodeId,
    cfg: NodeConfig,
    /// `None` while crashed.
    node: Option<Node>,
    store: MemStore,
    /// Bumped on every crash: a message or sync scheduled for an earlier life is void.
    epoch: u64,
    /// The next fresh incarnation, should the node come back without its data.
    next_incarnation: u32,
    offset_us: f64,
    drift: f64,
    region: Option<String>,
    /// Group commit: a sync is in flight; the driver holds its outputs and those waiting for
    /// the next.
    syncing: bool,
    driver: Driver,
    /// Reads this node coordinates, by the request id of their replica reads: when a reply
    /// comes (or the read expires) the read may repair this node's own copy of the key.
    read_reqs: driftkv_core::fasthash::FastMap<ReqId, usize>,
    /// The same reads by when they expire (virtual time), oldest first.
    read_expiry: std::collections::VecDeque<(u64, ReqId)>,
    /// Overlapping crash faults on this node; it restarts when the last one ends.
    crash_depth: u32,
    /// Client writes coordinated here since the last sync (`(record, coordination index)`),
    /// kept when a crash before the sync would lose them (`Sim::crash_loses_unsynced`).
    unsynced: Vec<(HistRef, usize)>,
    life: Life,
    /// A leaving node: when it was first seen drained (reset if it holds something again).
    drained_since_us: Option<u64>,
}

impl SimNode {
    /// The incarnation the node writes under now: the core takes a new one after handing over
    /// copies of its own writes, so the configuration it started with may be behind.
    fn live_incarnation(&self) -> u32 {
        self.node
            .as_ref()
            .map_or(self.cfg.incarnation, |n| n.config().incarnation)
    }
}

enum Stage {
    /// A workload read (`get`, `counter_get`, `set_get`).
    Read(OpKind),
    /// The read of a read-modify-write: its context goes into the write that follows.
    ReadForPut {
        value: Bytes,
    },
    /// A workload write.
    Write(OpKind),
    /// A t-visibility trial's first version, which the measured write then replaces.
    ProbeSetup(usize),
    ProbeWrite(usize),
    ProbeRead(usize),
    /// The settle phase's read at R = all.
    Sweep,
}

struct ClientOp {
    stage: Stage,
    key: usize,
    node: usize,
    sent_us: u64,
    hist: Option<HistRef>,
    /// For register reads: the dots acknowledged before the read was sent.
    frontier: Option<VersionVector>,
    /// The client session this register operation belongs to, and (for reads) what the
    /// session had seen of the key when the read was sent.
    session: Option<(usize, VersionVector)>,
}

/// One t-visibility trial: a first version of a fresh key, given time to reach every replica;
/// then the measured write of a second version over it; then one read, exactly `t` after the
/// second write was acknowledged. Stale means the read returned the first version (or nothing).
pub struct Trial {
    pub t_index: usize,
    pub key: usize,
    /// The measured (second) version's value.
    pub value: Bytes,
    /// The context the first version's write returned: the second write replaces it.
    pub context: Option<VersionVector>,
    /// `Some(true)`: the read returned the second version.
    pub fresh: Option<bool>,
}

/// A fault with its window, nodes resolved to indices.
#[derive(Clone, Debug)]
pub struct PlannedFault {
    pub at_us: u64,
    pub until_us: u64,
    pub kind: FaultKind,
    pub label: String,
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Directed links (from, to) cut.
    Cut(Vec<(usize, usize)>),
    Crash(usize),
    Loss(f64),
    /// The node boots and joins the cluster (for good: no end).
    Join(usize),
    /// The node is told to leave (for good: no end).
    Leave(usize),
    /// The node's disk fails now and then during the window.
    Disk(usize, StoreFaults),
}

impl FaultKind {
    /// A join or a leave: it has a start and no end.
    pub fn is_membership_change(&self) -> bool {
        matches!(self, FaultKind::Join(_) | FaultKind::Leave(_))
    }
}

/// What client sessions saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Register reads answered to a session.
    pub reads: u64,
    /// Reads that returned less than the session had seen of the key (read-your-writes or
    /// monotonic reads broken).
    pub went_back: u64,
    /// Session reads refused because no replica that answered had caught up.
    pub refused: u64,
}

/// One node at the end of a run: where it is in its membership and what its store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEnd {
    pub name: String,
    /// A member from the start (not named by a `join` fault).
    pub initial: bool,
    /// `"member"`, `"leaving"` (told to leave, not drained yet), `"left"` (drained and gone)
    /// or `"never joined"`.
    pub state: &'static str,
    /// Data records in its store (committed or not).
    pub records: usize,
}

/// Everything a finished run hands to the report.
pub struct Outcomes {
    pub hist: History,
    pub trials: Vec<Trial>,
    pub final_objects: Vec<Option<Object>>,
    pub divergent: Vec<String>,
    pub divergent_keys: usize,
    pub converged_after_ms: Option<f64>,
    pub settle_ms: f64,
    pub read_latency_ms: Vec<f64>,
    pub write_latency_ms: Vec<f64>,
    pub register_reads: u64,
    pub stale_reads: u64,
    pub sibling_reads: u64,
    pub siblings_max: usize,
    pub sessions: SessionCounts,
    pub ops: BTreeMap<&'static str, OpCounts>,
    pub messages: BTreeMap<&'static str, MessageCounts>,
    pub node_totals: NodeTotals,
    pub hints_pending_at_end: usize,
    pub events: u64,
    pub events_overflow: bool,
    pub log: Vec<(f64, String)>,
    pub faults: Vec<PlannedFault>,
    /// Every node at the end, in index order.
    pub nodes_at_end: Vec<NodeEnd>,
    /// Per key slot: the nodes whose store holds a record of the key at the end (the final
    /// primaries are `hist.keys[slot].primaries`).
    pub holders: Vec<Vec<usize>>,
}

pub struct Sim<'a> {
    sc: &'a Scenario,
    now_us: u64,
    t0_us: u64,
    traffic_end_us: u64,
    deadline_us: u64,
    seq: u64,
    /// Every pending event, by (virtual time, scheduling order).
    queue: RadixQueue<Event>,
    nodes: Vec<SimNode>,
    ring: Ring,
    r: Quorum,
    w: Quorum,
    immediate_sync: bool,
    /// A crash loses what a node applied since its last sync: group commit with a sync delay
    /// (under "every-write" each write is durable as it is applied, and the crash only keeps
    /// its outputs from leaving; under "none" nothing is synced, yet outputs do leave, so those
    /// writes may live on elsewhere).
    crash_loses_unsynced: bool,
    /// An empty outputs buffer kept for the next step.
    spare_out: Vec<Output>,
    /// An empty key-slot buffer kept for the next step (see `handle`).
    spare_slots: Vec<usize>,
    /// See `static_members`.
    static_members: Vec<MemberInfo>,
    /// The workload's keys by kind and index, once named (see `on_arrival`).
    workload_slots: driftkv_core::fasthash::FastMap<(KeyKind, u32), usize>,
    gossip_delay: Delay,
    anti_entropy_delay: Delay,
    cut: Vec<u32>,
    extra_loss: f64,
    faults_on: bool,
    last_on_link: Vec<u64>,
    faults: Vec<PlannedFault>,
    rng_net: Rng,
    rng_work: Rng,
    rng_client: Rng,
    rng_disk: Rng,
    kinds: KindChooser,
    key_chooser: KeyChooser,
    clients: driftkv_core::fasthash::FastMap<ClientId, ClientOp>,
    next_client: ClientId,
    /// Client writes in flight as forwards, by (forwarding node, its life, request id), with
    /// when they were forwarded; forgotten once no copy can still be in flight.
    forwards: driftkv_core::fasthash::FastMap<(usize, u64, ReqId), HistRef>,
    forwards_order: std::collections::VecDeque<(u64, (usize, u64, ReqId))>,
    hist: History,
    trials: Vec<Trial>,
    read_latency_ms: Vec<f64>,
    write_latency_ms: Vec<f64>,
    register_reads: u64,
    stale_reads: u64,
    sibling_reads: u64,
    siblings_max: usize,
    /// Per session: the context it last saw of each key slot.
    sessions: Vec<HashMap<usize, VersionVector>>,
    session_counts: SessionCounts,
    ops: BTreeMap<&'static str, OpCounts>,
    /// Per message kind (indexed by [`message_kind`]); `None` until one is sent.
    messages: [Option<MessageCounts>; MESSAGE_NAMES.len()],
    messages_delivered: u64,
    retired: NodeTotals,
    converged_since_us: Option<u64>,
    /// The last poll found every key's copies equal and ended the run.
    ended_converged: bool,
    sweep_pending: bool,
    /// Client work scheduled for later (a trial's next step): the run is not quiet before it.
    scheduled_client_work: u64,
    finished: bool,
    events: u64,
    events_overflow: bool,
    next_value: u64,
    log: Vec<(f64, String)>,
}

/// How much a run is expected to record, from its scenario: the oracle's tables and the
/// stores are sized for it at the start, since growing a large one copies (or rehashes) all of
/// it. An estimate only (a run may record more, and grows then); capped, so a scenario of
/// absurd rates does not reserve absurd memory.
struct Expected {
    keys: usize,
    keys_per_node: usize,
    writes: usize,
    trials: usize,
}

impl Expected {
    const CAP: usize = 1 << 22;

    fn of(sc: &Scenario) -> Expected {
        let trials = sc.visibility.trials as usize * sc.visibility.t_ms.len();
        let mix = &sc.workload.mix;
        let total = mix.get
            + mix.put
            + mix.counter_add
            + mix.counter_get
            + mix.set_add
            + mix.set_remove
            + mix.set_get;
        let put_share = if total > 0.0 { mix.put / total } else { 0.0 };
        let ops = sc.workload.rate_per_s.max(0.0) * sc.duration_ms as f64 / 1000.0;
        let cap = |x: f64| (x.max(0.0) as usize).min(Self::CAP);
        // A key per trial beside the workload's.
        let keys = cap(sc.workload.keys as f64 + trials as f64);
        let replicas = sc.n.min(sc.nodes.max(1)) as f64 / sc.nodes.max(1) as f64;
        Expected {
            keys,
            keys_per_node: cap(keys as f64 * replicas),
            // Each trial writes its key twice (a first version, then the measured one).
            writes: cap(ops * put_share + 2.0 * trials as f64),
            trials: trials.min(Self::CAP),
        }
    }
}

/// Milliseconds to whole microseconds, rounded half away from zero (negative and NaN: 0).
/// Exactly `(ms * 1000.0).round().max(0.0) as u64`, without the call out to libm's `round`
/// (every message's delay goes through here): below 2^52 the fraction `x - trunc(x)` is exact,
/// and above it every value is whole already.
fn us(ms: f64) -> u64 {
    let x = ms * 1000.0;
    let whole = x as u64; // saturating: negative and NaN give 0, beyond u64 its maximum
    if x - whole as f64 >= 0.5 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

fn bucket_of(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Register(ConflictMode::Siblings) => "siblings",
        KeyKind::Register(ConflictMode::Lww) => "lww",
        KeyKind::Counter => "counters",
        KeyKind::Set => "sets",
        KeyKind::Probe => "probes",
    }
}

impl<'a> Sim<'a> {
    pub fn new(sc: &'a Scenario) -> Sim<'a> {
        let names = sc.node_names();
        let seed = sc.seed;
        let ring_cfg = RingConfig {
            partitions: sc.partitions,
            n: sc.n,
            ..RingConfig::default()
        };
        // Nodes that join later are in nobody's ring, member list or seeds at the start.
        let initial: Vec<&String> = names.iter().filter(|n| sc.initial_member(n)).collect();
        let ring = Ring::new(
            ring_cfg.clone(),
            initial.iter().map(|n| NodeId::from(n.as_str())),
        )
        .expect("validated: the ring config is in range and there are members");
        let mut rng_clock = Rng::stream(seed, "clocks");
        let expect = Expected::of(sc);
        let mut nodes = Vec::with_capacity(names.len());
        for name in &names {
            let mut cfg = NodeConfig::new(name.as_str());
            cfg.listen = format!("sim:{name}");
            cfg.http = format!("sim-http:{name}");
            if sc.membership == MembershipMode::Gossip {
                // A joiner's seeds are the initial members, as its `--join` list would be.
                cfg.seeds = initial
                    .iter()
                    .filter(|n| **n != name)
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
            for (bucket, mode) in [
                ("siblings", ConflictMode::Siblings),
                ("lww", ConflictMode::Lww),
            ] {
                cfg.buckets.insert(
                    Bytes::from_static(bucket.as_bytes()),
                    BucketProps {
                        mode,
                        ..Default::default()
                    },
                );
            }
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
                offset_us: offset_ms * 1000.0,
                drift: drift_ppm / 1e6,
                region: sc.regions.get(name).cloned(),
                syncing: false,
                driver: Driver::new(),
                read_reqs: Default::default(),
                read_expiry: std::collections::VecDeque::new(),
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
        let t0_us = sc.warmup_ms * 1000;
        let traffic_end_us = t0_us + sc.duration_ms * 1000;
        let count = nodes.len();
        let mut sim = Sim {
            sc,
            now_us: 0,
            t0_us,
            traffic_end_us,
            deadline_us: traffic_end_us + sc.settle.max_ms * 1000,
            seq: 0,
            queue: RadixQueue::default(),
            nodes,
            ring,
            r: sc.quorum_r(),
            w: sc.quorum_w(),
            immediate_sync: sc.delays.disk_sync == Delay::constant(0.0),
            crash_loses_unsynced: sc.delays.disk_sync != Delay::constant(0.0)
                && sc.durability_policy() == driftkv_core::Durability::GroupCommit,
            spare_out: Vec::new(),
            spare_slots: Vec::new(),
            static_members: Vec::new(),
            workload_slots: Default::default(),
            gossip_delay: sc.delays.gossip.clone().unwrap_or(sc.delays.write.clone()),
            anti_entropy_delay: sc
                .delays
                .anti_entropy
                .clone()
                .unwrap_or(sc.delays.write.clone()),
            cut: vec![0; count * count],
            extra_loss: 0.0,
            faults_on: true,
            last_on_link: vec![0; count * count],
            faults: Vec::new(),
            rng_net: Rng::stream(seed, "network"),
            rng_work: Rng::stream(seed, "workload"),
            rng_client: Rng::stream(seed, "clients"),
            rng_disk: Rng::stream(seed, "disk"),
            kinds: KindChooser::new(&sc.workload.mix),
            key_chooser: KeyChooser::new(sc.workload.keys, &sc.workload.popularity),
            clients: Default::default(),
            next_client: 1,
            forwards: Default::default(),
            forwards_order: std::collections::VecDeque::new(),
            hist: History::with_capacity(expect.keys, expect.writes),
            trials: Vec::with_capacity(expect.trials),
            read_latency_ms: Vec::new(),
            write_latency_ms: Vec::new(),
            register_reads: 0,
            stale_reads: 0,
            sibling_reads: 0,
            siblings_max: 0,
            sessions: vec![HashMap::new(); sc.workload.sessions as usize],
            session_counts: SessionCounts::default(),
            ops: BTreeMap::new(),
            messages: Default::default(),
            messages_delivered: 0,
            retired: NodeTotals::default(),
            converged_since_us: None,
            ended_converged: false,
            sweep_pending: sc.settle.read_sweep,
            scheduled_client_work: 0,
            finished: false,
            events: 0,
            events_overflow: false,
            next_value: 0,
            log: Vec::new(),
        };
        sim.plan_faults();
        sim
    }

    fn schedule(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(at_us, self.seq, event);
    }

    /// Virtual milliseconds since traffic started, for logs and reports.
    fn rel_ms(&self, at_us: u64) -> f64 {
        (at_us as f64 - self.t0_us as f64) / 1000.0
    }

    fn note(&mut self, what: String) {
        let t = self.rel_ms(self.now_us);
        self.log.push((t, what));
    }

    /// Resolves the scenario's faults and draws the chaos ones from the seed.
    fn plan_faults(&mut self) {
        let sc = self.sc;
        let n = self.nodes.len();
        let idx = |name: &String| sc.node_index(name).expect("validated");
        let end_ms = sc.duration_ms;
        for f in &sc.faults {
            let until_ms = f.until_ms.unwrap_or(end_ms).min(end_ms);
            let (kind, label) = if let Some(groups) = &f.split {
                let mut group_of = vec![groups.len(); n];
                for (g, names) in groups.iter().enumerate() {
                    for name in names {
                        group_of[idx(name)] = g;
                    }
                }
                let mut links = Vec::new();
                for a in 0..n {
                    for b in 0..n {
                        if group_of[a] != group_of[b] {
                            links.push((a, b));
                        }
                    }
                }
                let text: Vec<String> = groups.iter().map(|g| g.join(",")).collect();
                (FaultKind::Cut(links), format!("split {}", text.join(" | ")))
            } else if let Some(cut) = &f.cut {
                let mut links = Vec::new();
                for [a, b] in cut {
                    links.push((idx(a), idx(b)));
                    if !f.one_way {
                        links.push((idx(b), idx(a)));
                    }
                }
                let text: Vec<String> = cut
                    .iter()
                    .map(|[a, b]| format!("{a}{}{b}", if f.one_way { "->" } else { "<->" }))
                    .collect();
                (FaultKind::Cut(links), format!("cut {}", text.join(" ")))
            } else if let Some(name) = &f.crash {
                (FaultKind::Crash(idx(name)), format!("crash {name}"))
            } else if let Some(name) = &f.join {
                (FaultKind::Join(idx(name)), format!("{name} joins"))
            } else if let Some(name) = &f.leave {
                (FaultKind::Leave(idx(name)), format!("{name} leaves"))
            } else if let Some(name) = &f.disk {
                let ppm = |p: Option<f64>| (p.unwrap_or(0.0) * f64::from(PPM)).round() as u32;
                let faults = StoreFaults {
                    sync_fail_ppm: ppm(f.sync_fail),
                    write_fail_ppm: ppm(f.write_fail),
                    seed: Rng::stream(sc.seed, &format!("disk {}", self.faults.len())).next_u64(),
                    ..StoreFaults::default()
                };
                (
                    FaultKind::Disk(idx(name), faults),
                    format!("{name}'s disk fails"),
                )
            } else {
                let p = f.loss.expect("validated: one kind");
                (FaultKind::Loss(p), format!("loss {p}"))
            };
            self.faults.push(PlannedFault {
                at_us: self.t0_us + f.at_ms * 1000,
                until_us: self.t0_us + until_ms * 1000,
                kind,
                label,
            });
        }
        let mut rng = Rng::stream(sc.seed, "chaos");
        let window = |rng: &mut Rng| {
            let at_ms = rng.unit() * end_ms as f64;
            let len_ms = sc.chaos.fault_ms.sample(rng).max(1.0);
            let until_ms = (at_ms + len_ms).min(end_ms as f64);
            (us(at_ms), us(until_ms))
        };
        for _ in 0..sc.chaos.crashes {
            let node = rng.index(n);
            let (at, until) = window(&mut rng);
            self.faults.push(PlannedFault {
                at_us: self.t0_us + at,
                until_us: self.t0_us + until.max(at + 1),
                kind: FaultKind::Crash(node),
                label: format!("crash n{} (chaos)", node + 1),
            });
        }
        for _ in 0..sc.chaos.splits {
            if n < 2 {
                break;
            }
            let size = 1 + rng.index(((n - 1) / 2).max(1));
            let mut members: Vec<usize> = (0..n).collect();
            for i in 0..size {
                let j = i + rng.index(n - i);
                members.swap(i, j);
            }
            let minority = &members[..size];
            let mut links = Vec::new();
            for a in 0..n {
                for b in 0..n {
                    if minority.contains(&a) != minority.contains(&b) {
                        links.push((a, b));
                    }
                }
            }
            let (at, until) = window(&mut rng);
            let names: Vec<String> = minority.iter().map(|i| format!("n{}", i + 1)).collect();
            self.faults.push(PlannedFault {
                at_us: self.t0_us + at,
                until_us: self.t0_us + until.max(at + 1),
                kind: FaultKind::Cut(links),
                label: format!("split off {} (chaos)", names.join(",")),
            });
        }
    }

    /// Every node as a member, up, in id order: the view each node of a static cluster is
    /// given at boot. Built once (a thousand nodes booting each made a thousand entries with
    /// two fresh address strings each); the view never changes.
    fn static_members(&mut self) -> Vec<MemberInfo> {
        if self.static_members.is_empty() {
            let mut members: Vec<MemberInfo> = self
                .nodes
                .iter()
                .map(|n| MemberInfo {
                    id: n.name.clone(),
                    listen: n.cfg.listen.as_str().into(),
                    http: n.cfg.http.as_str().into(),
                    state: MemberState::Up,
                })
                .collect();
            members.sort_by(|a, b| a.id.cmp(&b.id));
            self.static_members = members;
        }
        self.static_members.clone()
    }

    fn boot(&mut self, i: usize) {
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

    fn crash(&mut self, i: usize) {
        let sn = &mut self.nodes[i];
        if let Some(node) = sn.node.take() {
            self.retired.add(node.stats());
        }
        sn.store.crash();
        for (h, index) in std::mem::take(&mut sn.unsynced) {
            self.hist.void_coordination(h, index);
        }
        let sn = &mut self.nodes[i];
        sn.epoch += 1;
        sn.syncing = false;
        sn.driver.clear();
        sn.read_reqs.clear();
        sn.read_expiry.clear();
        let name = sn.name.to_string();
        self.note(format!("{name} crashed"));
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].node.is_some() || matches!(self.nodes[i].life, Life::Waiting | Life::Gone)
        {
            return;
        }
        self.boot(i);
        let incarnation = self.nodes[i].live_incarnation();
        let name = self.nodes[i].name.to_string();
        self.note(format!(
            "{name} restarted from its store (incarnation {incarnation})"
        ));
    }

    fn is_up(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    fn local_ms(&self, i: usize) -> u64 {
        let sn = &self.nodes[i];
        let v = self.now_us as f64;
        let local_us = EPOCH_MS as f64 * 1000.0 + v + sn.offset_us + v * sn.drift;
        (local_us.max(0.0) / 1000.0) as u64
    }

    fn node_index(&self, id: &NodeId) -> Option<usize> {
        self.sc.node_index(id.as_str())
    }

    // ---- the run ----

    pub fn run(mut self, progress: &mut dyn FnMut(&Progress)) -> Outcomes {
        for i in 0..self.nodes.len() {
            if self.nodes[i].life == Life::Member {
                self.boot(i);
            }
            let phase = self.rng_net.below(self.sc.tick_ms * 1000);
            self.schedule(phase, Event::Tick(i));
        }
        if self.sc.workload.rate_per_s > 0.0 {
            self.schedule(self.t0_us, Event::Arrival);
        }
        // Each trial's start schedules the next one's: the queue holds one pending start, not
        // thousands (every event's cost grows with the queue's depth).
        if let Some(at) = self.probe_start_at(0) {
            self.schedule(at, Event::ProbeStart(0));
        }
        for f in 0..self.faults.len() {
            let (at, until) = (self.faults[f].at_us, self.faults[f].until_us);
            self.schedule(at, Event::FaultStart(f));
            if !self.faults[f].kind.is_membership_change() {
                self.schedule(until, Event::FaultEnd(f));
            }
        }
        self.schedule(self.traffic_end_us, Event::TrafficEnd);
        while let Some((at_us, event)) = self.queue.pop() {
            if self.finished {
                break;
            }
            self.now_us = at_us;
            self.events += 1;
            if self.events > EVENTS_MAX {
                self.events_overflow = true;
                break;
            }
            if self.events.is_multiple_of(PROGRESS_EVERY_EVENTS) {
                progress(&Progress {
                    virtual_ms: self.rel_ms(self.now_us),
                    traffic_ms: self.sc.duration_ms as f64,
                    end_ms_max: (self.sc.duration_ms + self.sc.settle.max_ms) as f64,
                    events: self.events,
                    messages: self.messages_delivered,
                });
            }
            self.dispatch_event(event);
        }
        self.finish()
    }

    fn dispatch_event(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                if self.is_up(i) {
                    self.handle(i, Input::Tick, None);
                    if self.nodes[i].life == Life::Leaving {
                        self.maybe_exit(i);
                    }
                }
                let next = self.now_us + self.sc.tick_ms * 1000;
                self.schedule(next, Event::Tick(i));
            }
            Event::Deliver(delivery) => {
                let Delivery {
                    from,
                    to,
                    from_epoch,
                    to_epoch,
                    message,
                } = *delivery;
                let kind = message_kind(&message);
                if self.cut[from * self.nodes.len() + to] > 0 {
                    self.counts(kind).cut += 1;
                    return;
                }
                if !self.is_up(to) || self.nodes[to].epoch != to_epoch {
                    self.counts(kind).to_down_node += 1;
                    return;
                }
                self.counts(kind).delivered += 1;
                self.messages_delivered += 1;
                let from_id = self.nodes[from].name.clone();
                self.handle(
                    to,
                    Input::Message {
                        from: from_id,
                        message,
                    },
                    Some((from, from_epoch)),
                );
            }
            Event::AtNode(at_node) => {
                let (node, client, request) = *at_node;
                // A request to a crashed node is never answered: the client times out.
                if self.is_up(node) {
                    self.handle(node, Input::Request { client, request }, None);
                }
            }
            Event::AtClient(at_client) => {
                let (client, reply) = *at_client;
                self.on_reply(client, reply)
            }
            Event::ClientTimeout(client) => self.on_client_timeout(client),
            Event::SyncDone { node, epoch } => self.on_sync_done(node as usize, epoch),
            Event::Arrival => self.on_arrival(),
            Event::ProbeStart(trial) => self.on_probe_start(trial),
            Event::ProbeWrite(trial) => self.on_probe_write(trial),
            Event::ProbeRead(trial) => self.on_probe_read(trial),
            Event::FaultStart(f) => self.on_fault(f, true),
            Event::FaultEnd(f) => self.on_fault(f, false),
            Event::TrafficEnd => self.on_traffic_end(),
            Event::ReadSweep => self.on_read_sweep(),
            Event::Poll => self.on_poll(),
        }
    }

    // ---- nodes ----

    /// Feeds one input to node `i`, watches what it did for the oracle, and sends its outputs
    /// once its store is synced. `from` is the sending node and its life, for messages.
    fn handle(&mut self, i: usize, input: Input, from: Option<(usize, u64)>) {
        // What the input is about, before it is moved into the node.
        // The slots of the keys the input touches (resolved now: only new client operations
        // add slots, never a node's step).
        let mut keys_to_check = std::mem::take(&mut self.spare_slots);
        let index = &self.hist.key_index;
        let mut touch = |key: &Key| keys_to_check.extend(index.get(key).copied());
        let mut hist_ref: Option<HistRef> = None;
        let mut reply_to: Option<ReqId> = None;
        let mut expire_reads = false;
        match &input {
            Input::Request { client, request } => {
                touch(request.key());
                if request.is_write() {
                    hist_ref = self.clients.get(client).and_then(|op| op.hist);
                }
            }
            Input::Message { message, .. } => match message {
                Message::Forward { req, request } => {
                    touch(request.key());
                    if let (true, Some((f, fe))) = (request.is_write(), from) {
                        hist_ref = self.forwards.get(&(f, fe, *req)).copied();
                    }
                }
                Message::ReplicaWrite { key, .. } | Message::Repair { key, .. } => touch(key),
                Message::AaeSync { objects, .. }
                | Message::AaeObjects { objects, .. }
                | Message::Transfer { objects, .. } => {
                    objects.iter().for_each(|(key, _)| touch(key));
                }
                Message::ReplicaReadReply { req, .. } => reply_to = Some(*req),
                _ => {}
            },
            Input::Tick => expire_reads = true,
        }
        let now_ms = self.local_ms(i);
        // The node's driver is taken out for the step, so its new outputs can be looked at
        // while the rest of the world changes; it goes back in `emit`.
        let mut driver = std::mem::take(&mut self.nodes[i].driver);
        // Every touched key is looked at after the step, wrote it or not: a node can become a
        // primary that a version counts as missing while it already holds that version (a
        // fallback's copy, then a join or leave), and only a look records that it has it.
        let writes_started = {
            let sn = &mut self.nodes[i];
            let node = sn
                .node
                .as_mut()
                .expect("handle is only called on an up node");
            let before = node.stats().writes;
            let start = driver.held();
            driver.step(node, &mut sn.store, now_ms, input);
            (node.stats().writes > before, start)
        };
        let (writes_started, start) = writes_started;
        let out = driver.held_since(start);
        if let Some(h) = hist_ref {
            self.watch_write(i, h, writes_started, out);
        }
        self.note_reads(i, out);
        let sn = &mut self.nodes[i];
        if let Some(slot) = reply_to.and_then(|req| sn.read_reqs.get(&req)) {
            keys_to_check.push(*slot);
        }
        if expire_reads {
            // A read repairs at its deadline, on the first tick past it: check its key on every
            // tick that may be that one, and forget it once that is surely past.
            let (now, tick) = (self.now_us, self.sc.tick_ms * 1000);
            for (until, req) in &sn.read_expiry {
                if *until > now + tick {
                    break;
                }
                keys_to_check.extend(sn.read_reqs.get(req));
            }
            while let Some((until, req)) = sn.read_expiry.front() {
                if until + 2 * tick > now {
                    break;
                }
                sn.read_reqs.remove(req);
                sn.read_expiry.pop_front();
            }
        }
        keys_to_check.sort_unstable();
        keys_to_check.dedup();
        for &slot in &keys_to_check {
            if self.hist.node_lacks_open_version(slot, i) {
                // The node's copy, looked at in place (no copy of it is made).
                let (hist, now_us) = (&mut self.hist, self.now_us);
                let sn = &mut self.nodes[i];
                let node = sn
                    .node
                    .as_mut()
                    .expect("handle is only called on an up node");
                let key = hist.keys[slot].key.clone();
                node.with_local_object(&sn.store, &key, |copy| {
                    if let Some(ctx) = copy.and_then(Object::version_vector) {
                        hist.observe_copy(slot, i, ctx, now_us);
                    }
                });
            }
        }
        keys_to_check.clear();
        self.spare_slots = keys_to_check;
        self.nodes[i].driver = driver;
        self.emit(i);
    }

    /// Remembers the reads node `i` just started (by their replica-read request ids).
    fn note_reads(&mut self, i: usize, out: &[Output]) {
        // The node's deadline is in its own (drifting) time; this is when it falls in ours.
        let sn = &mut self.nodes[i];
        for o in out {
            if let Output::Send {
                message: Message::ReplicaRead { req, key, .. },
                ..
            } = o
                && let Some(&slot) = self.hist.key_index.get(key)
                && sn.read_reqs.insert(*req, slot).is_none()
            {
                let timeout_us = (self.sc.request_timeout_ms * 1000) as f64 / (1.0 + sn.drift);
                let until = self.now_us + timeout_us.ceil() as u64;
                sn.read_expiry.push_back((until, *req));
            }
        }
    }

    fn copy(&mut self, i: usize, key: &Key) -> Option<Object> {
        let sn = &mut self.nodes[i];
        let node = sn.node.as_mut()?;
        node.local_object(&sn.store, key).ok().flatten()
    }

    /// A client write reached node `i`: note a forward, or record the coordination.
    /// `started`: the node began coordinating a write (it ignores a duplicated forward).
    fn watch_write(&mut self, i: usize, h: HistRef, started: bool, out: &[Output]) {
        let forwarded = out.iter().find_map(|o| match o {
            Output::Send {
                message: Message::Forward { req, .. },
                ..
            } => Some(*req),
            _ => None,
        });
        if let Some(req) = forwarded {
            let epoch = self.nodes[i].epoch;
            self.forwards.insert((i, epoch, req), h);
            self.forwards_order
                .push_back((self.now_us, (i, epoch, req)));
            // A forward (or a duplicate of it) arrives within the client's patience, many
            // times over: older entries can go.
            let horizon = self.sc.client_timeout_ms * 1000 * FORWARD_MEMORY_TIMEOUTS;
            while let Some((at, id)) = self.forwards_order.front() {
                if at + horizon > self.now_us {
                    break;
                }
                self.forwards.remove(id);
                self.forwards_order.pop_front();
            }
            return;
        }
        // A coordinator refuses before applying (unavailable, wrong type, bad request) with an
        // immediate error; once it applied the write, no answer comes out in the same step
        // unless it is a success.
        let refused = out.iter().any(|o| {
            matches!(
                o,
                Output::Reply {
                    reply: Reply::Error { .. },
                    ..
                } | Output::Send {
                    message: Message::ForwardReply {
                        reply: Reply::Error { .. },
                        ..
                    },
                    ..
                }
            )
        });
        if refused || !started {
            return;
        }
        let now = self.now_us;
        match h {
            HistRef::CounterOp(c) => {
                let applied = &mut self.hist.counter_ops[c].applied_by;
                applied.push(crate::history::CounterApply {
                    node: i,
                    incarnation: self.nodes[i].live_incarnation(),
                    at_us: now,
                    void: false,
                });
                let index = applied.len() - 1;
                self.note_unsynced(i, h, index);
            }
            HistRef::Write(w) => {
                let slot = self.hist.writes[w].key;
                let key = self.hist.keys[slot].key.clone();
                let Some(Object::Register(reg)) = self.copy(i, &key) else {
                    self.hist.anomaly(
                        "oracle",
                        now,
                        format!(
                            "n{} coordinated a write of {key:?} but holds no register",
                            i + 1
                        ),
                    );
                    return;
                };
                let value = self.hist.writes[w].value.clone();
                let coordinations = &self.hist.writes[w].coordinations;
                let known = |dot: &Dot| coordinations.iter().any(|c| c.dot.as_ref() == Some(dot));
                let found = reg
                    .dvv()
                    .siblings()
                    .find(|(dot, s)| s.value.as_ref() == Some(&value) && !known(dot))
                    .map(|(dot, s)| (dot.clone(), s.timestamp));
                let Some((dot, timestamp)) = found else {
                    self.hist.anomaly(
                        "oracle",
                        now,
                        format!(
                            "n{} coordinated the write of {:?} to {key:?} but its copy lacks it",
                            i + 1,
                            String::from_utf8_lossy(&value)
                        ),
                    );
                    return;
                };
                self.hist.writes[w].coordinations.push(Coordination {
                    node: i,
                    at_us: now,
                    dot: Some(dot.clone()),
                    context_after: reg.context().clone(),
                    timestamp: Some(timestamp),
                    void: false,
                    version: None,
                });
                let index = self.hist.writes[w].coordinations.len() - 1;
                self.note_unsynced(i, h, index);
                let v = self.hist.track(slot, dot, i, now);
                self.hist.writes[w].coordinations[index].version = Some(v);
            }
            HistRef::SetOp(s) => {
                let slot = self.hist.set_ops[s].key;
                let key = self.hist.keys[slot].key.clone();
                let Some(Object::Set(set)) = self.copy(i, &key) else {
                    self.hist.anomaly(
                        "oracle",
                        now,
                        format!(
                            "n{} coordinated a set update of {key:?} but holds no set",
                            i + 1
                        ),
                    );
                    return;
                };
                let context = set.context().clone();
                let op = &self.hist.set_ops[s];
                let dot = if op.add {
                    let actor = Actor::new(
                        self.nodes[i].name.as_str(),
                        self.nodes[i].live_incarnation(),
                    );
                    let counter = context.get(&actor);
                    if counter == 0 || !set.contains(&op.member) {
                        self.hist.anomaly(
                            "oracle",
                            now,
                            format!("n{} applied an add to {key:?} that its copy lacks", i + 1),
                        );
                        return;
                    }
                    Some(Dot::new(actor, counter))
                } else {
                    None
                };
                self.hist.set_ops[s].coordinations.push(Coordination {
                    node: i,
                    at_us: now,
                    dot: dot.clone(),
                    context_after: context,
                    timestamp: None,
                    void: false,
                    version: None,
                });
                let index = self.hist.set_ops[s].coordinations.len() - 1;
                self.note_unsynced(i, h, index);
                if let Some(dot) = dot {
                    let v = self.hist.track(slot, dot, i, now);
                    self.hist.set_ops[s].coordinations[index].version = Some(v);
                }
            }
        }
    }

    fn note_unsynced(&mut self, i: usize, h: HistRef, index: usize) {
        if self.crash_loses_unsynced {
            self.nodes[i].unsynced.push((h, index));
        }
    }

    /// The caller's loop (the core's driver): sync, then send. With a disk-sync delay, outputs
    /// wait for a sync that completes later (group commit).
    fn emit(&mut self, i: usize) {
        if self.immediate_sync {
            let mut out = std::mem::take(&mut self.spare_out);
            let sn = &mut self.nodes[i];
            if sn.driver.commit(&mut sn.store, &mut out).is_ok() {
                sn.unsynced.clear();
            }
            self.send_outputs(i, &mut out);
            self.spare_out = out;
        } else {
            let sn = &self.nodes[i];
            if !sn.syncing && !sn.driver.is_idle() {
                self.start_sync(i);
            }
        }
    }

    fn start_sync(&mut self, i: usize) {
        let delay = us(self.sc.delays.disk_sync.sample(&mut self.rng_disk));
        let sn = &mut self.nodes[i];
        sn.syncing = true;
        sn.driver.seal();
        let event = Event::SyncDone {
            node: u32::try_from(i).expect("node indices fit in u32"),
            epoch: sn.epoch as u32,
        };
        self.schedule(self.now_us + delay, event);
    }

    fn on_sync_done(&mut self, i: usize, epoch: u32) {
        if self.nodes[i].epoch as u32 != epoch || !self.is_up(i) {
            return; // the node crashed meanwhile: the sync never happened
        }
        let mut out = std::mem::take(&mut self.spare_out);
        let sn = &mut self.nodes[i];
        // A failed sync leaves the coordinations since the last good one at risk: a crash
        // before the next good sync still voids them.
        if sn.driver.finish(&mut sn.store, &mut out).is_ok() {
            sn.unsynced.clear();
        }
        sn.syncing = false;
        let more = !sn.driver.is_idle();
        self.send_outputs(i, &mut out);
        self.spare_out = out;
        if more {
            self.start_sync(i);
        }
    }

    /// Sends (or schedules) every output, leaving `out` empty.
    fn send_outputs(&mut self, i: usize, out: &mut Vec<Output>) {
        for o in out.drain(..) {
            match o {
                Output::Send { to, message } => match self.node_index(&to) {
                    Some(j) => self.send(i, j, message),
                    None => self.hist.anomaly(
                        "oracle",
                        self.now_us,
                        format!("n{} sent to unknown node {to}", i + 1),
                    ),
                },
                // Seeds: the simulator's addresses are `sim:NAME`.
                Output::Dial { addr, message } => {
                    if let Some(j) = addr
                        .strip_prefix("sim:")
                        .and_then(|n| self.sc.node_index(n))
                    {
                        self.send(i, j, message);
                    }
                }
                Output::Reply { client, reply } => {
                    let delay = us(self.sc.delays.client.sample(&mut self.rng_client));
                    self.schedule(
                        self.now_us + delay,
                        Event::AtClient(Box::new((client, reply))),
                    );
                }
                Output::Durable(_) => unreachable!("the driver releases outputs unmarked"),
            }
        }
    }

    // ---- the network ----

    fn counts(&mut self, kind: usize) -> &mut MessageCounts {
        self.messages[kind].get_or_insert_with(MessageCounts::default)
    }

    fn send(&mut self, from: usize, to: usize, message: Message) {
        let kind = message_kind(&message);
        let n = self.nodes.len();
        self.counts(kind).sent += 1;
        if self.cut[from * n + to] > 0 {
            self.counts(kind).cut += 1;
            return;
        }
        let (loss, dup, reorder) = if self.faults_on {
            let net = &self.sc.network;
            (
                1.0 - (1.0 - net.loss) * (1.0 - self.extra_loss.min(1.0)),
                net.duplicate,
                net.reorder,
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        if self.rng_net.chance(loss) {
            self.counts(kind).lost += 1;
            return;
        }
        let duplicated = self.rng_net.chance(dup);
        let class = class_of(&message);
        // A duplicate goes first (its own delay), then the message itself.
        if duplicated {
            self.counts(kind).duplicated += 1;
            let at = self.arrival(from, to, class, reorder);
            let event = self.deliver_event(from, to, message.clone());
            self.schedule(at, event);
        }
        let at = self.arrival(from, to, class, reorder);
        let event = self.deliver_event(from, to, message);
        self.schedule(at, event);
    }

    /// When a message sent now from `from` to `to` arrives: its class's delay, the regions'
    /// distance, maybe a reordering delay, and (on FIFO links) never before the link's last.
    fn arrival(&mut self, from: usize, to: usize, class: Class, reorder: f64) -> u64 {
        let dist = match class {
            Class::Write => &self.sc.delays.write,
            Class::Ack => &self.sc.delays.ack,
            Class::ReadRequest => &self.sc.delays.read_request,
            Class::ReadResponse => &self.sc.delays.read_response,
            Class::Gossip => &self.gossip_delay,
            Class::AntiEntropy => &self.anti_entropy_delay,
        };
        let mut delay_ms = dist.sample(&mut self.rng_net);
        if self.nodes[from].region != self.nodes[to].region {
            delay_ms += self.sc.delays.inter_region.sample(&mut self.rng_net);
        }
        let reordered = self.rng_net.chance(reorder);
        if reordered {
            delay_ms += self.sc.network.reorder_delay.sample(&mut self.rng_net);
        }
        let mut at = self.now_us + us(delay_ms);
        if self.sc.network.fifo && !reordered {
            let link = &mut self.last_on_link[from * self.nodes.len() + to];
            at = at.max(*link);
            *link = at;
        }
        at
    }

    fn deliver_event(&self, from: usize, to: usize, message: Message) -> Event {
        Event::Deliver(Box::new(Delivery {
            from,
            to,
            from_epoch: self.nodes[from].epoch,
            to_epoch: self.nodes[to].epoch,
            message,
        }))
    }

    fn on_fault(&mut self, f: usize, start: bool) {
        if !self.faults_on {
            return; // everything healed when traffic stopped
        }
        let fault = self.faults[f].clone();
        let n = self.nodes.len();
        match &fault.kind {
            FaultKind::Cut(links) => {
                for (a, b) in links {
                    let c = &mut self.cut[a * n + b];
                    *c = if start { *c + 1 } else { c.saturating_sub(1) };
                }
            }
            FaultKind::Loss(p) => {
                self.extra_loss = if start {
                    self.extra_loss + p
                } else {
                    (self.extra_loss - p).max(0.0)
                };
            }
            FaultKind::Join(node) => {
                let node = *node;
                if start && self.nodes[node].life == Life::Waiting {
                    self.nodes[node].life = Life::Member;
                    let seeds = self.nodes[node].cfg.seeds.join(", ");
                    let name = self.nodes[node].name.to_string();
                    if self.nodes[node].crash_depth == 0 {
                        self.boot(node);
                    }
                    self.note(format!(
                        "{name} boots and joins through its seeds ({seeds})"
                    ));
                    self.membership_changed();
                }
            }
            FaultKind::Leave(node) => {
                let node = *node;
                if start && self.nodes[node].life == Life::Member {
                    self.nodes[node].life = Life::Leaving;
                    let name = self.nodes[node].name.to_string();
                    let sn = &mut self.nodes[node];
                    let what = match sn.node.as_mut() {
                        Some(n) => {
                            // The leave is the operator's, on a working disk (see `boot`).
                            let faults = sn.store.take_faults();
                            n.leave(&mut sn.store).expect("MemStore never fails");
                            sn.store.set_faults(faults);
                            "is told to leave: it hands its partitions over"
                        }
                        None => "is told to leave while down: it leaves once it is back",
                    };
                    self.note(format!("{name} {what}"));
                    self.membership_changed();
                }
            }
            FaultKind::Disk(node, faults) => {
                let faults = if start {
                    faults.clone()
                } else {
                    StoreFaults::default()
                };
                self.nodes[*node].store.set_faults(faults);
            }
            FaultKind::Crash(node) => {
                let node = *node;
                if start {
                    self.nodes[node].crash_depth += 1;
                    if self.is_up(node) {
                        self.crash(node);
                    }
                } else {
                    let depth = &mut self.nodes[node].crash_depth;
                    *depth = depth.saturating_sub(1);
                    if *depth == 0 {
                        self.restart(node);
                    }
                }
            }
        }
        if !matches!(
            fault.kind,
            FaultKind::Crash(_) | FaultKind::Join(_) | FaultKind::Leave(_)
        ) {
            let what = if start { "begins" } else { "heals" };
            self.note(format!("{} {what}", fault.label));
        }
    }

    /// A leaving node exits for good once it has been drained (no data, no hints) for
    /// `LEAVE_GRACE_MS` and its last outputs are out.
    fn maybe_exit(&mut self, i: usize) {
        let now = self.now_us;
        let sn = &mut self.nodes[i];
        let Some(node) = sn.node.as_ref() else {
            return;
        };
        if !node.drained(&sn.store) {
            sn.drained_since_us = None;
            return;
        }
        let since = *sn.drained_since_us.get_or_insert(now);
        if now < since + LEAVE_GRACE_MS * 1000 || sn.syncing || !sn.driver.is_idle() {
            return;
        }
        let node = sn.node.take();
        sn.life = Life::Gone;
        // Messages still on their way to it find it gone.
        sn.epoch += 1;
        sn.read_reqs.clear();
        sn.read_expiry.clear();
        let name = sn.name.to_string();
        if let Some(node) = node {
            self.retired.add(node.stats());
        }
        self.note(format!(
            "{name} is drained (no data, no hints) and leaves the cluster for good"
        ));
    }

    /// A node joined or started leaving: the ring of the current members (the initial ones
    /// plus those that joined, minus those leaving or gone) gives every key its primaries from
    /// now on. Versions being timed wait for the new primaries that lack them (they get them
    /// by transfer or repair) and no longer for the ones that left.
    fn membership_changed(&mut self) {
        let members: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.life == Life::Member)
            .map(|n| n.name.clone())
            .collect();
        let ring_cfg = self.ring.config().clone();
        self.ring = Ring::new(ring_cfg, members).expect("validated: a member is always left");
        let now = self.now_us;
        for slot in 0..self.hist.keys.len() {
            let rec = &self.hist.keys[slot];
            let primaries = self.primaries_of(&rec.key);
            if primaries == rec.primaries {
                continue;
            }
            let old = std::mem::replace(&mut self.hist.keys[slot].primaries, primaries.clone());
            let open = std::mem::take(&mut self.hist.keys[slot].open);
            let mut still = Vec::with_capacity(open.len());
            for id in open {
                let v = &mut self.hist.versions[id];
                // Missing now: a new primary, or one that was (and still is) missing it.
                let was_missing = |p: usize| {
                    old.iter()
                        .position(|o| *o == p)
                        .is_none_or(|j| v.missing & 1 << j != 0)
                };
                v.missing = crate::history::positions(&primaries, was_missing);
                if v.missing == 0 {
                    v.everywhere_us = Some(now);
                } else {
                    still.push(id);
                }
            }
            self.hist.keys[slot].open = still;
        }
    }

    fn on_traffic_end(&mut self) {
        self.faults_on = false;
        self.cut.iter_mut().for_each(|c| *c = 0);
        self.extra_loss = 0.0;
        self.note("traffic stops; every fault heals".into());
        for i in 0..self.nodes.len() {
            self.nodes[i].crash_depth = 0;
            self.restart(i);
        }
        if self.sc.settle.read_sweep {
            let at = self.now_us + self.sc.settle.read_sweep_after_ms * 1000;
            self.schedule(at, Event::ReadSweep);
        }
        let at = self.now_us + self.sc.settle.poll_ms * 1000;
        self.schedule(at, Event::Poll);
    }

    // ---- clients ----

    /// The node a client sends to, per the scenario's coordinator choice (among up nodes: the
    /// client sits behind a health-checking load balancer): uniformly among the preferred up
    /// nodes, or among all up nodes when none is preferred. Counted and picked by index, with
    /// no list of a thousand nodes built per operation.
    fn choose_node(&mut self, slot: usize) -> Option<usize> {
        let (nodes, primaries) = (&self.nodes, &self.hist.keys[slot].primaries);
        let prefer = |i: usize| match self.sc.coordinator {
            CoordinatorChoice::Any => true,
            CoordinatorChoice::Replica => primaries.contains(&i),
            CoordinatorChoice::Proxy => !primaries.contains(&i),
        };
        let pool = |only_preferred: bool| {
            (0..nodes.len())
                .filter(move |&i| nodes[i].node.is_some() && (!only_preferred || prefer(i)))
        };
        let only_preferred = pool(true).next().is_some();
        let count = pool(only_preferred).count();
        if count == 0 {
            return None;
        }
        let k = self.rng_client.index(count);
        pool(only_preferred).nth(k)
    }

    fn slot_for(&mut self, kind: KeyKind, name: String) -> usize {
        let key = Key::new(Bytes::from_static(bucket_of(kind).as_bytes()), name);
        if let Some(&slot) = self.hist.key_index.get(&key) {
            return slot;
        }
        let primaries = self.primaries_of(&key);
        let partition = self.ring.partition_for_hash(key.key_hash());
        let record_key = driftkv_core::keys::data_key(partition, &key);
        self.hist.key_slot(&key, kind, primaries, record_key)
    }

    /// The key's N primaries on the simulator's ring of the current members.
    fn primaries_of(&self, key: &Key) -> Vec<usize> {
        let p = self.ring.partition_for_hash(key.key_hash());
        self.ring
            .owners(p)
            .iter()
            .map(|id| {
                self.sc
                    .node_index(id.as_str())
                    .expect("ring members are nodes")
            })
            .collect()
    }

    fn issue(&mut self, node: usize, request: Request, op: ClientOp) {
        let client = self.next_client;
        self.next_client += 1;
        let delay = us(self.sc.delays.client.sample(&mut self.rng_client));
        self.schedule(
            self.now_us + delay,
            Event::AtNode(Box::new((node, client, request))),
        );
        let timeout = self.now_us + self.sc.client_timeout_ms * 1000;
        self.schedule(timeout, Event::ClientTimeout(client));
        self.clients.insert(client, op);
    }

    fn count_op(&mut self, kind: OpKind) -> &mut OpCounts {
        self.ops.entry(kind.name()).or_default()
    }

    fn fresh_value(&mut self) -> Bytes {
        self.next_value += 1;
        Bytes::from(numbered("v", self.next_value, ""))
    }

    fn on_arrival(&mut self) {
        if self.now_us >= self.traffic_end_us {
            return;
        }
        // Every draw of the workload stream happens here, whatever the cluster's state, so the
        // same seed issues the same operations under any R, W or fault setting.
        let wl = &self.sc.workload;
        let kind = self.kinds.pick(&mut self.rng_work);
        let key_index = self.key_chooser.pick(&mut self.rng_work);
        let mode = wl.register_modes[self.rng_work.index(wl.register_modes.len())];
        let blind = self.rng_work.chance(wl.blind_writes);
        let delta = wl.counter_deltas[self.rng_work.index(wl.counter_deltas.len())];
        let member_index = self.rng_work.below(wl.set_members as u64);
        let gap_us = self.rng_work.exponential(1e6 / wl.rate_per_s);
        // Drawn only when there are sessions: other scenarios keep their streams.
        let session = (wl.sessions > 0).then(|| self.rng_work.below(wl.sessions as u64) as usize);
        let tokens = wl.session_tokens;
        let next = self.now_us + (gap_us as u64).max(1);
        self.schedule(next, Event::Arrival);

        let key_kind = match kind {
            OpKind::Get | OpKind::Put => KeyKind::Register(mode),
            OpKind::CounterAdd | OpKind::CounterGet => KeyKind::Counter,
            _ => KeyKind::Set,
        };
        let slot = match self.workload_slots.get(&(key_kind, key_index)) {
            Some(&slot) => slot,
            None => {
                let slot = self.slot_for(key_kind, numbered("k", key_index.into(), ""));
                self.workload_slots.insert((key_kind, key_index), slot);
                slot
            }
        };
        let key = self.hist.keys[slot].key.clone();
        self.count_op(kind).issued += 1;
        let Some(node) = self.choose_node(slot) else {
            self.count_op(kind).failed += 1;
            return;
        };
        let (r, w) = (self.r, self.w);
        let op = |stage, hist| ClientOp {
            stage,
            key: slot,
            node,
            sent_us: 0,
            hist,
            frontier: None,
            session: None,
        };
        // A register read, as a session read when the session sends its token.
        let register_read = |sim: &mut Self, stage: Stage, key: Key| {
            let mut o = op(stage, None);
            o.frontier = Some(sim.hist.keys[slot].frontier.clone());
            let request = match session {
                Some(s) => {
                    let seen = sim.sessions[s].get(&slot).cloned().unwrap_or_default();
                    o.session = Some((s, seen.clone()));
                    if tokens && !seen.is_empty() {
                        Request::SessionGet { key, r, seen }
                    } else {
                        Request::Get { key, r }
                    }
                }
                None => Request::Get { key, r },
            };
            sim.send_op(request, o);
        };
        match kind {
            OpKind::Get => register_read(self, Stage::Read(kind), key),
            OpKind::Put => {
                let value = self.fresh_value();
                if blind {
                    let stage = Stage::Write(OpKind::Put);
                    self.send_put(node, slot, value, VersionVector::new(), stage, session);
                } else {
                    register_read(self, Stage::ReadForPut { value }, key);
                }
            }
            OpKind::CounterAdd => {
                let c = self.hist.counter_ops.len();
                self.hist.counter_ops.push(crate::history::CounterOpRec {
                    key: slot,
                    delta,
                    outcome: Outcome::Pending,
                    applied_by: Vec::new(),
                });
                let o = op(Stage::Write(kind), Some(HistRef::CounterOp(c)));
                self.send_op(Request::CounterAdd { key, delta, w }, o);
            }
            OpKind::CounterGet => {
                self.send_op(Request::CounterGet { key, r }, op(Stage::Read(kind), None));
            }
            OpKind::SetGet => {
                self.send_op(Request::SetGet { key, r }, op(Stage::Read(kind), None));
            }
            OpKind::SetAdd | OpKind::SetRemove => {
                let member = Bytes::from(numbered("m", member_index, ""));
                let add = kind == OpKind::SetAdd;
                let s = self.hist.set_ops.len();
                self.hist.set_ops.push(SetOpRec {
                    key: slot,
                    member: member.clone(),
                    add,
                    outcome: Outcome::Pending,
                    coordinations: Coordinations::None,
                });
                let (add, remove) = if add {
                    (vec![member], Vec::new())
                } else {
                    (Vec::new(), vec![member])
                };
                let o = op(Stage::Write(kind), Some(HistRef::SetOp(s)));
                self.send_op(
                    Request::SetUpdate {
                        key,
                        add,
                        remove,
                        w,
                    },
                    o,
                );
            }
        }
    }

    fn send_op(&mut self, request: Request, mut op: ClientOp) {
        op.sent_us = self.now_us;
        self.issue(op.node, request, op);
    }

    /// Sends a register write of a fresh value with the given context (within a client
    /// session, if one is given).
    fn send_put(
        &mut self,
        node: usize,
        slot: usize,
        value: Bytes,
        context: VersionVector,
        stage: Stage,
        session: Option<usize>,
    ) {
        let w = self.hist.writes.len();
        self.hist.writes.push(WriteRec {
            key: slot,
            value: value.clone(),
            context_in: context.clone(),
            issued_us: self.now_us,
            outcome: Outcome::Pending,
            acked_us: None,
            coordinations: Coordinations::None,
        });
        self.hist.write_by_value.insert(value.clone(), w);
        let key = self.hist.keys[slot].key.clone();
        let op = ClientOp {
            stage,
            key: slot,
            node,
            sent_us: self.now_us,
            hist: Some(HistRef::Write(w)),
            frontier: None,
            session: session.map(|s| (s, VersionVector::new())),
        };
        let request = Request::Put {
            key,
            value: Some(value),
            context,
            w: self.w,
        };
        self.issue(node, request, op);
    }

    /// When trial `trial` starts (`None`: there is no such trial). Trials start early enough
    /// that their measured write falls in the traffic phase.
    fn probe_start_at(&self, trial: usize) -> Option<u64> {
        let v = &self.sc.visibility;
        let total = v.t_ms.len() * v.trials as usize;
        if trial >= total {
            return None;
        }
        let duration_us = (self.sc.duration_ms * 1000) as f64;
        let span_us = (duration_us - (v.setup_gap_ms * 1000) as f64).max(duration_us / 2.0);
        let spacing = span_us / total as f64;
        Some(self.t0_us + (spacing * (trial as f64 + 0.5)) as u64)
    }

    fn on_probe_start(&mut self, trial: usize) {
        if let Some(at) = self.probe_start_at(trial + 1) {
            self.schedule(at, Event::ProbeStart(trial + 1));
        }
        let t_len = self.sc.visibility.t_ms.len();
        let slot = self.slot_for(KeyKind::Probe, numbered("t", trial as u64, ""));
        self.trials.push(Trial {
            t_index: trial % t_len,
            key: slot,
            value: Bytes::from(numbered("p", trial as u64, "b")),
            context: None,
            fresh: None,
        });
        debug_assert_eq!(self.trials.len(), trial + 1, "trials start in order");
        let Some(node) = self.choose_node(slot) else {
            return;
        };
        let first = Bytes::from(numbered("p", trial as u64, "a"));
        self.send_put(
            node,
            slot,
            first,
            VersionVector::new(),
            Stage::ProbeSetup(trial),
            None,
        );
    }

    fn on_probe_write(&mut self, trial: usize) {
        self.scheduled_client_work -= 1;
        let slot = self.trials[trial].key;
        let Some(node) = self.choose_node(slot) else {
            return;
        };
        let value = self.trials[trial].value.clone();
        let context = self.trials[trial].context.clone().unwrap_or_default();
        self.send_put(node, slot, value, context, Stage::ProbeWrite(trial), None);
    }

    fn on_probe_read(&mut self, trial: usize) {
        self.scheduled_client_work -= 1;
        let slot = self.trials[trial].key;
        let Some(node) = self.choose_node(slot) else {
            return;
        };
        let key = self.hist.keys[slot].key.clone();
        let op = ClientOp {
            stage: Stage::ProbeRead(trial),
            key: slot,
            node,
            sent_us: self.now_us,
            hist: None,
            frontier: None,
            session: None,
        };
        self.issue(node, Request::Get { key, r: self.r }, op);
    }

    fn on_read_sweep(&mut self) {
        self.sweep_pending = false;
        self.note("read sweep: every key read once at R = all".into());
        for slot in 0..self.hist.keys.len() {
            let Some(node) = self.choose_node(slot) else {
                continue;
            };
            let key = self.hist.keys[slot].key.clone();
            let r = Quorum::All;
            let request = match self.hist.keys[slot].kind {
                KeyKind::Register(_) | KeyKind::Probe => Request::Get { key, r },
                KeyKind::Counter => Request::CounterGet { key, r },
                KeyKind::Set => Request::SetGet { key, r },
            };
            let op = ClientOp {
                stage: Stage::Sweep,
                key: slot,
                node,
                sent_us: self.now_us,
                hist: None,
                frontier: None,
                session: None,
            };
            self.issue(node, request, op);
        }
    }

    fn set_outcome(&mut self, h: HistRef, outcome: Outcome) {
        let now = self.now_us;
        let acked = outcome == Outcome::Acked;
        let hist = &mut self.hist;
        match h {
            HistRef::Write(w) => {
                let rec = &mut hist.writes[w];
                rec.outcome = outcome;
                if acked {
                    rec.acked_us = Some(now);
                    let frontier = &mut hist.keys[rec.key].frontier;
                    for d in rec.coordinations.iter().filter_map(|c| c.dot.as_ref()) {
                        frontier.observe_dot(d);
                    }
                    for v in rec.coordinations.iter().filter_map(|c| c.version) {
                        hist.versions[v].acked_us.get_or_insert(now);
                    }
                }
            }
            HistRef::SetOp(s) => {
                let op = &mut hist.set_ops[s];
                op.outcome = outcome;
                if acked {
                    for v in op.coordinations.iter().filter_map(|c| c.version) {
                        hist.versions[v].acked_us.get_or_insert(now);
                    }
                }
            }
            HistRef::CounterOp(c) => hist.counter_ops[c].outcome = outcome,
        }
    }

    fn on_client_timeout(&mut self, client: ClientId) {
        let Some(op) = self.clients.remove(&client) else {
            return;
        };
        if let Some(h) = op.hist {
            self.set_outcome(h, Outcome::TimedOut);
        }
        match op.stage {
            Stage::Read(kind) | Stage::Write(kind) => self.count_op(kind).timed_out += 1,
            Stage::ReadForPut { .. } => self.count_op(OpKind::Put).timed_out += 1,
            _ => {}
        }
    }

    fn on_reply(&mut self, client: ClientId, reply: Reply) {
        let Some(op) = self.clients.remove(&client) else {
            return; // the client gave up already
        };
        let latency_ms = (self.now_us - op.sent_us) as f64 / 1000.0;
        let is_error = matches!(reply, Reply::Error { .. });
        if let Some((s, seen)) = &op.session {
            self.session_reply(
                *s,
                op.key,
                seen,
                matches!(op.stage, Stage::Write(_)),
                &reply,
            );
        }
        match op.stage {
            Stage::Read(kind) => {
                if is_error {
                    self.count_op(kind).failed += 1;
                    return;
                }
                self.count_op(kind).ok += 1;
                self.read_latency_ms.push(latency_ms);
                if kind == OpKind::Get {
                    self.check_register_read(op.key, &reply, op.frontier.as_ref());
                }
            }
            Stage::ReadForPut { value } => {
                let context = match &reply {
                    Reply::Values { context, .. } | Reply::NotFound { context } => context.clone(),
                    _ => {
                        // No context, no write: the operation failed at its read.
                        self.count_op(OpKind::Put).failed += 1;
                        return;
                    }
                };
                self.read_latency_ms.push(latency_ms);
                self.check_register_read(op.key, &reply, op.frontier.as_ref());
                let session = op.session.as_ref().map(|(s, _)| *s);
                let stage = Stage::Write(OpKind::Put);
                self.send_put(op.node, op.key, value, context, stage, session);
            }
            Stage::Write(kind) => {
                let acked = matches!(reply, Reply::Written { .. } | Reply::Counter { .. });
                let outcome = if acked {
                    self.count_op(kind).ok += 1;
                    self.write_latency_ms.push(latency_ms);
                    Outcome::Acked
                } else {
                    self.count_op(kind).failed += 1;
                    Outcome::Failed(match &reply {
                        Reply::Error { message, .. } => message.clone(),
                        other => format!("unexpected reply {other:?}"),
                    })
                };
                if let Some(h) = op.hist {
                    self.set_outcome(h, outcome);
                }
            }
            Stage::ProbeSetup(trial) => {
                let context = match &reply {
                    Reply::Written { context } => Some(context.clone()),
                    _ => None,
                };
                if let Some(h) = op.hist {
                    let outcome = match context {
                        Some(_) => Outcome::Acked,
                        None => Outcome::Failed(format!("{reply:?}")),
                    };
                    self.set_outcome(h, outcome);
                }
                if let Some(context) = context {
                    self.trials[trial].context = Some(context);
                    let at = self.now_us + self.sc.visibility.setup_gap_ms * 1000;
                    self.scheduled_client_work += 1;
                    self.schedule(at, Event::ProbeWrite(trial));
                }
            }
            Stage::ProbeWrite(trial) => {
                let acked = matches!(reply, Reply::Written { .. });
                if let Some(h) = op.hist {
                    let outcome = if acked {
                        Outcome::Acked
                    } else {
                        Outcome::Failed(format!("{reply:?}"))
                    };
                    self.set_outcome(h, outcome);
                }
                if acked {
                    let t_ms = self.sc.visibility.t_ms[self.trials[trial].t_index];
                    self.scheduled_client_work += 1;
                    self.schedule(self.now_us + us(t_ms), Event::ProbeRead(trial));
                }
            }
            Stage::ProbeRead(trial) => {
                let fresh = match &reply {
                    Reply::Values { values, .. } => {
                        Some(values.contains(&self.trials[trial].value))
                    }
                    Reply::NotFound { .. } => Some(false),
                    _ => None,
                };
                self.trials[trial].fresh = fresh;
            }
            Stage::Sweep => {}
        }
    }

    /// A session's register operation answered: a read is judged against what the session had
    /// seen (`seen`, when it was sent), and what the session saw grows.
    fn session_reply(
        &mut self,
        s: usize,
        slot: usize,
        seen: &VersionVector,
        write: bool,
        reply: &Reply,
    ) {
        let context = match reply {
            Reply::Values { context, .. } | Reply::NotFound { context } if !write => {
                self.session_counts.reads += 1;
                if !context.descends(seen) {
                    self.session_counts.went_back += 1;
                }
                context
            }
            Reply::Written { context } if write => context,
            Reply::Error { .. } if !write => {
                if self.sc.workload.session_tokens && !seen.is_empty() {
                    self.session_counts.refused += 1;
                }
                return;
            }
            _ => return,
        };
        self.sessions[s].entry(slot).or_default().merge(context);
    }

    /// Judges one register read: stale (it missed a write acknowledged before it was sent),
    /// siblings that should not coexist, values nobody wrote.
    fn check_register_read(
        &mut self,
        slot: usize,
        reply: &Reply,
        frontier: Option<&VersionVector>,
    ) {
        let (values, context) = match reply {
            Reply::Values { values, context } => (values.as_slice(), context),
            Reply::NotFound { context } => (&[][..], context),
            _ => return,
        };
        let now = self.now_us;
        self.register_reads += 1;
        if let Some(f) = frontier
            && !context.descends(f)
        {
            self.stale_reads += 1;
        }
        if values.len() > 1 {
            self.sibling_reads += 1;
        }
        self.siblings_max = self.siblings_max.max(values.len());
        let key = self.hist.keys[slot].key.clone();
        if self.hist.keys[slot].kind == KeyKind::Register(ConflictMode::Lww) && values.len() > 1 {
            self.hist.anomaly(
                "siblings_only_for_concurrent_writes",
                now,
                format!("a read of lww key {key:?} returned {} values", values.len()),
            );
        }
        let mut writes = Vec::with_capacity(values.len());
        for v in values {
            match self.hist.write_by_value.get(v) {
                Some(&w) => writes.push(w),
                None => self.hist.anomaly(
                    "reads_return_written_values",
                    now,
                    format!(
                        "a read of {key:?} returned {:?}, which no client wrote",
                        String::from_utf8_lossy(v)
                    ),
                ),
            }
        }
        for (i, &a) in writes.iter().enumerate() {
            for &b in &writes[i + 1..] {
                if let Some(why) = self.hist.saw_each_other(a, b) {
                    self.hist.anomaly(
                        "siblings_only_for_concurrent_writes",
                        now,
                        format!("a read of {key:?} returned siblings {why}"),
                    );
                }
            }
        }
    }

    // ---- convergence ----

    /// Keys whose primaries' copies differ (at most `limit` described), and how many.
    fn divergence(&mut self, limit: usize) -> (Vec<String>, usize) {
        let mut described = Vec::new();
        let mut count = 0;
        for slot in 0..self.hist.keys.len() {
            if self.same_records(slot) {
                continue;
            }
            let key = self.hist.keys[slot].key.clone();
            let primaries = self.hist.keys[slot].primaries.clone();
            let mut copies: Vec<Option<Object>> = Vec::with_capacity(primaries.len());
            let mut down = None;
            for &p in &primaries {
                if !self.is_up(p) {
                    down = Some(p);
                    break;
                }
                copies.push(self.copy(p, &key));
            }
            let differs = down.is_some() || copies.windows(2).any(|w| w[0] != w[1]);
            if !differs {
                continue;
            }
            count += 1;
            if described.len() < limit {
                let text = match down {
                    Some(p) => format!("{key:?}: primary n{} is down", p + 1),
                    None => {
                        let parts: Vec<String> = primaries
                            .iter()
                            .zip(&copies)
                            .map(|(p, c)| format!("n{} holds {}", p + 1, describe(c.as_ref())))
                            .collect();
                        format!("{key:?}: {}", parts.join("; "))
                    }
                };
                described.push(text);
            } else if limit == 0 {
                break;
            }
        }
        (described, count)
    }

    /// Whether every primary of the key is up and holds the very same stored record (or none):
    /// then their copies are equal without decoding them. `false` only means "look closer".
    fn same_records(&self, slot: usize) -> bool {
        let rec = &self.hist.keys[slot];
        let mut first: Option<Option<&[u8]>> = None;
        for &p in &rec.primaries {
            let sn = &self.nodes[p];
            if sn.node.is_none() {
                return false;
            }
            let raw = sn.store.get_ref(&rec.record_key);
            match first {
                None => first = Some(raw),
                Some(f) if f == raw => {}
                Some(_) => return false,
            }
        }
        true
    }

    fn quiet(&self) -> bool {
        // With joins and leaves, the run also waits for every leaving node to be gone and for
        // every node to hold only partitions it owns.
        let moving = self.sc.membership_changes();
        self.clients.is_empty()
            && self.scheduled_client_work == 0
            && !self.sweep_pending
            && self.nodes.iter().all(|n| {
                if matches!(n.life, Life::Waiting | Life::Gone) {
                    return true;
                }
                n.life != Life::Leaving
                    && !n.syncing
                    && n.driver.is_idle()
                    && n.node.as_ref().is_some_and(|node| {
                        node.hints_pending() == 0
                            && node.requests_pending() == 0
                            && (!moving || node.partitions_to_transfer() == 0)
                    })
            })
    }

    fn on_poll(&mut self) {
        let (_, divergent) = self.divergence(0);
        if divergent == 0 {
            self.converged_since_us.get_or_insert(self.now_us);
        } else {
            self.converged_since_us = None;
        }
        if (self.converged_since_us.is_some() && self.quiet()) || self.now_us >= self.deadline_us {
            self.finished = true;
            // The run ends here, nothing happens before `finish`: it need not look again.
            self.ended_converged = divergent == 0;
            return;
        }
        let at = (self.now_us + self.sc.settle.poll_ms * 1000).min(self.deadline_us);
        self.schedule(at, Event::Poll);
    }

    fn finish(mut self) -> Outcomes {
        let (divergent, divergent_keys) = if self.ended_converged {
            (Vec::new(), 0)
        } else {
            self.divergence(5)
        };
        if divergent_keys > 0 {
            self.converged_since_us = None;
        }
        let mut final_objects = Vec::with_capacity(self.hist.keys.len());
        for slot in 0..self.hist.keys.len() {
            let key = self.hist.keys[slot].key.clone();
            let mode = self.hist.keys[slot].kind.mode();
            let primaries = self.hist.keys[slot].primaries.clone();
            // Replicas holding the very same record (or equal copies: the run ended with every
            // key converged): their join is that copy.
            if self.ended_converged || self.same_records(slot) {
                final_objects.push(primaries.first().and_then(|&p| self.copy(p, &key)));
                continue;
            }
            let copies: Vec<Object> = primaries
                .iter()
                .filter_map(|&p| self.copy(p, &key))
                .collect();
            let (merged, _, _) = driftkv_core::node::merge_all(mode, copies.iter());
            final_objects.push(merged);
        }
        let mut totals = self.retired.clone();
        let mut hints_pending = 0;
        for sn in &self.nodes {
            if let Some(node) = &sn.node {
                totals.add(node.stats());
                hints_pending += node.hints_pending();
            }
            // A node's driver lives through its crashes: its counts are of every life.
            let driven = sn.driver.counts();
            totals.syncs_failed += driven.syncs_failed;
            totals.confirmations_refused += driven.confirmations_refused;
        }
        // Which nodes hold a record of each key: each store's records walked once (not every
        // node asked for every key: a thousand nodes and their keys would be a square).
        let mut holders: Vec<Vec<usize>> = vec![Vec::new(); self.hist.keys.len()];
        let slot_of: driftkv_core::fasthash::FastMap<&[u8], usize> = self
            .hist
            .keys
            .iter()
            .enumerate()
            .map(|(slot, rec)| (rec.record_key.as_slice(), slot))
            .collect();
        let mut records = vec![0; self.nodes.len()];
        for (i, sn) in self.nodes.iter().enumerate() {
            for record in sn.store.keys_with_prefix(&[driftkv_core::keys::DATA]) {
                records[i] += 1;
                if let Some(&slot) = slot_of.get(record) {
                    holders[slot].push(i);
                }
            }
        }
        let nodes_at_end = self
            .nodes
            .iter()
            .zip(records)
            .map(|(sn, records)| NodeEnd {
                name: sn.name.to_string(),
                initial: self.sc.initial_member(sn.name.as_str()),
                state: match sn.life {
                    Life::Waiting => "never joined",
                    Life::Member => "member",
                    Life::Leaving => "leaving",
                    Life::Gone => "left",
                },
                records,
            })
            .collect();
        let traffic_end = self.traffic_end_us;
        Outcomes {
            converged_after_ms: self
                .converged_since_us
                .map(|t| t.saturating_sub(traffic_end) as f64 / 1000.0),
            settle_ms: self.now_us.saturating_sub(traffic_end) as f64 / 1000.0,
            hist: self.hist,
            trials: self.trials,
            final_objects,
            divergent,
            divergent_keys,
            read_latency_ms: self.read_latency_ms,
            write_latency_ms: self.write_latency_ms,
            register_reads: self.register_reads,
            stale_reads: self.stale_reads,
            sibling_reads: self.sibling_reads,
            siblings_max: self.siblings_max,
            sessions: self.session_counts,
            ops: self.ops,
            messages: MESSAGE_NAMES
                .iter()
                .zip(self.messages)
                .filter_map(|(name, counts)| counts.map(|c| (*name, c)))
                .collect(),
            node_totals: totals,
            hints_pending_at_end: hints_pending,
            events: self.events,
            events_overflow: self.events_overflow,
            log: self.log,
            faults: self.faults,
            nodes_at_end,
            holders,
        }
    }
}

/// A copy as a person reads it: values (registers), value (counters), members (sets).
pub fn describe(object: Option<&Object>) -> String {
    match object {
        None => "nothing".into(),
        Some(Object::Register(r)) => {
            let values: Vec<String> = r
                .values()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            format!("[{}] {:?}", values.join(", "), r.context())
        }
        Some(Object::Counter(c)) => format!("counter {}", c.value()),
        Some(Object::Set(s)) => {
            let members: Vec<String> = s
                .members()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            format!("set {{{}}} {:?}", members.join(", "), s.context())
        }
    }
}

/// `prefix`, `n` in decimal, `suffix`: the names of keys, values and members, made once per
/// operation (what `format!` makes, without its machinery).
fn numbered(prefix: &str, n: u64, suffix: &str) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = std::str::from_utf8(&digits[at..]).expect("ASCII digits");
    let mut name = String::with_capacity(prefix.len() + digits.len() + suffix.len());
    name.push_str(prefix);
    name.push_str(digits);
    name.push_str(suffix);
    name
}

#[cfg(test)]
mod tests {
    #[test]
    fn microseconds_round_as_f64_round_does() {
        let reference = |ms: f64| (ms * 1000.0).round().max(0.0) as u64;
        let mut samples = vec![
            0.0,
            -0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            0.0005,
            0.0004999999999999999,
            0.0015,
            0.0025,
            4.5e12,
            4.503599627370497e12,
            (u64::MAX / 1000) as f64,
        ];
        // Halfway points and their neighbours, and a sweep of ordinary delays.
        for n in 0..2000u64 {
            let half = (n as f64 + 0.5) / 1000.0;
            samples.extend([
                half,
                f64::from_bits(half.to_bits() - 1),
                f64::from_bits(half.to_bits() + 1),
            ]);
            samples.push(n as f64 * 0.37 + 0.000_123);
        }
        for ms in samples {
            assert_eq!(super::us(ms), reference(ms), "{ms:e} ms");
        }
    }

    /// The sizes a run is prepared for are those the classic scenario then records: every
    /// key and write counted, none far over (the estimate is what spares the regrowth).
    #[test]
    fn the_expected_sizes_are_what_a_run_records() {
        let sc = crate::Scenario::from_toml(include_str!("../../../scenarios/classic.toml"))
            .expect("the shipped scenario parses");
        let expect = super::Expected::of(&sc);
        let run = super::Sim::new(&sc).run(&mut |_| {});
        let (keys, writes) = (run.hist.keys.len(), run.hist.writes.len());
        assert!(
            (keys..=keys + keys / 10).contains(&expect.keys),
            "expected {} keys, recorded {keys}",
            expect.keys
        );
        assert!(
            (writes * 9 / 10..=writes * 11 / 10).contains(&expect.writes),
            "expected {} writes, recorded {writes}",
            expect.writes
        );
        assert_eq!(expect.trials, run.trials.len());
    }

    #[test]
    fn numbered_names_read_as_format_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(super::numbered("p", n, "b"), format!("p{n}b"));
        }
    }
}
