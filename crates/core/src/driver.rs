//! The one loop every shell runs around the core: handle inputs, make their writes durable with
//! one [`Store::sync`], then release what they produced. The tokio node, the simulator and
//! [`LocalCluster`](crate::local::LocalCluster) all drive the node through it, so the rule
//! "nothing is confirmed before it is durable" is written once.
//!
//! An output that confirms durability (a write's answer, a replica's acknowledgement, a
//! transfer's receipt) is marked [`Output::Durable`] by the code that produces it. After a
//! sync that succeeded every output is released. After one that failed, each confirmation is
//! released at once in its refusing form ([`refused`]) and counted, so no peer deletes what
//! it handed over and no client hears "written" of a write that may be gone; every other
//! output stays held until a later sync succeeds, because it may carry what the failed sync
//! left at risk (a replica write carrying a new dot: if it left and the node then crashed, the
//! node would issue that dot again for another write). Outputs held across failures are
//! bounded ([`HELD_MAX`]); past the bound the oldest are dropped, as a lossy network would.
//!
//! The model of the disk behind this: a sync makes every write before it durable, and a sync
//! that fails leaves the writes since the last good one at risk until a later sync succeeds.
//!
//! Shells that sync at once call [`Driver::commit`]; the simulator, whose disk takes time,
//! seals a batch when its sync starts ([`Driver::seal`]) and finishes it when the sync ends
//! ([`Driver::finish`]), while later inputs gather behind it.

use driftkv_ring::NodeId;
use driftkv_wire::{ErrorKind, Message, Reply};

use crate::node::{Input, Node, Output};
use crate::store::{Store, StoreError};

/// Self-addressed messages fed straight back per input, at most: a node that keeps messaging
/// itself is a bug, and is cut off rather than spinning the loop.
const LOOPBACK_ROUNDS_MAX: usize = 1_024;

/// Outputs held across failed syncs, at most: a disk failing for long must not grow the node's
/// memory without bound. The protocol survives losing any of them (they are messages and
/// replies the network could have lost), and confirmations are never among them.
pub const HELD_MAX: usize = 1 << 16;

/// Gathers a node's outputs between syncs and releases them by the failed-sync policy.
#[derive(Debug, Default)]
pub struct Driver {
    /// Outputs of the inputs handled since the last seal, in order.
    open: Vec<Output>,
    /// Outputs waiting for the sync in progress.
    sealed: Vec<Output>,
    /// Messages a node sends itself are handled at once, in the same batch (the tokio node);
    /// otherwise they leave like any other (the simulator's and the test cluster's network
    /// carries them).
    loopback: Option<NodeId>,
    counts: DriverCounts,
}

/// What the driver has seen, for metrics and the simulator's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverCounts {
    pub syncs: u64,
    pub syncs_failed: u64,
    /// Confirmations released in their refusing form after a failed sync.
    pub confirmations_refused: u64,
    /// Outputs dropped because failed syncs held more than [`HELD_MAX`].
    pub held_dropped: u64,
}

impl Driver {
    pub fn new() -> Driver {
        Driver::default()
    }

    /// A driver that hands the node's messages to itself straight back to it.
    pub fn with_loopback(me: NodeId) -> Driver {
        Driver {
            loopback: Some(me),
            ..Driver::default()
        }
    }

    pub fn counts(&self) -> DriverCounts {
        self.counts
    }

    /// Feeds one input to the node; returns the outputs it produced (held until a sync).
    pub fn step(
        &mut self,
        node: &mut Node,
        store: &mut dyn Store,
        now_ms: u64,
        input: Input,
    ) -> &[Output] {
        let start = self.open.len();
        node.handle(store, now_ms, input, &mut self.open);
        if let Some(me) = &self.loopback {
            let mut i = start;
            let mut rounds = 0;
            while i < self.open.len() {
                let to_me = matches!(self.open[i].plain(), Output::Send { to, .. } if to == me);
                if !to_me || rounds == LOOPBACK_ROUNDS_MAX {
                    i += 1;
                    continue;
                }
                rounds += 1;
                // A confirmation to itself needs no sync between: the node is its own reader.
                let Output::Send { message, .. } = self.open.remove(i).into_plain() else {
                    unreachable!("matched a send above")
                };
                let from = me.clone();
                node.handle(
                    store,
                    now_ms,
                    Input::Message { from, message },
                    &mut self.open,
                );
            }
        }
        &self.open[start..]
    }

