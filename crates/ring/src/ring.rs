//! The ring itself: owner placement by consistent hashing with bounded loads, and the
//! preference lists and fallbacks derived from it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use driftkv_causal::fasthash::FastMap;

use crate::id::{NodeId, PartitionId, vnode_hash};
use crate::{RingConfig, RingError};

/// Why a node is in a preference list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// One of the partition's N owners.
    Primary,
    /// Stands in for the down primary `for_node`; what it stores should be handed back to it.
    Fallback { for_node: NodeId },
}

/// One entry of a preference list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub node: NodeId,
    pub role: Role,
}

/// Partition ownership for one member set. Built once per membership change; a pure function
/// of the config and the member *set*.
///
/// Cloning is cheap (the tables are shared), and a thread builds a given ring once: nodes of one
/// simulated cluster, or one node seeing the same member set again, share the tables (see
/// [`Ring::new`]). A thousand-node ring's owner table is ~100 KB and its circle ~500 KB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    t: Arc<Tables>,
}

#[derive(Debug, PartialEq, Eq)]
struct Tables {
    config: RingConfig,
    /// Sorted and distinct: the canonical form of the member set.
    members: Vec<NodeId>,
    /// Vnode points on the hash circle, as (position, index into `members`), sorted. The index
    /// breaks ties between equal positions so that even a collision is ordered deterministically.
    points: Vec<(u64, u32)>,
    n_effective: usize,
    /// Each node's share, `ceil(partitions * n_effective / members)`.
    capacity: usize,
    /// Row `p` (`n_effective` entries from `p * n_effective`) is partition `p`'s owners in the
    /// order the walk chose them. One flat vector keeps `owners()` a slice without a `Vec` per
    /// partition.
    owners: Vec<NodeId>,
    /// Per member (by index into `members`), the partitions it owns, in order: asked on every
    /// tick by every node, answered without walking the table. Member `i`'s are
    /// `owned[owned_start[i]..owned_start[i + 1]]` (one vector, not one per member: a
    /// thousand-node cluster builds rings by the thousand while its members learn of each
    /// other).
    owned_start: Vec<u32>,
    owned: Vec<PartitionId>,
}

/// Members whose vnode positions a thread remembers at most (it starts over when full).
const POSITIONS_MAX: usize = 65_536;

/// Calls `f` with `node`'s `vnodes` positions on the circle (`vnode_hash` of each vnode, in
/// vnode order), hashed once per name: a large cluster's members learn of each other a few at
/// a time, and every ring then derived places the newcomers' points again.
fn with_positions<R>(node: &NodeId, vnodes: u32, f: impl FnOnce(&[u64]) -> R) -> R {
    let fresh = || {
        (0..vnodes)
            .map(|v| vnode_hash(node, v))
            .collect::<Vec<u64>>()
    };
    POSITIONS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((count, positions)) = cache.get(node)
            && *count == vnodes
        {
            return f(positions);
        }
        if cache.len() >= POSITIONS_MAX {
            cache.clear();
        }
        let positions = fresh();
        let answer = f(&positions);
        cache.insert(node.clone(), (vnodes, positions));
        answer
    })
}

/// How many recently built rings a thread keeps for reuse.
const RECENT_RINGS: usize = 4;

thread_local! {
    /// The rings this thread built last, newest first. A ring is a pure function of its config
    /// and members, so handing out the same tables again is invisible (but for time and
    /// memory). More than one: a node opens with a ring of what it remembers, then of the
    /// cluster it learns; a simulator builds each for a thousand nodes in turn.
    static RECENT: RefCell<Vec<Ring>> = const { RefCell::new(Vec::new()) };
    /// Each member's vnode positions by name, with the vnode count they are for (see
    /// [`with_positions`]).
    static POSITIONS: RefCell<FastMap<NodeId, (u32, Vec<u64>)>> = RefCell::new(FastMap::default());
}

