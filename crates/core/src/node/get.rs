//! Coordinating reads: replicas asked, answers fed to the get core, read repair after.

use super::*;

impl Node {
    /// A replica's answer to a read this node coordinates.
    pub(super) fn on_read_reply(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        req: ReqId,
        object: Option<Object>,
    ) {
        let Some(Pending::Read(coord)) = self.pending.get_mut(&req) else {
            return;
        };
        // A stray or duplicated reply changes nothing.
        if coord.core.add_result(from, object) {
            self.progress_read(cx.store, cx.now_ms, req, false, cx.out);
        }
    }

    /// A replica's copy for an inspection: answered once every reachable replica showed its.
    pub(super) fn on_inspect_reply(
        &mut self,
        from: NodeId,
        req: ReqId,
        object: Option<Object>,
        out: &mut Vec<Output>,
    ) {
        let Some(Pending::Inspect(coord)) = self.pending.get_mut(&req) else {
            return;
        };
        if let Some(view) = coord
            .views
            .iter_mut()
            .find(|v| v.node == from && !v.reachable)
        {
            view.reachable = true;
            view.object = object;
            coord.waiting -= 1;
        }
        if coord.waiting > 0 {
            return;
        }
        let Some(Pending::Inspect(coord)) = self.pending.remove(&req) else {
            unreachable!("looked at above")
        };
        let reply = Reply::Replicas {
            key: coord.key,
            replicas: coord.views,
        };
        self.answer(coord.waiter, reply, out);
    }

    pub(super) fn start_read(
        &mut self,
        cx: &mut Step<'_>,
        waiter: Waiter,
        request: Request,
        route: Route,
    ) {
        let (store, now_ms, out) = (&mut *cx.store, cx.now_ms, &mut *cx.out);
        let Route {
            partition,
            n,
            needed,
            mode,
            direct,
        } = route;
        self.stats.reads += 1;
        let targets: Vec<NodeId> = self
            .targets(partition, n)
            .into_iter()
            .map(|(node, _)| node)
            .collect();
        if targets.len() < needed {
            return self.answer(waiter, too_few_reachable(targets.len(), needed), out);
        }
        let key = request.key().clone();
        let kind = match request {
            Request::CounterGet { .. } => ObjectKind::Counter,
            Request::SetGet { .. } => ObjectKind::Set,
            Request::MapGet { .. } => ObjectKind::Map,
            _ => ObjectKind::Register,
        };
        let req = self.new_req();
        let mut local = None;
        for node in &targets {
            if *node == self.cfg.id {
                match self.load(store, partition, &key) {
                    Ok(object) => local = Some((node.clone(), object)),
                    Err(e) => {
                        return self.answer(waiter, Reply::error(ErrorKind::Internal, e), out);
                    }
                }
            } else {
                out.push(Output::Send {
                    to: node.clone(),
                    message: Message::ReplicaRead {
                        req,
                        key: key.clone(),
                        kind,
                    },
                });
            }
        }
        let seen = match &request {
            Request::SessionGet { seen, .. } => Some(seen.clone()),
            _ => None,
        };
        let mut coord = ReadCoord {
            waiter,
            request,
            core: GetCore::new(mode, needed, targets, seen),
            direct,
            deadline_ms: now_ms + self.cfg.request_timeout_ms,
        };
        if let Some((node, object)) = local {
            coord.core.add_result(node, object);
        }
        self.pending.insert(req, Pending::Read(coord));
        self.progress_read(store, now_ms, req, false, out);
    }

