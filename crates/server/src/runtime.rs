//! The node loop: one thread owns the core `Node` and its store, and runs the group commit.
//!
//! It takes the events that are waiting (client requests, peer messages, ticks), feeds each
//! to the core, and seals what the core produced as a batch. The batch's writes are made
//! durable by one `fsync` on a sync thread, and only then are the batch's messages and
//! replies sent: nothing is acknowledged before it is durable, and one fsync covers a whole
//! batch of writes under load. The commit overlaps: while a batch's sync runs, the node
//! thread goes on taking and handling events, which form the next batch; that one is sealed
//! and synced when the sync before it has ended, so batches are released in order.
//!
//! A batch that wrote nothing (reads, say) needs no sync of its own: it is released as soon
//! as the batch before it is, since what it read is then as durable as that sync made it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use driftkv_core::{ClientId, Driver, Input, Node, Output, Store, StoreError};
use driftkv_ring::NodeId;
use driftkv_storage::FjallStore;
use driftkv_wire::{Message, Reply, Request};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::transport::Transport;

/// A query run on the node thread with read access to the node and its store.
pub type Query<S = FjallStore> = Box<dyn FnOnce(&Node, &S) + Send>;

/// What the node thread takes from the rest of the process. `S` is its store: fjall in a
/// node, a stand-in in tests of the loop.
pub enum Event<S = FjallStore> {
    Client {
        request: Request,
        reply: oneshot::Sender<Answer>,
    },
    Peer {
        from: NodeId,
        message: Message,
    },
    Tick,
    Query(Query<S>),
    /// An administrative change of the node (leave).
    Control(Control),
    /// The node stops: the loop ends once this batch is handled, its writes synced and its
    /// outputs sent.
    Stop,
}

impl<S> From<(NodeId, Message)> for Event<S> {
    /// A message a peer sent, as the transport hands it over.
    fn from((from, message): (NodeId, Message)) -> Self {
        Event::Peer { from, message }
    }
}

/// An administrative change, run on the node thread with the node and its store.
pub type Control = Box<dyn FnOnce(&mut Node, &mut dyn Store) + Send>;

/// A store the node loop can commit overlapped: it says whether the writes since the last
/// sync need one, and hands out a sync to run on the sync thread.
pub trait NodeStore: Store + Send + 'static {
    /// Whether the writes since the last call need a sync (or the store can promise nothing
    /// any more, after a failed one); resets the account.
    fn begin_sync(&mut self) -> bool;
    /// Whether a sync has failed (then every later one fails too).
    fn sync_failed(&self) -> bool;
    /// A sync of every write made so far, to run on another thread.
    fn background_sync(&self) -> Box<dyn FnOnce() -> Result<(), StoreError> + Send>;
}

impl NodeStore for FjallStore {
    fn begin_sync(&mut self) -> bool {
        FjallStore::begin_sync(self)
    }

    fn sync_failed(&self) -> bool {
        self.syncer().has_failed()
    }

    fn background_sync(&self) -> Box<dyn FnOnce() -> Result<(), StoreError> + Send> {
        let syncer = self.syncer();
        Box::new(move || syncer.sync())
    }
}

/// Bytes of values in replies the node has sent and its clients have not yet taken, at most:
/// past it a read that would add more is refused (`UNAVAILABLE`) instead of answered. Clients
/// that read take their replies at once; this bounds what clients that never read (a
/// pipeline of large GETs) can make the node hold.
#[cfg(not(test))]
pub const REPLY_BYTES_HELD_MAX: usize = 256 * 1024 * 1024;
#[cfg(test)]
pub const REPLY_BYTES_HELD_MAX: usize = 64 * 1024;

/// A reply on its way to a client, with its share of [`REPLY_BYTES_HELD_MAX`] (given back
/// when the client takes the reply, or drops it untaken).
#[derive(Debug)]
pub struct Answer {
    pub reply: Reply,
    _held: Option<Held>,
}