    /// How many outputs are held, not yet sealed (a mark for [`Driver::held_since`]).
    pub fn held(&self) -> usize {
        self.open.len()
    }

    /// The unsealed outputs from mark `start` on: what the steps since it produced.
    pub fn held_since(&self, start: usize) -> &[Output] {
        &self.open[start.min(self.open.len())..]
    }

    /// True when no output is held: none waits for a sync, none is left from a failed one.
    pub fn is_idle(&self) -> bool {
        self.open.is_empty() && self.sealed.is_empty()
    }

    /// Closes the batch: what was produced so far (and what a failed sync left held) waits for
    /// the next [`Driver::finish`].
    pub fn seal(&mut self) {
        if self.sealed.is_empty() {
            std::mem::swap(&mut self.sealed, &mut self.open);
        } else {
            self.sealed.append(&mut self.open);
        }
    }

    /// Syncs the store and releases the sealed outputs into `released`, in order.
    pub fn finish(
        &mut self,
        store: &mut dyn Store,
        released: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        let synced = store.sync();
        self.counts.syncs += 1;
        self.release(synced.as_ref().err(), released);
        synced
    }

    /// Seals and finishes at once: the loop of a shell whose sync blocks.
    pub fn commit(
        &mut self,
        store: &mut dyn Store,
        released: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        self.seal();
        self.finish(store, released)
    }

    /// Drops every held output (the node crashed: nothing it held leaves).
    pub fn clear(&mut self) {
        self.open.clear();
        self.sealed.clear();
    }

    fn release(&mut self, failed: Option<&StoreError>, released: &mut Vec<Output>) {
        let Some(e) = failed else {
            released.extend(self.sealed.drain(..).map(Output::into_plain));
            return;
        };
        self.counts.syncs_failed += 1;
        let mut held = Vec::with_capacity(self.sealed.len());
        for output in self.sealed.drain(..) {
            match output {
                Output::Durable(confirmation) => {
                    self.counts.confirmations_refused += 1;
                    released.extend(refused(*confirmation, e));
                }
                other => held.push(other),
            }
        }
        if held.len() > HELD_MAX {
            let excess = held.len() - HELD_MAX;
            held.drain(..excess);
            self.counts.held_dropped += excess as u64;
        }
        self.sealed = held;
    }
}

/// What goes out instead of a confirmation whose writes a failed sync left at risk: a client
/// (or the node it came through) is told the write failed, a replica's acknowledgement and a
/// transfer's receipt say "not stored", so the coordinator counts a miss and the sender keeps
/// its records. Anything else is withheld.
pub fn refused(confirmation: Output, e: &StoreError) -> Option<Output> {
    let failure = || {
        Reply::error(
            ErrorKind::Internal,
            format!("the write could not be made durable: {e}"),
        )
    };
    match confirmation {
        Output::Reply { client, .. } => Some(Output::Reply {
            client,
            reply: failure(),
        }),
        Output::Send { to, message } => {
            let message = match message {
                Message::ForwardReply { req, .. } => Message::ForwardReply {
                    req,
                    reply: failure(),
                },
                Message::ReplicaWriteAck { req, .. } => Message::ReplicaWriteAck { req, ok: false },
                Message::TransferAck { xid, .. } => Message::TransferAck { xid, ok: false },
                _ => return None,
            };
            Some(Output::Send { to, message })
        }
        Output::Dial { .. } => None,
        Output::Durable(inner) => refused(*inner, e),
    }
}

#[cfg(test)]
mod tests {
    use driftkv_causal::VersionVector;

