//! Membership: the ring of the current members by which the simulator judges every key's
//! primaries, joins and leaves as they happen, and a leaving node's exit once drained.

use driftkv_ring::{NodeId, Ring, RingConfig};
use driftkv_wire::{Key, MemberInfo, MemberState};

use super::nodes::Life;
use super::time::US_PER_MS;
use super::{LEAVE_GRACE_MS, Sim};

pub(super) struct Membership {
    /// The ring of the current members: the initial ones plus those that joined, minus those
    /// leaving or gone.
    pub(super) ring: Ring,
    /// See `Sim::static_members`.
    static_members: Vec<MemberInfo>,
}

impl Membership {
    /// The ring of the initial members.
    pub(super) fn new(ring_cfg: RingConfig, initial: &[&String]) -> Membership {
        let ring = Ring::new(ring_cfg, initial.iter().map(|n| NodeId::from(n.as_str())))
            .expect("validated: the ring config is in range and there are members");
        Membership {
            ring,
            static_members: Vec::new(),
        }
    }
}

impl Sim<'_> {
    /// Every node as a member, up, in id order: the view each node of a static cluster is
    /// given at boot. Built once (a thousand nodes booting each made a thousand entries with
    /// two fresh address strings each); the view never changes.
    pub(super) fn static_members(&mut self) -> Vec<MemberInfo> {
        if self.membership.static_members.is_empty() {
            let mut members: Vec<MemberInfo> = self
                .nodes
                .iter()
                .map(|n| MemberInfo {
                    id: n.name.clone(),
                    listen: n.cfg.listen.as_str().into(),
                    http: n.cfg.http.as_str().into(),
                    state: MemberState::Up,
                })
                .collect();
            members.sort_by(|a, b| a.id.cmp(&b.id));
            self.membership.static_members = members;
        }
        self.membership.static_members.clone()
    }

    /// The key's N primaries on the simulator's ring of the current members.
    pub(super) fn primaries_of(&self, key: &Key) -> Vec<usize> {
        let ring = &self.membership.ring;
        let p = ring.partition_for_hash(key.key_hash());
        ring.owners(p)
            .iter()
            .map(|id| {
                self.sc
                    .node_index(id.as_str())
                    .expect("ring members are nodes")
            })
            .collect()
    }

    /// A join fault on `node` begins: it boots (unless a crash fault holds it down) and joins
    /// through its seeds.
    pub(super) fn on_join(&mut self, node: usize, start: bool) {
        if !start || self.nodes[node].life != Life::Waiting {
            return;
        }
        self.nodes[node].life = Life::Member;
        let seeds = self.nodes[node].cfg.seeds.join(", ");
        let name = self.nodes[node].name.to_string();
        if self.nodes[node].crash_depth == 0 {
            self.boot(node);
        }
        self.note(format!(
            "{name} boots and joins through its seeds ({seeds})"
        ));
        self.membership_changed();
    }

    /// A leave fault on `node` begins: it is told to leave, now or as it comes back.
    pub(super) fn on_leave(&mut self, node: usize, start: bool) {
        if !start || self.nodes[node].life != Life::Member {
            return;
        }
        self.nodes[node].life = Life::Leaving;
        let name = self.nodes[node].name.to_string();
        let sn = &mut self.nodes[node];
        let what = match sn.node.as_mut() {
            Some(n) => {
                // The leave is the operator's, on a working disk (see `boot`).
                let faults = sn.store.take_faults();
                n.leave(&mut sn.store).expect("MemStore never fails");
                sn.store.set_faults(faults);
                "is told to leave: it hands its partitions over"
            }
            None => "is told to leave while down: it leaves once it is back",
        };
        self.note(format!("{name} {what}"));
        self.membership_changed();
    }

    /// A leaving node exits for good once it has been drained (no data, no hints) for
    /// `LEAVE_GRACE_MS` and its last outputs are out.
    pub(super) fn maybe_exit(&mut self, i: usize) {
        let now = self.time.now_us;
        let sn = &mut self.nodes[i];
        let Some(node) = sn.node.as_ref() else {
            return;
        };
        if !node.drained(&sn.store) {
            sn.drained_since_us = None;
            return;
        }
        let since = *sn.drained_since_us.get_or_insert(now);
        if now < since + LEAVE_GRACE_MS * US_PER_MS || sn.syncing || !sn.driver.is_idle() {
            return;
        }
        let node = sn.node.take();
        sn.life = Life::Gone;
        // Messages still on their way to it find it gone.
        sn.epoch += 1;
        sn.forget_reads();
        let name = sn.name.to_string();
        if let Some(node) = node {
            self.retired.add(node.stats());
        }
        self.note(format!(
            "{name} is drained (no data, no hints) and leaves the cluster for good"
        ));
    }

    /// A node joined or started leaving: the ring of the current members gives every key its
    /// primaries from now on, and the oracle's versions being timed follow.
    fn membership_changed(&mut self) {
        let members: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.life == Life::Member)
            .map(|n| n.name.clone())
            .collect();
        let ring_cfg = self.membership.ring.config().clone();
        self.membership.ring =
            Ring::new(ring_cfg, members).expect("validated: a member is always left");
        let now = self.time.now_us;
        for slot in 0..self.oracle.hist.keys.len() {
            let primaries = self.primaries_of(&self.oracle.hist.keys[slot].key);
            self.oracle.primaries_changed(slot, primaries, now);
        }
    }
}
