//! Register keys: the stored state of one key and the two conflict modes.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::actor::{Actor, Dot};
use crate::dvv::{Dvv, Exhausted};
use crate::hlc::Timestamp;
use crate::vv::VersionVector;

/// How a register settles concurrent writes (a bucket property).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictMode {
    /// Keep every concurrent value until a write whose context covers them (Riak `allow_mult`).
    #[default]
    Siblings,
    /// Among writes that did not see each other, keep the one with the highest HLC timestamp,
    /// ties broken by dot (so by node), and count the ones that lost (Cassandra's rule). A
    /// write that saw another (through its node's state or its client's context) replaces
    /// it whatever the clocks say, so clock skew never undoes a causally later write.
    Lww,
}

impl std::str::FromStr for ConflictMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "siblings" => Ok(ConflictMode::Siblings),
            "lww" => Ok(ConflictMode::Lww),
            other => Err(format!(
                "unknown conflict mode {other:?} (expected \"siblings\" or \"lww\")"
            )),
        }
    }
}

/// One value of a register. `value: None` is a tombstone: a delete that still carries its
/// causality, so a replica that missed the delete learns of it instead of resurrecting the key.
///
/// `expires_ms`: the wall-clock millisecond from which the value reads as deleted (a TTL). It
/// is part of the value, written once with its dot: every replica that holds the dot holds the
/// same expiry, so merges stay joins and no copy of an expired value (a hint, a repair, an
/// anti-entropy exchange) can bring it back: it arrives expired too.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sibling {
    pub value: Option<Bytes>,
    pub timestamp: Timestamp,
    pub expires_ms: Option<u64>,
}

impl Sibling {
    /// A value (not a tombstone) that has not expired at `now_ms`.
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        self.value.is_some() && self.expires_ms.is_none_or(|e| now_ms < e)
    }

    /// When this sibling stopped being a value: its timestamp for a tombstone; for an expired
    /// value the later of its expiry and its timestamp (a value written already expired, as
    /// `SET ... PXAT` a past time writes it, died when it was written: its grace counts from
    /// then, as a tombstone's does); `None` while it is live.
    fn dead_since_ms(&self, now_ms: u64) -> Option<u64> {
        match (&self.value, self.expires_ms) {
            (None, _) => Some(self.timestamp.physical_ms()),
            (Some(_), Some(e)) if e <= now_ms => Some(e.max(self.timestamp.physical_ms())),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Sibling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{:?}@{:?}", String::from_utf8_lossy(v), self.timestamp)?,
            None => write!(f, "tombstone@{:?}", self.timestamp)?,
        }
        match self.expires_ms {
            Some(e) => write!(f, "~{e}"),
            None => Ok(()),
        }
    }
}

/// What a write did to the register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    pub dot: Dot,
    /// Siblings the write replaced.
    pub superseded: usize,
    /// Siblings left beside the new value (the write did not cover them).
    pub siblings: usize,
}

/// What a merge of two replica states found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The two states held writes neither had seen: a conflict.
    pub concurrent: bool,
    /// Under `lww`: values of concurrent writes discarded by the timestamp rule.
    pub lww_discarded: u32,
    /// The merge changed this replica's state.
    pub changed: bool,
    /// Dots held with different values on the two sides (a reused identity); the greater
    /// value was kept.
    pub dot_clashes: u32,
}

/// The state of one register key on one replica.
///
/// Shared on clone and copied on the first change (`Arc::make_mut`): a state is cloned far more
/// often than it changes (into every replica message, every read reply, the node's object
/// cache), and a clone is then a reference count, not a copy of every sibling.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Register {
    dvv: Arc<Dvv<Sibling>>,
}

/// The encoded shape: the one field, exactly as a derived `Serialize` of `{ dvv }` writes it
/// (so stored records and frames did not change when the state became shared).
#[derive(Serialize)]
#[serde(rename = "Register")]
struct RegisterRef<'a> {
    dvv: &'a Dvv<Sibling>,
}

#[derive(Deserialize)]
#[serde(rename = "Register")]
struct RegisterOwned {
    dvv: Dvv<Sibling>,
}

