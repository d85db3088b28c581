//! Tombstone collection: deletes forgotten once every primary holds the same tombstone.

use super::*;

/// How often the tombstone sweep walks on to its next batch.
const SWEEP_INTERVAL_MS: u64 = 1_000;

/// Tombstone collections in flight at once, at most.
const COLLECTS_IN_FLIGHT_MAX: usize = 64;

/// Where the tombstone sweep and the partition-transfer scan are.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    pub(super) next_ms: u64,
    pub(super) partition: u32,
    pub(super) after: Option<Vec<u8>>,
    /// Partitions holding records this node does not own, as of the last scan.
    pub(super) foreign: usize,
    pub(super) next_transfer_ms: u64,
}

impl Node {
    /// Another primary's copy of a tombstone this node would collect: collectable once every
    /// primary holds exactly it.
    pub(super) fn on_collect_reply(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        req: ReqId,
        object: Option<Object>,
    ) {
        let Some(Pending::Collect(c)) = self.pending.get_mut(&req) else {
            return;
        };
        if object.as_ref() != Some(&c.object) {
            // That replica holds something else: not collectable now.
            self.pending.remove(&req);
            return;
        }
        c.awaiting.retain(|n| *n != from);
        if c.awaiting.is_empty() {
            let Some(Pending::Collect(c)) = self.pending.remove(&req) else {
                unreachable!("looked at above")
            };
            self.collect(cx.store, c, cx.out);
        }
    }

    /// A collecting primary tells this one to forget a tombstone every primary holds.
    pub(super) fn on_purge(&mut self, store: &mut dyn Store, key: &Key, object: &Object) {
        let partition = self.partition_of(key);
        if let Ok(Some(local)) = self.load(store, partition, key)
            && local == *object
            && self.remove(store, partition, key).is_ok()
        {
            self.stats.tombstones_collected += 1;
        }
    }

    /// Walks a bounded batch of records per tick. A tombstone past its grace, in a partition
    /// whose first primary is this node, is checked with the other primaries and collected
    /// once all of them hold exactly it.
    pub(super) fn sweep_tick(&mut self, store: &mut dyn Store, now_ms: u64, out: &mut Vec<Output>) {
        if now_ms < self.sweep.next_ms {
            return;
        }
        self.sweep.next_ms = now_ms + SWEEP_INTERVAL_MS;
        // The next partition whose first primary is this node (others sweep theirs).
        let partitions = self.cfg.ring.partitions;
        let leads =
            |node: &Node, p: PartitionId| node.ring().owners(p).first() == Some(&node.cfg.id);
        let mut partition = PartitionId(self.sweep.partition % partitions);
        for _ in 0..partitions {
            if leads(self, partition) {
                break;
            }
            self.next_sweep_partition();
            partition = PartitionId(self.sweep.partition % partitions);
        }
        if !leads(self, partition) {
            return;
        }
        let primaries = self.primaries(partition);
        let others: Vec<NodeId> = primaries
            .iter()
            .filter(|p| **p != self.cfg.id)
            .cloned()
            .collect();
        // Every primary must confirm a collection: with one down, the batch is only walked.
        let checks = !others.iter().any(|p| !self.is_up(p));
        let now = driftkv_causal::Timestamp::new(now_ms, 0);
        let grace_ms = self.cfg.tombstone_grace_ms;
        let collectable = |object: &Object| match object {
            Object::Register(reg) => reg.is_collectable_tombstone(now, grace_ms),
            _ => false,
        };
        let room = COLLECTS_IN_FLIGHT_MAX.saturating_sub(self.pending.count_of(COLLECT));
        // The batch's records are lent, not copied: only the tombstones found are kept.
        let mut walked = 0;
        let mut last = Vec::new();
        let mut found: Vec<(Key, Object)> = Vec::new();
        let lent: &dyn Store = store;
        let scanned = lent.scan_with(
            &keys::partition_prefix(partition),
            self.sweep.after.as_deref(),
            self.cfg.sweep_batch_max,
            &mut |raw_key, raw| {
                walked += 1;
                last.clear();
                last.extend_from_slice(raw_key);
                if !checks || found.len() == room {
                    return;
                }
                let Some((_, key)) = keys::parse_data_key(raw_key) else {
                    return;
                };
                // The cached copy when there is one (it is the record, decoded), else the record.
                let object = match self.cached(lent, partition, &key) {
                    Some(cached) if !collectable(&cached.object) => return,
                    Some(cached) => cached.object.clone(),
                    None => match driftkv_wire::decode_object(raw) {
                        Ok(object) if collectable(&object) => object,
                        _ => return,
                    },
                };
                found.push((key, object));
            },
        );
        if scanned.is_err() {
            self.stats.storage_errors += 1;
            return;
        }
        if walked == self.cfg.sweep_batch_max && walked > 0 {
            self.sweep.after = Some(last);
        } else {
            self.next_sweep_partition();
        }
        for (key, object) in found {
            if others.is_empty() {
                self.collect(
                    store,
                    Collect {
                        key,
                        partition,
                        object,
                        awaiting: Vec::new(),
                        deadline_ms: now_ms,
                    },
                    out,
                );
                continue;
            }
            let req = self.new_req();
            for to in &others {
                out.push(Output::Send {
                    to: to.clone(),
                    message: Message::ReplicaRead {
                        req,
                        key: key.clone(),
                        kind: ObjectKind::Register,
                    },
                });
            }
            self.pending.insert(
                req,
                Pending::Collect(Collect {
                    key,
                    partition,
                    object,
                    awaiting: others.clone(),
                    deadline_ms: now_ms + self.cfg.request_timeout_ms,
                }),
            );
        }
    }

    pub(super) fn next_sweep_partition(&mut self) {
        self.sweep.partition = (self.sweep.partition + 1) % self.cfg.ring.partitions;
        self.sweep.after = None;
    }

    /// Every primary holds the tombstone: delete it here and ask them to do the same.
    pub(super) fn collect(&mut self, store: &mut dyn Store, c: Collect, out: &mut Vec<Output>) {
        match self.load(store, c.partition, &c.key) {
            Ok(Some(local)) if local == c.object => {}
            _ => return, // changed meanwhile
        }
        if self.remove(store, c.partition, &c.key).is_err() {
            return;
        }
        self.stats.tombstones_collected += 1;
        for to in self.primaries(c.partition) {
            if to != self.cfg.id {
                out.push(Output::Send {
                    to,
                    message: Message::Purge {
                        key: c.key.clone(),
                        object: c.object.clone(),
                    },
                });
            }
        }
    }
}
