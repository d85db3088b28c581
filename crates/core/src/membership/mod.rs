//! Membership by heartbeat gossip with failure detection, as a pure state machine.
//!
//! Every member keeps a table of `(generation, heartbeat)` per member. Each gossip round a node
//! bumps its own heartbeat and sends the whole table to a few peers; a receiver keeps the larger
//! pair per member and notes when it last saw each member's pair grow. A member whose pair has
//! not grown for `suspect_after_ms` is suspect, for `down_after_ms` down. A restart bumps the
//! generation, so a returning node is up again at its first gossip. Down members stay in the
//! ring (failures are transient, as in Dynamo); only joining and leaving change it.
//!
//! The design is gossip-style failure detection (van Renesse et al.) rather than SWIM: it lives
//! in the sans-io core, so the simulator runs exactly what the servers run.

use std::sync::Arc;

use driftkv_causal::sorted::SortedMap;

use driftkv_ring::NodeId;
use driftkv_wire::{MemberDigest, MemberInfo, MemberState, Message};

/// Timing of gossip and failure detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipConfig {
    pub interval_ms: u64,
    /// Peers a round sends to (all of them while the cluster is at most twice this).
    pub fanout: usize,
    pub suspect_after_ms: u64,
    pub down_after_ms: u64,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            interval_ms: 300,
            fanout: 4,
            suspect_after_ms: 1_500,
            down_after_ms: 3_000,
        }
    }
}

#[derive(Clone, Debug)]
struct Peer {
    listen: Arc<str>,
    http: Arc<str>,
    generation: u64,
    heartbeat: u64,
    leaving: bool,
    /// Removed by an operator (`Membership::remove`, here or on another node): leaving, gone,
    /// and left out of views for people. Cleared if the member speaks again.
    removed: bool,
    /// When this node last saw the member's `(generation, heartbeat)` grow, or heard from it
    /// directly. `None`: never since this node started (a member remembered from disk).
    heard_ms: Option<u64>,
    /// When a message last came from the member itself (not relayed by another).
    direct_ms: Option<u64>,
    state: MemberState,
}

/// The largest generation any member may claim: a generation counts restarts, so 2^40 is
/// never reached honestly, and a claim above it is refused (bumping it would overflow).
pub const GENERATION_MAX: u64 = 1 << 40;
/// The largest heartbeat any member may claim: one per gossip round, 2^48 rounds is millennia.
pub const HEARTBEAT_MAX: u64 = 1 << 48;
/// How far ahead of what this node knows a heartbeat relayed by a third party may be: about
/// three days of rounds. A member that was cut off longer is believed when it speaks itself.
pub const HEARTBEAT_RELAY_JUMP_MAX: u64 = 1 << 20;

impl Peer {
    /// The state the view gives: a member that announced it is leaving shows as leaving.
    fn shown_state(&self) -> MemberState {
        if self.leaving {
            MemberState::Leaving
        } else {
            self.state
        }
    }
}

/// What a gossip input changed, so the node knows whether to rebuild its ring or persist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The ring's members may have changed: a member was added or removed, or announced that
    /// it is leaving (leaving members own nothing). Nothing else changes the ring: up, suspect
    /// and down members all own their partitions.
    pub members: bool,
    /// A member's up/suspect/down state changed.
    pub states: bool,
    /// Addresses or generations changed: worth persisting.
    pub persist: bool,
}

impl Change {
    fn or(self, other: Change) -> Change {
        Change {
            members: self.members || other.members,
            states: self.states || other.states,
            persist: self.persist || other.persist,
        }
    }
}

/// Why a member was not removed ([`Membership::remove`], `Node::remove_member`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    /// No member of that name.
    #[error("{0}")]
    Unknown(String),
    /// The member may be alive, or this node cannot tell, or it is this node.
    #[error("{0}")]
    Refused(String),
    /// Removed, but the decision could not be stored: it holds until this node restarts, and
    /// gossip has carried it to the others.
    #[error("{0}")]
    Storage(String),
}

/// A member as persisted, so a restarted node knows its cluster before anyone answers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remembered {
    pub id: NodeId,
    pub listen: String,
    pub http: String,
    pub generation: u64,
    /// It announced it was leaving: after a restart it stays out of the ring.
    pub leaving: bool,
}

