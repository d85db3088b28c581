//! What active anti-entropy costs against copying everything: two nodes over fjall that both
//! own every partition hold 100,000 identical keys, then 100 keys differ, and exchanges run
//! (driven by hand, with virtual time) until a full cycle over every partition finds the two in
//! sync. Reports wall time, exchanges and bytes on the wire, against a full copy.
//!
//! Run: `cargo bench -p driftkv-server --bench anti_entropy`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use driftkv_core::{Input, Node, NodeConfig, Output, Store};
use driftkv_ring::NodeId;
use driftkv_storage::{Durability, FjallStore};
use driftkv_wire::{Envelope, Key, MemberInfo, MemberState, Message, Object, Quorum, Request};

/// Keys both nodes hold.
const KEYS: usize = 100_000;
/// Keys written on one node only (half on each), for anti-entropy to find and repair.
const DIFFERING: usize = 100;
/// Bytes per value.
const VALUE_BYTES: usize = 100;
/// Virtual time between exchanges a node starts, and per tick.
const INTERVAL_MS: u64 = 10;
/// Ticks after which a phase is declared stuck (a bench that never converges says so).
const TICKS_MAX: u64 = 100_000;

/// Bytes on the wire per kind of anti-entropy message: (messages, bytes).
#[derive(Default, Clone)]
struct Traffic(BTreeMap<&'static str, (u64, u64)>);

impl Traffic {
    fn total(&self) -> (u64, u64) {
        self.0
            .values()
            .fold((0, 0), |(m, b), (mm, bb)| (m + mm, b + bb))
    }
}

fn aae_kind(message: &Message) -> Option<&'static str> {
    match message {
        Message::AaeRoot { .. } => Some("AaeRoot"),
        Message::AaeRootDiffers { .. } => Some("AaeRootDiffers"),
        Message::AaeNotReady { .. } => Some("AaeNotReady"),
        Message::AaeMids { .. } => Some("AaeMids"),
        Message::AaeLeaves { .. } => Some("AaeLeaves"),
        Message::AaeKeys { .. } => Some("AaeKeys"),
        Message::AaeSync { .. } => Some("AaeSync"),
        Message::AaeObjects { .. } => Some("AaeObjects"),
        _ => None,
    }
}

/// Two nodes and a FIFO network between them; every anti-entropy frame is measured.
struct Pair {
    nodes: Vec<Node>,
    stores: Vec<FjallStore>,
    queue: VecDeque<(usize, usize, Message)>,
    now_ms: u64,
    traffic: Traffic,
    _dirs: Vec<tempfile::TempDir>,
}

impl Pair {
    fn new() -> Pair {
        let ids = ["n1", "n2"];
        let members: Vec<MemberInfo> = ids
            .iter()
            .map(|id| MemberInfo {
                id: NodeId::from(*id),
                listen: "".into(),
                http: "".into(),
                state: MemberState::Up,
            })
            .collect();
        let (mut nodes, mut stores, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
        for id in ids {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let mut store =
                FjallStore::open(dir.path().join("store"), Durability::None).expect("open fjall");
            let mut cfg = NodeConfig::new(NodeId::from(id));
            cfg.ring.n = 2;
            cfg.aae.interval_ms = INTERVAL_MS;
            cfg.hinted_handoff = false;
            cfg.read_repair = false;
            let mut node = Node::open(cfg, &mut store).expect("open the node");
            node.set_members(members.clone());
            nodes.push(node);
            stores.push(store);
            dirs.push(dir);
        }
        Pair {
            nodes,
            stores,
            queue: VecDeque::new(),
            now_ms: 1_000,
            traffic: Traffic::default(),
            _dirs: dirs,
        }
    }

    fn index(&self, id: &NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id() == id)
            .expect("a known node")
    }

    /// Feeds one input to node `i` and queues what it sends (`keep` filters what is sent).
    fn step(&mut self, i: usize, input: Input, keep: impl Fn(&Message) -> bool) {
        let mut out = Vec::new();
        self.nodes[i].handle(&mut self.stores[i], self.now_ms, input, &mut out);
        // No sync between steps (this measures traffic, not durability): a confirmation goes
        // out as it is, without its durability mark.
        for o in out.into_iter().map(Output::into_plain) {
            if let Output::Send { to, message } = o
                && keep(&message)
            {
                let to = self.index(&to);
                self.queue.push_back((i, to, message));
            }
        }
    }

    /// Delivers messages until the network is quiet, measuring anti-entropy frames as the
    /// transport would frame them (envelope plus a 4-byte length prefix).
    fn pump(&mut self) {
        while let Some((from, to, message)) = self.queue.pop_front() {
            if let Some(kind) = aae_kind(&message) {
                let envelope = Envelope::Message {
                    from: self.nodes[from].id().clone(),
                    message: message.clone(),
                };
                let bytes = driftkv_wire::encode_envelope(&envelope).len() as u64 + 4;
                let entry = self.traffic.0.entry(kind).or_default();
                entry.0 += 1;
                entry.1 += bytes;
            }
            let from = self.nodes[from].id().clone();
            self.step(to, Input::Message { from, message }, |_| true);
        }
    }