impl Ring {
    /// Places every partition's owners. The order of `members` and duplicates in it do not
    /// matter. Errors on a bad config or no members; never panics.
    pub fn new(
        config: RingConfig,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Result<Ring, RingError> {
        Ring::build(config, members, true)
    }

    /// As [`Ring::new`], but from scratch: no earlier ring is reused, none is remembered. For
    /// tests that hold the reuse to the full build.
    #[doc(hidden)]
    pub fn new_from_scratch(
        config: RingConfig,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Result<Ring, RingError> {
        Ring::build(config, members, false)
    }

    fn build(
        config: RingConfig,
        members: impl IntoIterator<Item = NodeId>,
        reuse: bool,
    ) -> Result<Ring, RingError> {
        config.validate()?;
        let mut members: Vec<NodeId> = members.into_iter().collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return Err(RingError::NoMembers);
        }
        // Points store member indices as u32 to keep the circle compact; a cluster this large
        // is far outside what this design (one owner table rebuilt per change) is meant for.
        if u32::try_from(members.len()).is_err() {
            return Err(RingError::TooManyMembers {
                members: members.len(),
            });
        }
        let (cached, similar) = RECENT.with(|recent| {
            let mut recent = recent.borrow_mut();
            if !reuse {
                return (None, None);
            }
            // A hit moves to the front (least recently used goes first): a thousand nodes
            // booting each build a ring of themselves between uses of the cluster's ring.
            if let Some(at) = recent
                .iter()
                .position(|r| r.t.config == config && r.t.members == members)
            {
                let ring = recent.remove(at);
                recent.insert(0, ring.clone());
                return (Some(ring), None);
            }
            let similar = recent.iter().find(|r| r.t.config == config).cloned();
            (None, similar)
        });
        if let Some(ring) = cached {
            return Ok(ring);
        }
        let points = match similar {
            // Members come and go a few at a time: keep the circle of a ring built for a
            // similar set and add or drop only the changed members' points, a linear merge
            // instead of a sort of the whole circle (a thousand nodes learning of each other
            // one gossip at a time rebuild their rings thousands of times).
            Some(prev) => points_from(&prev.t, &members, config.vnodes_per_node),
            None => {
                let mut points: Vec<(u64, u32)> =
                    Vec::with_capacity(members.len() * config.vnodes_per_node as usize);
                for (index, node) in members.iter().enumerate() {
                    with_positions(node, config.vnodes_per_node, |positions| {
                        points.extend(positions.iter().map(|&p| (p, index as u32)));
                    });
                }
                points.sort_unstable();
                points
            }
        };

        let n_effective = config.n.min(members.len());
        let slots_count = config.partitions as usize * n_effective;
        let capacity = slots_count.div_ceil(members.len());

        let mut tables = Tables {
            config,
            members,
            points,
            n_effective,
            capacity,
            owners: Vec::with_capacity(slots_count),
            owned_start: Vec::new(),
            owned: Vec::new(),
        };
        tables.place_owners();
        let ring = Ring {
            t: Arc::new(tables),
        };
        if reuse {
            RECENT.with(|recent| {
                let mut recent = recent.borrow_mut();
                recent.truncate(RECENT_RINGS - 1);
                recent.insert(0, ring.clone());
            });
        }
        Ok(ring)
    }
}

/// The circle of `members` (sorted, distinct) derived from `prev`'s: the points of members in
/// both, renumbered, merged with fresh points of the new members. The same sorted points a
/// full build gives: renumbering keeps the order of kept members' indices, and a point is
/// `(position, index)`.
fn points_from(prev: &Tables, members: &[NodeId], vnodes: u32) -> Vec<(u64, u32)> {
    // Where each of `prev`'s members sits in `members`, if it is still there.
    let mut renumber: Vec<Option<u32>> = vec![None; prev.members.len()];
    let mut added: Vec<(u64, u32)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while j < members.len() {
        match prev.members.get(i).map(|old| old.cmp(&members[j])) {
            Some(std::cmp::Ordering::Less) => i += 1,
            Some(std::cmp::Ordering::Equal) => {
                renumber[i] = Some(j as u32);
                i += 1;
                j += 1;
            }
            _ => {
                with_positions(&members[j], vnodes, |positions| {
                    added.extend(positions.iter().map(|&p| (p, j as u32)));
                });
                j += 1;
            }
        }
    }
    added.sort_unstable();
    let kept = prev
        .points
        .iter()
        .filter_map(|&(position, index)| Some((position, renumber[index as usize]?)));
    let mut points = Vec::with_capacity(members.len() * vnodes as usize);
    let mut added = added.into_iter().peekable();
    for point in kept {
        while let Some(a) = added.next_if(|a| *a < point) {
            points.push(a);
        }
        points.push(point);
    }
    points.extend(added);
    points
}

impl Tables {
    /// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam): partitions in
    /// order `0..partitions`, each walking clockwise from its point and taking distinct nodes
    /// that still have room. Processing in a fixed order is what makes the greedy choice
    /// deterministic.
    ///
    /// Plain greedy can paint itself into a corner when members are few compared with n: with
    /// 3 members and n = 2, two nodes may fill up while partitions remain, and then every
    /// remaining partition needs a node over capacity (measured: 76 over with 1024
    /// partitions). So the walk also keeps the rest of the placement feasible. With `rounds`
    /// partitions left (this one included) and `residual_i` room on node i, the rest can be
    /// placed within capacity iff `sum_i min(residual_i, rounds) >= n * rounds` (each node
    /// takes at most one slot per partition). Taking a node whose residual is below `rounds`
    /// ("poor") spends one unit of the next round's slack; taking a "rich" one spends none.
    /// So poor nodes are taken only while slack lasts, rich ones always. The invariant gives
    /// slack >= n - rich, and at least that many poor nodes with room, so every row fills
    /// within capacity: no node ever exceeds `capacity`.
    fn place_owners(&mut self) {
        let partitions = self.config.partitions as usize;
        let mut load = vec![0usize; self.members.len()];
        // `room` is `sum_i min(residual_i, rounds)` for the current `rounds`, kept up to date as
        // rounds count down and residuals shrink, so each partition costs O(n), not O(members):
        // `count[r]` members have residual r, `at_least` of them have residual >= rounds.
        let mut count = vec![0usize; self.capacity + 1];
        count[self.capacity] = self.members.len();
        let mut rounds = partitions;
        let mut room = self.members.len() * self.capacity.min(rounds);
        let mut at_least = if self.capacity >= rounds {
            self.members.len()
        } else {
            0
        };
        let mut row: Vec<u32> = Vec::with_capacity(self.n_effective);
        // Member indices of `owners`, row by row, for the per-member index built at the end.
        let mut owner_index: Vec<u32> = Vec::with_capacity(self.owners.capacity());
        for p in 0..self.config.partitions {
            // Rounds after this partition: one fewer.
            room -= at_least;
            rounds -= 1;
            at_least += count.get(rounds).copied().unwrap_or(0);
            let rounds_after = rounds;
            debug_assert_eq!(
                room,
                load.iter()
                    .map(|&l| self.capacity.saturating_sub(l).min(rounds_after))
                    .sum::<usize>()
            );
            // Never negative by the invariant above; saturating keeps a bug from panicking.
            let mut poor_budget = room.saturating_sub(self.n_effective * rounds_after);
            row.clear();
            for index in self.walk(PartitionId(p)) {
                if row.len() == self.n_effective {
                    break;
                }
                let residual = self.capacity.saturating_sub(load[index as usize]);
                if residual == 0 || row.contains(&index) {
                    continue;
                }
                if residual > rounds_after {
                    row.push(index);
                } else if poor_budget > 0 {
                    poor_budget -= 1;
                    row.push(index);
                }
            }
            // Unreachable by the argument above; kept so that placement cannot fail even if
            // it were wrong: the remaining slots go to the next distinct nodes regardless of
            // load (the plain bounded-loads fallback).
            if row.len() < self.n_effective {
                for index in self.walk(PartitionId(p)) {
                    if row.len() == self.n_effective {
                        break;
                    }
                    if !row.contains(&index) {
                        row.push(index);
                    }
                }
            }
            for &index in &row {
                let residual = self.capacity.saturating_sub(load[index as usize]);
                load[index as usize] += 1;
                if residual > 0 {
                    count[residual] -= 1;
                    count[residual - 1] += 1;
                    if residual <= rounds {
                        room -= 1;
                    }
                    if residual == rounds {
                        at_least -= 1;
                    }
                }
                self.owners.push(self.members[index as usize].clone());
                owner_index.push(index);
            }
        }
        // Each member's partitions, in partition order: a counting sort of the rows by member
        // (a member's load is how many it owns).
        self.owned_start = Vec::with_capacity(load.len() + 1);
        let mut at = 0;
        self.owned_start.push(at);
        for &l in &load {
            at += l as u32;
            self.owned_start.push(at);
        }
        let mut next: Vec<u32> = self.owned_start[..load.len()].to_vec();
        self.owned = vec![PartitionId(0); owner_index.len()];
        for (slot, &index) in owner_index.iter().enumerate() {
            let fill = &mut next[index as usize];
            self.owned[*fill as usize] = PartitionId((slot / self.n_effective) as u32);
            *fill += 1;
        }
    }

