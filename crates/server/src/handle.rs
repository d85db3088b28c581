//! The node as the client front-ends see it: a handle that hands a request, a query or a
//! change to the node thread and waits, bounded, for the answer.
//!
//! It knows nothing of HTTP or RESP: each front-end turns a [`HandleError`] into its own answer
//! (HTTP a 503 with `{"error": ...}`, RESP an `-UNAVAILABLE` line), naming what went wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use driftkv_core::{Node, NodeConfig, Store};
use driftkv_storage::FjallStore;
use driftkv_wire::{Reply, Request};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{Metrics, labels, outcome};
use crate::runtime::{Answer, Event};

/// How long a query of the node's state (health, cluster view, metrics) may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client request may take beyond twice the core's own request timeout. The core
/// answers at its deadline (unavailable if too few replicas answered); this margin only covers
/// a node thread that is swamped or stuck.
pub const REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Why the node gave no answer. Each variant leaves the request's fate different: a
/// [`HandleError::Overloaded`] request never reached the node; a [`HandleError::TimedOut`] one
/// did, and may still take effect; a [`HandleError::Stopped`] one may have reached it, unless
/// it was refused because the node is stopping gracefully (then it never did).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The node thread is gone: the node is shutting down (or its thread ended).
    #[error("the node is shutting down")]
    Stopped,
    /// The node's event queue stayed full for the whole wait: the request was not queued.
    #[error("the node is overloaded: its event queue stayed full")]
    Overloaded,
    /// The request was queued but no answer came back in time.
    #[error("the node did not answer in time")]
    TimedOut,
}

impl HandleError {
    /// The `outcome` label of a request that ended this way, in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            HandleError::Stopped => "stopped",
            HandleError::Overloaded => "overloaded",
            HandleError::TimedOut => "timeout",
        }
    }
}

/// A request the node has taken and not yet answered (see [`NodeHandle::submit`]).
pub struct Pending {
    rx: oneshot::Receiver<Answer>,
    started: Instant,
    patience: Duration,
    op: &'static str,
    level: String,
    /// Counts the request as in flight until the reply is taken or given up.
    _flight: InFlight,
}

/// One client request the node has taken: counted in [`NodeHandle::in_flight`] while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A cheap, cloneable way to the node thread, shared by every client connection.
#[derive(Clone)]
pub struct NodeHandle {
    events: mpsc::Sender<Event>,
    config: Arc<NodeConfig>,
    metrics: Arc<Metrics>,
    /// Set when the node stops gracefully: new client requests are refused from then on.
    stopping: Arc<AtomicBool>,
    /// Client requests taken and not yet answered, for a graceful stop to wait on.
    in_flight: Arc<AtomicUsize>,
}

impl NodeHandle {
    /// A handle sending to the node thread's `events`; `config` is the node's, `metrics`
    /// where each client request's outcome and latency are recorded.
    pub fn new(events: mpsc::Sender<Event>, config: NodeConfig, metrics: Arc<Metrics>) -> Self {
        NodeHandle {
            events,
            config: Arc::new(config),
            metrics,
            stopping: Arc::default(),
            in_flight: Arc::default(),
        }
    }

    /// Refuses every client request from now on ([`HandleError::Stopped`]); the ones taken
    /// before still get their answers. Queries and administrative changes still run.
    pub fn refuse_clients(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the node refuses client requests because it is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Client requests taken and not yet answered (or given up on).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The node's configuration (limits, levels, buckets).
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        self.config.id.as_str()
    }

    /// Hands a client request to the node and waits for its reply, recording the outcome and
    /// latency in the metrics.
    pub async fn call(&self, request: Request) -> Result<Reply, HandleError> {
        match self.submit(request).await {
            Ok(pending) => self.wait(pending).await,
            Err(e) => Err(e),
        }
    }