impl From<Reply> for Answer {
    /// A reply that holds no share (a stand-in's, in tests).
    fn from(reply: Reply) -> Answer {
        Answer { reply, _held: None }
    }
}

#[derive(Debug)]
struct Held {
    bytes: usize,
    pool: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.pool.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The bytes of values, members, fields and keys a reply carries.
fn value_bytes(reply: &Reply) -> usize {
    let sum = |lens: &mut dyn Iterator<Item = usize>| lens.fold(0usize, usize::saturating_add);
    match reply {
        Reply::Values { values, .. } => sum(&mut values.iter().map(|v| v.len())),
        Reply::Set { members } => sum(&mut members.iter().map(|m| m.len())),
        Reply::Map { fields, .. } => sum(&mut fields.iter().map(|(n, v)| {
            n.len().saturating_add(match v {
                driftkv_wire::FieldValue::Bytes(b) => b.len(),
                driftkv_wire::FieldValue::Int(_) => 0,
            })
        })),
        Reply::Keys { keys, .. } => sum(&mut keys.iter().map(|(k, _)| k.len())),
        Reply::Object {
            object: Some(o), ..
        } => match o {
            driftkv_wire::Object::Register(r) => sum(&mut r.values().map(|v| v.len())),
            driftkv_wire::Object::Set(s) => sum(&mut s.members().map(|m| m.len())),
            driftkv_wire::Object::Map(m) => m.size().0,
            driftkv_wire::Object::Counter(_) => 0,
        },
        _ => 0,
    }
}

/// `reply` for a client, within the node's share of held reply bytes: refused when it would
/// pass [`REPLY_BYTES_HELD_MAX`].
fn answer(reply: Reply, pool: &Arc<AtomicUsize>) -> Answer {
    let bytes = value_bytes(&reply);
    if bytes == 0 {
        return Answer::from(reply);
    }
    let taken = pool.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
        held.checked_add(bytes)
            .filter(|&after| after <= REPLY_BYTES_HELD_MAX)
    });
    if taken.is_err() {
        return Answer::from(Reply::error(
            driftkv_wire::ErrorKind::Unavailable,
            format!(
                "this node holds {REPLY_BYTES_HELD_MAX} bytes of replies its clients have not \
                 read yet; read the replies already asked for, then ask again"
            ),
        ));
    }
    Answer {
        reply,
        _held: Some(Held {
            bytes,
            pool: Arc::clone(pool),
        }),
    }
}

/// What the node loop counts, for the metrics: how well group commit gathers.
#[derive(Debug, Default)]
pub struct LoopStats {
    /// Events handled (client requests, peer messages, ticks, queries).
    pub events: AtomicU64,
    /// Batches of outputs released.
    pub batches: AtomicU64,
    /// Syncs run on the sync thread.
    pub syncs: AtomicU64,
    /// Microseconds from each sync's start to its batch's release, summed.
    pub sync_micros: AtomicU64,
    /// Bytes of values in replies sent and not yet taken by their clients (a gauge).
    pub reply_bytes_held: Arc<AtomicUsize>,
}

/// Events taken at once at most, before the loop looks whether a sync has ended.
const BATCH_MAX: usize = 512;
/// Outputs the next batch holds at most while a sync runs; past it the node waits for the
/// sync before taking more events.
const OPEN_HELD_MAX: usize = 65_536;
/// Bytes of values in a batch's replies at most (one reply may pass it alone): past it the
/// batch is closed, so a burst of large reads is answered a part at a time.
const OPEN_REPLY_BYTES_MAX: usize = 32 * 1024 * 1024;

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