    /// Member indices of the vnode points met walking clockwise once round the circle from
    /// partition `p`'s point (`p * 2^64 / partitions`), with repeats.
    fn walk(&self, p: PartitionId) -> impl Iterator<Item = u32> + '_ {
        let position = ((u128::from(p.0) << 64) / u128::from(self.config.partitions)) as u64;
        let start = self.points.partition_point(|&(point, _)| point < position);
        let (before, after) = self.points.split_at(start);
        after.iter().chain(before).map(|&(_, index)| index)
    }

    /// The walk from `p`'s point, each member once, in the order first met.
    fn walk_distinct(&self, p: PartitionId) -> impl Iterator<Item = &NodeId> + '_ {
        let mut seen = vec![false; self.members.len()];
        self.walk(p)
            .filter(move |&index| !std::mem::replace(&mut seen[index as usize], true))
            .map(|index| &self.members[index as usize])
    }
}

impl Ring {
    pub fn config(&self) -> &RingConfig {
        &self.t.config
    }

    pub fn partitions_count(&self) -> u32 {
        self.t.config.partitions
    }

    /// Every partition, in order.
    pub fn partition_ids(&self) -> impl Iterator<Item = PartitionId> + use<> {
        (0..self.t.config.partitions).map(PartitionId)
    }

