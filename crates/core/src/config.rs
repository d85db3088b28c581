//! A node's configuration as the core sees it: identity, replication, limits, bucket properties.

use std::collections::BTreeMap;

use bytes::Bytes;
use driftkv_causal::ConflictMode;
use driftkv_ring::{NodeId, RingConfig};
use driftkv_wire::Quorum;

use crate::aae::AaeConfig;
use crate::membership::GossipConfig;

/// Properties of one bucket (the same on every node).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketProps {
    pub mode: ConflictMode,
    /// Replicas for this bucket's keys: at most the cluster's N. `None`: the cluster's.
    pub n: Option<usize>,
    pub r: Option<Quorum>,
    pub w: Option<Quorum>,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Node-to-node and HTTP addresses, as gossip tells them to other members.
    pub listen: String,
    pub http: String,
    /// Addresses of members to join through.
    pub seeds: Vec<String>,
    pub gossip: GossipConfig,
    pub aae: AaeConfig,
    /// Changes when the node comes back without its data: see `driftkv_causal::Actor`.
    pub incarnation: u32,
    pub ring: RingConfig,
    pub r: Quorum,
    pub w: Quorum,
    pub buckets: BTreeMap<Bytes, BucketProps>,
    /// A coordinator gives up on replicas that have not answered by then.
    pub request_timeout_ms: u64,
    /// Inspection (`/kv/{key}/replicas`) waits at most this long for each copy.
    pub inspect_timeout_ms: u64,
    pub read_repair: bool,
    pub hinted_handoff: bool,
    pub key_bytes_max: usize,
    pub bucket_bytes_max: usize,
    pub value_bytes_max: usize,
    /// Members added or removed by one set request.
    pub set_update_members_max: usize,
    /// Hints kept at most; past it a fallback still stores the write but keeps no hint.
    pub hints_max: usize,
    /// A hint not handed off by then is dropped (anti-entropy still repairs the primary).
    pub hint_age_max_ms: u64,
    /// A tombstone is collected once every primary holds it and it is this old. Kept at least
    /// `hint_age_max_ms`, so no hint older than a collected tombstone can bring a value back.
    pub tombstone_grace_ms: u64,
    /// Records examined per tick by the tombstone sweep and per partition-transfer batch.
    pub sweep_batch_max: usize,
    /// Hints in flight to one node at once.
    pub handoff_batch_max: usize,
}

impl NodeConfig {
    pub fn new(id: impl Into<NodeId>) -> Self {
        NodeConfig {
            id: id.into(),
            listen: String::new(),
            http: String::new(),
            seeds: Vec::new(),
            gossip: GossipConfig::default(),
            aae: AaeConfig::default(),
            incarnation: 0,
            ring: RingConfig::default(),
            r: Quorum::Quorum,
            w: Quorum::Quorum,
            buckets: BTreeMap::new(),
            request_timeout_ms: 2_000,
            inspect_timeout_ms: 500,
            read_repair: true,
            hinted_handoff: true,
            key_bytes_max: 1024,
            bucket_bytes_max: 255,
            value_bytes_max: 4 * 1024 * 1024,
            set_update_members_max: 1024,
            hints_max: 100_000,
            hint_age_max_ms: 24 * 3600 * 1000,
            handoff_batch_max: 64,
            tombstone_grace_ms: 24 * 3600 * 1000,
            sweep_batch_max: 256,
        }
    }

    /// The properties of `bucket` (the defaults if it has none of its own). Looked up for every
    /// request and replica write: a handful of named buckets are compared in line, where the
    /// map's search would call out to `memcmp` at each one.
    pub fn bucket(&self, bucket: &[u8]) -> BucketProps {
        const SCANNED_MAX: usize = 8;
        let found = if self.buckets.len() <= SCANNED_MAX {
            self.buckets
                .iter()
                .find(|(name, _)| driftkv_wire::object::same_bytes(name, bucket))
                .map(|(_, props)| props)
        } else {
            self.buckets.get(bucket)
        };
        found.cloned().unwrap_or_default()
    }
}
