//! `GET /metrics`: Prometheus text exposition, written by hand (the format is simple and this
//! keeps the dependency tree small). Names follow the conventions: `driftkv_` prefix,
//! `_total` for counters, `_seconds` / `_bytes` units, histograms with cumulative `_bucket`
//! series so they aggregate across nodes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftkv_core::stats::COUNTERS;
use driftkv_core::{Histogram, Stats};
use driftkv_wire::{MemberInfo, MemberState, Quorum, Reply, Request};

use crate::listen::ListenerStats;
use crate::runtime::LoopStats;
use crate::transport::TransportStats;

/// What the text of `/metrics` starts with room for.
const RENDER_BYTES_INITIAL: usize = 16 * 1024;

/// A core histogram in milliseconds, exported in seconds.
const SECONDS_PER_MS: f64 = 1e-3;
/// A core histogram exported as it is counted (values, not time).
const UNSCALED: f64 = 1.0;

/// Request latency bucket bounds, in seconds.
const LATENCY_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Clone, Debug, Default)]
struct Latency {
    counts: [u64; LATENCY_BOUNDS.len() + 1],
    sum: f64,
    count: u64,
}

impl Latency {
    fn record(&mut self, seconds: f64) {
        let slot = LATENCY_BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.counts[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// What the Redis-protocol front-end counts. It is kept here, below both front-ends, so the
/// metrics depend on no front-end.
#[derive(Default, Debug)]
pub struct RespStats {
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub commands: AtomicU64,
    pub errors: AtomicU64,
    pub sibling_reads_resolved: AtomicU64,
    pub auth_failures: AtomicU64,
    pub listener: Arc<ListenerStats>,
}

/// What the shell measures around the core; the core's own counts come in a [`Snapshot`].
#[derive(Default)]
pub struct Metrics {
    latency: Mutex<BTreeMap<(&'static str, String), Latency>>,
    outcomes: Mutex<BTreeMap<(&'static str, String, &'static str), u64>>,
    pub transport: Arc<TransportStats>,
    pub http_listener: Arc<ListenerStats>,
    pub resp: Arc<RespStats>,
    pub node_loop: Arc<LoopStats>,
    /// HTTP watches (`/kv/{key}/watch`) waiting now.
    pub watches_open: AtomicU64,
}

/// The node thread's state at one moment, for rendering.
pub struct Snapshot {
    pub node: String,
    pub stats: Stats,
    pub members: Vec<MemberInfo>,
    pub partitions_owned: usize,
    pub hints_pending: usize,
    pub requests_pending: usize,
    pub partitions_to_transfer: usize,
    pub storage_bytes: Option<u64>,
}

/// A consistency level as the metrics and `INFO` name it.
pub fn level_name(q: &Quorum) -> String {
    match q {
        Quorum::Default => "default".into(),
        Quorum::One => "one".into(),
        Quorum::Quorum => "quorum".into(),
        Quorum::All => "all".into(),
        Quorum::Count(n) => n.to_string(),
    }
}

/// The operation and consistency-level labels of a request.
pub fn labels(request: &Request) -> (&'static str, String) {
    match request {
        Request::Get { r, .. } => ("get", level_name(r)),
        Request::SessionGet { r, .. } => ("session_get", level_name(r)),
        Request::Put { value: None, w, .. } | Request::Overwrite { value: None, w, .. } => {
            ("delete", level_name(w))
        }
        Request::Put { w, .. } | Request::Overwrite { w, .. } => ("put", level_name(w)),
        Request::CounterAdd { w, .. } => ("counter_add", level_name(w)),
        Request::CounterGet { r, .. } => ("counter_get", level_name(r)),
        Request::SetUpdate { w, .. } => ("set_update", level_name(w)),
        Request::SetGet { r, .. } => ("set_get", level_name(r)),
        Request::Inspect { .. } => ("inspect", "all".into()),
        Request::Delete { w, .. } => ("delete", level_name(w)),
        Request::MapUpdate { w, .. } => ("map_update", level_name(w)),
        Request::MapGet { r, .. } => ("map_get", level_name(r)),
        Request::Read { r, .. } => ("read", level_name(r)),
        Request::ListKeys { .. } => ("list_keys", "all".into()),
        Request::Restore { w, .. } => ("restore", level_name(w)),
    }
}

/// The `outcome` label of a request the node answered with `reply`.
pub fn outcome(reply: &Reply) -> &'static str {
    match reply {
        Reply::NotFound { .. } => "not_found",
        Reply::Error { kind, .. } => match kind {
            driftkv_wire::ErrorKind::BadRequest => "bad_request",
            driftkv_wire::ErrorKind::WrongType => "wrong_type",
            driftkv_wire::ErrorKind::Unavailable => "unavailable",
            driftkv_wire::ErrorKind::Internal => "internal",
        },
        _ => "ok",
    }
}

/// A series the shell counts: its name, its type, its help text, and where it is.
type ShellSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Metrics) -> &AtomicU64,
);

/// The shell's series (RESP, transport, listeners), in the order they are shown.
const SHELL_SERIES: [ShellSeries; 26] = [
    (
        "driftkv_http_watches_open",
        "gauge",
        "HTTP watches of keys waiting for a change now (bounded by WATCHERS_MAX).",
        |m| &m.watches_open,
    ),
    (
        "driftkv_peer_bursts_broken_total",
        "counter",
        "Bursts of messages to a peer lost when the connection broke or stalled while writing them.",
        |m| &m.transport.dropped_broken,
    ),
    (
        "driftkv_node_events_total",
        "counter",
        "Events the node thread handled (client requests, peer messages, ticks, queries).",
        |m| &m.node_loop.events,
    ),
    (
        "driftkv_node_batches_total",
        "counter",
        "Batches of answers and messages the node released, each after its sync (group commit).",
        |m| &m.node_loop.batches,
    ),
    (
        "driftkv_storage_syncs_total",
        "counter",
        "Storage syncs (fsyncs under group commit) the node ran, each covering a batch.",
        |m| &m.node_loop.syncs,
    ),
    (
        "driftkv_storage_sync_wait_microseconds_total",
        "counter",
        "Microseconds from each sync's start to its batch's release, summed.",
        |m| &m.node_loop.sync_micros,
    ),
    (
        "driftkv_resp_sibling_reads_resolved_total",
        "counter",
        "Redis GETs on keys with siblings, answered with the greatest sibling.",
        |m| &m.resp.sibling_reads_resolved,
    ),
    (
        "driftkv_peer_frames_too_large_total",
        "counter",
        "Messages not sent because their frame would pass the frame limit.",
        |m| &m.transport.frames_too_large,
    ),
    (
        "driftkv_peer_tls_failures_total",
        "counter",
        "TLS handshakes with peers that failed (no certificate, another CA, ...).",
        |m| &m.transport.tls_failures,
    ),
    (
        "driftkv_peer_listener_full_total",
        "counter",
        "Times the node-to-node listener held connections_max connections.",
        |m| &m.transport.listener.full,
    ),
    (
        "driftkv_peer_accept_errors_total",
        "counter",
        "Failed accepts on the node-to-node listener (out of descriptors, ...).",
        |m| &m.transport.listener.accept_errors,
    ),
    (
        "driftkv_http_listener_full_total",
        "counter",
        "Times the HTTP listener held connections_max connections.",
        |m| &m.http_listener.full,
    ),
    (
        "driftkv_http_accept_errors_total",
        "counter",
        "Failed accepts on the HTTP listener (out of descriptors, ...).",
        |m| &m.http_listener.accept_errors,
    ),
    (
        "driftkv_peer_frames_sent_total",
        "counter",
        "Frames sent to other nodes.",
        |m| &m.transport.frames_sent,
    ),
    (
        "driftkv_peer_frames_received_total",
        "counter",
        "Frames received from other nodes.",
        |m| &m.transport.frames_received,
    ),
    (
        "driftkv_peer_dropped_queue_full_total",
        "counter",
        "Messages dropped because a peer's queue was full.",
        |m| &m.transport.dropped_queue_full,
    ),
    (
        "driftkv_peer_dropped_unreachable_total",
        "counter",
        "Messages dropped because their peer was unreachable.",
        |m| &m.transport.dropped_unreachable,
    ),
    (
        "driftkv_peer_handshakes_refused_total",
        "counter",
        "Connections refused: another cluster, protocol or a duplicate id.",
        |m| &m.transport.handshakes_refused,
    ),
    (
        "driftkv_peer_connect_failures_total",
        "counter",
        "Failed attempts to connect to a peer.",
        |m| &m.transport.connect_failures,
    ),
    (
        "driftkv_peer_bad_frames_total",
        "counter",
        "Undecodable frames received.",
        |m| &m.transport.bad_frames,
    ),
    (
        "driftkv_resp_auth_failures_total",
        "counter",
        "Redis-protocol AUTH (or HELLO AUTH) attempts with a wrong user or password.",
        |m| &m.resp.auth_failures,
    ),
    (
        "driftkv_resp_listener_full_total",
        "counter",
        "Times the Redis-protocol listener held connections_max connections.",
        |m| &m.resp.listener.full,
    ),
    (
        "driftkv_resp_accept_errors_total",
        "counter",
        "Failed accepts on the Redis-protocol listener (out of descriptors, ...).",
        |m| &m.resp.listener.accept_errors,
    ),
    (
        "driftkv_resp_connections",
        "gauge",
        "Open Redis-protocol connections.",
        |m| &m.resp.connections,
    ),
    (
        "driftkv_resp_commands_total",
        "counter",
        "Redis-protocol commands executed.",
        |m| &m.resp.commands,
    ),
    (
        "driftkv_resp_errors_total",
        "counter",
        "Redis-protocol commands answered with an error.",
        |m| &m.resp.errors,
    ),
];

/// A gauge of the node thread's state: its name, its help text, and where it is.
type Gauge = (&'static str, &'static str, fn(&Snapshot) -> usize);

/// The gauges of a [`Snapshot`], in the order they are shown.
const GAUGES: [Gauge; 4] = [
    (
        "driftkv_partitions_to_transfer",
        "Partitions this node holds records of but no longer owns.",
        |snap| snap.partitions_to_transfer,
    ),
    (
        "driftkv_partitions_owned",
        "Ring partitions this node is a primary for.",
        |snap| snap.partitions_owned,
    ),
    (
        "driftkv_hints_pending",
        "Hints waiting for their replica.",
        |snap| snap.hints_pending,
    ),
    (
        "driftkv_requests_in_flight",
        "Requests the core is coordinating.",
        |snap| snap.requests_pending,
    ),
];

impl Metrics {
    pub fn new(transport: Arc<TransportStats>, node_loop: Arc<LoopStats>) -> Metrics {
        Metrics {
            transport,
            node_loop,
            http_listener: Arc::default(),
            ..Default::default()
        }
    }

