//! What the clients did and what the simulator saw the nodes do: the oracle the checkers judge
//! the final state against.
//!
//! Every register write carries a unique value, so a value found in a replica names its write.
//! When a node coordinates a write the simulator reads the node's own copy right after
//! `Node::handle` and records the write's dot and the context the coordinator held: that is how
//! the checkers know which writes saw which.

use bytes::Bytes;
use driftkv_causal::{ConflictMode, Dot, Timestamp, VersionVector};
use driftkv_wire::Key;

/// How a client operation ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent, no answer yet.
    Pending,
    /// Acknowledged: the client was told it succeeded.
    Acked,
    /// The node answered with an error (the write may or may not have landed somewhere).
    Failed(String),
    /// The client gave up waiting (the write may or may not have landed).
    TimedOut,
}

/// The kind of data a key holds in the simulation (each key is used for one kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Register(ConflictMode),
    Counter,
    Set,
    Map,
    /// A t-visibility trial's register (siblings mode, or lww when the trials measure the
    /// direct write path).
    Probe(ConflictMode),
}

impl KeyKind {
    pub fn mode(self) -> ConflictMode {
        match self {
            KeyKind::Register(mode) | KeyKind::Probe(mode) => mode,
            _ => ConflictMode::Siblings,
        }
    }

    pub fn is_register(self) -> bool {
        matches!(self, KeyKind::Register(_) | KeyKind::Probe(_))
    }
}

/// One node applying a client write as its coordinator. Normally once per write; twice if the
/// network duplicated the request on its way (a `Forward` delivered twice).
#[derive(Clone, Debug)]
pub struct Coordination {
    pub node: usize,
    pub at_us: u64,
    /// The new dot (registers and set adds; `None` for a set remove).
    pub dot: Option<Dot>,
    /// The coordinator's context right after the write: everything the write had seen.
    pub context_after: VersionVector,
    /// A register write's hybrid-logical-clock timestamp (what lww orders by).
    pub timestamp: Option<Timestamp>,
    /// The coordinator crashed before syncing it: the write never left the node and is gone
    /// (and its dot may be issued again, harmlessly, since nobody saw it).
    pub void: bool,
    /// The version its dot created (in `History::versions`), once tracked.
    pub version: Option<usize>,
}

/// A record's coordinations, as a slice: nearly always one (more only when the network
/// duplicated a forwarded request), kept in line, so a write costs no allocation of its own
/// for it (nor a pointer to follow when the checkers walk every write).
#[derive(Clone, Debug, Default)]
pub enum Coordinations {
    #[default]
    None,
    One(Coordination),
    Many(Vec<Coordination>),
}

impl Coordinations {
    pub fn push(&mut self, c: Coordination) {
        *self = match std::mem::take(self) {
            Coordinations::None => Coordinations::One(c),
            Coordinations::One(first) => Coordinations::Many(vec![first, c]),
            Coordinations::Many(mut all) => {
                all.push(c);
                Coordinations::Many(all)
            }
        };
    }
}

impl std::ops::Deref for Coordinations {
    type Target = [Coordination];
    fn deref(&self) -> &[Coordination] {
        match self {
            Coordinations::None => &[],
            Coordinations::One(c) => std::slice::from_ref(c),
            Coordinations::Many(all) => all,
        }
    }
}

impl std::ops::DerefMut for Coordinations {
    fn deref_mut(&mut self) -> &mut [Coordination] {
        match self {
            Coordinations::None => &mut [],
            Coordinations::One(c) => std::slice::from_mut(c),
            Coordinations::Many(all) => all,
        }
    }
}

#[derive(Clone, Debug)]
pub struct KeyRec {
    pub key: Key,
    pub kind: KeyKind,
    /// The key's N primaries on the (fixed) ring.
    pub primaries: Vec<usize>,
    /// The key's record in every node's store (its partition is fixed by the partition count).
    pub record_key: Vec<u8>,
    /// Dots of writes acknowledged so far (for stale reads).
    pub frontier: VersionVector,
    /// Tracked versions (indices into `History::versions`) some primary does not hold yet.
    pub open: Vec<usize>,
}

/// A register write (`Put`), by its unique value; or a register's delete (`delete`), whose
/// `value` is only a label naming it (the write it makes is a tombstone).
#[derive(Clone, Debug)]
pub struct WriteRec {
    pub key: usize,
    pub value: Bytes,
    /// The causal context the client sent (what it had read). A delete sends none: it covers
    /// what its coordinator holds (its coordinations' `context_after`).
    pub context_in: VersionVector,
    pub issued_us: u64,
    pub outcome: Outcome,
    pub acked_us: Option<u64>,
    pub coordinations: Coordinations,
    /// The wall-clock millisecond from which the value reads as deleted (a TTL write).
    pub expires_ms: Option<u64>,
    /// A `Request::Delete` of the register, not a write of a value.
    pub delete: bool,
}

