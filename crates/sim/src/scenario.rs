//! Scenario files: the cluster, its network and faults, the workload and the measurements, in
//! TOML. Every field has a default except `duration_ms`; `scenarios/*.toml` at the repository
//! root are worked examples, and `docs` of each field live on the structs below.
//!
//! Times in a scenario are virtual milliseconds from the start of traffic (nodes boot and
//! gossip for `warmup_ms` before that).

use std::collections::BTreeMap;
use std::path::Path;

use driftkv_causal::ConflictMode;
use driftkv_core::Durability;
use driftkv_wire::Quorum;
use serde::Deserialize;

use crate::dist::Delay;

/// Bounds that keep a scenario (often hand-written, sometimes mistyped) from asking for a run
/// that cannot finish.
pub const NODES_MAX: usize = 1024;
pub const KEYS_MAX: u32 = 1_000_000;
pub const OPS_RATE_MAX_PER_S: f64 = 1_000_000.0;
pub const DURATION_MAX_MS: u64 = 24 * 3600 * 1000;
pub const T_GRID_MAX: usize = 256;
pub const FAULTS_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario is not valid TOML or has an unknown field: {0}")]
    Parse(String),
    #[error("scenario is invalid: {0}")]
    Invalid(String),
}

/// How long a chain of `extends` may be.
pub const EXTENDS_DEPTH_MAX: usize = 8;

/// The table of a scenario file with its `extends` chain applied.
fn resolve_extends(
    mut table: toml::Table,
    path: &Path,
    read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    depth: usize,
) -> Result<toml::Table, ScenarioError> {
    let Some(base) = table.remove("extends") else {
        return Ok(table);
    };
    let toml::Value::String(base) = base else {
        return Err(ScenarioError::Parse(format!(
            "{}: extends must be the path of a scenario file, as a string",
            path.display()
        )));
    };
    if depth >= EXTENDS_DEPTH_MAX {
        return Err(ScenarioError::Invalid(format!(
            "{}: extends chains more than {EXTENDS_DEPTH_MAX} files deep (a cycle?)",
            path.display()
        )));
    }
    let base_path = path.parent().unwrap_or(Path::new("")).join(&base);
    let base_text = read(&base_path).map_err(|e| {
        ScenarioError::Invalid(format!(
            "{}: cannot read the scenario it extends, {}: {e}",
            path.display(),
            base_path.display()
        ))
    })?;
    let base_table = parse_table(&base_text, &base_path)?;
    let mut merged = resolve_extends(base_table, &base_path, read, depth + 1)?;
    overlay(&mut merged, table);
    Ok(merged)
}

fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ScenarioError> {
    toml::from_str(text).map_err(|e| ScenarioError::Parse(format!("{}: {e}", path.display())))
}

/// `over`'s values replace `base`'s; a table in both is merged the same way, field by field.
fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => overlay(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// How nodes learn who is up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipMode {
    /// The core's own heartbeat gossip and failure detector, bootstrapped through seeds: a
    /// crashed or cut-off node is noticed after `down_after_ms`, as in production.
    #[default]
    Gossip,
    /// Every node always believes every member is up (`Node::set_members`): no failure
    /// detection, so writes to unreachable replicas time out and become hints at the deadline.
    Static,
}

/// Which node a client sends a request to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordinatorChoice {
    /// Any up node, uniformly (a load balancer with health checks in front of the cluster).
    #[default]
    Any,
    /// An up primary of the key (a token-aware client): no forwarding hop.
    Replica,
    /// An up node that is *not* a primary of the key when there is one (needs more nodes than
    /// N): a proxy coordinator off the replica set. Writes are forwarded to a replica (an
    /// extra hop both ways); reads are coordinated by the proxy, all N replica reads remote.
    Proxy,
}

/// Key popularity.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Popularity {
    #[default]
    Uniform,
    /// Zipf with exponent `s` (> 0): key `i` (1-based) drawn with weight `1 / i^s`.
    Zipf(f64),
}

/// One node's clock: `local = virtual + offset_ms + virtual * drift_ppm / 1e6`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Clock {
    pub offset_ms: f64,
    pub drift_ppm: f64,
}

/// Random clock skew drawn per node from the seed (in addition to `[clocks.NAME]`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockSkew {
    /// Each node's offset is uniform in `[-offset_ms_max, offset_ms_max]`.
    pub offset_ms_max: f64,
    /// Each node's drift is uniform in `[-drift_ppm_max, drift_ppm_max]`.
    pub drift_ppm_max: f64,
}

