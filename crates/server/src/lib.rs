//! The driftkv node as a process: the tokio shell around the sans-io core.
//!
//! It moves bytes (TCP transport, HTTP), time (ticks) and storage calls (fjall) for the core,
//! and decides nothing about the protocol: that is all in `driftkv-core`.
//!
//! Layers, each using only those below it: `listen`, `auth`, `config` and `transport` at the
//! bottom; `runtime` (the node thread); `metrics`; `handle` (the node as the front-ends reach
//! it, with its own error); the front-ends `http` and `resp`, which know nothing of each
//! other; and this file, which starts them all.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod handle;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod resp;
pub mod runtime;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use driftkv_core::{Node, Store};
use driftkv_storage::FjallStore;
use driftkv_wire::{Hello, PROTOCOL_VERSION, PROTOCOL_VERSION_OLDEST};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use config::{FileConfig, ServerConfig};

use runtime::Event;
use transport::Transport;

/// How often the core is ticked (expiring requests, gossip, handoff).
const TICK: Duration = Duration::from_millis(50);
/// Events (client requests, peer messages, ticks) queued for the node thread at most. A peer
/// connection whose message finds the queue full waits (and so stops reading its socket).
const EVENT_QUEUE: usize = 16 * 1024;
/// How often a leaving node checks whether it has handed everything off.
const DRAINED_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a node that has left waits before it exits: a moment for the last
/// acknowledgements and gossip to go out.
const LEAVE_LINGER: Duration = Duration::from_millis(500);

/// The incarnation of a node's actor: kept in the data directory, chosen fresh and at random
/// when the directory is new, so a node that lost its data never reuses its old dots (a
/// clock-based choice collided when a node was wiped and restarted within one second).
fn incarnation(store: &mut FjallStore) -> anyhow::Result<u32> {
    let key = driftkv_core::keys::meta_key("incarnation");
    if let Some(raw) = store.get(&key)? {
        let bytes: [u8; 4] = raw.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!("the incarnation record in the data directory is corrupt")
        })?;
        return Ok(u32::from_be_bytes(bytes));
    }
    let fresh = driftkv_causal::Actor::incarnation_from(random_u32());
    store.put(&key, &fresh.to_be_bytes())?;
    store.sync()?;
    Ok(fresh)
}

/// 32 random bits from the operating system (falling back on std's per-process random hash
/// keys mixed with the clock).
fn random_u32() -> u32 {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u32::from_le_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// The longest time to live a write may ask for, over HTTP (`ttl_ms`) or RESP (`EX`, `PX`,
/// `EXPIRE`, ...): about 100 years. Past it, or at an absolute time further away, the
/// request is refused rather than saturated.
pub const TTL_MS_MAX: u64 = 100 * 365 * 24 * 3600 * 1000;

/// Wall-clock milliseconds since the Unix epoch: what the shell judges expiry by, as the node
/// thread's clock does.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Watches `thread` from a thread of its own: the receiver gets the panic's message if it
/// panics, and nothing (the sender dropped) if it ends normally.
fn watch(
    thread: std::thread::JoinHandle<()>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<String>> {
    let (failed_tx, failed) = tokio::sync::oneshot::channel::<String>();
    std::thread::Builder::new()
        .name("node-watch".into())
        .spawn(move || {
            if let Err(panic) = thread.join() {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let _ = failed_tx.send(why);
            }
        })
        .context("cannot start the node watcher")?;
    Ok(failed)
}

/// A started node: its bound addresses, and a handle that stops it.
pub struct Running {
    pub http: SocketAddr,
    pub listen: SocketAddr,
    pub resp: Option<SocketAddr>,
    /// Fires when this node has left the cluster (after `POST /admin/leave`, once drained).
    pub left: tokio::sync::oneshot::Receiver<()>,
    /// Fires with the panic's message if the node thread panicked: the process must exit
    /// non-zero.
    pub failed: tokio::sync::oneshot::Receiver<String>,
    pub done: tokio::task::JoinHandle<()>,
    node: handle::NodeHandle,
    transport: Arc<Transport>,
}

/// How long a graceful stop waits for the hints it holds for live primaries to be handed over.
pub const STOP_HINTS_WAIT: Duration = Duration::from_secs(5);
/// How long a graceful stop waits, once the node thread ended, for the messages it sent last
/// to leave.
pub const STOP_DRAIN_WAIT: Duration = Duration::from_secs(2);
/// How often a graceful stop looks again at what it waits for.
const STOP_POLL: Duration = Duration::from_millis(20);

impl Running {
    /// Stops the node gracefully (SIGTERM, SIGINT): new client requests are refused (503,
    /// `-UNAVAILABLE`), the ones taken finish or time out, the coordinations it runs for others
    /// end and hints for primaries that are up are handed over (for at most the longer of
    /// [`STOP_HINTS_WAIT`] and a request's patience), then the node thread syncs what it holds
    /// and ends, and what it sent last leaves (at most [`STOP_DRAIN_WAIT`]). Peers' messages are
    /// served until then, so a write this node is a replica of is still acknowledged. With the
    /// default request timeout (2 s) it takes 12 s at most. `Err` carries the panic's message if
    /// the node thread panicked.
    pub async fn stop(mut self) -> Result<(), String> {
        let node = self.node.clone();
        node.refuse_clients();
        tracing::info!(
            "stopping: refusing new requests, finishing the {} in flight",
            node.in_flight()
        );
        let deadline = Instant::now() + node.request_patience();
        while node.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(STOP_POLL).await;
        }
        // Coordinations this node runs (a write waiting for its replicas, a read repairing)
        // end by their deadline; hints for live primaries are handed over.
        let deadline = Instant::now() + STOP_HINTS_WAIT.max(node.request_patience());
        loop {
            let left = node
                .query(|node: &Node, _: &FjallStore| {
                    (node.hints_deliverable(), node.requests_pending())
                })
                .await;
            match left {
                Ok((0, 0)) | Err(_) => break,
                Ok((hints, pending)) if Instant::now() >= deadline => {
                    tracing::warn!(
                        "stopping with {hints} hints not yet handed to their live primaries \
                         (kept on disk: handed over after the restart) and {pending} requests \
                         coordinated here unfinished"
                    );
                    break;
                }
                Ok(_) => tokio::time::sleep(STOP_POLL).await,
            }
        }
        let _ = node.stop().await;
        let outcome = match (&mut self.failed).await {
            Ok(why) => Err(why),
            Err(_) => Ok(()),
        };
        // What the last batch sent (acknowledgements, forwarded answers) leaves before the
        // process does.
        let deadline = Instant::now() + STOP_DRAIN_WAIT;
        while self.transport.queued() > 0 && Instant::now() < deadline {
            tokio::time::sleep(STOP_POLL).await;
        }
        if outcome.is_ok() {
            tracing::info!("stopped: every write synced");
        }
        outcome
    }
}

/// The sockets a node serves, bound before anything starts.
struct Listeners {
    peer: TcpListener,
    http: TcpListener,
    resp: Option<TcpListener>,
}

impl Listeners {
    async fn bind(cfg: &ServerConfig) -> anyhow::Result<Listeners> {
        let peer = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen for nodes on {}", cfg.listen))?;
        let http = TcpListener::bind(cfg.http)
            .await
            .with_context(|| format!("cannot serve HTTP on {}", cfg.http))?;
        let resp = match cfg.resp {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot serve the Redis protocol on {addr}"))?,
            ),
            None => None,
        };
        Ok(Listeners { peer, http, resp })
    }
}

