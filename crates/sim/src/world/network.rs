//! The network between nodes: per-kind delays, regions, loss, duplication, reordering, FIFO
//! links, cut links, and what happened to every kind of message.

use std::collections::BTreeMap;

use driftkv_core::Input;
use driftkv_wire::Message;

use super::Sim;
use super::events::Event;
use super::time::us;
use crate::dist::Delay;
use crate::rng::Rng;
use crate::scenario::Scenario;

/// The network's state: links, faults in force on it, and its counts.
pub(super) struct Network {
    /// Draws every message's fate and delay (and the nodes' first tick phases).
    pub(super) rng: Rng,
    gossip_delay: Delay,
    anti_entropy_delay: Delay,
    nodes: usize,
    /// Per directed link `(from, to)` at `from * nodes + to`: the cut faults in force on it.
    cut: Vec<u32>,
    /// Message loss added by the loss faults in force.
    extra_loss: f64,
    /// Per directed link: when its last message arrives (FIFO links deliver in order).
    last_on_link: Vec<u64>,
    /// Per message kind (indexed by [`message_kind`]); `None` until one is sent.
    counts: [Option<MessageCounts>; MESSAGE_NAMES.len()],
    /// Messages delivered, of every kind.
    pub(super) delivered: u64,
}

impl Network {
    pub(super) fn new(sc: &Scenario, nodes: usize) -> Network {
        Network {
            rng: Rng::stream(sc.seed, "network"),
            gossip_delay: sc.delays.gossip.clone().unwrap_or(sc.delays.write.clone()),
            anti_entropy_delay: sc
                .delays
                .anti_entropy
                .clone()
                .unwrap_or(sc.delays.write.clone()),
            nodes,
            cut: vec![0; nodes * nodes],
            extra_loss: 0.0,
            last_on_link: vec![0; nodes * nodes],
            counts: Default::default(),
            delivered: 0,
        }
    }

    fn link(&self, from: usize, to: usize) -> usize {
        from * self.nodes + to
    }

    fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut[self.link(from, to)] > 0
    }

    fn counts(&mut self, kind: usize) -> &mut MessageCounts {
        self.counts[kind].get_or_insert_with(MessageCounts::default)
    }

    /// A cut fault on `links` begins (`start`) or heals.
    pub(super) fn cut_links(&mut self, links: &[(usize, usize)], start: bool) {
        for &(a, b) in links {
            let link = self.link(a, b);
            let c = &mut self.cut[link];
            *c = if start { *c + 1 } else { c.saturating_sub(1) };
        }
    }

    /// A loss fault of probability `p` begins (`start`) or heals.
    pub(super) fn change_loss(&mut self, p: f64, start: bool) {
        self.extra_loss = if start {
            self.extra_loss + p
        } else {
            (self.extra_loss - p).max(0.0)
        };
    }

    /// Every cut and loss fault heals (traffic stopped).
    pub(super) fn heal(&mut self) {
        self.cut.iter_mut().for_each(|c| *c = 0);
        self.extra_loss = 0.0;
    }

    /// The counts of every kind of message sent, by name.
    pub(super) fn counts_by_name(&self) -> BTreeMap<&'static str, MessageCounts> {
        MESSAGE_NAMES
            .iter()
            .zip(&self.counts)
            .filter_map(|(name, counts)| counts.clone().map(|c| (*name, c)))
            .collect()
    }

    /// When a message sent at `now_us` from `from` to `to` arrives: its class's delay, the
    /// regions' distance, maybe a reordering delay, and (on FIFO links) never before the
    /// link's last.
    fn arrival(
        &mut self,
        sc: &Scenario,
        now_us: u64,
        (from, to): (usize, usize),
        cross_region: bool,
        class: Class,
        reorder: f64,
    ) -> u64 {
        let dist = match class {
            Class::Write => &sc.delays.write,
            Class::Ack => &sc.delays.ack,
            Class::ReadRequest => &sc.delays.read_request,
            Class::ReadResponse => &sc.delays.read_response,
            Class::Gossip => &self.gossip_delay,
            Class::AntiEntropy => &self.anti_entropy_delay,
        };
        let mut delay_ms = dist.sample(&mut self.rng);
        if cross_region {
            delay_ms += sc.delays.inter_region.sample(&mut self.rng);
        }
        let reordered = self.rng.chance(reorder);
        if reordered {
            delay_ms += sc.network.reorder_delay.sample(&mut self.rng);
        }
        let mut at = now_us + us(delay_ms);
        if sc.network.fifo && !reordered {
            let link = self.link(from, to);
            let last = &mut self.last_on_link[link];
            at = at.max(*last);
            *last = at;
        }
        at
    }
}

/// A node-to-node message on its way, with the lives of both ends when it was sent.
pub(super) struct Delivery {
    from: usize,
    to: usize,
    from_epoch: u64,
    to_epoch: u64,
    message: Message,
}

