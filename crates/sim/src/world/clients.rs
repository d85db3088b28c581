//! Clients: their operations in flight, the coordinator each picks, the replies they get, and
//! what they measure (latencies, per-kind counts, register reads judged, sessions).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use driftkv_causal::{ConflictMode, VersionVector};
use driftkv_core::fasthash::FastMap;
use driftkv_core::{ClientId, Input};
use driftkv_wire::{Key, Quorum, Reply, Request};

use super::Sim;
use super::events::Event;
use super::expected::Expected;
use super::time::{US_PER_MS, ms, us};
use crate::history::{Coordinations, ExpiringRead, HistRef, KeyKind, Outcome, WriteRec};
use crate::rng::Rng;
use crate::scenario::{CoordinatorChoice, Scenario};
use crate::workload::{KeyChooser, KindChooser, OpKind};

use super::visibility::Trial;

/// What the client operations of one kind came to.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpCounts {
    pub issued: u64,
    pub ok: u64,
    pub failed: u64,
    pub timed_out: u64,
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

/// Where a client operation is.
pub(super) enum Stage {
    /// A workload read (`get`, `counter_get`, `set_get`).
    Read(OpKind),
    /// The read of a read-modify-write: its context goes into the write that follows (a
    /// `put_ttl`'s, expiring `ttl_ms` after it is sent, when given).
    ReadForPut {
        value: Bytes,
        ttl_ms: Option<u64>,
    },
    /// A workload write.
    Write(OpKind),
    /// A t-visibility trial's first version, which the measured write then replaces.
    ProbeSetup(usize),
    ProbeWrite(usize),
    ProbeRead(usize, u16),
    /// The read of one client of an NX race (by index): it writes `value` if nothing was found.
    NxRead {
        race: usize,
        value: Bytes,
    },
    /// That client's write.
    NxWrite(usize),
    /// The settle phase's read at R = all.
    Sweep,
}

/// One client operation in flight.
pub(super) struct ClientOp {
    pub(super) stage: Stage,
    pub(super) key: usize,
    pub(super) node: usize,
    pub(super) sent_us: u64,
    pub(super) hist: Option<HistRef>,
    /// For register reads: the dots acknowledged before the read was sent.
    pub(super) frontier: Option<VersionVector>,
    /// The client session this register operation belongs to, and (for reads) what the
    /// session had seen of the key when the read was sent.
    pub(super) session: Option<(usize, VersionVector)>,
    /// The node that answered, its clock then and the virtual time (recorded only when the
    /// workload writes with TTLs: reads of expiring values are judged by it).
    pub(super) answered: Option<(usize, u64, u64)>,
}

impl ClientOp {
    /// An operation on the key in `slot` through `node`, sent now.
    pub(super) fn new(stage: Stage, slot: usize, node: usize, sent_us: u64) -> ClientOp {
        ClientOp {
            stage,
            key: slot,
            node,
            sent_us,
            hist: None,
            frontier: None,
            session: None,
            answered: None,
        }
    }
}

/// What clients measured.
#[derive(Default)]
pub(super) struct ClientStats {
    pub(super) ops: BTreeMap<&'static str, OpCounts>,
    pub(super) read_latency_ms: Vec<f64>,
    pub(super) write_latency_ms: Vec<f64>,
    /// Register reads judged, those that missed an acknowledged write, those that returned
    /// siblings, and the most siblings one returned.
    pub(super) register_reads: u64,
    pub(super) stale_reads: u64,
    pub(super) sibling_reads: u64,
    pub(super) siblings_max: usize,
    pub(super) sessions: SessionCounts,
    /// NX races, by index.
    pub(super) nx_races: Vec<NxRace>,
}

/// One race of two "set if not exists" clients on a fresh key: how each ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NxRace {
    /// Clients whose write was acknowledged (they were told they set the key).
    pub won: u8,
    /// Clients whose read found a value, so they did not write.
    pub declined: u8,
    /// Clients that failed or timed out (at the read or the write).
    pub failed: u8,
}

