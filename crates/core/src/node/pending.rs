//! What the node waits on: coordinations in flight and their classes.

use super::*;

impl WindowEntry for Pending {
    fn due_ms(&self) -> u64 {
        match self {
            Pending::Write(c) => c.deadline_ms,
            Pending::Read(c) => c.deadline_ms,
            Pending::Inspect(c) => c.deadline_ms,
            Pending::Forwarded { deadline_ms, .. } => *deadline_ms,
            Pending::Handoff(h) => h.deadline_ms,
            Pending::Collect(c) => c.deadline_ms,
            Pending::Transfer(t) => t.deadline_ms,
            Pending::List(l) => l.deadline_ms,
        }
    }

    fn class(&self) -> u8 {
        match self {
            Pending::Write(_) => WRITE,
            Pending::Read(_) => READ,
            Pending::Inspect(_) => INSPECT,
            Pending::Forwarded { .. } => FORWARDED,
            Pending::Handoff(_) => HANDOFF,
            Pending::Collect(_) => COLLECT,
            Pending::Transfer(_) => TRANSFER,
            Pending::List(_) => LIST,
        }
    }
}

/// The classes of [`Pending`] entries (the request window counts and finds them by class).
pub(super) const WRITE: u8 = 0;

pub(super) const READ: u8 = 1;

pub(super) const INSPECT: u8 = 2;

pub(super) const FORWARDED: u8 = 3;

pub(super) const HANDOFF: u8 = 4;

pub(super) const COLLECT: u8 = 5;

pub(super) const TRANSFER: u8 = 6;

pub(super) const LIST: u8 = 7;

#[derive(Debug)]
pub(super) struct WriteCoord {
    pub(super) waiter: Waiter,
    pub(super) core: PutCore,
    /// Replicas not yet answered, each with the primary it stands in for (if a fallback). At
    /// the deadline the coordinator keeps a hint for each, so a replica that missed the write
    /// still gets it when it is back.
    pub(super) awaiting: Vec<(NodeId, Option<NodeId>)>,
    pub(super) key: Key,
    pub(super) partition: PartitionId,
    pub(super) object: Object,
    /// The answer for when the write is confirmed (handed over once).
    pub(super) reply: Reply,
    pub(super) deadline_ms: u64,
}

#[derive(Debug)]
pub(super) struct ReadCoord {
    pub(super) waiter: Waiter,
    pub(super) request: Request,
    pub(super) core: GetCore,
    /// The key's bucket takes direct writes: the answer's time goes into this node's clock.
    pub(super) direct: bool,
    pub(super) deadline_ms: u64,
}

#[derive(Debug)]
pub(super) struct InspectCoord {
    pub(super) waiter: Waiter,
    pub(super) key: Key,
    pub(super) views: Vec<ReplicaView>,
    pub(super) waiting: usize,
    pub(super) deadline_ms: u64,
}

#[derive(Debug)]
pub(super) struct Handoff {
    pub(super) target: NodeId,
    pub(super) hint_key: Vec<u8>,
    pub(super) sent: Vec<u8>,
    pub(super) deadline_ms: u64,
}

#[derive(Debug)]
pub(super) enum Pending {
    Write(WriteCoord),
    Read(ReadCoord),
    Inspect(InspectCoord),
    Forwarded {
        client: ClientId,
        deadline_ms: u64,
    },
    Handoff(Handoff),
    /// Asking the other primaries whether they hold exactly this tombstone.
    Collect(Collect),
    /// Objects sent to a partition's owners, deleted here once all confirm.
    Transfer(Transfer),
    /// A round of a key listing, waiting for the partition's replicas.
    List(Box<ListCoord>),
}

#[derive(Debug)]
pub(super) struct Collect {
    pub(super) key: Key,
    pub(super) partition: PartitionId,
    pub(super) object: Object,
    pub(super) awaiting: Vec<NodeId>,
    pub(super) deadline_ms: u64,
}

#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) partition: PartitionId,
    pub(super) objects: Vec<(Key, Object)>,
    pub(super) awaiting: Vec<NodeId>,
    pub(super) deadline_ms: u64,
}