    /// Counts one client request: its operation, level, outcome (see [`outcome`]) and latency.
    pub fn observe(&self, op: &'static str, level: String, result: &'static str, took: Duration) {
        *self
            .outcomes
            .lock()
            .expect("metrics lock")
            .entry((op, level.clone(), result))
            .or_default() += 1;
        self.latency
            .lock()
            .expect("metrics lock")
            .entry((op, level))
            .or_default()
            .record(took.as_secs_f64());
    }

    /// This node's metrics in Prometheus text: identity, client requests and their latency,
    /// the core's histograms and counters, the shell's series, members and gauges.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut o = String::with_capacity(RENDER_BYTES_INITIAL);
        write_info(&mut o, snap);
        self.write_requests(&mut o);
        self.write_latency(&mut o);
        write_core(&mut o, &snap.stats);
        for (name, kind, text, value) in SHELL_SERIES {
            help(&mut o, name, kind, text);
            let _ = writeln!(o, "{name} {}", value(self).load(Ordering::Relaxed));
        }
        write_members(&mut o, &snap.members);
        write_gauges(&mut o, snap);
        let held = self.node_loop.reply_bytes_held.load(Ordering::Relaxed);
        help(
            &mut o,
            "driftkv_client_reply_bytes_held",
            "gauge",
            "Bytes of values in replies sent to clients and not yet taken by them.",
        );
        let _ = writeln!(o, "driftkv_client_reply_bytes_held {held}");
        o
    }

