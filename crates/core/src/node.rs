//! The node state machine: coordinates reads and writes, serves replica requests, repairs
//! stale replicas, and hands hints off. Inputs are client requests, peer messages and timer
//! ticks with the current time; outputs are messages and replies. Nothing else leaves.
//!
//! Shaped after Riak's get and put cores: a coordinator collects replica answers one by one,
//! answers once it has enough, and decides what to do after (read repair).
//!
//! The caller's loop (tokio node or simulator) is: feed inputs, then `Store::sync` per the
//! durability policy, then deliver the outputs. So a replica never acknowledges a write and a
//! coordinator never answers before the write is durable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use driftkv_causal::vv::COUNTER_MAX;
use driftkv_causal::{Actor, ConflictMode, Hlc, Register, VersionVector};
use driftkv_ring::{NodeId, PartitionId, Ring, Role};
use driftkv_wire::{
    ErrorKind, Hash64, Key, MemberInfo, MemberState, Message, Object, ObjectKind, Quorum,
    ReplicaView, Reply, ReqId, Request,
};

use crate::aae;
use crate::config::NodeConfig;
use crate::keys;
use crate::membership::{Change, Membership, Remembered};
use crate::objects::{Cached, ObjectCache};
pub use crate::quorum::merge_all;
use crate::quorum::{GetAnswer, GetCore, PutAnswer, PutCore};
use crate::stats::Stats;
use crate::store::{Store, StoreError};

/// A client connection's handle, chosen by the shell; replies name it.
pub type ClientId = u64;

/// Something that happened to the node.
#[derive(Clone, Debug)]
pub enum Input {
    Request {
        client: ClientId,
        request: Request,
    },
    Message {
        from: NodeId,
        message: Message,
    },
    /// Time passed: expire requests, hand hints off.
    Tick,
}

/// Something the node wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send {
        to: NodeId,
        message: Message,
    },
    /// A message for an address whose node is not known yet (a `--join` seed).
    Dial {
        addr: String,
        message: Message,
    },
    Reply {
        client: ClientId,
        reply: Reply,
    },
    /// An output that confirms this node's writes are durable (a write's answer, a replica's
    /// acknowledgement, a transfer's receipt): released only after a sync that succeeded, in
    /// its refusing form after one that failed (see [`crate::driver`]).
    Durable(Box<Output>),
}

impl Output {
    /// This output, marked as a confirmation of durability.
    pub fn durable(self) -> Output {
        match self {
            Output::Durable(_) => self,
            other => Output::Durable(Box::new(other)),
        }
    }

    /// The output itself, seen through a durability mark.
    pub fn plain(&self) -> &Output {
        match self {
            Output::Durable(inner) => inner.plain(),
            other => other,
        }
    }

    /// The output itself, without its durability mark.
    pub fn into_plain(self) -> Output {
        match self {
            Output::Durable(inner) => inner.into_plain(),
            other => other,
        }
    }
}

/// Who is waiting for a coordinated request's answer.
#[derive(Clone, Debug)]
enum Waiter {
    Local(ClientId),
    /// Another node forwarded the request; answer with `ForwardReply`.
    Remote {
        node: NodeId,
        req: ReqId,
    },
}

/// Requests in flight by id, in id order. Ids are handed out in order and a request is
/// entered under a fresh one (or put back under its own after a look), so the map is a window
/// of slots from the oldest id in flight: entering appends, finding and removing index, and
/// the window's front moves past the finished. Each slot holds a box (a coordination's state is
/// a few hundred bytes) beside its deadline and class: a long-running request holding the
/// window open costs 24 bytes per later id, not a state, and every request has a deadline of
/// seconds (expired on the tick), so the window spans at most that much of the id stream.
type PendingMap = Window<Pending>;

#[derive(Debug)]
struct Window<T> {
    /// The id of `slots[0]`.
    first: ReqId,
    slots: std::collections::VecDeque<Option<Slot<T>>>,
    len: usize,
    /// Entries per class (so a look for a class with none is free).
    classes: [u32; CLASSES],
    /// At or below every entry's deadline in line: lowered by each entry, set to the earliest
    /// by each walk of [`Window::due`]. While the clock is below it nothing is due, and the
    /// tick does not walk the window (requests end long before their deadlines).
    due_floor_ms: u64,
}

/// Classes of window entries (see [`WindowEntry::class`]).
const CLASSES: usize = 8;

// A slot of the window (see `PendingMap`): 24 bytes, free or not.
const _: () = assert!(std::mem::size_of::<Option<Slot<Pending>>>() == 24);

/// An entry beside its deadline (as it was entered) and class: the tick finds the due entries,
/// and the entries of one class, by walking these in line instead of every entry's box.
#[derive(Debug)]
struct Slot<T> {
    due_ms: u64,
    class: u8,
    entry: Box<T>,
}

/// An entry of a [`Window`]: when it is due (its deadline, which may move later but not
/// earlier while the entry is in the window), and its class (below [`CLASSES`], and which
/// does not change).
trait WindowEntry {
    fn due_ms(&self) -> u64;
    fn class(&self) -> u8;
}

impl<T> Default for Window<T> {
    fn default() -> Self {
        Window {
            first: 0,
            slots: Default::default(),
            len: 0,
            classes: [0; CLASSES],
            due_floor_ms: u64::MAX,
        }
    }
}

impl<T: WindowEntry> Window<T> {
    /// Enters `pending` under `req` (replacing what was there).
    fn insert(&mut self, req: ReqId, pending: T) {
        self.insert_boxed(req, Box::new(pending));
    }

    /// [`Window::insert`] of an entry in its box (one taken out by [`Window::remove_boxed`]).
    fn insert_boxed(&mut self, req: ReqId, pending: Box<T>) {
        if self.slots.is_empty() {
            self.first = req;
        }
        while req < self.first {
            // Put back below the window's front (which moved past it when it was taken out).
            self.slots.push_front(None);
            self.first -= 1;
        }
        let i = usize::try_from(req - self.first).expect("a window of requests fits in memory");
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        let slot = Slot {
            due_ms: pending.due_ms(),
            class: pending.class(),
            entry: pending,
        };
        self.due_floor_ms = self.due_floor_ms.min(slot.due_ms);
        self.classes[slot.class as usize] += 1;
        match self.slots[i].replace(slot) {
            None => self.len += 1,
            Some(old) => self.classes[old.class as usize] -= 1,
        }
    }

    fn index(&self, req: &ReqId) -> Option<usize> {
        usize::try_from(req.checked_sub(self.first)?).ok()
    }

    fn get(&self, req: &ReqId) -> Option<&T> {
        Some(&self.slots.get(self.index(req)?)?.as_ref()?.entry)
    }

    fn get_mut(&mut self, req: &ReqId) -> Option<&mut T> {
        let i = self.index(req)?;
        Some(&mut self.slots.get_mut(i)?.as_mut()?.entry)
    }

    fn remove(&mut self, req: &ReqId) -> Option<T> {
        self.remove_boxed(req).map(|entry| *entry)
    }

    /// [`Window::remove`], the entry left in its box (to be put back without moving it).
    fn remove_boxed(&mut self, req: &ReqId) -> Option<Box<T>> {
        let i = self.index(req)?;
        let slot = self.slots.get_mut(i)?.take()?;
        self.len -= 1;
        self.classes[slot.class as usize] -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first += 1;
        }
        Some(slot.entry)
    }

    /// The entries in id order (the tests compare it with a map's).
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = (ReqId, &T)> {
        let first = self.first;
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, slot)| Some((first + i as u64, &*slot.as_ref()?.entry)))
    }

    /// The entries of one class, in id order.
    fn of_class(&self, class: u8) -> impl Iterator<Item = &T> {
        // None of the class: nothing to walk.
        let walk = if self.count_of(class) == 0 {
            0
        } else {
            self.slots.len()
        };
        self.slots.range(..walk).filter_map(move |slot| match slot {
            Some(slot) if slot.class == class => Some(&*slot.entry),
            _ => None,
        })
    }

    /// How many entries of a class the window holds.
    fn count_of(&self, class: u8) -> usize {
        self.classes[class as usize] as usize
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The ids of the entries due at `now_ms` (deadline reached), in id order.
    fn due(&mut self, now_ms: u64) -> Vec<ReqId> {
        if now_ms < self.due_floor_ms {
            return Vec::new();
        }
        let mut floor = u64::MAX;
        let mut due = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            // Due ones included: the caller may keep some.
            floor = floor.min(slot.due_ms);
            // The deadline in line is the entry's or earlier (it may have moved later).
            if slot.due_ms <= now_ms && slot.entry.due_ms() <= now_ms {
                due.push(self.first + i as u64);
            }
        }
        self.due_floor_ms = floor;
        due
    }
}

impl WindowEntry for Pending {
    fn due_ms(&self) -> u64 {
        match self {
            Pending::Write(c) => c.deadline_ms,
            Pending::Read(c) => c.deadline_ms,
            Pending::Inspect(c) => c.deadline_ms,
            Pending::Forwarded { deadline_ms, .. } => *deadline_ms,
            Pending::Handoff(h) => h.deadline_ms,
            Pending::Collect(c) => c.deadline_ms,
            Pending::Transfer(t) => t.deadline_ms,
        }
    }

    fn class(&self) -> u8 {
        match self {
            Pending::Write(_) => WRITE,
            Pending::Read(_) => READ,
            Pending::Inspect(_) => INSPECT,
            Pending::Forwarded { .. } => FORWARDED,
            Pending::Handoff(_) => HANDOFF,
            Pending::Collect(_) => COLLECT,
            Pending::Transfer(_) => TRANSFER,
        }
    }
}

/// The classes of [`Pending`] entries (the request window counts and finds them by class).
const WRITE: u8 = 0;
const READ: u8 = 1;
const INSPECT: u8 = 2;
const FORWARDED: u8 = 3;
const HANDOFF: u8 = 4;
const COLLECT: u8 = 5;
const TRANSFER: u8 = 6;

#[derive(Debug)]
struct WriteCoord {
    waiter: Waiter,
    core: PutCore,
    /// Replicas not yet answered, each with the primary it stands in for (if a fallback). At
    /// the deadline the coordinator keeps a hint for each, so a replica that missed the write
    /// still gets it when it is back.
    awaiting: Vec<(NodeId, Option<NodeId>)>,
    key: Key,
    partition: PartitionId,
    object: Object,
    /// The answer for when the write is confirmed (handed over once).
    reply: Reply,
    deadline_ms: u64,
}

#[derive(Debug)]
struct ReadCoord {
    waiter: Waiter,
    request: Request,
    core: GetCore,
    deadline_ms: u64,
}

#[derive(Debug)]
struct InspectCoord {
    waiter: Waiter,
    key: Key,
    views: Vec<ReplicaView>,
    waiting: usize,
    deadline_ms: u64,
}

#[derive(Debug)]
struct Handoff {
    target: NodeId,
    hint_key: Vec<u8>,
    sent: Vec<u8>,
    deadline_ms: u64,
}

#[derive(Debug)]
enum Pending {
    Write(WriteCoord),
    Read(ReadCoord),
    Inspect(InspectCoord),
    Forwarded {
        client: ClientId,
        deadline_ms: u64,
    },
    Handoff(Handoff),
    /// Asking the other primaries whether they hold exactly this tombstone.
    Collect(Collect),
    /// Objects sent to a partition's owners, deleted here once all confirm.
    Transfer(Transfer),
}

#[derive(Debug)]
struct Collect {
    key: Key,
    partition: PartitionId,
    object: Object,
    awaiting: Vec<NodeId>,
    deadline_ms: u64,
}

#[derive(Debug)]
struct Transfer {
    partition: PartitionId,
    objects: Vec<(Key, Object)>,
    awaiting: Vec<NodeId>,
    deadline_ms: u64,
}

/// Where the tombstone sweep and the partition-transfer scan are.
#[derive(Debug, Default)]
struct Sweep {
    next_ms: u64,
    partition: u32,
    after: Option<Vec<u8>>,
    /// Partitions holding records this node does not own, as of the last scan.
    foreign: usize,
    next_transfer_ms: u64,
}

/// The exchange this node started and is waiting on, and when to start the next.
#[derive(Debug, Default)]
struct AaeState {
    next_ms: u64,
    cursor: usize,
    next_xid: u64,
    inflight: Option<AaeExchange>,
    /// An exchange that moved data is repeated at once with the same peer, until in sync.
    again: Option<(PartitionId, NodeId)>,
    /// The last exchanges moved data.
    streak: bool,
    /// A partition in which an exchange moved data, and its other replicas not yet compared
    /// with since: what one replica lacked, others may lack too, so the initiator goes round
    /// them all before walking on (or one replica's write would reach one peer per round of
    /// every partition).
    spread: Option<(PartitionId, Vec<NodeId>)>,
    /// After a restart: walk exchanges still to run at tick pace instead of the interval's
    /// (`usize::MAX`: one walk over every partition, counted at its first step). A restarted
    /// node may have lost unsynced writes, and the hints of writes it was coordinating when it
    /// stopped; one quick walk finds what its replicas lack (and the round of a repaired
    /// partition's replicas spreads it) instead of one exchange per interval.
    catch_up: Option<usize>,
    /// Exchanges until the next tree self-check.
    until_check: u32,
    /// Client requests since the last decision to start an exchange or not.
    requests: u64,
    /// Due exchanges put off in a row for client traffic.
    deferred: u32,
    /// Every partition this node is a primary of has its tree: the background builder has
    /// nothing to look for until the ring changes or a tree is dropped.
    trees_complete: bool,
}