    fn request(&mut self, i: usize, request: Request, keep: impl Fn(&Message) -> bool) {
        self.step(i, Input::Request { client: 1, request }, keep);
        self.pump();
    }

    fn tick(&mut self) {
        self.now_ms += INTERVAL_MS;
        for i in 0..self.nodes.len() {
            self.step(i, Input::Tick, |_| true);
        }
        self.pump();
    }

    fn copy(&mut self, i: usize, key: &Key) -> Option<Object> {
        self.nodes[i]
            .local_object(&self.stores[i], key)
            .expect("read a local copy")
    }

    /// `(exchanges, exchanges in sync, keys repaired, object bytes sent)` summed over both
    /// nodes, as their own stats (and `/metrics`) count them.
    fn counts(&self) -> (u64, u64, u64, u64) {
        self.nodes.iter().fold((0, 0, 0, 0), |(e, s, r, b), n| {
            let st = n.stats();
            (
                e + st.aae_exchanges,
                s + st.aae_in_sync,
                r + st.aae_keys_repaired,
                b + st.aae_bytes_sent,
            )
        })
    }
}

fn key(i: usize) -> Key {
    Key::default_bucket(format!("key-{i:06}"))
}

fn value(i: usize, tag: &str) -> Bytes {
    let mut v = format!("{tag}-{i:06}-").into_bytes();
    v.resize(VALUE_BYTES, b'x');
    Bytes::from(v)
}

/// What one phase of exchanges took.
struct Phase {
    name: &'static str,
    wall: Duration,
    ticks: u64,
    exchanges: u64,
    in_sync: u64,
    repaired: u64,
    /// Object bytes sent, as the nodes' `driftkv_aae_bytes_sent_total` counts them.
    object_bytes: u64,
    traffic: Traffic,
    /// Wall time and exchanges until every differing key was equal on both nodes.
    repaired_after: Option<(Duration, u64)>,
}

