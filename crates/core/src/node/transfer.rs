//! Partition transfer: records of partitions this node no longer owns handed to their owners,
//! and leaving the cluster.

use super::*;

/// How often the node looks for records of partitions it no longer owns (between batches of
/// a transfer, the next goes as soon as the owners confirm).
const TRANSFER_SCAN_INTERVAL_MS: u64 = 500;

/// Whether `object` holds a write coordinated by `actor`.
pub(super) fn mentions(object: &Object, actor: &Actor) -> bool {
    match object {
        Object::Register(r) => r.context().get(actor) > 0,
        Object::Counter(c) => c.contributions().any(|(a, _)| a == actor),
        Object::Set(s) => s.context().get(actor) > 0,
        Object::Map(m) => m.context().get(actor) > 0,
    }
}

impl Node {
    /// Records of a partition this node now owns, handed over by their former holder: merged
    /// in, and confirmed once durable (the sender deletes its copies on the confirmation).
    pub(super) fn on_transfer(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        xid: u64,
        partition: PartitionId,
        objects: Vec<(Key, Object)>,
    ) {
        let mut ok = true;
        for (key, object) in objects {
            ok &= self
                .merge_into_store(cx.store, cx.now_ms, partition, &key, &object)
                .is_ok();
        }
        let receipt = Output::Send {
            to: from,
            message: Message::TransferAck { xid, ok },
        };
        cx.out.push(if ok { receipt.durable() } else { receipt });
    }

    /// An owner's receipt for a transfer: once every owner confirmed, the records go here.
    pub(super) fn on_transfer_ack(
        &mut self,
        store: &mut dyn Store,
        from: NodeId,
        xid: u64,
        ok: bool,
    ) {
        let Some(Pending::Transfer(t)) = self.pending.get_mut(&xid) else {
            return;
        };
        if !ok {
            self.pending.remove(&xid);
            return;
        }
        t.awaiting.retain(|n| *n != from);
        if t.awaiting.is_empty() {
            let Some(Pending::Transfer(t)) = self.pending.remove(&xid) else {
                unreachable!("looked at above")
            };
            self.finish_transfer(store, t);
        }
    }

    /// The first partition from `from` on of which the store holds a record.
    pub(super) fn next_held_partition(
        &mut self,
        store: &dyn Store,
        from: PartitionId,
    ) -> Option<PartitionId> {
        // Every record of `from` and beyond sorts strictly after the bare prefix of `from` (a
        // data key is longer than its partition's prefix); every record before it, below.
        match store.scan(&[keys::DATA], Some(&keys::partition_prefix(from)), 1) {
            Ok(batch) => batch.first().and_then(|(raw, _)| {
                let id: [u8; 4] = raw.get(1..5)?.try_into().ok()?;
                Some(PartitionId(u32::from_be_bytes(id)))
            }),
            Err(_) => {
                self.stats.storage_errors += 1;
                None
            }
        }
    }

    /// Finds a partition this node holds records of but no longer owns (the ring changed: a
    /// node joined, or this one is leaving) and sends a batch of them to its owners; deletes
    /// them once every owner confirmed. One batch in flight at a time.
    pub(super) fn transfer_tick(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        if now_ms < self.sweep.next_transfer_ms || self.pending.count_of(TRANSFER) > 0 {
            return;
        }
        self.sweep.next_transfer_ms = now_ms + TRANSFER_SCAN_INTERVAL_MS;
        let mut foreign = 0;
        let mut chosen: Option<(PartitionId, Vec<NodeId>)> = None;
        // Only the partitions this node holds records of, found by leaping from each to the
        // next: a node of a large cluster holds a few of the ring's many partitions.
        // A partition this node owns is never handed over: it is stepped past without asking
        // the store (a node of a small cluster owns most partitions).
        let mut from = 0;
        while from < self.cfg.ring.partitions {
            if self.is_primary_of(PartitionId(from)) {
                from += 1;
                continue;
            }
            let Some(partition) = self
                .next_held_partition(store, PartitionId(from))
                .filter(|p| p.0 < self.cfg.ring.partitions)
            else {
                break;
            };
            from = partition.0 + 1;
            if self.is_primary_of(partition) {
                continue;
            }
            let owners = self.primaries(partition);
            foreign += 1;
            if chosen.is_none() && owners.iter().all(|o| self.is_up(o)) && !owners.is_empty() {
                chosen = Some((partition, owners));
            }
        }
        self.sweep.foreign = foreign;
        let Some((partition, owners)) = chosen else {
            return;
        };
        let batch = match store.scan(
            &keys::partition_prefix(partition),
            None,
            self.cfg.sweep_batch_max,
        ) {
            Ok(batch) => batch,
            Err(_) => return,
        };
        let objects: Vec<(Key, Object)> = batch
            .iter()
            .filter_map(|(raw_key, raw)| {
                let (_, key) = keys::parse_data_key(raw_key)?;
                Some((key, driftkv_wire::decode_object(raw).ok()?))
            })
            .collect();
        if objects.is_empty() {
            return;
        }
        let xid = self.new_req();
        for to in &owners {
            out.push(Output::Send {
                to: to.clone(),
                message: Message::Transfer {
                    xid,
                    partition: partition.0,
                    objects: objects.clone(),
                },
            });
        }
        self.pending.insert(
            xid,
            Pending::Transfer(Transfer {
                partition,
                objects,
                awaiting: owners,
                deadline_ms: now_ms + self.cfg.request_timeout_ms * SLOW_DEADLINE_TIMEOUTS,
            }),
        );
    }