/// What an update knows of the record it replaces, for the partition's hash tree.
#[derive(Clone, Copy, Debug)]
enum Prior {
    /// Not read with the update (or no tree followed it then): `track` reads it if needed.
    Unread,
    /// The replaced record's tree entry, hashed as it was read (`None`: there was none).
    Entry(Option<u64>),
}

impl Prior {
    /// What a read of a record leaves for its update: its entry, if a tree follows the record.
    fn read(follows: bool, entry: Option<u64>) -> Prior {
        if follows {
            Prior::Entry(entry)
        } else {
            Prior::Unread
        }
    }
}

/// The hints waiting for one primary.
#[derive(Debug, Default)]
struct Waiting {
    /// Hint records on disk.
    count: usize,
    /// While the primary is down, no look at its hints is needed before this: the earliest a
    /// hint in the batch `hand_off` looked at can expire (see there).
    quiet_until: Option<u64>,
}

/// The members a ring is built from: every member not leaving (up or down), or this node alone
/// when there is none (a ring needs a member).
fn ring_owners(membership: &Membership, me: &NodeId) -> Vec<NodeId> {
    let mut owners: Vec<NodeId> = membership.owners().cloned().collect();
    if owners.is_empty() {
        owners.push(me.clone());
    }
    owners
}

/// A partition's tree being built by scanning its records in key order, [`TREE_BUILD_BATCH`]
/// per tick, so a large partition never holds the node for a whole scan. Changes to records at
/// or before `after` (already scanned) are applied to it as they happen; later ones the scan
/// will read. When the partition already has a tree, this is its periodic check: the finished
/// build replaces it if they differ.
#[derive(Debug)]
struct TreeBuild {
    partition: PartitionId,
    tree: aae::Tree,
    after: Option<Vec<u8>>,
}

/// Records a tree build scans per tick.
const TREE_BUILD_BATCH: usize = 8192;

#[derive(Debug)]
struct AaeExchange {
    xid: u64,
    partition: PartitionId,
    peer: NodeId,
    deadline_ms: u64,
}

/// A stored hint: the copy a fallback holds for a primary, and when it was first stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct HintRecord {
    created_ms: u64,
    object: Object,
}

/// Request ids carry the node's generation (bumped and persisted by every `Node::open`) in
/// their high bits, so they never repeat across restarts: a late reply or acknowledgement
/// meant for an earlier life of this node is never taken for a request of this one (which
/// once let a stale `ReplicaReadReply` of one key be merged into a read of another, and read
/// repair spread it). 2^40 ids per life.
const REQ_ID_GENERATION_SHIFT: u32 = 40;

/// The metadata record of the members this node knows (with whether each is leaving).
const MEMBERS_RECORD: &str = "members.v2";

/// Forwarded requests remembered, so that one delivered twice (a retrying transport, a
/// duplicating network) is applied once: a counter increment or a write is not idempotent.
pub const FORWARDS_SEEN_MAX: usize = 16_384;

/// One driftkv node's protocol state. See the module docs for the caller's loop.
pub struct Node {
    cfg: NodeConfig,
    actor: Actor,
    hlc: Hlc,
    membership: Membership,
    /// The ring of the current owners, built when first asked for after they change (see
    /// [`Node::ring`]); never empty before the first change.
    ring: std::cell::OnceCell<Ring>,
    /// Decoded objects of the records read or written lately (see `objects`).
    objects: ObjectCache,
    /// Anti-entropy trees of the partitions built so far (see `aae`).
    trees: crate::fasthash::FastMap<PartitionId, aae::Tree>,
    /// The tree being built from storage, a batch of records per tick (one at a time).
    building: Option<TreeBuild>,
    aae: AaeState,
    sweep: Sweep,
    next_req: ReqId,
    pending: PendingMap,
    /// Forwards taken recently, by sender and request id (unique across the sender's lives),
    /// oldest first with when to forget them; at most `FORWARDS_SEEN_MAX`.
    forwards_seen: BTreeSet<(NodeId, ReqId)>,
    forwards_seen_order: VecDeque<(NodeId, ReqId, u64)>,
    /// Hint records on disk, per primary they wait for.
    hints: BTreeMap<NodeId, Waiting>,
    /// The member table changed since it was last written (see [`Node::save_membership`]).
    membership_unsaved: bool,
    stats: Stats,
}