    /// Answers once the get core has decided; once it is over (every target answered, or
    /// `expired`), repairs the stale.
    pub(super) fn progress_read(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        req: ReqId,
        expired: bool,
        out: &mut Vec<Output>,
    ) {
        let expiry_now = self.expiry_now(now_ms);
        let Some(Pending::Read(coord)) = self.pending.get_mut(&req) else {
            return;
        };
        let reply = match coord.core.response(expired) {
            None => None,
            Some(GetAnswer::Merged(merged)) => {
                // A client that read a value of a direct-path bucket and writes the key again
                // through this node (GETSET, EXPIRE, SET NX...) must order after what it read:
                // this node's clock, which stamps that write, takes in the value's time.
                if let Some(Object::Register(reg)) = merged
                    && coord.direct
                {
                    self.hlc.observe(reg.timestamp_max(), now_ms);
                }
                Some(render_read(&coord.request, merged, expiry_now))
            }
            Some(GetAnswer::SessionBehind { answered, needed }) => {
                self.stats.session_reads_behind += 1;
                Some(Reply::unavailable(
                    format!(
                        "no replica of the {answered} that answered holds everything this session \
                         has seen of the key; try again once replication catches up"
                    ),
                    answered,
                    needed,
                ))
            }
            Some(GetAnswer::TooFew {
                answered,
                targets,
                needed,
            }) => Some(Reply::unavailable(
                format!("{answered} of {targets} replicas answered in time, {needed} needed"),
                answered,
                needed,
            )),
        };
        let answer = reply.map(|reply| (coord.waiter.clone(), reply));
        let done = coord.core.done(expired);
        if let Some((waiter, reply)) = answer {
            if let Reply::Values { values, .. } = &reply {
                self.stats.read_siblings.record(values.len() as u64);
                if values.len() > 1 {
                    self.stats.sibling_reads += 1;
                }
            }
            self.answer(waiter, reply, out);
        }
        if !done {
            return;
        }
        let Some(Pending::Read(coord)) = self.pending.remove(&req) else {
            unreachable!("looked at above")
        };
        let key = coord.request.key().clone();
        let last = coord.core.final_action();
        // Counted once per read, on its final merge: the conflict the read resolved.
        self.stats.conflicts += last.conflicts;
        self.stats.lww_discarded += last.lww_discarded;
        if let (Some(merged), true) = (&last.merged, self.cfg.read_repair) {
            self.read_repair(store, now_ms, &key, merged, &last.stale, out);
        }
    }

    /// Sends the merge of a read to each stale target (this node merges it in place).
    pub(super) fn read_repair(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        key: &Key,
        merged: &Object,
        stale: &[NodeId],
        out: &mut Vec<Output>,
    ) {
        let partition = self.partition_of(key);
        for node in stale {
            self.stats.stale_replicas_found += 1;
            if *node == self.cfg.id {
                self.merge_here(store, now_ms, partition, key, merged);
            } else {
                self.stats.read_repairs_sent += 1;
                out.push(Output::Send {
                    to: node.clone(),
                    message: Message::Repair {
                        key: key.clone(),
                        object: merged.clone(),
                    },
                });
            }
        }
    }

    pub(super) fn start_inspect(
        &mut self,
        cx: &mut Step<'_>,
        waiter: Waiter,
        key: Key,
        partition: PartitionId,
        n: usize,
    ) {
        let (store, now_ms, out) = (&mut *cx.store, cx.now_ms, &mut *cx.out);
        let req = self.new_req();
        let mut views = Vec::new();
        let mut waiting = 0;
        let owners: Vec<NodeId> = self
            .ring()
            .owners(partition)
            .iter()
            .take(n)
            .cloned()
            .collect();
        for node in owners {
            let (reachable, object) = if node == self.cfg.id {
                match self.load(store, partition, &key) {
                    Ok(object) => (true, object),
                    Err(e) => {
                        return self.answer(waiter, Reply::error(ErrorKind::Internal, e), out);
                    }
                }
            } else if self.is_up(&node) {
                waiting += 1;
                out.push(Output::Send {
                    to: node.clone(),
                    message: Message::ReplicaRead {
                        req,
                        key: key.clone(),
                        kind: ObjectKind::Register,
                    },
                });
                (false, None)
            } else {
                (false, None)
            };
            views.push(ReplicaView {
                node,
                reachable,
                object,
            });
        }
        let coord = InspectCoord {
            waiter,
            key,
            views,
            waiting,
            deadline_ms: now_ms + self.cfg.inspect_timeout_ms,
        };
        if waiting == 0 {
            let reply = Reply::Replicas {
                key: coord.key,
                replicas: coord.views,
            };
            return self.answer(coord.waiter, reply, out);
        }
        self.pending.insert(req, Pending::Inspect(coord));
    }
}
