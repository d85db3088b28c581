//! Placement and routing: which nodes hold a key's partition, and which of them to ask.

use super::*;

/// The members a ring is built from: every member not leaving (up or down), or this node alone
/// when there is none (a ring needs a member).
pub(super) fn ring_owners(membership: &Membership, me: &NodeId) -> Vec<NodeId> {
    let mut owners: Vec<NodeId> = membership.owners().cloned().collect();
    if owners.is_empty() {
        owners.push(me.clone());
    }
    owners
}

impl Node {
    /// The partition `key` lives in (from its placement hash).
    pub(super) fn partition_of(&self, key: &Key) -> PartitionId {
        self.cfg.ring.partition_for_hash(key.key_hash())
    }

    /// Replicas for a key in this bucket (the bucket's N, at most the ring's).
    pub(super) fn n_for(&self, key: &Key) -> usize {
        let ring_n = self.ring().n_effective();
        self.cfg
            .bucket(key.bucket())
            .n
            .map_or(ring_n, |n| n.clamp(1, ring_n))
    }

    /// Up primaries, then fallbacks standing in for down primaries: where a request goes.
    pub(super) fn targets(
        &self,
        partition: PartitionId,
        n: usize,
    ) -> Vec<(NodeId, Option<NodeId>)> {
        let owners = self.ring().owners(partition);
        let primaries = &owners[..n.min(owners.len())];
        // The common case, every primary up: the preference list would be just them, in order.
        if primaries.iter().all(|node| self.is_up(node)) {
            return primaries.iter().map(|node| (node.clone(), None)).collect();
        }
        self.ring()
            .preference_list(partition, |node| self.is_up(node))
            .into_iter()
            .filter_map(|t| match t.role {
                Role::Primary => primaries.contains(&t.node).then_some((t.node, None)),
                Role::Fallback { for_node } => primaries
                    .contains(&for_node)
                    .then_some((t.node, Some(for_node))),
            })
            .collect()
    }

    /// Down primaries of `partition` that no fallback in `targets` stands in for.
    pub(super) fn uncovered_primaries(
        &self,
        partition: PartitionId,
        n: usize,
        targets: &[(NodeId, Option<NodeId>)],
    ) -> Vec<NodeId> {
        self.ring()
            .owners(partition)
            .iter()
            .take(n)
            .filter(|p| {
                !targets
                    .iter()
                    .any(|(node, hint)| node == *p || hint.as_ref() == Some(*p))
            })
            .cloned()
            .collect()
    }

    /// The primaries of a partition (by the ring, up or not), in walk order.
    pub(super) fn primary_ids(&self, partition: PartitionId) -> impl Iterator<Item = &NodeId> {
        self.ring().owners(partition).iter().take(self.cfg.ring.n)
    }

    /// Whether this node is one of `partition`'s primaries.
    pub(super) fn is_primary_of(&self, partition: PartitionId) -> bool {
        self.primary_ids(partition).any(|node| *node == self.cfg.id)
    }

    pub(super) fn primaries(&self, partition: PartitionId) -> Vec<NodeId> {
        self.primary_ids(partition).cloned().collect()
    }
}