impl Serialize for Register {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RegisterRef { dvv: &self.dvv }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Register {
    /// Decodes and checks the state's invariants: a register arrives from peers and from
    /// storage, and a state that breaks them (a sibling its context does not hold, a zero
    /// entry) would make merges misreport what they changed (found by fuzzing merges of
    /// decoded objects).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = RegisterOwned::deserialize(deserializer)?;
        r.dvv
            .check_invariants()
            .map_err(<D::Error as serde::de::Error>::custom)?;
        Ok(Register {
            dvv: Arc::new(r.dvv),
        })
    }
}

impl Register {
    pub fn new() -> Self {
        Self::default()
    }

    /// A register holding `dvv` (a record of an earlier format, read), if it keeps the
    /// invariants a decoded state is held to.
    pub fn from_dvv(dvv: Dvv<Sibling>) -> Result<Register, String> {
        dvv.check_invariants()?;
        Ok(Register { dvv: Arc::new(dvv) })
    }

    pub fn dvv(&self) -> &Dvv<Sibling> {
        &self.dvv
    }

    /// The context a reader gets: covers every sibling, so writing with it resolves them all.
    pub fn context(&self) -> &VersionVector {
        self.dvv.context()
    }

    /// Nothing is known of this key here: never written, or collected.
    pub fn is_unknown(&self) -> bool {
        self.dvv.is_unknown()
    }

    /// Live values (tombstones left out), in dot order: deterministic on every replica.
    pub fn values(&self) -> impl Iterator<Item = &Bytes> {
        self.dvv.values().filter_map(|s| s.value.as_ref())
    }

    /// Known here but with no live value: deleted (a tombstone, or history without siblings).
    pub fn is_deleted(&self) -> bool {
        !self.is_unknown() && self.values().next().is_none()
    }

    /// Values live at `now_ms` (tombstones and expired values left out), in dot order.
    pub fn values_at(&self, now_ms: u64) -> impl Iterator<Item = &Bytes> {
        self.dvv
            .values()
            .filter(move |s| s.is_live_at(now_ms))
            .filter_map(|s| s.value.as_ref())
    }

    /// Known here but with no value live at `now_ms`: deleted or expired.
    pub fn is_deleted_at(&self, now_ms: u64) -> bool {
        !self.is_unknown() && self.values_at(now_ms).next().is_none()
    }

    /// The live sibling with the highest (timestamp, dot): the one a single-valued reader
    /// (RESP) answers, and whose expiry `TTL` reports.
    pub fn newest_live(&self, now_ms: u64) -> Option<&Sibling> {
        self.dvv
            .siblings()
            .filter(|(_, s)| s.is_live_at(now_ms))
            .max_by(|(da, a), (db, b)| (a.timestamp, *da).cmp(&(b.timestamp, *db)))
            .map(|(_, s)| s)
    }

    pub fn sibling_count(&self) -> usize {
        self.dvv.len()
    }

    /// The highest timestamp held: keeps a restarted node's clock ahead of its own data.
    pub fn timestamp_max(&self) -> Timestamp {
        self.dvv
            .values()
            .map(|s| s.timestamp)
            .max()
            .unwrap_or_default()
    }

    /// A write (or, with `value: None`, a delete) coordinated by `actor` at `timestamp`.
    ///
    /// `siblings`: replaces what `client_context` covers, keeps the rest as siblings.
    /// `lww`: replaces every sibling this replica holds or has seen, and nothing else: the
    /// client's context is not used. The caller passes a timestamp above
    /// [`Register::timestamp_max`] (its HLC observed it), so every write a state's context
    /// covers has a lower `(timestamp, dot)` than the sibling it keeps: causal order and
    /// timestamp order agree, and the state is "the greatest write seen", which merges as a
    /// join. (Honouring a client context that covers writes this replica never held would
    /// let a write with an older timestamp supersede them, and merges stop being associative.)
    pub fn write(
        &mut self,
        mode: ConflictMode,
        actor: &Actor,
        client_context: &VersionVector,
        value: Option<Bytes>,
        timestamp: Timestamp,
    ) -> Result<WriteOutcome, Exhausted> {
        self.write_expiring(mode, actor, client_context, value, None, timestamp)
    }