impl Sim<'_> {
    /// Node `from` sends `message` to node `to`: it is cut, lost, or scheduled to arrive (twice,
    /// if the network duplicates it).
    pub(super) fn send(&mut self, from: usize, to: usize, message: Message) {
        let kind = message_kind(&message);
        self.net.counts(kind).sent += 1;
        if self.net.is_cut(from, to) {
            self.net.counts(kind).cut += 1;
            return;
        }
        let (loss, dup, reorder) = if self.faults.active {
            let net = &self.sc.network;
            (
                1.0 - (1.0 - net.loss) * (1.0 - self.net.extra_loss.min(1.0)),
                net.duplicate,
                net.reorder,
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        if self.net.rng.chance(loss) {
            self.net.counts(kind).lost += 1;
            return;
        }
        let duplicated = self.net.rng.chance(dup);
        let class = class_of(&message);
        let cross_region = self.nodes[from].region != self.nodes[to].region;
        let now_us = self.time.now_us;
        // A duplicate goes first (its own delay), then the message itself.
        if duplicated {
            self.net.counts(kind).duplicated += 1;
            let at = self
                .net
                .arrival(self.sc, now_us, (from, to), cross_region, class, reorder);
            let event = self.deliver_event(from, to, message.clone());
            self.schedule(at, event);
        }
        let at = self
            .net
            .arrival(self.sc, now_us, (from, to), cross_region, class, reorder);
        let event = self.deliver_event(from, to, message);
        self.schedule(at, event);
    }

    fn deliver_event(&self, from: usize, to: usize, message: Message) -> Event {
        Event::Deliver(Box::new(Delivery {
            from,
            to,
            from_epoch: self.nodes[from].epoch,
            to_epoch: self.nodes[to].epoch,
            message,
        }))
    }

    /// A message arrives: dropped if its link is cut now or its receiver's life ended since it
    /// was sent, else handled.
    pub(super) fn on_deliver(&mut self, delivery: Delivery) {
        let Delivery {
            from,
            to,
            from_epoch,
            to_epoch,
            message,
        } = delivery;
        let kind = message_kind(&message);
        if self.net.is_cut(from, to) {
            self.net.counts(kind).cut += 1;
            return;
        }
        if !self.is_up(to) || self.nodes[to].epoch != to_epoch {
            self.net.counts(kind).to_down_node += 1;
            return;
        }
        self.net.counts(kind).delivered += 1;
        self.net.delivered += 1;
        let from_id = self.nodes[from].name.clone();
        self.handle(
            to,
            Input::Message {
                from: from_id,
                message,
            },
            Some((from, from_epoch)),
        );
    }
}

/// The delay class of a node-to-node message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Write,
    Ack,
    ReadRequest,
    ReadResponse,
    Gossip,
    AntiEntropy,
}

fn class_of(m: &Message) -> Class {
    match m {
        Message::Forward { .. }
        | Message::ReplicaWrite { .. }
        | Message::Repair { .. }
        | Message::Purge { .. } => Class::Write,
        Message::ForwardReply { .. }
        | Message::ReplicaWriteAck { .. }
        | Message::TransferAck { .. } => Class::Ack,
        Message::ReplicaRead { .. } | Message::ListRead { .. } => Class::ReadRequest,
        Message::ReplicaReadReply { .. } | Message::ListReadReply { .. } => Class::ReadResponse,
        Message::Gossip { .. } => Class::Gossip,
        Message::AaeRoot { .. }
        | Message::AaeRootDiffers { .. }
        | Message::AaeNotReady { .. }
        | Message::AaeMids { .. }
        | Message::AaeLeaves { .. }
        | Message::AaeKeys { .. }
        | Message::AaeSync { .. }
        | Message::AaeObjects { .. }
        | Message::Transfer { .. } => Class::AntiEntropy,
    }
}

/// Every message kind's name, indexed by [`message_kind`].
pub const MESSAGE_NAMES: [&str; 21] = [
    "forward",
    "forward_reply",
    "replica_write",
    "replica_write_ack",
    "replica_read",
    "replica_read_reply",
    "repair",
    "gossip",
    "aae_root",
    "aae_root_differs",
    "aae_mids",
    "aae_leaves",
    "aae_keys",
    "aae_sync",
    "aae_objects",
    "purge",
    "transfer",
    "transfer_ack",
    "aae_not_ready",
    "list_read",
    "list_read_reply",
];

/// A message's kind as an index into [`MESSAGE_NAMES`].
pub fn message_kind(m: &Message) -> usize {
    match m {
        Message::Forward { .. } => 0,
        Message::ForwardReply { .. } => 1,
        Message::ReplicaWrite { .. } => 2,
        Message::ReplicaWriteAck { .. } => 3,
        Message::ReplicaRead { .. } => 4,
        Message::ReplicaReadReply { .. } => 5,
        Message::Repair { .. } => 6,
        Message::Gossip { .. } => 7,
        Message::AaeRoot { .. } => 8,
        Message::AaeRootDiffers { .. } => 9,
        Message::AaeMids { .. } => 10,
        Message::AaeLeaves { .. } => 11,
        Message::AaeKeys { .. } => 12,
        Message::AaeSync { .. } => 13,
        Message::AaeObjects { .. } => 14,
        Message::Purge { .. } => 15,
        Message::Transfer { .. } => 16,
        Message::TransferAck { .. } => 17,
        Message::AaeNotReady { .. } => 18,
        Message::ListRead { .. } => 19,
        Message::ListReadReply { .. } => 20,
    }
}

pub fn message_name(m: &Message) -> &'static str {
    MESSAGE_NAMES[message_kind(m)]
}

/// What happened to the messages of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageCounts {
    pub sent: u64,
    pub delivered: u64,
    /// Lost to `network.loss` or a fault's loss.
    pub lost: u64,
    /// Dropped by a cut link (at send or while in flight).
    pub cut: u64,
    /// Arrived at a crashed node, or at one restarted since it was sent (its connection died).
    pub to_down_node: u64,
    /// Extra copies the network made.
    pub duplicated: u64,
}
