//! Dispatch: every peer message and tick routed to the part of the node it is for.

use super::*;

impl Node {
    pub(super) fn on_message(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        from: NodeId,
        message: Message,
        out: &mut Vec<Output>,
    ) {
        match message {
            Message::Forward { req, request } => {
                if !self.first_delivery_of_forward(&from, req, now_ms) {
                    self.stats.duplicate_forwards += 1;
                    return;
                }
                self.on_request(
                    store,
                    now_ms,
                    Waiter::Remote { node: from, req },
                    request,
                    true,
                    out,
                )
            }
            Message::ForwardReply { req, reply } => {
                if let Some(Pending::Forwarded { client, .. }) = self.pending.remove(&req) {
                    out.push(Output::Reply { client, reply });
                }
            }
            Message::ReplicaWrite {
                req,
                key,
                object,
                hint,
            } => {
                let partition = self.partition_of(&key);
                let ok = self
                    .merge_into_store(store, now_ms, partition, &key, &object)
                    .is_ok();
                if let (true, Some(primary)) = (ok, &hint) {
                    self.store_hint(store, now_ms, primary, partition, &key, &object);
                }
                let ack = Output::Send {
                    to: from,
                    message: Message::ReplicaWriteAck { req, ok },
                };
                out.push(if ok { ack.durable() } else { ack });
            }
            Message::ReplicaWriteAck { req, ok } => self.on_write_ack(store, from, req, ok, out),
            Message::AaeRoot {
                xid,
                partition,
                root,
            } => self.aae_on_root(now_ms, from, xid, PartitionId(partition), root, out),
            Message::AaeRootDiffers { xid, partition } => {
                self.aae_on_root_differs(from, xid, PartitionId(partition), out)
            }
            Message::AaeNotReady {
                xid,
                partition,
                building,
            } => {
                let partition = PartitionId(partition);
                if self.aae_is_current(&from, xid, partition) {
                    self.aae.inflight = None;
                    if building {
                        self.aae.again = Some((partition, from));
                    } else {
                        // The peer is exchanging this partition with us already: go on with
                        // the next one at once.
                        self.aae.next_ms = now_ms;
                    }
                }
            }
            Message::AaeMids {
                xid,
                partition,
                mids,
            } => self.aae_on_mids(from, xid, PartitionId(partition), mids, out),
            Message::AaeLeaves {
                xid,
                partition,
                groups,
            } => {
                let partition = PartitionId(partition);
                self.aae_on_leaves(store, now_ms, from, xid, partition, groups, out)
            }
            Message::AaeKeys {
                xid,
                partition,
                segments,
                entries,
            } => self.aae_on_keys(
                store,
                from,
                xid,
                PartitionId(partition),
                segments,
                entries,
                out,
            ),
            Message::AaeSync {
                xid,
                partition,
                objects,
                want,
            } => self.aae_on_sync(
                store,
                now_ms,
                from,
                xid,
                PartitionId(partition),
                objects,
                want,
                out,
            ),
            Message::AaeObjects { partition, objects } => {
                self.aae_merge(store, now_ms, PartitionId(partition), objects);
            }
            Message::Gossip { members } => {
                let (change, answer) = self.membership.on_gossip(&from, &members, now_ms);
                self.apply_membership(change);
                self.note_membership(change);
                if let Some(message) = answer {
                    out.push(Output::Send { to: from, message });
                }
            }
            Message::ReplicaRead { req, key, .. } => {
                let partition = self.partition_of(&key);
                // An unreadable record answers as missing: the coordinator repairs it.
                let object = self.load(store, partition, &key).unwrap_or(None);
                out.push(Output::Send {
                    to: from,
                    message: Message::ReplicaReadReply { req, object },
                });
            }
            Message::ReplicaReadReply { req, object } => match self.pending.get_mut(&req) {
                Some(Pending::Read(coord)) => {
                    // A stray or duplicated reply changes nothing.
                    let counted = coord.core.add_result(from, object);
                    if counted {
                        self.progress_read(store, now_ms, req, false, out);
                    }
                }
                Some(Pending::Inspect(coord)) => {
                    if let Some(view) = coord
                        .views
                        .iter_mut()
                        .find(|v| v.node == from && !v.reachable)
                    {
                        view.reachable = true;
                        view.object = object;
                        coord.waiting -= 1;
                    }
                    if coord.waiting == 0 {
                        let Some(Pending::Inspect(coord)) = self.pending.remove(&req) else {
                            unreachable!()
                        };
                        self.answer(
                            coord.waiter,
                            Reply::Replicas {
                                key: coord.key,
                                replicas: coord.views,
                            },
                            out,
                        );
                    }
                }
                Some(Pending::Collect(c)) => {
                    if object.as_ref() != Some(&c.object) {
                        // That replica holds something else: not collectable now.
                        self.pending.remove(&req);
                        return;
                    }
                    c.awaiting.retain(|n| *n != from);
                    if c.awaiting.is_empty() {
                        let Some(Pending::Collect(c)) = self.pending.remove(&req) else {
                            unreachable!()
                        };
                        self.collect(store, c, out);
                    }
                }
                _ => {}
            },
            Message::Purge { key, object } => {
                let partition = self.partition_of(&key);
                if let Ok(Some(local)) = self.load(store, partition, &key)
                    && local == object
                    && self.remove(store, partition, &key).is_ok()
                {
                    self.stats.tombstones_collected += 1;
                }
            }
            Message::Transfer {
                xid,
                partition,
                objects,
            } => {
                let partition = PartitionId(partition);
                let mut ok = true;
                for (key, object) in objects {
                    ok &= self
                        .merge_into_store(store, now_ms, partition, &key, &object)
                        .is_ok();
                }
                // A receipt lets the sender delete what it handed over: only once it is durable.
                let receipt = Output::Send {
                    to: from,
                    message: Message::TransferAck { xid, ok },
                };
                out.push(if ok { receipt.durable() } else { receipt });
            }
            Message::TransferAck { xid, ok } => {
                if let Some(Pending::Transfer(t)) = self.pending.get_mut(&xid) {
                    if !ok {
                        self.pending.remove(&xid);
                        return;
                    }
                    t.awaiting.retain(|n| *n != from);
                    if t.awaiting.is_empty() {
                        let Some(Pending::Transfer(t)) = self.pending.remove(&xid) else {
                            unreachable!()
                        };
                        self.finish_transfer(store, t);
                    }
                }
            }
            Message::Repair { key, object } => {
                let partition = self.partition_of(&key);
                self.merge_here(store, now_ms, partition, &key, &object);
            }
        }
    }