/// Opens storage, binds the sockets and starts every task. Returns once the node serves.
pub async fn start(mut cfg: ServerConfig) -> anyhow::Result<Running> {
    let mut store = open_store(&mut cfg)?;
    let listeners = Listeners::bind(&cfg).await?;
    let listen = listeners.peer.local_addr()?;
    let http = listeners.http.local_addr()?;
    cfg.core.listen = listen.to_string();
    cfg.core.http = http.to_string();

    let node = Node::open(cfg.core.clone(), &mut store).context("cannot start the node")?;
    let (oldest, newest) = protocol_versions();
    let hello = Hello {
        cluster: cfg.cluster.clone(),
        protocol_version: oldest,
        node: cfg.core.id.clone(),
        listen: listen.to_string(),
        http: http.to_string(),
        protocol_newest: newest,
        n: u32::try_from(cfg.core.ring.n).unwrap_or(u32::MAX),
        partitions: cfg.core.ring.partitions,
    };
    let transport = Transport::new(hello, cfg.tls.clone(), tokio::runtime::Handle::current());
    let transport_handle = transport.clone();
    let (events_tx, events_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let loop_stats = Arc::new(runtime::LoopStats::default());
    let failed = spawn_node_thread(
        &cfg,
        node,
        store,
        events_rx,
        transport.clone(),
        loop_stats.clone(),
    )?;
    spawn_peer_intake(&transport, listeners.peer, &cfg, events_tx.clone());
    spawn_ticks(events_tx.clone());

    let metrics = Arc::new(metrics::Metrics::new(transport.stats.clone(), loop_stats));
    let node = handle::NodeHandle::new(events_tx, cfg.core.clone(), metrics.clone());
    let resp = match listeners.resp {
        Some(listener) => Some(spawn_resp(listener, &cfg, node.clone(), &metrics)?),
        None => None,
    };
    let left = watch_leaving(node.clone());
    let node_handle = node.clone();
    let state = http::AppState {
        node,
        users: cfg.users.clone(),
        open_loopback: cfg.users.is_none() && http.ip().is_loopback(),
        metrics: metrics.clone(),
        transport,
        lab: cfg.lab,
        watchers: Arc::default(),
    };
    let done = tokio::spawn(http::serve(
        listeners.http,
        http::router(state),
        cfg.tls.as_ref().map(|t| t.api_server.clone()),
        cfg.limits.clone(),
        metrics.http_listener.clone(),
    ));
    log_started(&cfg, listen, http);
    Ok(Running {
        http,
        listen,
        resp,
        left,
        failed,
        done,
        node: node_handle,
        transport: transport_handle,
    })
}

/// The protocol versions this node speaks: its own and the one before. With
/// `DRIFTKV_PROTOCOL_AHEAD=1` (tests of rolling upgrades only) it pretends to be the next
/// build: it speaks its own version and one more, whose messages it lays out as its own.
fn protocol_versions() -> (u16, u16) {
    if std::env::var("DRIFTKV_PROTOCOL_AHEAD").is_ok_and(|v| v == "1") {
        tracing::warn!(
            "DRIFTKV_PROTOCOL_AHEAD: speaking protocol versions {} and {} (a test of rolling upgrades)",
            PROTOCOL_VERSION,
            PROTOCOL_VERSION + 1
        );
        (PROTOCOL_VERSION, PROTOCOL_VERSION + 1)
    } else {
        (PROTOCOL_VERSION_OLDEST, PROTOCOL_VERSION)
    }
}

/// Opens the data directory's store (creating the directory) and sets the node's
/// incarnation from it.
fn open_store(cfg: &mut ServerConfig) -> anyhow::Result<FjallStore> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    let mut store = FjallStore::open(cfg.data_dir.join("store"), cfg.durability)
        .with_context(|| format!("cannot open storage in {}", cfg.data_dir.display()))?;
    cfg.core.incarnation = incarnation(&mut store)?;
    Ok(store)
}