/// The node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Node {
    /// Opens a node over its store: counts the hints waiting on disk, recalls the members it
    /// knew, and starts a new generation (so gossip tells its peers it restarted).
    pub fn open(cfg: NodeConfig, store: &mut dyn Store) -> Result<Node, NodeError> {
        let generation_key = keys::meta_key("generation");
        let generation = match store.get(&generation_key)? {
            Some(raw) => {
                let bytes: [u8; 8] = raw.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt("the generation record is not 8 bytes".into())
                })?;
                u64::from_be_bytes(bytes) + 1
            }
            None => 1,
        };
        store.put(&generation_key, &generation.to_be_bytes())?;
        let remembered: Vec<Remembered> = match store.get(&keys::meta_key(MEMBERS_RECORD))? {
            Some(raw) => driftkv_wire::decode(1, &raw).map_err(|e| {
                StoreError::Corrupt(format!("the membership record is unreadable: {e}"))
            })?,
            None => Vec::new(),
        };
        let membership = Membership::new(
            cfg.id.clone(),
            cfg.listen.clone(),
            cfg.http.clone(),
            generation,
            cfg.gossip.clone(),
            cfg.seeds.clone(),
            remembered,
        );
        // As `apply_membership` builds it: a node restarted while leaving owns nothing from
        // the start (and goes on handing its data off), without waiting for a member change.
        let ring = Ring::new(cfg.ring.clone(), ring_owners(&membership, &cfg.id))
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let mut hints: BTreeMap<NodeId, Waiting> = BTreeMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = store.scan(&[keys::HINT], after.as_deref(), 1024)?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            for (raw, _) in &batch {
                if let Some((node, _)) = keys::parse_hint_key(raw) {
                    hints.entry(node).or_default().count += 1;
                }
            }
        }
        Ok(Node {
            actor: Actor::new(cfg.id.as_str(), cfg.incarnation),
            hlc: Hlc::new(),
            membership,
            ring: std::cell::OnceCell::from(ring),
            objects: ObjectCache::default(),
            trees: Default::default(),
            building: None,
            // Nodes walk their partitions from different places, so two replicas rarely
            // start the same exchange against each other at once (and pay it twice).
            aae: AaeState {
                cursor: xxhash_rust::xxh3::xxh3_64(cfg.id.as_str().as_bytes()) as u32 as usize,
                catch_up: (generation > 1).then_some(usize::MAX),
                ..AaeState::default()
            },
            sweep: Sweep::default(),
            next_req: (generation << REQ_ID_GENERATION_SHIFT) + 1,
            pending: PendingMap::default(),
            forwards_seen: BTreeSet::new(),
            forwards_seen_order: VecDeque::new(),
            hints,
            membership_unsaved: false,
            stats: Stats::default(),
            cfg,
        })
    }

    pub fn id(&self) -> &NodeId {
        &self.cfg.id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Takes the loop's sync figures into the node's counters.
    pub fn note_driver(&mut self, counts: crate::driver::DriverCounts) {
        self.stats.syncs_failed = counts.syncs_failed;
        self.stats.confirmations_refused = counts.confirmations_refused;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The ring of the current owners. Built when first asked for after the owners changed: a
    /// node learning a large cluster by gossip changes its owners many times between two uses
    /// (a thousand-node bootstrap built 13,000 rings and used 800 of them). A ring is a pure
    /// function of the owners, so building it later changes nothing but when it is built.
    pub fn ring(&self) -> &Ring {
        self.ring.get_or_init(|| {
            Ring::new(
                self.cfg.ring.clone(),
                ring_owners(&self.membership, &self.cfg.id),
            )
            .expect("the config was validated when the node opened and members are never empty")
        })
    }

    /// Every member with its state, in id order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.membership.view()
    }

    pub fn hints_pending(&self) -> usize {
        self.hints.values().map(|w| w.count).sum()
    }

    pub fn requests_pending(&self) -> usize {
        self.pending.len()
    }

    /// Sets the member view by hand (tests, fixed clusters); gossip no longer changes it.
    pub fn set_members(&mut self, members: impl IntoIterator<Item = MemberInfo>) {
        let members: Vec<MemberInfo> = members.into_iter().collect();
        self.membership.pin(&members);
        self.apply_membership(Change {
            members: true,
            states: true,
            persist: false,
        });
    }

    /// The listen address of a member, for the shell to send to.
    pub fn address_of(&self, id: &NodeId) -> Option<&str> {
        self.membership.address(id)
    }

    /// Refreshes the view (and the ring, when the member set changed) after gossip.
    fn apply_membership(&mut self, change: Change) {
        // Leaving members own nothing; everyone else does, up or down (so a change of states
        // alone leaves the ring as it is). Compared in place: gossip may report a change that
        // leaves the owners as they were. A ring not built since the last change is already
        // out of date (and the trees already incomplete): it is built when next asked for.
        if change.members
            && let Some(ring) = self.ring.get()
        {
            let same = if self.membership.owners().next().is_none() {
                ring.members() == std::slice::from_ref(&self.cfg.id)
            } else {
                self.membership.owners().eq(ring.members().iter())
            };
            if !same {
                self.aae.trees_complete = false;
                self.ring = std::cell::OnceCell::new();
            }
        }
    }

    /// Notes a membership change worth keeping; it is written by the next tick (see
    /// [`Node::save_membership`]).
    fn note_membership(&mut self, change: Change) {
        self.membership_unsaved |= change.members || change.persist;
    }

    /// Writes the member table if a change since the last write is worth keeping. Ticks do,
    /// so gossip that changes the table many times between two ticks (a thousand members
    /// learning of each other) writes it once; what a crash in between loses, the restarted
    /// node learns again from its first gossip. A leave writes at once (it must survive).
    fn save_membership(&mut self, store: &mut dyn Store, change: Change) {
        self.note_membership(change);
        if !std::mem::take(&mut self.membership_unsaved) {
            return;
        }
        let record = driftkv_wire::encode(1, &self.membership.remembered_refs());
        let _ = store.delete(&keys::meta_key("members"));
        if store.put(&keys::meta_key(MEMBERS_RECORD), &record).is_err() {
            self.stats.storage_errors += 1;
        }
    }

    fn is_up(&self, node: &NodeId) -> bool {
        self.membership.state(node) == Some(MemberState::Up)
    }

    /// Whether this forward is new (and remembers it). A copy is forgotten well after the
    /// sender gave up on it (it waits twice the request timeout; this keeps it four times),
    /// or once `FORWARDS_SEEN_MAX` newer ones came.
    fn first_delivery_of_forward(&mut self, from: &NodeId, req: ReqId, now_ms: u64) -> bool {
        while let Some((node, id, forget_ms)) = self.forwards_seen_order.front() {
            if *forget_ms > now_ms && self.forwards_seen_order.len() < FORWARDS_SEEN_MAX {
                break;
            }
            self.forwards_seen.remove(&(node.clone(), *id));
            self.forwards_seen_order.pop_front();
        }
        if !self.forwards_seen.insert((from.clone(), req)) {
            return false;
        }
        let forget_ms = now_ms.saturating_add(self.cfg.request_timeout_ms.saturating_mul(4));
        self.forwards_seen_order
            .push_back((from.clone(), req, forget_ms));
        true
    }

    fn new_req(&mut self) -> ReqId {
        let id = self.next_req;
        self.next_req += 1;
        id
    }

    /// Takes one input at wall-clock time `now_ms`; appends what it wants done to `out`.
    pub fn handle(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        input: Input,
        out: &mut Vec<Output>,
    ) {
        match input {
            Input::Request { client, request } => {
                self.aae.requests += 1;
                self.on_request(store, now_ms, Waiter::Local(client), request, false, out)
            }
            Input::Message { from, message } => {
                let change = self.membership.heard_from(&from, now_ms);
                self.apply_membership(change);
                self.on_message(store, now_ms, from, message, out)
            }
            Input::Tick => self.on_tick(store, now_ms, out),
        }
    }

    /// Answers a write that is now stored here and on enough replicas: a confirmation of
    /// durability, held back by the driver until this node's sync succeeds.
    fn confirm(&mut self, waiter: Waiter, reply: Reply, out: &mut Vec<Output>) {
        self.answer(waiter, reply, out);
        if let Some(last) = out.pop() {
            out.push(last.durable());
        }
    }

    fn answer(&mut self, waiter: Waiter, reply: Reply, out: &mut Vec<Output>) {
        if matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::Unavailable,
                ..
            }
        ) {
            self.stats.unavailable += 1;
        }
        match waiter {
            Waiter::Local(client) => out.push(Output::Reply { client, reply }),
            Waiter::Remote { node, req } => out.push(Output::Send {
                to: node,
                message: Message::ForwardReply { req, reply },
            }),
        }
    }

    fn validate(&self, request: &Request) -> Result<(), String> {
        let key = request.key();
        if key.key().is_empty() {
            return Err("key is empty".into());
        }
        if key.key().len() > self.cfg.key_bytes_max {
            return Err(format!(
                "key is {} bytes, the limit is {}",
                key.key().len(),
                self.cfg.key_bytes_max
            ));
        }
        if key.bucket().is_empty() || key.bucket().len() > self.cfg.bucket_bytes_max {
            return Err(format!(
                "bucket name must be 1 to {} bytes",
                self.cfg.bucket_bytes_max
            ));
        }
        match request {
            Request::Put { value: Some(v), .. } | Request::Overwrite { value: Some(v), .. }
                if v.len() > self.cfg.value_bytes_max =>
            {
                Err(format!(
                    "value is {} bytes, the limit is {}",
                    v.len(),
                    self.cfg.value_bytes_max
                ))
            }
            Request::SetUpdate { add, remove, .. } => {
                if add.len() + remove.len() > self.cfg.set_update_members_max {
                    return Err(format!(
                        "a set update may name at most {} members",
                        self.cfg.set_update_members_max
                    ));
                }
                match add
                    .iter()
                    .chain(remove)
                    .find(|m| m.len() > self.cfg.key_bytes_max)
                {
                    Some(m) => Err(format!(
                        "set member is {} bytes, the limit is {}",
                        m.len(),
                        self.cfg.key_bytes_max
                    )),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// The partition `key` lives in (from its placement hash).
    fn partition_of(&self, key: &Key) -> PartitionId {
        self.cfg.ring.partition_for_hash(key.key_hash())
    }

    /// Replicas for a key in this bucket (the bucket's N, at most the ring's).
    fn n_for(&self, key: &Key) -> usize {
        let ring_n = self.ring().n_effective();
        self.cfg
            .bucket(key.bucket())
            .n
            .map_or(ring_n, |n| n.clamp(1, ring_n))
    }

    /// Up primaries, then fallbacks standing in for down primaries: where a request goes.
    fn targets(&self, partition: PartitionId, n: usize) -> Vec<(NodeId, Option<NodeId>)> {
        let owners = self.ring().owners(partition);
        let primaries = &owners[..n.min(owners.len())];
        // The common case, every primary up: the preference list would be just them, in order.
        if primaries.iter().all(|node| self.is_up(node)) {
            return primaries.iter().map(|node| (node.clone(), None)).collect();
        }
        self.ring()
            .preference_list(partition, |node| self.is_up(node))
            .into_iter()
            .filter_map(|t| match t.role {
                Role::Primary => primaries.contains(&t.node).then_some((t.node, None)),
                Role::Fallback { for_node } => primaries
                    .contains(&for_node)
                    .then_some((t.node, Some(for_node))),
            })
            .collect()
    }

    /// Down primaries of `partition` that no fallback in `targets` stands in for.
    fn uncovered_primaries(
        &self,
        partition: PartitionId,
        n: usize,
        targets: &[(NodeId, Option<NodeId>)],
    ) -> Vec<NodeId> {
        self.ring()
            .owners(partition)
            .iter()
            .take(n)
            .filter(|p| {
                !targets
                    .iter()
                    .any(|(node, hint)| node == *p || hint.as_ref() == Some(*p))
            })
            .cloned()
            .collect()
    }

    fn on_request(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        waiter: Waiter,
        request: Request,
        forwarded: bool,
        out: &mut Vec<Output>,
    ) {
        if let Err(message) = self.validate(&request) {
            return self.answer(waiter, Reply::error(ErrorKind::BadRequest, message), out);
        }
        // A node joining a cluster knows only itself until it hears from a member: its ring
        // would make it the only replica of every key, and a write acknowledged at "quorum"
        // would sit on one disk. It serves once it has joined.
        if !self.cfg.seeds.is_empty() && self.membership.count() <= 1 {
            let reply = Reply::error(
                ErrorKind::Unavailable,
                "this node has not reached a member of the cluster it joins yet; \
                 ask another node, or again in a moment",
            );
            return self.answer(waiter, reply, out);
        }
        let key = request.key().clone();
        let partition = self.partition_of(&key);
        let n = self.n_for(&key);
        let props = self.cfg.bucket(key.bucket());
        let level = |q: Quorum, bucket: Option<Quorum>, default: Quorum| {
            q.resolve(n, bucket.unwrap_or(default))
        };
        match &request {
            Request::Inspect { .. } => {
                self.start_inspect(store, now_ms, waiter, key, partition, n, out)
            }
            Request::Get { r, .. }
            | Request::SessionGet { r, .. }
            | Request::CounterGet { r, .. }
            | Request::SetGet { r, .. } => match level(*r, props.r, self.cfg.r) {
                Ok(needed) => self.start_read(
                    store,
                    now_ms,
                    waiter,
                    request.clone(),
                    partition,
                    n,
                    needed,
                    props.mode,
                    out,
                ),
                Err(e) => self.answer(waiter, Reply::error(ErrorKind::BadRequest, e), out),
            },
            Request::Put { w, .. }
            | Request::Overwrite { w, .. }
            | Request::CounterAdd { w, .. }
            | Request::SetUpdate { w, .. } => {
                let needed = match level(*w, props.w, self.cfg.w) {
                    Ok(needed) => needed,
                    Err(e) => {
                        return self.answer(waiter, Reply::error(ErrorKind::BadRequest, e), out);
                    }
                };
                let targets = self.targets(partition, n);
                // The coordinator issues the new dot (or counter total) under its own actor,
                // on top of its own copy. A primary keeps its copy; a fallback's is handed over
                // and deleted later, and a fallback coordinating again from an empty copy would
                // reissue dots and totals it already used: an acknowledged write silently lost
                // (found by the simulator). So while some primary is up (targets list up
                // primaries first), only a primary coordinates; a fallback does only when every
                // primary is down.
                let primary_up = targets.first().is_some_and(|(_, hint)| hint.is_none());
                let coordinates_here = targets
                    .iter()
                    .any(|(node, hint)| *node == self.cfg.id && (hint.is_none() || !primary_up));
                match (&waiter, targets.first()) {
                    // A write that arrives elsewhere goes to the first target.
                    (Waiter::Local(client), Some((first, _)))
                        if !coordinates_here && !forwarded =>
                    {
                        let (client, to) = (*client, first.clone());
                        let req = self.new_req();
                        self.stats.forwarded += 1;
                        self.pending.insert(
                            req,
                            Pending::Forwarded {
                                client,
                                deadline_ms: now_ms + self.cfg.request_timeout_ms * 2,
                            },
                        );
                        out.push(Output::Send {
                            to,
                            message: Message::Forward { req, request },
                        });
                    }
                    // A forwarded write is coordinated here even if this node's view disagrees
                    // that it is a replica, rather than bounce it around.
                    _ => self.coordinate_write(
                        store, now_ms, waiter, request, partition, n, targets, needed, props.mode,
                        out,
                    ),
                }
            }
        }
    }

    fn load(
        &mut self,
        store: &dyn Store,
        partition: PartitionId,
        key: &Key,
    ) -> Result<Option<Object>, String> {
        if let Some(cached) = self.cached(store, partition, key) {
            return Ok(Some(cached.object.clone()));
        }
        let record_key = keys::data_key(partition, key);
        self.read_record(store, partition, &record_key, key)
            .map(|(object, _)| object)
    }

    /// Reads a data record, decoded (from the object cache, or decoded in place with no copy of
    /// the stored bytes), with what an update of it will need to know for the partition's hash
    /// tree.
    fn read_record(
        &mut self,
        store: &dyn Store,
        partition: PartitionId,
        record_key: &[u8],
        key: &Key,
    ) -> Result<(Option<Object>, Prior), String> {
        let follows = self.tree_follows(partition, record_key);
        if let Some(cached) = self.cached(store, partition, key) {
            let prior = Prior::read(follows, Some(cached.entry));
            return Ok((Some(cached.object.clone()), prior));
        }
        let mut decoded = Ok(None);
        let mut entry = None;
        let read = store.get_with(record_key, &mut |raw| {
            if let Some(raw) = raw {
                decoded = driftkv_wire::decode_object(raw).map(Some);
                entry = Some(aae::entry_hash(record_key, raw));
            }
        });
        if let Err(e) = read {
            self.stats.storage_errors += 1;
            return Err(e.to_string());
        }
        let object = decoded.map_err(|e| {
            self.stats.storage_errors += 1;
            format!("stored record of {key:?} is unreadable: {e}")
        })?;
        if let (Some(object), Some(entry)) = (&object, entry) {
            let cached = Cached {
                partition,
                object: object.clone(),
                entry,
            };
            self.objects.insert(key, cached);
        }
        Ok((object, Prior::read(follows, entry)))
    }

    /// The object cache's entry for `key`, if it has one; debug builds hold every hit to the
    /// store (see [`check_cached`]).
    fn cached(&self, store: &dyn Store, partition: PartitionId, key: &Key) -> Option<&Cached> {
        let cached = self.objects.get(partition, key)?;
        #[cfg(debug_assertions)]
        check_cached(store, &keys::data_key(partition, key), key, cached);
        #[cfg(not(debug_assertions))]
        let _ = store;
        Some(cached)
    }

    /// Saves a record read with [`Node::read_record`] just before (nothing in between wrote it).
    fn save_over(
        &mut self,
        store: &mut dyn Store,
        partition: PartitionId,
        key: &Key,
        record_key: Vec<u8>,
        prior: Prior,
        object: Object,
    ) -> Result<(), String> {
        let record = driftkv_wire::encode_object(&object);
        let entry = aae::entry_hash(&record_key, &record);
        self.track(store, partition, key, &record_key, Some(entry), prior);
        if let Err(e) = store.put_owned(record_key, record) {
            // The store may or may not hold the old record now: nothing cached is certain,
            // and the tree (told of the new record above) must be built again.
            self.objects.remove(key);
            self.forget_tree(partition);
            self.stats.storage_errors += 1;
            return Err(e.to_string());
        }
        let cached = Cached {
            partition,
            object,
            entry,
        };
        self.objects.insert(key, cached);
        Ok(())
    }

    /// Deletes a key's record (tombstone collection, handoff of a partition no longer owned).
    fn remove(
        &mut self,
        store: &mut dyn Store,
        partition: PartitionId,
        key: &Key,
    ) -> Result<(), String> {
        let record_key = keys::data_key(partition, key);
        let prior = match self.objects.get(partition, key) {
            Some(cached) => Prior::read(
                self.tree_follows(partition, &record_key),
                Some(cached.entry),
            ),
            None => Prior::Unread,
        };
        self.track(store, partition, key, &record_key, None, prior);
        self.objects.remove(key);
        store.delete(&record_key).map_err(|e| {
            self.forget_tree(partition);
            self.stats.storage_errors += 1;
            e.to_string()
        })
    }

    /// Keeps the partition's hash tree (when built, or being built and past this record) in
    /// step with a record about to change.
    fn track(
        &mut self,
        store: &dyn Store,
        partition: PartitionId,
        key: &Key,
        record_key: &[u8],
        new: Option<u64>,
        prior: Prior,
    ) {
        let built = self.trees.contains_key(&partition);
        let scanned = self.build_scanned(partition, record_key);
        if !built && !scanned {
            return;
        }
        let old = match prior {
            Prior::Entry(entry) => Ok(entry),
            Prior::Unread => store
                .get(record_key)
                .map(|old| old.map(|old| aae::entry_hash(record_key, &old))),
        };
        let old = match old {
            Ok(old) => old,
            Err(_) => {
                // Unknown old state: drop the trees; the next exchange rebuilds from storage.
                self.stats.storage_errors += 1;
                self.forget_tree(partition);
                return;
            }
        };
        let segment = keys::segment_of_data_key(record_key).expect("made by keys::data_key");
        debug_assert_eq!(segment, aae::segment_of(key));
        let apply = |tree: &mut aae::Tree| {
            for entry in [old, new].into_iter().flatten() {
                tree.toggle(segment, entry);
            }
        };
        if let Some(tree) = self.trees.get_mut(&partition) {
            apply(tree);
        }
        if scanned && let Some(b) = &mut self.building {
            apply(&mut b.tree);
        }
    }

    /// Drops a partition's tree (and its build): its records are in a state the tree cannot
    /// know (a storage error), so it is built again from storage before its next exchange.
    fn forget_tree(&mut self, partition: PartitionId) {
        self.trees.remove(&partition);
        self.aae.trees_complete = false;
        if self
            .building
            .as_ref()
            .is_some_and(|b| b.partition == partition)
        {
            self.building = None;
        }
    }

    /// Prefetches the hash-tree leaf a write of this record will update: the trees are large
    /// and their leaves touched at random, so the leaf is rarely in cache, and asked for here
    /// it arrives while the record is read, merged and encoded (see `driftkv_hint`).
    fn warm_leaf(&self, partition: PartitionId, key: &Key) {
        if let Some(tree) = self.trees.get(&partition) {
            driftkv_hint::prefetch(tree.leaf_ref(aae::segment_of(key)));
        }
    }

    /// Whether a hash tree follows this record now: the partition's tree is built, or being
    /// built and its scan is past the record.
    fn tree_follows(&self, partition: PartitionId, record_key: &[u8]) -> bool {
        self.trees.contains_key(&partition) || self.build_scanned(partition, record_key)
    }

    /// Whether the tree being built is of this partition and its scan is past the record.
    fn build_scanned(&self, partition: PartitionId, record_key: &[u8]) -> bool {
        self.building.as_ref().is_some_and(|b| {
            b.partition == partition && b.after.as_deref().is_some_and(|a| record_key <= a)
        })
    }

    /// Diagnostics (tests, the bench): how many anti-entropy trees are built, and whether each
    /// equals a tree built afresh by one full scan of its partition now.
    pub fn aae_trees_check(&self, store: &dyn Store) -> (usize, bool) {
        let consistent = self.trees.iter().all(|(&partition, kept)| {
            let mut fresh = aae::Tree::default();
            let prefix = keys::partition_prefix(partition);
            let mut after: Option<Vec<u8>> = None;
            loop {
                let Ok(batch) = store.scan(&prefix, after.as_deref(), 4096) else {
                    return false;
                };
                let Some((last, _)) = batch.last() else { break };
                after = Some(last.clone());
                add_records(&mut fresh, &batch);
            }
            fresh == *kept
        });
        (self.trees.len(), consistent)
    }

    /// The partition's hash tree, if built.
    fn tree(&self, partition: PartitionId) -> Result<&aae::Tree, ()> {
        self.trees.get(&partition).ok_or(())
    }

    /// Starts building the partition's tree unless a build is under way.
    fn begin_tree_build(&mut self, partition: PartitionId) {
        if self.building.is_none() {
            self.building = Some(TreeBuild {
                partition,
                tree: aae::Tree::default(),
                after: None,
            });
        }
    }

    /// Scans the next batch of the tree under construction; a finished build becomes the
    /// partition's tree (a check that finds the kept tree different replaces it, and counts).
    fn tree_build_step(&mut self, store: &dyn Store) {
        if self.building.is_none() && self.cfg.aae.enabled && !self.aae.trees_complete {
            // In the background, the trees of the partitions this node is a primary of, so
            // they are ready when exchanges come (after a restart, or a change of ownership).
            let missing = self
                .ring()
                .owned_by(&self.cfg.id)
                .iter()
                .copied()
                .find(|p| !self.trees.contains_key(p));
            match missing {
                Some(partition) => self.begin_tree_build(partition),
                None => self.aae.trees_complete = true,
            }
        }
        let Some(b) = &mut self.building else {
            return;
        };
        let prefix = keys::partition_prefix(b.partition);
        let batch = match store.scan(&prefix, b.after.as_deref(), TREE_BUILD_BATCH) {
            Ok(batch) => batch,
            Err(_) => {
                self.stats.storage_errors += 1;
                self.building = None;
                return;
            }
        };
        add_records(&mut b.tree, &batch);
        if let Some((last, _)) = batch.last() {
            b.after = Some(last.clone());
        }
        if batch.len() == TREE_BUILD_BATCH {
            return;
        }
        let TreeBuild {
            partition, tree, ..
        } = self.building.take().expect("checked above");
        match self.trees.get(&partition) {
            None => self.stats.aae_tree_builds += 1,
            Some(kept) if *kept != tree => self.stats.aae_tree_mismatches += 1,
            Some(_) => return,
        }
        self.trees.insert(partition, tree);
    }

    /// The records of one segment: `(key, entry hash, record)`.
    fn segment_entries(
        &mut self,
        store: &dyn Store,
        partition: PartitionId,
        segment: u16,
    ) -> Result<Vec<(Key, u64, Vec<u8>)>, String> {
        let prefix = keys::segment_prefix(partition, segment);
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = store.scan(&prefix, after.as_deref(), 1024).map_err(|e| {
                self.stats.storage_errors += 1;
                e.to_string()
            })?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            for (raw_key, raw) in batch {
                if let Some((_, key)) = keys::parse_data_key(&raw_key) {
                    out.push((key, aae::entry_hash(&raw_key, &raw), raw));
                }
            }
        }
        Ok(out)
    }

    /// Merges `incoming` into the stored state of `key`; returns whether that changed it.
    fn merge_into_store(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        partition: PartitionId,
        key: &Key,
        incoming: &Object,
    ) -> Result<bool, String> {
        if let Object::Register(r) = incoming {
            // So a later LWW write coordinated here orders after what it just learned.
            self.hlc.observe(r.timestamp_max(), now_ms);
        }
        let mode = self.cfg.bucket(key.bucket()).mode;
        self.warm_leaf(partition, key);
        let record_key = keys::data_key(partition, key);
        let (local, prior) = self.read_record(store, partition, &record_key, key)?;
        let merged = match local {
            None => incoming.clone(),
            Some(mut local) => {
                let outcome = local.merge(mode, incoming);
                self.stats.conflicts += outcome.concurrent as u64;
                self.stats.lww_discarded += outcome.lww_discarded as u64;
                self.stats.dot_clashes += outcome.dot_clashes as u64;
                if !outcome.changed {
                    return Ok(false);
                }
                local
            }
        };
        // A write arrived that this replica did not have: how long after it was made.
        if let Object::Register(r) = incoming {
            let made = r.timestamp_max().physical_ms();
            if made > 0 {
                self.stats
                    .replication_lag_ms
                    .record(now_ms.saturating_sub(made));
            }
        }
        self.save_over(store, partition, key, record_key, prior, merged)?;
        Ok(true)
    }

    /// Merges a copy in where no one waits for the outcome (a repair): a failure is counted.
    fn merge_here(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        partition: PartitionId,
        key: &Key,
        object: &Object,
    ) {
        if self
            .merge_into_store(store, now_ms, partition, key, object)
            .is_err()
        {
            self.stats.repairs_failed += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn coordinate_write(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        waiter: Waiter,
        request: Request,
        partition: PartitionId,
        n: usize,
        targets: Vec<(NodeId, Option<NodeId>)>,
        needed: usize,
        mode: ConflictMode,
        out: &mut Vec<Output>,
    ) {
        self.stats.writes += 1;
        if targets.len() < needed {
            return self.answer(waiter, too_few_reachable(targets.len(), needed), out);
        }
        let key = request.key().clone();
        self.warm_leaf(partition, &key);
        let record_key = keys::data_key(partition, &key);
        let (local, prior) = match self.read_record(store, partition, &record_key, &key) {
            Ok(read) => read,
            Err(e) => return self.answer(waiter, Reply::error(ErrorKind::Internal, e), out),
        };
        let kind = match &request {
            Request::Put { .. } | Request::Overwrite { .. } => ObjectKind::Register,
            Request::CounterAdd { .. } => ObjectKind::Counter,
            _ => ObjectKind::Set,
        };
        let mut object = local.unwrap_or_else(|| Object::empty(kind));
        let reply = match (&mut object, request) {
            (Object::Register(reg), Request::Put { value, context, .. }) => {
                let context = match self.bound_context(context, reg.context()) {
                    Ok(c) => c,
                    Err(e) => {
                        return self.answer(waiter, Reply::error(ErrorKind::BadRequest, e), out);
                    }
                };
                self.hlc.observe(reg.timestamp_max(), now_ms);
                let ts = self.hlc.now(now_ms);
                if let Err(e) = reg.write(mode, &self.actor, &context, value, ts) {
                    return self.answer(waiter, exhausted(e), out);
                }
                Reply::Written {
                    context: reg.context().clone(),
                }
            }
            (Object::Register(reg), Request::Overwrite { value, .. }) => {
                self.hlc.observe(reg.timestamp_max(), now_ms);
                let ts = self.hlc.now(now_ms);
                let context = reg.context().clone();
                if let Err(e) = reg.write(mode, &self.actor, &context, value, ts) {
                    return self.answer(waiter, exhausted(e), out);
                }
                Reply::Written {
                    context: reg.context().clone(),
                }
            }
            (Object::Counter(counter), Request::CounterAdd { delta, .. }) => {
                // Counters are 64-bit signed integers, as in Redis: an increment that would
                // take the value this replica knows outside that range is refused, not
                // applied. (Concurrent increments through other nodes can still sum past it;
                // readers render the exact value.)
                let before = counter.value();
                let applied = counter.apply(&self.actor, delta).is_ok();
                let after = counter.value();
                // Within range, or (after concurrent increments through several nodes summed
                // past it) a step back towards it: such a counter can still be brought back.
                let in_range = i64::try_from(after).is_ok() || after.abs() < before.abs();
                if !(applied && in_range) {
                    let message =
                        "increment or decrement would overflow the counter's 64-bit range";
                    return self.answer(waiter, Reply::error(ErrorKind::BadRequest, message), out);
                }
                Reply::Counter {
                    value: counter.value(),
                }
            }
            (Object::Set(set), Request::SetUpdate { add, remove, .. }) => {
                for m in &remove {
                    set.remove(m);
                }
                for m in add {
                    if let Err(e) = set.add(&self.actor, m) {
                        return self.answer(waiter, exhausted(e), out);
                    }
                }
                Reply::Written {
                    context: set.context().clone(),
                }
            }
            (held, _) => {
                let message = format!("key holds a {}, not a {}", held.kind().name(), kind.name());
                return self.answer(waiter, Reply::error(ErrorKind::WrongType, message), out);
            }
        };
        if let Err(e) = self.within_limits(&object) {
            self.stats.writes_refused_limits += 1;
            return self.answer(waiter, Reply::error(ErrorKind::BadRequest, e), out);
        }
        if let Err(e) = self.save_over(store, partition, &key, record_key, prior, object.clone()) {
            return self.answer(waiter, Reply::error(ErrorKind::Internal, e), out);
        }
        // Down primaries with no fallback (a cluster of exactly N nodes has none) get their
        // copy from a hint kept here, as Cassandra's coordinators do.
        if self.cfg.hinted_handoff {
            for primary in self.uncovered_primaries(partition, n, &targets) {
                if primary != self.cfg.id {
                    self.store_hint(store, now_ms, &primary, partition, &key, &object);
                }
            }
        }
        let req = self.new_req();
        let mut awaiting = Vec::with_capacity(targets.len());
        let mut local = 0;
        for (node, hint) in &targets {
            if *node == self.cfg.id {
                if let Some(primary) = hint {
                    self.store_hint(store, now_ms, primary, partition, &key, &object);
                }
                local = 1;
                continue;
            }
            awaiting.push((node.clone(), hint.clone()));
            let message = Message::ReplicaWrite {
                req,
                key: key.clone(),
                object: object.clone(),
                hint: hint.clone(),
            };
            out.push(Output::Send {
                to: node.clone(),
                message,
            });
        }
        let mut coord = WriteCoord {
            waiter,
            core: PutCore::new(needed, awaiting.len() + 1),
            awaiting,
            key,
            partition,
            object,
            reply,
            deadline_ms: now_ms + self.cfg.request_timeout_ms,
        };
        debug_assert!(
            local == 1 || !targets.is_empty(),
            "the coordinator stored the write itself"
        );
        self.progress_write(&mut coord, out);
        if !coord.awaiting.is_empty() {
            self.pending.insert(req, Pending::Write(coord));
        }
    }

    /// A client's context as this coordinator may trust it. A token is only checksummed, so
    /// whatever it claims is checked against what this replica holds before it is used:
    /// - no actor may claim more than [`COUNTER_MAX`] events (refused: only a forged token does);
    /// - this node's own actor claims at most what this node issued for the key (it is the only
    ///   issuer of its dots, and holds every one of them);
    /// - another actor claims at most [`CONTEXT_AHEAD_MAX`] events beyond what this replica
    ///   has seen of it, so no forged context can push another node's counter for the key
    ///   near the end of its range (it would take 2^28 forged writes);
    /// - an actor this replica has never seen for the key is kept only while the key's context
    ///   stays within [`CONTEXT_ACTORS_MAX`] actors, so forged contexts (invented names, or
    ///   members under invented incarnations) cannot grow it without bound.
    ///
    /// A client that read a replica ahead of this one names actors this one has not seen yet,
    /// possibly of a node that joined moments ago and is not in this node's membership yet:
    /// they are kept (dropping unseen actors made the write not cover values it had read,
    /// which came back as siblings: the simulator's checker found such spurious conflicts in
    /// one seed of twenty, and in one of twenty of the churn sweep when only members' actors
    /// were kept). Only a key whose context is already full loses such claims, so the price of
    /// an attack is at worst a spurious sibling, never a lost write or a key no one can write.
    fn bound_context(
        &mut self,
        mut client: VersionVector,
        held: &VersionVector,
    ) -> Result<VersionVector, String> {
        if client.exceeds_counter_max() {
            return Err(format!(
                "the causal context claims more than {COUNTER_MAX} events of one node: it was not issued by this cluster"
            ));
        }
        let me = &self.actor;
        let mut room = CONTEXT_ACTORS_MAX.saturating_sub(held.len());
        let changed = client.restrict(
            |actor, _| {
                if held.get(actor) > 0 {
                    return true;
                }
                // Only names a node could have (ids are at most 64 characters), so a full
                // context stays far within the token's length limit.
                if room > 0 && is_node_name(&actor.node) {
                    room -= 1;
                    return true;
                }
                false
            },
            |actor| {
                let seen = held.get(actor);
                if actor == me {
                    seen
                } else {
                    seen.saturating_add(CONTEXT_AHEAD_MAX)
                }
            },
        );
        if changed {
            self.stats.contexts_trimmed += 1;
        }
        Ok(client)
    }

    /// Whether a write's resulting object stays within the per-key limits: `siblings_max`
    /// values (Riak's `max_siblings`) and `object_bytes_max` bytes of values or set members,
    /// so that every replica can still receive it in one frame.
    fn within_limits(&self, object: &Object) -> Result<(), String> {
        let bytes = match object {
            Object::Register(reg) => {
                let siblings = reg.sibling_count();
                if siblings > self.cfg.siblings_max {
                    return Err(format!(
                        "the key would have {siblings} siblings, over siblings_max ({}): read it and write with its context to resolve them",
                        self.cfg.siblings_max
                    ));
                }
                reg.values()
                    .map(|v| v.len())
                    .fold(0usize, usize::saturating_add)
            }
            // Each member costs its bytes and its dot (an actor name and a counter).
            Object::Set(set) => set
                .members()
                .map(|m| m.len().saturating_add(SET_MEMBER_OVERHEAD_BYTES))
                .fold(0usize, usize::saturating_add),
            Object::Counter(_) => 0,
        };
        if bytes > self.cfg.object_bytes_max {
            return Err(format!(
                "the key would hold {bytes} bytes, over object_bytes_max ({}): resolve its siblings or remove set members first",
                self.cfg.object_bytes_max
            ));
        }
        Ok(())
    }

    fn progress_write(&mut self, coord: &mut WriteCoord, out: &mut Vec<Output>) {
        match coord.core.response() {
            None => {}
            Some(PutAnswer::Written) => {
                // Answered once: the reply kept for this moment is handed over, not copied.
                let placeholder = Reply::Written {
                    context: VersionVector::new(),
                };
                let reply = std::mem::replace(&mut coord.reply, placeholder);
                self.confirm(coord.waiter.clone(), reply, out);
            }
            Some(PutAnswer::Unavailable {
                acks,
                targets,
                needed,
            }) => {
                let reply = Reply::unavailable(
                    format!("{acks} of {targets} replicas acknowledged the write, {needed} needed"),
                    acks,
                    needed,
                );
                self.answer(coord.waiter.clone(), reply, out);
            }
        }
    }

    fn store_hint(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        primary: &NodeId,
        partition: PartitionId,
        key: &Key,
        object: &Object,
    ) {
        let hint_key = keys::hint_key(primary, &keys::data_key(partition, key));
        let existing = match store.get(&hint_key) {
            Ok(existing) => existing,
            Err(_) => {
                self.stats.storage_errors += 1;
                return;
            }
        };
        let record = match existing
            .as_deref()
            .map(|raw| driftkv_wire::decode::<HintRecord>(driftkv_wire::RECORD_FORMAT_VERSION, raw))
        {
            Some(Ok(mut held)) => {
                held.object
                    .merge(self.cfg.bucket(key.bucket()).mode, object);
                held
            }
            _ => {
                if self.hints_pending() >= self.cfg.hints_max {
                    self.stats.hints_refused += 1;
                    return;
                }
                let waiting = self.hints.entry(primary.clone()).or_default();
                waiting.count += 1;
                // A new hint may be dated back to its write's start (a missed write): the
                // next look at this primary's hints is not skipped (see `hand_off`).
                waiting.quiet_until = None;
                self.stats.hints_stored += 1;
                HintRecord {
                    created_ms: now_ms,
                    object: object.clone(),
                }
            }
        };
        if store
            .put(
                &hint_key,
                &driftkv_wire::encode(driftkv_wire::RECORD_FORMAT_VERSION, &record),
            )
            .is_err()
        {
            self.stats.storage_errors += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_read(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        waiter: Waiter,
        request: Request,
        partition: PartitionId,
        n: usize,
        needed: usize,
        mode: ConflictMode,
        out: &mut Vec<Output>,
    ) {
        self.stats.reads += 1;
        let targets: Vec<NodeId> = self
            .targets(partition, n)
            .into_iter()
            .map(|(node, _)| node)
            .collect();
        if targets.len() < needed {
            return self.answer(waiter, too_few_reachable(targets.len(), needed), out);
        }
        let key = request.key().clone();
        let kind = match request {
            Request::CounterGet { .. } => ObjectKind::Counter,
            Request::SetGet { .. } => ObjectKind::Set,
            _ => ObjectKind::Register,
        };
        let req = self.new_req();
        let mut local = None;
        for node in &targets {
            if *node == self.cfg.id {
                match self.load(store, partition, &key) {
                    Ok(object) => local = Some((node.clone(), object)),
                    Err(e) => {
                        return self.answer(waiter, Reply::error(ErrorKind::Internal, e), out);
                    }
                }
            } else {
                out.push(Output::Send {
                    to: node.clone(),
                    message: Message::ReplicaRead {
                        req,
                        key: key.clone(),
                        kind,
                    },
                });
            }
        }
        let seen = match &request {
            Request::SessionGet { seen, .. } => Some(seen.clone()),
            _ => None,
        };
        let mut coord = ReadCoord {
            waiter,
            request,
            core: GetCore::new(mode, needed, targets, seen),
            deadline_ms: now_ms + self.cfg.request_timeout_ms,
        };
        if let Some((node, object)) = local {
            coord.core.add_result(node, object);
        }
        self.pending.insert(req, Pending::Read(coord));
        self.progress_read(store, now_ms, req, false, out);
    }

    /// Answers once the get core has decided; once it is over (every target answered, or
    /// `expired`), repairs the stale.
    fn progress_read(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        req: ReqId,
        expired: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(Pending::Read(coord)) = self.pending.get_mut(&req) else {
            return;
        };
        let reply = match coord.core.response(expired) {
            None => None,
            Some(GetAnswer::Merged(merged)) => Some(render_read(&coord.request, merged)),
            Some(GetAnswer::SessionBehind { answered, needed }) => {
                self.stats.session_reads_behind += 1;
                Some(Reply::unavailable(
                    format!(
                        "no replica of the {answered} that answered holds everything this session \
                         has seen of the key; try again once replication catches up"
                    ),
                    answered,
                    needed,
                ))
            }
            Some(GetAnswer::TooFew {
                answered,
                targets,
                needed,
            }) => Some(Reply::unavailable(
                format!("{answered} of {targets} replicas answered in time, {needed} needed"),
                answered,
                needed,
            )),
        };
        let answer = reply.map(|reply| (coord.waiter.clone(), reply));
        let done = coord.core.done(expired);
        if let Some((waiter, reply)) = answer {
            if let Reply::Values { values, .. } = &reply {
                self.stats.read_siblings.record(values.len() as u64);
                if values.len() > 1 {
                    self.stats.sibling_reads += 1;
                }
            }
            self.answer(waiter, reply, out);
        }
        if !done {
            return;
        }
        let Some(Pending::Read(coord)) = self.pending.remove(&req) else {
            unreachable!("looked at above")
        };
        let key = coord.request.key().clone();
        let last = coord.core.final_action();
        // Counted once per read, on its final merge: the conflict the read resolved.
        self.stats.conflicts += last.conflicts;
        self.stats.lww_discarded += last.lww_discarded;
        if let (Some(merged), true) = (&last.merged, self.cfg.read_repair) {
            self.read_repair(store, now_ms, &key, merged, &last.stale, out);
        }
    }

    /// Sends the merge of a read to each stale target (this node merges it in place).
    fn read_repair(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        key: &Key,
        merged: &Object,
        stale: &[NodeId],
        out: &mut Vec<Output>,
    ) {
        let partition = self.partition_of(key);
        for node in stale {
            self.stats.stale_replicas_found += 1;
            if *node == self.cfg.id {
                self.merge_here(store, now_ms, partition, key, merged);
            } else {
                self.stats.read_repairs_sent += 1;
                out.push(Output::Send {
                    to: node.clone(),
                    message: Message::Repair {
                        key: key.clone(),
                        object: merged.clone(),
                    },
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_inspect(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        waiter: Waiter,
        key: Key,
        partition: PartitionId,
        n: usize,
        out: &mut Vec<Output>,
    ) {
        let req = self.new_req();
        let mut views = Vec::new();
        let mut waiting = 0;
        let owners: Vec<NodeId> = self
            .ring()
            .owners(partition)
            .iter()
            .take(n)
            .cloned()
            .collect();
        for node in owners {
            let (reachable, object) = if node == self.cfg.id {
                match self.load(store, partition, &key) {
                    Ok(object) => (true, object),
                    Err(e) => {
                        return self.answer(waiter, Reply::error(ErrorKind::Internal, e), out);
                    }
                }
            } else if self.is_up(&node) {
                waiting += 1;
                out.push(Output::Send {
                    to: node.clone(),
                    message: Message::ReplicaRead {
                        req,
                        key: key.clone(),
                        kind: ObjectKind::Register,
                    },
                });
                (false, None)
            } else {
                (false, None)
            };
            views.push(ReplicaView {
                node,
                reachable,
                object,
            });
        }
        let coord = InspectCoord {
            waiter,
            key,
            views,
            waiting,
            deadline_ms: now_ms + self.cfg.inspect_timeout_ms,
        };
        if waiting == 0 {
            let reply = Reply::Replicas {
                key: coord.key,
                replicas: coord.views,
            };
            return self.answer(coord.waiter, reply, out);
        }
        self.pending.insert(req, Pending::Inspect(coord));
    }

    fn on_message(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        from: NodeId,
        message: Message,
        out: &mut Vec<Output>,
    ) {
        match message {
            Message::Forward { req, request } => {
                if !self.first_delivery_of_forward(&from, req, now_ms) {
                    self.stats.duplicate_forwards += 1;
                    return;
                }
                self.on_request(
                    store,
                    now_ms,
                    Waiter::Remote { node: from, req },
                    request,
                    true,
                    out,
                )
            }
            Message::ForwardReply { req, reply } => {
                if let Some(Pending::Forwarded { client, .. }) = self.pending.remove(&req) {
                    out.push(Output::Reply { client, reply });
                }
            }
            Message::ReplicaWrite {
                req,
                key,
                object,
                hint,
            } => {
                let partition = self.partition_of(&key);
                let ok = self
                    .merge_into_store(store, now_ms, partition, &key, &object)
                    .is_ok();
                if let (true, Some(primary)) = (ok, &hint) {
                    self.store_hint(store, now_ms, primary, partition, &key, &object);
                }
                let ack = Output::Send {
                    to: from,
                    message: Message::ReplicaWriteAck { req, ok },
                };
                out.push(if ok { ack.durable() } else { ack });
            }
            Message::ReplicaWriteAck { req, ok } => self.on_write_ack(store, from, req, ok, out),
            Message::AaeRoot {
                xid,
                partition,
                root,
            } => self.aae_on_root(now_ms, from, xid, PartitionId(partition), root, out),
            Message::AaeRootDiffers { xid, partition } => {
                self.aae_on_root_differs(from, xid, PartitionId(partition), out)
            }
            Message::AaeNotReady {
                xid,
                partition,
                building,
            } => {
                let partition = PartitionId(partition);
                if self.aae_is_current(&from, xid, partition) {
                    self.aae.inflight = None;
                    if building {
                        self.aae.again = Some((partition, from));
                    } else {
                        // The peer is exchanging this partition with us already: go on with
                        // the next one at once.
                        self.aae.next_ms = now_ms;
                    }
                }
            }
            Message::AaeMids {
                xid,
                partition,
                mids,
            } => self.aae_on_mids(from, xid, PartitionId(partition), mids, out),
            Message::AaeLeaves {
                xid,
                partition,
                groups,
            } => {
                let partition = PartitionId(partition);
                self.aae_on_leaves(store, now_ms, from, xid, partition, groups, out)
            }
            Message::AaeKeys {
                xid,
                partition,
                segments,
                entries,
            } => self.aae_on_keys(
                store,
                from,
                xid,
                PartitionId(partition),
                segments,
                entries,
                out,
            ),
            Message::AaeSync {
                xid,
                partition,
                objects,
                want,
            } => self.aae_on_sync(
                store,
                now_ms,
                from,
                xid,
                PartitionId(partition),
                objects,
                want,
                out,
            ),
            Message::AaeObjects { partition, objects } => {
                self.aae_merge(store, now_ms, PartitionId(partition), objects);
            }
            Message::Gossip { members } => {
                let (change, answer) = self.membership.on_gossip(&from, &members, now_ms);
                self.apply_membership(change);
                self.note_membership(change);
                if let Some(message) = answer {
                    out.push(Output::Send { to: from, message });
                }
            }
            Message::ReplicaRead { req, key, .. } => {
                let partition = self.partition_of(&key);
                // An unreadable record answers as missing: the coordinator repairs it.
                let object = self.load(store, partition, &key).unwrap_or(None);
                out.push(Output::Send {
                    to: from,
                    message: Message::ReplicaReadReply { req, object },
                });
            }
            Message::ReplicaReadReply { req, object } => match self.pending.get_mut(&req) {
                Some(Pending::Read(coord)) => {
                    // A stray or duplicated reply changes nothing.
                    let counted = coord.core.add_result(from, object);
                    if counted {
                        self.progress_read(store, now_ms, req, false, out);
                    }
                }
                Some(Pending::Inspect(coord)) => {
                    if let Some(view) = coord
                        .views
                        .iter_mut()
                        .find(|v| v.node == from && !v.reachable)
                    {
                        view.reachable = true;
                        view.object = object;
                        coord.waiting -= 1;
                    }
                    if coord.waiting == 0 {
                        let Some(Pending::Inspect(coord)) = self.pending.remove(&req) else {
                            unreachable!()
                        };
                        self.answer(
                            coord.waiter,
                            Reply::Replicas {
                                key: coord.key,
                                replicas: coord.views,
                            },
                            out,
                        );
                    }
                }
                Some(Pending::Collect(c)) => {
                    if object.as_ref() != Some(&c.object) {
                        // That replica holds something else: not collectable now.
                        self.pending.remove(&req);
                        return;
                    }
                    c.awaiting.retain(|n| *n != from);
                    if c.awaiting.is_empty() {
                        let Some(Pending::Collect(c)) = self.pending.remove(&req) else {
                            unreachable!()
                        };
                        self.collect(store, c, out);
                    }
                }
                _ => {}
            },
            Message::Purge { key, object } => {
                let partition = self.partition_of(&key);
                if let Ok(Some(local)) = self.load(store, partition, &key)
                    && local == object
                    && self.remove(store, partition, &key).is_ok()
                {
                    self.stats.tombstones_collected += 1;
                }
            }
            Message::Transfer {
                xid,
                partition,
                objects,
            } => {
                let partition = PartitionId(partition);
                let mut ok = true;
                for (key, object) in objects {
                    ok &= self
                        .merge_into_store(store, now_ms, partition, &key, &object)
                        .is_ok();
                }
                // A receipt lets the sender delete what it handed over: only once it is durable.
                let receipt = Output::Send {
                    to: from,
                    message: Message::TransferAck { xid, ok },
                };
                out.push(if ok { receipt.durable() } else { receipt });
            }
            Message::TransferAck { xid, ok } => {
                if let Some(Pending::Transfer(t)) = self.pending.get_mut(&xid) {
                    if !ok {
                        self.pending.remove(&xid);
                        return;
                    }
                    t.awaiting.retain(|n| *n != from);
                    if t.awaiting.is_empty() {
                        let Some(Pending::Transfer(t)) = self.pending.remove(&xid) else {
                            unreachable!()
                        };
                        self.finish_transfer(store, t);
                    }
                }
            }
            Message::Repair { key, object } => {
                let partition = self.partition_of(&key);
                self.merge_here(store, now_ms, partition, &key, &object);
            }
        }
    }

    fn on_write_ack(
        &mut self,
        store: &mut dyn Store,
        from: NodeId,
        req: ReqId,
        ok: bool,
        out: &mut Vec<Output>,
    ) {
        // Taken out in its box, and put back so (a coordination's state is not moved).
        let Some(mut entry) = self.pending.remove_boxed(&req) else {
            return;
        };
        match &mut *entry {
            Pending::Write(coord) => {
                let Some(at) = coord.awaiting.iter().position(|(node, _)| *node == from) else {
                    // A duplicate or stray acknowledgement counts once.
                    self.pending.insert_boxed(req, entry);
                    return;
                };
                let (_, hint) = coord.awaiting.swap_remove(at);
                coord.core.add_result(ok);
                if !ok {
                    self.hint_missed_write(store, coord, &from, hint.as_ref());
                }
                self.progress_write(coord, out);
                if !coord.awaiting.is_empty() {
                    self.pending.insert_boxed(req, entry);
                }
            }
            Pending::Handoff(handoff) => {
                if !ok {
                    return;
                }
                // Delete the hint only if no newer write merged into it meanwhile.
                if store.get(&handoff.hint_key).ok().flatten().as_deref() == Some(&handoff.sent[..])
                {
                    if store.delete(&handoff.hint_key).is_ok() {
                        self.stats.hints_delivered += 1;
                        self.forget_hint(&handoff.target);
                    } else {
                        self.stats.storage_errors += 1;
                    }
                }
            }
            _ => self.pending.insert_boxed(req, entry),
        }
    }

    fn hint_missed_write(
        &mut self,
        store: &mut dyn Store,
        coord: &WriteCoord,
        node: &NodeId,
        hint: Option<&NodeId>,
    ) {
        let now_ms = coord
            .deadline_ms
            .saturating_sub(self.cfg.request_timeout_ms);
        self.hint_missed_write_at(store, now_ms, coord, node, hint);
    }

    /// Keeps a hint for the primary behind a replica that did not take a write.
    fn hint_missed_write_at(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        coord: &WriteCoord,
        node: &NodeId,
        hint: Option<&NodeId>,
    ) {
        let primary = hint.unwrap_or(node).clone();
        if self.cfg.hinted_handoff && primary != self.cfg.id {
            self.store_hint(
                store,
                now_ms,
                &primary,
                coord.partition,
                &coord.key,
                &coord.object,
            );
        }
    }

    fn forget_hint(&mut self, target: &NodeId) {
        if let Some(waiting) = self.hints.get_mut(target) {
            waiting.count = waiting.count.saturating_sub(1);
            if waiting.count == 0 {
                self.hints.remove(target);
            }
        }
    }

    fn on_tick(&mut self, store: &mut dyn Store, now_ms: u64, out: &mut Vec<Output>) {
        let (change, peers, seeds, gossip) = self.membership.tick(now_ms);
        self.apply_membership(change);
        self.save_membership(store, change);
        if let Some(gossip) = gossip {
            for to in peers {
                out.push(Output::Send {
                    to,
                    message: gossip.clone(),
                });
            }
            for addr in seeds {
                out.push(Output::Dial {
                    addr,
                    message: gossip.clone(),
                });
            }
        }
        for req in self.pending.due(now_ms) {
            match self.pending.get(&req) {
                Some(Pending::Read(_)) => self.progress_read(store, now_ms, req, true, out),
                _ => match self.pending.remove(&req) {
                    Some(Pending::Write(mut coord)) => {
                        // Replicas that never answered count as failed, and get a hint.
                        for (node, hint) in std::mem::take(&mut coord.awaiting) {
                            coord.core.add_result(false);
                            self.hint_missed_write_at(store, now_ms, &coord, &node, hint.as_ref());
                        }
                        self.progress_write(&mut coord, out);
                    }
                    Some(Pending::Inspect(coord)) => self.answer(
                        coord.waiter,
                        Reply::Replicas {
                            key: coord.key,
                            replicas: coord.views,
                        },
                        out,
                    ),
                    Some(Pending::Forwarded { client, .. }) => {
                        let reply = Reply::error(
                            ErrorKind::Unavailable,
                            "the coordinating replica did not answer in time",
                        );
                        self.answer(Waiter::Local(client), reply, out);
                    }
                    _ => {}
                },
            }
        }
        if self.cfg.hinted_handoff {
            self.hand_off(store, now_ms, out);
        }
        self.tree_build_step(store);
        self.aae_tick(now_ms, out);
        self.sweep_tick(store, now_ms, out);
        self.transfer_tick(store, now_ms, out);
    }

    /// Sends hints to their primaries that are up again, a bounded batch per primary.
    fn hand_off(&mut self, store: &mut dyn Store, now_ms: u64, out: &mut Vec<Output>) {
        let waiting: Vec<NodeId> = self.hints.keys().cloned().collect();
        // The hints in flight to each primary, from one walk of the requests (at the first
        // primary looked at; the handoffs sent below are to primaries already past).
        let mut in_flight_to: Option<BTreeMap<NodeId, Vec<Vec<u8>>>> = None;
        for target in waiting {
            let up = self.is_up(&target);
            // For a down primary a look only expires hints. After a look that expired none,
            // with none of its hints in flight, the batch looked at (the first in key order)
            // changes only by new hints, and a new hint ends the skip (`store_hint`; it may be
            // dated back). So nothing can expire before the batch's earliest expiry: until
            // then the look is skipped (a thousand-node cluster keeps hints for many down
            // members, and read and decoded them on every tick). A look that expired some
            // is followed by another on the next tick: the batch moved on to later keys.
            let Some(waiting) = self.hints.get_mut(&target) else {
                continue;
            };
            if up {
                waiting.quiet_until = None;
            } else if waiting.quiet_until.is_some_and(|until| now_ms < until) {
                continue;
            }
            let in_flight = in_flight_to
                .get_or_insert_with(|| {
                    let mut by_target: BTreeMap<NodeId, Vec<Vec<u8>>> = BTreeMap::new();
                    for p in self.pending.of_class(HANDOFF) {
                        if let Pending::Handoff(h) = p {
                            by_target
                                .entry(h.target.clone())
                                .or_default()
                                .push(h.hint_key.clone());
                        }
                    }
                    by_target
                })
                .remove(&target)
                .unwrap_or_default();
            if up && in_flight.len() >= self.cfg.handoff_batch_max {
                continue;
            }
            let room = self.cfg.handoff_batch_max - in_flight.len().min(self.cfg.handoff_batch_max);
            let batch = match store.scan(&keys::hint_prefix(&target), None, room + in_flight.len())
            {
                Ok(batch) => batch,
                Err(_) => {
                    self.stats.storage_errors += 1;
                    continue;
                }
            };
            if batch.is_empty() {
                self.hints.remove(&target);
                continue;
            }
            let mut earliest_expiry: Option<u64> = None;
            let mut expired_seen = false;
            for (hint_key, raw) in batch {
                if in_flight.contains(&hint_key) {
                    continue;
                }
                let record =
                    driftkv_wire::decode::<HintRecord>(driftkv_wire::RECORD_FORMAT_VERSION, &raw);
                let expiry = record
                    .as_ref()
                    .ok()
                    .map(|r| r.created_ms.saturating_add(self.cfg.hint_age_max_ms));
                let Some(expiry) = expiry.filter(|e| *e > now_ms) else {
                    // Expired, or unreadable.
                    expired_seen = true;
                    if store.delete(&hint_key).is_ok() {
                        self.stats.hints_expired += 1;
                        self.forget_hint(&target);
                    }
                    continue;
                };
                if !up {
                    earliest_expiry = Some(earliest_expiry.map_or(expiry, |e| e.min(expiry)));
                    continue;
                }
                let Some((_, data_key)) = keys::parse_hint_key(&hint_key) else {
                    continue;
                };
                let Some((_, key)) = keys::parse_data_key(data_key) else {
                    continue;
                };
                let record = record.expect("checked above");
                let req = self.new_req();
                out.push(Output::Send {
                    to: target.clone(),
                    message: Message::ReplicaWrite {
                        req,
                        key,
                        object: record.object,
                        hint: None,
                    },
                });
                let handoff = Handoff {
                    target: target.clone(),
                    hint_key,
                    sent: raw,
                    deadline_ms: now_ms + self.cfg.request_timeout_ms,
                };
                self.pending.insert(req, Pending::Handoff(handoff));
            }
            // (All of its hints may have expired, and the primary be forgotten with them.)
            if let Some(waiting) = self.hints.get_mut(&target) {
                waiting.quiet_until =
                    earliest_expiry.filter(|_| !up && in_flight.is_empty() && !expired_seen);
            }
        }
    }

    /// Calls `f` with this node's copy of `key` (`None`: absent or unreadable), lent from the
    /// object cache: for an observer that only looks (the simulator's oracle), no copy is made.
    pub fn with_local_object<R>(
        &mut self,
        store: &dyn Store,
        key: &Key,
        f: impl FnOnce(Option<&Object>) -> R,
    ) -> R {
        let partition = self.partition_of(key);
        if self.cached(store, partition, key).is_none() {
            // A miss reads the record, which caches it (when there is one and it decodes).
            let _ = self.load(store, partition, key);
        }
        f(self.objects.get(partition, key).map(|c| &c.object))
    }

    /// This node's own copy of a key, for tests and tools (no network, no repair).
    pub fn local_object(&mut self, store: &dyn Store, key: &Key) -> Result<Option<Object>, String> {
        let partition = self.partition_of(key);
        self.load(store, partition, key)
    }
}

/// Debug builds hold every object-cache hit to the store: the cached object encodes to exactly
/// the stored record, whose tree entry it carries (a cache out of step would otherwise hide).
#[cfg(debug_assertions)]
fn check_cached(store: &dyn Store, record_key: &[u8], key: &Key, cached: &Cached) {
    let stored = store.get(record_key).ok().flatten();
    let encoded = driftkv_wire::encode_object(&cached.object);
    assert_eq!(
        stored.as_deref(),
        Some(&encoded[..]),
        "the object cache is out of step with the store for {key:?}"
    );
    assert_eq!(cached.entry, aae::entry_hash(record_key, &encoded));
}

/// Tombstone collection and partition transfer.
impl Node {
    /// The primaries of a partition (by the ring, up or not), in walk order.
    fn primary_ids(&self, partition: PartitionId) -> impl Iterator<Item = &NodeId> {
        self.ring().owners(partition).iter().take(self.cfg.ring.n)
    }

    /// Whether this node is one of `partition`'s primaries.
    fn is_primary_of(&self, partition: PartitionId) -> bool {
        self.primary_ids(partition).any(|node| *node == self.cfg.id)
    }

    fn primaries(&self, partition: PartitionId) -> Vec<NodeId> {
        self.primary_ids(partition).cloned().collect()
    }

    /// Walks a bounded batch of records per tick. A tombstone past its grace, in a partition
    /// whose first primary is this node, is checked with the other primaries and collected
    /// once all of them hold exactly it.
    fn sweep_tick(&mut self, store: &mut dyn Store, now_ms: u64, out: &mut Vec<Output>) {
        if now_ms < self.sweep.next_ms {
            return;
        }
        self.sweep.next_ms = now_ms + 1_000;
        // The next partition whose first primary is this node (others sweep theirs).
        let partitions = self.cfg.ring.partitions;
        let leads =
            |node: &Node, p: PartitionId| node.ring().owners(p).first() == Some(&node.cfg.id);
        let mut partition = PartitionId(self.sweep.partition % partitions);
        for _ in 0..partitions {
            if leads(self, partition) {
                break;
            }
            self.next_sweep_partition();
            partition = PartitionId(self.sweep.partition % partitions);
        }
        if !leads(self, partition) {
            return;
        }
        let primaries = self.primaries(partition);
        let others: Vec<NodeId> = primaries
            .iter()
            .filter(|p| **p != self.cfg.id)
            .cloned()
            .collect();
        // Every primary must confirm a collection: with one down, the batch is only walked.
        let checks = !others.iter().any(|p| !self.is_up(p));
        let now = driftkv_causal::Timestamp::new(now_ms, 0);
        let grace_ms = self.cfg.tombstone_grace_ms;
        let collectable = |object: &Object| match object {
            Object::Register(reg) => reg.is_collectable_tombstone(now, grace_ms),
            _ => false,
        };
        let room = 64usize.saturating_sub(self.pending.count_of(COLLECT));
        // The batch's records are lent, not copied: only the tombstones found are kept.
        let mut walked = 0;
        let mut last = Vec::new();
        let mut found: Vec<(Key, Object)> = Vec::new();
        let lent: &dyn Store = store;
        let scanned = lent.scan_with(
            &keys::partition_prefix(partition),
            self.sweep.after.as_deref(),
            self.cfg.sweep_batch_max,
            &mut |raw_key, raw| {
                walked += 1;
                last.clear();
                last.extend_from_slice(raw_key);
                if !checks || found.len() == room {
                    return;
                }
                let Some((_, key)) = keys::parse_data_key(raw_key) else {
                    return;
                };
                // The cached copy when there is one (it is the record, decoded), else the record.
                let object = match self.cached(lent, partition, &key) {
                    Some(cached) if !collectable(&cached.object) => return,
                    Some(cached) => cached.object.clone(),
                    None => match driftkv_wire::decode_object(raw) {
                        Ok(object) if collectable(&object) => object,
                        _ => return,
                    },
                };
                found.push((key, object));
            },
        );
        if scanned.is_err() {
            self.stats.storage_errors += 1;
            return;
        }
        if walked == self.cfg.sweep_batch_max && walked > 0 {
            self.sweep.after = Some(last);
        } else {
            self.next_sweep_partition();
        }
        for (key, object) in found {
            if others.is_empty() {
                self.collect(
                    store,
                    Collect {
                        key,
                        partition,
                        object,
                        awaiting: Vec::new(),
                        deadline_ms: now_ms,
                    },
                    out,
                );
                continue;
            }
            let req = self.new_req();
            for to in &others {
                out.push(Output::Send {
                    to: to.clone(),
                    message: Message::ReplicaRead {
                        req,
                        key: key.clone(),
                        kind: ObjectKind::Register,
                    },
                });
            }
            self.pending.insert(
                req,
                Pending::Collect(Collect {
                    key,
                    partition,
                    object,
                    awaiting: others.clone(),
                    deadline_ms: now_ms + self.cfg.request_timeout_ms,
                }),
            );
        }
    }

    fn next_sweep_partition(&mut self) {
        self.sweep.partition = (self.sweep.partition + 1) % self.cfg.ring.partitions;
        self.sweep.after = None;
    }

    /// Every primary holds the tombstone: delete it here and ask them to do the same.
    fn collect(&mut self, store: &mut dyn Store, c: Collect, out: &mut Vec<Output>) {
        match self.load(store, c.partition, &c.key) {
            Ok(Some(local)) if local == c.object => {}
            _ => return, // changed meanwhile
        }
        if self.remove(store, c.partition, &c.key).is_err() {
            return;
        }
        self.stats.tombstones_collected += 1;
        for to in self.primaries(c.partition) {
            if to != self.cfg.id {
                out.push(Output::Send {
                    to,
                    message: Message::Purge {
                        key: c.key.clone(),
                        object: c.object.clone(),
                    },
                });
            }
        }
    }

    /// The first partition from `from` on of which the store holds a record.
    fn next_held_partition(&mut self, store: &dyn Store, from: PartitionId) -> Option<PartitionId> {
        // Every record of `from` and beyond sorts strictly after the bare prefix of `from` (a
        // data key is longer than its partition's prefix); every record before it, below.
        match store.scan(&[keys::DATA], Some(&keys::partition_prefix(from)), 1) {
            Ok(batch) => batch.first().and_then(|(raw, _)| {
                let id: [u8; 4] = raw.get(1..5)?.try_into().ok()?;
                Some(PartitionId(u32::from_be_bytes(id)))
            }),
            Err(_) => {
                self.stats.storage_errors += 1;
                None
            }
        }
    }

    /// Finds a partition this node holds records of but no longer owns (the ring changed: a
    /// node joined, or this one is leaving) and sends a batch of them to its owners; deletes
    /// them once every owner confirmed. One batch in flight at a time.
    fn transfer_tick(&mut self, store: &mut dyn Store, now_ms: u64, out: &mut Vec<Output>) {
        if now_ms < self.sweep.next_transfer_ms || self.pending.count_of(TRANSFER) > 0 {
            return;
        }
        self.sweep.next_transfer_ms = now_ms + 500;
        let mut foreign = 0;
        let mut chosen: Option<(PartitionId, Vec<NodeId>)> = None;
        // Only the partitions this node holds records of, found by leaping from each to the
        // next: a node of a large cluster holds a few of the ring's many partitions.
        // A partition this node owns is never handed over: it is stepped past without asking
        // the store (a node of a small cluster owns most partitions).
        let mut from = 0;
        while from < self.cfg.ring.partitions {
            if self.is_primary_of(PartitionId(from)) {
                from += 1;
                continue;
            }
            let Some(partition) = self
                .next_held_partition(store, PartitionId(from))
                .filter(|p| p.0 < self.cfg.ring.partitions)
            else {
                break;
            };
            from = partition.0 + 1;
            if self.is_primary_of(partition) {
                continue;
            }
            let owners = self.primaries(partition);
            foreign += 1;
            if chosen.is_none() && owners.iter().all(|o| self.is_up(o)) && !owners.is_empty() {
                chosen = Some((partition, owners));
            }
        }
        self.sweep.foreign = foreign;
        let Some((partition, owners)) = chosen else {
            return;
        };
        let batch = match store.scan(
            &keys::partition_prefix(partition),
            None,
            self.cfg.sweep_batch_max,
        ) {
            Ok(batch) => batch,
            Err(_) => return,
        };
        let objects: Vec<(Key, Object)> = batch
            .iter()
            .filter_map(|(raw_key, raw)| {
                let (_, key) = keys::parse_data_key(raw_key)?;
                Some((key, driftkv_wire::decode_object(raw).ok()?))
            })
            .collect();
        if objects.is_empty() {
            return;
        }
        let xid = self.new_req();
        for to in &owners {
            out.push(Output::Send {
                to: to.clone(),
                message: Message::Transfer {
                    xid,
                    partition: partition.0,
                    objects: objects.clone(),
                },
            });
        }
        self.pending.insert(
            xid,
            Pending::Transfer(Transfer {
                partition,
                objects,
                awaiting: owners,
                deadline_ms: now_ms + self.cfg.request_timeout_ms * 2,
            }),
        );
    }

    fn finish_transfer(&mut self, store: &mut dyn Store, t: Transfer) {
        // The next batch goes at the next tick: a leave or join moves data as fast as the
        // owners confirm it.
        self.sweep.next_transfer_ms = 0;
        // What the owners confirmed and this node still holds as sent (a write that arrived
        // meanwhile stays for the next batch), with whether it holds this node's own writes.
        let mut handed: Vec<(Key, bool)> = Vec::with_capacity(t.objects.len());
        for (key, sent) in t.objects {
            if let Ok(Some(local)) = self.load(store, t.partition, &key)
                && local == sent
            {
                handed.push((key, mentions(&sent, &self.actor)));
            }
        }
        // The new identity is stored before a record of the old one's writes goes; if it
        // cannot be, the records stay and the next batch hands them over again.
        if handed.iter().any(|(_, own)| *own) && !self.renew_actor(store) {
            return;
        }
        for (key, _) in handed {
            if self.remove(store, t.partition, &key).is_ok() {
                self.stats.keys_transferred += 1;
            }
        }
    }

    /// This node is about to delete records holding writes it coordinated (a fallback handing
    /// its copies over). Its next write to one of those keys would start from an empty copy and
    /// issue the same dots (or counter totals) again, shadowing the first ones wherever they
    /// were seen: so later writes go out under a new incarnation of its identity. The record
    /// is the one the shell reads at start (`meta/incarnation`, 4 bytes big-endian).
    fn renew_actor(&mut self, store: &mut dyn Store) -> bool {
        let next = self.cfg.incarnation.wrapping_add(1).max(1);
        if store
            .put(&keys::meta_key("incarnation"), &next.to_be_bytes())
            .is_err()
        {
            self.stats.storage_errors += 1;
            return false;
        }
        self.cfg.incarnation = next;
        self.actor = Actor::new(self.cfg.id.as_str(), next);
        self.stats.actor_renewals += 1;
        true
    }

    /// Partitions holding records this node no longer owns, as of the last scan.
    pub fn partitions_to_transfer(&self) -> usize {
        self.sweep.foreign
    }

    /// Announces that this node leaves: the ring no longer counts it, so it transfers every
    /// partition to the new owners. See [`Node::drained`]. The decision is stored (and synced)
    /// before this returns, so a node restarted in the middle of leaving goes on leaving.
    pub fn leave(&mut self, store: &mut dyn Store) -> Result<(), String> {
        self.membership.set_leaving();
        let change = Change {
            members: true,
            states: true,
            persist: true,
        };
        self.apply_membership(change);
        self.save_membership(store, change);
        store.sync().map_err(|e| {
            self.stats.storage_errors += 1;
            e.to_string()
        })
    }

    pub fn is_leaving(&self) -> bool {
        self.membership.state(&self.cfg.id) == Some(MemberState::Leaving)
    }

    /// A leaving node is done when it holds no data and no hints.
    pub fn drained(&self, store: &dyn Store) -> bool {
        self.is_leaving()
            && self.hints_pending() == 0
            && store
                .scan(&[keys::DATA], None, 1)
                .map(|b| b.is_empty())
                .unwrap_or(false)
    }
}

/// Active anti-entropy: the exchange, step by step (see `aae` for the trees).
impl Node {
    /// Starts an exchange when one is due: the next partition this node is a primary of, with
    /// the next other primary that is up.
    fn aae_tick(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        if let Some(x) = &self.aae.inflight
            && x.deadline_ms <= now_ms
        {
            self.stats.aae_timeouts += 1;
            self.aae.inflight = None;
        }
        if !self.cfg.aae.enabled || self.aae.inflight.is_some() || now_ms < self.aae.next_ms {
            return;
        }
        self.aae.next_ms = now_ms + self.cfg.aae.interval_ms;
        let busy = self.cfg.aae.busy_requests > 0
            && std::mem::take(&mut self.aae.requests) > self.cfg.aae.busy_requests;
        if busy && self.aae.deferred < self.cfg.aae.defer_max {
            self.aae.deferred += 1;
            self.stats.aae_deferred += 1;
            return;
        }
        self.aae.deferred = 0;
        if let Some((partition, peer)) = self.aae.again.take()
            && self.is_up(&peer)
        {
            return self.aae_start(now_ms, partition, peer, out);
        }
        if self.aae_spread_on(now_ms, out) {
            return;
        }
        let n = self.cfg.ring.n;
        let mine: Vec<PartitionId> = self.ring().partitions_of(&self.cfg.id);
        if mine.is_empty() {
            return;
        }
        for step in 0..mine.len() {
            let partition = mine[(self.aae.cursor + step) % mine.len()];
            let peers: Vec<NodeId> = self
                .ring()
                .owners(partition)
                .iter()
                .take(n)
                .filter(|o| **o != self.cfg.id && self.is_up(o))
                .cloned()
                .collect();
            if peers.is_empty() {
                continue;
            }
            let peer = peers[(self.aae.cursor / mine.len()) % peers.len()].clone();
            self.aae.cursor = self.aae.cursor + step + 1;
            if let Some(left) = &mut self.aae.catch_up {
                if *left == usize::MAX {
                    *left = mine.len();
                }
                *left -= 1;
                self.aae.next_ms = now_ms; // the next step at the next tick
                if *left == 0 {
                    self.aae.catch_up = None;
                }
            }
            self.aae_check_tree(partition);
            return self.aae_start(now_ms, partition, peer, out);
        }
    }

    /// Starts the exchange with the next replica a partition's data is spread to, if any is
    /// left (and still a replica, and up).
    fn aae_spread_on(&mut self, now_ms: u64, out: &mut Vec<Output>) -> bool {
        let n = self.cfg.ring.n;
        while let Some((partition, peers)) = &mut self.aae.spread {
            let partition = *partition;
            let Some(peer) = peers.pop() else {
                self.aae.spread = None;
                break;
            };
            // Still replicas of it both (the ring may have changed since), and the peer up.
            let owners = self.ring().owners(partition);
            let replicas = &owners[..n.min(owners.len())];
            if replicas.contains(&self.cfg.id) && replicas.contains(&peer) && self.is_up(&peer) {
                self.aae_start(now_ms, partition, peer, out);
                return true;
            }
        }
        false
    }

    fn aae_start(
        &mut self,
        now_ms: u64,
        partition: PartitionId,
        peer: NodeId,
        out: &mut Vec<Output>,
    ) {
        let root = match self.tree(partition) {
            Ok(tree) => tree.root(),
            Err(()) => {
                // Built over the next ticks; this exchange starts at the first tick after.
                self.begin_tree_build(partition);
                self.aae.again = Some((partition, peer));
                self.aae.next_ms = now_ms;
                return;
            }
        };
        self.aae.next_xid += 1;
        let xid = self.aae.next_xid;
        self.aae.inflight = Some(AaeExchange {
            xid,
            partition,
            peer: peer.clone(),
            deadline_ms: now_ms + self.cfg.aae.timeout_ms,
        });
        out.push(Output::Send {
            to: peer,
            message: Message::AaeRoot {
                xid,
                partition: partition.0,
                root,
            },
        });
    }

    /// Every so often, rebuilds a built tree from storage and compares: a tree that drifted
    /// from its partition (a bug, a storage fault) is replaced, and counted.
    fn aae_check_tree(&mut self, partition: PartitionId) {
        if self.aae.until_check > 0 {
            self.aae.until_check -= 1;
            return;
        }
        self.aae.until_check = 16;
        if self.trees.contains_key(&partition) {
            self.begin_tree_build(partition);
        }
    }

    /// Equal roots: in sync, answered with no leaves. Else the initiator sends its middles.
    fn aae_on_root(
        &mut self,
        now_ms: u64,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        root: Hash64,
        out: &mut Vec<Output>,
    ) {
        // Both replicas started this very exchange against each other: the one with the
        // smaller name goes on as initiator, the other drops its own and serves (or the two
        // would move every differing object twice).
        if let Some(mine) = &self.aae.inflight
            && mine.partition == partition
            && mine.peer == from
        {
            if self.cfg.id < from {
                let message = Message::AaeNotReady {
                    xid,
                    partition: partition.0,
                    building: false,
                };
                return out.push(Output::Send { to: from, message });
            }
            // Go on at once with the next partition but one: out of step with the peer's
            // walk, or two replicas walking alike collide again and again.
            self.aae.inflight = None;
            self.aae.next_ms = now_ms;
            self.aae.cursor += 1;
        }
        let Ok(tree) = self.tree(partition) else {
            // Not built yet (after a restart): build it, and say so rather than keep the
            // initiator waiting.
            self.begin_tree_build(partition);
            let message = Message::AaeNotReady {
                xid,
                partition: partition.0,
                building: true,
            };
            return out.push(Output::Send { to: from, message });
        };
        let message = if tree.root() == root {
            Message::AaeLeaves {
                xid,
                partition: partition.0,
                groups: Vec::new(),
            }
        } else {
            Message::AaeRootDiffers {
                xid,
                partition: partition.0,
            }
        };
        out.push(Output::Send { to: from, message });
    }

    fn aae_on_root_differs(
        &mut self,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        out: &mut Vec<Output>,
    ) {
        if !self.aae_is_current(&from, xid, partition) {
            return;
        }
        let Ok(tree) = self.tree(partition) else {
            return;
        };
        let mids = tree.mids();
        out.push(Output::Send {
            to: from,
            message: Message::AaeMids {
                xid,
                partition: partition.0,
                mids,
            },
        });
    }

    fn aae_on_mids(
        &mut self,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        mids: Vec<Hash64>,
        out: &mut Vec<Output>,
    ) {
        let Ok(tree) = self.tree(partition) else {
            return;
        };
        let groups = tree.leaves_under_differing(&mids);
        out.push(Output::Send {
            to: from,
            message: Message::AaeLeaves {
                xid,
                partition: partition.0,
                groups,
            },
        });
    }

    fn aae_is_current(&self, from: &NodeId, xid: u64, partition: PartitionId) -> bool {
        self.aae
            .inflight
            .as_ref()
            .is_some_and(|x| x.xid == xid && x.peer == *from && x.partition == partition)
    }

    #[allow(clippy::too_many_arguments)]
    fn aae_on_leaves(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        groups: Vec<(u16, Vec<Hash64>)>,
        out: &mut Vec<Output>,
    ) {
        if !self.aae_is_current(&from, xid, partition) {
            return;
        }
        let Ok(tree) = self.tree(partition) else {
            return;
        };
        let mut segments = tree.differing_segments(&groups);
        if segments.is_empty() {
            self.stats.aae_exchanges += 1;
            self.stats.aae_in_sync += 1;
            self.aae.inflight = None;
            // A partition just repaired is confirmed: go on to the partition's other replicas
            // now (a root each, where nothing differs), then at the next tick to the next
            // partition while there is repair work about (a replica refilling, a write that
            // reached few replicas), else keep the pace.
            if std::mem::take(&mut self.aae.streak) {
                self.aae.next_ms = 0;
            }
            self.aae_spread_on(now_ms, out);
            return;
        }
        segments.truncate(self.cfg.aae.segments_per_exchange_max);
        let mut entries = Vec::new();
        for &segment in &segments {
            match self.segment_entries(store, partition, segment) {
                Ok(list) => entries.extend(list.into_iter().map(|(k, h, _)| (k, Hash64(h)))),
                Err(_) => return,
            }
        }
        self.stats.aae_keys_compared += entries.len() as u64;
        out.push(Output::Send {
            to: from,
            message: Message::AaeKeys {
                xid,
                partition: partition.0,
                segments,
                entries,
            },
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn aae_on_keys(
        &mut self,
        store: &mut dyn Store,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        segments: Vec<u16>,
        entries: Vec<(Key, Hash64)>,
        out: &mut Vec<Output>,
    ) {
        let theirs: BTreeMap<Key, u64> = entries.into_iter().map(|(k, h)| (k, h.0)).collect();
        let mut objects = Vec::new();
        let mut want = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut bytes = 0u64;
        let max = self.cfg.aae.objects_per_message_max;
        for segment in segments {
            let Ok(mine) = self.segment_entries(store, partition, segment) else {
                return;
            };
            for (key, hash, raw) in mine {
                // Different (or missing) there: send ours. Where the initiator holds the key
                // too, it merges and sends back only what ours lacked.
                if theirs.get(&key) != Some(&hash)
                    && objects.len() < max
                    && let Ok(object) = driftkv_wire::decode_object(&raw)
                {
                    bytes += raw.len() as u64;
                    objects.push((key.clone(), object));
                }
                seen.insert(key);
            }
        }
        for key in theirs.into_keys() {
            if !seen.contains(&key) && want.len() < max {
                want.push(key);
            }
        }
        self.stats.aae_keys_compared += seen.len() as u64;
        self.stats.aae_bytes_sent += bytes;
        out.push(Output::Send {
            to: from,
            message: Message::AaeSync {
                xid,
                partition: partition.0,
                objects,
                want,
            },
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn aae_on_sync(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        objects: Vec<(Key, Object)>,
        want: Vec<Key>,
        out: &mut Vec<Output>,
    ) {
        if !self.aae_is_current(&from, xid, partition) {
            return;
        }
        // Keys the peer lacks: our copies. Keys both hold: merge the peer's copy in, and send
        // the merged state back unless the peer's copy already was it (theirs covered ours).
        let mut back = Vec::new();
        for key in want {
            if let Ok(Some(object)) = self.load(store, partition, &key) {
                back.push((key, object));
            }
        }
        for (key, theirs) in objects {
            let Ok(changed) = self.merge_into_store(store, now_ms, partition, &key, &theirs) else {
                continue;
            };
            if changed {
                self.stats.aae_keys_repaired += 1;
            }
            if let Ok(Some(after)) = self.load(store, partition, &key)
                && after != theirs
            {
                back.push((key, after));
            }
        }
        let bytes: u64 = back
            .iter()
            .map(|(_, o)| driftkv_wire::encode_object(o).len() as u64)
            .sum();
        self.stats.aae_exchanges += 1;
        self.stats.aae_bytes_sent += bytes;
        self.aae.inflight = None;
        // Data moved: go again with the same peer at the next tick until the partition is in
        // sync (an exchange handles a bounded number of segments and objects), then with the
        // partition's other replicas.
        self.aae.again = Some((partition, from.clone()));
        self.aae.streak = true;
        self.aae.next_ms = now_ms;
        if self
            .aae
            .spread
            .as_ref()
            .is_none_or(|(p, _)| *p != partition)
        {
            let n = self.cfg.ring.n;
            let mut others: Vec<NodeId> = self
                .ring()
                .owners(partition)
                .iter()
                .take(n)
                .filter(|o| **o != self.cfg.id && **o != from)
                .cloned()
                .collect();
            others.reverse(); // visited in ring order
            self.aae.spread = Some((partition, others));
        }
        if !back.is_empty() {
            out.push(Output::Send {
                to: from,
                message: Message::AaeObjects {
                    partition: partition.0,
                    objects: back,
                },
            });
        }
    }

    fn aae_merge(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        partition: PartitionId,
        objects: Vec<(Key, Object)>,
    ) {
        for (key, object) in objects {
            if let Ok(true) = self.merge_into_store(store, now_ms, partition, &key, &object) {
                self.stats.aae_keys_repaired += 1;
            }
        }
    }
}

/// Whether `object` holds a write coordinated by `actor`.
fn mentions(object: &Object, actor: &Actor) -> bool {
    match object {
        Object::Register(r) => r.context().get(actor) > 0,
        Object::Counter(c) => c.contributions().any(|(a, _)| a == actor),
        Object::Set(s) => s.context().get(actor) > 0,
    }
}

/// The client's answer to a read, from the merged replica state.
fn render_read(request: &Request, merged: Option<&Object>) -> Reply {
    let wrong = |held: &Object, wanted: ObjectKind| {
        Reply::error(
            ErrorKind::WrongType,
            format!(
                "key holds a {}, not a {}",
                held.kind().name(),
                wanted.name()
            ),
        )
    };
    match (request, merged) {
        (Request::Get { .. } | Request::SessionGet { .. }, None) => Reply::NotFound {
            context: VersionVector::new(),
        },
        (Request::Get { .. } | Request::SessionGet { .. }, Some(Object::Register(reg))) => {
            render_register(reg)
        }
        (Request::Get { .. } | Request::SessionGet { .. }, Some(other)) => {
            wrong(other, ObjectKind::Register)
        }
        (Request::CounterGet { .. }, None) => Reply::Counter { value: 0 },
        (Request::CounterGet { .. }, Some(Object::Counter(c))) => {
            Reply::Counter { value: c.value() }
        }
        (Request::CounterGet { .. }, Some(other)) => wrong(other, ObjectKind::Counter),
        (Request::SetGet { .. }, None) => Reply::Set {
            members: Vec::new(),
        },
        (Request::SetGet { .. }, Some(Object::Set(s))) => Reply::Set {
            members: s.members().cloned().collect(),
        },
        (Request::SetGet { .. }, Some(other)) => wrong(other, ObjectKind::Set),
        _ => Reply::error(ErrorKind::Internal, "not a read"),
    }
}

fn render_register(reg: &Register) -> Reply {
    let values: Vec<Bytes> = reg.values().cloned().collect();
    if values.is_empty() {
        Reply::NotFound {
            context: reg.context().clone(),
        }
    } else {
        Reply::Values {
            values,
            context: reg.context().clone(),
        }
    }
}

/// Convenience for tests: the live values of a register object.
pub fn register_values(object: &Object) -> Vec<Bytes> {
    match object {
        Object::Register(r) => r.values().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Adds a batch of a partition's stored records to its tree.
fn add_records(tree: &mut aae::Tree, batch: &[(Vec<u8>, Vec<u8>)]) {
    for (raw_key, raw) in batch {
        if let Some(segment) = keys::segment_of_data_key(raw_key) {
            tree.toggle(segment, aae::entry_hash(raw_key, raw));
        }
    }
}

/// How far ahead of what a replica holds a client's context may claim another node's events:
/// a client may have read a replica that is ahead, but not by a million writes to one key.
pub const CONTEXT_AHEAD_MAX: u64 = 1 << 20;

/// Actors a key's context may reach through claims of clients (merges between replicas are
/// not limited): real contexts name the few nodes (and incarnations) that wrote the key.
pub const CONTEXT_ACTORS_MAX: usize = 64;

/// Whether `name` could be a node's id: 1 to 64 characters of letters, digits, '-', '_', '.'
/// (what the server's configuration accepts).
pub fn is_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// What a set member costs beyond its bytes, counted against `object_bytes_max`.
const SET_MEMBER_OVERHEAD_BYTES: usize = 32;

/// The answer when an actor's counter for a key is exhausted (a forged or corrupt state).
fn exhausted(e: driftkv_causal::Exhausted) -> Reply {
    Reply::error(ErrorKind::Internal, e.to_string())
}

fn too_few_reachable(reachable: usize, needed: usize) -> Reply {
    Reply::unavailable(
        format!("only {reachable} of the {needed} replicas needed are reachable"),
        0,
        needed,
    )
}

#[cfg(test)]
mod tests {
    /// A test entry is its own deadline, and of class its value modulo 3 (the test moves a
    /// deadline later by 3, keeping its class).
    impl super::WindowEntry for u64 {
        fn due_ms(&self) -> u64 {
            *self
        }
        fn class(&self) -> u8 {
            (*self % 3) as u8
        }
    }

    proptest::proptest! {
        /// The window of requests answers as a map of ids would, whatever the order of entries
        /// and removals (fresh ids in order, and ids put back after being taken out).
        #[test]
        fn the_request_window_is_a_map_of_ids(
            steps in proptest::collection::vec((0u8..4, 0u64..40), 0..200),
        ) {
            let mut window: super::Window<u64> = Default::default();
            let mut now = 0u64;
            let mut model = std::collections::BTreeMap::new();
            let mut next = 5u64;
            for (op, pick) in steps {
                match op {
                    0 => {
                        next += pick % 3;
                        window.insert(next, next * 10);
                        model.insert(next, next * 10);
                        next += 1;
                    }
                    1 => {
                        let req = 5 + pick;
                        proptest::prop_assert_eq!(window.remove(&req), model.remove(&req));
                    }
                    2 => {
                        // Put back an id at or below the newest.
                        let req = 5 + pick.min(next.saturating_sub(6));
                        window.insert(req, pick);
                        model.insert(req, pick);
                    }
                    _ => {
                        let req = pick * 2;
                        proptest::prop_assert_eq!(window.get(&req), model.get(&req));
                        if let Some(v) = window.get_mut(&req) {
                            *v += 3;
                            *model.get_mut(&req).expect("the model has it too") += 3;
                        }
                    }
                }
                proptest::prop_assert_eq!(window.len(), model.len());
                let listed: Vec<(u64, u64)> = window.iter().map(|(r, v)| (r, *v)).collect();
                let want: Vec<(u64, u64)> = model.iter().map(|(r, v)| (*r, *v)).collect();
                proptest::prop_assert_eq!(listed, want);
                // The clock moves on; what is due is what the model says (the values are the
                // deadlines here, moved later by the increments above).
                now += pick % 7;
                let due: Vec<u64> = model.iter().filter(|(_, v)| **v <= now).map(|(r, _)| *r).collect();
                proptest::prop_assert_eq!(window.due(now), due);
                for class in 0..3u8 {
                    let listed: Vec<u64> = window.of_class(class).copied().collect();
                    let want: Vec<u64> = model.values().copied().filter(|v| (v % 3) as u8 == class).collect();
                    proptest::prop_assert_eq!(window.count_of(class), want.len());
                    proptest::prop_assert_eq!(listed, want);
                }
            }
        }
    }
}