/// A [`Remembered`] borrowed from the table, for writing one: it encodes exactly as the owned
/// one does (a thousand members are written without copying two addresses each).
#[derive(Debug, serde::Serialize)]
pub struct RememberedRef<'a> {
    pub id: &'a NodeId,
    pub listen: &'a str,
    pub http: &'a str,
    pub generation: u64,
    pub leaving: bool,
}

pub struct Membership {
    me: NodeId,
    cfg: GossipConfig,
    /// Every member by id, this node included: one sorted vector, walked whole by every gossip
    /// message and round (a `BTreeMap` chased pointers for it).
    peers: SortedMap<NodeId, Peer>,
    /// Addresses to contact while no peer is up (the `--join` list).
    seeds: Vec<String>,
    next_round_ms: u64,
    /// No member's state can change by the clock before this: the earliest time a member last
    /// heard from crosses `suspect_after_ms` or `down_after_ms`. Hearing from a member only
    /// moves its crossings later, or, for one that was down, to `now + suspect_after_ms`; so
    /// failure detection walks the table when something is due, not on every tick (a thousand
    /// members times a tick every few milliseconds adds up).
    next_detect_ms: u64,
    cursor: usize,
    /// The list the last gossip carried, for the next round to update in place.
    last_gossip: Option<Arc<[MemberDigest]>>,
    /// Once a caller sets the view by hand, gossip no longer changes it (tests, fixed views).
    pinned: bool,
}

impl Membership {
    pub fn new(
        me: NodeId,
        listen: String,
        http: String,
        generation: u64,
        cfg: GossipConfig,
        seeds: Vec<String>,
        remembered: Vec<Remembered>,
    ) -> Membership {
        let mut peers = SortedMap::new();
        let mut was_leaving = false;
        for r in remembered {
            if r.id == me {
                // A node that restarts in the middle of leaving goes on leaving.
                was_leaving = r.leaving;
                continue;
            }
            peers.insert(
                r.id,
                Peer {
                    listen: r.listen.into(),
                    http: r.http.into(),
                    generation: r.generation,
                    heartbeat: 0,
                    leaving: r.leaving,
                    removed: false,
                    heard_ms: None,
                    direct_ms: None,
                    state: MemberState::Down,
                },
            );
        }
        peers.insert(
            me.clone(),
            Peer {
                listen: listen.into(),
                http: http.into(),
                generation,
                heartbeat: 0,
                leaving: false,
                removed: false,
                heard_ms: Some(0),
                direct_ms: None,
                state: MemberState::Up,
            },
        );
        if was_leaving && let Some(p) = peers.get_mut(&me) {
            p.leaving = true;
        }
        // Where this node's walk of the others starts: its own place, from its name. Had every
        // node started at the first member, every round of a large cluster would send all the
        // gossip to the same few members, and the rest would hear nothing for hundreds of
        // rounds (found in a thousand-node simulation: each node saw two members up).
        let cursor = xxhash_rust::xxh3::xxh3_64(me.as_str().as_bytes()) as usize;
        Membership {
            me,
            cfg,
            peers,
            seeds,
            next_round_ms: 0,
            next_detect_ms: 0,
            cursor,
            last_gossip: None,
            pinned: false,
        }
    }

    /// Every member with its current state, in id order.
    pub fn view(&self) -> Vec<MemberInfo> {
        self.peers
            .iter()
            .map(|(id, p)| MemberInfo {
                id: id.clone(),
                listen: p.listen.clone(),
                http: p.http.clone(),
                state: p.shown_state(),
            })
            .collect()
    }

    /// A member's state as [`Membership::view`] gives it; `None` for a stranger.
    pub fn state(&self, id: &NodeId) -> Option<MemberState> {
        // A small cluster's table is looked through for the id's own allocation first (ids
        // are interned): no name is read, where the ordered search compares names.
        if self.peers.len() <= 16
            && let Some((_, peer)) = self.peers.iter().find(|(k, _)| k.same_allocation(id))
        {
            return Some(peer.shown_state());
        }
        self.peers.get(id).map(Peer::shown_state)
    }

    /// How many members this node knows, itself included (never fewer than one).
    pub fn count(&self) -> usize {
        self.peers.len()
    }

