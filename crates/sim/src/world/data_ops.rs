//! The data-type operations of the workload: map updates, deletes of every type and NX races
//! (writes with a TTL go through `send_put`); what the oracle records of them when a node
//! coordinates one; and, with TTLs, which node answered each read and by what clock.

use bytes::Bytes;
use driftkv_causal::{Actor, ConflictMode, Dot, VersionVector};
use driftkv_core::{ClientId, Output};
use driftkv_wire::{Key, Object, ObjectKind, Reply, Request};

use super::Sim;
use super::arrivals::{ExtraDraw, numbered};
use super::clients::{ClientOp, NxRace, Stage};
use super::time::US_PER_MS;
use crate::history::{
    Coordination, Coordinations, CounterDeleteRec, CounterReset, HistRef, KeyKind, MapOp, MapOpRec,
    Outcome, SetOpRec, WriteRec,
};
use crate::workload::OpKind;

/// Clients in one NX race.
const NX_CLIENTS: usize = 2;

impl Sim<'_> {
    /// A map update or a delete of the key in `op.key`, recorded in the history first.
    pub(super) fn send_data_op(
        &mut self,
        kind: OpKind,
        mut op: ClientOp,
        key: Key,
        delta: i64,
        extra: ExtraDraw,
    ) {
        let w = self.clients.w;
        let field = || Bytes::from(numbered("f", extra.field.into(), ""));
        let (hist, request) = match kind {
            OpKind::MapSet => {
                let n = self.fresh_number();
                let request = Request::MapUpdate {
                    key,
                    set: vec![(field(), Bytes::from(n.to_string()))],
                    increment: Vec::new(),
                    remove: Vec::new(),
                    w,
                };
                (self.record_map_op(op.key, MapOp::Set(field(), n)), request)
            }
            OpKind::MapIncrement => {
                let request = Request::MapUpdate {
                    key,
                    set: Vec::new(),
                    increment: vec![(field(), delta)],
                    remove: Vec::new(),
                    w,
                };
                let h = self.record_map_op(op.key, MapOp::Increment(field(), delta));
                (h, request)
            }
            OpKind::MapRemove => {
                let request = Request::MapUpdate {
                    key,
                    set: Vec::new(),
                    increment: Vec::new(),
                    remove: vec![field()],
                    w,
                };
                (self.record_map_op(op.key, MapOp::Remove(field())), request)
            }
            OpKind::DeleteMap => {
                let h = self.record_map_op(op.key, MapOp::Delete);
                (h, delete(key, ObjectKind::Map, w))
            }
            OpKind::DeleteRegister => {
                let h = self.record_register_delete(op.key);
                (h, delete(key, ObjectKind::Register, w))
            }
            OpKind::DeleteCounter => {
                let hist = &mut self.oracle.hist;
                hist.counter_deletes.push(CounterDeleteRec {
                    key: op.key,
                    outcome: Outcome::Pending,
                    coordinations: Vec::new(),
                });
                let h = HistRef::CounterDelete(hist.counter_deletes.len() - 1);
                (h, delete(key, ObjectKind::Counter, w))
            }
            OpKind::DeleteSet => {
                let hist = &mut self.oracle.hist;
                hist.set_ops.push(SetOpRec {
                    key: op.key,
                    member: Bytes::new(),
                    add: false,
                    clear: true,
                    outcome: Outcome::Pending,
                    coordinations: Coordinations::None,
                });
                let h = HistRef::SetOp(hist.set_ops.len() - 1);
                (h, delete(key, ObjectKind::Set, w))
            }
            other => unreachable!("{} is not a data-type update", other.name()),
        };
        op.hist = Some(hist);
        self.send_op(request, op);
    }

    fn record_map_op(&mut self, slot: usize, map_op: MapOp) -> HistRef {
        let hist = &mut self.oracle.hist;
        hist.map_ops.push(MapOpRec {
            key: slot,
            op: map_op,
            outcome: Outcome::Pending,
            coordinations: Coordinations::None,
        });
        HistRef::MapOp(hist.map_ops.len() - 1)
    }

    /// A register delete, recorded as a write of a tombstone: its `value` only names it.
    fn record_register_delete(&mut self, slot: usize) -> HistRef {
        self.clients.next_value += 1;
        let label = Bytes::from(numbered("delete#", self.clients.next_value, ""));
        let issued_us = self.time.now_us;
        let hist = &mut self.oracle.hist;
        hist.writes.push(WriteRec {
            key: slot,
            value: label,
            context_in: VersionVector::new(),
            issued_us,
            outcome: Outcome::Pending,
            acked_us: None,
            coordinations: Coordinations::None,
            expires_ms: None,
            delete: true,
        });
        HistRef::Write(hist.writes.len() - 1)
    }

    /// A fresh number, for a map field's write (unique, as register values are).
    fn fresh_number(&mut self) -> i64 {
        self.clients.next_value += 1;
        i64::try_from(self.clients.next_value).expect("fewer writes than i64::MAX")
    }

    // ---- NX races ----

    /// Two clients race to set a fresh register key if it does not exist: each reads it, and
    /// writes with the read's context when the read found nothing. The second starts `gap_ms`
    /// after the first.
    pub(super) fn start_nx_race(&mut self, mode: ConflictMode, gap_ms: u64) {
        let race = self.clients.stats.nx_races.len();
        self.clients.stats.nx_races.push(NxRace::default());
        let slot = self.slot_for(KeyKind::Register(mode), numbered("nx", race as u64, ""));
        let key = self.oracle.hist.keys[slot].key.clone();
        for client in 0..NX_CLIENTS {
            let wait_us = if client == 0 { 0 } else { gap_ms * US_PER_MS };
            let Some(node) = self.choose_node(slot) else {
                self.clients.count_op(OpKind::SetNx).failed += 1;
                self.clients.stats.nx_races[race].failed += 1;
                continue;
            };
            let value = self.fresh_value();
            let mut op = ClientOp::new(Stage::NxRead { race, value }, slot, node, 0);
            op.sent_us = self.time.now_us + wait_us;
            let (key, r) = (key.clone(), self.clients.r);
            self.issue_after(node, Request::Get { key, r }, op, wait_us);
        }
    }

    pub(super) fn nx_read_replied(
        &mut self,
        race: usize,
        value: Bytes,
        op: &ClientOp,
        reply: &Reply,
    ) {
        match reply {
            Reply::NotFound { context } => {
                self.check_register_read(op, reply);
                let context = context.clone();
                let stage = Stage::NxWrite(race);
                self.send_put(op.node, op.key, value, context, stage, None, None);
            }
            Reply::Values { .. } => {
                self.check_register_read(op, reply);
                self.clients.count_op(OpKind::SetNx).ok += 1;
                self.clients.stats.nx_races[race].declined += 1;
            }
            _ => {
                self.clients.count_op(OpKind::SetNx).failed += 1;
                self.clients.stats.nx_races[race].failed += 1;
            }
        }
    }

    pub(super) fn nx_write_replied(&mut self, race: usize, op: &ClientOp, reply: &Reply) {
        let outcome = match reply {
            Reply::Written { .. } => {
                self.clients.count_op(OpKind::SetNx).ok += 1;
                self.clients.stats.nx_races[race].won += 1;
                Outcome::Acked
            }
            other => {
                self.clients.count_op(OpKind::SetNx).failed += 1;
                self.clients.stats.nx_races[race].failed += 1;
                Outcome::Failed(format!("{other:?}"))
            }
        };
        if let Some(h) = op.hist {
            self.set_outcome(h, outcome);
        }
    }

    /// A map read: every field it returns is one some client wrote or incremented.
    pub(super) fn check_map_read(&mut self, slot: usize, reply: &Reply) {
        let Reply::Map { fields, .. } = reply else {
            return;
        };
        let now = self.time.now_us;
        let hist = &mut self.oracle.hist;
        for (name, _) in fields {
            let named = hist
                .map_ops
                .iter()
                .any(|m| m.key == slot && m.op.adds(name));
            if !named {
                let key = hist.keys[slot].key.clone();
                hist.anomaly(
                    crate::check::MAPS_CHECK,
                    now,
                    format!(
                        "a read of {key:?} returned field {:?}, which no client wrote",
                        String::from_utf8_lossy(name)
                    ),
                );
            }
        }
    }

    // ---- the oracle's part ----

    /// Notes, for each read node `i` answered in this step, that it did and its clock then.
    pub(super) fn note_answers(&mut self, i: usize, node_ms: u64, out: &[Output]) {
        for o in out {
            let mut o = o;
            while let Output::Durable(inner) = o {
                o = inner;
            }
            if let Output::Reply { client, .. } = o {
                self.note_answer(*client, i, node_ms);
            }
        }
    }

    fn note_answer(&mut self, client: ClientId, i: usize, node_ms: u64) {
        let now = self.time.now_us;
        if let Some(op) = self.clients.in_flight.get_mut(&client) {
            op.answered = Some((i, node_ms, now));
        }
    }

    /// The actor node `i` writes under now.
    fn actor_of(&self, i: usize) -> Actor {
        let sn = &self.nodes[i];
        Actor::new(sn.name.as_str(), sn.live_incarnation())
    }

    /// Node `i`'s copy of `key` after it coordinated a delete of a `kind`: `None` when it holds
    /// nothing (it wrote nothing), or holds another kind (an anomaly, recorded).
    fn deleted_copy(&mut self, i: usize, key: &Key, kind: ObjectKind) -> Option<Object> {
        let copy = self.copy(i, key)?;
        if copy.kind() == kind {
            return Some(copy);
        }
        let what = format!(
            "n{} deleted {} {key:?} but holds a {}",
            i + 1,
            kind.name(),
            copy.kind().name()
        );
        self.oracle.hist.anomaly("oracle", self.time.now_us, what);
        None
    }

    /// Node `i` coordinated register delete `w`: the tombstone it wrote, found by its dot (the
    /// coordinator's next), is recorded and timed. A coordinator that held nothing wrote
    /// nothing (it answered at once that nothing existed).
    pub(super) fn coordinated_register_delete(&mut self, i: usize, w: usize) {
        let now = self.time.now_us;
        let slot = self.oracle.hist.writes[w].key;
        let key = self.oracle.hist.keys[slot].key.clone();
        let Some(Object::Register(reg)) = self.deleted_copy(i, &key, ObjectKind::Register) else {
            return;
        };
        let actor = self.actor_of(i);
        let dot = Dot::new(actor.clone(), reg.context().get(&actor));
        let tombstone = reg
            .dvv()
            .siblings()
            .find(|(d, s)| **d == dot && s.value.is_none())
            .map(|(_, s)| s.timestamp);
        let Some(timestamp) = tombstone else {
            let what = format!(
                "n{} deleted {key:?} but its copy lacks the tombstone",
                i + 1
            );
            return self.oracle.hist.anomaly("oracle", now, what);
        };
        self.record_register_write(i, w, dot, reg.context().clone(), timestamp);
    }

    /// Node `i`'s coordination of register write (or delete) `w`, which made `dot` at
    /// `timestamp` and left its copy at `context_after`: recorded, and its version timed.
    pub(super) fn record_register_write(
        &mut self,
        i: usize,
        w: usize,
        dot: Dot,
        context_after: VersionVector,
        timestamp: driftkv_causal::Timestamp,
    ) {
        let now = self.time.now_us;
        let coordination = Coordination {
            node: i,
            at_us: now,
            dot: Some(dot.clone()),
            context_after,
            timestamp: Some(timestamp),
            void: false,
            version: None,
        };
        let index = self.record_coordination(HistRef::Write(w), coordination);
        let hist = &mut self.oracle.hist;
        let slot = hist.writes[w].key;
        let v = hist.track(slot, dot, i, now);
        hist.writes[w].coordinations[index].version = Some(v);
    }

    /// Node `i` coordinated counter delete `d`: what it reset (every actor's net it held).
    pub(super) fn coordinated_counter_delete(&mut self, i: usize, d: usize) {
        let now = self.time.now_us;
        let slot = self.oracle.hist.counter_deletes[d].key;
        let key = self.oracle.hist.keys[slot].key.clone();
        let Some(Object::Counter(counter)) = self.deleted_copy(i, &key, ObjectKind::Counter) else {
            return;
        };
        let seen = counter
            .contributions()
            .map(|(a, net)| (a.to_string(), net))
            .collect();
        let resets = &mut self.oracle.hist.counter_deletes[d].coordinations;
        resets.push(CounterReset {
            node: i,
            at_us: now,
            seen,
            void: false,
        });
        let index = resets.len() - 1;
        self.note_unsynced(i, HistRef::CounterDelete(d), index);
    }

    /// Node `i` coordinated map operation `m`: a write or increment made a dot (the
    /// coordinator's next, found in its copy's context); a remove or delete made none.
    pub(super) fn coordinated_map_op(&mut self, i: usize, m: usize) {
        let now = self.time.now_us;
        let slot = self.oracle.hist.map_ops[m].key;
        let key = self.oracle.hist.keys[slot].key.clone();
        let map = match self.copy(i, &key) {
            // A delete of a key the coordinator held nothing of writes nothing.
            None if self.oracle.hist.map_ops[m].op == MapOp::Delete => return,
            Some(Object::Map(map)) => map,
            other => {
                let what = format!(
                    "n{} coordinated a map update of {key:?} but holds {}",
                    i + 1,
                    other.map_or("nothing", |o| o.kind().name())
                );
                return self.oracle.hist.anomaly("oracle", now, what);
            }
        };
        let op = &self.oracle.hist.map_ops[m].op;
        let dot = match op {
            MapOp::Set(field, _) | MapOp::Increment(field, _) => {
                let actor = self.actor_of(i);
                let counter = map.context().get(&actor);
                if counter == 0 || map.get(field).is_none() {
                    let what = format!(
                        "n{} applied a map update to {key:?} that its copy lacks",
                        i + 1
                    );
                    return self.oracle.hist.anomaly("oracle", now, what);
                }
                Some(Dot::new(actor, counter))
            }
            MapOp::Remove(_) | MapOp::Delete => None,
        };
        let coordination = Coordination {
            node: i,
            at_us: now,
            dot,
            context_after: map.context().clone(),
            timestamp: None,
            void: false,
            version: None,
        };
        self.record_coordination(HistRef::MapOp(m), coordination);
    }

    /// Adds a coordination to a register write or map operation; returns its index.
    fn record_coordination(&mut self, h: HistRef, coordination: Coordination) -> usize {
        let i = coordination.node;
        let hist = &mut self.oracle.hist;
        let list = match h {
            HistRef::Write(w) => &mut hist.writes[w].coordinations,
            HistRef::MapOp(m) => &mut hist.map_ops[m].coordinations,
            _ => unreachable!("only writes and map operations are recorded here"),
        };
        list.push(coordination);
        let index = list.len() - 1;
        self.note_unsynced(i, h, index);
        index
    }
}

fn delete(key: Key, kind: ObjectKind, w: driftkv_wire::Quorum) -> Request {
    Request::Delete {
        key,
        kind: Some(kind),
        w,
    }
}
