//! The one loop every shell runs around the core: handle inputs, make their writes durable with
//! one [`Store::sync`], then release what they produced. The tokio node, the simulator and
//! [`LocalCluster`](crate::local::LocalCluster) all drive the node through it, so the rule
//! "nothing is confirmed before it is durable" is written once.
//!
//! An output that confirms durability (a write's answer, a replica's acknowledgement, a
//! transfer's receipt) is marked [`Output::Durable`] by the code that produces it. After a
//! sync that succeeded every output is released. After one that failed nothing the batch
//! produced leaves as it is, since any of it may carry what the sync left at risk (a replica
//! write or a read's answer carrying a new dot: if it left and the node then crashed, the node
//! would issue that dot again for another write):
//! - each confirmation goes out in its refusing form ([`refused`]): no peer deletes what it
//!   handed over, no client hears "written" of a write that may be gone;
//! - each other answer to a client (or to the node it came through) becomes an error
//!   ([`withheld`]): the client learns at once to retry elsewhere;
//! - every other message is dropped and counted, as a lossy network would drop it: the
//!   protocol recovers (coordinations time out, transfers and exchanges run again).
//!
//! So nothing is held from one batch to the next and a failing disk costs no memory.
//!
//! The model of the disk behind this: a sync makes every write before it durable, and a sync
//! that fails leaves the writes since the last good one at risk until a later sync succeeds.
//! A store that cannot promise even that much (a real disk, whose failed fsync may drop pages
//! a later one never writes) fails every later sync instead.
//!
//! Shells that sync at once call [`Driver::commit`]; the simulator, whose disk takes time,
//! seals a batch when its sync starts ([`Driver::seal`]) and finishes it when the sync ends
//! ([`Driver::finish`]), while later inputs gather behind it.

use driftkv_ring::NodeId;
use driftkv_wire::{ErrorKind, Message, Reply};

use crate::node::{Input, Node, Output};
use crate::store::{Store, StoreError};

/// Self-addressed messages fed straight back per input, at most: a node that keeps messaging
/// itself is a bug; past the bound its messages leave like any other (through the transport)
/// rather than spin this loop.
const LOOPBACK_ROUNDS_MAX: usize = 1_024;

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
    pub syncs_failed: u64,
    /// Confirmations released in their refusing form after a failed sync.
    pub confirmations_refused: u64,
    /// Messages to peers dropped because the sync of their batch failed.
    pub messages_dropped: u64,
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
                // A confirmation to itself (a forward's answer, say) is taken in at once: what
                // it leads to is in this batch, and the sync after the batch backs it or the
                // failed-sync policy withholds it like the rest.
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

    /// Syncs the store and releases the sealed outputs into `released`, in order. A released
    /// confirmation may keep its [`Output::Durable`] mark: the shell sends what it wraps.
    pub fn finish<S: Store + ?Sized>(
        &mut self,
        store: &mut S,
        released: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        self.finish_with(store.sync(), released)
    }

    /// Releases the sealed outputs into `released` by how their sync ended, `synced`: for a
    /// shell that runs the sync elsewhere (the tokio node syncs on another thread while its
    /// node thread goes on with the next batch) or that knows no sync was needed (nothing was
    /// written since the last good one). Returns `synced`.
    pub fn finish_with(
        &mut self,
        synced: Result<(), StoreError>,
        released: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        self.release(synced.as_ref().err(), released);
        synced
    }

    /// Whether outputs are sealed, waiting for a sync's end.
    pub fn is_sealed(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// Seals and finishes at once: the loop of a shell whose sync blocks.
    pub fn commit<S: Store + ?Sized>(
        &mut self,
        store: &mut S,
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
            // Released as they are, marks and all (the shell looks through a confirmation's
            // mark as it sends it): the batch moves as one block, not output by output.
            if released.is_empty() {
                std::mem::swap(released, &mut self.sealed);
            } else {
                released.append(&mut self.sealed);
            }
            return;
        };
        self.counts.syncs_failed += 1;
        for output in self.sealed.drain(..) {
            let instead = match output {
                Output::Durable(confirmation) => {
                    self.counts.confirmations_refused += 1;
                    refused(*confirmation, e)
                }
                other => withheld(other, e),
            };
            match instead {
                Some(output) => released.push(output),
                None => self.counts.messages_dropped += 1,
            }
        }
    }
}