    /// [`Register::write`] of a value that expires at `expires_ms` (wall-clock milliseconds).
    pub fn write_expiring(
        &mut self,
        mode: ConflictMode,
        actor: &Actor,
        client_context: &VersionVector,
        value: Option<Bytes>,
        expires_ms: Option<u64>,
        timestamp: Timestamp,
    ) -> Result<WriteOutcome, Exhausted> {
        let before = self.dvv.len();
        let sibling = Sibling {
            value,
            timestamp,
            expires_ms,
        };
        let dvv = Arc::make_mut(&mut self.dvv);
        let dot = match mode {
            ConflictMode::Siblings => dvv.event(client_context, actor, sibling)?,
            ConflictMode::Lww => {
                let everything = dvv.context().clone();
                let dot = dvv.event(&everything, actor, sibling)?;
                dvv.retain_only(&dot);
                dot
            }
        };
        let siblings = self.dvv.len() - 1;
        Ok(WriteOutcome {
            dot,
            superseded: before - siblings,
            siblings,
        })
    }

    /// A register holding one blind write (or, with `value: None`, a delete): `sibling`
    /// under `dot`, its context the dot's actor up to the dot. Its coordinator needs no copy
    /// of the key: a last-write-wins write stamped by any node's clock (see `Dvv::single`).
    pub fn single(dot: Dot, sibling: Sibling) -> Result<Register, Exhausted> {
        Ok(Register {
            dvv: Arc::new(Dvv::single(dot, sibling)?),
        })
    }

    /// Joins another replica's state of this key into this one.
    pub fn merge(&mut self, mode: ConflictMode, other: &Register) -> MergeOutcome {
        #[cfg(debug_assertions)]
        let before = self.clone();
        // The very same state (a clone of this one): joining it changes nothing (unless an
        // unsettled state is being settled: several siblings under lww).
        if Arc::ptr_eq(&self.dvv, &other.dvv)
            && (mode == ConflictMode::Siblings || self.dvv.len() <= 1)
        {
            return MergeOutcome::default();
        }
        // The join is the other state (it had seen all of this one): share it instead of
        // copying this one to change it. Equal contexts then mean equal states, but for
        // siblings the other had dropped (see `Dvv::joins_to`).
        let mut outcome = if self.dvv.joins_to(&other.dvv) {
            let changed =
                self.dvv.context() != other.dvv.context() || self.dvv.len() != other.dvv.len();
            self.dvv = Arc::clone(&other.dvv);
            MergeOutcome {
                changed,
                ..Default::default()
            }
        } else {
            let report = Arc::make_mut(&mut self.dvv).sync(&other.dvv);
            MergeOutcome {
                concurrent: report.concurrent(),
                dot_clashes: report.dot_clashes,
                changed: report.changed,
                ..Default::default()
            }
        };
        if mode == ConflictMode::Lww {
            outcome.lww_discarded = self.settle_lww();
            outcome.changed |= outcome.lww_discarded > 0;
        }
        // Debug builds (every test) hold the cheap account to the full comparison.
        #[cfg(debug_assertions)]
        debug_assert_eq!(outcome.changed, *self != before, "merge's change report");
        outcome
    }

    /// Keeps only the highest (timestamp, dot) sibling; returns how many it discarded.
    fn settle_lww(&mut self) -> u32 {
        let Some(winner) = self
            .dvv
            .siblings()
            .max_by(|(da, a), (db, b)| (a.timestamp, *da).cmp(&(b.timestamp, *db)))
            .map(|(dot, _)| dot.clone())
        else {
            return 0;
        };
        let before = self.dvv.len();
        Arc::make_mut(&mut self.dvv).retain_only(&winner);
        (before - 1) as u32
    }

    /// A deleted (or expired) key whose every sibling died longer ago than the grace period:
    /// a tombstone's age counts from its timestamp, an expired value's from its expiry.
    /// Collection must also know that every replica holds the tombstone; that is the caller's
    /// to check.
    pub fn is_collectable_tombstone(&self, now: Timestamp, grace_ms: u64) -> bool {
        let now_ms = now.physical_ms();
        if self.is_unknown() {
            return false;
        }
        let mut died = 0u64;
        for sibling in self.dvv.values() {
            match sibling.dead_since_ms(now_ms) {
                Some(t) => died = died.max(t),
                None => return false,
            }
        }
        died.saturating_add(grace_ms) <= now_ms
    }
}