impl WriteRec {
    /// Whether this write saw dot `d`: in siblings mode a value's write saw what its client
    /// had read; a delete, and any write in lww mode, what one of its coordinators held.
    pub fn saw(&self, mode: ConflictMode, d: &Dot) -> bool {
        if mode == ConflictMode::Siblings && !self.delete {
            self.context_in.contains(d)
        } else {
            self.coordinations
                .iter()
                .any(|cd| !cd.void && cd.context_after.contains(d))
        }
    }
}

#[derive(Clone, Debug)]
pub struct SetOpRec {
    pub key: usize,
    pub member: Bytes,
    pub add: bool,
    /// A delete of the whole set (`member` empty, `add` false): it removes every member its
    /// coordinator held.
    pub clear: bool,
    pub outcome: Outcome,
    pub coordinations: Coordinations,
}

impl SetOpRec {
    /// Whether this operation removes `member` (a remove of it, or a delete of the set).
    pub fn removes(&self, member: &[u8]) -> bool {
        self.clear || (!self.add && self.member == member)
    }
}

/// A delete of a counter: each coordinator reset the totals it held (reset-remove).
#[derive(Clone, Debug)]
pub struct CounterDeleteRec {
    pub key: usize,
    pub outcome: Outcome,
    pub coordinations: Vec<CounterReset>,
}

/// A coordinator resetting a counter: what it saw, per actor (by name, as
/// `Actor::to_string` gives it), as the net of the increments and decrements it held.
#[derive(Clone, Debug)]
pub struct CounterReset {
    pub node: usize,
    pub at_us: u64,
    pub seen: Vec<(String, i128)>,
    pub void: bool,
}

/// What one map update does: each names one field (a delete names none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// The field written with an integer (as its decimal text).
    Set(Bytes, i64),
    Increment(Bytes, i64),
    Remove(Bytes),
    /// A `Request::Delete` of the map: every field its coordinator held is removed.
    Delete,
}

impl MapOp {
    /// The field it names (`None` for a delete).
    pub fn field(&self) -> Option<&Bytes> {
        match self {
            MapOp::Set(f, _) | MapOp::Increment(f, _) | MapOp::Remove(f) => Some(f),
            MapOp::Delete => None,
        }
    }

    /// Whether it drops what it saw of `field` (a remove of it, or a delete of the map).
    pub fn removes(&self, field: &[u8]) -> bool {
        match self {
            MapOp::Remove(f) => f == field,
            MapOp::Delete => true,
            _ => false,
        }
    }

    /// Whether it makes an entry of `field` under a dot (a write or an increment of it).
    pub fn adds(&self, field: &[u8]) -> bool {
        matches!(self, MapOp::Set(f, _) | MapOp::Increment(f, _) if f == field)
    }
}

/// A map update or delete. Coordinations of writes and increments carry the dot they made;
/// removes and deletes make none (their `context_after` says what they saw).
#[derive(Clone, Debug)]
pub struct MapOpRec {
    pub key: usize,
    pub op: MapOp,
    pub outcome: Outcome,
    pub coordinations: Coordinations,
}

/// A register read that returned a value written with an expiry: when and by whose clock it
/// was answered (only recorded when the workload writes with TTLs).
#[derive(Clone, Debug)]
pub struct ExpiringRead {
    pub key: usize,
    /// The write whose value it returned.
    pub write: usize,
    pub expires_ms: u64,
    /// The coordinator that answered, and its clock then.
    pub node: usize,
    pub node_ms: u64,
    /// When it answered: virtual time, as wall-clock milliseconds of an unskewed clock.
    pub answered_ms: u64,
}

#[derive(Clone, Debug)]
pub struct CounterOpRec {
    pub key: usize,
    pub delta: i64,
    pub outcome: Outcome,
    /// Each time a coordinator applied it (more than once only if the request was duplicated).
    pub applied_by: Vec<CounterApply>,
}

impl CounterOpRec {
    /// Applications that were not lost in a crash before their sync.
    pub fn applied(&self) -> usize {
        self.applied_by.iter().filter(|a| !a.void).count()
    }
}

