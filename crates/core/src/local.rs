//! An in-process cluster: several nodes wired by a FIFO network that drops what is sent to or
//! from a node marked down. Deterministic and clock-free (time is a number the caller
//! advances). Used by protocol tests and by the demonstration before real nodes exist.

use std::collections::VecDeque;

use bytes::Bytes;
use driftkv_causal::VersionVector;
use driftkv_ring::NodeId;
use driftkv_wire::{Key, MemberInfo, MemberState, Message, Quorum, Reply, Request};

use crate::node::register_values;
use crate::{Driver, Durability, Input, MemStore, Node, NodeConfig, Output};

pub struct LocalCluster {
    pub nodes: Vec<Node>,
    pub stores: Vec<MemStore>,
    /// Each node's loop: a step is synced (by the failed-sync policy) before its outputs leave.
    pub drivers: Vec<Driver>,
    pub up: Vec<bool>,
    pub queue: VecDeque<(NodeId, NodeId, Message)>,
    pub replies: Vec<(usize, u64, Reply)>,
    pub now_ms: u64,
    next_client: u64,
}

/// The causal context a reply carries (a read's, a write's, a not-found's); panics on any
/// other reply, as tests want.
pub fn reply_context(reply: &Reply) -> VersionVector {
    match reply {
        Reply::Values { context, .. }
        | Reply::Written { context }
        | Reply::NotFound { context } => context.clone(),
        other => panic!("expected a context, got {other:?}"),
    }
}

pub fn name(i: usize) -> NodeId {
    NodeId::from(format!("n{}", i + 1))
}

impl LocalCluster {
    pub fn new(count: usize, tweak: impl Fn(&mut NodeConfig)) -> LocalCluster {
        let mut nodes = Vec::new();
        let mut stores = Vec::new();
        for i in 0..count {
            let mut cfg = NodeConfig::new(name(i));
            tweak(&mut cfg);
            let mut store = MemStore::new(Durability::GroupCommit);
            nodes.push(Node::open(cfg, &mut store).unwrap());
            stores.push(store);
        }
        let mut h = LocalCluster {
            nodes,
            stores,
            drivers: (0..count).map(|_| Driver::new()).collect(),
            up: vec![true; count],
            queue: VecDeque::new(),
            replies: Vec::new(),
            now_ms: 1_000,
            next_client: 1,
        };
        h.refresh_membership();
        h
    }

    pub fn index(&self, id: &NodeId) -> usize {
        self.nodes.iter().position(|n| n.id() == id).unwrap()
    }

    pub fn refresh_membership(&mut self) {
        let members: Vec<MemberInfo> = (0..self.nodes.len())
            .map(|i| MemberInfo {
                id: name(i),
                listen: "".into(),
                http: "".into(),
                state: if self.up[i] {
                    MemberState::Up
                } else {
                    MemberState::Down
                },
            })
            .collect();
        for n in &mut self.nodes {
            n.set_members(members.clone());
        }
    }

    pub fn set_up(&mut self, i: usize, up: bool) {
        self.up[i] = up;
        self.refresh_membership();
    }

    pub fn step(&mut self, i: usize, input: Input) {
        let (node, store, driver) = (
            &mut self.nodes[i],
            &mut self.stores[i],
            &mut self.drivers[i],
        );
        driver.step(node, store, self.now_ms, input);
        let mut out = Vec::new();
        // A failed sync (a test injects them) is the driver's to handle, by its failed-sync
        // policy, and it counts them (`Driver::counts`).
        driver.commit(store, &mut out).ok();
        // A released confirmation is sent as what it wraps.
        for o in out.into_iter().map(Output::into_plain) {
            match o {
                Output::Send { to, message } => self.queue.push_back((name(i), to, message)),
                // Seeds are for real networks: this cluster's view is set by hand.
                Output::Dial { .. } => {}
                Output::Reply { client, reply } => self.replies.push((i, client, reply)),
                Output::Durable(_) => unreachable!("into_plain unwrapped it"),
            }
        }
    }

    /// Delivers messages until the network is quiet (bounded: a protocol that never goes quiet
    /// is a bug, and says so).
    pub fn deliver_all(&mut self) {
        for _ in 0..100_000 {
            let Some((from, to, message)) = self.queue.pop_front() else {
                return;
            };
            let (f, t) = (self.index(&from), self.index(&to));
            if !self.up[f] || !self.up[t] {
                continue; // a down node neither sends nor receives
            }
            self.step(t, Input::Message { from, message });
        }
        panic!("the network never went quiet");
    }

    pub fn tick(&mut self, advance_ms: u64) {
        self.now_ms += advance_ms;
        for i in 0..self.nodes.len() {
            if self.up[i] {
                self.step(i, Input::Tick);
            }
        }
        self.deliver_all();
    }

    /// Sends a request to node `i` and runs the network (and time, for timeouts) until it
    /// is answered.
    pub fn request(&mut self, i: usize, request: Request) -> Reply {
        let client = self.next_client;
        self.next_client += 1;
        self.step(i, Input::Request { client, request });
        for _ in 0..100 {
            self.deliver_all();
            if let Some(at) = self
                .replies
                .iter()
                .position(|(n, c, _)| *n == i && *c == client)
            {
                return self.replies.remove(at).2;
            }
            self.tick(100);
        }
        panic!("request to node {i} never answered");
    }

    pub fn put(
        &mut self,
        i: usize,
        key: &str,
        value: &str,
        context: VersionVector,
        w: Quorum,
    ) -> Reply {
        let request = Request::Put {
            key: Key::default_bucket(key.to_string()),
            value: Some(Bytes::from(value.to_string())),
            context,
            expires_ms: None,
            w,
        };
        self.request(i, request)
    }

    pub fn get(&mut self, i: usize, key: &str, r: Quorum) -> Reply {
        self.request(
            i,
            Request::Get {
                key: Key::default_bucket(key.to_string()),
                r,
            },
        )
    }

    /// Each node's own copy of `key` (live values, sorted).
    pub fn copies(&mut self, key: &str) -> Vec<Vec<String>> {
        let key = Key::default_bucket(key.to_string());
        (0..self.nodes.len())
            .map(|i| {
                let mut v: Vec<String> = self.nodes[i]
                    .local_object(&self.stores[i], &key)
                    .unwrap()
                    .map(|o| {
                        register_values(&o)
                            .iter()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                v.sort();
                v
            })
            .collect()
    }
}