/// The clients' state.
pub(super) struct Clients {
    /// Draws every workload operation (see `on_arrival`).
    pub(super) rng_work: Rng,
    /// Draws coordinators and the client-to-node delays.
    rng: Rng,
    pub(super) kinds: KindChooser,
    pub(super) key_chooser: KeyChooser,
    pub(super) r: Quorum,
    pub(super) w: Quorum,
    /// The workload's keys by kind and index, once named (see `on_arrival`).
    pub(super) workload_slots: FastMap<(KeyKind, u32), usize>,
    /// Operations waiting for their reply (or timeout).
    pub(super) in_flight: FastMap<ClientId, ClientOp>,
    next_client: ClientId,
    /// The last value numbered for a write.
    pub(super) next_value: u64,
    /// Per session: the context it last saw of each key slot.
    pub(super) sessions: Vec<HashMap<usize, VersionVector>>,
    /// Client work scheduled for later (a trial's next step): the run is not quiet before it.
    pub(super) scheduled_work: u64,
    pub(super) trials: Vec<Trial>,
    pub(super) stats: ClientStats,
    /// Note which node answered each read, and its clock then (a workload with TTLs).
    pub(super) track_answers: bool,
}

impl Clients {
    pub(super) fn new(sc: &Scenario, expect: &Expected) -> Clients {
        Clients {
            rng_work: Rng::stream(sc.seed, "workload"),
            rng: Rng::stream(sc.seed, "clients"),
            kinds: KindChooser::new(&sc.workload.mix),
            key_chooser: KeyChooser::new(sc.workload.keys, &sc.workload.popularity),
            r: sc.quorum_r(),
            w: sc.quorum_w(),
            workload_slots: Default::default(),
            in_flight: Default::default(),
            next_client: 1,
            next_value: 0,
            sessions: vec![HashMap::new(); sc.workload.sessions as usize],
            scheduled_work: 0,
            trials: Vec::with_capacity(expect.trials),
            stats: ClientStats::default(),
            track_answers: sc.workload.mix.has_expiry(),
        }
    }

    pub(super) fn count_op(&mut self, kind: OpKind) -> &mut OpCounts {
        self.stats.ops.entry(kind.name()).or_default()
    }
}

/// The bucket of a key of each kind.
fn bucket_of(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Register(ConflictMode::Siblings) => "siblings",
        KeyKind::Register(ConflictMode::Lww) => "lww",
        KeyKind::Counter => "counters",
        KeyKind::Set => "sets",
        KeyKind::Map => "maps",
        KeyKind::Probe(_) => "probes",
    }
}

