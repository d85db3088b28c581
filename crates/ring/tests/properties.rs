//! Property tests of the ring: determinism from the member set, owner counts, the load bound,
//! and preference-list invariants over random configs, memberships and liveness.

use std::collections::BTreeSet;

use driftkv_ring::{NodeId, PartitionId, Ring, RingConfig, Role};
use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::test_runner::FileFailurePersistence;

/// Small configs keep each case fast while still covering partitions < members, n > members
/// and one vnode per node.
fn config_strategy() -> impl Strategy<Value = RingConfig> {
    (1u32..=300, 1usize..=5, 1u32..=48).prop_map(|(partitions, n, vnodes_per_node)| RingConfig {
        partitions,
        n,
        vnodes_per_node,
    })
}

/// Names drawn from a small alphabet so that duplicates occur.
fn members_strategy() -> impl Strategy<Value = Vec<NodeId>> {
    prop::collection::vec("[a-h]{1,3}", 1..24)
        .prop_map(|names| names.into_iter().map(NodeId::from).collect())
}

fn ring_strategy() -> impl Strategy<Value = Ring> {
    (config_strategy(), members_strategy())
        .prop_map(|(config, members)| Ring::new(config, members).unwrap())
}

proptest! {
    // Failing cases are kept beside this file (tests/properties.proptest-regressions): the
    // default looks for a lib.rs above the test file, which an integration test does not have.
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    /// The stack-gathered one-shot hash equals streaming the parts, on both sides of the
    /// stack buffer's size (this value places keys on disk: it must not depend on the path).
    #[test]
    fn hash_parts_equals_streaming_the_parts(
        seed in prop_oneof![Just(0u64), any::<u64>()],
        // Mostly short parts (each size a copy path of its own), some long ones.
        parts in prop::collection::vec(
            prop_oneof![
                3 => prop::collection::vec(any::<u8>(), 0..20),
                1 => prop::collection::vec(any::<u8>(), 0..120),
            ],
            0..6,
        ),
    ) {
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let mut streamed = xxhash_rust::xxh3::Xxh3::with_seed(seed);
        for part in &parts {
            streamed.update(part);
        }
        prop_assert_eq!(driftkv_ring::hash_parts(seed, &slices), streamed.digest());
    }

    /// The per-member index of owned partitions says what walking the owner table says, for
    /// every member and for a name that is not one.
    #[test]
    fn owned_partitions_match_the_owner_table(ring in ring_strategy()) {
        let outsider = NodeId::from("not-a-member");
        for node in ring.members().iter().chain([&outsider]) {
            let walked: Vec<PartitionId> = (0..ring.config().partitions)
                .map(PartitionId)
                .filter(|&p| ring.owners(p).contains(node))
                .collect();
            prop_assert_eq!(ring.owned_by(node), walked.as_slice());
        }
    }

    #[test]
    fn ring_depends_only_on_the_member_set(
        config in config_strategy(),
        (members, permuted) in members_strategy().prop_flat_map(|members| {
            // A permutation of the list with some of its names repeated.
            let doubled: Vec<NodeId> =
                members.iter().chain(members.iter().take(3)).cloned().collect();
            (Just(members), Just(doubled).prop_shuffle())
        }),
    ) {
        let ring = Ring::new(config.clone(), members).unwrap();
        prop_assert_eq!(&Ring::new(config, permuted).unwrap(), &ring);
    }

    /// A thread reuses the rings it built before, and the circles of similar ones (members added
    /// and dropped are merged in): whatever it built first, a ring equals one built from
    /// scratch.
    #[test]
    fn a_ring_derived_from_earlier_rings_equals_a_fresh_build(
        config in config_strategy(),
        history in prop::collection::vec(members_strategy(), 1..6),
    ) {
        let mut derived = Vec::new();
        for members in &history {
            derived.push(Ring::new(config.clone(), members.clone()).unwrap());
        }
        let fresh: Vec<Ring> = history
            .iter()
            .map(|m| Ring::new_from_scratch(config.clone(), m.clone()).unwrap())
            .collect();
        prop_assert_eq!(derived, fresh);
    }

    #[test]
    fn every_partition_has_n_effective_distinct_member_owners(ring in ring_strategy()) {
        prop_assert_eq!(ring.n_effective(), ring.config().n.min(ring.members().len()));
        for p in ring.partition_ids() {
            let owners = ring.owners(p);
            prop_assert_eq!(owners.len(), ring.n_effective());
            let distinct: BTreeSet<&NodeId> = owners.iter().collect();
            prop_assert_eq!(distinct.len(), owners.len());
            prop_assert!(owners.iter().all(|node| ring.is_member(node)));
        }
    }

    #[test]
    fn no_node_owns_more_than_ceil_of_the_mean(ring in ring_strategy()) {
        let slots_count = ring.partitions_count() as usize * ring.n_effective();
        let load_cap = slots_count.div_ceil(ring.members().len());
        let load = ring.load();
        prop_assert_eq!(load.values().sum::<usize>(), slots_count);
        prop_assert!(
            load.values().all(|&owned| owned <= load_cap),
            "load {:?} cap {}",
            load,
            load_cap
        );
    }

    #[test]
    fn preference_list_skips_down_nodes_and_puts_primaries_first(
        (ring, up) in ring_strategy().prop_flat_map(|ring| {
            let members = ring.members().to_vec();
            let count = members.len();
            (Just(ring), subsequence(members, 0..=count))
        }),
        p_seed in any::<u32>(),
    ) {
        let p = PartitionId(p_seed % ring.partitions_count());
        let up: BTreeSet<NodeId> = up.into_iter().collect();
        let list = ring.preference_list(p, |node| up.contains(node));
        let primaries = ring.owners(p);

        prop_assert_eq!(list.len(), ring.config().n.min(up.len()));
        let distinct: BTreeSet<&NodeId> = list.iter().map(|t| &t.node).collect();
        prop_assert_eq!(distinct.len(), list.len());
        prop_assert!(list.iter().all(|t| up.contains(&t.node)));

        let primaries_count = list.iter().take_while(|t| t.role == Role::Primary).count();
        prop_assert!(list[primaries_count..].iter().all(|t| t.role != Role::Primary));
        let listed_primaries: Vec<&NodeId> =
            list[..primaries_count].iter().map(|t| &t.node).collect();
        let up_primaries: Vec<&NodeId> =
            primaries.iter().filter(|node| up.contains(*node)).collect();
        prop_assert_eq!(listed_primaries, up_primaries);

        let mut stood_in_for = BTreeSet::new();
        for target in &list[primaries_count..] {
            let Role::Fallback { for_node } = &target.role else { unreachable!() };
            prop_assert!(primaries.contains(for_node));
            prop_assert!(!up.contains(for_node));
            prop_assert!(!primaries.contains(&target.node));
            prop_assert!(stood_in_for.insert(for_node.clone()), "two fallbacks for {}", for_node);
        }
    }

    #[test]
    fn fallback_order_is_the_non_primaries(ring in ring_strategy(), p_seed in any::<u32>()) {
        let p = PartitionId(p_seed % ring.partitions_count());
        let order = ring.fallback_order(p);
        let mut all: Vec<NodeId> = order.iter().chain(ring.owners(p)).cloned().collect();
        all.sort();
        prop_assert_eq!(all, ring.members());
    }

    #[test]
    fn partition_ids_are_always_in_range(
        config in config_strategy(),
        hash in any::<u64>(),
        bucket in prop::collection::vec(any::<u8>(), 0..16),
        key in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let ring = Ring::new(config, [NodeId::from("only")]).unwrap();
        prop_assert!(ring.partition_for_hash(hash).0 < ring.partitions_count());
        prop_assert!(ring.partition_for_key(&bucket, &key).0 < ring.partitions_count());
    }

    #[test]
    fn partitions_are_contiguous_hash_ranges(
        partitions in 1u32..=4096,
        a in any::<u64>(),
        b in any::<u64>(),
    ) {
        let config = RingConfig { partitions, n: 1, vnodes_per_node: 1 };
        let ring = Ring::new(config, [NodeId::from("only")]).unwrap();
        let (low, high) = (a.min(b), a.max(b));
        prop_assert!(ring.partition_for_hash(low) <= ring.partition_for_hash(high));
    }
}