/// Starts the node thread, which owns the node and its store. If it panics, that is a bug:
/// the process must not go on serving without it, nor exit as if all were well, so the
/// receiver returned fires and the process exits loudly and non-zero.
fn spawn_node_thread(
    cfg: &ServerConfig,
    node: Node,
    store: FjallStore,
    events: mpsc::Receiver<Event>,
    transport: Arc<Transport>,
    stats: Arc<runtime::LoopStats>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<String>> {
    let thread = std::thread::Builder::new()
        .name(format!("node-{}", cfg.core.id))
        .spawn(move || runtime::run_node_loop(node, store, events, transport, stats))
        .context("cannot start the node thread")?;
    watch(thread)
}

/// Serves the node-to-node port and hands what peers send to the node loop.
fn spawn_peer_intake(
    transport: &Arc<Transport>,
    listener: TcpListener,
    cfg: &ServerConfig,
    events: mpsc::Sender<Event>,
) {
    tokio::spawn(
        transport
            .clone()
            .serve(listener, cfg.limits.connections_max, events),
    );
}

/// Ticks the node loop every [`TICK`]; a full queue skips one rather than piling up.
fn spawn_ticks(events: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            if let Err(mpsc::error::TrySendError::Closed(_)) = events.try_send(Event::Tick) {
                return;
            }
        }
    });
}

/// Serves the Redis protocol on `listener`; returns its address.
fn spawn_resp(
    listener: TcpListener,
    cfg: &ServerConfig,
    node: handle::NodeHandle,
    metrics: &metrics::Metrics,
) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let settings = resp::Settings {
        tls: cfg.tls.as_ref().map(|t| t.api_server.clone()),
        users: cfg.users.clone(),
        connections_max: cfg.limits.connections_max,
        command_bytes_max: cfg.limits.resp_command_bytes_max,
    };
    tokio::spawn(resp::serve(listener, node, metrics.resp.clone(), settings));
    Ok(addr)
}

/// Fires once this node, leaving, holds no data and no hints: then the process exits.
fn watch_leaving(node: handle::NodeHandle) -> tokio::sync::oneshot::Receiver<()> {
    let (left_tx, left) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(DRAINED_CHECK_INTERVAL);
        loop {
            every.tick().await;
            match node
                .query(|node: &Node, store: &FjallStore| node.drained(store))
                .await
            {
                Err(handle::HandleError::Stopped) => return,
                Ok(true) => {
                    tracing::warn!("every partition handed off: left the cluster");
                    tokio::time::sleep(LEAVE_LINGER).await;
                    let _ = left_tx.send(());
                    return;
                }
                Ok(false) | Err(_) => continue,
            }
        }
    });
    left
}

fn log_started(cfg: &ServerConfig, listen: SocketAddr, http: SocketAddr) {
    tracing::info!(
        node = %cfg.core.id,
        listen = %listen,
        http = %http,
        "node started (cluster {:?}, n={}, {} partitions; {}, {})",
        cfg.cluster,
        cfg.core.ring.n,
        cfg.core.ring.partitions,
        if cfg.tls.is_some() { "TLS on every port, mutual between nodes" } else { "no TLS" },
        if cfg.users.is_some() { "clients authenticate" } else { "no client authentication" },
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_of_the_watched_thread_is_reported_and_a_normal_end_is_not() {
        let panics = std::thread::spawn(|| panic!("the node loop broke an invariant"));
        let failed = super::watch(panics).unwrap();
        assert_eq!(
            failed.blocking_recv().as_deref(),
            Ok("the node loop broke an invariant")
        );
        let ends = std::thread::spawn(|| {});
        let failed = super::watch(ends).unwrap();
        assert!(
            failed.blocking_recv().is_err(),
            "a normal end is no failure"
        );
    }
}