    /// The members that own partitions (all but the leaving ones, up or down), in id order.
    pub fn owners(&self) -> impl Iterator<Item = &NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.leaving)
            .map(|(id, _)| id)
    }

    /// What [`Membership::remembered`] gives, borrowed (for writing it).
    pub fn remembered_refs(&self) -> Vec<RememberedRef<'_>> {
        self.peers
            .iter()
            .map(|(id, p)| RememberedRef {
                id,
                listen: &p.listen,
                http: &p.http,
                generation: p.generation,
                leaving: p.leaving,
            })
            .collect()
    }

    #[cfg(test)]
    pub fn remembered(&self) -> Vec<Remembered> {
        self.peers
            .iter()
            .map(|(id, p)| Remembered {
                id: id.clone(),
                listen: p.listen.to_string(),
                http: p.http.to_string(),
                generation: p.generation,
                leaving: p.leaving,
            })
            .collect()
    }

    pub fn address(&self, id: &NodeId) -> Option<&str> {
        self.peers
            .get(id)
            .map(|p| &*p.listen)
            .filter(|a| !a.is_empty())
    }

    /// Replaces the view by hand and stops gossip from changing it.
    pub fn pin(&mut self, members: &[MemberInfo]) {
        self.pinned = true;
        let mine = self.peers.get(&self.me).cloned();
        // Built in one go (sorted, then laid out), not member by member: a thousand-node view
        // is set on every node of a simulated cluster. A name listed twice keeps its last entry.
        self.peers = members
            .iter()
            .map(|m| {
                let peer = Peer {
                    listen: m.listen.clone(),
                    http: m.http.clone(),
                    generation: 0,
                    heartbeat: 0,
                    leaving: m.state == MemberState::Leaving,
                    removed: false,
                    heard_ms: None,
                    direct_ms: None,
                    state: if m.state == MemberState::Leaving {
                        MemberState::Up
                    } else {
                        m.state
                    },
                };
                (m.id.clone(), peer)
            })
            .collect();
        let me = self
            .peers
            .get_or_insert_with(self.me.clone(), || mine.unwrap());
        me.state = MemberState::Up;
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// This node is leaving: gossip says so from now on.
    pub fn set_leaving(&mut self) {
        if let Some(me) = self.peers.get_mut(&self.me) {
            me.leaving = true;
        }
    }

    /// Takes a down member out of the ring for good, on its behalf: it is marked as leaving
    /// under the next generation of its life, which gossip carries to every member (a member
    /// still in contact with it would refuse that, but it is down). Refused for this node, a
    /// stranger, and a member that is up or suspect (a live member leaves by itself). A member
    /// already out is left as it is.
    ///
    /// If the removed node is started again with its data, its own gossip (a later heartbeat
    /// of that generation, not leaving) makes it a member again, and anti-entropy reconciles
    /// its data: removing is for members that will not come back.
    pub fn remove(&mut self, id: &NodeId) -> Result<Change, RemoveError> {
        if *id == self.me {
            return Err(RemoveError::Refused(format!(
                "{id} is this node: a member that is up leaves by itself (`driftkv leave`)"
            )));
        }
        let Some(p) = self.peers.get_mut(id) else {
            return Err(RemoveError::Unknown(format!(
                "{id} is not a member of this cluster"
            )));
        };
        if p.state != MemberState::Down {
            return Err(RemoveError::Refused(format!(
                "{id} is {}: only a member that is down can be removed (a live one leaves by itself: `driftkv leave`)",
                p.shown_state().name()
            )));
        }
        if p.leaving {
            return Ok(Change::default());
        }
        if p.heard_ms.is_none() {
            // Every member is down to a node that just started: that is no sign it died.
            return Err(RemoveError::Refused(format!(
                "this node has not heard from {id} since it started, so it cannot tell that {id} is down: ask a member that has been up longer"
            )));
        }
        if p.generation >= GENERATION_MAX {
            return Err(RemoveError::Refused(format!(
                "{id}'s generation is at its limit"
            )));
        }
        p.generation += 1;
        p.heartbeat = 0;
        p.leaving = true;
        p.removed = true;
        Ok(Change {
            members: true,
            states: true,
            persist: true,
        })
    }

    /// Whether `id` was removed ([`Membership::remove`], here or by another node): views for
    /// people leave it out. A member that left by itself still shows as leaving.
    pub fn removed(&self, id: &NodeId) -> bool {
        self.peers.get(id).is_some_and(|p| p.removed)
    }

    /// Every removed member, for the record a restarted node reads back
    /// ([`Membership::mark_removed`]).
    pub fn removed_ids(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.removed)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Marks members this node knew as removed before it restarted.
    pub fn mark_removed(&mut self, ids: &[NodeId]) {
        for id in ids {
            if let Some(p) = self.peers.get_mut(id).filter(|p| p.leaving) {
                p.removed = true;
            }
        }
    }

    fn digests(&self) -> Vec<MemberDigest> {
        self.peers
            .iter()
            .map(|(id, p)| MemberDigest {
                id: id.clone(),
                listen: p.listen.clone(),
                http: p.http.clone(),
                generation: p.generation,
                heartbeat: p.heartbeat,
                leaving: p.leaving,
            })
            .collect()
    }

    /// The table as gossip. The last round's list is updated in place when no message holds
    /// it any more (the usual case: gossip is delivered well within a round) and the members
    /// are the same: a thousand-member list is rewritten, not rebuilt with three shared strings
    /// taken (and later released) per member.
    fn gossip(&mut self) -> Message {
        // A heartbeat of 0 while leaving is what a removal looks like (`removal`): a node
        // restarted while leaving and answering gossip before its first round says 1.
        if let Some(me) = self.peers.get_mut(&self.me)
            && me.leaving
            && me.heartbeat == 0
        {
            me.heartbeat = 1;
        }
        let reused = self
            .last_gossip
            .as_mut()
            .and_then(Arc::get_mut)
            .is_some_and(|list| {
                list.len() == self.peers.len()
                    && list.iter_mut().zip(self.peers.iter()).all(|(d, (id, p))| {
                        if d.id != *id {
                            return false;
                        }
                        d.generation = p.generation;
                        d.heartbeat = p.heartbeat;
                        d.leaving = p.leaving;
                        if !Arc::ptr_eq(&d.listen, &p.listen) {
                            d.listen = p.listen.clone();
                        }
                        if !Arc::ptr_eq(&d.http, &p.http) {
                            d.http = p.http.clone();
                        }
                        true
                    })
            });
        if !reused {
            self.last_gossip = Some(self.digests().into());
        }
        Message::Gossip {
            members: self.last_gossip.clone().expect("just set"),
        }
    }

    /// Advances failure detection and, when a round is due, returns gossip to send: to peers by
    /// id, and to seed addresses while no peer is up.
    pub fn tick(&mut self, now_ms: u64) -> (Change, Vec<NodeId>, Vec<String>, Option<Message>) {
        if self.pinned {
            return (Change::default(), Vec::new(), Vec::new(), None);
        }
        let change = self.detect(now_ms);
        if now_ms < self.next_round_ms {
            return (change, Vec::new(), Vec::new(), None);
        }
        self.next_round_ms = now_ms + self.cfg.interval_ms;
        if let Some(me) = self.peers.get_mut(&self.me) {
            me.heartbeat += 1;
            me.heard_ms = Some(now_ms);
        }
        // Borrowed: only the few picked are cloned (a large cluster's round picks 4 of many).
        let others: Vec<&NodeId> = self.peers.keys().filter(|id| **id != self.me).collect();
        let targets: Vec<NodeId> = if others.len() <= 2 * self.cfg.fanout {
            others.iter().map(|id| (*id).clone()).collect()
        } else {
            let start = self.cursor % others.len();
            let picked = (0..self.cfg.fanout)
                .map(|i| others[(start + i) % others.len()].clone())
                .collect();
            self.cursor = (start + self.cfg.fanout) % others.len();
            picked
        };
        let lonely = !self
            .peers
            .iter()
            .any(|(id, p)| *id != self.me && p.state == MemberState::Up);
        let seeds = if lonely {
            self.seeds.clone()
        } else {
            Vec::new()
        };
        (change, targets, seeds, Some(self.gossip()))
    }

    fn detect(&mut self, now_ms: u64) -> Change {
        let mut change = Change::default();
        if now_ms < self.next_detect_ms {
            return change;
        }
        let mut next = u64::MAX;
        for (id, p) in self.peers.iter_mut() {
            if *id == self.me {
                continue;
            }
            let state = match p.heard_ms {
                None => MemberState::Down,
                Some(t) if now_ms.saturating_sub(t) >= self.cfg.down_after_ms => MemberState::Down,
                Some(t) if now_ms.saturating_sub(t) >= self.cfg.suspect_after_ms => {
                    next = next.min(t.saturating_add(self.cfg.down_after_ms));
                    MemberState::Suspect
                }
                Some(t) => {
                    next = next.min(t.saturating_add(self.cfg.suspect_after_ms));
                    MemberState::Up
                }
            };
            if state != p.state {
                p.state = state;
                change.states = true;
            }
        }
        self.next_detect_ms = next;
        change
    }

    /// A member was heard from at `now_ms`: detection is due when that could expire.
    fn heard_at(&mut self, now_ms: u64) {
        self.next_detect_ms = self
            .next_detect_ms
            .min(now_ms.saturating_add(self.cfg.suspect_after_ms));
    }

    /// A message arrived from `from`: it is alive.
    pub fn heard_from(&mut self, from: &NodeId, now_ms: u64) -> Change {
        if self.pinned {
            return Change::default();
        }
        let Some(p) = self.peers.get_mut(from).filter(|_| *from != self.me) else {
            return Change::default();
        };
        p.heard_ms = Some(now_ms);
        p.direct_ms = Some(now_ms);
        let was = std::mem::replace(&mut p.state, MemberState::Up);
        self.heard_at(now_ms);
        Change {
            states: was != MemberState::Up,
            ..Change::default()
        }
    }

    /// Merges a peer's gossip. Returns what changed and, when the sender was new or thought
    /// down, gossip to answer it with so it learns the cluster at once.
    pub fn on_gossip(
        &mut self,
        from: &NodeId,
        digests: &[MemberDigest],
        now_ms: u64,
    ) -> (Change, Option<Message>) {
        if self.pinned {
            return (Change::default(), None);
        }
        let sender_was_up = self
            .peers
            .get(from)
            .is_some_and(|p| p.state == MemberState::Up);
        let mut change = Change::default();
        let mut heard = false;
        // Gossip lists members in id order, as the table is kept: one walk of both merges
        // them, and in a settled cluster every step meets the very same id on both sides (a
        // pointer comparison, ids being shared). What the walk does not meet (a new member, or
        // input out of order) is looked up after it, so any order is merged correctly.
        let mut unmatched: Vec<&MemberDigest> = Vec::new();
        let ctx = DigestContext {
            from,
            now_ms,
            contact_ms: self.cfg.down_after_ms,
        };
        {
            let mut ours = self.peers.iter_mut().peekable();
            for d in digests.iter().filter(|d| sane(d)) {
                while ours.next_if(|(id, _)| **id < d.id).is_some() {}
                match ours.peek_mut() {
                    Some((id, p)) if **id == d.id => {
                        heard |= merge_digest(**id == self.me, p, d, &ctx, &mut change);
                        ours.next();
                    }
                    _ => unmatched.push(d),
                }
            }
        }
        let mut fresh: Vec<&MemberDigest> = Vec::new();
        for d in unmatched {
            match self.peers.get_mut(&d.id) {
                Some(p) => heard |= merge_digest(d.id == self.me, p, d, &ctx, &mut change),
                None => fresh.push(d),
            }
        }
        if !fresh.is_empty() {
            // New members come by the hundred while a large cluster forms: merged in at once.
            let added = fresh
                .iter()
                .map(|d| {
                    let removed = removal(d);
                    let peer = Peer {
                        listen: d.listen.clone(),
                        http: d.http.clone(),
                        generation: d.generation,
                        heartbeat: d.heartbeat,
                        leaving: d.leaving,
                        removed,
                        heard_ms: (!removed).then_some(now_ms),
                        direct_ms: None,
                        state: if removed {
                            MemberState::Down
                        } else {
                            MemberState::Up
                        },
                    };
                    (d.id.clone(), peer)
                })
                .collect();
            self.peers.insert_all(added);
            heard = true;
            change = change.or(Change {
                members: true,
                states: true,
                persist: true,
            });
        }
        if heard {
            self.heard_at(now_ms);
        }
        change = change.or(self.heard_from(from, now_ms));
        let answer = (!sender_was_up).then(|| self.gossip());
        (change, answer)
    }
}

