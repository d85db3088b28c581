//! Active anti-entropy: exchanges that compare hash trees with a peer and sync what differs.

use super::*;

/// The exchange this node started and is waiting on, and when to start the next.
#[derive(Debug, Default)]
pub(super) struct AaeState {
    pub(super) next_ms: u64,
    pub(super) cursor: usize,
    pub(super) next_xid: u64,
    pub(super) inflight: Option<AaeExchange>,
    /// An exchange that moved data is repeated at once with the same peer, until in sync.
    pub(super) again: Option<(PartitionId, NodeId)>,
    /// The last exchanges moved data.
    pub(super) streak: bool,
    /// A partition in which an exchange moved data, and its other replicas not yet compared
    /// with since: what one replica lacked, others may lack too, so the initiator goes round
    /// them all before walking on (or one replica's write would reach one peer per round of
    /// every partition).
    pub(super) spread: Option<(PartitionId, Vec<NodeId>)>,
    /// After a restart: walk exchanges still to run at tick pace instead of the interval's
    /// (`usize::MAX`: one walk over every partition, counted at its first step). A restarted
    /// node may have lost unsynced writes, and the hints of writes it was coordinating when it
    /// stopped; one quick walk finds what its replicas lack (and the round of a repaired
    /// partition's replicas spreads it) instead of one exchange per interval.
    pub(super) catch_up: Option<usize>,
    /// Exchanges until the next tree self-check.
    pub(super) until_check: u32,
    /// Client requests since the last decision to start an exchange or not.
    pub(super) requests: u64,
    /// Due exchanges put off in a row for client traffic.
    pub(super) deferred: u32,
    /// Every partition this node is a primary of has its tree: the background builder has
    /// nothing to look for until the ring changes or a tree is dropped.
    pub(super) trees_complete: bool,
}

#[derive(Debug)]
pub(super) struct AaeExchange {
    pub(super) xid: u64,
    pub(super) partition: PartitionId,
    pub(super) peer: NodeId,
    pub(super) deadline_ms: u64,
}

impl Node {
    /// A message of an anti-entropy exchange, this node's or a peer's.
    pub(super) fn on_exchange(&mut self, cx: &mut Step<'_>, from: NodeId, message: Message) {
        match message {
            Message::AaeRoot {
                xid,
                partition,
                root,
            } => self.aae_on_root(cx.now_ms, from, xid, PartitionId(partition), root, cx.out),
            Message::AaeRootDiffers { xid, partition } => {
                self.aae_on_root_differs(from, xid, PartitionId(partition), cx.out)
            }
            Message::AaeNotReady {
                xid,
                partition,
                building,
            } => self.aae_on_not_ready(cx.now_ms, from, xid, PartitionId(partition), building),
            Message::AaeMids {
                xid,
                partition,
                mids,
            } => self.aae_on_mids(from, xid, PartitionId(partition), mids, cx.out),
            Message::AaeLeaves {
                xid,
                partition,
                groups,
            } => self.aae_on_leaves(cx, from, xid, PartitionId(partition), groups),
            Message::AaeKeys {
                xid,
                partition,
                segments,
                entries,
            } => self.aae_on_keys(cx, from, xid, PartitionId(partition), segments, entries),
            Message::AaeSync {
                xid,
                partition,
                objects,
                want,
            } => self.aae_on_sync(cx, from, (xid, PartitionId(partition)), objects, want),
            Message::AaeObjects { partition, objects } => {
                self.aae_merge(cx.store, cx.now_ms, PartitionId(partition), objects);
            }
            other => debug_assert!(false, "not an exchange message: {other:?}"),
        }
    }

    /// The peer cannot exchange this partition now: its tree is being built (try the same
    /// again soon), or it is exchanging it with this node already (go on with the next).
    fn aae_on_not_ready(
        &mut self,
        now_ms: u64,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        building: bool,
    ) {
        if self.aae_is_current(&from, xid, partition) {
            self.aae.inflight = None;
            if building {
                self.aae.again = Some((partition, from));
            } else {
                self.aae.next_ms = now_ms;
            }
        }
    }

