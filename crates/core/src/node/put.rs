//! Coordinating writes: the write applied here, sent to the other targets, and answered by the
//! put core; the bounds a client's context and an object are held to.

use super::*;
use driftkv_crdt::map::IncrementError;

/// A write the coordinator applied to its copy and stored, to replicate.
pub(super) struct Write {
    pub(super) key: Key,
    pub(super) partition: PartitionId,
    pub(super) object: Object,
}

/// How far ahead of what a replica holds a client's context may claim another node's events:
/// a client may have read a replica that is ahead, but not by a million writes to one key.
pub const CONTEXT_AHEAD_MAX: u64 = 1 << 20;

/// Actors a key's context may reach through claims of clients (merges between replicas are
/// not limited): real contexts name the few nodes (and incarnations) that wrote the key.
pub const CONTEXT_ACTORS_MAX: usize = 64;

/// Actors a restored key's context may name: a real key is written by few nodes and their
/// incarnations; more is not a backup of this store.
pub const RESTORE_CONTEXT_ACTORS_MAX: usize = 1024;

/// How far ahead of this node's clock a restored value's timestamp may be: a backup's clock
/// was never further ahead than clocks of a cluster drift apart.
pub const RESTORE_CLOCK_LEAD_MAX_MS: u64 = 60_000;

/// Whether `name` could be a node's id: 1 to 64 characters of letters, digits, '-', '_', '.'
/// (what the server's configuration accepts).
pub fn is_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// What a set member costs beyond its bytes, counted against `object_bytes_max`.
pub(super) const SET_MEMBER_OVERHEAD_BYTES: usize = 32;

impl Node {
    pub(super) fn coordinate_write(
        &mut self,
        cx: &mut Step<'_>,
        waiter: Waiter,
        request: Request,
        route: Route,
        targets: Vec<(NodeId, Option<NodeId>)>,
    ) {
        let (store, now_ms, out) = (&mut *cx.store, cx.now_ms, &mut *cx.out);
        let Route {
            partition,
            needed,
            mode,
            direct,
            ..
        } = route;
        self.stats.writes += 1;
        if targets.len() < needed {
            return self.answer(waiter, too_few_reachable(targets.len(), needed), out);
        }
        let key = request.key().clone();
        self.warm_leaf(partition, &key);
        let record_key = keys::data_key(partition, &key);
        let (local, prior) = match self.read_record(store, partition, &record_key, &key) {
            Ok(read) => read,
            Err(e) => return self.answer(waiter, Reply::error(ErrorKind::Internal, e), out),
        };
        // A delete of a key this coordinator holds nothing of has nothing it could cover: a
        // tombstone written blind would leave every value it did not see beside it. Except in
        // a bucket of direct writes, where a write this node has not received yet may be on
        // its way (through another node, even the one this delete came through): there the
        // tombstone is written anyway, and its time settles which came last.
        if local.is_none() && matches!(request, Request::Delete { .. }) && !direct {
            return self.answer(waiter, Reply::Deleted { existed: false }, out);
        }
        let takes_away = takes_away_only(&request);
        let mut object = local.unwrap_or_else(|| Object::empty(written_kind(&request)));
        let reply = match self.apply_request(&mut object, request, mode, now_ms) {
            Ok(reply) => reply,
            Err(refusal) => return self.answer(waiter, refusal, out),
        };
        // A write that only takes away (a delete, a map update that only removes) never
        // grows the key: it is not held to the limits, so a key over them (a map whose
        // removed fields' records add up) can always be deleted.
        if !takes_away && let Err(e) = self.within_limits(&object) {
            self.stats.writes_refused_limits += 1;
            return self.answer(waiter, Reply::error(ErrorKind::BadRequest, e), out);
        }
        if let Err(e) = self.save_over(store, partition, &key, record_key, prior, object.clone()) {
            return self.answer(waiter, Reply::error(ErrorKind::Internal, e), out);
        }
        let write = Write {
            key,
            partition,
            object,
        };
        self.replicate(cx, waiter, write, route, targets, reply, true);
    }

