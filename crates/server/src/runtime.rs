//! The node loop: one thread owns the core `Node` and its store, and runs the group commit.
//!
//! It takes a batch of events (client requests, peer messages, ticks), feeds each to the core,
//! makes the batch durable with one `Store::sync`, and only then sends the messages and replies
//! the core produced. So nothing is acknowledged before it is durable, and one fsync covers a
//! whole batch of writes under load. The thread blocks in the store, never in async code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use driftkv_core::{ClientId, Driver, Input, Node, Output, Store};
use driftkv_ring::NodeId;
use driftkv_storage::FjallStore;
use driftkv_wire::{Message, Reply, Request};
use tokio::sync::{mpsc, oneshot};

use crate::transport::Transport;

/// A query run on the node thread with read access to the node and its store.
pub type Query = Box<dyn FnOnce(&Node, &FjallStore) + Send>;

pub enum Event {
    Client {
        request: Request,
        reply: oneshot::Sender<Reply>,
    },
    Peer {
        from: NodeId,
        message: Message,
    },
    Tick,
    Query(Query),
    /// An administrative change of the node (leave).
    Control(Control),
}

/// An administrative change, run on the node thread with the node and its store.
pub type Control = Box<dyn FnOnce(&mut Node, &mut dyn Store) + Send>;

/// Events taken per batch at most (one sync each).
const BATCH_MAX: usize = 512;

/// Wall-clock milliseconds, never going backwards within this process.
struct Clock {
    last: u64,
}

impl Clock {
    fn now_ms(&mut self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last = self.last.max(wall);
        self.last
    }
}

pub fn run_node_loop(
    mut node: Node,
    mut store: FjallStore,
    mut events: mpsc::Receiver<Event>,
    transport: Arc<Transport>,
) {
    let mut clock = Clock { last: 0 };
    let mut clients: HashMap<ClientId, oneshot::Sender<Reply>> = HashMap::new();
    let mut next_client: ClientId = 1;
    // Messages to itself go straight back in, in the same batch.
    let mut driver = Driver::with_loopback(node.id().clone());
    let mut released: Vec<Output> = Vec::new();
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH_MAX);
    while let Some(first) = events.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let now = clock.now_ms();
        for event in batch.drain(..) {
            let input = match event {
                Event::Client { request, reply } => {
                    let client = next_client;
                    next_client += 1;
                    clients.insert(client, reply);
                    Input::Request { client, request }
                }
                Event::Peer { from, message } => Input::Message { from, message },
                Event::Tick => Input::Tick,
                Event::Query(query) => {
                    query(&node, &store);
                    continue;
                }
                Event::Control(change) => {
                    change(&mut node, &mut store);
                    continue;
                }
            };
            driver.step(&mut node, &mut store, now, input);
        }
        // One sync for the batch; the driver refuses every confirmation it would have backed.
        if let Err(e) = driver.commit(&mut store, &mut released) {
            tracing::error!("storage sync failed, this batch's confirmations are refused: {e}");
        }
        node.note_driver(driver.counts());
        for output in released.drain(..) {
            deliver(&node, &transport, &mut clients, output);
        }
    }
}

/// Sends a released output on its way: a message to its member's address, a reply to its
/// waiting client.
fn deliver(
    node: &Node,
    transport: &Arc<Transport>,
    clients: &mut HashMap<ClientId, oneshot::Sender<Reply>>,
    output: Output,
) {
    match output {
        Output::Send { to, message } => match node
            .address_of(&to)
            .map(str::to_string)
            .or_else(|| transport.learned_address(&to))
        {
            Some(addr) => transport.send(&addr, message),
            None => tracing::debug!(peer = %to, "no address for member; message dropped"),
        },
        Output::Dial { addr, message } => transport.send(&addr, message),
        Output::Reply { client, reply } => {
            if let Some(tx) = clients.remove(&client) {
                let _ = tx.send(reply);
            }
        }
        // A confirmation its sync backed: sent as what it wraps.
        Output::Durable(confirmation) => deliver(node, transport, clients, *confirmation),
    }
}