/// Delays per message kind, in milliseconds.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delays {
    /// `ReplicaWrite` (replication and handoff), `Forward`, `Repair`.
    pub write: Delay,
    /// `ReplicaWriteAck`, `ForwardReply`.
    pub ack: Delay,
    /// `ReplicaRead`.
    pub read_request: Delay,
    /// `ReplicaReadReply`.
    pub read_response: Delay,
    /// Membership gossip (default: the `write` distribution).
    pub gossip: Option<Delay>,
    /// Anti-entropy exchanges and partition transfers (default: the `write` distribution).
    pub anti_entropy: Option<Delay>,
    /// Client to coordinator, and coordinator to client, each way.
    pub client: Delay,
    /// How long a `Store::sync` (fsync) takes. While one is in flight a node keeps taking
    /// inputs, but their outputs wait for the next sync: group commit. A crash before a sync
    /// completes loses its writes and the messages they would have sent.
    pub disk_sync: Delay,
    /// Added to every node-to-node message between nodes of different `[regions]`.
    pub inter_region: Delay,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            write: Delay::constant(1.0),
            ack: Delay::constant(1.0),
            read_request: Delay::constant(1.0),
            read_response: Delay::constant(1.0),
            gossip: None,
            anti_entropy: None,
            client: Delay::constant(0.0),
            disk_sync: Delay::constant(0.0),
            inter_region: Delay::constant(0.0),
        }
    }
}

/// Message-level faults for the whole traffic phase (stopped when traffic ends: "faults heal").
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Probability a node-to-node message is lost.
    pub loss: f64,
    /// Probability a node-to-node message is delivered twice (the copy has its own delay).
    pub duplicate: f64,
    /// Probability a message is held back by an extra `reorder_delay`, overtaking FIFO order.
    pub reorder: f64,
    pub reorder_delay: Delay,
    /// Per-link FIFO delivery, as over one TCP connection (delays still add up per message,
    /// but no message overtakes an earlier one on its link unless `reorder` picks it). When
    /// false, every message's delay is independent (the PBS model), so messages reorder freely.
    pub fifo: bool,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Delay::Uniform {
                min_ms: 0.0,
                max_ms: 20.0,
            },
            fifo: false,
        }
    }
}

/// A scheduled fault. Exactly one of `split`, `cut`, `crash`, `loss`, `join`, `leave`, `disk` is
/// given.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    pub at_ms: u64,
    /// When it heals (a crashed node restarts). Default: when traffic ends. Everything heals
    /// when traffic ends in any case.
    pub until_ms: Option<u64>,
    /// Groups of nodes; links between different groups are cut both ways. Nodes named in no
    /// group form one more group together.
    pub split: Option<Vec<Vec<String>>>,
    /// Links `[from, to]` to cut: both ways, or only `from -> to` with `one_way = true`.
    pub cut: Option<Vec<[String; 2]>>,
    pub one_way: bool,
    /// A node that crashes (losing unsynced writes) and restarts from its store at `until_ms`.
    pub crash: Option<String>,
    /// Extra message loss probability during the window (on top of `network.loss`).
    pub loss: Option<f64>,
    /// A node that is not a member before `at_ms` (it is not booted, and no member knows it
    /// or has it as a seed); at `at_ms` it boots and joins through the initial members as
    /// seeds, as `driftkv node --join` does. Needs `membership = "gossip"`; no `until_ms`.
    pub join: Option<String>,
    /// A member told to leave at `at_ms` (`Node::leave`): it keeps serving and hands every
    /// partition over, and once `Node::drained` it exits for good. Needs `membership =
    /// "gossip"`; no `until_ms`.
    pub leave: Option<String>,
    /// A node whose disk fails now and then during the window: each sync fails with chance
    /// `sync_fail`, each write with chance `write_fail`. A failed sync confirms nothing, and
    /// what it left unsynced is lost if the node crashes before a later sync succeeds.
    pub disk: Option<String>,
    pub sync_fail: Option<f64>,
    pub write_fail: Option<f64>,
}

/// Random faults drawn from the seed: what a seed sweep explores.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Chaos {
    /// Crashes of random nodes at random times during traffic.
    pub crashes: u32,
    /// Splits isolating a random minority of nodes at random times during traffic.
    pub splits: u32,
    /// How long each lasts.
    pub fault_ms: Delay,
}