/// Runs the node until its event channel closes, then makes what it holds durable, sends it
/// and returns.
pub fn run_node_loop<S: NodeStore>(
    node: Node,
    store: S,
    events: mpsc::Receiver<Event<S>>,
    transport: Arc<Transport>,
    stats: Arc<LoopStats>,
) {
    // The node thread's own reactor: it waits for events and for the sync thread at once.
    // What it runs between waits is the core, synchronously.
    let reactor = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("the node thread's reactor starts");
    let mut looped = NodeLoop {
        // Messages to itself go straight back in, in the same batch.
        driver: Driver::with_loopback(node.id().clone()),
        node,
        store,
        transport,
        clock: Clock { last: 0 },
        clients: HashMap::new(),
        next_client: 1,
        released: Vec::new(),
        open_reply_bytes: 0,
        syncing: None,
        stats,
        stop: false,
    };
    reactor.block_on(looped.run(events));
}

/// The node thread's state between events.
struct NodeLoop<S> {
    node: Node,
    store: S,
    transport: Arc<Transport>,
    clock: Clock,
    clients: HashMap<ClientId, oneshot::Sender<Answer>>,
    next_client: ClientId,
    driver: Driver,
    released: Vec<Output>,
    /// Bytes of values in the replies of the batch not yet sealed.
    open_reply_bytes: usize,
    /// The sync of the sealed batch, running on the sync thread, and when it began.
    syncing: Option<(JoinHandle<Result<(), StoreError>>, Instant)>,
    stats: Arc<LoopStats>,
    /// An [`Event::Stop`] came: the loop ends once what it has taken is handled.
    stop: bool,
}

impl<S: NodeStore> NodeLoop<S> {
    async fn run(&mut self, mut events: mpsc::Receiver<Event<S>>) {
        // Events taken from the queue and not yet handled (a batch stops early once its
        // replies grow large; the rest wait here).
        let mut batch: VecDeque<Event<S>> = VecDeque::with_capacity(BATCH_MAX);
        loop {
            if !batch.is_empty() && self.may_take() {
                self.handle(&mut batch);
            } else {
                tokio::select! {
                    // A sync that ended releases its batch before more events are taken.
                    biased;
                    synced = async { (&mut self.syncing.as_mut().expect("guarded").0).await },
                        if self.syncing.is_some() =>
                    {
                        if let Some((_, began)) = self.syncing.take() {
                            let took = began.elapsed().as_micros();
                            let took = u64::try_from(took).unwrap_or(u64::MAX);
                            self.stats.sync_micros.fetch_add(took, Ordering::Relaxed);
                        }
                        self.synced(synced.unwrap_or_else(|e| {
                            Err(StoreError::Io(format!("the sync thread failed: {e}")))
                        }));
                    }
                    first = events.recv(), if batch.is_empty() && self.may_take() => {
                        let Some(first) = first else { break };
                        batch.push_back(first);
                        while batch.len() < BATCH_MAX {
                            match events.try_recv() {
                                Ok(e) => batch.push_back(e),
                                Err(_) => break,
                            }
                        }
                        self.handle(&mut batch);
                    }
                }
            }
            if self.syncing.is_none() {
                self.seal();
            }
            if self.stop && batch.is_empty() {
                break;
            }
        }
        // The channel closed, or the node was told to stop. What it holds is synced and sent first.
        if let Some((syncing, _)) = self.syncing.take() {
            let synced = syncing
                .await
                .unwrap_or_else(|e| Err(StoreError::Io(format!("the sync thread failed: {e}"))));
            self.synced(synced);
        }
        self.driver.seal();
        let synced = self.store.sync();
        self.synced(synced);
    }

    /// Whether the next batch may take more events: always, unless a sync runs and the batch
    /// already holds [`OPEN_HELD_MAX`] outputs or [`OPEN_REPLY_BYTES_MAX`] bytes of values (a
    /// slow disk then holds the queue, which is bounded, rather than the node's memory).
    fn may_take(&self) -> bool {
        self.syncing.is_none()
            || (self.driver.held() < OPEN_HELD_MAX && self.open_reply_bytes < OPEN_REPLY_BYTES_MAX)
    }

