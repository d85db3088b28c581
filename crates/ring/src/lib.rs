//! driftkv's ring: which nodes own which keys, placed by consistent hashing with bounded loads.
//!
//! # Model
//!
//! The key space is cut into a fixed number of partitions (Riak-style): a key's
//! [`key_hash`] falls in partition `p` when `p = (hash * partitions) >> 64`. The partition count
//! never changes for a cluster; membership changes only move whole partitions between nodes.
//!
//! # Placement
//!
//! Each member puts `vnodes_per_node` points on a 64-bit circle (xxh3 of its name and the
//! vnode index). Partition `p` sits at point `p * 2^64 / partitions`; its owners are found by
//! walking clockwise from there over vnode points, taking distinct nodes.
//!
//! Plain consistent hashing with only 64 partitions spreads load badly (the busiest node often
//! owns close to twice the mean), so the walk uses *bounded loads* (Mirrokni, Thorup,
//! Zadimoghaddam, "Consistent Hashing with Bounded Loads"): every node has a capacity
//! `c = ceil(partitions * n_effective / members)`, partitions are placed in order
//! `0..partitions`, and the walk skips nodes already holding `c` partition-replicas.
//!
//! Greedy placement alone can strand the tail: with few members (3 nodes, n = 2) two nodes may
//! fill up while partitions remain, forcing the rest onto a full node. So the walk also keeps
//! the remaining placement feasible: it takes a node with little room left only while the
//! others still have enough room for every later partition (details on `Ring::place_owners`).
//! A last-resort fill (next distinct nodes regardless of load) remains so placement can never
//! fail, but by that argument it never runs.
//!
//! # Guarantees
//!
//! - Deterministic: the ring is a pure function of the config and the member *set* (order and
//!   duplicates do not matter), so every node that knows the same members computes the same
//!   ring without coordinating.
//! - Every partition has exactly `n_effective = min(n, members)` distinct owners, all members.
//! - Even at the top: no node owns more than `c = ceil(mean)` partition-replicas, the best any
//!   placement can do when the mean is not an integer. (The minimum is not bounded, but the
//!   total shortfall below `c` is under one per member.)
//! - Modest movement: a node joining or leaving mostly moves partitions to or from that node,
//!   as in consistent hashing; the capacity bound adds some extra reshuffling (about 1.2 to
//!   1.4 times the joiner's or leaver's fair share in the tests' measurements, see
//!   [`moved_partitions`]).
//!
//! [`Ring::preference_list`] turns owners plus a liveness view into the nodes a request goes
//! to: up primaries first, then a fallback (the next up node of the continued walk) for each
//! down primary, marked with the primary it stands in for so writes can be handed off later.

#![forbid(unsafe_code)]

mod id;
mod ring;

use serde::{Deserialize, Serialize};

pub use id::{NodeId, PartitionId, hash_parts, key_hash, segment_hash};
pub use ring::{Ring, Role, Target, moved_partitions};

/// Most partitions a ring may have. Each partition is a unit of handoff and of per-partition
/// bookkeeping on every node; 4096 is already far more than a cluster of this design needs.
pub const PARTITIONS_MAX: u32 = 4096;

/// Largest replication factor accepted. Preference lists and quorums are sized by N; past 16
/// a "replica" is a broadcast, not what this store is built for.
pub const N_MAX: usize = 16;

/// Most vnode points per node. Bounded loads already evens out ownership, so points beyond
/// this only cost memory and build time (the ring holds `members * vnodes_per_node` points).
pub const VNODES_MAX: u32 = 1024;

/// The shape of the ring: the same on every node of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct RingConfig {
    /// Fixed number of partitions the key space is cut into, `1..=PARTITIONS_MAX`.
    pub partitions: u32,
    /// Replication factor: owners per partition, `1..=N_MAX`.
    pub n: usize,
    /// Points each node puts on the hash circle, `1..=VNODES_MAX`.
    pub vnodes_per_node: u32,
}

impl Default for RingConfig {
    /// 64 partitions and N = 3 as in Riak's defaults. 32 vnodes per node: capacity bounding
    /// does the balancing whatever the vnode count, so vnodes serve movement and fallbacks.
    /// Many points make a node's successors on the walk a mix of many nodes, so a full or down
    /// node's share spreads widely instead of landing on one neighbour. Measured over joins
    /// and leaves of 5, 10, 20 and 50 nodes (64 partitions, N = 3), slots moved per ideal:
    /// 1, 4 or 8 vnodes 1.5 to 1.9x; 16 or 32 about 1.3x; 64 to 256 no better overall (joins improve,
    /// leaves worsen) at up to 8x the points.
    fn default() -> Self {
        RingConfig {
            partitions: 64,
            n: 3,
            vnodes_per_node: 32,
        }
    }
}

impl RingConfig {
    /// The partition a key hash falls in. Partition `p` holds hashes in
    /// `[p * 2^64 / partitions, (p + 1) * 2^64 / partitions)`, i.e. the arc starting at its
    /// point. A function of the config alone: no ring (no member set) is needed.
    pub fn partition_for_hash(&self, hash: u64) -> PartitionId {
        // Multiply-shift maps the hash range onto 0..partitions evenly without a division and
        // keeps partitions contiguous arcs; the product of a u64 and a u32 fits in a u128.
        PartitionId(((u128::from(hash) * u128::from(self.partitions)) >> 64) as u32)
    }

    /// The partition of a key (see [`RingConfig::partition_for_hash`]).
    pub fn partition_for_key(&self, bucket: &[u8], key: &[u8]) -> PartitionId {
        self.partition_for_hash(key_hash(bucket, key))
    }

    /// Checks every field against its limit.
    pub fn validate(&self) -> Result<(), RingError> {
        if self.partitions == 0 {
            return Err(RingError::ZeroPartitions);
        }
        if self.partitions > PARTITIONS_MAX {
            return Err(RingError::TooManyPartitions {
                partitions: self.partitions,
                max: PARTITIONS_MAX,
            });
        }
        if self.n == 0 {
            return Err(RingError::ZeroN);
        }
        if self.n > N_MAX {
            return Err(RingError::NTooLarge {
                n: self.n,
                max: N_MAX,
            });
        }
        if self.vnodes_per_node == 0 {
            return Err(RingError::ZeroVnodes);
        }
        if self.vnodes_per_node > VNODES_MAX {
            return Err(RingError::TooManyVnodes {
                vnodes_per_node: self.vnodes_per_node,
                max: VNODES_MAX,
            });
        }
        Ok(())
    }
}

/// Why a ring could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("a ring needs at least one partition")]
    ZeroPartitions,
    #[error("{partitions} partitions is more than the limit of {max}")]
    TooManyPartitions { partitions: u32, max: u32 },
    #[error("the replication factor n must be at least 1")]
    ZeroN,
    #[error("replication factor {n} is more than the limit of {max}")]
    NTooLarge { n: usize, max: usize },
    #[error("each node needs at least one vnode")]
    ZeroVnodes,
    #[error("{vnodes_per_node} vnodes per node is more than the limit of {max}")]
    TooManyVnodes { vnodes_per_node: u32, max: u32 },
    #[error("a ring needs at least one member")]
    NoMembers,
    #[error("{members} members is more than a ring can index")]
    TooManyMembers { members: usize },
}
