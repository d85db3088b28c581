//! The oracle: what clients asked for and what the nodes did with it, recorded in the
//! [`History`] the checks judge. It watches each step of a node: the writes it began
//! coordinating (and the versions they made), the forwards it sent, the reads it started, and
//! the copies of the keys the step touched.

use std::collections::VecDeque;

use driftkv_causal::{Actor, Dot};
use driftkv_core::fasthash::FastMap;
use driftkv_core::{Input, Output};
use driftkv_wire::{Key, Message, Object, Reply, ReqId};

use super::expected::Expected;
use super::nodes::timeout_us;
use super::time::US_PER_MS;
use super::{FORWARD_MEMORY_TIMEOUTS, Sim};
use crate::history::{Coordination, CounterApply, HistRef, History, Outcome};

/// A read is forgotten this many ticks past its deadline (by then it surely repaired).
const READ_MEMORY_TICKS: u64 = 2;

pub(super) struct Oracle {
    pub(super) hist: History,
    /// Client writes in flight as forwards, by (forwarding node, its life, request id);
    /// forgotten once no copy can still be in flight.
    forwards: FastMap<(usize, u64, ReqId), HistRef>,
    /// The same forwards by when they were forwarded, oldest first.
    forwards_order: VecDeque<(u64, (usize, u64, ReqId))>,
}

impl Oracle {
    pub(super) fn new(expect: &Expected) -> Oracle {
        Oracle {
            hist: History::with_capacity(expect.keys, expect.writes),
            forwards: Default::default(),
            forwards_order: VecDeque::new(),
        }
    }

    /// The key in `slot` has new `primaries` (the members changed): versions being timed wait
    /// for the new primaries that lack them (they get them by transfer or repair) and no
    /// longer for the ones that left.
    pub(super) fn primaries_changed(&mut self, slot: usize, primaries: Vec<usize>, now: u64) {
        let hist = &mut self.hist;
        if primaries == hist.keys[slot].primaries {
            return;
        }
        let old = std::mem::replace(&mut hist.keys[slot].primaries, primaries.clone());
        let open = std::mem::take(&mut hist.keys[slot].open);
        let mut still = Vec::with_capacity(open.len());
        for id in open {
            let v = &mut hist.versions[id];
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
        hist.keys[slot].open = still;
    }

    /// Node `i` (in its life `epoch`) forwarded the client write `h` as request `req` at `now`.
    fn note_forward(
        &mut self,
        i: usize,
        epoch: u64,
        req: ReqId,
        h: HistRef,
        now: u64,
        horizon: u64,
    ) {
        self.forwards.insert((i, epoch, req), h);
        self.forwards_order.push_back((now, (i, epoch, req)));
        // A forward (or a duplicate of it) arrives within the client's patience, many times
        // over: older entries can go.
        while let Some((at, id)) = self.forwards_order.front() {
            if at + horizon > now {
                break;
            }
            self.forwards.remove(id);
            self.forwards_order.pop_front();
        }
    }
}

/// What an input is about, looked at before it moves into the node.
pub(super) struct InputAbout {
    /// The client write it carries (a request, or a forward of one).
    pub(super) write: Option<HistRef>,
    /// A replica's reply to a read this node coordinates.
    reply_to: Option<ReqId>,
    /// A tick: reads may expire.
    tick: bool,
}

impl Sim<'_> {
    /// What `input` is about; the slots of the keys it touches go into `slots`.
    pub(super) fn what_input_touches(
        &self,
        input: &Input,
        from: Option<(usize, u64)>,
        slots: &mut Vec<usize>,
    ) -> InputAbout {
        let index = &self.oracle.hist.key_index;
        let mut touch = |key: &Key| slots.extend(index.get(key).copied());
        let mut about = InputAbout {
            write: None,
            reply_to: None,
            tick: false,
        };
        match input {
            Input::Request { client, request } => {
                touch(request.key());
                if request.is_write() {
                    about.write = self.clients.in_flight.get(client).and_then(|op| op.hist);
                }
            }
            Input::Message { message, .. } => match message {
                Message::Forward { req, request } => {
                    touch(request.key());
                    if let (true, Some((f, fe))) = (request.is_write(), from) {
                        about.write = self.oracle.forwards.get(&(f, fe, *req)).copied();
                    }
                }
                Message::ReplicaWrite { key, .. } | Message::Repair { key, .. } => touch(key),
                Message::AaeSync { objects, .. }
                | Message::AaeObjects { objects, .. }
                | Message::Transfer { objects, .. } => {
                    objects.iter().for_each(|(key, _)| touch(key));
                }
                Message::ReplicaReadReply { req, .. } => about.reply_to = Some(*req),
                _ => {}
            },
            Input::Tick => about.tick = true,
        }
        about
    }