/// What goes out instead of an unmarked output of a batch whose sync failed: a client's answer
/// (or a forwarded one) becomes an error, unless it is one already; nothing else goes out.
pub fn withheld(output: Output, e: &StoreError) -> Option<Output> {
    let failure = |reply: Reply| match reply {
        Reply::Error { .. } => reply,
        _ => Reply::error(
            ErrorKind::Unavailable,
            format!("this node's storage failed ({e}); its answer is withheld, ask another node"),
        ),
    };
    answer_replaced(output, failure).ok()
}

/// What goes out instead of a confirmation whose writes a failed sync left at risk: a client
/// (or the node it came through) is told the write failed, a replica's acknowledgement and a
/// transfer's receipt say "not stored", so the coordinator counts a miss and the sender keeps
/// its records. Anything else is withheld.
pub fn refused(confirmation: Output, e: &StoreError) -> Option<Output> {
    let failure = |_| {
        Reply::error(
            ErrorKind::Internal,
            format!("the write could not be made durable: {e}"),
        )
    };
    match answer_replaced(confirmation, failure) {
        Ok(answer) => Some(answer),
        Err(Output::Send { to, message }) => {
            let message = match message {
                Message::ReplicaWriteAck { req, .. } => Message::ReplicaWriteAck { req, ok: false },
                Message::TransferAck { xid, .. } => Message::TransferAck { xid, ok: false },
                _ => return None,
            };
            Some(Output::Send { to, message })
        }
        Err(_) => None,
    }
}

