//! What happens in a run, as events waiting for their virtual time.

use driftkv_core::ClientId;
use driftkv_wire::{Reply, Request};

use super::network::Delivery;
use crate::queue::RadixQueue;

pub(super) enum Event {
    Tick(usize),
    /// A node-to-node message arrives (boxed, as the other large payloads: the queue moves
    /// small events).
    Deliver(Box<Delivery>),
    /// A client's request reaches its node.
    AtNode(Box<(usize, ClientId, Request)>),
    /// A reply reaches its client.
    AtClient(Box<(ClientId, Reply)>),
    ClientTimeout(ClientId),
    /// A node's sync completes, unless the node restarted since (its epoch, as `u32`: the
    /// queue moves events of 16 bytes, and no run restarts a node four billion times).
    SyncDone {
        node: u32,
        epoch: u32,
    },
    Arrival,
    ProbeStart(usize),
    ProbeWrite(usize),
    /// A trial's read at grid point `t_index` (`u32` and `u16`: the event stays 16 bytes).
    ProbeRead {
        trial: u32,
        t_index: u16,
    },
    FaultStart(usize),
    FaultEnd(usize),
    TrafficEnd,
    ReadSweep,
    Poll,
}

/// The size of an event the queue moves by value, each beside its 16-byte key.
const EVENT_BYTES: usize = 16;

// Kept at 16 bytes: large payloads are boxed.
const _: () = assert!(std::mem::size_of::<Event>() == EVENT_BYTES);

/// Every pending event, by (virtual time, scheduling order), and how many were processed.
#[derive(Default)]
pub(super) struct Agenda {
    /// The last sequence number given out: ties in time break by it.
    seq: u64,
    queue: RadixQueue<Event>,
    /// Events taken off the queue so far.
    pub(super) processed: u64,
    /// The run stopped at `EVENTS_MAX`.
    pub(super) overflow: bool,
}

impl Agenda {
    pub(super) fn schedule(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(at_us, self.seq, event);
    }

    pub(super) fn pop(&mut self) -> Option<(u64, Event)> {
        self.queue.pop()
    }
}
