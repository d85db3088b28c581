//! The event loop: N production nodes (`driftkv_core::Node` over `MemStore`), a network of
//! delayed, lost, duplicated and cut messages, clients, faults and virtual time.
//!
//! One run is a pure function of its scenario and seed. Events wait in a queue ordered by
//! (virtual time in microseconds, sequence number), so ties break by scheduling order; every
//! random draw comes from seeded streams; every map is ordered. Nothing reads the host clock.
//!
//! Each node runs the caller's loop the core asks for: `Node::handle`, then `Store::sync`, then
//! the outputs leave. With a disk-sync delay the sync takes virtual time: outputs wait for it
//! (group commit), and a crash before it completes loses those writes and their messages.
//!
//! The simulator is split by concern, each module owning its part of the state:
//!
//! - `events`: the event kinds and the queue they wait in;
//! - `time`: virtual time, the run's phases and unit conversions;
//! - `nodes`: the simulated nodes, their clocks and how one boots;
//! - `step`: the caller's loop per node (handle, sync, send) and group commit;
//! - `network`: links, cuts, loss, duplication, reordering, delivery and message counts;
//! - `faults`: scheduled and chaos faults, crashes, restarts and disk faults;
//! - `membership`: the ring of current members, joins, leaves and drained exits;
//! - `clients` and `arrivals`: the workload, client operations, replies and sessions;
//! - `data_ops`: the data-type operations (map updates, deletes, NX races) and what the
//!   oracle records of them;
//! - `visibility`: the t-visibility probes;
//! - `oracle`: the history of writes and their coordinations, and the copies observed;
//! - `convergence`: the settle phase, its polling and the divergent keys;
//! - `outcomes`: what a finished run hands to the checks and the report.

use driftkv_core::Stats;
use driftkv_ring::RingConfig;

use crate::scenario::Scenario;

mod arrivals;
mod clients;
mod convergence;
mod data_ops;
mod events;
mod expected;
mod faults;
mod membership;
mod network;
mod nodes;
mod oracle;
mod outcomes;
mod step;
mod time;
mod visibility;

pub use clients::{NxRace, OpCounts, SessionCounts};
pub use faults::{FaultKind, PlannedFault};
pub use network::{MESSAGE_NAMES, MessageCounts, message_kind, message_name};
pub use outcomes::{NodeEnd, NodeTotals, Outcomes, describe};
pub use visibility::Trial;

use clients::Clients;
use convergence::Convergence;
use events::{Agenda, Event};
use expected::Expected;
use faults::Faults;
use membership::Membership;
use network::Network;
use nodes::SimNode;
use oracle::Oracle;
use step::{Disk, Scratch};
use time::Timeline;

/// Node clocks read this many milliseconds at virtual time zero (plus their skew): a
/// realistic epoch, so HLC timestamps look like the real thing.
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// Events one run may process at most: a protocol that never goes quiet ends the run with a
/// failed check instead of hanging it.
pub const EVENTS_MAX: u64 = 500_000_000;
/// Forwards are remembered for this many client timeouts (then no copy can be in flight).
pub const FORWARD_MEMORY_TIMEOUTS: u64 = 4;
/// How often (in events) the progress callback is called.
pub const PROGRESS_EVERY_EVENTS: u64 = 1 << 14;
/// A leaving node exits this long after it was first seen drained (and still is), as the
/// server gives its last acknowledgements and gossip a moment to go out.
pub const LEAVE_GRACE_MS: u64 = 500;

/// Where a run is, for a progress indicator.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Virtual milliseconds since traffic started (negative during warm-up).
    pub virtual_ms: f64,
    /// Virtual milliseconds at which traffic stops.
    pub traffic_ms: f64,
    /// The latest the run can end (traffic plus the settle bound).
    pub end_ms_max: f64,
    pub events: u64,
    pub messages: u64,
}

/// One run: the scenario, and the state of each concern.
pub struct Sim<'a> {
    sc: &'a Scenario,
    /// Virtual time and the instants that split the run into phases.
    time: Timeline,
    /// Every pending event, and how many have been processed.
    agenda: Agenda,
    nodes: Vec<SimNode>,
    /// The ring of the current members, by which keys' primaries are judged.
    membership: Membership,
    /// How syncs behave: immediate or delayed (group commit), and what a crash loses.
    disk: Disk,
    /// Buffers kept empty between steps, so a step allocates nothing.
    scratch: Scratch,
    net: Network,
    faults: Faults,
    clients: Clients,
    oracle: Oracle,
    convergence: Convergence,
    /// Node counters of lives that ended (a crash, or a node that left): a node restarts its
    /// own from zero.
    /// Counters of the nodes' lives that ended (crashed or left), summed.
    retired: Stats,
    /// What happened, by virtual milliseconds since traffic started.
    log: Vec<(f64, String)>,
}