impl Sim<'_> {
    /// The node a client sends to, per the scenario's coordinator choice (among up nodes: the
    /// client sits behind a health-checking load balancer): uniformly among the preferred up
    /// nodes, or among all up nodes when none is preferred. Counted and picked by index, with
    /// no list of a thousand nodes built per operation.
    pub(super) fn choose_node(&mut self, slot: usize) -> Option<usize> {
        let (nodes, primaries) = (&self.nodes, &self.oracle.hist.keys[slot].primaries);
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
        let k = self.clients.rng.index(count);
        pool(only_preferred).nth(k)
    }

    /// The slot of the key `name` of `kind`, recorded in the history on first use.
    pub(super) fn slot_for(&mut self, kind: KeyKind, name: String) -> usize {
        let key = Key::new(Bytes::from_static(bucket_of(kind).as_bytes()), name);
        if let Some(&slot) = self.oracle.hist.key_index.get(&key) {
            return slot;
        }
        let primaries = self.primaries_of(&key);
        let partition = self.membership.ring.partition_for_hash(key.key_hash());
        let record_key = driftkv_core::keys::data_key(partition, &key);
        self.oracle.hist.key_slot(&key, kind, primaries, record_key)
    }

    /// Sends `request` to `node` (after the client's delay) and starts its timeout.
    pub(super) fn issue(&mut self, node: usize, request: Request, op: ClientOp) {
        self.issue_after(node, request, op, 0);
    }

    /// Sends `request` to `node` once `wait_us` have passed (then after the client's delay),
    /// and starts its timeout then.
    pub(super) fn issue_after(
        &mut self,
        node: usize,
        request: Request,
        op: ClientOp,
        wait_us: u64,
    ) {
        let client = self.clients.next_client;
        self.clients.next_client += 1;
        let delay = us(self.sc.delays.client.sample(&mut self.clients.rng));
        self.schedule(
            self.time.now_us + wait_us + delay,
            Event::AtNode(Box::new((node, client, request))),
        );
        let timeout = self.time.after_ms(self.sc.client_timeout_ms) + wait_us;
        self.schedule(timeout, Event::ClientTimeout(client));
        self.clients.in_flight.insert(client, op);
    }

    /// Sends a register write of a fresh value with the given context (within a client
    /// session, if one is given), expiring `ttl_ms` from now if given.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_put(
        &mut self,
        node: usize,
        slot: usize,
        value: Bytes,
        context: VersionVector,
        stage: Stage,
        session: Option<usize>,
        ttl_ms: Option<u64>,
    ) {
        let expires_ms = ttl_ms.map(|ttl| self.time.wall_ms() + ttl);
        let hist = &mut self.oracle.hist;
        let w = hist.writes.len();
        hist.writes.push(WriteRec {
            key: slot,
            value: value.clone(),
            context_in: context.clone(),
            issued_us: self.time.now_us,
            outcome: Outcome::Pending,
            acked_us: None,
            coordinations: Coordinations::None,
            expires_ms,
            delete: false,
        });
        hist.write_by_value.insert(value.clone(), w);
        let key = hist.keys[slot].key.clone();
        let mut op = ClientOp::new(stage, slot, node, self.time.now_us);
        op.hist = Some(HistRef::Write(w));
        op.session = session.map(|s| (s, VersionVector::new()));
        let request = Request::Put {
            key,
            value: Some(value),
            context,
            expires_ms,
            w: self.clients.w,
        };
        self.issue(node, request, op);
    }

    /// A client's request reaches its node. A request to a crashed node is never answered:
    /// the client times out.
    pub(super) fn on_request_at_node(&mut self, node: usize, client: ClientId, request: Request) {
        if self.is_up(node) {
            self.handle(node, Input::Request { client, request }, None);
        }
    }

    /// A node replies to a client: the reply reaches it after the client's delay.
    pub(super) fn reply_to_client(&mut self, client: ClientId, reply: Reply) {
        let delay = us(self.sc.delays.client.sample(&mut self.clients.rng));
        self.schedule(
            self.time.now_us + delay,
            Event::AtClient(Box::new((client, reply))),
        );
    }

    pub(super) fn on_client_timeout(&mut self, client: ClientId) {
        let Some(op) = self.clients.in_flight.remove(&client) else {
            return;
        };
        if let Some(h) = op.hist {
            self.set_outcome(h, Outcome::TimedOut);
        }
        match op.stage {
            Stage::Read(kind) | Stage::Write(kind) => self.clients.count_op(kind).timed_out += 1,
            Stage::ReadForPut { ttl_ms, .. } => {
                self.clients.count_op(put_kind(ttl_ms)).timed_out += 1;
            }
            Stage::NxRead { race, .. } | Stage::NxWrite(race) => {
                self.clients.count_op(OpKind::SetNx).timed_out += 1;
                self.clients.stats.nx_races[race].failed += 1;
            }
            _ => {}
        }
    }

    pub(super) fn on_reply(&mut self, client: ClientId, reply: Reply) {
        let Some(mut op) = self.clients.in_flight.remove(&client) else {
            return; // the client gave up already
        };
        let latency_ms = ms(self.time.now_us - op.sent_us);
        if let Some((s, seen)) = &op.session {
            let write = matches!(op.stage, Stage::Write(_));
            self.session_reply(*s, op.key, seen, write, &reply);
        }
        match std::mem::replace(&mut op.stage, Stage::Sweep) {
            Stage::Read(kind) => self.read_replied(kind, &op, &reply, latency_ms),
            Stage::ReadForPut { value, ttl_ms } => {
                self.read_for_put_replied(&op, value, ttl_ms, &reply, latency_ms);
            }
            Stage::NxRead { race, value } => self.nx_read_replied(race, value, &op, &reply),
            Stage::NxWrite(race) => self.nx_write_replied(race, &op, &reply),
            Stage::Write(kind) => self.write_replied(kind, &op, &reply, latency_ms),
            Stage::ProbeSetup(trial) => self.probe_setup_replied(trial, &op, &reply),
            Stage::ProbeWrite(trial) => self.probe_write_replied(trial, &op, &reply),
            Stage::ProbeRead(trial, t) => self.probe_read_replied(trial, t, &reply),
            Stage::Sweep => {}
        }
    }

    fn read_replied(&mut self, kind: OpKind, op: &ClientOp, reply: &Reply, latency_ms: f64) {
        if matches!(reply, Reply::Error { .. }) {
            self.clients.count_op(kind).failed += 1;
            return;
        }
        self.clients.count_op(kind).ok += 1;
        self.clients.stats.read_latency_ms.push(latency_ms);
        match kind {
            OpKind::Get => self.check_register_read(op, reply),
            OpKind::MapGet => self.check_map_read(op.key, reply),
            _ => {}
        }
    }

    /// The read of a read-modify-write answered: its context goes into the write.
    fn read_for_put_replied(
        &mut self,
        op: &ClientOp,
        value: Bytes,
        ttl_ms: Option<u64>,
        reply: &Reply,
        latency_ms: f64,
    ) {
        let kind = put_kind(ttl_ms);
        let context = match reply {
            Reply::Values { context, .. } | Reply::NotFound { context } => context.clone(),
            _ => {
                // No context, no write: the operation failed at its read.
                self.clients.count_op(kind).failed += 1;
                return;
            }
        };
        self.clients.stats.read_latency_ms.push(latency_ms);
        self.check_register_read(op, reply);
        let session = op.session.as_ref().map(|(s, _)| *s);
        let stage = Stage::Write(kind);
        self.send_put(op.node, op.key, value, context, stage, session, ttl_ms);
    }

    fn write_replied(&mut self, kind: OpKind, op: &ClientOp, reply: &Reply, latency_ms: f64) {
        let acked = matches!(
            reply,
            Reply::Written { .. }
                | Reply::Counter { .. }
                | Reply::Deleted { .. }
                | Reply::Map { .. }
        );
        let outcome = if acked {
            self.clients.count_op(kind).ok += 1;
            self.clients.stats.write_latency_ms.push(latency_ms);
            Outcome::Acked
        } else {
            self.clients.count_op(kind).failed += 1;
            Outcome::Failed(match reply {
                Reply::Error { message, .. } => message.clone(),
                other => format!("unexpected reply {other:?}"),
            })
        };
        if let Some(h) = op.hist {
            self.set_outcome(h, outcome);
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
        let counts = &mut self.clients.stats.sessions;
        let context = match reply {
            Reply::Values { context, .. } | Reply::NotFound { context } if !write => {
                counts.reads += 1;
                if !context.descends(seen) {
                    counts.went_back += 1;
                }
                context
            }
            Reply::Written { context } if write => context,
            Reply::Error { .. } if !write => {
                if self.sc.workload.session_tokens && !seen.is_empty() {
                    counts.refused += 1;
                }
                return;
            }
            _ => return,
        };
        self.clients.sessions[s]
            .entry(slot)
            .or_default()
            .merge(context);
    }

    /// Judges one register read: stale (it missed a write acknowledged before it was sent),
    /// siblings that should not coexist, values nobody wrote; and notes the values it returned
    /// that were written with an expiry.
    pub(super) fn check_register_read(&mut self, op: &ClientOp, reply: &Reply) {
        let (slot, frontier) = (op.key, op.frontier.as_ref());
        let (values, context) = match reply {
            Reply::Values { values, context } => (values.as_slice(), context),
            Reply::NotFound { context } => (&[][..], context),
            _ => return,
        };
        let now = self.time.now_us;
        let stats = &mut self.clients.stats;
        stats.register_reads += 1;
        if let Some(f) = frontier
            && !context.descends(f)
        {
            stats.stale_reads += 1;
        }
        if values.len() > 1 {
            stats.sibling_reads += 1;
        }
        stats.siblings_max = stats.siblings_max.max(values.len());
        let hist = &mut self.oracle.hist;
        let key = hist.keys[slot].key.clone();
        if hist.keys[slot].kind == KeyKind::Register(ConflictMode::Lww) && values.len() > 1 {
            hist.anomaly(
                "siblings_only_for_concurrent_writes",
                now,
                format!("a read of lww key {key:?} returned {} values", values.len()),
            );
        }
        let mut writes = Vec::with_capacity(values.len());
        for v in values {
            match hist.write_by_value.get(v) {
                Some(&w) => {
                    writes.push(w);
                    if let (Some(expires_ms), Some((node, node_ms, at_us))) =
                        (hist.writes[w].expires_ms, op.answered)
                    {
                        hist.expiring_reads.push(ExpiringRead {
                            key: slot,
                            write: w,
                            expires_ms,
                            node,
                            node_ms,
                            answered_ms: super::EPOCH_MS + at_us / US_PER_MS,
                        });
                    }
                }
                None => hist.anomaly(
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
                if let Some(why) = hist.saw_each_other(a, b) {
                    hist.anomaly(
                        "siblings_only_for_concurrent_writes",
                        now,
                        format!("a read of {key:?} returned siblings {why}"),
                    );
                }
            }
        }
    }
}

/// The operation a register write counts as: a `put`, or a `put_ttl` when it has a TTL.
pub(super) fn put_kind(ttl_ms: Option<u64>) -> OpKind {
    if ttl_ms.is_some() {
        OpKind::PutTtl
    } else {
        OpKind::Put
    }
}