/// Ticks until each node has finished one exchange per partition in a row that found it in
/// sync, after the last exchange that moved data. `watch` are keys that must end equal.
fn run_phase(pair: &mut Pair, name: &'static str, watch: &[Key]) -> Phase {
    let partitions = pair.nodes[0].config().ring.partitions as u64;
    let started = Instant::now();
    let traffic_before = pair.traffic.clone();
    let (e0, s0, r0, b0) = pair.counts();
    let mut streak = vec![0u64; pair.nodes.len()];
    let mut last: Vec<(u64, u64)> = pair
        .nodes
        .iter()
        .map(|n| (n.stats().aae_exchanges, n.stats().aae_in_sync))
        .collect();
    let mut repaired_after = None;
    let mut ticks = 0;
    loop {
        ticks += 1;
        assert!(
            ticks < TICKS_MAX,
            "{name}: anti-entropy did not settle: streaks {streak:?}, stats {:?}",
            pair.nodes
                .iter()
                .map(|n| (
                    n.stats().aae_exchanges,
                    n.stats().aae_in_sync,
                    n.stats().aae_timeouts,
                    n.stats().aae_keys_repaired
                ))
                .collect::<Vec<_>>()
        );
        pair.tick();
        for (i, n) in pair.nodes.iter().enumerate() {
            let now = (n.stats().aae_exchanges, n.stats().aae_in_sync);
            let moved = (now.0 - last[i].0) - (now.1 - last[i].1);
            if moved > 0 {
                streak.iter_mut().for_each(|s| *s = 0);
            } else {
                streak[i] += now.1 - last[i].1;
            }
            last[i] = now;
        }
        if repaired_after.is_none()
            && watch
                .iter()
                .all(|k| pair.copy(0, k).is_some() && pair.copy(0, k) == pair.copy(1, k))
        {
            repaired_after = Some((started.elapsed(), pair.counts().0 - e0));
        }
        if repaired_after.is_some() && streak.iter().all(|s| *s >= partitions) {
            break;
        }
    }
    let (e1, s1, r1, b1) = pair.counts();
    let mut traffic = Traffic::default();
    for (kind, (m, b)) in &pair.traffic.0 {
        let (m0, b0) = traffic_before.0.get(kind).copied().unwrap_or_default();
        traffic.0.insert(kind, (m - m0, b - b0));
    }
    Phase {
        name,
        wall: started.elapsed(),
        ticks,
        exchanges: e1 - e0,
        in_sync: s1 - s0,
        repaired: r1 - r0,
        object_bytes: b1 - b0,
        traffic,
        repaired_after,
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    let mut pair = Pair::new();
    let partitions = pair.nodes[0].config().ring.partitions;

    // Load: every key written with w=all (coordinators alternate), so both hold the same state.
    let load = Instant::now();
    for i in 0..KEYS {
        let request = Request::Put {
            key: key(i),
            value: Some(value(i, "v")),
            context: Default::default(),
            expires_ms: None,
            w: Quorum::All,
        };
        pair.request(i % 2, request, |_| true);
    }
    pair.stores.iter_mut().for_each(|s| s.sync().expect("sync"));
    let load_took = load.elapsed();
    let mut full_copy = 0u64;
    for i in 0..KEYS {
        let object = pair.copy(0, &key(i)).expect("loaded");
        full_copy += driftkv_wire::encode_object(&object).len() as u64;
    }

    // A first cycle while in sync builds every tree (one scan per partition per node).
    let warm = run_phase(&mut pair, "in sync, building trees", &[]);
    let idle = run_phase(&mut pair, "in sync", &[]);

    // 100 keys overwritten on one node only, half on each: the replica write is dropped.
    let differing: Vec<Key> = (0..DIFFERING)
        .map(|j| key(j * (KEYS / DIFFERING) + 7))
        .collect();
    for (j, k) in differing.iter().enumerate() {
        let request = Request::Overwrite {
            key: k.clone(),
            value: Some(value(j, "changed")),
            expires_ms: None,
            w: Quorum::One,
        };
        pair.request(j % 2, request, |m| {
            !matches!(m, Message::ReplicaWrite { .. })
        });
    }
    let unequal = differing
        .iter()
        .filter(|k| pair.copy(0, k) != pair.copy(1, k))
        .count();
    assert_eq!(unequal, DIFFERING, "the overwrites reached one node only");
    let repair = run_phase(&mut pair, "100 keys differ", &differing);
    assert!(
        repair.repaired >= DIFFERING as u64,
        "anti-entropy repaired {} keys, {DIFFERING} differed",
        repair.repaired
    );
    let mut wrong = 0;
    for i in 0..KEYS {
        let k = key(i);
        if pair.copy(0, &k) != pair.copy(1, &k) {
            wrong += 1;
        }
    }
    assert_eq!(wrong, 0, "keys that differ after the exchanges");

    println!();
    println!(
        "anti-entropy between two fjall nodes (durability none), n = 2, {partitions} partitions \
         x 1024 segments, {KEYS} keys of {VALUE_BYTES}-byte values (loaded in {:.2} s)",
        load_took.as_secs_f64()
    );
    println!(
        "a phase runs until each node finished {partitions} exchanges in a row that found its \
         partition in sync; virtual time advances {INTERVAL_MS} ms per tick"
    );
    println!();
    println!(
        "{:<24} {:>9} {:>7} {:>10} {:>8} {:>9} {:>9} {:>12}",
        "phase", "wall", "ticks", "exchanges", "in sync", "repaired", "messages", "bytes"
    );
    for p in [&warm, &idle, &repair] {
        let (messages, bytes) = p.traffic.total();
        println!(
            "{:<24} {:>7.1}ms {:>7} {:>10} {:>8} {:>9} {:>9} {:>12}",
            p.name,
            p.wall.as_secs_f64() * 1e3,
            p.ticks,
            p.exchanges,
            p.in_sync,
            p.repaired,
            messages,
            bytes
        );
    }
    println!();
    println!("bytes by message in the repair phase:");
    for (kind, (messages, bytes)) in &repair.traffic.0 {
        println!("  {kind:<12} {messages:>7} messages {bytes:>12} bytes");
    }
    println!(
        "  (of which objects, as driftkv_aae_bytes_sent_total counts them: {} bytes)",
        repair.object_bytes
    );
    let (_, moved) = repair.traffic.total();
    let (until_equal, exchanges_until_equal) = repair.repaired_after.expect("repaired");
    println!();
    println!(
        "repairing {DIFFERING} differing keys: every one equal after {:.1} ms and {} exchanges; \
         a full confirming cycle after {:.1} ms and {} exchanges in all",
        until_equal.as_secs_f64() * 1e3,
        exchanges_until_equal,
        repair.wall.as_secs_f64() * 1e3,
        repair.exchanges
    );
    println!(
        "bytes moved by the exchanges: {moved} ({}); a full copy of the {KEYS} objects: \
         {full_copy} ({}); ratio {:.4} (1 : {:.0})",
        mib(moved),
        mib(full_copy),
        moved as f64 / full_copy as f64,
        full_copy as f64 / moved as f64
    );
    let (_, idle_bytes) = idle.traffic.total();
    println!(
        "an in-sync cycle over all {partitions} partitions from both nodes: {} exchanges, \
         {idle_bytes} bytes, {:.1} ms of CPU",
        idle.exchanges,
        idle.wall.as_secs_f64() * 1e3
    );
}
