//! Scenario files: the cluster, its network and faults, the workload and the measurements, in
//! TOML. Every field has a default except `duration_ms`; `scenarios/*.toml` at the repository
//! root are worked examples, and `docs` of each field live on the structs below.
//!
//! Times in a scenario are virtual milliseconds from the start of traffic (nodes boot and
//! gossip for `warmup_ms` before that).

use std::collections::BTreeMap;
use std::path::Path;

use driftkv_causal::ConflictMode;
use driftkv_core::{Durability, WritePath};
use driftkv_wire::Quorum;
use serde::Deserialize;

use crate::dist::Delay;

mod extends;
mod validate;

pub use extends::EXTENDS_DEPTH_MAX;
use extends::{parse_table, resolve_extends};

/// Bounds that keep a scenario (often hand-written, sometimes mistyped) from asking for a run
/// that cannot finish.
pub const NODES_MAX: usize = 1024;
pub const KEYS_MAX: u32 = 1_000_000;
pub const OPS_RATE_MAX_PER_S: f64 = 1_000_000.0;
pub const DURATION_MAX_MS: u64 = 24 * 3600 * 1000;
pub const T_GRID_MAX: usize = 256;
pub const FAULTS_MAX: usize = 1024;
/// Map fields a workload names at most (a node refuses updates naming many at once; each
/// names one, but a read returns them all).
pub const MAP_FIELDS_MAX: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario is not valid TOML or has an unknown field: {0}")]
    Parse(String),
    #[error("scenario is invalid: {0}")]
    Invalid(String),
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
    /// Register write with a TTL (`workload.ttl_ms`), read-modify-write or blind as `put`: the
    /// value reads as deleted from its expiry on.
    pub put_ttl: f64,
    /// Map updates, one field each (of `workload.map_fields`): a write of a fresh integer, an
    /// increment by one of `counter_deltas`, a remove.
    pub map_set: f64,
    pub map_increment: f64,
    pub map_remove: f64,
    pub map_get: f64,
    /// Deletes (`Request::Delete`) of a register, counter, set or map key of the workload.
    pub delete_register: f64,
    pub delete_counter: f64,
    pub delete_set: f64,
    pub delete_map: f64,
    /// A race of two "set if not exists" clients on a fresh key: each reads it at R and, if
    /// nothing was found, writes with the read's context. Measured, not checked: how often
    /// both succeed.
    pub set_nx: f64,
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
            put_ttl: 0.0,
            map_set: 0.0,
            map_increment: 0.0,
            map_remove: 0.0,
            map_get: 0.0,
            delete_register: 0.0,
            delete_counter: 0.0,
            delete_set: 0.0,
            delete_map: 0.0,
            set_nx: 0.0,
        }
    }
}