impl Default for Chaos {
    fn default() -> Self {
        Chaos {
            crashes: 0,
            splits: 0,
            fault_ms: Delay::Uniform {
                min_ms: 500.0,
                max_ms: 5_000.0,
            },
        }
    }
}

/// Relative weights of client operations (they need not sum to 1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    /// Register read.
    pub get: f64,
    /// Register write: a read for the causal context, then a write with it (read-modify-write),
    /// or a blind write (`blind_writes` of them).
    pub put: f64,
    pub counter_add: f64,
    pub counter_get: f64,
    pub set_add: f64,
    pub set_remove: f64,
    pub set_get: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            get: 0.5,
            put: 0.5,
            counter_add: 0.0,
            counter_get: 0.0,
            set_add: 0.0,
            set_remove: 0.0,
            set_get: 0.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Client operations started per second (a Poisson process: open loop, so operations
    /// overlap as real clients' do).
    pub rate_per_s: f64,
    /// Distinct keys per data type.
    pub keys: u32,
    pub popularity: Popularity,
    pub mix: Mix,
    /// Register operations pick one of these conflict modes (a bucket each) uniformly.
    pub register_modes: Vec<ConflictMode>,
    /// Fraction of register writes made without reading first (empty context). In `siblings`
    /// mode every blind write is concurrent with what is there, so it becomes a sibling.
    pub blind_writes: f64,
    /// Set members are drawn from this many distinct values.
    pub set_members: u32,
    /// Counter deltas, drawn uniformly from this list.
    pub counter_deltas: Vec<i64>,
    /// Client sessions the operations are spread over (0: none). A session remembers the last
    /// context of every register it read or wrote, and its reads are judged against it:
    /// a read that returns less than the session had seen breaks read-your-writes or monotonic
    /// reads.
    pub sessions: u32,
    /// Sessions send that context as a session token (their register reads are session reads,
    /// which never go back); off, sessions are only watched, to count how often they would.
    pub session_tokens: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            rate_per_s: 100.0,
            keys: 100,
            popularity: Popularity::Uniform,
            mix: Mix::default(),
            register_modes: vec![ConflictMode::Siblings],
            blind_writes: 0.0,
            set_members: 8,
            counter_deltas: vec![1],
            sessions: 0,
            session_tokens: true,
        }
    }
}

/// The PBS t-visibility Monte Carlo (Bailis et al., "Probabilistically Bounded Staleness").
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Visibility {
    /// Each trial writes a fresh key at W and reads it at R exactly `t` ms after the write was
    /// acknowledged, through an independently chosen coordinator; one read per trial, so no
    /// read repairs another trial's write.
    pub t_ms: Vec<f64>,
    /// Trials per `t`, spread evenly over the traffic phase (under its load and faults).
    pub trials: u32,
    /// Each trial first writes a version of its own key, waits this long for it to reach every
    /// replica, then makes the measured write over it: a stale read returns that first
    /// version, as in PBS. (A fresh key would not do: replicas that lack a key answer "not
    /// found", which the core does not count towards R while another replica may have it.)
    pub setup_gap_ms: u64,
}

impl Default for Visibility {
    fn default() -> Self {
        Visibility {
            t_ms: vec![0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0],
            trials: 100,
            setup_gap_ms: 1_000,
        }
    }
}

/// What happens after traffic stops.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settle {
    /// The convergence bound: replicas must agree within this long after traffic stops.
    pub max_ms: u64,
    /// How often convergence is checked.
    pub poll_ms: u64,
    /// Once traffic stops, read every key once at R = all (from a random node), so read repair
    /// reaches what hints did not: a stand-in for anti-entropy when `anti_entropy = false`.
    /// Without either, a replica that missed a write whose coordinator crashed before its
    /// deadline (so no hint was kept) stays behind forever.
    pub read_sweep: bool,
    /// When the sweep starts, after traffic stops (lets in-flight requests finish first).
    pub read_sweep_after_ms: u64,
}

impl Default for Settle {
    fn default() -> Self {
        Settle {
            max_ms: 30_000,
            poll_ms: 200,
            read_sweep: false,
            read_sweep_after_ms: 3_000,
        }
    }
}