/// An answer (to a local client, or to the node a request came through) with its reply passed
/// through `f`, seen through a durability mark; any other output comes back as `Err`, unmarked.
fn answer_replaced(output: Output, f: impl FnOnce(Reply) -> Reply) -> Result<Output, Output> {
    match output.into_plain() {
        Output::Reply { client, reply } => Ok(Output::Reply {
            client,
            reply: f(reply),
        }),
        Output::Send {
            to,
            message: Message::ForwardReply { req, reply },
        } => Ok(Output::Send {
            to,
            message: Message::ForwardReply {
                req,
                reply: f(reply),
            },
        }),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use driftkv_causal::VersionVector;
    use driftkv_wire::{Key, Quorum, Request};

    use super::*;
    use crate::config::NodeConfig;
    use crate::store::{Durability, MemStore};

    fn send(to: &str, message: Message) -> Output {
        Output::Send {
            to: NodeId::from(to),
            message,
        }
    }

    fn reply(client: u64, reply: Reply) -> Output {
        Output::Reply { client, reply }
    }

    fn written() -> Reply {
        Reply::Written {
            context: VersionVector::new(),
        }
    }

    fn peer_message() -> Output {
        send("n2", Message::TransferAck { xid: 9, ok: false })
    }

    #[test]
    fn a_good_sync_releases_everything_unmarked_in_order() {
        let mut d = Driver::new();
        let mut store = MemStore::new(Durability::GroupCommit);
        d.open.push(peer_message());
        d.open.push(reply(1, written()).durable());
        let mut out = Vec::new();
        d.commit(&mut store, &mut out).unwrap();
        let plain: Vec<Output> = out.into_iter().map(Output::into_plain).collect();
        assert_eq!(plain, vec![peer_message(), reply(1, written())]);
        assert!(d.is_idle());
    }

    #[test]
    fn a_failed_sync_refuses_confirmations_withholds_answers_and_drops_the_rest() {
        let mut d = Driver::new();
        let mut store = MemStore::new(Durability::GroupCommit);
        store.fail_next_syncs(1);
        d.open
            .push(send("n3", Message::ReplicaWriteAck { req: 4, ok: true }).durable());
        d.open.push(peer_message());
        d.open
            .push(send("n2", Message::TransferAck { xid: 5, ok: true }).durable());
        d.open.push(reply(7, written()).durable());
        d.open.push(reply(
            8,
            Reply::NotFound {
                context: VersionVector::new(),
            },
        ));
        let refusal = Reply::error(ErrorKind::BadRequest, "key is empty");
        d.open.push(reply(9, refusal.clone()));
        let mut out = Vec::new();
        assert!(d.commit(&mut store, &mut out).is_err());
        assert_eq!(out.len(), 5, "{out:?}");
        assert_eq!(
            out[0],
            send("n3", Message::ReplicaWriteAck { req: 4, ok: false })
        );
        assert_eq!(
            out[1],
            send("n2", Message::TransferAck { xid: 5, ok: false })
        );
        let error = |o: &Output| match o {
            Output::Reply {
                reply: Reply::Error { kind, message, .. },
                ..
            } => (*kind, message.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(error(&out[2]).0, ErrorKind::Internal);
        assert!(error(&out[2]).1.contains("durable"));
        assert_eq!(
            error(&out[3]).0,
            ErrorKind::Unavailable,
            "a read's answer is withheld"
        );
        assert_eq!(
            out[4],
            reply(9, refusal),
            "an error carries nothing and goes as it is"
        );
        assert!(d.is_idle(), "nothing is held for a later sync");
        let counts = d.counts();
        assert_eq!(
            (counts.confirmations_refused, counts.messages_dropped),
            (3, 1)
        );
        out.clear();
        d.open.push(peer_message());
        d.commit(&mut store, &mut out).unwrap();
        assert_eq!(
            out,
            vec![peer_message()],
            "the next good sync releases its own batch"
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
        match refused(forwarded.clone(), &e) {
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
        assert!(matches!(
            withheld(forwarded, &e),
            Some(Output::Send {
                message: Message::ForwardReply {
                    reply: Reply::Error { .. },
                    ..
                },
                ..
            })
        ));
        let dial = Output::Dial {
            addr: "a".into(),
            message: Message::TransferAck { xid: 1, ok: true },
        };
        assert_eq!(refused(dial.clone(), &e), None);
        assert_eq!(withheld(dial, &e), None);
    }

    /// The tokio node's driver hands a node's messages to itself straight back: a write
    /// forwarded from a node to itself (it believes another coordinates, but the first target
    /// is itself) is answered in the same step, and nothing addressed to itself leaves.
    #[test]
    fn loopback_feeds_messages_to_itself_back_in_the_same_step() {
        let me = NodeId::from("n1");
        let mut store = MemStore::new(Durability::GroupCommit);
        let mut node = Node::open(NodeConfig::new("n1"), &mut store).unwrap();
        let mut d = Driver::with_loopback(me.clone());
        let key = Key::default_bucket("k".to_string());
        d.step(
            &mut node,
            &mut store,
            1_000,
            Input::Message {
                from: me.clone(),
                message: Message::Forward {
                    req: 7,
                    request: Box::new(Request::Put {
                        key,
                        value: Some("v".into()),
                        context: VersionVector::new(),
                        expires_ms: None,
                        w: Quorum::One,
                    }),
                },
            },
        );
        let mut out = Vec::new();
        d.commit(&mut store, &mut out).unwrap();
        assert!(
            out.iter()
                .all(|o| !matches!(o, Output::Send { to, .. } if *to == me)),
            "nothing addressed to itself leaves: {out:?}"
        );
        assert_eq!(
            node.stats().writes,
            1,
            "the forwarded write was coordinated here"
        );
    }
}