    /// The coordinator stored the write (`holds`; a direct write's coordinator may be no
    /// target): hints for primaries no one stands in for, the write to every other target,
    /// and the coordination that waits for their acknowledgements.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replicate(
        &mut self,
        cx: &mut Step<'_>,
        waiter: Waiter,
        write: Write,
        route: Route,
        targets: Vec<(NodeId, Option<NodeId>)>,
        reply: Reply,
        holds: bool,
    ) {
        let (store, now_ms, out) = (&mut *cx.store, cx.now_ms, &mut *cx.out);
        let Write {
            key,
            partition,
            object,
        } = write;
        let (n, needed) = (route.n, route.needed);
        // Down primaries with no fallback (a cluster of exactly N nodes has none) get their
        // copy from a hint kept here, as Cassandra's coordinators do.
        if self.cfg.hinted_handoff {
            for primary in self.uncovered_primaries(partition, n, &targets) {
                if primary != self.cfg.id {
                    self.store_hint(store, now_ms, &primary, partition, &key, &object);
                }
            }
        }
        let req = self.new_req();
        let mut awaiting = Vec::with_capacity(targets.len());
        for (node, hint) in &targets {
            if *node == self.cfg.id {
                if let Some(primary) = hint {
                    self.store_hint(store, now_ms, primary, partition, &key, &object);
                }
                continue;
            }
            awaiting.push((node.clone(), hint.clone()));
            let message = Message::ReplicaWrite {
                req,
                key: key.clone(),
                object: object.clone(),
                hint: hint.clone(),
            };
            out.push(Output::Send {
                to: node.clone(),
                message,
            });
        }
        // A coordinator that holds the write counts as the first acknowledgement.
        let core = if holds {
            PutCore::new(needed, awaiting.len() + 1)
        } else {
            PutCore::remote(needed, awaiting.len())
        };
        let mut coord = WriteCoord {
            waiter,
            core,
            awaiting,
            key,
            partition,
            object,
            reply,
            deadline_ms: now_ms + self.cfg.request_timeout_ms,
        };
        self.progress_write(&mut coord, out);
        if !coord.awaiting.is_empty() {
            self.pending.insert(req, Pending::Write(coord));
        }
    }

    /// Applies a client's write to this node's copy (`object`): the answer for when it is
    /// confirmed, or the refusal to send at once.
    fn apply_request(
        &mut self,
        object: &mut Object,
        request: Request,
        mode: ConflictMode,
        now_ms: u64,
    ) -> Result<Reply, Reply> {
        let kind = written_kind(&request);
        let reply = match (object, request) {
            (
                Object::Register(reg),
                Request::Put {
                    value,
                    context,
                    expires_ms,
                    ..
                },
            ) => {
                let context = match self.bound_context(context, reg.context()) {
                    Ok(c) => c,
                    Err(e) => {
                        return Err(Reply::error(ErrorKind::BadRequest, e));
                    }
                };
                self.hlc.observe(reg.timestamp_max(), now_ms);
                let ts = self.hlc.now(now_ms);
                if let Err(e) =
                    reg.write_expiring(mode, &self.actor, &context, value, expires_ms, ts)
                {
                    return Err(exhausted(e));
                }
                Reply::Written {
                    context: reg.context().clone(),
                }
            }
            (
                Object::Register(reg),
                Request::Overwrite {
                    value, expires_ms, ..
                },
            ) => {
                self.hlc.observe(reg.timestamp_max(), now_ms);
                let ts = self.hlc.now(now_ms);
                let context = reg.context().clone();
                if let Err(e) =
                    reg.write_expiring(mode, &self.actor, &context, value, expires_ms, ts)
                {
                    return Err(exhausted(e));
                }
                Reply::Written {
                    context: reg.context().clone(),
                }
            }
            (object, Request::Delete { kind, .. }) if kind.is_none_or(|k| k == object.kind()) => {
                let existed = object.is_live_at(self.expiry_now(now_ms));
                match object {
                    Object::Register(reg) => {
                        self.hlc.observe(reg.timestamp_max(), now_ms);
                        let ts = self.hlc.now(now_ms);
                        let context = reg.context().clone();
                        if let Err(e) =
                            reg.write_expiring(mode, &self.actor, &context, None, None, ts)
                        {
                            return Err(exhausted(e));
                        }
                    }
                    Object::Counter(counter) => {
                        counter.reset();
                    }
                    Object::Set(set) => {
                        set.clear();
                    }
                    Object::Map(map) => {
                        map.clear();
                    }
                }
                Reply::Deleted { existed }
            }
            (
                Object::Map(map),
                Request::MapUpdate {
                    set,
                    increment,
                    remove,
                    ..
                },
            ) => {
                let mut removed = 0u32;
                for name in &remove {
                    removed += u32::from(map.remove(name));
                }
                let mut added = 0u32;
                if !set.is_empty() {
                    let ts = self.hlc.now(now_ms);
                    for (name, value) in set {
                        added += u32::from(map.get(&name).is_none());
                        if let Err(e) = map.set(&self.actor, name, value, ts) {
                            return Err(exhausted(e));
                        }
                    }
                }
                for (name, delta) in increment {
                    let was_absent = map.get(&name).is_none();
                    match map.increment(&self.actor, name, delta) {
                        Ok(_) => added += u32::from(was_absent),
                        Err(IncrementError::NotInteger) => {
                            return Err(Reply::error(
                                ErrorKind::BadRequest,
                                "hash value is not an integer",
                            ));
                        }
                        Err(IncrementError::Overflow) => {
                            return Err(Reply::error(
                                ErrorKind::BadRequest,
                                "increment or decrement would overflow the field's 64-bit range",
                            ));
                        }
                        Err(IncrementError::Exhausted) => {
                            return Err(exhausted(driftkv_causal::Exhausted));
                        }
                    }
                }
                Reply::Map {
                    fields: map.fields().map(|(n, v)| (n.clone(), v)).collect(),
                    added,
                    removed,
                }
            }
            (Object::Counter(counter), Request::CounterAdd { delta, .. }) => {
                // Counters are 64-bit signed integers, as in Redis: an increment that would
                // take the value this replica knows outside that range is refused, not
                // applied. (Concurrent increments through other nodes can still sum past it;
                // readers render the exact value.)
                let before = counter.value();
                let applied = counter.apply(&self.actor, delta).is_ok();
                let after = counter.value();
                // Within range, or (after concurrent increments through several nodes summed
                // past it) a step back towards it: such a counter can still be brought back.
                let in_range = i64::try_from(after).is_ok() || after.abs() < before.abs();
                if !(applied && in_range) {
                    let message =
                        "increment or decrement would overflow the counter's 64-bit range";
                    return Err(Reply::error(ErrorKind::BadRequest, message));
                }
                Reply::Counter {
                    value: counter.value(),
                }
            }
            (Object::Set(set), Request::SetUpdate { add, remove, .. }) => {
                for m in &remove {
                    set.remove(m);
                }
                for m in add {
                    if let Err(e) = set.add(&self.actor, m) {
                        return Err(exhausted(e));
                    }
                }
                Reply::Written {
                    context: set.context().clone(),
                }
            }
            (held, Request::Restore { object, .. }) => {
                if let Object::Register(reg) = &object {
                    // A backup's clock was never far ahead of this one: a timestamp beyond
                    // that is refused, not taken into this node's clock (and every later write).
                    let lead_max = now_ms.saturating_add(RESTORE_CLOCK_LEAD_MAX_MS);
                    if reg.timestamp_max().physical_ms() > lead_max {
                        let message = format!(
                            "the restored value's timestamp is more than {RESTORE_CLOCK_LEAD_MAX_MS} ms ahead of this node's clock"
                        );
                        return Err(Reply::error(ErrorKind::BadRequest, message));
                    }
                    if let Object::Register(mine) = &*held
                        && let Some(why) = restore_clash(mine, reg)
                    {
                        return Err(Reply::error(ErrorKind::BadRequest, why));
                    }
                    self.hlc.observe(reg.timestamp_max(), now_ms);
                }
                held.merge(mode, &object);
                // Restores add up: the merged state is held to the same bound as one restore.
                let actors = super::requests::restored_actors(held);
                if actors > RESTORE_CONTEXT_ACTORS_MAX {
                    let message = format!(
                        "restoring this state would leave the key naming {actors} nodes, over {RESTORE_CONTEXT_ACTORS_MAX}"
                    );
                    return Err(Reply::error(ErrorKind::BadRequest, message));
                }
                match held {
                    Object::Register(reg) => Reply::Written {
                        context: reg.context().clone(),
                    },
                    _ => Reply::Written {
                        context: VersionVector::new(),
                    },
                }
            }
            (held, _) => {
                let message = format!("key holds a {}, not a {}", held.kind().name(), kind.name());
                return Err(Reply::error(ErrorKind::WrongType, message));
            }
        };
        Ok(reply)
    }

    /// A client's context as this coordinator may trust it. A token is only checksummed, so
    /// whatever it claims is checked against what this replica holds before it is used:
    /// - no actor may claim more than [`COUNTER_MAX`] events (refused: only a forged token does);
    /// - this node's own actor claims at most what this node issued for the key (it is the only
    ///   issuer of its dots, and holds every one of them);
    /// - another actor claims at most [`CONTEXT_AHEAD_MAX`] events beyond what this replica
    ///   has seen of it, so no forged context can push another node's counter for the key
    ///   near the end of its range (it would take 2^28 forged writes);
    /// - an actor this replica has never seen for the key is kept only while the key's context
    ///   stays within [`CONTEXT_ACTORS_MAX`] actors, so forged contexts (invented names, or
    ///   members under invented incarnations) cannot grow it without bound.
    ///
    /// A client that read a replica ahead of this one names actors this one has not seen yet,
    /// possibly of a node that joined moments ago and is not in this node's membership yet:
    /// they are kept (dropping unseen actors made the write not cover values it had read,
    /// which came back as siblings: the simulator's checker found such spurious conflicts in
    /// one seed of twenty, and in one of twenty of the churn sweep when only members' actors
    /// were kept). Only a key whose context is already full loses such claims, so the price of
    /// an attack is at worst a spurious sibling, never a lost write or a key no one can write.
    pub(super) fn bound_context(
        &mut self,
        mut client: VersionVector,
        held: &VersionVector,
    ) -> Result<VersionVector, String> {
        if client.exceeds_counter_max() {
            return Err(format!(
                "the causal context claims more than {COUNTER_MAX} events of one node: it was not issued by this cluster"
            ));
        }
        let me = &self.actor;
        let mut room = CONTEXT_ACTORS_MAX.saturating_sub(held.len());
        let changed = client.restrict(
            |actor, _| {
                if held.get(actor) > 0 {
                    return true;
                }
                // Only names a node could have (ids are at most 64 characters), so a full
                // context stays far within the token's length limit.
                if room > 0 && is_node_name(&actor.node) {
                    room -= 1;
                    return true;
                }
                false
            },
            |actor| {
                let seen = held.get(actor);
                if actor == me {
                    seen
                } else {
                    seen.saturating_add(CONTEXT_AHEAD_MAX)
                }
            },
        );
        if changed {
            self.stats.contexts_trimmed += 1;
        }
        Ok(client)
    }

    /// Whether a write's resulting object stays within the per-key limits: `siblings_max`
    /// values (Riak's `max_siblings`) and `object_bytes_max` bytes of values or set members,
    /// so that every replica can still receive it in one frame.
    pub(super) fn within_limits(&self, object: &Object) -> Result<(), String> {
        let bytes = match object {
            Object::Register(reg) => {
                let siblings = reg.sibling_count();
                if siblings > self.cfg.siblings_max {
                    return Err(format!(
                        "the key would have {siblings} siblings, over siblings_max ({}): read it and write with its context to resolve them",
                        self.cfg.siblings_max
                    ));
                }
                reg.values()
                    .map(|v| v.len())
                    .fold(0usize, usize::saturating_add)
            }
            // Each member costs its bytes and its dot (an actor name and a counter).
            Object::Set(set) => set
                .members()
                .map(|m| m.len().saturating_add(SET_MEMBER_OVERHEAD_BYTES))
                .fold(0usize, usize::saturating_add),
            Object::Map(map) => {
                let (bytes, entries) = map.size();
                bytes.saturating_add(entries.saturating_mul(SET_MEMBER_OVERHEAD_BYTES))
            }
            Object::Counter(_) => 0,
        };
        if bytes > self.cfg.object_bytes_max {
            return Err(format!(
                "the key would hold {bytes} bytes, over object_bytes_max ({}): resolve its siblings or remove set members first",
                self.cfg.object_bytes_max
            ));
        }
        Ok(())
    }

    pub(super) fn progress_write(&mut self, coord: &mut WriteCoord, out: &mut Vec<Output>) {
        match coord.core.response() {
            None => {}
            Some(PutAnswer::Written) => {
                // Answered once: the reply kept for this moment is handed over, not copied.
                let placeholder = Reply::Written {
                    context: VersionVector::new(),
                };
                let reply = std::mem::replace(&mut coord.reply, placeholder);
                self.confirm(coord.waiter.clone(), reply, out);
            }
            Some(PutAnswer::Unavailable {
                acks,
                targets,
                needed,
            }) => {
                let reply = Reply::unavailable(
                    format!("{acks} of {targets} replicas acknowledged the write, {needed} needed"),
                    acks,
                    needed,
                );
                self.answer(coord.waiter.clone(), reply, out);
            }
        }
    }

    pub(super) fn on_write_ack(
        &mut self,
        store: &mut dyn Store,
        from: NodeId,
        req: ReqId,
        ok: bool,
        out: &mut Vec<Output>,
    ) {
        // Taken out in its box, and put back so (a coordination's state is not moved).
        let Some(mut entry) = self.pending.remove_boxed(&req) else {
            return;
        };
        match &mut *entry {
            Pending::Write(coord) => {
                let Some(at) = coord.awaiting.iter().position(|(node, _)| *node == from) else {
                    // A duplicate or stray acknowledgement counts once.
                    self.pending.insert_boxed(req, entry);
                    return;
                };
                let (_, hint) = coord.awaiting.swap_remove(at);
                coord.core.add_result(ok);
                if !ok {
                    self.hint_missed_write(store, coord, &from, hint.as_ref());
                }
                self.progress_write(coord, out);
                if !coord.awaiting.is_empty() {
                    self.pending.insert_boxed(req, entry);
                }
            }
            Pending::Handoff(handoff) => {
                if !ok {
                    return;
                }
                // Delete the hint only if no newer write merged into it meanwhile.
                if store.get(&handoff.hint_key).ok().flatten().as_deref() == Some(&handoff.sent[..])
                {
                    if store.delete(&handoff.hint_key).is_ok() {
                        self.stats.hints_delivered += 1;
                        self.forget_hint(&handoff.target);
                    } else {
                        self.stats.storage_errors += 1;
                    }
                }
            }
            _ => self.pending.insert_boxed(req, entry),
        }
    }
}