    pub(super) fn on_tick(&mut self, store: &mut dyn Store, now_ms: u64, out: &mut Vec<Output>) {
        let (change, peers, seeds, gossip) = self.membership.tick(now_ms);
        self.apply_membership(change);
        self.save_membership(store, change);
        if let Some(gossip) = gossip {
            for to in peers {
                out.push(Output::Send {
                    to,
                    message: gossip.clone(),
                });
            }
            for addr in seeds {
                out.push(Output::Dial {
                    addr,
                    message: gossip.clone(),
                });
            }
        }
        for req in self.pending.due(now_ms) {
            match self.pending.get(&req) {
                Some(Pending::Read(_)) => self.progress_read(store, now_ms, req, true, out),
                _ => match self.pending.remove(&req) {
                    Some(Pending::Write(mut coord)) => {
                        // Replicas that never answered count as failed, and get a hint.
                        for (node, hint) in std::mem::take(&mut coord.awaiting) {
                            coord.core.add_result(false);
                            self.hint_missed_write_at(store, now_ms, &coord, &node, hint.as_ref());
                        }
                        self.progress_write(&mut coord, out);
                    }
                    Some(Pending::Inspect(coord)) => self.answer(
                        coord.waiter,
                        Reply::Replicas {
                            key: coord.key,
                            replicas: coord.views,
                        },
                        out,
                    ),
                    Some(Pending::Forwarded { client, .. }) => {
                        let reply = Reply::error(
                            ErrorKind::Unavailable,
                            "the coordinating replica did not answer in time",
                        );
                        self.answer(Waiter::Local(client), reply, out);
                    }
                    _ => {}
                },
            }
        }
        if self.cfg.hinted_handoff {
            self.hand_off(store, now_ms, out);
        }
        self.tree_build_step(store);
        self.aae_tick(now_ms, out);
        self.sweep_tick(store, now_ms, out);
        self.transfer_tick(store, now_ms, out);
    }
}
