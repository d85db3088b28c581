//! The settle phase: once traffic stops and everything heals, an optional read sweep, then a
//! poll of every key's primaries until their copies agree and the cluster is quiet (or the
//! settle bound passes).

use driftkv_wire::{Key, Object, Quorum, Request};

use super::Sim;
use super::clients::{ClientOp, Stage};
use super::events::Event;
use super::nodes::Life;
use super::outcomes::describe;
use crate::history::KeyKind;
use crate::scenario::Scenario;

/// How far the run is towards convergence.
pub(super) struct Convergence {
    /// Since when every key's primaries have agreed, at every poll.
    pub(super) converged_since_us: Option<u64>,
    /// The last poll found every key's copies equal and ended the run.
    pub(super) ended_converged: bool,
    /// The read sweep is still to come.
    sweep_pending: bool,
    /// The run ended: no further event is processed.
    pub(super) finished: bool,
}

impl Convergence {
    pub(super) fn new(sc: &Scenario) -> Convergence {
        Convergence {
            converged_since_us: None,
            ended_converged: false,
            sweep_pending: sc.settle.read_sweep,
            finished: false,
        }
    }
}

impl Sim<'_> {
    /// Traffic stops: every fault heals, and the settle phase begins.
    pub(super) fn on_traffic_end(&mut self) {
        self.heal_everything();
        if self.sc.settle.read_sweep {
            let at = self.time.after_ms(self.sc.settle.read_sweep_after_ms);
            self.schedule(at, Event::ReadSweep);
        }
        let at = self.time.after_ms(self.sc.settle.poll_ms);
        self.schedule(at, Event::Poll);
    }

    /// Every key is read once at R = all, so read repair reaches what else did not.
    pub(super) fn on_read_sweep(&mut self) {
        self.convergence.sweep_pending = false;
        self.note("read sweep: every key read once at R = all".into());
        for slot in 0..self.oracle.hist.keys.len() {
            let Some(node) = self.choose_node(slot) else {
                continue;
            };
            let key = self.oracle.hist.keys[slot].key.clone();
            let r = Quorum::All;
            let request = match self.oracle.hist.keys[slot].kind {
                KeyKind::Register(_) | KeyKind::Probe(_) => Request::Get { key, r },
                KeyKind::Counter => Request::CounterGet { key, r },
                KeyKind::Set => Request::SetGet { key, r },
                KeyKind::Map => Request::MapGet { key, r },
            };
            let op = ClientOp::new(Stage::Sweep, slot, node, self.time.now_us);
            self.issue(node, request, op);
        }
    }

    /// Whether every key's copies agree; the run ends once they do and the cluster is quiet,
    /// or at the settle bound.
    pub(super) fn on_poll(&mut self) {
        let (_, divergent) = self.divergence(0);
        let now = self.time.now_us;
        if divergent == 0 {
            self.convergence.converged_since_us.get_or_insert(now);
        } else {
            self.convergence.converged_since_us = None;
        }
        if (self.convergence.converged_since_us.is_some() && self.quiet())
            || now >= self.time.deadline_us
        {
            self.convergence.finished = true;
            // The run ends here, nothing happens before `finish`: it need not look again.
            self.convergence.ended_converged = divergent == 0;
            return;
        }
        let at = self
            .time
            .after_ms(self.sc.settle.poll_ms)
            .min(self.time.deadline_us);
        self.schedule(at, Event::Poll);
    }

    /// Nothing is left to do: no client operation, no pending trial step or sweep, and every
    /// running node idle, with no hints or requests pending.
    fn quiet(&self) -> bool {
        // With joins and leaves, the run also waits for every leaving node to be gone and for
        // every node to hold only partitions it owns.
        let moving = self.sc.membership_changes();
        self.clients.in_flight.is_empty()
            && self.clients.scheduled_work == 0
            && !self.convergence.sweep_pending
            && self.nodes.iter().all(|n| {
                if matches!(n.life, Life::Waiting | Life::Gone) {
                    return true;
                }
                n.life != Life::Leaving
                    && !n.syncing
                    && n.driver.is_idle()
                    && n.node.as_ref().is_some_and(|node| {
                        node.hints_pending() == 0
                            && node.requests_pending() == 0
                            && (!moving || node.partitions_to_transfer() == 0)
                    })
            })
    }

    /// Keys whose primaries' copies differ (at most `limit` described), and how many.
    pub(super) fn divergence(&mut self, limit: usize) -> (Vec<String>, usize) {
        let mut described = Vec::new();
        let mut count = 0;
        for slot in 0..self.oracle.hist.keys.len() {
            if self.same_records(slot) {
                continue;
            }
            let Some(divergence) = self.key_divergence(slot) else {
                continue;
            };
            count += 1;
            if described.len() < limit {
                described.push(divergence.describe());
            } else if limit == 0 {
                break;
            }
        }
        (described, count)
    }

    /// How the key's primaries' copies differ (or that one is down); `None` if they agree.
    fn key_divergence(&mut self, slot: usize) -> Option<Divergence> {
        let key = self.oracle.hist.keys[slot].key.clone();
        let primaries = self.oracle.hist.keys[slot].primaries.clone();
        let mut copies: Vec<Option<Object>> = Vec::with_capacity(primaries.len());
        let mut down = None;
        for &p in &primaries {
            if !self.is_up(p) {
                down = Some(p);
                break;
            }
            copies.push(self.copy(p, &key));
        }
        let differs = down.is_some() || copies.windows(2).any(|w| w[0] != w[1]);
        differs.then_some(Divergence {
            key,
            primaries,
            copies,
            down,
        })
    }

    /// Whether every primary of the key is up and holds the very same stored record (or none):
    /// then their copies are equal without decoding them. `false` only means "look closer".
    pub(super) fn same_records(&self, slot: usize) -> bool {
        let rec = &self.oracle.hist.keys[slot];
        let mut first: Option<Option<&[u8]>> = None;
        for &p in &rec.primaries {
            let sn = &self.nodes[p];
            if sn.node.is_none() {
                return false;
            }
            let raw = sn.store.get_ref(&rec.record_key);
            match first {
                None => first = Some(raw),
                Some(f) if f == raw => {}
                Some(_) => return false,
            }
        }
        true
    }
}

/// A key whose primaries disagree.
struct Divergence {
    key: Key,
    primaries: Vec<usize>,
    /// The primaries' copies, in order, up to the first that is down.
    copies: Vec<Option<Object>>,
    /// The first primary found down.
    down: Option<usize>,
}

impl Divergence {
    fn describe(&self) -> String {
        let key = &self.key;
        match self.down {
            Some(p) => format!("{key:?}: primary n{} is down", p + 1),
            None => {
                let parts: Vec<String> = self
                    .primaries
                    .iter()
                    .zip(&self.copies)
                    .map(|(p, c)| format!("n{} holds {}", p + 1, describe(c.as_ref())))
                    .collect();
                format!("{key:?}: {}", parts.join("; "))
            }
        }
    }
}
