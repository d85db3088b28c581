//! Dispatch: every peer message and tick routed to the part of the node it is for.

use super::*;

impl Node {
    /// A peer's message, handed to the part of the node it is for.
    pub(super) fn on_message(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        from: NodeId,
        message: Message,
        out: &mut Vec<Output>,
    ) {
        let cx = &mut Step { store, now_ms, out };
        match message {
            Message::Forward { req, request } => self.on_forward(cx, from, req, *request),
            Message::ForwardReply { req, reply } => self.on_forward_reply(req, reply, cx.out),
            Message::Gossip { members } => self.on_gossip(cx, from, &members),
            Message::ReplicaWrite {
                req,
                key,
                object,
                hint,
            } => self.on_replica_write(cx, from, req, &key, &object, hint.as_ref()),
            Message::ReplicaWriteAck { req, ok } => {
                self.on_write_ack(cx.store, from, req, ok, cx.out)
            }
            Message::ReplicaRead { req, key, .. } => self.on_replica_read(cx, from, req, &key),
            Message::ReplicaReadReply { req, object } => {
                self.on_replica_read_reply(cx, from, req, object)
            }
            Message::Repair { key, object } => self.on_repair(cx, &key, &object),
            Message::Purge { key, object } => self.on_purge(cx.store, &key, &object),
            Message::Transfer {
                xid,
                partition,
                objects,
            } => self.on_transfer(cx, from, xid, PartitionId(partition), objects),
            Message::TransferAck { xid, ok } => self.on_transfer_ack(cx.store, from, xid, ok),
            Message::ListRead {
                req,
                partition,
                prefix,
                after,
                limit,
            } => self.on_list_read(cx, from, req, (partition, prefix, after, limit)),
            Message::ListReadReply {
                req,
                keys,
                last,
                more,
            } => self.on_list_read_reply(cx, from, req, (keys, last, more)),
            exchange @ (Message::AaeRoot { .. }
            | Message::AaeRootDiffers { .. }
            | Message::AaeNotReady { .. }
            | Message::AaeMids { .. }
            | Message::AaeLeaves { .. }
            | Message::AaeKeys { .. }
            | Message::AaeSync { .. }
            | Message::AaeObjects { .. }) => self.on_exchange(cx, from, exchange),
        }
    }

    /// A replica's answer to a read, to the coordination that asked: a read, an inspection or
    /// a tombstone collection.
    fn on_replica_read_reply(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        req: ReqId,
        object: Option<Object>,
    ) {
        match self.pending.get(&req) {
            Some(Pending::Read(_)) => self.on_read_reply(cx, from, req, object),
            Some(Pending::Inspect(_)) => self.on_inspect_reply(from, req, object, cx.out),
            Some(Pending::Collect(_)) => self.on_collect_reply(cx, from, req, object),
            _ => {}
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
        self.expire(store, now_ms, out);
        if self.cfg.hinted_handoff {
            self.hand_off(store, now_ms, out);
        }
        self.tree_build_step(store);
        self.aae_tick(now_ms, out);
        self.sweep_tick(store, now_ms, out);
        self.transfer_tick(store, now_ms, out);
    }

    /// Coordinations past their deadline: each answered as far as it got.
    fn expire(&mut self, store: &mut dyn Store, now_ms: u64, out: &mut Vec<Output>) {
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
                    Some(Pending::List(coord)) => {
                        let cx = &mut Step { store, now_ms, out };
                        self.listing_expired(cx, *coord)
                    }
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
    }
}
