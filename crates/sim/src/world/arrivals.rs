//! The workload: operations arriving as a Poisson process, each of a kind, on a key, with a
//! value or delta or member, drawn from the seed's "workload" stream.

use bytes::Bytes;
use driftkv_causal::{ConflictMode, VersionVector};
use driftkv_wire::{Key, Request};

use super::Sim;
use super::clients::{ClientOp, Stage};
use super::events::Event;
use super::time::US_PER_S;
use crate::history::{Coordinations, CounterOpRec, HistRef, KeyKind, Outcome, SetOpRec};
use crate::workload::OpKind;

/// Everything one arrival draws, whatever the operation uses of it.
struct Draw {
    kind: OpKind,
    key_index: u32,
    mode: ConflictMode,
    blind: bool,
    delta: i64,
    member_index: u64,
    /// The operation's client session, if the workload has sessions.
    session: Option<usize>,
    /// What the data-type operations use, drawn only when the mix has one.
    extra: Option<ExtraDraw>,
}

/// The draws of the data-type operations (see `Mix::has_data_types`).
#[derive(Clone, Copy)]
pub(super) struct ExtraDraw {
    /// A `put_ttl`'s time to live.
    pub(super) ttl_ms: u64,
    /// A map update's field.
    pub(super) field: u32,
    /// How long after the first the second client of an NX race starts.
    pub(super) nx_gap_ms: u64,
}