    /// `driftkv_requests_total`, by operation, level and outcome.
    fn write_requests(&self, o: &mut String) {
        help(
            o,
            "driftkv_requests_total",
            "counter",
            "Client requests answered, by operation, consistency level and outcome.",
        );
        for ((op, level, result), n) in self.outcomes.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                o,
                "driftkv_requests_total{{op=\"{op}\",level=\"{}\",outcome=\"{result}\"}} {n}",
                esc(level)
            );
        }
    }

    /// `driftkv_request_duration_seconds`, a histogram by operation and level.
    fn write_latency(&self, o: &mut String) {
        help(
            o,
            "driftkv_request_duration_seconds",
            "histogram",
            "Client request latency at this node, by operation and consistency level.",
        );
        for ((op, level), h) in self.latency.lock().expect("metrics lock").iter() {
            let labels = format!("op=\"{op}\",level=\"{}\"", esc(level));
            let name = "driftkv_request_duration_seconds";
            let mut total = 0;
            for (i, c) in h.counts.iter().enumerate() {
                total += c;
                let le = LATENCY_BOUNDS
                    .get(i)
                    .map_or("+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(o, "{name}_bucket{{{labels},le=\"{le}\"}} {total}");
            }
            let _ = writeln!(o, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(o, "{name}_count{{{labels}}} {}", h.count);
        }
    }
}

/// `driftkv_info`: this node's name and version.
fn write_info(o: &mut String, snap: &Snapshot) {
    help(o, "driftkv_info", "gauge", "This node's identity.");
    let _ = writeln!(
        o,
        "driftkv_info{{node=\"{}\",version=\"{}\"}} 1",
        esc(&snap.node),
        env!("CARGO_PKG_VERSION")
    );
}

/// The core's histograms and counters.
fn write_core(o: &mut String, s: &Stats) {
    ms_histogram(
        o,
        "driftkv_replication_lag_seconds",
        "Time from a write being made (its HLC time) to its arrival on this replica, for writes that arrived new.",
        &s.replication_lag_ms,
        SECONDS_PER_MS,
    );
    ms_histogram(
        o,
        "driftkv_read_siblings",
        "Values in each read's answer: 1 is a clean read, more are concurrent siblings.",
        &s.read_siblings,
        UNSCALED,
    );
    // Every counter of the core's one registry.
    for counter in COUNTERS {
        help(o, counter.metric, "counter", counter.help);
        let _ = writeln!(o, "{} {}", counter.metric, (counter.get)(s));
    }
}

/// `driftkv_member_up`: each member as this node sees it.
fn write_members(o: &mut String, members: &[MemberInfo]) {
    help(
        o,
        "driftkv_member_up",
        "gauge",
        "1 when this node sees the member up, else 0; the state label says which.",
    );
    for m in members {
        let _ = writeln!(
            o,
            "driftkv_member_up{{member=\"{}\",state=\"{}\"}} {}",
            esc(m.id.as_str()),
            m.state.name(),
            (m.state == MemberState::Up) as u8
        );
    }
}

/// The node thread's gauges, and the storage's size when it is known.
fn write_gauges(o: &mut String, snap: &Snapshot) {
    for (name, text, value) in GAUGES {
        help(o, name, "gauge", text);
        let _ = writeln!(o, "{name} {}", value(snap));
    }
    if let Some(bytes) = snap.storage_bytes {
        help(
            o,
            "driftkv_storage_bytes",
            "gauge",
            "Approximate size of this node's storage on disk.",
        );
        let _ = writeln!(o, "driftkv_storage_bytes {bytes}");
    }
}

impl Metrics {
    /// Requests of operation `op` counted with outcome `result`, at any level.
    #[cfg(test)]
    pub(crate) fn outcome_count(&self, op: &str, result: &str) -> u64 {
        let outcomes = self.outcomes.lock().expect("metrics lock");
        outcomes
            .iter()
            .filter(|((o, _, r), _)| *o == op && *r == result)
            .map(|(_, n)| n)
            .sum()
    }

    /// This node's counters as JSON for the dashboard's stream: totals and raw buckets, so
    /// the page computes rates and percentiles between two events.
    pub fn summary(&self, snap: &Snapshot) -> serde_json::Value {
        let mut requests: BTreeMap<&str, u64> = BTreeMap::new();
        let mut errors = 0;
        for ((op, _, result), n) in self.outcomes.lock().expect("metrics lock").iter() {
            *requests.entry(op).or_default() += n;
            if !matches!(*result, "ok" | "not_found") {
                errors += n;
            }
        }
        let mut latency = Latency::default();
        for h in self.latency.lock().expect("metrics lock").values() {
            for (i, c) in h.counts.iter().enumerate() {
                latency.counts[i] += c;
            }
            latency.sum += h.sum;
            latency.count += h.count;
        }
        let s = &snap.stats;
        serde_json::json!({
            "node": snap.node,
            "members": snap.members.iter().map(|m| serde_json::json!({
                "id": m.id.as_str(), "state": m.state.name(), "http": m.http,
            })).collect::<Vec<_>>(),
            "requests": requests,
            "errors": errors,
            "latency": {
                "bounds_s": LATENCY_BOUNDS,
                "counts": latency.counts,
                "sum_s": latency.sum,
                "count": latency.count,
            },
            "replication_lag": {
                "bounds_ms": driftkv_core::stats::BUCKETS_MS,
                "counts": s.replication_lag_ms.counts,
                "sum_ms": s.replication_lag_ms.sum_ms,
                "count": s.replication_lag_ms.count,
            },
            "conflicts": s.conflicts,
            "lww_discarded": s.lww_discarded,
            "sibling_reads": s.sibling_reads,
            "stale_replicas_found": s.stale_replicas_found,
            "read_repairs_sent": s.read_repairs_sent,
            "hints_stored": s.hints_stored,
            "hints_delivered": s.hints_delivered,
            "hints_pending": snap.hints_pending,
            "unavailable": s.unavailable,
            "partitions_owned": snap.partitions_owned,
            "storage_bytes": snap.storage_bytes,
        })
    }
}

fn help(o: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(o, "# HELP {name} {text}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A core histogram (ms) exported with its bounds scaled by `scale` (1e-3 for seconds).
fn ms_histogram(o: &mut String, name: &str, text: &str, h: &Histogram, scale: f64) {
    help(o, name, "histogram", text);
    for (bound, count) in h.cumulative() {
        let le = bound.map_or("+Inf".to_string(), |b| (b as f64 * scale).to_string());
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(o, "{name}_sum {}", h.sum_ms as f64 * scale);
    let _ = writeln!(o, "{name}_count {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftkv_wire::Key;

    #[test]
    fn the_exposition_is_well_formed() {
        let m = Metrics::default();
        let get = Request::Get {
            key: Key::default_bucket("k"),
            r: Quorum::One,
        };
        let found = Reply::NotFound {
            context: Default::default(),
        };
        m.observe(
            "get",
            labels(&get).1,
            outcome(&found),
            Duration::from_micros(300),
        );
        let mut stats = Stats::default();
        stats.replication_lag_ms.record(3);
        let text = m.render(&Snapshot {
            node: "n1".into(),
            stats,
            members: Vec::new(),
            partitions_owned: 64,
            hints_pending: 0,
            requests_pending: 0,
            partitions_to_transfer: 0,
            storage_bytes: Some(10),
        });
        assert!(
            text.contains(
                "driftkv_requests_total{op=\"get\",level=\"one\",outcome=\"not_found\"} 1"
            )
        );
        assert!(text.contains(
            "driftkv_request_duration_seconds_bucket{op=\"get\",level=\"one\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains("driftkv_replication_lag_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("driftkv_replication_lag_seconds_bucket{le=\"+Inf\"} 1"));
        // Every sample line names a metric that has HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {name} "))
                    || text.contains(&format!("# TYPE {base} ")),
                "{name} has no TYPE line"
            );
        }
    }
}