/// Where a gossip message came from, for judging what it says about third parties.
struct DigestContext<'a> {
    from: &'a NodeId,
    now_ms: u64,
    /// A member heard from directly within this long speaks for itself.
    contact_ms: u64,
}

/// Whether a digest's numbers are possible at all: absurd ones (a generation of 2^64 - 1,
/// which would stop the member's real gossip from ever counting again) are ignored whoever
/// sends them.
fn sane(d: &MemberDigest) -> bool {
    d.generation <= GENERATION_MAX
        && d.heartbeat <= HEARTBEAT_MAX
        && crate::node::is_node_name(d.id.as_str())
        && d.listen.len() <= ADDRESS_BYTES_MAX
        && d.http.len() <= ADDRESS_BYTES_MAX
}

/// The longest address a digest may give (a host name and a port).
const ADDRESS_BYTES_MAX: usize = 300;

/// Merges one member's gossip into what this node knows of it (`is_me`: this node's own entry).
/// Returns whether the member was heard from anew.
///
/// Gossip relays heartbeats (that is how a large cluster learns who is alive without everyone
/// talking to everyone), but a member's life is its own: a new generation (a restart) or a
/// change of its leaving flag is taken from a third party only while this node has not heard
/// from the member itself recently. A live member in contact cannot be declared restarted or
/// leaving by another; a member that left and stopped still becomes known as gone by relay.
fn merge_digest(
    is_me: bool,
    p: &mut Peer,
    d: &MemberDigest,
    ctx: &DigestContext<'_>,
    change: &mut Change,
) -> bool {
    if is_me {
        // Someone remembers a life of this node ahead of this one (the data directory was
        // lost, so the generation restarted): outgrow it, or peers would ignore this node's
        // gossip as old news. Only this node advances its own pair, so a pair above its own
        // can only come from an earlier life.
        if (d.generation, d.heartbeat) > (p.generation, p.heartbeat) {
            p.generation = d.generation.saturating_add(1);
            p.heartbeat = 0;
            change.persist = true;
        }
        return false;
    }
    if (d.generation, d.heartbeat) <= (p.generation, p.heartbeat) {
        return false;
    }
    let direct = *ctx.from == d.id;
    if !direct {
        let in_contact = p
            .direct_ms
            .is_some_and(|t| ctx.now_ms.saturating_sub(t) < ctx.contact_ms);
        let life_changes = d.generation != p.generation || d.leaving != p.leaving;
        if life_changes && in_contact {
            return false;
        }
        if d.generation == p.generation
            && d.heartbeat.saturating_sub(p.heartbeat) > HEARTBEAT_RELAY_JUMP_MAX
        {
            return false;
        }
    }
    if d.generation != p.generation || d.listen != p.listen || d.http != p.http {
        change.persist = true;
    }
    if d.leaving != p.leaving {
        // Kept on disk too: a member that left stays out of the ring after this node restarts.
        change.members = true;
        change.states = true;
        change.persist = true;
    }
    p.generation = d.generation;
    p.heartbeat = d.heartbeat;
    if p.listen != d.listen {
        p.listen = d.listen.clone();
    }
    if p.http != d.http {
        p.http = d.http.clone();
    }
    p.leaving = d.leaving;
    if removal(d) {
        // Another node removed this member (`Membership::remove`): no sign of its life.
        if !p.removed {
            p.removed = true;
            change.persist = true;
        }
        return false;
    }
    if !d.leaving {
        // It speaks again (started with its data): a member once more.
        p.removed = false;
    }
    p.heard_ms = Some(ctx.now_ms);
    if p.state != MemberState::Up {
        p.state = MemberState::Up;
        change.states = true;
    }
    true
}

/// Whether a digest announces that another node removed the member: leaving, at heartbeat 0
/// of a generation. A member's own gossip never says heartbeat 0 (each round counts one
/// before it is sent), so this is no sign the member is alive.
fn removal(d: &MemberDigest) -> bool {
    d.leaving && d.heartbeat == 0
}

#[cfg(test)]
mod tests;