impl Mix {
    /// The weights of the data-type operations (expiry, maps, deletes, NX races), in order.
    pub fn data_type_weights(&self) -> [(&'static str, f64); 10] {
        [
            ("put_ttl", self.put_ttl),
            ("map_set", self.map_set),
            ("map_increment", self.map_increment),
            ("map_remove", self.map_remove),
            ("map_get", self.map_get),
            ("delete_register", self.delete_register),
            ("delete_counter", self.delete_counter),
            ("delete_set", self.delete_set),
            ("delete_map", self.delete_map),
            ("set_nx", self.set_nx),
        ]
    }

    /// Whether any data-type operation has a weight: only then does an arrival draw what
    /// they use (a TTL, a map field), so other scenarios keep their random streams.
    pub fn has_data_types(&self) -> bool {
        self.data_type_weights().iter().any(|(_, w)| *w > 0.0)
    }

    /// Whether the workload writes values with a TTL.
    pub fn has_expiry(&self) -> bool {
        self.put_ttl > 0.0
    }

    /// Whether the workload touches maps.
    pub fn has_maps(&self) -> bool {
        self.map_set + self.map_increment + self.map_remove + self.map_get + self.delete_map > 0.0
    }

    /// Whether the workload deletes keys.
    pub fn has_deletes(&self) -> bool {
        self.delete_register + self.delete_counter + self.delete_set + self.delete_map > 0.0
    }
}

/// A range of milliseconds, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsRange {
    pub min_ms: u64,
    pub max_ms: u64,
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
    /// `put_ttl` writes expire this long after the client sends them (uniform, whole ms).
    pub ttl_ms: MsRange,
    /// Map updates name one of this many fields (`f0`, `f1`, ...).
    pub map_fields: u32,
    /// The second client of an NX race starts this long after the first (uniform, whole ms).
    pub nx_gap_ms: MsRange,
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
            ttl_ms: MsRange {
                min_ms: 50,
                max_ms: 1_000,
            },
            map_fields: 3,
            nx_gap_ms: MsRange {
                min_ms: 0,
                max_ms: 0,
            },
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
    /// Each trial's key is one whose replicas are all in different `[regions]` (the trial's
    /// name is drawn again until it is): with a node off the replica set in each region, a
    /// proxy coordinator then always has exactly one replica beside it, as in the PBS paper's
    /// WAN model.
    pub replicas_in_distinct_regions: bool,
    /// Measured versions each trial writes, each over the one before: with more than one the
    /// report adds k-staleness (the chance that a read returns one of the last `k`), the
    /// PBS paper's other measure, for every `k` up to this and every `t`.
    pub versions: u32,
    /// Between one measured version's acknowledgement and the next version's write.
    pub version_gap_ms: f64,
    /// Each trial reads once at every `t` of the grid (so `trials` reads per `t`, from as
    /// many writes), instead of once at one `t` (`trials` writes per `t`). Without read
    /// repair a read changes nothing, and each `t`'s share is the same either way; with it,
    /// what an earlier read repaired shows in the later ones.
    pub read_every_t: bool,
    /// Published figures to show beside the measured ones (a paper's, say): `t_ms` and `p`.
    pub published: Vec<Published>,
}

/// A published t-visibility figure: the probability `p` of a consistent read `t_ms` after the
/// write, and where it was published.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub t_ms: f64,
    pub p: f64,
    pub source: String,
}

impl Scenario {
    /// The conflict mode of the visibility probes' bucket (whose write path is the
    /// scenario's): lww when they measure the direct path, whose writes are lww.
    pub fn probe_mode(&self) -> ConflictMode {
        match self.write_path {
            WritePath::Direct => ConflictMode::Lww,
            WritePath::Replica => ConflictMode::Siblings,
        }
    }
}

impl Visibility {
    /// Trials the run starts: `trials` per `t`, or `trials` in all with `read_every_t`.
    pub fn trial_count(&self) -> usize {
        match self.read_every_t {
            true => self.trials as usize,
            false => self.trials as usize * self.t_ms.len(),
        }
    }
}

impl Default for Visibility {
    fn default() -> Self {
        Visibility {
            t_ms: vec![0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0],
            trials: 100,
            setup_gap_ms: 1_000,
            replicas_in_distinct_regions: false,
            versions: 1,
            version_gap_ms: 0.0,
            read_every_t: false,
            published: Vec::new(),
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
    /// How the `lww` bucket's register writes reach the replicas: `replica` (forwarded to a
    /// replica, which coordinates) or `direct` (the node the client chose stamps the write
    /// and sends it to all N). With `direct` the visibility probes are lww writes too, in a
    /// bucket of their own with the same path: the path the PBS model assumes.
    pub write_path: WritePath,
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
            write_path: WritePath::Replica,
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

    /// How far behind virtual time a node's clock may be at virtual millisecond `t_ms` (from
    /// the start of the run, warm-up included): its offset and drift at their worst, from
    /// `[clocks]` and `[clock_skew]`, plus the millisecond a clock's reading rounds down.
    pub fn clock_lag_bound_ms(&self, t_ms: f64) -> f64 {
        let skew = &self.clock_skew;
        let lag = |c: &Clock| {
            let offset = skew.offset_ms_max - c.offset_ms;
            let drift_ppm = skew.drift_ppm_max - c.drift_ppm;
            offset + drift_ppm.max(0.0) / 1e6 * t_ms
        };
        let worst = self
            .node_names()
            .iter()
            .map(|n| lag(&self.clocks.get(n).cloned().unwrap_or_default()))
            .fold(0.0, f64::max);
        worst + 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