    /// Feeds the waiting events to the core, until the batch's replies pass
    /// [`OPEN_REPLY_BYTES_MAX`] bytes of values (then the batch is sealed and released before
    /// the rest are handled: a burst of large reads never holds more than that at once).
    fn handle(&mut self, batch: &mut VecDeque<Event<S>>) {
        let now = self.clock.now_ms();
        while self.open_reply_bytes < OPEN_REPLY_BYTES_MAX {
            let Some(event) = batch.pop_front() else {
                break;
            };
            self.stats.events.fetch_add(1, Ordering::Relaxed);
            let input = match event {
                Event::Client { request, reply } => {
                    let client = self.next_client;
                    self.next_client += 1;
                    self.clients.insert(client, reply);
                    Input::Request { client, request }
                }
                Event::Peer { from, message } => Input::Message { from, message },
                Event::Tick => Input::Tick,
                Event::Query(query) => {
                    query(&self.node, &self.store);
                    continue;
                }
                Event::Control(change) => {
                    change(&mut self.node, &mut self.store);
                    continue;
                }
                Event::Stop => {
                    self.stop = true;
                    continue;
                }
            };
            let produced = self
                .driver
                .step(&mut self.node, &mut self.store, now, input);
            for output in produced {
                if let Output::Reply { reply, .. } = output.plain() {
                    self.open_reply_bytes =
                        self.open_reply_bytes.saturating_add(value_bytes(reply));
                }
            }
        }
    }

    /// Seals what the core produced since the last seal and starts its sync; a batch that
    /// wrote nothing is released at once. Called only when no sync is running, so batches
    /// leave in order.
    fn seal(&mut self) {
        if self.driver.held() == 0 && !self.driver.is_sealed() {
            // Nothing to release; a write with no answer (a hint, a repair) is synced now,
            // unless the store can sync no more (then there is nothing to back).
            if !self.store.begin_sync() || self.store.sync_failed() {
                return;
            }
            self.start_sync();
            return;
        }
        self.driver.seal();
        self.open_reply_bytes = 0;
        if self.store.begin_sync() {
            self.start_sync();
        } else {
            self.synced(Ok(()));
        }
    }

    /// Runs the store's sync on the sync thread.
    fn start_sync(&mut self) {
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        let sync = tokio::task::spawn_blocking(self.store.background_sync());
        self.syncing = Some((sync, Instant::now()));
    }

    /// Releases the sealed batch by how its sync ended, and sends it.
    fn synced(&mut self, synced: Result<(), StoreError>) {
        if !self.released.is_empty() || self.driver.is_sealed() {
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = self.driver.finish_with(synced, &mut self.released) {
            tracing::error!("storage sync failed, this batch's confirmations are refused: {e}");
        }
        self.node.note_driver(self.driver.counts());
        for output in self.released.drain(..) {
            deliver(
                &self.node,
                &self.transport,
                &mut self.clients,
                &self.stats.reply_bytes_held,
                output,
            );
        }
    }
}

/// Sends a released output on its way: a message to its member's address, a reply to its
/// waiting client.
fn deliver(
    node: &Node,
    transport: &Arc<Transport>,
    clients: &mut HashMap<ClientId, oneshot::Sender<Answer>>,
    held: &Arc<AtomicUsize>,
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
                let _ = tx.send(answer(reply, held));
            }
        }
        // A confirmation its sync backed: sent as what it wraps.
        Output::Durable(confirmation) => deliver(node, transport, clients, held, *confirmation),
    }
}

#[cfg(test)]
mod tests {
    //! The loop over a store whose syncs the test lets end one at a time: replies wait for
    //! their batch's sync, the node goes on meanwhile, batches leave in order, and a failed
    //! sync refuses what it would have confirmed.

    use std::sync::Mutex;
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use driftkv_core::NodeConfig;
    use driftkv_core::store::{Durability, Entries, MemStore};
    use driftkv_wire::{Hello, Key, Quorum};

    use super::*;