/// Whether a write only takes away from its key (a delete, removes alone).
fn takes_away_only(request: &Request) -> bool {
    match request {
        Request::Delete { .. } => true,
        Request::MapUpdate { set, increment, .. } => set.is_empty() && increment.is_empty(),
        Request::SetUpdate { add, .. } => add.is_empty(),
        _ => false,
    }
}

/// The type of object a write request writes.
pub(super) fn written_kind(request: &Request) -> ObjectKind {
    match request {
        Request::Put { .. } | Request::Overwrite { .. } => ObjectKind::Register,
        Request::CounterAdd { .. } => ObjectKind::Counter,
        Request::MapUpdate { .. } => ObjectKind::Map,
        Request::Delete { kind, .. } => kind.unwrap_or(ObjectKind::Register),
        Request::Restore { object, .. } => object.kind(),
        _ => ObjectKind::Set,
    }
}

/// Whether restoring `theirs` into `held` would take a newer write for one the backup saw.
///
/// A key's dots are counted from its record, so once a deleted key's tombstone is collected,
/// its next writes reuse the dots of its earlier life. A backup taken before the delete names
/// those dots in its context (or holds other values under them): merged in, it would drop the
/// new values as already seen. A hybrid clock orders what one state saw before it: a dot the
/// backup's context covers, held here with a later timestamp than anything the backup holds,
/// was written after the backup, as is a dot held here and there with different values.
fn restore_clash(held: &Register, theirs: &Register) -> Option<String> {
    let newest = theirs.timestamp_max();
    let clash = held.dvv().siblings().any(|(dot, mine)| {
        match theirs.dvv().siblings().find(|(d, _)| *d == dot) {
            Some((_, other)) => other != mine,
            None => theirs.context().contains(dot) && mine.timestamp > newest,
        }
    });
    clash.then(|| {
        "the key was deleted and written again since the backup: restoring it would drop the \
         newer value; read it and write what should stay"
            .to_string()
    })
}