    use super::*;
    use crate::store::{Durability, MemStore};

    fn send(to: &str, message: Message) -> Output {
        Output::Send {
            to: NodeId::from(to),
            message,
        }
    }

    fn written(client: u64) -> Output {
        Output::Reply {
            client,
            reply: Reply::Written {
                context: VersionVector::new(),
            },
        }
    }

    fn gossip_like() -> Output {
        send("n2", Message::TransferAck { xid: 9, ok: false })
    }

    #[test]
    fn a_good_sync_releases_everything_unmarked_in_order() {
        let mut d = Driver::new();
        let mut store = MemStore::new(Durability::GroupCommit);
        d.open.push(gossip_like());
        d.open.push(written(1).durable());
        let mut out = Vec::new();
        d.commit(&mut store, &mut out).unwrap();
        assert_eq!(out, vec![gossip_like(), written(1)]);
        assert!(d.is_idle());
    }

    #[test]
    fn a_failed_sync_refuses_confirmations_and_holds_the_rest_for_a_good_one() {
        let mut d = Driver::new();
        let mut store = MemStore::new(Durability::GroupCommit);
        store.fail_next_syncs(1);
        d.open
            .push(send("n3", Message::ReplicaWriteAck { req: 4, ok: true }).durable());
        d.open.push(gossip_like());
        d.open
            .push(send("n2", Message::TransferAck { xid: 5, ok: true }).durable());
        d.open.push(written(7).durable());
        let mut out = Vec::new();
        assert!(d.commit(&mut store, &mut out).is_err());
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(
            out[0],
            send("n3", Message::ReplicaWriteAck { req: 4, ok: false })
        );
        assert_eq!(
            out[1],
            send("n2", Message::TransferAck { xid: 5, ok: false })
        );
        assert!(matches!(
            &out[2],
            Output::Reply { client: 7, reply: Reply::Error { message, .. } } if message.contains("durable")
        ));
        assert!(!d.is_idle(), "the unmarked output waits for a good sync");
        assert_eq!(d.counts().confirmations_refused, 3);
        out.clear();
        d.commit(&mut store, &mut out).unwrap();
        assert_eq!(out, vec![gossip_like()]);
        assert!(d.is_idle());
    }

    #[test]
    fn outputs_held_across_failures_are_bounded() {
        let mut d = Driver::new();
        let mut store = MemStore::new(Durability::GroupCommit);
        store.fail_next_syncs(2);
        let mut out = Vec::new();
        for round in 0..2 {
            d.open.extend((0..HELD_MAX).map(|i| {
                send(
                    "n2",
                    Message::TransferAck {
                        xid: i as u64,
                        ok: round == 1,
                    },
                )
            }));
            assert!(d.commit(&mut store, &mut out).is_err());
        }
        assert!(out.is_empty());
        assert_eq!(d.counts().held_dropped, HELD_MAX as u64);
        d.commit(&mut store, &mut out).unwrap();
        assert_eq!(out.len(), HELD_MAX);
        assert!(
            out.iter().all(|o| matches!(
                o,
                Output::Send {
                    message: Message::TransferAck { ok: true, .. },
                    ..
                }
            )),
            "the oldest were dropped"
        );
    }

    #[test]
    fn refusals_name_the_failure_and_withhold_what_has_no_refusing_form() {
        let e = StoreError::Io("disk on fire".into());
        let forwarded = send(
            "n4",
            Message::ForwardReply {
                req: 3,
                reply: Reply::Counter { value: 5 },
            },
        );
        match refused(forwarded, &e) {
            Some(Output::Send {
                message:
                    Message::ForwardReply {
                        req: 3,
                        reply: Reply::Error { message, .. },
                    },
                ..
            }) => assert!(message.contains("disk on fire")),
            other => panic!("{other:?}"),
        }
        let dial = Output::Dial {
            addr: "a".into(),
            message: Message::TransferAck { xid: 1, ok: true },
        };
        assert_eq!(refused(dial, &e), None);
    }
}