impl std::fmt::Debug for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.dvv.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sharing the state changed nothing on disk or on the wire: a register encodes exactly as
    /// the plain struct it was, and decodes back.
    #[test]
    fn a_shared_state_encodes_as_the_plain_struct_did() {
        #[derive(Serialize)]
        struct Plain {
            dvv: Dvv<Sibling>,
        }
        let (n1, n2) = (Actor::from("n1"), Actor::from("n2"));
        let mut r = Register::new();
        let none = VersionVector::new();
        r.write(
            ConflictMode::Siblings,
            &n1,
            &none,
            b("a"),
            Timestamp::new(5, 1),
        )
        .unwrap();
        r.write(
            ConflictMode::Siblings,
            &n2,
            &none,
            None,
            Timestamp::new(6, 0),
        )
        .unwrap();
        let plain = Plain {
            dvv: (*r.dvv).clone(),
        };
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&plain).unwrap());
        assert_eq!(postcard::from_bytes::<Register>(&bytes).unwrap(), r);
    }

    /// Found by fuzzing merges of decoded objects: states that break the invariants (a
    /// sibling with counter 0, a sibling its context does not hold, a zero entry) are refused
    /// when decoded, instead of merged with a wrong change report.
    #[test]
    fn a_state_breaking_the_invariants_does_not_decode() {
        let (n1, n2) = (Actor::from("n1"), Actor::from("n2"));
        let mut dvv = Dvv::new();
        dvv.event(
            &VersionVector::new(),
            &n1,
            Sibling {
                value: b("a"),
                timestamp: Timestamp::new(1, 0),
                expires_ms: None,
            },
        )
        .unwrap();
        let good = postcard::to_allocvec(&Register {
            dvv: Arc::new(dvv.clone()),
        })
        .unwrap();
        assert!(postcard::from_bytes::<Register>(&good).is_ok());
        #[derive(Serialize)]
        struct Raw {
            siblings: Vec<((Actor, u64), Sibling)>,
            context: Vec<(Actor, u64)>,
        }
        let sibling = || Sibling {
            value: b("x"),
            timestamp: Timestamp::new(1, 0),
            expires_ms: None,
        };
        for raw in [
            Raw {
                siblings: vec![((n1.clone(), 0), sibling())],
                context: vec![],
            },
            Raw {
                siblings: vec![((n1.clone(), 2), sibling())],
                context: vec![(n1.clone(), 1)],
            },
            Raw {
                siblings: vec![],
                context: vec![(n2.clone(), 0)],
            },
        ] {
            let bytes = postcard::to_allocvec(&raw).unwrap();
            assert!(postcard::from_bytes::<Register>(&bytes).is_err());
        }
    }

    #[test]
    fn a_clone_is_shared_until_one_side_changes() {
        let n1 = Actor::from("n1");
        let mut r = Register::new();
        r.write(
            ConflictMode::Siblings,
            &n1,
            &VersionVector::new(),
            b("a"),
            Timestamp::new(1, 0),
        )
        .unwrap();
        let mut copy = r.clone();
        assert!(Arc::ptr_eq(&r.dvv, &copy.dvv));
        assert!(!copy.merge(ConflictMode::Siblings, &r).changed);
        let context = copy.context().clone();
        copy.write(
            ConflictMode::Siblings,
            &n1,
            &context,
            b("b"),
            Timestamp::new(2, 0),
        )
        .unwrap();
        assert!(!Arc::ptr_eq(&r.dvv, &copy.dvv));
        assert_eq!(vals(&r), [b"a"]);
        assert_eq!(vals(&copy), [b"b"]);
    }

    fn b(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn vals(r: &Register) -> Vec<&[u8]> {
        r.values().map(|v| v.as_ref()).collect()
    }

    #[test]
    fn lww_keeps_the_later_timestamp_and_counts_the_loser() {
        let (n1, n2) = (Actor::from("n1"), Actor::from("n2"));
        let mut r1 = Register::new();
        let mut r2 = Register::new();
        r1.write(
            ConflictMode::Lww,
            &n1,
            &VersionVector::new(),
            b("early"),
            Timestamp::new(10, 0),
        )
        .unwrap();
        r2.write(
            ConflictMode::Lww,
            &n2,
            &VersionVector::new(),
            b("late"),
            Timestamp::new(20, 0),
        )
        .unwrap();
        let out = r1.merge(ConflictMode::Lww, &r2);
        assert!(out.concurrent);
        assert_eq!(out.lww_discarded, 1);
        assert_eq!(vals(&r1), [b"late"]);
        r2.merge(ConflictMode::Lww, &r1);
        assert_eq!(r1, r2);
    }

    #[test]
    fn lww_ties_are_broken_by_node() {
        let (n1, n2) = (Actor::from("n1"), Actor::from("n2"));
        let mut r1 = Register::new();
        let mut r2 = Register::new();
        let t = Timestamp::new(10, 0);
        r1.write(
            ConflictMode::Lww,
            &n1,
            &VersionVector::new(),
            b("from n1"),
            t,
        )
        .unwrap();
        r2.write(
            ConflictMode::Lww,
            &n2,
            &VersionVector::new(),
            b("from n2"),
            t,
        )
        .unwrap();
        r1.merge(ConflictMode::Lww, &r2);
        assert_eq!(vals(&r1), [b"from n2"]);
    }

    #[test]
    fn a_delete_is_a_tombstone_that_wins_over_the_stale_copy() {
        let n1 = Actor::from("n1");
        let mut r1 = Register::new();
        r1.write(
            ConflictMode::Siblings,
            &n1,
            &VersionVector::new(),
            b("x"),
            Timestamp::new(1, 0),
        )
        .unwrap();
        let mut stale = r1.clone();
        let ctx = r1.context().clone();
        r1.write(
            ConflictMode::Siblings,
            &n1,
            &ctx,
            None,
            Timestamp::new(2, 0),
        )
        .unwrap();
        assert!(r1.is_deleted());
        stale.merge(ConflictMode::Siblings, &r1);
        assert!(
            stale.is_deleted(),
            "the replica that missed the delete learns it: {stale:?}"
        );
        let mut again = r1.clone();
        again.merge(ConflictMode::Siblings, &Register::new());
        assert!(again.is_deleted());
    }

    #[test]
    fn a_delete_concurrent_with_a_write_keeps_the_write_visible() {
        let (n1, n2) = (Actor::from("n1"), Actor::from("n2"));
        let mut r1 = Register::new();
        r1.write(
            ConflictMode::Siblings,
            &n1,
            &VersionVector::new(),
            b("x"),
            Timestamp::new(1, 0),
        )
        .unwrap();
        let mut r2 = r1.clone();
        let ctx = r1.context().clone();
        r1.write(
            ConflictMode::Siblings,
            &n1,
            &ctx,
            None,
            Timestamp::new(2, 0),
        )
        .unwrap();
        r2.write(
            ConflictMode::Siblings,
            &n2,
            &ctx,
            b("y"),
            Timestamp::new(2, 0),
        )
        .unwrap();
        r1.merge(ConflictMode::Siblings, &r2);
        assert_eq!(vals(&r1), [b"y"]);
        assert!(!r1.is_deleted());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Write {
            at: usize,
            read_from: Option<usize>,
            value: Option<u8>,
            wall_ms: u64,
        },
        Merge {
            from: usize,
            to: usize,
        },
        /// A direct write (lww only): node `by`'s writer stamps it with its own clock (which
        /// takes in the node's) under the next of its node-wide sequence (`skip` numbers used
        /// for other keys first), and replica `at` merges it.
        Direct {
            by: usize,
            at: usize,
            value: Option<u8>,
            wall_ms: u64,
            skip: u64,
        },
    }

    fn arb_op_with_direct() -> impl Strategy<Value = Op> {
        prop_oneof![
            arb_op(),
            (
                0..3usize,
                0..3usize,
                proptest::option::of(any::<u8>()),
                0u64..50,
                0u64..3
            )
                .prop_map(|(by, at, value, wall_ms, skip)| Op::Direct {
                    by,
                    at,
                    value,
                    wall_ms,
                    skip
                }),
        ]
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0..3usize,
                proptest::option::of(0..3usize),
                proptest::option::of(any::<u8>()),
                0u64..50
            )
                .prop_map(|(at, read_from, value, wall_ms)| Op::Write {
                    at,
                    read_from,
                    value,
                    wall_ms
                }),
            (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Merge { from, to }),
        ]
    }

    fn arb_mode() -> impl Strategy<Value = ConflictMode> {
        prop_oneof![Just(ConflictMode::Siblings), Just(ConflictMode::Lww)]
    }

    /// Plays a history on three replicas, each with its own HLC, and returns every state seen.
    fn play(mode: ConflictMode, ops: &[Op]) -> (Vec<Register>, Vec<Register>) {
        let mut replicas = vec![Register::new(); 3];
        let mut clocks = vec![crate::Hlc::new(); 3];
        let mut writers = vec![(crate::Hlc::new(), 0u64); 3];
        let mut seen = Vec::new();
        for op in ops {
            match *op {
                Op::Write {
                    at,
                    read_from,
                    value,
                    wall_ms,
                } => {
                    let ctx = read_from
                        .map(|r| replicas[r].context().clone())
                        .unwrap_or_default();
                    clocks[at].observe(replicas[at].timestamp_max(), wall_ms);
                    let ts = clocks[at].now(wall_ms);
                    let actor = Actor::new(format!("n{at}"), 0);
                    replicas[at]
                        .write(mode, &actor, &ctx, value.map(|v| Bytes::from(vec![v])), ts)
                        .unwrap();
                    seen.push(replicas[at].clone());
                }
                Op::Merge { from, to } => {
                    let other = replicas[from].clone();
                    replicas[to].merge(mode, &other);
                    seen.push(replicas[to].clone());
                }
                Op::Direct {
                    by,
                    at,
                    value,
                    wall_ms,
                    skip,
                } => {
                    let now = clocks[by].now(wall_ms);
                    let (clock, seq) = &mut writers[by];
                    let ts = clock.observe(now, wall_ms);
                    clocks[by].observe(ts, wall_ms);
                    *seq += 1 + skip;
                    let writer = Actor::new(format!("n{by}"), 0).direct_writer();
                    let sibling = Sibling {
                        value: value.map(|v| Bytes::from(vec![v])),
                        timestamp: ts,
                        expires_ms: None,
                    };
                    let write = Register::single(Dot::new(writer, *seq), sibling).unwrap();
                    seen.push(write.clone());
                    replicas[at].merge(mode, &write);
                    seen.push(replicas[at].clone());
                }
            }
        }
        (seen, replicas)
    }

    fn merged(mode: ConflictMode, a: &Register, b: &Register) -> Register {
        let mut m = a.clone();
        m.merge(mode, b);
        m
    }

    /// Merge is commutative, associative and idempotent on three of the `seen` states.
    fn assert_join(
        mode: ConflictMode,
        seen: &[Register],
        picks: &[proptest::sample::Index],
    ) -> Result<(), TestCaseError> {
        let (a, b, c) = (picks[0].get(seen), picks[1].get(seen), picks[2].get(seen));
        prop_assert_eq!(merged(mode, a, b), merged(mode, b, a));
        prop_assert_eq!(
            merged(mode, &merged(mode, a, b), c),
            merged(mode, a, &merged(mode, b, c))
        );
        prop_assert_eq!(&merged(mode, a, a), a);
        Ok(())
    }

    proptest! {
        #[test]
        fn register_merge_is_a_join_in_both_modes(mode in arb_mode(), ops in proptest::collection::vec(arb_op(), 1..40),
                                                   picks in proptest::collection::vec(any::<proptest::sample::Index>(), 3)) {
            assert_join(mode, &play(mode, &ops).0, &picks)?;
        }

        #[test]
        fn lww_merge_stays_a_join_with_direct_writes(ops in proptest::collection::vec(arb_op_with_direct(), 1..40),
                                                     picks in proptest::collection::vec(any::<proptest::sample::Index>(), 3)) {
            let mode = ConflictMode::Lww;
            assert_join(mode, &play(mode, &ops).0, &picks)?;
        }

        #[test]
        fn lww_picks_the_same_single_winner_on_every_replica(ops in proptest::collection::vec(arb_op_with_direct(), 1..40)) {
            // Blind writes, as LWW clients make them: a write with a context replaces what it
            // saw whatever the timestamps (causality first), so "highest timestamp wins" is
            // the rule among writes that did not see each other.
            let ops: Vec<Op> = ops.into_iter().map(|op| match op {
                Op::Write { at, value, wall_ms, .. } => Op::Write { at, read_from: None, value, wall_ms },
                merge => merge,
            }).collect();
            let (seen, mut replicas) = play(ConflictMode::Lww, &ops);
            // Full exchange: every replica merges every other.
            for _ in 0..2 {
                for to in 0..3 {
                    for from in 0..3 {
                        let other = replicas[from].clone();
                        replicas[to].merge(ConflictMode::Lww, &other);
                    }
                }
            }
            prop_assert!(replicas.iter().all(|r| r == &replicas[0]));
            prop_assert!(replicas[0].sibling_count() <= 1);
            // The winner carries the highest timestamp ever written.
            let highest = seen.iter().map(|r| r.timestamp_max()).max().unwrap_or_default();
            prop_assert_eq!(replicas[0].timestamp_max(), highest);
        }
    }
}