impl Sim<'_> {
    /// A workload operation arrives: it is drawn, the next arrival is scheduled, and the
    /// operation goes to a coordinator (or fails at once when every node is down).
    pub(super) fn on_arrival(&mut self) {
        if self.time.now_us >= self.time.traffic_end_us {
            return;
        }
        let (draw, gap_us) = self.draw_arrival();
        let next = self.time.now_us + (gap_us as u64).max(1);
        self.schedule(next, Event::Arrival);

        let kind = draw.kind;
        if kind == OpKind::SetNx {
            self.clients.count_op(kind).issued += 2;
            let extra = draw
                .extra
                .expect("drawn when the mix has data-type operations");
            return self.start_nx_race(draw.mode, extra.nx_gap_ms);
        }
        let key_kind = match kind {
            OpKind::Get | OpKind::Put | OpKind::PutTtl | OpKind::DeleteRegister => {
                KeyKind::Register(draw.mode)
            }
            OpKind::CounterAdd | OpKind::CounterGet | OpKind::DeleteCounter => KeyKind::Counter,
            OpKind::MapSet
            | OpKind::MapIncrement
            | OpKind::MapRemove
            | OpKind::MapGet
            | OpKind::DeleteMap => KeyKind::Map,
            _ => KeyKind::Set,
        };
        let slot = self.workload_slot(key_kind, draw.key_index);
        let key = self.oracle.hist.keys[slot].key.clone();
        self.clients.count_op(kind).issued += 1;
        let Some(node) = self.choose_node(slot) else {
            self.clients.count_op(kind).failed += 1;
            return;
        };
        let (r, w) = (self.clients.r, self.clients.w);
        let op = |stage| ClientOp::new(stage, slot, node, 0);
        match kind {
            OpKind::Get => self.send_register_read(op(Stage::Read(kind)), key, draw.session),
            OpKind::Put | OpKind::PutTtl => {
                let value = self.fresh_value();
                let ttl_ms = draw
                    .extra
                    .filter(|_| kind == OpKind::PutTtl)
                    .map(|x| x.ttl_ms);
                if draw.blind {
                    let stage = Stage::Write(kind);
                    let context = VersionVector::new();
                    self.send_put(node, slot, value, context, stage, draw.session, ttl_ms);
                } else {
                    let stage = Stage::ReadForPut { value, ttl_ms };
                    self.send_register_read(op(stage), key, draw.session);
                }
            }
            OpKind::CounterAdd => {
                let c = self.oracle.hist.counter_ops.len();
                self.oracle.hist.counter_ops.push(CounterOpRec {
                    key: slot,
                    delta: draw.delta,
                    outcome: Outcome::Pending,
                    applied_by: Vec::new(),
                });
                let mut o = op(Stage::Write(kind));
                o.hist = Some(HistRef::CounterOp(c));
                let delta = draw.delta;
                self.send_op(Request::CounterAdd { key, delta, w }, o);
            }
            OpKind::CounterGet => {
                self.send_op(Request::CounterGet { key, r }, op(Stage::Read(kind)));
            }
            OpKind::SetGet => {
                self.send_op(Request::SetGet { key, r }, op(Stage::Read(kind)));
            }
            OpKind::SetAdd | OpKind::SetRemove => {
                let member = Bytes::from(numbered("m", draw.member_index, ""));
                self.send_set_update(kind, op(Stage::Write(kind)), key, member);
            }
            OpKind::MapGet => self.send_op(Request::MapGet { key, r }, op(Stage::Read(kind))),
            _ => {
                let extra = draw
                    .extra
                    .expect("drawn when the mix has data-type operations");
                self.send_data_op(kind, op(Stage::Write(kind)), key, draw.delta, extra);
            }
        }
    }

    /// Every draw of the workload stream happens here, whatever the cluster's state, so the
    /// same seed issues the same operations under any R, W or fault setting. Returns the draw
    /// and the gap to the next arrival, in microseconds.
    fn draw_arrival(&mut self) -> (Draw, f64) {
        let wl = &self.sc.workload;
        let rng = &mut self.clients.rng_work;
        let kind = self.clients.kinds.pick(rng);
        let key_index = self.clients.key_chooser.pick(rng);
        let mode = wl.register_modes[rng.index(wl.register_modes.len())];
        let blind = rng.chance(wl.blind_writes);
        let delta = wl.counter_deltas[rng.index(wl.counter_deltas.len())];
        let member_index = rng.below(wl.set_members as u64);
        let gap_us = rng.exponential(US_PER_S / wl.rate_per_s);
        // Drawn only when there are sessions: other scenarios keep their streams.
        let session = (wl.sessions > 0).then(|| rng.below(wl.sessions as u64) as usize);
        // Drawn only with data-type operations in the mix: other scenarios keep their streams.
        let extra = wl.mix.has_data_types().then(|| {
            let (ttl, gap) = (&wl.ttl_ms, &wl.nx_gap_ms);
            ExtraDraw {
                ttl_ms: ttl.min_ms + rng.below(ttl.max_ms - ttl.min_ms + 1),
                field: rng.below(wl.map_fields as u64) as u32,
                nx_gap_ms: gap.min_ms + rng.below(gap.max_ms - gap.min_ms + 1),
            }
        });
        let draw = Draw {
            kind,
            key_index,
            mode,
            blind,
            delta,
            member_index,
            session,
            extra,
        };
        (draw, gap_us)
    }

    /// The slot of the workload's `index`-th key of `kind`, named on first use.
    fn workload_slot(&mut self, kind: KeyKind, index: u32) -> usize {
        if let Some(&slot) = self.clients.workload_slots.get(&(kind, index)) {
            return slot;
        }
        let slot = self.slot_for(kind, numbered("k", index.into(), ""));
        self.clients.workload_slots.insert((kind, index), slot);
        slot
    }

    /// A register read, as a session read when the session sends its token.
    fn send_register_read(&mut self, mut o: ClientOp, key: Key, session: Option<usize>) {
        let r = self.clients.r;
        let slot = o.key;
        o.frontier = Some(self.oracle.hist.keys[slot].frontier.clone());
        let request = match session {
            Some(s) => {
                let seen = self.clients.sessions[s]
                    .get(&slot)
                    .cloned()
                    .unwrap_or_default();
                o.session = Some((s, seen.clone()));
                if self.sc.workload.session_tokens && !seen.is_empty() {
                    Request::SessionGet { key, r, seen }
                } else {
                    Request::Get { key, r }
                }
            }
            None => Request::Get { key, r },
        };
        self.send_op(request, o);
    }

    /// A set add or remove of `member`, recorded in the history first.
    fn send_set_update(&mut self, kind: OpKind, mut op: ClientOp, key: Key, member: Bytes) {
        let add = kind == OpKind::SetAdd;
        let s = self.oracle.hist.set_ops.len();
        self.oracle.hist.set_ops.push(SetOpRec {
            key: op.key,
            member: member.clone(),
            add,
            clear: false,
            outcome: Outcome::Pending,
            coordinations: Coordinations::None,
        });
        let (add, remove) = if add {
            (vec![member], Vec::new())
        } else {
            (Vec::new(), vec![member])
        };
        op.hist = Some(HistRef::SetOp(s));
        let w = self.clients.w;
        let request = Request::SetUpdate {
            key,
            add,
            remove,
            w,
        };
        self.send_op(request, op);
    }

    pub(super) fn send_op(&mut self, request: Request, mut op: ClientOp) {
        op.sent_us = self.time.now_us;
        self.issue(op.node, request, op);
    }

    pub(super) fn fresh_value(&mut self) -> Bytes {
        self.clients.next_value += 1;
        Bytes::from(numbered("v", self.clients.next_value, ""))
    }
}

/// `prefix`, `n` in decimal, `suffix`: the names of keys, values and members, made once per
/// operation (what `format!` makes, without its machinery).
pub(super) fn numbered(prefix: &str, n: u64, suffix: &str) -> String {
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
    fn numbered_names_read_as_format_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(super::numbered("p", n, "b"), format!("p{n}b"));
        }
    }
}