    /// How long a test waits for something that must happen.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A memory store whose every background sync waits for the test's verdict.
    struct GatedStore {
        inner: MemStore,
        dirty: bool,
        failed: bool,
        verdicts: Arc<Mutex<std_mpsc::Receiver<Result<(), StoreError>>>>,
    }

    impl Store for GatedStore {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.dirty = true;
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.dirty = true;
            self.inner.delete(key)
        }
        fn scan(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Entries, StoreError> {
            self.inner.scan(prefix, after, limit)
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            self.inner.sync()
        }
    }

    impl NodeStore for GatedStore {
        fn begin_sync(&mut self) -> bool {
            std::mem::take(&mut self.dirty) || self.failed
        }
        fn sync_failed(&self) -> bool {
            self.failed
        }
        fn background_sync(&self) -> Box<dyn FnOnce() -> Result<(), StoreError> + Send> {
            let verdicts = Arc::clone(&self.verdicts);
            Box::new(move || {
                let verdict = verdicts.lock().unwrap().recv_timeout(PATIENCE);
                verdict.unwrap_or_else(|_| Err(StoreError::Io("the test gave no verdict".into())))
            })
        }
    }

    /// A one-node cluster (N = 1) on a gated store, its loop on a thread of its own.
    struct Harness {
        events: mpsc::Sender<Event<GatedStore>>,
        verdicts: std_mpsc::Sender<Result<(), StoreError>>,
        thread: Option<std::thread::JoinHandle<()>>,
        stats: Arc<LoopStats>,
    }

    impl Harness {
        fn start() -> Harness {
            let mut cfg = NodeConfig::new("n1");
            cfg.ring.n = 1;
            cfg.w = Quorum::One;
            cfg.r = Quorum::One;
            let (verdicts, gate) = std_mpsc::channel();
            let mut store = GatedStore {
                inner: MemStore::new(Durability::GroupCommit),
                dirty: false,
                failed: false,
                verdicts: Arc::new(Mutex::new(gate)),
            };
            let node = Node::open(cfg, &mut store).unwrap();
            store.dirty = false;
            let hello = Hello::new("test", "n1", 3, 64);
            let (events, rx) = mpsc::channel(64);
            let stats = Arc::new(LoopStats::default());
            let counted = Arc::clone(&stats);
            let thread = std::thread::spawn(move || {
                let reactor = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let transport = Transport::new(hello, None, reactor.handle().clone());
                run_node_loop(node, store, rx, transport, counted);
            });
            Harness {
                events,
                verdicts,
                thread: Some(thread),
                stats,
            }
        }

        fn request(&self, request: Request) -> oneshot::Receiver<Answer> {
            let (reply, rx) = oneshot::channel();
            self.events
                .blocking_send(Event::Client { request, reply })
                .unwrap();
            rx
        }

        fn set(&self, key: &str, value: &str) -> oneshot::Receiver<Answer> {
            self.request(Request::Overwrite {
                key: Key::default_bucket(key.to_string()),
                value: Some(value.to_string().into()),
                expires_ms: None,
                w: Quorum::Default,
            })
        }

        fn get(&self, key: &str) -> oneshot::Receiver<Answer> {
            self.request(Request::Get {
                key: Key::default_bucket(key.to_string()),
                r: Quorum::Default,
            })
        }

        /// Waits until the node thread has handled every event sent before this call: a query
        /// is answered by the node thread itself, whatever syncs are running.
        fn handled(&self) {
            let (tx, rx) = std_mpsc::channel();
            let query: Query<GatedStore> = Box::new(move |_, _| {
                let _ = tx.send(());
            });
            self.events.blocking_send(Event::Query(query)).unwrap();
            rx.recv_timeout(PATIENCE)
                .expect("the node thread answers a query while a sync runs");
        }