    /// Remembers the reads node `i` just started (by their replica-read request ids).
    pub(super) fn note_reads(&mut self, i: usize, out: &[Output]) {
        // The node's deadline is in its own (drifting) time; this is when it falls in ours.
        let sn = &mut self.nodes[i];
        for o in out {
            if let Output::Send {
                message: Message::ReplicaRead { req, key, .. },
                ..
            } = o
                && let Some(&slot) = self.oracle.hist.key_index.get(key)
                && sn.read_reqs.insert(*req, slot).is_none()
            {
                let until = self.time.now_us + timeout_us(self.sc.request_timeout_ms, sn.drift);
                sn.read_expiry.push_back((until, *req));
            }
        }
    }

    /// The keys of node `i`'s reads that may repair its own copy in this step: the read a
    /// replica's reply is for, and on a tick those at or near their deadline.
    pub(super) fn reads_to_look_at(
        &mut self,
        i: usize,
        about: &InputAbout,
        slots: &mut Vec<usize>,
    ) {
        let sn = &mut self.nodes[i];
        if let Some(slot) = about.reply_to.and_then(|req| sn.read_reqs.get(&req)) {
            slots.push(*slot);
        }
        if !about.tick {
            return;
        }
        // A read repairs at its deadline, on the first tick past it: check its key on every
        // tick that may be that one, and forget it once that is surely past.
        let (now, tick) = (self.time.now_us, self.sc.tick_ms * US_PER_MS);
        for (until, req) in &sn.read_expiry {
            if *until > now + tick {
                break;
            }
            slots.extend(sn.read_reqs.get(req));
        }
        while let Some((until, req)) = sn.read_expiry.front() {
            if until + READ_MEMORY_TICKS * tick > now {
                break;
            }
            sn.read_reqs.remove(req);
            sn.read_expiry.pop_front();
        }
    }