    /// Starts an exchange when one is due: the next partition this node is a primary of, with
    /// the next other primary that is up.
    pub(super) fn aae_tick(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        if let Some(x) = &self.aae.inflight
            && x.deadline_ms <= now_ms
        {
            self.stats.aae_timeouts += 1;
            self.aae.inflight = None;
        }
        if !self.cfg.aae.enabled || self.aae.inflight.is_some() || now_ms < self.aae.next_ms {
            return;
        }
        self.aae.next_ms = now_ms + self.cfg.aae.interval_ms;
        let busy = self.cfg.aae.busy_requests > 0
            && std::mem::take(&mut self.aae.requests) > self.cfg.aae.busy_requests;
        if busy && self.aae.deferred < self.cfg.aae.defer_max {
            self.aae.deferred += 1;
            self.stats.aae_deferred += 1;
            return;
        }
        self.aae.deferred = 0;
        if let Some((partition, peer)) = self.aae.again.take()
            && self.is_up(&peer)
        {
            return self.aae_start(now_ms, partition, peer, out);
        }
        if self.aae_spread_on(now_ms, out) {
            return;
        }
        let n = self.cfg.ring.n;
        let mine: Vec<PartitionId> = self.ring().partitions_of(&self.cfg.id);
        if mine.is_empty() {
            return;
        }
        for step in 0..mine.len() {
            let partition = mine[(self.aae.cursor + step) % mine.len()];
            let peers: Vec<NodeId> = self
                .ring()
                .owners(partition)
                .iter()
                .take(n)
                .filter(|o| **o != self.cfg.id && self.is_up(o))
                .cloned()
                .collect();
            if peers.is_empty() {
                continue;
            }
            let peer = peers[(self.aae.cursor / mine.len()) % peers.len()].clone();
            self.aae.cursor = self.aae.cursor + step + 1;
            if let Some(left) = &mut self.aae.catch_up {
                if *left == usize::MAX {
                    *left = mine.len();
                }
                *left -= 1;
                self.aae.next_ms = now_ms; // the next step at the next tick
                if *left == 0 {
                    self.aae.catch_up = None;
                }
            }
            self.aae_check_tree(partition);
            return self.aae_start(now_ms, partition, peer, out);
        }
    }

    /// Starts the exchange with the next replica a partition's data is spread to, if any is
    /// left (and still a replica, and up).
    pub(super) fn aae_spread_on(&mut self, now_ms: u64, out: &mut Vec<Output>) -> bool {
        let n = self.cfg.ring.n;
        while let Some((partition, peers)) = &mut self.aae.spread {
            let partition = *partition;
            let Some(peer) = peers.pop() else {
                self.aae.spread = None;
                break;
            };
            // Still replicas of it both (the ring may have changed since), and the peer up.
            let owners = self.ring().owners(partition);
            let replicas = &owners[..n.min(owners.len())];
            if replicas.contains(&self.cfg.id) && replicas.contains(&peer) && self.is_up(&peer) {
                self.aae_start(now_ms, partition, peer, out);
                return true;
            }
        }
        false
    }

    pub(super) fn aae_start(
        &mut self,
        now_ms: u64,
        partition: PartitionId,
        peer: NodeId,
        out: &mut Vec<Output>,
    ) {
        let root = match self.tree(partition) {
            Ok(tree) => tree.root(),
            Err(()) => {
                // Built over the next ticks; this exchange starts at the first tick after.
                self.begin_tree_build(partition);
                self.aae.again = Some((partition, peer));
                self.aae.next_ms = now_ms;
                return;
            }
        };
        self.aae.next_xid += 1;
        let xid = self.aae.next_xid;
        self.aae.inflight = Some(AaeExchange {
            xid,
            partition,
            peer: peer.clone(),
            deadline_ms: now_ms + self.cfg.aae.timeout_ms,
        });
        out.push(Output::Send {
            to: peer,
            message: Message::AaeRoot {
                xid,
                partition: partition.0,
                root,
            },
        });
    }

    /// Every so often, rebuilds a built tree from storage and compares: a tree that drifted
    /// from its partition (a bug, a storage fault) is replaced, and counted.
    pub(super) fn aae_check_tree(&mut self, partition: PartitionId) {
        if self.aae.until_check > 0 {
            self.aae.until_check -= 1;
            return;
        }
        self.aae.until_check = 16;
        if self.trees.contains_key(&partition) {
            self.begin_tree_build(partition);
        }
    }

