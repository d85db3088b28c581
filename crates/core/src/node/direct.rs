//! Direct writes: a last-write-wins register write that any node coordinates without reading
//! the key. The coordinator stamps it with its hybrid clock under a dot of its own direct
//! writer, sends it to every target at once and answers after W acknowledgements (the path
//! Cassandra's coordinators take, and the one the PBS model assumes).
//!
//! The dot is not issued on top of a stored copy (the coordinator may hold none), so its
//! uniqueness rests on a lease kept in the store: the writer's sequence and clock never go
//! below what the lease record allows, and the record is raised (in the same batch, so it is
//! synced before any message carrying a dot above the old ceiling leaves) before they pass it.
//! A restarted node starts above both ceilings (and writes nothing until its wall clock has
//! passed the clock's): no dot is issued twice, and a later dot of the writer always has a
//! later timestamp, so causal order and timestamp order agree for its writes as they do for
//! a replica's (see `Register::write`). A data directory put back from an older copy of
//! itself gives all of this up, as it does for a replica's own dots.

use super::put::Write;
use super::*;
use driftkv_causal::{Dot, Sibling, Timestamp};

/// The metadata record of the direct writer's lease: 16 bytes, the sequence ceiling and the
/// clock ceiling (milliseconds), big-endian.
const LEASE_RECORD: &str = "direct.lease";

/// Dots taken per raise of the sequence ceiling.
const LEASE_DOTS: u64 = 1 << 16;

/// Milliseconds of clock taken per raise of the clock ceiling. A node restarted before its
/// wall clock passed its last ceiling refuses direct writes until it does (up to this long),
/// so it is kept short, at the price of a small record written (and synced with its batch)
/// up to ten times a second while the node writes.
const LEASE_MS: u64 = 100;

/// The largest millisecond a timestamp holds (the hybrid clock stops there).
const PHYSICAL_MS_MAX: u64 = u64::MAX >> 16;

/// The direct writer of one node: its actor, the last dot's sequence, its clock, and the
/// lease ceilings they may reach before the record is raised. (Should the clock reach its end,
/// which only forged peer timestamps make it do, timestamps repeat but dots still rise, and
/// ties go to the higher dot: the order stays the causal one.)
#[derive(Debug)]
pub(super) struct DirectWriter {
    actor: Actor,
    seq: u64,
    seq_ceiling: u64,
    clock: Hlc,
    clock_ceiling_ms: u64,
    /// The clock ceiling this node started under: until its wall clock passes it, a direct
    /// write is refused (retryable) rather than stamped ahead of every other node's clock, and
    /// a node restarted again and again within a lease never pushes its writes further ahead.
    resume_at_ms: u64,
    /// The last direct write made, and its key: for an observer (the simulator's oracle),
    /// which cannot find it in a copy this node may not hold.
    last: Option<(Key, Register)>,
}

impl DirectWriter {
    /// The writer of a node whose replica actor is `actor`, above the lease in `store`.
    pub(super) fn open(actor: &Actor, store: &dyn Store) -> Result<DirectWriter, StoreError> {
        let (seq_ceiling, clock_ceiling_ms) = match store.get(&keys::meta_key(LEASE_RECORD))? {
            Some(raw) => {
                let bytes: [u8; 16] = raw.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt("the direct writer's lease record is not 16 bytes".into())
                })?;
                let (seq, ms) = bytes.split_at(8);
                let seq = u64::from_be_bytes(seq.try_into().expect("8 bytes"));
                let ms = u64::from_be_bytes(ms.try_into().expect("8 bytes"));
                (seq, ms.min(PHYSICAL_MS_MAX))
            }
            None => (0, 0),
        };
        Ok(DirectWriter {
            actor: actor.direct_writer(),
            seq: seq_ceiling,
            seq_ceiling,
            clock: Hlc::starting_after(Timestamp::new(clock_ceiling_ms, 0)),
            clock_ceiling_ms,
            resume_at_ms: clock_ceiling_ms,
            last: None,
        })
    }
}

