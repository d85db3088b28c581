//! The caller's loop the core asks for, per node: feed it an input, sync its store, then let
//! its outputs leave. With a disk-sync delay the sync takes virtual time and the outputs wait
//! for it (group commit).

use driftkv_core::{Driver, Input, Output};

use super::Sim;
use super::events::Event;
use super::nodes::Life;
use super::time::us;
use crate::dist::Delay;
use crate::rng::Rng;
use crate::scenario::Scenario;

/// How node stores sync.
pub(super) struct Disk {
    /// Syncs take no time: each step is synced at once, and its outputs leave then (or, if the
    /// sync failed, what the failed-sync policy lets out).
    pub(super) immediate_sync: bool,
    /// A crash loses what a node applied since its last good sync: group commit with a sync
    /// delay, or with syncs that may fail (under "every-write" each write is durable as it is
    /// applied, and the crash only keeps its outputs from leaving; under "none" nothing is
    /// synced, yet outputs do leave, so those writes may live on elsewhere).
    pub(super) crash_loses_unsynced: bool,
    /// Draws each sync's duration.
    rng: Rng,
}

impl Disk {
    pub(super) fn new(sc: &Scenario) -> Disk {
        let immediate_sync = sc.delays.disk_sync == Delay::constant(0.0);
        let syncs_may_fail = sc
            .faults
            .iter()
            .any(|f| f.sync_fail.is_some_and(|p| p > 0.0));
        Disk {
            immediate_sync,
            crash_loses_unsynced: (!immediate_sync || syncs_may_fail)
                && sc.durability_policy() == driftkv_core::Durability::GroupCommit,
            rng: Rng::stream(sc.seed, "disk"),
        }
    }
}

/// Buffers kept empty between steps, so a step allocates nothing.
#[derive(Default)]
pub(super) struct Scratch {
    /// Outputs a sync released.
    out: Vec<Output>,
    /// The key slots a step touched (see `Sim::handle`).
    pub(super) slots: Vec<usize>,
}

impl Sim<'_> {
    pub(super) fn on_tick(&mut self, i: usize) {
        if self.is_up(i) {
            self.handle(i, Input::Tick, None);
            if self.nodes[i].life == Life::Leaving {
                self.maybe_exit(i);
            }
        }
        let next = self.time.after_ms(self.sc.tick_ms);
        self.schedule(next, Event::Tick(i));
    }

    /// Feeds one input to node `i`, watches what it did for the oracle, and sends its outputs
    /// once its store is synced. `from` is the sending node and its life, for messages.
    pub(super) fn handle(&mut self, i: usize, input: Input, from: Option<(usize, u64)>) {
        // What the input is about, before it is moved into the node, and the slots of the keys
        // it touches (resolved now: only new client operations add slots, never a node's step).
        let mut slots = std::mem::take(&mut self.scratch.slots);
        let about = self.what_input_touches(&input, from, &mut slots);
        let now_ms = self.local_ms(i);
        // The node's driver is taken out for the step, so its new outputs can be looked at
        // while the rest of the world changes; it goes back in before `emit`.
        let mut driver = std::mem::take(&mut self.nodes[i].driver);
        let (writes_started, start) = self.step_node(i, &mut driver, now_ms, input);
        let out = driver.held_since(start);
        if self.clients.track_answers {
            self.note_answers(i, now_ms, out);
        }
        if let Some(h) = about.write {
            self.watch_write(i, h, writes_started, out);
        }
        self.note_reads(i, out);
        self.reads_to_look_at(i, &about, &mut slots);
        // Every touched key is looked at after the step, wrote it or not: a node can become a
        // primary that a version counts as missing while it already holds that version (a
        // fallback's copy, then a join or leave), and only a look records that it has it.
        self.look_at_copies(i, &mut slots);
        self.scratch.slots = slots;
        // Put back over the empty stand-in, which holds nothing to free.
        let stand_in = std::mem::replace(&mut self.nodes[i].driver, driver);
        debug_assert!(stand_in.is_idle());
        std::mem::forget(stand_in);
        self.emit(i);
    }

    /// One step of node `i` through its driver: whether it began coordinating a write, and
    /// where its new outputs start among those the driver holds.
    fn step_node(
        &mut self,
        i: usize,
        driver: &mut Driver,
        now_ms: u64,
        input: Input,
    ) -> (bool, usize) {
        let sn = &mut self.nodes[i];
        let node = sn
            .node
            .as_mut()
            .expect("handle is only called on an up node");
        let before = node.stats().writes;
        let start = driver.held();
        driver.step(node, &mut sn.store, now_ms, input);
        (node.stats().writes > before, start)
    }

    /// The caller's loop (the core's driver): sync, then send. With a disk-sync delay, outputs
    /// wait for a sync that completes later (group commit).
    fn emit(&mut self, i: usize) {
        if self.disk.immediate_sync {
            let mut out = std::mem::take(&mut self.scratch.out);
            let sn = &mut self.nodes[i];
            if sn.driver.commit(&mut sn.store, &mut out).is_ok() {
                sn.unsynced.clear();
            }
            self.send_outputs(i, &mut out);
            self.scratch.out = out;
        } else {
            let sn = &self.nodes[i];
            if !sn.syncing && !sn.driver.is_idle() {
                self.start_sync(i);
            }
        }
    }

    fn start_sync(&mut self, i: usize) {
        let delay = us(self.sc.delays.disk_sync.sample(&mut self.disk.rng));
        let sn = &mut self.nodes[i];
        sn.syncing = true;
        sn.driver.seal();
        let event = Event::SyncDone {
            node: u32::try_from(i).expect("node indices fit in u32"),
            epoch: sn.epoch as u32,
        };
        self.schedule(self.time.now_us + delay, event);
    }

    pub(super) fn on_sync_done(&mut self, i: usize, epoch: u32) {
        if self.nodes[i].epoch as u32 != epoch || !self.is_up(i) {
            return; // the node crashed meanwhile: the sync never happened
        }
        let mut out = std::mem::take(&mut self.scratch.out);
        let sn = &mut self.nodes[i];
        // A failed sync leaves the coordinations since the last good one at risk: a crash
        // before the next good sync still voids them.
        if sn.driver.finish(&mut sn.store, &mut out).is_ok() {
            sn.unsynced.clear();
        }
        sn.syncing = false;
        let more = !sn.driver.is_idle();
        self.send_outputs(i, &mut out);
        self.scratch.out = out;
        if more {
            self.start_sync(i);
        }
    }

    /// Sends (or schedules) every output, leaving `out` empty.
    fn send_outputs(&mut self, i: usize, out: &mut Vec<Output>) {
        for o in out.drain(..) {
            self.send_output(i, o);
        }
    }

    /// Sends (or schedules) one output of node `i`.
    fn send_output(&mut self, i: usize, o: Output) {
        match o {
            Output::Send { to, message } => match self.node_index(&to) {
                Some(j) => self.send(i, j, message),
                None => self.oracle.hist.anomaly(
                    "oracle",
                    self.time.now_us,
                    format!("n{} sent to unknown node {to}", i + 1),
                ),
            },
            // Seeds: the simulator's addresses are `sim:NAME`.
            Output::Dial { addr, message } => {
                if let Some(j) = addr
                    .strip_prefix("sim:")
                    .and_then(|n| self.sc.node_index(n))
                {
                    self.send(i, j, message);
                }
            }
            Output::Reply { client, reply } => self.reply_to_client(client, reply),
            // A confirmation its sync backed: sent as what it wraps.
            Output::Durable(confirmation) => self.send_output(i, *confirmation),
        }
    }
}