    /// Equal roots: in sync, answered with no leaves. Else the initiator sends its middles.
    pub(super) fn aae_on_root(
        &mut self,
        now_ms: u64,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        root: Hash64,
        out: &mut Vec<Output>,
    ) {
        // Both replicas started this very exchange against each other: the one with the
        // smaller name goes on as initiator, the other drops its own and serves (or the two
        // would move every differing object twice).
        if let Some(mine) = &self.aae.inflight
            && mine.partition == partition
            && mine.peer == from
        {
            if self.cfg.id < from {
                let message = Message::AaeNotReady {
                    xid,
                    partition: partition.0,
                    building: false,
                };
                return out.push(Output::Send { to: from, message });
            }
            // Go on at once with the next partition but one: out of step with the peer's
            // walk, or two replicas walking alike collide again and again.
            self.aae.inflight = None;
            self.aae.next_ms = now_ms;
            self.aae.cursor += 1;
        }
        let Ok(tree) = self.tree(partition) else {
            // Not built yet (after a restart): build it, and say so rather than keep the
            // initiator waiting.
            self.begin_tree_build(partition);
            let message = Message::AaeNotReady {
                xid,
                partition: partition.0,
                building: true,
            };
            return out.push(Output::Send { to: from, message });
        };
        let message = if tree.root() == root {
            Message::AaeLeaves {
                xid,
                partition: partition.0,
                groups: Vec::new(),
            }
        } else {
            Message::AaeRootDiffers {
                xid,
                partition: partition.0,
            }
        };
        out.push(Output::Send { to: from, message });
    }

    pub(super) fn aae_on_root_differs(
        &mut self,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        out: &mut Vec<Output>,
    ) {
        if !self.aae_is_current(&from, xid, partition) {
            return;
        }
        let Ok(tree) = self.tree(partition) else {
            return;
        };
        let mids = tree.mids();
        out.push(Output::Send {
            to: from,
            message: Message::AaeMids {
                xid,
                partition: partition.0,
                mids,
            },
        });
    }

    pub(super) fn aae_on_mids(
        &mut self,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        mids: Vec<Hash64>,
        out: &mut Vec<Output>,
    ) {
        let Ok(tree) = self.tree(partition) else {
            return;
        };
        let groups = tree.leaves_under_differing(&mids);
        out.push(Output::Send {
            to: from,
            message: Message::AaeLeaves {
                xid,
                partition: partition.0,
                groups,
            },
        });
    }

    pub(super) fn aae_is_current(&self, from: &NodeId, xid: u64, partition: PartitionId) -> bool {
        self.aae
            .inflight
            .as_ref()
            .is_some_and(|x| x.xid == xid && x.peer == *from && x.partition == partition)
    }

    pub(super) fn aae_on_leaves(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        groups: Vec<(u16, Vec<Hash64>)>,
    ) {
        let (store, now_ms, out) = (&mut *cx.store, cx.now_ms, &mut *cx.out);
        if !self.aae_is_current(&from, xid, partition) {
            return;
        }
        let Ok(tree) = self.tree(partition) else {
            return;
        };
        let mut segments = tree.differing_segments(&groups);
        if segments.is_empty() {
            self.stats.aae_exchanges += 1;
            self.stats.aae_in_sync += 1;
            self.aae.inflight = None;
            // A partition just repaired is confirmed: go on to the partition's other replicas
            // now (a root each, where nothing differs), then at the next tick to the next
            // partition while there is repair work about (a replica refilling, a write that
            // reached few replicas), else keep the pace.
            if std::mem::take(&mut self.aae.streak) {
                self.aae.next_ms = 0;
            }
            self.aae_spread_on(now_ms, out);
            return;
        }
        segments.truncate(self.cfg.aae.segments_per_exchange_max);
        let mut entries = Vec::new();
        for &segment in &segments {
            match self.segment_entries(store, partition, segment) {
                Ok(list) => entries.extend(list.into_iter().map(|(k, h, _)| (k, Hash64(h)))),
                Err(_) => return,
            }
        }
        self.stats.aae_keys_compared += entries.len() as u64;
        out.push(Output::Send {
            to: from,
            message: Message::AaeKeys {
                xid,
                partition: partition.0,
                segments,
                entries,
            },
        });
    }