impl Node {
    /// Coordinates a register write (`Put` or `Overwrite`; a `None` value is a tombstone) of a
    /// bucket with `write_path = direct`: no forward, no read of the key.
    pub(super) fn coordinate_direct(
        &mut self,
        cx: &mut Step<'_>,
        waiter: Waiter,
        request: Request,
        route: Route,
        targets: Vec<(NodeId, Option<NodeId>)>,
    ) {
        self.stats.writes += 1;
        self.stats.direct_writes += 1;
        if targets.len() < route.needed {
            return self.answer(
                waiter,
                too_few_reachable(targets.len(), route.needed),
                cx.out,
            );
        }
        let (key, value, expires_ms) = match request {
            Request::Put {
                key,
                value,
                expires_ms,
                ..
            }
            | Request::Overwrite {
                key,
                value,
                expires_ms,
                ..
            } => (key, value, expires_ms),
            _ => {
                let reply = Reply::error(ErrorKind::Internal, "not a register write");
                return self.answer(waiter, reply, cx.out);
            }
        };
        let register = match self.stamp_direct(cx, value, expires_ms) {
            Ok(register) => register,
            Err(reply) => return self.answer(waiter, reply, cx.out),
        };
        let object = Object::Register(register.clone());
        if let Err(e) = self.within_limits(&object) {
            self.stats.writes_refused_limits += 1;
            return self.answer(waiter, Reply::error(ErrorKind::BadRequest, e), cx.out);
        }
        self.direct.last = Some((key.clone(), register));
        let reply = Reply::Written {
            context: object.version_vector().cloned().unwrap_or_default(),
        };
        let partition = route.partition;
        // A coordinator that is a target applies the write as its replicas do: a merge.
        let holds = targets.iter().any(|(node, _)| *node == self.cfg.id);
        if holds
            && let Err(e) = self.merge_into_store(cx.store, cx.now_ms, partition, &key, &object)
        {
            return self.answer(waiter, Reply::error(ErrorKind::Internal, e), cx.out);
        }
        let write = Write {
            key,
            partition,
            object,
        };
        self.replicate(cx, waiter, write, route, targets, reply, holds);
    }

    /// The next dot and timestamp of this node's direct writer, the lease raised first when
    /// either would pass it: the write as a register of its own.
    fn stamp_direct(
        &mut self,
        cx: &mut Step<'_>,
        value: Option<Bytes>,
        expires_ms: Option<u64>,
    ) -> Result<Register, Reply> {
        if cx.now_ms < self.direct.resume_at_ms {
            let wait_ms = self.direct.resume_at_ms - cx.now_ms;
            return Err(Reply::unavailable(
                format!(
                    "this node restarted within its clock lease; its direct writes resume in {wait_ms} ms (or ask another node)"
                ),
                0,
                1,
            ));
        }
        let now = self.hlc.now(cx.now_ms);
        let w = &mut self.direct;
        let timestamp = w.clock.observe(now, cx.now_ms);
        let Some(seq) = w.seq.checked_add(1).filter(|s| *s <= COUNTER_MAX) else {
            return Err(exhausted(driftkv_causal::Exhausted));
        };
        if seq > w.seq_ceiling || timestamp.physical_ms() >= w.clock_ceiling_ms {
            let seq_ceiling = seq.saturating_add(LEASE_DOTS).min(COUNTER_MAX);
            let clock_ceiling_ms = timestamp
                .physical_ms()
                .saturating_add(LEASE_MS)
                .min(PHYSICAL_MS_MAX);
            let mut record = [0u8; 16];
            record[..8].copy_from_slice(&seq_ceiling.to_be_bytes());
            record[8..].copy_from_slice(&clock_ceiling_ms.to_be_bytes());
            if let Err(e) = cx.store.put(&keys::meta_key(LEASE_RECORD), &record) {
                self.stats.storage_errors += 1;
                return Err(Reply::error(ErrorKind::Internal, e.to_string()));
            }
            w.seq_ceiling = seq_ceiling;
            w.clock_ceiling_ms = clock_ceiling_ms;
        }
        w.seq = seq;
        let dot = Dot::new(w.actor.clone(), seq);
        // The node's own clock never falls behind its writer's (which starts at the lease's
        // ceiling after a restart): a replica-path write coordinated here next orders after.
        self.hlc.observe(timestamp, cx.now_ms);
        let sibling = Sibling {
            value,
            timestamp,
            expires_ms,
        };
        Register::single(dot, sibling).map_err(exhausted)
    }

    /// The last direct write this node made, with its key (`None` before the first): what an
    /// observer that watches every step (the simulator's oracle) records of it.
    pub fn last_direct_write(&self) -> Option<(&Key, &Register)> {
        self.direct.last.as_ref().map(|(k, r)| (k, r))
    }
}