/// A coordinator applying a counter delta under its actor (node and incarnation).
#[derive(Clone, Debug)]
pub struct CounterApply {
    pub node: usize,
    pub incarnation: u32,
    pub at_us: u64,
    /// Its place among every counter delta applied in the run (the order they happened in).
    pub seq: u64,
    pub void: bool,
}

/// A version (a dot of one key) whose spread to every primary is being timed.
#[derive(Clone, Debug)]
pub struct Version {
    pub key: usize,
    pub dot: Dot,
    pub created_us: u64,
    pub acked_us: Option<u64>,
    /// The primaries that do not hold it yet: bit `j` stands for the key's `primaries[j]` (N
    /// is at most `driftkv_ring::N_MAX`, 16).
    pub missing: u32,
    /// When the last primary got it.
    pub everywhere_us: Option<u64>,
    /// Lost with its coordinator before any other node saw it.
    pub void: bool,
}

/// Which history record a client request (or a forwarded copy of it) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistRef {
    Write(usize),
    SetOp(usize),
    CounterOp(usize),
    CounterDelete(usize),
    MapOp(usize),
}

/// A problem noticed while the run was going (a read that returned something impossible).
#[derive(Clone, Debug)]
pub struct Anomaly {
    pub check: &'static str,
    pub at_us: u64,
    pub what: String,
}

#[derive(Default)]
pub struct History {
    pub keys: Vec<KeyRec>,
    /// Slots by key (looked up only, never iterated).
    pub key_index: driftkv_core::fasthash::FastMap<Key, usize>,
    pub writes: Vec<WriteRec>,
    /// Looked up only (see `fasthash`).
    pub write_by_value: driftkv_core::fasthash::FastMap<Bytes, usize>,
    pub set_ops: Vec<SetOpRec>,
    pub counter_ops: Vec<CounterOpRec>,
    pub counter_deletes: Vec<CounterDeleteRec>,
    pub map_ops: Vec<MapOpRec>,
    /// Register reads that returned a value written with an expiry.
    pub expiring_reads: Vec<ExpiringRead>,
    /// Counter deltas applied so far (the next application's `seq`).
    pub counter_applies: u64,
    pub versions: Vec<Version>,
    pub anomalies: Vec<Anomaly>,
}

/// The positions in `primaries` of the nodes `pick` accepts, as bits (see `Version::missing`).
pub(crate) fn positions(primaries: &[usize], pick: impl Fn(usize) -> bool) -> u32 {
    debug_assert!(primaries.len() <= 32, "N is at most driftkv_ring::N_MAX");
    primaries
        .iter()
        .enumerate()
        .filter(|(_, p)| pick(**p))
        .fold(0, |bits, (j, _)| bits | 1 << j)
}

/// Anomalies kept at most per check: enough to diagnose, bounded for long runs.
pub const ANOMALIES_PER_CHECK_MAX: usize = 20;

impl History {
    /// An empty history with room for `keys` keys and `writes` register writes.
    pub fn with_capacity(keys: usize, writes: usize) -> History {
        let mut key_index = driftkv_core::fasthash::FastMap::default();
        key_index.reserve(keys);
        let mut write_by_value = driftkv_core::fasthash::FastMap::default();
        write_by_value.reserve(writes);
        History {
            keys: Vec::with_capacity(keys),
            key_index,
            writes: Vec::with_capacity(writes),
            write_by_value,
            versions: Vec::with_capacity(writes),
            ..Default::default()
        }
    }

    pub fn key_slot(
        &mut self,
        key: &Key,
        kind: KeyKind,
        primaries: Vec<usize>,
        record_key: Vec<u8>,
    ) -> usize {
        if let Some(&slot) = self.key_index.get(key) {
            return slot;
        }
        let slot = self.keys.len();
        self.keys.push(KeyRec {
            key: key.clone(),
            kind,
            primaries,
            record_key,
            frontier: VersionVector::new(),
            open: Vec::new(),
        });
        self.key_index.insert(key.clone(), slot);
        slot
    }

    /// A coordination lost in a crash before its node synced: void it and stop timing it.
    pub fn void_coordination(&mut self, h: HistRef, index: usize) {
        let version = match h {
            HistRef::Write(w) => {
                let coordination = &mut self.writes[w].coordinations[index];
                coordination.void = true;
                coordination.version
            }
            HistRef::SetOp(s) => {
                let op = &mut self.set_ops[s];
                let coordination = &mut op.coordinations[index];
                coordination.void = true;
                // Only adds are timed (a remove has no dot and no version).
                coordination.version
            }
            HistRef::CounterOp(c) => {
                self.counter_ops[c].applied_by[index].void = true;
                None
            }
            HistRef::CounterDelete(d) => {
                self.counter_deletes[d].coordinations[index].void = true;
                None
            }
            HistRef::MapOp(m) => {
                self.map_ops[m].coordinations[index].void = true;
                None
            }
        };
        if let Some(v) = version {
            self.versions[v].void = true;
            let key = self.versions[v].key;
            self.keys[key].open.retain(|id| *id != v);
        }
    }