    /// Owners per partition: `min(n, members)`, since one node never holds two replicas.
    pub fn n_effective(&self) -> usize {
        self.t.n_effective
    }

    /// The most partition-replicas a node takes while others still have room:
    /// `ceil(partitions * n_effective / members)`.
    pub fn capacity(&self) -> usize {
        self.t.capacity
    }

    /// The member set, sorted by name.
    pub fn members(&self) -> &[NodeId] {
        &self.t.members
    }

    pub fn is_member(&self, node: &NodeId) -> bool {
        self.t.members.binary_search(node).is_ok()
    }

    /// See [`RingConfig::partition_for_hash`].
    pub fn partition_for_hash(&self, hash: u64) -> PartitionId {
        self.t.config.partition_for_hash(hash)
    }

    /// See [`RingConfig::partition_for_key`].
    pub fn partition_for_key(&self, bucket: &[u8], key: &[u8]) -> PartitionId {
        self.t.config.partition_for_key(bucket, key)
    }

    /// Partition `p`'s `n_effective` primaries in walk order; empty for a partition this ring
    /// does not have (only possible with an id from a ring of another size).
    pub fn owners(&self, p: PartitionId) -> &[NodeId] {
        let begin = p.0 as usize * self.t.n_effective;
        self.t
            .owners
            .get(begin..begin + self.t.n_effective)
            .unwrap_or(&[])
    }