/// A whole scenario as written in TOML.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    /// Nodes `n1..nN`.
    pub nodes: usize,
    /// Replicas per key.
    pub n: usize,
    /// Read and write quorums: `one`, `quorum`, `all` or a number.
    pub r: String,
    pub w: String,
    pub partitions: u32,
    /// `every-write`, `group-commit` or `none` (see `Durability`).
    pub durability: String,
    pub read_repair: bool,
    pub hinted_handoff: bool,
    /// Active anti-entropy (Merkle-style exchanges between replicas).
    pub anti_entropy: bool,
    /// Time between the exchanges each node starts.
    pub anti_entropy_interval_ms: u64,
    pub membership: MembershipMode,
    pub coordinator: CoordinatorChoice,
    /// Timer tick period of every node (expiries, handoff, gossip rounds).
    pub tick_ms: u64,
    pub request_timeout_ms: u64,
    /// A client gives up on a request after this long (its outcome is then unknown).
    pub client_timeout_ms: u64,
    /// Boot and gossip time before traffic starts.
    pub warmup_ms: u64,
    /// Length of the traffic phase.
    pub duration_ms: u64,
    pub delays: Delays,
    pub network: Network,
    /// Node name to region name; messages between regions add `delays.inter_region`.
    pub regions: BTreeMap<String, String>,
    pub clocks: BTreeMap<String, Clock>,
    pub clock_skew: ClockSkew,
    pub faults: Vec<Fault>,
    pub chaos: Chaos,
    pub workload: Workload,
    pub visibility: Visibility,
    pub settle: Settle,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: String::new(),
            description: String::new(),
            seed: 1,
            nodes: 3,
            n: 3,
            r: "quorum".into(),
            w: "quorum".into(),
            partitions: 64,
            durability: "group-commit".into(),
            read_repair: true,
            hinted_handoff: true,
            anti_entropy: true,
            anti_entropy_interval_ms: 2_000,
            membership: MembershipMode::Gossip,
            coordinator: CoordinatorChoice::Any,
            tick_ms: 50,
            request_timeout_ms: 2_000,
            client_timeout_ms: 6_000,
            warmup_ms: 2_000,
            duration_ms: 0,
            delays: Delays::default(),
            network: Network::default(),
            regions: BTreeMap::new(),
            clocks: BTreeMap::new(),
            clock_skew: ClockSkew::default(),
            faults: Vec::new(),
            chaos: Chaos::default(),
            workload: Workload::default(),
            visibility: Visibility::default(),
            settle: Settle::default(),
        }
    }
}