    /// Looks at node `i`'s copy of each key in `slots` that has a version it is counted as
    /// missing, and records the versions the copy holds; leaves `slots` empty.
    pub(super) fn look_at_copies(&mut self, i: usize, slots: &mut Vec<usize>) {
        slots.sort_unstable();
        slots.dedup();
        for &slot in slots.iter() {
            if self.oracle.hist.node_lacks_open_version(slot, i) {
                // The node's copy, looked at in place (no copy of it is made).
                let (hist, now_us) = (&mut self.oracle.hist, self.time.now_us);
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
        slots.clear();
    }

    /// A client write reached node `i`: note a forward, or record the coordination.
    /// `started`: the node began coordinating a write (it ignores a duplicated forward).
    pub(super) fn watch_write(&mut self, i: usize, h: HistRef, started: bool, out: &[Output]) {
        if let Some(req) = forwarded(out) {
            let horizon = self.sc.client_timeout_ms * US_PER_MS * FORWARD_MEMORY_TIMEOUTS;
            let epoch = self.nodes[i].epoch;
            self.oracle
                .note_forward(i, epoch, req, h, self.time.now_us, horizon);
            return;
        }
        if refused(out) || !started {
            return;
        }
        match h {
            HistRef::CounterOp(c) => self.coordinated_counter_op(i, c),
            HistRef::Write(w) if self.oracle.hist.writes[w].delete => {
                self.coordinated_register_delete(i, w)
            }
            HistRef::Write(w) => self.coordinated_write(i, w),
            HistRef::SetOp(s) => self.coordinated_set_op(i, s),
            HistRef::CounterDelete(d) => self.coordinated_counter_delete(i, d),
            HistRef::MapOp(m) => self.coordinated_map_op(i, m),
        }
    }

    fn coordinated_counter_op(&mut self, i: usize, c: usize) {
        let hist = &mut self.oracle.hist;
        let seq = hist.counter_applies;
        hist.counter_applies += 1;
        let applied = &mut hist.counter_ops[c].applied_by;
        applied.push(CounterApply {
            node: i,
            incarnation: self.nodes[i].live_incarnation(),
            at_us: self.time.now_us,
            seq,
            void: false,
        });
        let index = applied.len() - 1;
        self.note_unsynced(i, HistRef::CounterOp(c), index);
    }

    /// Node `i` coordinated register write `w`: the version it made (found in its copy by
    /// value) is recorded and timed.
    fn coordinated_write(&mut self, i: usize, w: usize) {
        let now = self.time.now_us;
        let slot = self.oracle.hist.writes[w].key;
        let key = self.oracle.hist.keys[slot].key.clone();
        // A direct write is its own state (its coordinator may hold no copy, or one where it
        // lost to a later write): recorded as the node made it.
        let direct = self.nodes[i]
            .node
            .as_ref()
            .and_then(|node| node.last_direct_write())
            .filter(|(k, _)| **k == key)
            .and_then(|(_, reg)| {
                let (dot, s) = reg.dvv().siblings().next()?;
                let known = self.oracle.hist.writes[w]
                    .coordinations
                    .iter()
                    .any(|c| c.dot.as_ref() == Some(dot));
                (s.value.as_ref() == Some(&self.oracle.hist.writes[w].value) && !known)
                    .then(|| (dot.clone(), reg.context().clone(), s.timestamp))
            });
        if let Some((dot, context, timestamp)) = direct {
            return self.record_register_write(i, w, dot, context, timestamp);
        }
        let Some(Object::Register(reg)) = self.copy(i, &key) else {
            self.oracle.hist.anomaly(
                "oracle",
                now,
                format!(
                    "n{} coordinated a write of {key:?} but holds no register",
                    i + 1
                ),
            );
            return;
        };
        let hist = &mut self.oracle.hist;
        let value = hist.writes[w].value.clone();
        let coordinations = &hist.writes[w].coordinations;
        let known = |dot: &Dot| coordinations.iter().any(|c| c.dot.as_ref() == Some(dot));
        let found = reg
            .dvv()
            .siblings()
            .find(|(dot, s)| s.value.as_ref() == Some(&value) && !known(dot))
            .map(|(dot, s)| (dot.clone(), s.timestamp));
        let Some((dot, timestamp)) = found else {
            hist.anomaly(
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
        self.record_register_write(i, w, dot, reg.context().clone(), timestamp);
    }

    /// Node `i` coordinated set update `s`: an add made a dot (found in its copy), which is
    /// recorded and timed; a remove makes none.
    fn coordinated_set_op(&mut self, i: usize, s: usize) {
        let now = self.time.now_us;
        let slot = self.oracle.hist.set_ops[s].key;
        let key = self.oracle.hist.keys[slot].key.clone();
        let copy = self.copy(i, &key);
        // A delete of a set the coordinator held nothing of writes nothing.
        if copy.is_none() && self.oracle.hist.set_ops[s].clear {
            return;
        }
        let Some(Object::Set(set)) = copy else {
            self.oracle.hist.anomaly(
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
        let op = &self.oracle.hist.set_ops[s];
        let dot = if op.add {
            let actor = Actor::new(
                self.nodes[i].name.as_str(),
                self.nodes[i].live_incarnation(),
            );
            let counter = context.get(&actor);
            if counter == 0 || !set.contains(&op.member) {
                self.oracle.hist.anomaly(
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
        let coordinations = &mut self.oracle.hist.set_ops[s].coordinations;
        coordinations.push(Coordination {
            node: i,
            at_us: now,
            dot: dot.clone(),
            context_after: context,
            timestamp: None,
            void: false,
            version: None,
        });
        let index = coordinations.len() - 1;
        self.note_unsynced(i, HistRef::SetOp(s), index);
        if let Some(dot) = dot {
            let hist = &mut self.oracle.hist;
            let v = hist.track(slot, dot, i, now);
            hist.set_ops[s].coordinations[index].version = Some(v);
        }
    }

    /// Keeps a coordination node `i` recorded, until its next good sync, when a crash before
    /// that would lose it.
    pub(super) fn note_unsynced(&mut self, i: usize, h: HistRef, index: usize) {
        if self.disk.crash_loses_unsynced {
            self.nodes[i].unsynced.push((h, index));
        }
    }

    /// A client operation ended: acknowledged, failed or timed out. An acknowledged write's
    /// dots join the key's frontier, and its versions are timed from now.
    pub(super) fn set_outcome(&mut self, h: HistRef, outcome: Outcome) {
        let now = self.time.now_us;
        let acked = outcome == Outcome::Acked;
        let hist = &mut self.oracle.hist;
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
            HistRef::CounterDelete(d) => hist.counter_deletes[d].outcome = outcome,
            HistRef::MapOp(m) => hist.map_ops[m].outcome = outcome,
        }
    }
}

/// The request id of the forward a step sent, if it forwarded the write.
fn forwarded(out: &[Output]) -> Option<ReqId> {
    out.iter().find_map(|o| match o {
        Output::Send {
            message: Message::Forward { req, .. },
            ..
        } => Some(*req),
        _ => None,
    })
}

/// Whether a step refused the write. A coordinator refuses before applying (unavailable, wrong
/// type, bad request) with an immediate error; once it applied the write, no answer comes out
/// in the same step unless it is a success.
fn refused(out: &[Output]) -> bool {
    out.iter().any(|o| {
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
    })
}
