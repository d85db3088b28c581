//! Client requests: checked, routed (coordinated here or forwarded), and answers rendered.

use super::put::written_kind;
use super::*;
use crate::config::WritePath;

/// How far ahead of this node's own clock the hybrid clock may move the time expiry is
/// judged against (see `Node::expiry_now`).
pub const EXPIRY_CLOCK_LEAD_MAX_MS: u64 = 1_000;

/// The client's answer to a read, from the merged replica state, as it reads at `now_ms`
/// (expired values are gone).
pub(super) fn render_read(request: &Request, merged: Option<&Object>, now_ms: u64) -> Reply {
    let wrong = |held: &Object, wanted: ObjectKind| {
        Reply::error(
            ErrorKind::WrongType,
            format!(
                "key holds a {}, not a {}",
                held.kind().name(),
                wanted.name()
            ),
        )
    };
    // A key that holds nothing live (deleted, emptied, expired) reads as missing or empty
    // whatever kind it held, not as the wrong type. (A register read of a dead register keeps
    // it: its not-found answer carries the context a later write must cover.)
    let register_read = matches!(request, Request::Get { .. } | Request::SessionGet { .. });
    let merged = merged.filter(|o| {
        o.is_live_at(now_ms)
            || matches!(request, Request::Read { .. })
            || (register_read && matches!(o, Object::Register(_)))
    });
    match (request, merged) {
        (Request::Get { .. } | Request::SessionGet { .. }, None) => Reply::NotFound {
            context: VersionVector::new(),
        },
        (Request::Get { .. } | Request::SessionGet { .. }, Some(Object::Register(reg))) => {
            render_register(reg, now_ms)
        }
        // A counter reads as its value, as Redis's GET after INCR does; a deleted counter,
        // set or map (nothing live) as missing.
        (Request::Get { .. } | Request::SessionGet { .. }, Some(Object::Counter(c)))
            if c.has_counts() =>
        {
            Reply::Values {
                values: vec![Bytes::from(c.value().to_string())],
                context: VersionVector::new(),
            }
        }
        (Request::Get { .. } | Request::SessionGet { .. }, Some(other))
            if !other.is_live_at(now_ms) =>
        {
            Reply::NotFound {
                context: VersionVector::new(),
            }
        }
        (Request::Get { .. } | Request::SessionGet { .. }, Some(other)) => {
            wrong(other, ObjectKind::Register)
        }
        (Request::CounterGet { .. }, None) => Reply::Counter { value: 0 },
        (Request::CounterGet { .. }, Some(Object::Counter(c))) => {
            Reply::Counter { value: c.value() }
        }
        (Request::CounterGet { .. }, Some(other)) => wrong(other, ObjectKind::Counter),
        (Request::SetGet { .. }, None) => Reply::Set {
            members: Vec::new(),
        },
        (Request::SetGet { .. }, Some(Object::Set(s))) => Reply::Set {
            members: s.members().cloned().collect(),
        },
        (Request::SetGet { .. }, Some(other)) => wrong(other, ObjectKind::Set),
        (Request::MapGet { .. }, None) => Reply::Map {
            fields: Vec::new(),
            added: 0,
            removed: 0,
        },
        (Request::MapGet { .. }, Some(Object::Map(m))) => Reply::Map {
            fields: m.fields().map(|(n, v)| (n.clone(), v)).collect(),
            added: 0,
            removed: 0,
        },
        (Request::MapGet { .. }, Some(other)) => wrong(other, ObjectKind::Map),
        (Request::Read { .. }, merged) => Reply::Object {
            object: merged.cloned(),
            now_ms,
        },
        _ => Reply::error(ErrorKind::Internal, "not a read"),
    }
}

pub(super) fn render_register(reg: &Register, now_ms: u64) -> Reply {
    let values: Vec<Bytes> = reg.values_at(now_ms).cloned().collect();
    if values.is_empty() {
        Reply::NotFound {
            context: reg.context().clone(),
        }
    } else {
        Reply::Values {
            values,
            context: reg.context().clone(),
        }
    }
}