    pub(super) fn aae_on_keys(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        segments: Vec<u16>,
        entries: Vec<(Key, Hash64)>,
    ) {
        let (store, out) = (&mut *cx.store, &mut *cx.out);
        let theirs: BTreeMap<Key, u64> = entries.into_iter().map(|(k, h)| (k, h.0)).collect();
        let mut objects = Vec::new();
        let mut want = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut bytes = 0u64;
        let max = self.cfg.aae.objects_per_message_max;
        for segment in segments {
            let Ok(mine) = self.segment_entries(store, partition, segment) else {
                return;
            };
            for (key, hash, raw) in mine {
                // Different (or missing) there: send ours. Where the initiator holds the key
                // too, it merges and sends back only what ours lacked.
                if theirs.get(&key) != Some(&hash)
                    && objects.len() < max
                    && let Ok(object) = driftkv_wire::decode_object(&raw)
                {
                    bytes += raw.len() as u64;
                    objects.push((key.clone(), object));
                }
                seen.insert(key);
            }
        }
        for key in theirs.into_keys() {
            if !seen.contains(&key) && want.len() < max {
                want.push(key);
            }
        }
        self.stats.aae_keys_compared += seen.len() as u64;
        self.stats.aae_bytes_sent += bytes;
        out.push(Output::Send {
            to: from,
            message: Message::AaeSync {
                xid,
                partition: partition.0,
                objects,
                want,
            },
        });
    }

    pub(super) fn aae_on_sync(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        (xid, partition): (u64, PartitionId),
        objects: Vec<(Key, Object)>,
        want: Vec<Key>,
    ) {
        let (store, now_ms, out) = (&mut *cx.store, cx.now_ms, &mut *cx.out);
        if !self.aae_is_current(&from, xid, partition) {
            return;
        }
        // Keys the peer lacks: our copies. Keys both hold: merge the peer's copy in, and send
        // the merged state back unless the peer's copy already was it (theirs covered ours).
        let mut back = Vec::new();
        for key in want {
            if let Ok(Some(object)) = self.load(store, partition, &key) {
                back.push((key, object));
            }
        }
        for (key, theirs) in objects {
            let Ok(changed) = self.merge_into_store(store, now_ms, partition, &key, &theirs) else {
                continue;
            };
            if changed {
                self.stats.aae_keys_repaired += 1;
            }
            if let Ok(Some(after)) = self.load(store, partition, &key)
                && after != theirs
            {
                back.push((key, after));
            }
        }
        let bytes: u64 = back
            .iter()
            .map(|(_, o)| driftkv_wire::encode_object(o).len() as u64)
            .sum();
        self.stats.aae_exchanges += 1;
        self.stats.aae_bytes_sent += bytes;
        self.aae.inflight = None;
        // Data moved: go again with the same peer at the next tick until the partition is in
        // sync (an exchange handles a bounded number of segments and objects), then with the
        // partition's other replicas.
        self.aae.again = Some((partition, from.clone()));
        self.aae.streak = true;
        self.aae.next_ms = now_ms;
        if self
            .aae
            .spread
            .as_ref()
            .is_none_or(|(p, _)| *p != partition)
        {
            let n = self.cfg.ring.n;
            let mut others: Vec<NodeId> = self
                .ring()
                .owners(partition)
                .iter()
                .take(n)
                .filter(|o| **o != self.cfg.id && **o != from)
                .cloned()
                .collect();
            others.reverse(); // visited in ring order
            self.aae.spread = Some((partition, others));
        }
        if !back.is_empty() {
            out.push(Output::Send {
                to: from,
                message: Message::AaeObjects {
                    partition: partition.0,
                    objects: back,
                },
            });
        }
    }

    pub(super) fn aae_merge(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        partition: PartitionId,
        objects: Vec<(Key, Object)>,
    ) {
        for (key, object) in objects {
            if let Ok(true) = self.merge_into_store(store, now_ms, partition, &key, &object) {
                self.stats.aae_keys_repaired += 1;
            }
        }
    }
}