impl<'a> Sim<'a> {
    pub fn new(sc: &'a Scenario) -> Sim<'a> {
        let expect = Expected::of(sc);
        // Nodes that join later are in nobody's ring, member list or seeds at the start.
        let names = sc.node_names();
        let initial: Vec<&String> = names.iter().filter(|n| sc.initial_member(n)).collect();
        let ring_cfg = RingConfig {
            partitions: sc.partitions,
            n: sc.n,
            ..RingConfig::default()
        };
        let membership = Membership::new(ring_cfg.clone(), &initial);
        let nodes = nodes::build(sc, &names, &initial, &ring_cfg, &expect);
        let time = Timeline::new(sc);
        let faults = Faults::new(faults::plan(sc, nodes.len(), time.t0_us));
        Sim {
            sc,
            time,
            agenda: Agenda::default(),
            membership,
            disk: Disk::new(sc),
            scratch: Scratch::default(),
            net: Network::new(sc, nodes.len()),
            faults,
            clients: Clients::new(sc, &expect),
            oracle: Oracle::new(&expect),
            convergence: Convergence::new(sc),
            retired: Stats::default(),
            log: Vec::new(),
            nodes,
        }
    }

    fn schedule(&mut self, at_us: u64, event: Event) {
        self.agenda.schedule(at_us, event);
    }

    /// Logs what happened now.
    fn note(&mut self, what: String) {
        let t = self.time.rel_ms(self.time.now_us);
        self.log.push((t, what));
    }

    // ---- the run ----

    pub fn run(mut self, progress: &mut dyn FnMut(&Progress)) -> Outcomes {
        self.schedule_start();
        while let Some((at_us, event)) = self.agenda.pop() {
            if self.convergence.finished {
                break;
            }
            self.time.now_us = at_us;
            self.agenda.processed += 1;
            if self.agenda.processed > EVENTS_MAX {
                self.agenda.overflow = true;
                break;
            }
            if self.agenda.processed.is_multiple_of(PROGRESS_EVERY_EVENTS) {
                progress(&self.progress());
            }
            self.dispatch_event(event);
        }
        self.finish()
    }

    /// The first events: the initial members boot, every node's first tick (at a random phase),
    /// the workload's first arrival, the first visibility trial, every fault, traffic's end.
    fn schedule_start(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].life == nodes::Life::Member {
                self.boot(i);
            }
            let phase = self.net.rng.below(self.sc.tick_ms * time::US_PER_MS);
            self.schedule(phase, Event::Tick(i));
        }
        if self.sc.workload.rate_per_s > 0.0 {
            self.schedule(self.time.t0_us, Event::Arrival);
        }
        // Each trial's start schedules the next one's: the queue holds one pending start, not
        // thousands (every event's cost grows with the queue's depth).
        if let Some(at) = self.probe_start_at(0) {
            self.schedule(at, Event::ProbeStart(0));
        }
        for f in 0..self.faults.planned.len() {
            let fault = &self.faults.planned[f];
            let (at, until) = (fault.at_us, fault.until_us);
            let ends = !fault.kind.is_membership_change();
            self.schedule(at, Event::FaultStart(f));
            if ends {
                self.schedule(until, Event::FaultEnd(f));
            }
        }
        self.schedule(self.time.traffic_end_us, Event::TrafficEnd);
    }

    fn progress(&self) -> Progress {
        Progress {
            virtual_ms: self.time.rel_ms(self.time.now_us),
            traffic_ms: self.sc.duration_ms as f64,
            end_ms_max: (self.sc.duration_ms + self.sc.settle.max_ms) as f64,
            events: self.agenda.processed,
            messages: self.net.delivered,
        }
    }

    fn dispatch_event(&mut self, event: Event) {
        match event {
            Event::Tick(i) => self.on_tick(i),
            Event::Deliver(delivery) => self.on_deliver(*delivery),
            Event::AtNode(at_node) => {
                let (node, client, request) = *at_node;
                self.on_request_at_node(node, client, request);
            }
            Event::AtClient(at_client) => {
                let (client, reply) = *at_client;
                self.on_reply(client, reply)
            }
            Event::ClientTimeout(client) => self.on_client_timeout(client),
            Event::SyncDone { node, epoch } => self.on_sync_done(node as usize, epoch),
            Event::Arrival => self.on_arrival(),
            Event::ProbeStart(trial) => self.on_probe_start(trial),
            Event::ProbeWrite(trial) => self.on_probe_write(trial),
            Event::ProbeRead { trial, t_index } => self.on_probe_read(trial as usize, t_index),
            Event::FaultStart(f) => self.on_fault(f, true),
            Event::FaultEnd(f) => self.on_fault(f, false),
            Event::TrafficEnd => self.on_traffic_end(),
            Event::ReadSweep => self.on_read_sweep(),
            Event::Poll => self.on_poll(),
        }
    }
}