/// Convenience for tests: the live values of a register object.
pub fn register_values(object: &Object) -> Vec<Bytes> {
    match object {
        Object::Register(r) => r.values().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The answer when an actor's counter for a key is exhausted (a forged or corrupt state).
pub(super) fn exhausted(e: driftkv_causal::Exhausted) -> Reply {
    Reply::error(ErrorKind::Internal, e.to_string())
}

pub(super) fn too_few_reachable(reachable: usize, needed: usize) -> Reply {
    Reply::unavailable(
        format!("only {reachable} of the {needed} replicas needed are reachable"),
        0,
        needed,
    )
}

impl Node {
    /// The time expiry is judged against: the hybrid clock's, which is this node's wall clock
    /// or the latest time it has seen from another node, whichever is later, but never more
    /// than [`EXPIRY_CLOCK_LEAD_MAX_MS`] past this node's own clock. So a node whose clock lags
    /// the cluster's a little expires values no later than the nodes it hears from, and one
    /// peer whose clock runs far ahead (or a forged timestamp) cannot expire every key early.
    pub(super) fn expiry_now(&self, now_ms: u64) -> u64 {
        let lead_max = now_ms.saturating_add(EXPIRY_CLOCK_LEAD_MAX_MS);
        now_ms.max(self.hlc.last().physical_ms().min(lead_max))
    }

    pub(super) fn validate(&self, request: &Request) -> Result<(), String> {
        let key = request.key();
        if let Request::ListKeys { limit, .. } = request {
            if !(1..=LIST_LIMIT_MAX).contains(limit) {
                return Err(format!(
                    "a key listing's limit must be 1 to {LIST_LIMIT_MAX}"
                ));
            }
        } else if key.key().is_empty() {
            return Err("key is empty".into());
        }
        if key.key().len() > self.cfg.key_bytes_max {
            return Err(format!(
                "key is {} bytes, the limit is {}",
                key.key().len(),
                self.cfg.key_bytes_max
            ));
        }
        if key.bucket().is_empty() || key.bucket().len() > self.cfg.bucket_bytes_max {
            return Err(format!(
                "bucket name must be 1 to {} bytes",
                self.cfg.bucket_bytes_max
            ));
        }
        match request {
            Request::Put { value: Some(v), .. } | Request::Overwrite { value: Some(v), .. }
                if v.len() > self.cfg.value_bytes_max =>
            {
                Err(format!(
                    "value is {} bytes, the limit is {}",
                    v.len(),
                    self.cfg.value_bytes_max
                ))
            }
            Request::MapUpdate {
                set,
                increment,
                remove,
                ..
            } => {
                let names = set.len() + increment.len() + remove.len();
                if names > self.cfg.set_update_members_max {
                    return Err(format!(
                        "a map update may name at most {} fields",
                        self.cfg.set_update_members_max
                    ));
                }
                let names = set
                    .iter()
                    .map(|(n, _)| n)
                    .chain(increment.iter().map(|(n, _)| n))
                    .chain(remove);
                for name in names {
                    if name.len() > self.cfg.key_bytes_max {
                        return Err(format!(
                            "map field name is {} bytes, the limit is {}",
                            name.len(),
                            self.cfg.key_bytes_max
                        ));
                    }
                }
                match set.iter().find(|(_, v)| v.len() > self.cfg.value_bytes_max) {
                    Some((_, v)) => Err(format!(
                        "map field value is {} bytes, the limit is {}",
                        v.len(),
                        self.cfg.value_bytes_max
                    )),
                    None => Ok(()),
                }
            }
            Request::SetUpdate { add, remove, .. } => {
                if add.len() + remove.len() > self.cfg.set_update_members_max {
                    return Err(format!(
                        "a set update may name at most {} members",
                        self.cfg.set_update_members_max
                    ));
                }
                match add
                    .iter()
                    .chain(remove)
                    .find(|m| m.len() > self.cfg.key_bytes_max)
                {
                    Some(m) => Err(format!(
                        "set member is {} bytes, the limit is {}",
                        m.len(),
                        self.cfg.key_bytes_max
                    )),
                    None => Ok(()),
                }
            }
            Request::Restore { object, .. } => self.check_restored(object),
            _ => Ok(()),
        }
    }

    /// What a restored state may hold, before it is merged: no context near the counter limit,
    /// at most [`RESTORE_CONTEXT_ACTORS_MAX`] actors (a counter's included: it has no other
    /// size), register values within `value_bytes_max`.
    fn check_restored(&self, object: &Object) -> Result<(), String> {
        let context = match object {
            Object::Register(reg) => Some(reg.context()),
            Object::Set(set) => Some(set.context()),
            Object::Map(map) => Some(map.context()),
            Object::Counter(_) => None,
        };
        if context.is_some_and(|c| c.exceeds_counter_max()) {
            return Err(format!(
                "the restored state claims more than {COUNTER_MAX} events of one node: it was not made by a cluster"
            ));
        }
        let actors = restored_actors(object);
        if actors > RESTORE_CONTEXT_ACTORS_MAX {
            return Err(format!(
                "the restored state names {actors} nodes, over {RESTORE_CONTEXT_ACTORS_MAX}"
            ));
        }
        if let Object::Register(reg) = object
            && let Some(v) = reg.values().find(|v| v.len() > self.cfg.value_bytes_max)
        {
            return Err(format!(
                "a restored value is {} bytes, the limit is {}",
                v.len(),
                self.cfg.value_bytes_max
            ));
        }
        Ok(())
    }

    /// A write another node forwarded here to coordinate (taken once, however often it
    /// arrives).
    pub(super) fn on_forward(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        req: ReqId,
        request: Request,
    ) {
        if !self.first_delivery_of_forward(&from, req, cx.now_ms) {
            self.stats.duplicate_forwards += 1;
            return;
        }
        let waiter = Waiter::Remote { node: from, req };
        self.on_request(cx.store, cx.now_ms, waiter, request, true, cx.out)
    }

    /// The answer to a write this node forwarded, for the client waiting here.
    pub(super) fn on_forward_reply(&mut self, req: ReqId, reply: Reply, out: &mut Vec<Output>) {
        if let Some(Pending::Forwarded { client, .. }) = self.pending.remove(&req) {
            out.push(Output::Reply { client, reply });
        }
    }

    pub(super) fn on_request(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        waiter: Waiter,
        request: Request,
        forwarded: bool,
        out: &mut Vec<Output>,
    ) {
        if let Err(message) = self.validate(&request) {
            return self.answer(waiter, Reply::error(ErrorKind::BadRequest, message), out);
        }
        // A node joining a cluster knows only itself until it hears from a member: its ring
        // would make it the only replica of every key, and a write acknowledged at "quorum"
        // would sit on one disk. It serves once it has joined.
        if !self.cfg.seeds.is_empty() && self.membership.count() <= 1 {
            let reply = Reply::error(
                ErrorKind::Unavailable,
                "this node has not reached a member of the cluster it joins yet; \
                 ask another node, or again in a moment",
            );
            return self.answer(waiter, reply, out);
        }
        let key = request.key().clone();
        let partition = self.partition_of(&key);
        let n = self.n_for(&key);
        let props = self.cfg.bucket(key.bucket());
        let direct = props.write_path == WritePath::Direct && props.mode == ConflictMode::Lww;
        let level = |q: Quorum, bucket: Option<Quorum>, default: Quorum| {
            q.resolve(n, bucket.unwrap_or(default))
        };
        match &request {
            Request::ListKeys { .. } => {
                self.start_listing(&mut Step { store, now_ms, out }, waiter, request)
            }
            Request::Inspect { .. } => {
                let cx = &mut Step { store, now_ms, out };
                self.start_inspect(cx, waiter, key, partition, n)
            }
            Request::Get { r, .. }
            | Request::SessionGet { r, .. }
            | Request::CounterGet { r, .. }
            | Request::SetGet { r, .. }
            | Request::MapGet { r, .. }
            | Request::Read { r, .. } => match level(*r, props.r, self.cfg.r) {
                Ok(needed) => {
                    let route = Route {
                        partition,
                        n,
                        needed,
                        mode: props.mode,
                        direct,
                    };
                    self.start_read(&mut Step { store, now_ms, out }, waiter, request, route)
                }
                Err(e) => self.answer(waiter, Reply::error(ErrorKind::BadRequest, e), out),
            },
            Request::Put { w, .. }
            | Request::Overwrite { w, .. }
            | Request::CounterAdd { w, .. }
            | Request::SetUpdate { w, .. }
            | Request::Delete { w, .. }
            | Request::MapUpdate { w, .. }
            | Request::Restore { w, .. } => {
                let needed = match level(*w, props.w, self.cfg.w) {
                    Ok(needed) => needed,
                    Err(e) => {
                        return self.answer(waiter, Reply::error(ErrorKind::BadRequest, e), out);
                    }
                };
                let targets = self.targets(partition, n);
                let route = Route {
                    partition,
                    n,
                    needed,
                    mode: props.mode,
                    direct,
                };
                if direct && written_kind(&request) != ObjectKind::Register {
                    // A direct write reads nothing, so it could not refuse a key of another
                    // kind: such a bucket holds registers alone.
                    let message = format!(
                        "bucket {} takes direct writes and holds registers only; counters, sets and maps belong in another bucket",
                        String::from_utf8_lossy(key.bucket())
                    );
                    return self.answer(waiter, Reply::error(ErrorKind::BadRequest, message), out);
                }
                if direct && matches!(request, Request::Put { .. } | Request::Overwrite { .. }) {
                    let cx = &mut Step { store, now_ms, out };
                    return self.coordinate_direct(cx, waiter, request, route, targets);
                }
                // The coordinator issues the new dot (or counter total) under its own actor,
                // on top of its own copy. A primary keeps its copy; a fallback's is handed over
                // and deleted later, and a fallback coordinating again from an empty copy would
                // reissue dots and totals it already used: an acknowledged write silently lost
                // (found by the simulator). So while some primary is up (targets list up
                // primaries first), only a primary coordinates; a fallback does only when every
                // primary is down.
                let primary_up = targets.first().is_some_and(|(_, hint)| hint.is_none());
                let coordinates_here = targets
                    .iter()
                    .any(|(node, hint)| *node == self.cfg.id && (hint.is_none() || !primary_up));
                match (&waiter, targets.first()) {
                    // A write that arrives elsewhere goes to the first target.
                    (Waiter::Local(client), Some((first, _)))
                        if !coordinates_here && !forwarded =>
                    {
                        let (client, to) = (*client, first.clone());
                        let req = self.new_req();
                        self.stats.forwarded += 1;
                        self.pending.insert(
                            req,
                            Pending::Forwarded {
                                client,
                                deadline_ms: now_ms
                                    + self.cfg.request_timeout_ms * SLOW_DEADLINE_TIMEOUTS,
                            },
                        );
                        out.push(Output::Send {
                            to,
                            message: Message::Forward {
                                req,
                                request: Box::new(request),
                            },
                        });
                    }
                    // A forwarded write is coordinated here even if this node's view disagrees
                    // that it is a replica, rather than bounce it around.
                    _ => {
                        let cx = &mut Step { store, now_ms, out };
                        self.coordinate_write(cx, waiter, request, route, targets)
                    }
                }
            }
        }
    }
}

/// The actors a restored (or restored-into) state names: its context's, or a counter's
/// contributors.
pub(super) fn restored_actors(object: &Object) -> usize {
    match object {
        Object::Register(reg) => reg.context().len(),
        Object::Set(set) => set.context().len(),
        Object::Map(map) => map.context().len(),
        Object::Counter(c) => c.contributions().count(),
    }
}