        fn let_one_sync_end(&self, verdict: Result<(), StoreError>) {
            self.verdicts.send(verdict).unwrap();
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            // The loop ends once its channel closes; a sync it waits for then ends too.
            let (dead, _) = mpsc::channel(1);
            self.events = dead;
            for _ in 0..4 {
                let _ = self.verdicts.send(Ok(()));
            }
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
        }
    }

    fn wait(rx: oneshot::Receiver<Answer>) -> Reply {
        wait_answer(rx).reply
    }

    fn wait_answer(rx: oneshot::Receiver<Answer>) -> Answer {
        let (tx, done) = std_mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(rx.blocking_recv());
        });
        done.recv_timeout(PATIENCE)
            .expect("an answer in time")
            .expect("the loop answers")
    }

    fn pending(rx: &mut oneshot::Receiver<Answer>) -> bool {
        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }

    #[test]
    fn a_write_is_answered_only_after_its_sync_and_the_node_goes_on_meanwhile() {
        let h = Harness::start();
        let mut first = h.set("a", "1");
        h.handled();
        assert!(pending(&mut first), "answered before its sync ended");
        // The next batch is handled while the first batch's sync runs.
        let mut second = h.set("b", "2");
        h.handled();
        assert!(pending(&mut first) && pending(&mut second));
        h.let_one_sync_end(Ok(()));
        assert!(matches!(wait(first), Reply::Written { .. }));
        // The second batch needs a sync of its own: its write came after the first began.
        h.handled();
        assert!(
            pending(&mut second),
            "released on a sync that began before it"
        );
        h.let_one_sync_end(Ok(()));
        assert!(matches!(wait(second), Reply::Written { .. }));
        // Reads alone need no sync: answered with none let through.
        match wait(h.get("a")) {
            Reply::Values { values, .. } => assert_eq!(values, vec![bytes::Bytes::from("1")]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            h.stats.syncs.load(Ordering::Relaxed),
            2,
            "one sync per batch that wrote"
        );
        assert_eq!(h.stats.batches.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_read_behind_an_unsynced_write_waits_for_that_write_to_be_durable() {
        let h = Harness::start();
        let _write = h.set("a", "1");
        h.handled();
        let mut read = h.get("a");
        h.handled();
        assert!(
            pending(&mut read),
            "a read answered with a write not yet durable"
        );
        h.let_one_sync_end(Ok(()));
        match wait(read) {
            Reply::Values { values, .. } => assert_eq!(values, vec![bytes::Bytes::from("1")]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies_clients_have_not_taken_are_bounded_in_bytes() {
        let h = Harness::start();
        let large = "x".repeat(REPLY_BYTES_HELD_MAX * 5 / 8);
        let write = h.set("a", &large);
        h.handled();
        h.let_one_sync_end(Ok(()));
        assert!(matches!(wait(write), Reply::Written { .. }));
        // The first read's answer is held, not taken: the second would pass the bound.
        let first = wait_answer(h.get("a"));
        assert!(matches!(first.reply, Reply::Values { .. }));
        assert_eq!(
            h.stats.reply_bytes_held.load(Ordering::Acquire),
            large.len()
        );
        match wait(h.get("a")) {
            Reply::Error { message, .. } => assert!(message.contains("not read"), "{message}"),
            other => panic!("a reply past the bound: {other:?}"),
        }
        // Taken (dropped), its share comes back and reads are answered again.
        drop(first);
        assert_eq!(h.stats.reply_bytes_held.load(Ordering::Acquire), 0);
        assert!(matches!(wait(h.get("a")), Reply::Values { .. }));
    }

    #[test]
    fn a_failed_sync_refuses_the_writes_it_would_have_confirmed() {
        let h = Harness::start();
        let write = h.set("a", "1");
        h.handled();
        h.let_one_sync_end(Err(StoreError::Io("the disk is gone".into())));
        match wait(write) {
            Reply::Error { message, .. } => assert!(message.contains("durable"), "{message}"),
            other => panic!("a write acknowledged after its sync failed: {other:?}"),
        }
    }
}