    pub fn anomaly(&mut self, check: &'static str, at_us: u64, what: String) {
        let seen = self.anomalies.iter().filter(|a| a.check == check).count();
        if seen < ANOMALIES_PER_CHECK_MAX {
            self.anomalies.push(Anomaly { check, at_us, what });
        } else if seen == ANOMALIES_PER_CHECK_MAX {
            self.anomalies.push(Anomaly {
                check,
                at_us,
                what: "(further anomalies of this check not listed)".into(),
            });
        }
    }

    /// Starts timing a new version's spread; `holder` (the coordinator) already has it.
    pub fn track(&mut self, key: usize, dot: Dot, holder: usize, now_us: u64) -> usize {
        let missing = positions(&self.keys[key].primaries, |p| p != holder);
        let id = self.versions.len();
        let everywhere = (missing == 0).then_some(now_us);
        self.versions.push(Version {
            key,
            dot,
            created_us: now_us,
            acked_us: None,
            missing,
            everywhere_us: everywhere,
            void: false,
        });
        if everywhere.is_none() {
            self.keys[key].open.push(id);
        }
        id
    }

    /// `node` holds `context` for `key` now: marks the versions it covers.
    pub fn observe_copy(&mut self, key: usize, node: usize, context: &VersionVector, now_us: u64) {
        let versions = &mut self.versions;
        let rec = &mut self.keys[key];
        if rec.open.is_empty() {
            return;
        }
        let held = !positions(&rec.primaries, |p| p == node);
        rec.open.retain(|&id| {
            let v = &mut versions[id];
            if context.contains(&v.dot) {
                v.missing &= held;
            }
            if v.missing == 0 {
                v.everywhere_us = Some(now_us);
            }
            v.missing != 0
        });
    }

    /// Whether `node` is a primary of `key` still missing a version being timed: only then is
    /// its copy worth loading after it handled something.
    pub fn node_lacks_open_version(&self, key: usize, node: usize) -> bool {
        let rec = &self.keys[key];
        if rec.open.is_empty() {
            return false;
        }
        let bits = positions(&rec.primaries, |p| p == node);
        bits != 0
            && rec
                .open
                .iter()
                .any(|id| self.versions[*id].missing & bits != 0)
    }

    /// Why writes `a` and `b` must not be siblings, if they must not: one write's client had
    /// read every dot of the other, so it replaced it. `None` when they are concurrent.
    pub fn saw_each_other(&self, a: usize, b: usize) -> Option<String> {
        let covers = |x: usize, y: usize| {
            let dots: Vec<&Dot> = self.writes[y]
                .coordinations
                .iter()
                .filter(|c| !c.void)
                .filter_map(|c| c.dot.as_ref())
                .collect();
            !dots.is_empty() && dots.iter().all(|d| self.writes[x].context_in.contains(d))
        };
        let name = |w: usize| String::from_utf8_lossy(&self.writes[w].value).into_owned();
        if covers(b, a) {
            Some(format!(
                "{:?} and {:?}, but the write of {:?} had read {:?}",
                name(a),
                name(b),
                name(b),
                name(a)
            ))
        } else if covers(a, b) {
            Some(format!(
                "{:?} and {:?}, but the write of {:?} had read {:?}",
                name(a),
                name(b),
                name(a),
                name(b)
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordination(node: usize) -> Coordination {
        Coordination {
            node,
            at_us: node as u64,
            dot: None,
            context_after: VersionVector::new(),
            timestamp: None,
            void: false,
            version: None,
        }
    }

    /// Coordinations read as the list they were pushed in, in line or not, and change in place.
    #[test]
    fn coordinations_are_the_list_pushed() {
        let mut list = Coordinations::default();
        assert!(list.is_empty());
        for n in 0..4 {
            list.push(coordination(n));
            let nodes: Vec<usize> = list.iter().map(|c| c.node).collect();
            assert_eq!(nodes, (0..=n).collect::<Vec<_>>());
        }
        list[2].void = true;
        let void: Vec<bool> = list.iter().map(|c| c.void).collect();
        assert_eq!(void, [false, false, true, false]);
    }
}