impl Scenario {
    /// Parses and validates a scenario file's text.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.validate().map_err(ScenarioError::Invalid)?;
        Ok(s)
    }

    /// Parses the scenario file at `path` (its `text` given), which may start from another:
    /// `extends = "PATH"` (relative to the file that names it) takes that scenario, and this
    /// file's values replace the base's key by key, tables merged field by field; arrays
    /// (`[[faults]]`, `t_ms`, ...) replace the base's whole. `read` reads a base's text, so the
    /// simulator does no I/O of its own. Bases may extend others, up to
    /// [`EXTENDS_DEPTH_MAX`] deep (a cycle is an error).
    pub fn from_toml_at(
        text: &str,
        path: &Path,
        read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    ) -> Result<Scenario, ScenarioError> {
        let table = parse_table(text, path)?;
        if !table.contains_key("extends") {
            // Read straight from the text, errors keep their line and column.
            return Self::from_toml(text);
        }
        let table = resolve_extends(table, path, read, 0)?;
        let s: Scenario = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ScenarioError::Parse(e.to_string()))?;
        s.validate().map_err(ScenarioError::Invalid)?;
        Ok(s)
    }

    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }

    /// Whether the node is a member from the start (it is not named by a `join` fault).
    pub fn initial_member(&self, name: &str) -> bool {
        !self.faults.iter().any(|f| f.join.as_deref() == Some(name))
    }

    /// Whether any node joins or leaves during the run.
    pub fn membership_changes(&self) -> bool {
        self.faults
            .iter()
            .any(|f| f.join.is_some() || f.leave.is_some())
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        let i: usize = name.strip_prefix('n')?.parse().ok()?;
        (1..=self.nodes).contains(&i).then(|| i - 1)
    }

    pub fn quorum_r(&self) -> Quorum {
        Quorum::parse(&self.r).expect("validated")
    }

    pub fn quorum_w(&self) -> Quorum {
        Quorum::parse(&self.w).expect("validated")
    }

    pub fn durability_policy(&self) -> Durability {
        self.durability.parse().expect("validated")
    }

    /// Checks everything a run relies on, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
        check(
            (1..=NODES_MAX).contains(&self.nodes),
            &format!("nodes must be 1..={NODES_MAX}"),
        )?;
        check(
            (1..=driftkv_ring::N_MAX).contains(&self.n),
            "n must be at least 1 and at most 16",
        )?;
        let n_eff = self.n.min(self.nodes);
        for (name, level) in [("r", &self.r), ("w", &self.w)] {
            let q = Quorum::parse(level).map_err(|e| format!("{name}: {e}"))?;
            q.resolve(n_eff, Quorum::Quorum)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        self.durability
            .parse::<Durability>()
            .map_err(|e| format!("durability: {e}"))?;
        check(
            (1..=driftkv_ring::PARTITIONS_MAX).contains(&self.partitions),
            "partitions must be 1..=4096",
        )?;
        check(self.tick_ms >= 1, "tick_ms must be at least 1")?;
        check(
            self.request_timeout_ms >= self.tick_ms,
            "request_timeout_ms must be at least tick_ms",
        )?;
        check(
            self.client_timeout_ms >= 1,
            "client_timeout_ms must be >= 1",
        )?;
        check(
            (1..=DURATION_MAX_MS).contains(&self.duration_ms),
            "duration_ms must be given (1 ms to 24 h of traffic)",
        )?;
        check(
            self.settle.poll_ms >= 1 && self.settle.max_ms >= self.settle.poll_ms,
            "settle.poll_ms must be >= 1 and settle.max_ms >= poll_ms",
        )?;
        for (name, d) in [
            ("delays.write", &self.delays.write),
            ("delays.ack", &self.delays.ack),
            ("delays.read_request", &self.delays.read_request),
            ("delays.read_response", &self.delays.read_response),
            ("delays.client", &self.delays.client),
            ("delays.disk_sync", &self.delays.disk_sync),
            ("delays.inter_region", &self.delays.inter_region),
            ("network.reorder_delay", &self.network.reorder_delay),
            ("chaos.fault_ms", &self.chaos.fault_ms),
        ] {
            d.validate().map_err(|e| format!("{name}: {e}"))?;
        }
        if let Some(g) = &self.delays.gossip {
            g.validate().map_err(|e| format!("delays.gossip: {e}"))?;
        }
        if let Some(g) = &self.delays.anti_entropy {
            g.validate()
                .map_err(|e| format!("delays.anti_entropy: {e}"))?;
        }
        check(
            self.anti_entropy_interval_ms >= 1,
            "anti_entropy_interval_ms must be at least 1",
        )?;
        for (name, p) in [
            ("network.loss", self.network.loss),
            ("network.duplicate", self.network.duplicate),
            ("network.reorder", self.network.reorder),
            ("workload.blind_writes", self.workload.blind_writes),
        ] {
            check(
                (0.0..=1.0).contains(&p),
                &format!("{name} is a probability in [0, 1]"),
            )?;
        }
        check(
            self.network.loss < 1.0,
            "network.loss of 1 would never deliver anything",
        )?;
        let known = |name: &str, field: &str| {
            self.node_index(name).map(|_| ()).ok_or_else(|| {
                format!(
                    "{field}: no node named {name:?} (nodes are n1..n{})",
                    self.nodes
                )
            })
        };
        for name in self.regions.keys() {
            known(name, "regions")?;
        }
        for (name, c) in &self.clocks {
            known(name, "clocks")?;
            check(
                c.offset_ms.is_finite() && c.drift_ppm.is_finite() && c.drift_ppm > -500_000.0,
                "clocks: offset_ms must be finite and drift_ppm above -500000",
            )?;
        }
        check(
            self.clock_skew.offset_ms_max >= 0.0
                && (0.0..500_000.0).contains(&self.clock_skew.drift_ppm_max),
            "clock_skew: offset_ms_max >= 0, drift_ppm_max in [0, 500000)",
        )?;
        check(
            self.faults.len() <= FAULTS_MAX,
            &format!("at most {FAULTS_MAX} faults"),
        )?;
        for (i, f) in self.faults.iter().enumerate() {
            let at = format!("faults[{i}]");
            let kinds = [
                f.split.is_some(),
                f.cut.is_some(),
                f.crash.is_some(),
                f.loss.is_some(),
                f.join.is_some(),
                f.leave.is_some(),
                f.disk.is_some(),
            ];
            check(
                kinds.iter().filter(|k| **k).count() == 1,
                &format!("{at}: give exactly one of split, cut, crash, loss, join, leave, disk"),
            )?;
            self.validate_disk_fault(f, &at)?;
            if let Some(until) = f.until_ms {
                check(
                    until > f.at_ms,
                    &format!("{at}: until_ms must be after at_ms"),
                )?;
            }
            check(
                f.at_ms < self.duration_ms,
                &format!("{at}: at_ms must be within the traffic phase"),
            )?;
            for group in f.split.iter().flatten() {
                for name in group {
                    known(name, &at)?;
                }
            }
            for [a, b] in f.cut.iter().flatten() {
                known(a, &at)?;
                known(b, &at)?;
            }
            if let Some(name) = &f.crash {
                known(name, &at)?;
            }
            if let Some(p) = f.loss {
                check(
                    (0.0..1.0).contains(&p),
                    &format!("{at}: loss is a probability in [0, 1)"),
                )?;
            }
            for name in f.join.iter().chain(&f.leave) {
                known(name, &at)?;
                check(
                    self.membership == MembershipMode::Gossip,
                    &format!(
                        "{at}: join and leave need membership = \"gossip\" (the static mode sets every member by hand)"
                    ),
                )?;
                check(
                    f.until_ms.is_none(),
                    &format!("{at}: a join or leave has no until_ms (it is for good)"),
                )?;
            }
        }
        self.validate_membership_changes()?;
        let wl = &self.workload;
        check(
            wl.rate_per_s >= 0.0 && wl.rate_per_s <= OPS_RATE_MAX_PER_S,
            &format!("workload.rate_per_s must be in [0, {OPS_RATE_MAX_PER_S}]"),
        )?;
        check(
            (1..=KEYS_MAX).contains(&wl.keys),
            &format!("workload.keys must be 1..={KEYS_MAX}"),
        )?;
        if let Popularity::Zipf(s) = wl.popularity {
            check(
                s.is_finite() && s > 0.0,
                "workload.popularity zipf exponent must be > 0",
            )?;
        }
        let m = &wl.mix;
        let weights = [
            m.get,
            m.put,
            m.counter_add,
            m.counter_get,
            m.set_add,
            m.set_remove,
            m.set_get,
        ];
        check(
            weights.iter().all(|w| w.is_finite() && *w >= 0.0),
            "workload.mix weights must be >= 0",
        )?;
        check(
            wl.rate_per_s == 0.0 || weights.iter().sum::<f64>() > 0.0,
            "workload.mix needs a positive weight",
        )?;
        check(
            !wl.register_modes.is_empty(),
            "workload.register_modes needs at least one mode",
        )?;
        check(wl.set_members >= 1, "workload.set_members must be >= 1")?;
        check(
            !wl.counter_deltas.is_empty(),
            "workload.counter_deltas needs at least one delta",
        )?;
        let v = &self.visibility;
        check(
            v.t_ms.len() <= T_GRID_MAX,
            &format!("visibility.t_ms has at most {T_GRID_MAX} points"),
        )?;
        check(
            v.t_ms.iter().all(|t| t.is_finite() && *t >= 0.0),
            "visibility.t_ms values must be >= 0",
        )?;
        check(
            v.t_ms.windows(2).all(|w| w[0] < w[1]),
            "visibility.t_ms must be increasing",
        )?;
        check(
            (v.t_ms.len() as u64) * (v.trials as u64) <= 1_000_000,
            "visibility: at most 1000000 trials in all",
        )?;
        Ok(())
    }

    /// A disk fault names a node and at least one chance; the chances belong to disk faults.
    fn validate_disk_fault(&self, f: &Fault, at: &str) -> Result<(), String> {
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
        let chances = [("sync_fail", f.sync_fail), ("write_fail", f.write_fail)];
        let Some(name) = &f.disk else {
            return check(
                chances.iter().all(|(_, p)| p.is_none()),
                &format!("{at}: sync_fail and write_fail belong to a disk fault"),
            );
        };
        check(
            self.node_index(name).is_some(),
            &format!("{at}: no node named {name:?}"),
        )?;
        check(
            chances.iter().any(|(_, p)| p.is_some()),
            &format!("{at}: a disk fault gives sync_fail, write_fail or both"),
        )?;
        for (field, p) in chances {
            if let Some(p) = p {
                check(
                    (0.0..=1.0).contains(&p),
                    &format!("{at}: {field} is a probability in [0, 1]"),
                )?;
            }
        }
        Ok(())
    }

    /// Joins and leaves in time order: each node joins at most once and leaves at most once,
    /// only while a member, and at least one member is left at every moment.
    fn validate_membership_changes(&self) -> Result<(), String> {
        let mut changes: Vec<(u64, bool, &str)> = Vec::new();
        for f in &self.faults {
            if let Some(name) = &f.join {
                changes.push((f.at_ms, true, name));
            }
            if let Some(name) = &f.leave {
                changes.push((f.at_ms, false, name));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        // At one instant joins go first, so a join and a leave at the same time are refused
        // only when they name the same node.
        changes.sort_by_key(|&(at, join, _)| (at, !join));
        let mut member: Vec<bool> = self
            .node_names()
            .iter()
            .map(|n| self.initial_member(n))
            .collect();
        let mut joined_at: Vec<Option<u64>> = vec![None; self.nodes];
        let mut left = vec![false; self.nodes];
        if !member.iter().any(|m| *m) {
            return Err(
                "faults: every node joins later; at least one must be a member from the start"
                    .into(),
            );
        }
        for (at, join, name) in changes {
            let i = self.node_index(name).expect("checked");
            if join {
                if joined_at[i].is_some() {
                    return Err(format!("faults: {name} joins twice"));
                }
                joined_at[i] = Some(at);
                member[i] = true;
            } else {
                if left[i] {
                    return Err(format!("faults: {name} leaves twice"));
                }
                if !member[i] || joined_at[i] == Some(at) {
                    return Err(format!(
                        "faults: {name} leaves at {at} ms but is not a member then (it joins later, or at the same time)"
                    ));
                }
                left[i] = true;
                member[i] = false;
                if !member.iter().any(|m| *m) {
                    return Err(format!(
                        "faults: when {name} leaves at {at} ms no member would be left"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads from an in-memory set of files, recording what was asked for.
    fn files<'a>(
        set: &'a [(&'a str, &'a str)],
        asked: &'a mut Vec<String>,
    ) -> impl FnMut(&Path) -> std::io::Result<String> + 'a {
        move |p: &Path| {
            let p = p.to_string_lossy().into_owned();
            asked.push(p.clone());
            set.iter()
                .find(|(name, _)| *name == p)
                .map(|(_, text)| text.to_string())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
        }
    }

    const BASE: &str = r#"
name = "base"
duration_ms = 4000
nodes = 4
[network]
loss = 0.02
duplicate = 0.03
[[faults]]
at_ms = 100
crash = "n1"
"#;

    #[test]
    fn extends_takes_the_base_and_replaces_what_the_file_sets() {
        let child = r#"
extends = "../base.toml"
name = "child"
nodes = 7
[network]
loss = 0.1
[[faults]]
at_ms = 200
crash = "n2"
"#;
        let mut asked = Vec::new();
        let set = [("lab/sub/../base.toml", BASE)];
        let s = Scenario::from_toml_at(
            child,
            Path::new("lab/sub/child.toml"),
            &mut files(&set, &mut asked),
        )
        .unwrap();
        assert_eq!(
            asked,
            ["lab/sub/../base.toml"],
            "relative to the extending file"
        );
        assert_eq!(
            (s.name.as_str(), s.nodes, s.duration_ms),
            ("child", 7, 4000)
        );
        // Tables merge field by field; arrays replace the base's whole.
        assert_eq!((s.network.loss, s.network.duplicate), (0.1, 0.03));
        assert_eq!(s.faults.len(), 1);
        assert_eq!(
            (s.faults[0].at_ms, s.faults[0].crash.as_deref()),
            (200, Some("n2"))
        );
        // A file without `extends` reads as `from_toml` does.
        let plain =
            Scenario::from_toml_at(BASE, Path::new("base.toml"), &mut |_| unreachable!()).unwrap();
        assert_eq!(plain, Scenario::from_toml(BASE).unwrap());
    }

    #[test]
    fn extends_refuses_cycles_missing_bases_and_non_paths() {
        let mut asked = Vec::new();
        let set = [
            ("a.toml", "extends = \"b.toml\""),
            ("b.toml", "extends = \"a.toml\""),
        ];
        let e = Scenario::from_toml_at(
            "extends = \"a.toml\"",
            Path::new("c.toml"),
            &mut files(&set, &mut asked),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than 8 files deep"), "{e}");
        assert_eq!(asked.len(), EXTENDS_DEPTH_MAX);

        let e = Scenario::from_toml_at(
            "extends = \"gone.toml\"",
            Path::new("x/c.toml"),
            &mut files(&[], &mut Vec::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot read the scenario it extends, x/gone.toml"),
            "{e}"
        );

        let e = Scenario::from_toml_at("extends = 3", Path::new("c.toml"), &mut |_| unreachable!())
            .unwrap_err()
            .to_string();
        assert!(e.contains("extends must be the path"), "{e}");

        // What the merged file lacks or gets wrong is refused as any scenario's would be.
        let set = [("base.toml", BASE)];
        let extending = |text: &str| {
            Scenario::from_toml_at(text, Path::new("c.toml"), &mut files(&set, &mut Vec::new()))
                .unwrap_err()
                .to_string()
        };
        let e = extending("extends = \"base.toml\"\nnodse = 3");
        assert!(e.contains("nodse"), "{e}");
        let e = extending("extends = \"base.toml\"\nnodes = 0");
        assert!(e.contains("invalid"), "{e}");
    }

    #[test]
    fn a_minimal_scenario_takes_the_defaults() {
        let s = Scenario::from_toml("duration_ms = 1000").unwrap();
        assert_eq!(
            (s.nodes, s.n, s.r.as_str(), s.w.as_str()),
            (3, 3, "quorum", "quorum")
        );
        assert_eq!(s.node_names(), ["n1", "n2", "n3"]);
        assert_eq!(s.node_index("n3"), Some(2));
        assert_eq!(s.node_index("n4"), None);
    }

    #[test]
    fn bad_scenarios_name_the_problem() {
        let err = |text: &str| Scenario::from_toml(text).unwrap_err().to_string();
        assert!(err("").contains("duration_ms"));
        assert!(err("duration_ms = 10\nr = \"most\"").contains("r:"));
        assert!(err("duration_ms = 10\nw = \"4\"").contains("w:"));
        assert!(err("duration_ms = 10\nbogus = 1").contains("unknown field"));
        assert!(err("duration_ms = 10\n[[faults]]\nat_ms = 1\ncrash = \"n9\"").contains("n9"));
        assert!(
            err("duration_ms = 10\n[[faults]]\nat_ms = 1\ncrash = \"n1\"\nloss = 0.5")
                .contains("exactly one")
        );
        assert!(err("duration_ms = 10\n[network]\nloss = 1.0").contains("loss"));
        let change = |kind: &str, name: &str| {
            format!("duration_ms = 10\nnodes = 3\n[[faults]]\nat_ms = 1\n{kind} = \"{name}\"\n")
        };
        assert!(err(&change("join", "n4")).contains("n4"));
        assert!(err(&change("leave", "n7")).contains("n7"));
        assert!(
            err(&format!(
                "membership = \"static\"\n{}",
                change("join", "n3")
            ))
            .contains("gossip")
        );
        assert!(err(&format!("{}until_ms = 5\n", change("leave", "n1"))).contains("until_ms"));
        let twice = format!(
            "{}[[faults]]\nat_ms = 2\nleave = \"n1\"\n",
            change("leave", "n1")
        );
        assert!(err(&twice).contains("leaves twice"));
        let early = format!(
            "{}[[faults]]\nat_ms = 2\njoin = \"n3\"\n",
            change("leave", "n3")
        );
        assert!(err(&early).contains("not a member"));
        let all = "duration_ms = 10\nnodes = 1\n[[faults]]\nat_ms = 1\nleave = \"n1\"\n";
        assert!(err(all).contains("no member"));
        let ok = format!(
            "{}[[faults]]\nat_ms = 5\nleave = \"n1\"\n",
            change("join", "n3")
        );
        let s = Scenario::from_toml(&ok).unwrap();
        assert!(s.membership_changes());
        assert!(s.initial_member("n1") && !s.initial_member("n3"));
    }

    #[test]
    fn popularity_and_modes_parse() {
        let s = Scenario::from_toml(
            "duration_ms = 10\n[workload]\npopularity = { zipf = 1.2 }\nregister_modes = [\"siblings\", \"lww\"]",
        )
        .unwrap();
        assert_eq!(s.workload.popularity, Popularity::Zipf(1.2));
        assert_eq!(
            s.workload.register_modes,
            [ConflictMode::Siblings, ConflictMode::Lww]
        );
        let s =
            Scenario::from_toml("duration_ms = 10\n[workload]\npopularity = \"uniform\"").unwrap();
        assert_eq!(s.workload.popularity, Popularity::Uniform);
    }
}