    /// The partitions `node` is a primary of, in order.
    pub fn partitions_of(&self, node: &NodeId) -> Vec<PartitionId> {
        self.owned_by(node).to_vec()
    }

    /// [`Ring::partitions_of`], borrowed.
    pub fn owned_by(&self, node: &NodeId) -> &[PartitionId] {
        match self.t.members.binary_search(node) {
            Ok(member) => {
                let (begin, end) = (self.t.owned_start[member], self.t.owned_start[member + 1]);
                &self.t.owned[begin as usize..end as usize]
            }
            Err(_) => &[],
        }
    }

    /// Partition-replicas owned per member (members owning none included, at 0).
    pub fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = self
            .t
            .members
            .iter()
            .map(|node| (node.clone(), 0))
            .collect();
        for node in &self.t.owners {
            // Owners are always members, so the entry exists.
            if let Some(count) = load.get_mut(node) {
                *count += 1;
            }
        }
        load
    }

    /// Largest load over mean load; 1.0 is perfectly even.
    pub fn load_spread(&self) -> f64 {
        let load_max = self.load().into_values().max().unwrap_or(0);
        let load_mean = self.t.owners.len() as f64 / self.t.members.len() as f64;
        load_max as f64 / load_mean
    }

    /// Where to send partition `p`'s replicas: the up primaries in order, then for each down
    /// primary (in order) the next up non-primary of the walk as its fallback. Shorter than
    /// `n_effective` when too few nodes are up; it has `min(n_effective, up members)` entries.
    pub fn preference_list(&self, p: PartitionId, is_up: impl Fn(&NodeId) -> bool) -> Vec<Target> {
        let primaries = self.owners(p);
        let mut list = Vec::with_capacity(primaries.len());
        let mut down = Vec::new();
        for node in primaries {
            if is_up(node) {
                list.push(Target {
                    node: node.clone(),
                    role: Role::Primary,
                });
            } else {
                down.push(node);
            }
        }
        if down.is_empty() {
            // The common case: no walk at all.
            return list;
        }
        let mut fallbacks = self
            .t
            .walk_distinct(p)
            .filter(|node| !primaries.contains(node) && is_up(node));
        for for_node in down {
            let Some(node) = fallbacks.next() else { break };
            list.push(Target {
                node: node.clone(),
                role: Role::Fallback {
                    for_node: for_node.clone(),
                },
            });
        }
        list
    }

    /// Every member that is not a primary of `p`, in the order fallbacks are chosen: the walk
    /// from `p`'s point. A hint held by a fallback is for a primary; this order tells a node
    /// where else a partition's writes may have landed.
    pub fn fallback_order(&self, p: PartitionId) -> Vec<NodeId> {
        let primaries = self.owners(p);
        if primaries.is_empty() {
            return Vec::new();
        }
        self.t
            .walk_distinct(p)
            .filter(|node| !primaries.contains(node))
            .cloned()
            .collect()
    }
}

/// How many (partition, owner) slots of `new` hold a node that was not an owner of that
/// partition in `old`: the replicas that must be copied over after a membership change.
/// Rings of different partition counts share no key ranges, so then every slot counts.
pub fn moved_partitions(old: &Ring, new: &Ring) -> usize {
    if old.partitions_count() != new.partitions_count() {
        return new.t.owners.len();
    }
    new.partition_ids()
        .map(|p| {
            let before = old.owners(p);
            new.owners(p)
                .iter()
                .filter(|node| !before.contains(node))
                .count()
        })
        .sum()
}