    pub(super) fn finish_transfer(&mut self, store: &mut dyn Store, t: Transfer) {
        // The next batch goes at the next tick: a leave or join moves data as fast as the
        // owners confirm it.
        self.sweep.next_transfer_ms = 0;
        // What the owners confirmed and this node still holds as sent (a write that arrived
        // meanwhile stays for the next batch), with whether it holds this node's own writes.
        let mut handed: Vec<(Key, bool)> = Vec::with_capacity(t.objects.len());
        for (key, sent) in t.objects {
            if let Ok(Some(local)) = self.load(store, t.partition, &key)
                && local == sent
            {
                handed.push((key, mentions(&sent, &self.actor)));
            }
        }
        // The new identity is stored before a record of the old one's writes goes; if it
        // cannot be, the records stay and the next batch hands them over again.
        if handed.iter().any(|(_, own)| *own) && !self.renew_actor(store) {
            return;
        }
        for (key, _) in handed {
            if self.remove(store, t.partition, &key).is_ok() {
                self.stats.keys_transferred += 1;
            }
        }
    }

    /// This node is about to delete records holding writes it coordinated (a fallback handing
    /// its copies over). Its next write to one of those keys would start from an empty copy and
    /// issue the same dots (or counter totals) again, shadowing the first ones wherever they
    /// were seen: so later writes go out under a new incarnation of its identity. The record
    /// is the one the shell reads at start (`meta/incarnation`, 4 bytes big-endian).
    pub(super) fn renew_actor(&mut self, store: &mut dyn Store) -> bool {
        let next = Actor::incarnation_from(self.cfg.incarnation.wrapping_add(1));
        if store
            .put(&keys::meta_key("incarnation"), &next.to_be_bytes())
            .is_err()
        {
            self.stats.storage_errors += 1;
            return false;
        }
        self.cfg.incarnation = next;
        self.actor = Actor::new(self.cfg.id.as_str(), next);
        self.stats.actor_renewals += 1;
        true
    }

    /// Partitions holding records this node no longer owns, as of the last scan.
    pub fn partitions_to_transfer(&self) -> usize {
        self.sweep.foreign
    }

    /// Announces that this node leaves: the ring no longer counts it, so it transfers every
    /// partition to the new owners. See [`Node::drained`]. The decision is stored (and synced)
    /// before this returns, so a node restarted in the middle of leaving goes on leaving.
    pub fn leave(&mut self, store: &mut dyn Store) -> Result<(), String> {
        self.membership.set_leaving();
        let change = Change {
            members: true,
            states: true,
            persist: true,
        };
        self.apply_membership(change);
        self.save_membership(store, change);
        store.sync().map_err(|e| {
            self.stats.storage_errors += 1;
            e.to_string()
        })
    }

    /// `driftkv remove ID`: takes a down member out of the ring for good
    /// ([`crate::membership::Membership::remove`]). Its partitions go to the others, which
    /// anti-entropy refills; the decision is stored and synced before this returns, and gossip
    /// carries it to every member.
    pub fn remove_member(
        &mut self,
        store: &mut dyn Store,
        id: &NodeId,
    ) -> Result<(), crate::membership::RemoveError> {
        let change = self.membership.remove(id)?;
        if change == Change::default() {
            return Ok(());
        }
        self.apply_membership(change);
        self.save_membership(store, change);
        store.sync().map_err(|e| {
            self.stats.storage_errors += 1;
            crate::membership::RemoveError::Storage(format!(
                "{id} is removed, but the decision could not be synced ({e}): gossip carries it, and this node forgets it if it restarts"
            ))
        })
    }

    /// Whether `id` was removed from the cluster (`driftkv remove`): not shown to people.
    pub fn removed(&self, id: &NodeId) -> bool {
        self.membership.removed(id)
    }

    pub fn is_leaving(&self) -> bool {
        self.membership.state(&self.cfg.id) == Some(MemberState::Leaving)
    }

    /// A leaving node is done when it holds no data and no hints.
    pub fn drained(&self, store: &dyn Store) -> bool {
        self.is_leaving()
            && self.hints_pending() == 0
            && store
                .scan(&[keys::DATA], None, 1)
                .map(|b| b.is_empty())
                .unwrap_or(false)
    }
}