    /// Hands a client request to the node without waiting for its reply: a pipelining
    /// connection submits every command it has read, then waits for their replies in order
    /// ([`NodeHandle::wait`]). Fails when the node cannot take the request (recorded in the
    /// metrics then).
    pub async fn submit(&self, request: Request) -> Result<Pending, HandleError> {
        let (op, level) = labels(&request);
        let started = Instant::now();
        let patience = self.request_patience();
        let flight = InFlight::new(&self.in_flight);
        if self.is_stopping() {
            self.metrics
                .observe(op, level, HandleError::Stopped.label(), started.elapsed());
            return Err(HandleError::Stopped);
        }
        let (tx, rx) = oneshot::channel();
        let event = Event::Client { request, reply: tx };
        let queued = match self.events.try_send(event) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(HandleError::Stopped),
            // The queue is full: wait for room, within the request's patience.
            Err(mpsc::error::TrySendError::Full(event)) => {
                match tokio::time::timeout(patience, self.events.send(event)).await {
                    Err(_) => Err(HandleError::Overloaded),
                    Ok(Err(_)) => Err(HandleError::Stopped),
                    Ok(Ok(())) => Ok(()),
                }
            }
        };
        match queued {
            Ok(()) => Ok(Pending {
                rx,
                started,
                patience,
                op,
                level,
                _flight: flight,
            }),
            Err(e) => {
                self.metrics
                    .observe(op, level, e.label(), started.elapsed());
                Err(e)
            }
        }
    }

    /// Waits for the reply of a submitted request, within its patience, recording the outcome
    /// and latency in the metrics.
    pub async fn wait(&self, pending: Pending) -> Result<Reply, HandleError> {
        let Pending {
            rx,
            started,
            patience,
            op,
            level,
            _flight,
        } = pending;
        let left = patience.saturating_sub(started.elapsed());
        let answer = match tokio::time::timeout(left, rx).await {
            Err(_) => Err(HandleError::TimedOut),
            Ok(Err(_)) => Err(HandleError::Stopped),
            // Taken: its share of the held reply bytes goes back as the answer is dropped.
            Ok(Ok(answer)) => Ok(answer.reply),
        };
        let result = match &answer {
            Ok(reply) => outcome(reply),
            Err(e) => e.label(),
        };
        self.metrics.observe(op, level, result, started.elapsed());
        answer
    }

    /// Runs `f` on the node thread, with read access to the node and its store, and returns
    /// what it computed.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Node, &FjallStore) -> T + Send + 'static,
    ) -> Result<T, HandleError> {
        let (tx, rx) = oneshot::channel();
        let query = Box::new(move |node: &Node, store: &FjallStore| {
            let _ = tx.send(f(node, store));
        });
        self.deliver(Event::Query(query), rx, QUERY_TIMEOUT).await
    }

    /// Runs an administrative change `f` on the node thread and returns its result. It has no
    /// deadline: a change is not abandoned half-way, so its caller learns how it ended.
    pub async fn control<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, &mut dyn Store) -> T + Send + 'static,
    ) -> Result<T, HandleError> {
        let (tx, rx) = oneshot::channel();
        let change = Box::new(move |node: &mut Node, store: &mut dyn Store| {
            let _ = tx.send(f(node, store));
        });
        self.events
            .send(Event::Control(change))
            .await
            .map_err(|_| HandleError::Stopped)?;
        rx.await.map_err(|_| HandleError::Stopped)
    }

    /// Tells the node thread to stop: it handles what it has taken, syncs, sends, and ends.
    pub async fn stop(&self) -> Result<(), HandleError> {
        self.events
            .send(Event::Stop)
            .await
            .map_err(|_| HandleError::Stopped)
    }

    /// How long a client request may wait, queueing and answer together.
    pub fn request_patience(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms.saturating_mul(2))
            .saturating_add(REQUEST_GRACE)
    }

    /// Queues `event` and waits for its answer on `rx`, both within `patience`.
    async fn deliver<T>(
        &self,
        event: Event,
        rx: oneshot::Receiver<T>,
        patience: Duration,
    ) -> Result<T, HandleError> {
        let started = Instant::now();
        match tokio::time::timeout(patience, self.events.send(event)).await {
            Err(_) => return Err(HandleError::Overloaded),
            Ok(Err(_)) => return Err(HandleError::Stopped),
            Ok(Ok(())) => {}
        }
        let left = patience.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rx).await {
            Err(_) => Err(HandleError::TimedOut),
            Ok(Err(_)) => Err(HandleError::Stopped),
            Ok(Ok(answer)) => Ok(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftkv_wire::{Key, Quorum};

    fn get() -> Request {
        Request::Get {
            key: Key::default_bucket("k"),
            r: Quorum::Default,
        }
    }

    fn handle(queue: usize) -> (NodeHandle, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(queue);
        let mut config = NodeConfig::new("n1");
        // The shortest patience: 2 ms and the grace.
        config.request_timeout_ms = 1;
        (NodeHandle::new(tx, config, Arc::default()), rx)
    }

    #[tokio::test]
    async fn a_stopped_node_is_reported_as_stopped() {
        let (node, events) = handle(1);
        drop(events);
        assert_eq!(node.call(get()).await, Err(HandleError::Stopped));
        assert_eq!(node.query(|_, _| ()).await, Err(HandleError::Stopped));
    }

    #[tokio::test]
    async fn a_node_that_drops_a_request_unanswered_is_reported_as_stopped() {
        let (node, mut events) = handle(1);
        let thread = tokio::spawn(async move { drop(events.recv().await) });
        assert_eq!(node.call(get()).await, Err(HandleError::Stopped));
        thread.await.unwrap();
    }

    #[tokio::test]
    async fn a_queued_request_without_an_answer_times_out() {
        let (node, _events) = handle(1);
        assert_eq!(node.call(get()).await, Err(HandleError::TimedOut));
    }

    #[tokio::test]
    async fn a_request_that_finds_the_queue_full_is_reported_as_overload() {
        let (node, _events) = handle(1);
        // The first request takes the queue's one place and is never taken from it.
        assert_eq!(node.call(get()).await, Err(HandleError::TimedOut));
        assert_eq!(node.call(get()).await, Err(HandleError::Overloaded));
    }

    #[tokio::test]
    async fn an_answer_comes_back_and_its_outcome_is_counted() {
        let (node, mut events) = handle(1);
        tokio::spawn(async move {
            if let Some(Event::Client { reply, .. }) = events.recv().await {
                let _ = reply.send(Answer::from(Reply::NotFound {
                    context: Default::default(),
                }));
            }
        });
        assert!(matches!(node.call(get()).await, Ok(Reply::NotFound { .. })));
        assert_eq!(node.metrics.outcome_count("get", "not_found"), 1);
    }
}
