//! A node's configuration as the core sees it: identity, replication, limits, bucket properties.

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
    /// How a register write reaches the replicas (`direct` needs `mode` lww).
    pub write_path: WritePath,
    /// Replicas for this bucket's keys: at most the cluster's N. `None`: the cluster's.
    pub n: Option<usize>,
    pub r: Option<Quorum>,
    pub w: Option<Quorum>,
}

/// Who coordinates a register write, and so who issues its dot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WritePath {
    /// A replica of the key (a node that is not forwards it to one): the write is applied to
    /// that replica's copy, under its actor, then sent to the others (Dynamo's and Riak's
    /// path). Siblings and lww alike.
    #[default]
    Replica,
    /// Any node: it stamps the write with its hybrid clock under a dot of its own writer,
    /// sends it to every target at once and answers after W acknowledgements, without
    /// reading the key (Cassandra's path; lww only). Such a bucket holds registers only, and
    /// `Request::Delete` still takes the replica path (its answer says whether the key held a
    /// value), leaving a tombstone even where its coordinator held nothing.
    Direct,
}

impl std::str::FromStr for WritePath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "replica" => Ok(WritePath::Replica),
            "direct" => Ok(WritePath::Direct),
            other => Err(format!(
                "unknown write path {other:?} (expected \"replica\" or \"direct\")"
            )),
        }
    }
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
    pub buckets: Buckets,
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
    /// Siblings one key may hold: a write that would leave more is refused (Riak's
    /// `max_siblings`), so blind writes cannot grow a key without bound.
    pub siblings_max: usize,
    /// Bytes of values one key may hold (all siblings): a write past it is refused, so every
    /// replica can still be sent the object in one frame.
    pub object_bytes_max: usize,
    /// Bytes of decoded objects the node keeps cached at most (counted as their stored records'
    /// bytes plus a fixed overhead per entry; see `objects`).
    pub object_cache_bytes_max: usize,
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
            buckets: Buckets::default(),
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
            siblings_max: 100,
            object_bytes_max: 16 * 1024 * 1024,
            object_cache_bytes_max: 64 * 1024 * 1024,
        }
    }

    /// The properties of `bucket` (the defaults if it has none of its own).
    pub fn bucket(&self, bucket: &[u8]) -> BucketProps {
        self.buckets.get(bucket).cloned().unwrap_or_default()
    }
}

/// The named buckets' properties. A handful in practice, looked up for every request and replica
/// write: kept in a short list compared in line, where a tree's search calls out to `memcmp` at
/// each node and mispredicts its branches. (A lookup walks the list: a configuration naming
/// hundreds of buckets would want a map again.)
#[derive(Clone, Debug, Default)]
pub struct Buckets(Vec<(Bytes, BucketProps)>);

impl Buckets {
    /// Sets `name`'s properties, returning what they replaced.
    pub fn insert(&mut self, name: Bytes, props: BucketProps) -> Option<BucketProps> {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, slot)) => Some(std::mem::replace(slot, props)),
            None => {
                self.0.push((name, props));
                None
            }
        }
    }

    pub fn get(&self, name: &[u8]) -> Option<&BucketProps> {
        self.0
            .iter()
            .find(|(n, _)| driftkv_wire::object::same_bytes(n, name))
            .map(|(_, props)| props)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_find_their_properties_and_a_second_insert_replaces() {
        let mut buckets = Buckets::default();
        let lww = BucketProps {
            mode: ConflictMode::Lww,
            ..Default::default()
        };
        assert_eq!(buckets.insert(Bytes::from_static(b"a"), lww.clone()), None);
        assert_eq!(
            buckets.insert(Bytes::from_static(b"bb"), BucketProps::default()),
            None
        );
        assert_eq!(buckets.get(b"a"), Some(&lww));
        assert_eq!(buckets.get(b"b"), None);
        assert_eq!(buckets.get(b"aa"), None);
        let replaced = buckets.insert(Bytes::from_static(b"a"), BucketProps::default());
        assert_eq!(replaced, Some(lww));
        assert_eq!(buckets.len(), 2);
        let mut cfg = NodeConfig::new("n1");
        cfg.buckets = buckets;
        assert_eq!(cfg.bucket(b"zz").mode, ConflictMode::Siblings);
    }
}
