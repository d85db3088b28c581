//! Node-to-node TCP: length-delimited frames of versioned postcard envelopes.
//!
//! With a TLS directory, every connection is mutual TLS first: both sides present a
//! certificate of the cluster's CA, or the connection ends before a byte of the protocol. Then
//! the handshake: the dialer sends its `Hello` (cluster name, protocol version, node id,
//! addresses), the acceptor checks it (and that the dialer's certificate names the id it
//! claims) and answers with its own, and the dialer checks that the same way. A peer of another
//! cluster or protocol version is refused with a log line naming the difference, on the
//! refusing side only: a refused peer gets no answer, so a stranger learns nothing (not even
//! the cluster's name). The first frame is bounded to a few KiB until the handshake is done.
//! After the handshake a dialled connection only sends and an accepted one only receives:
//! replies travel over the replier's own connection, and every message is attributed to the
//! id the handshake proved.
//!
//! Outgoing traffic goes through one task per peer address with a bounded queue. The task
//! encodes the messages (off the node thread) and coalesces what is queued into one write of
//! many frames, so a busy peer link costs one system call per burst, not one per message, and
//! acknowledgements ride together the same way. A full queue drops the message (counted): the core's timeouts, hints and repair make up for lost
//! messages, while an unbounded queue would let one dead peer eat the node's memory. A peer
//! that cannot be reached is retried with exponential backoff; messages queued for it while it
//! was unreachable are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use driftkv_ring::NodeId;
use driftkv_tls::NodeTls;
use driftkv_tls::rustls::pki_types::{CertificateDer, ServerName};
use driftkv_wire::{
    Envelope, FRAME_BYTES_MAX, HANDSHAKE_FRAME_VERSION, Hello, Message, PROTOCOL_VERSION_OLDEST,
    decode_envelope_from, encode_envelope_for,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::listen::{ListenerStats, Stream, accept_loop};

/// A frame before the handshake is done (a `Hello`: a name and two addresses) at most.
pub const HELLO_FRAME_BYTES_MAX: usize = 4 * 1024;

const QUEUE_PER_PEER: usize = 4096;
/// Messages coalesced into one write at most.
const COALESCE_MAX: usize = 256;
/// Bytes of frames coalesced into one write at most (one frame may pass it alone).
const COALESCE_BYTES_MAX: usize = 256 * 1024;
/// Listen addresses learned from handshakes, kept at most.
const LEARNED_MAX: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Counters the metrics endpoint shows.
#[derive(Default, Debug)]
pub struct TransportStats {
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_unreachable: AtomicU64,
    /// Bursts of messages lost when a connection to a peer broke or stalled while writing them.
    pub dropped_broken: AtomicU64,
    pub handshakes_refused: AtomicU64,
    pub connect_failures: AtomicU64,
    pub bad_frames: AtomicU64,
    pub dropped_isolated: AtomicU64,
    /// Messages not sent because their frame would pass the frame limit.
    pub frames_too_large: AtomicU64,
    /// TLS handshakes with peers that failed (no certificate, another CA, ...).
    pub tls_failures: AtomicU64,
    /// Messages not sent because the version agreed with the peer cannot carry them (a
    /// restore forwarded to a node of the version before).
    pub dropped_version: AtomicU64,
    pub listener: Arc<ListenerStats>,
}

/// The codec before the handshake: a frame of a few KiB at most, so a stranger cannot make
/// the node buffer megabytes before saying who it is.
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(HELLO_FRAME_BYTES_MAX)
        .new_codec()
}

/// After the handshake: frames up to the protocol's limit.
fn open_up(framed: &mut Framed<Stream, LengthDelimitedCodec>) {
    framed.codec_mut().set_max_frame_length(FRAME_BYTES_MAX);
}

/// The name to present when dialling `addr` (its host); the name itself is not what is checked
/// (see `driftkv_tls`), but TLS needs one.
fn server_name(addr: &str) -> ServerName<'static> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("driftkv-peer").expect("a valid DNS name"))
}

/// The certificate a TLS peer presented (the chain was verified by the handshake).
fn peer_certificate(
    conn: &driftkv_tls::rustls::CommonState,
) -> Result<CertificateDer<'static>, String> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| "the peer presented no certificate".to_string())
}

/// Why a handshake was refused, in words for the log; `tell`: the peer is of this cluster and
/// can read a refusal, so it is told why (its ring settings differ: a mistake to fix).
#[derive(Debug)]
struct Refusal {
    why: String,
    tell: bool,
}

impl Refusal {
    fn silent(why: String) -> Refusal {
        Refusal { why, tell: false }
    }
}

/// Checks a peer's handshake against this node's: the certificate (with TLS) must name the id
/// it claims; the cluster, a shared protocol version and the ring's settings must agree.
/// Returns the peer's handshake and the version both speak (the newest of those they share).
fn check_hello(
    mine: &Hello,
    theirs: &Envelope,
    certificate: Option<&CertificateDer<'_>>,
) -> Result<(Hello, u16), Refusal> {
    let h = match theirs {
        Envelope::Hello(h) => h,
        Envelope::Refused(why) => {
            // The peer's words, escaped and cut: it may be anyone, and this goes to the log.
            let why: String = why.chars().take(300).collect();
            return Err(Refusal::silent(format!(
                "the peer refused this node: {why:?}"
            )));
        }
        Envelope::Message { .. } => {
            return Err(Refusal::silent(
                "the first frame was not a handshake".into(),
            ));
        }
    };
    if let Some(cert) = certificate
        && !driftkv_tls::certificate_names(cert, h.node.as_str())
    {
        return Err(Refusal::silent(format!(
            "the peer calls itself {:?} but its certificate is not for that node",
            h.node.as_str()
        )));
    }
    if !driftkv_core::node::is_node_name(h.node.as_str()) {
        let shown: String = h.node.as_str().chars().take(64).collect();
        return Err(Refusal::silent(format!(
            "the peer calls itself {shown:?}, which is not a node id"
        )));
    }
    if h.cluster != mine.cluster {
        return Err(Refusal::silent(format!(
            "node {} belongs to cluster {:?}, this node to {:?}",
            h.node, h.cluster, mine.cluster
        )));
    }
    if h.node == mine.node {
        return Err(Refusal::silent(format!(
            "the peer calls itself {}, which is this node's own id: two nodes share an id",
            h.node
        )));
    }
    let agreed = h.protocol_newest.min(mine.protocol_newest);
    if h.protocol_version > h.protocol_newest
        || agreed < h.protocol_version.max(mine.protocol_version)
    {
        return Err(Refusal {
            why: format!(
                "node {} speaks protocol versions {} to {}, this node {} to {}: none in common",
                h.node,
                h.protocol_version,
                h.protocol_newest,
                mine.protocol_version,
                mine.protocol_newest
            ),
            tell: h.protocol_newest > PROTOCOL_VERSION_OLDEST,
        });
    }
    // A node of version 3 names no ring settings: it cannot be checked. From version 4 on,
    // every handshake names them.
    let names_ring = h.protocol_newest > PROTOCOL_VERSION_OLDEST;
    if names_ring && (h.partitions != mine.partitions || h.n != mine.n) {
        return Err(Refusal {
            why: format!(
                "refused node {}: its ring differs, {} partitions and n={} there, {} partitions and n={} here \
                 (every node of a cluster needs the same --partitions and --n)",
                h.node, h.partitions, h.n, mine.partitions, mine.n
            ),
            tell: true,
        });
    }
    Ok((h.clone(), agreed))
}

/// Reads a frame written in one of `versions`, with its version.
fn decode(
    frame: &[u8],
    versions: std::ops::RangeInclusive<u16>,
) -> Result<(u16, Envelope), String> {
    decode_envelope_from(frame, versions).map_err(|e| e.to_string())
}

/// How a handshake failed, as the dialer sees it.
enum Dialled {
    /// The peer closed without a word: another cluster, certificate or protocol (a node of
    /// version 3 closes on a handshake of a later version).
    Silent(String),
    Failed(String),
}

pub struct Transport {
    hello: Hello,
    tls: Option<NodeTls>,
    /// Listen addresses peers gave in their handshakes: a node that just joined can be
    /// answered before gossip has told this node where it listens.
    learned: Mutex<HashMap<NodeId, String>>,
    /// The protocol version agreed with each peer at its last handshake (for `/cluster`).
    versions: Mutex<HashMap<NodeId, u16>>,
    /// Addresses that answered a handshake of version 4 or later.
    spoke_newer: Mutex<std::collections::HashSet<String>>,
    /// Lab control: while set, every message in or out is dropped, as if the network were
    /// cut around this node.
    pub isolated: std::sync::atomic::AtomicBool,
    peers: Mutex<HashMap<String, mpsc::Sender<Message>>>,
    runtime: Handle,
    pub stats: Arc<TransportStats>,
}

impl Transport {
    pub fn new(hello: Hello, tls: Option<NodeTls>, runtime: Handle) -> Arc<Transport> {
        Arc::new(Transport {
            hello,
            tls,
            learned: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
            spoke_newer: Mutex::new(std::collections::HashSet::new()),
            isolated: std::sync::atomic::AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
            runtime,
            stats: Arc::new(TransportStats::default()),
        })
    }

    /// The listen address a peer gave in its handshake, if it ever connected.
    pub fn learned_address(&self, node: &NodeId) -> Option<String> {
        self.learned
            .lock()
            .expect("learned addresses lock")
            .get(node)
            .cloned()
    }

    /// Messages queued for peers and not yet taken by their connections.
    pub fn queued(&self) -> usize {
        self.peers
            .lock()
            .expect("peer table lock")
            .values()
            .map(|tx| tx.max_capacity() - tx.capacity())
            .sum()
    }

    /// The protocol version agreed with `node` at its last handshake.
    pub fn version_with(&self, node: &NodeId) -> Option<u16> {
        self.versions
            .lock()
            .expect("versions lock")
            .get(node)
            .copied()
    }

    fn note_version(&self, node: &NodeId, version: u16) {
        let mut versions = self.versions.lock().expect("versions lock");
        // Bounded as the learned addresses are.
        if versions.len() < LEARNED_MAX || versions.contains_key(node) {
            versions.insert(node.clone(), version);
        }
    }

    /// The versions a frame from a peer may be written in.
    fn spoken(&self) -> std::ops::RangeInclusive<u16> {
        self.hello.protocol_version..=self.hello.protocol_newest
    }

    /// Queues `message` for the node listening at `addr`. Never blocks.
    pub fn send(self: &Arc<Self>, addr: &str, message: Message) {
        if self.isolated.load(Ordering::Relaxed) {
            self.stats.dropped_isolated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut peers = self.peers.lock().expect("peer table lock");
        let tx = peers.entry(addr.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
            let this = Arc::clone(self);
            let addr = addr.to_string();
            self.runtime
                .spawn(async move { this.peer_task(addr, rx).await });
            tx
        });
        if tx.try_send(message).is_err() {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// TLS (when configured) over a fresh TCP connection, as the dialing side.
    async fn dial(&self, addr: &str) -> Result<(Stream, Option<CertificateDer<'static>>), String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok((Box::new(stream), None));
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.peer_client));
        let stream = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            connector.connect(server_name(addr), stream),
        )
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| {
            self.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            format!("refused: TLS handshake failed: {e}")
        })?;
        let cert = peer_certificate(stream.get_ref().1)?;
        Ok((Box::new(stream), Some(cert)))
    }

    /// Dials `addr` and agrees on a version. The handshake of version 4 goes first; a peer
    /// that closes on it without a word may be a node of version 3, so while this node speaks
    /// 3 it tries that handshake once too.
    async fn connect(
        &self,
        addr: &str,
    ) -> Result<(Framed<Stream, LengthDelimitedCodec>, u16), String> {
        match self
            .handshake(addr, u16::from(HANDSHAKE_FRAME_VERSION))
            .await
        {
            Ok(connected) => {
                let mut newer = self.spoke_newer.lock().expect("versions lock");
                if newer.len() < LEARNED_MAX {
                    newer.insert(addr.to_string());
                }
                Ok(connected)
            }
            // A peer that once answered this handshake is not taken for a node of version 3
            // when it closes on one (a restart, a timeout): no downgrade.
            Err(Dialled::Silent(_))
                if self.hello.protocol_version <= PROTOCOL_VERSION_OLDEST
                    && !self
                        .spoke_newer
                        .lock()
                        .expect("versions lock")
                        .contains(addr) =>
            {
                tracing::debug!(peer = %addr, "no answer to the handshake of version 4: trying version 3's");
                match self.handshake(addr, PROTOCOL_VERSION_OLDEST).await {
                    Ok(connected) => Ok(connected),
                    Err(Dialled::Silent(why) | Dialled::Failed(why)) => Err(why),
                }
            }
            Err(Dialled::Silent(why) | Dialled::Failed(why)) => Err(why),
        }
    }

    /// One dial and handshake, this node's `Hello` written in version `written`.
    async fn handshake(
        &self,
        addr: &str,
        written: u16,
    ) -> Result<(Framed<Stream, LengthDelimitedCodec>, u16), Dialled> {
        let (stream, cert) = self.dial(addr).await.map_err(Dialled::Failed)?;
        let mut framed = Framed::new(stream, codec());
        let hello = encode_envelope_for(written, &Envelope::Hello(self.hello.clone()))
            .ok_or_else(|| Dialled::Failed(format!("no handshake of version {written}")))?;
        let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            framed
                .send(Bytes::from(hello))
                .await
                .map_err(|e| Dialled::Failed(e.to_string()))?;
            match framed.next().await {
                Some(Ok(frame)) => decode(&frame, self.spoken()).map_err(Dialled::Failed),
                Some(Err(e)) => Err(Dialled::Failed(e.to_string())),
                None => Err(Dialled::Silent(
                    "refused: the peer closed the connection without answering the handshake \
                     (a node refuses a peer of another cluster, protocol or certificate without \
                     saying why; its own log names the reason)"
                        .into(),
                )),
            }
        })
        .await
        .map_err(|_| Dialled::Failed("handshake timed out".to_string()))??;
        let (_, answer) = answer;
        let (peer, version) = check_hello(&self.hello, &answer, cert.as_ref()).map_err(|r| {
            self.stats
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            Dialled::Failed(format!("refused: {}", r.why))
        })?;
        self.note_version(&peer.node, version);
        open_up(&mut framed);
        Ok((framed, version))
    }

    /// The frame of `message`, or `None` (counted, logged) when it would pass the frame limit.
    fn frame(&self, addr: &str, message: Message, version: u16) -> Option<Bytes> {
        let envelope = Envelope::Message {
            from: self.hello.node.clone(),
            message,
        };
        let Some(frame) = encode_envelope_for(version, &envelope) else {
            self.stats.dropped_version.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %addr, "a message protocol version {version} cannot carry was not sent");
            return None;
        };
        let frame = Bytes::from(frame);
        if frame.len() > FRAME_BYTES_MAX {
            // The core refuses writes whose object would not fit (object_bytes_max), so this
            // is a merge of concurrent writes or a batch that grew too large: say so, since
            // the peer will only ever get it through anti-entropy of smaller pieces.
            self.stats.frames_too_large.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer = %addr,
                "a message of {} bytes is over the frame limit ({FRAME_BYTES_MAX}) and was not sent",
                frame.len()
            );
            return None;
        }
        Some(frame)
    }

    /// Sends `first` and whatever else is queued (up to the coalescing bounds) in one write.
    async fn send_burst(
        &self,
        addr: &str,
        framed: &mut Framed<Stream, LengthDelimitedCodec>,
        first: Message,
        rx: &mut mpsc::Receiver<Message>,
        version: u16,
    ) -> Result<(), ()> {
        let burst = async {
            let mut count = 0u64;
            let mut bytes = 0usize;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                if let Some(frame) = self.frame(addr, message, version) {
                    bytes = bytes.saturating_add(frame.len());
                    count += 1;
                    // Into the codec's buffer (which writes out past its own bound); the
                    // flush below writes the rest of the burst.
                    framed.feed(frame).await?;
                }
                if count as usize >= COALESCE_MAX || bytes >= COALESCE_BYTES_MAX {
                    break;
                }
                next = rx.try_recv().ok();
            }
            SinkExt::<Bytes>::flush(framed).await?;
            Ok::<u64, std::io::Error>(count)
        };
        match tokio::time::timeout(WRITE_TIMEOUT, burst).await {
            Ok(Ok(count)) => {
                self.stats.frames_sent.fetch_add(count, Ordering::Relaxed);
                Ok(())
            }
            outcome => {
                // The burst may be partly written: count it as lost (the protocol's timeouts,
                // hints and repair make up for it) and say why.
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "write timed out".to_string(),
                };
                tracing::debug!(peer = %addr, "connection to peer broke mid-burst: {why}");
                self.stats.dropped_broken.fetch_add(1, Ordering::Relaxed);
                Err(())
            }
        }
    }

    async fn peer_task(self: Arc<Self>, addr: String, mut rx: mpsc::Receiver<Message>) {
        let mut backoff = BACKOFF_MIN;
        let mut last_error: Option<String> = None;
        loop {
            // Wait for something to send before dialling.
            let Some(first) = rx.recv().await else { return };
            match self.connect(&addr).await {
                Ok((mut framed, version)) => {
                    if last_error.take().is_some() {
                        tracing::info!(peer = %addr, "connected");
                    }
                    backoff = BACKOFF_MIN;
                    let mut next = Some(first);
                    while let Some(message) = next.take() {
                        if self
                            .send_burst(&addr, &mut framed, message, &mut rx, version)
                            .await
                            .is_err()
                        {
                            break;
                        }
                        next = rx.recv().await;
                        if next.is_none() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    if last_error.as_deref() != Some(e.as_str()) {
                        if e.starts_with("refused") {
                            tracing::warn!(peer = %addr, "{e}");
                        } else {
                            tracing::debug!(peer = %addr, "cannot reach peer: {e}");
                        }
                        last_error = Some(e);
                    }
                    let mut dropped = 1;
                    while rx.try_recv().is_ok() {
                        dropped += 1;
                    }
                    self.stats
                        .dropped_unreachable
                        .fetch_add(dropped, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Accepts peers forever (at most `connections_max` at once), handing each received
    /// message to `deliver` (as what the node loop takes: no task in between).
    pub async fn serve<T: From<(NodeId, Message)> + Send + 'static>(
        self: Arc<Self>,
        listener: TcpListener,
        connections_max: usize,
        deliver: mpsc::Sender<T>,
    ) {
        let stats = Arc::clone(&self.stats.listener);
        accept_loop(
            listener,
            connections_max,
            "node-to-node listener",
            stats,
            move |stream, peer, permit| {
                let this = Arc::clone(&self);
                let deliver = deliver.clone();
                tokio::spawn(async move {
                    if let Err(e) = this.inbound(stream, deliver).await {
                        tracing::warn!(peer = %peer, "{e}");
                    }
                    drop(permit);
                });
            },
        )
        .await;
    }

    /// TLS (when configured) over an accepted TCP connection.
    async fn accept_tls(
        &self,
        stream: TcpStream,
    ) -> Result<(Stream, Option<CertificateDer<'static>>), String> {
        let Some(tls) = &self.tls else {
            return Ok((Box::new(stream), None));
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.peer_server));
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| "refused a connection: no TLS handshake in time".to_string())?
            .map_err(|e| {
                self.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                format!("refused a connection: TLS handshake failed: {e}")
            })?;
        let cert = peer_certificate(stream.get_ref().1)?;
        Ok((Box::new(stream), Some(cert)))
    }

    async fn inbound<T: From<(NodeId, Message)>>(
        &self,
        stream: TcpStream,
        deliver: mpsc::Sender<T>,
    ) -> Result<(), String> {
        let _ = stream.set_nodelay(true);
        let (stream, cert) = self.accept_tls(stream).await?;
        let mut framed = Framed::new(stream, codec());
        let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                self.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                return Err(format!("refused a connection: bad first frame: {e}"));
            }
            Ok(None) => return Ok(()),
            Err(_) => return Err("refused a connection: no handshake in time".into()),
        };
        // A refused peer gets no answer (it learns nothing of this cluster), unless it is of
        // this cluster and must fix its settings.
        let (written, envelope) = decode(&first, self.spoken()).map_err(|why| {
            self.stats
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            format!("refused a connection: {why}")
        })?;
        let (peer, version) = match check_hello(&self.hello, &envelope, cert.as_ref()) {
            Ok(agreed) => agreed,
            Err(refusal) => {
                self.stats
                    .handshakes_refused
                    .fetch_add(1, Ordering::Relaxed);
                if refusal.tell
                    && let Some(frame) =
                        encode_envelope_for(written, &Envelope::Refused(refusal.why.clone()))
                {
                    let _ =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.send(Bytes::from(frame)))
                            .await;
                }
                return Err(format!("refused a connection: {}", refusal.why));
            }
        };
        // Answered in the version the dialer wrote its handshake in: it reads that one.
        let hello = encode_envelope_for(written, &Envelope::Hello(self.hello.clone()))
            .ok_or_else(|| format!("no handshake of version {written}"))?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.send(Bytes::from(hello)))
            .await
            .map_err(|_| "handshake answer timed out".to_string())?
            .map_err(|e| format!("handshake answer failed: {e}"))?;
        open_up(&mut framed);
        self.note_version(&peer.node, version);
        if !peer.listen.is_empty() {
            let mut learned = self.learned.lock().expect("learned addresses lock");
            // Bounded: without TLS anyone can say hello under any name.
            if learned.len() < LEARNED_MAX || learned.contains_key(&peer.node) {
                learned.insert(peer.node.clone(), peer.listen.clone());
            }
        }
        while let Some(frame) = framed.next().await {
            let frame = match frame {
                Ok(frame) => frame,
                // A dialer that drops its connection sends no TLS close_notify: an ordinary
                // end, not a broken one.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(format!("connection from {} broke: {e}", peer.node)),
            };
            match decode(&frame, version..=version) {
                Ok((_, Envelope::Message { .. })) if self.isolated.load(Ordering::Relaxed) => {
                    self.stats.dropped_isolated.fetch_add(1, Ordering::Relaxed);
                }
                Ok((_, Envelope::Message { message, .. })) => {
                    self.stats.frames_received.fetch_add(1, Ordering::Relaxed);
                    // The handshake names the sender; a frame cannot claim another.
                    if deliver
                        .send(T::from((peer.node.clone(), message)))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Ok((_, Envelope::Hello(_) | Envelope::Refused(_))) => {}
                Err(e) => {
                    self.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                    return Err(format!(
                        "dropped the connection from {}: bad frame: {e}",
                        peer.node
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftkv_causal::{Actor, ConflictMode, Register, Timestamp, VersionVector};
    use driftkv_tls::rustls::pki_types::pem::PemObject;
    use driftkv_wire::PROTOCOL_VERSION;
    use driftkv_wire::{Key, Object};

    fn transport(runtime: &tokio::runtime::Runtime) -> Arc<Transport> {
        Transport::new(Hello::new("c", "n1", 3, 64), None, runtime.handle().clone())
    }

    #[test]
    fn a_message_past_the_frame_limit_is_counted_not_sent() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = transport(&runtime);
        let mut register = Register::new();
        register
            .write(
                ConflictMode::Siblings,
                &Actor::from("n1"),
                &VersionVector::new(),
                Some(Bytes::from(vec![b'x'; FRAME_BYTES_MAX + 1])),
                Timestamp::new(1, 0),
            )
            .unwrap();
        let message = Message::ReplicaWrite {
            req: 1,
            key: Key::default_bucket("k"),
            object: Object::Register(register),
            hint: None,
        };
        // The peer task frames each message as it sends it.
        assert!(t.frame("127.0.0.1:9", message, PROTOCOL_VERSION).is_none());
        assert_eq!(t.stats.frames_too_large.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_hello_must_be_named_by_the_certificate_and_of_this_cluster() {
        let mine = Hello::new("c", "n1", 3, 64);
        let theirs = |cluster: &str, node: &str| {
            Envelope::Hello(Hello {
                cluster: cluster.into(),
                node: node.into(),
                ..mine.clone()
            })
        };
        assert!(check_hello(&mine, &theirs("c", "n2"), None).is_ok());
        assert!(check_hello(&mine, &theirs("other", "n2"), None).is_err());
        assert!(check_hello(&mine, &theirs("c", "n1"), None).is_err());
        let dir = tempfile::tempdir().unwrap();
        driftkv_tls::write_ca(dir.path()).unwrap();
        let (pem, _) = driftkv_tls::write_node(dir.path(), "n2", &[]).unwrap();
        let cert = CertificateDer::pem_file_iter(&pem)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert!(check_hello(&mine, &theirs("c", "n2"), Some(&cert)).is_ok());
        let err = check_hello(&mine, &theirs("c", "n3"), Some(&cert)).unwrap_err();
        assert!(
            err.why.contains("certificate is not for that node"),
            "{err:?}"
        );
        assert!(!err.tell, "a peer that is not who it says learns nothing");
    }

    #[test]
    fn two_nodes_agree_on_the_newest_version_both_speak_or_are_refused() {
        let mine = Hello::new("c", "n1", 3, 64);
        let speaking = |oldest: u16, newest: u16| {
            Envelope::Hello(Hello {
                protocol_version: oldest,
                protocol_newest: newest,
                ..Hello::new("c", "n2", 3, 64)
            })
        };
        let v = PROTOCOL_VERSION;
        // The same build; a build one version ahead; one of the version before.
        assert_eq!(check_hello(&mine, &speaking(v - 1, v), None).unwrap().1, v);
        assert_eq!(check_hello(&mine, &speaking(v, v + 1), None).unwrap().1, v);
        assert_eq!(
            check_hello(&mine, &speaking(v - 1, v - 1), None).unwrap().1,
            v - 1
        );
        // Two versions ahead, or a claim that makes no sense: nothing in common.
        let err = check_hello(&mine, &speaking(v + 1, v + 2), None).unwrap_err();
        assert!(err.why.contains("none in common"), "{err:?}");
        assert!(check_hello(&mine, &speaking(v, v - 1), None).is_err());
        // A version 3 handshake, as a node of that version writes it, is read and agreed at 3.
        let frame = encode_envelope_for(3, &speaking(3, 3)).unwrap();
        let (written, envelope) = decode(&frame, 3..=v).unwrap();
        assert_eq!(written, 3);
        let (peer, agreed) = check_hello(&mine, &envelope, None).unwrap();
        assert_eq!((agreed, peer.partitions), (3, 0), "version 3 names no ring");
        // Version 3 cannot carry a refusal, nor a forwarded restore.
        assert!(encode_envelope_for(3, &Envelope::Refused("x".into())).is_none());
        let restore = Message::Forward {
            req: 1,
            request: Box::new(driftkv_wire::Request::Restore {
                key: Key::default_bucket("k"),
                object: Object::Register(Register::new()),
                w: driftkv_wire::Quorum::Default,
            }),
        };
        let envelope = Envelope::Message {
            from: "n1".into(),
            message: restore,
        };
        assert!(encode_envelope_for(3, &envelope).is_none());
        assert!(encode_envelope_for(v, &envelope).is_some());
    }

    #[test]
    fn a_node_with_another_ring_is_refused_and_told_why() {
        let mine = Hello::new("c", "n1", 3, 64);
        for (n, partitions) in [(3, 128), (2, 64)] {
            let theirs = Envelope::Hello(Hello::new("c", "odd", n, partitions));
            let err = check_hello(&mine, &theirs, None).unwrap_err();
            assert!(err.tell, "a node of this cluster is told what to fix");
            assert!(
                err.why
                    .contains(&format!("{partitions} partitions and n={n} there"))
                    && err.why.contains("64 partitions and n=3 here"),
                "{}",
                err.why
            );
        }
        // A handshake of version 4 always names its ring: 0 is not "unknown" there.
        let zero = Envelope::Hello(Hello::new("c", "odd", 0, 0));
        assert!(
            check_hello(&mine, &zero, None)
                .unwrap_err()
                .why
                .contains("ring differs")
        );
        // A refusal is the peer's words: logged escaped and cut.
        let refused = Envelope::Refused(format!("fake\nERROR line{}", "x".repeat(1000)));
        let why = check_hello(&mine, &refused, None).unwrap_err().why;
        assert!(!why.contains('\n') && why.len() < 400, "{why}");
    }

    #[test]
    fn a_peer_must_give_a_node_id_and_a_version_3_handshake_must_say_3() {
        let mine = Hello::new("c", "n1", 3, 64);
        for id in ["", "a\nb", &"x".repeat(65)] {
            let theirs = Envelope::Hello(Hello {
                node: id.into(),
                ..Hello::new("c", "n2", 3, 64)
            });
            assert!(check_hello(&mine, &theirs, None).is_err(), "{id:?}");
        }
        let v3 = driftkv_wire::EnvelopeV3::Hello(driftkv_wire::HelloV3 {
            protocol_version: 4,
            ..Hello::new("c", "n2", 3, 64).to_v3()
        });
        let frame = driftkv_wire::encode(3, &v3);
        assert!(decode(&frame, 3..=PROTOCOL_VERSION).is_err());
    }

    #[tokio::test]
    async fn a_node_of_version_3_is_dialled_in_its_own_handshake_and_frames() {
        use driftkv_wire::{EnvelopeV3, HelloV3};
        // A node of version 3, as it behaves: a handshake under another frame byte is closed
        // on without a word; its own is answered, and messages come under its byte.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        tokio::spawn(async move {
            for _ in 0..8 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                let Some(Ok(first)) = framed.next().await else {
                    continue;
                };
                let Ok(EnvelopeV3::Hello(h)) = driftkv_wire::decode::<EnvelopeV3>(3, &first) else {
                    continue;
                };
                let answer = EnvelopeV3::Hello(HelloV3 {
                    node: "old".into(),
                    ..h
                });
                let answer = Bytes::from(driftkv_wire::encode(3, &answer));
                framed.send(answer).await.unwrap();
                if let Some(Ok(frame)) = framed.next().await {
                    let _ = tx.send(frame.to_vec()).await;
                    return;
                }
            }
        });
        let t = Transport::new(Hello::new("c", "n1", 3, 64), None, Handle::current());
        t.send(
            &addr,
            Message::Gossip {
                members: Arc::from(Vec::new()),
            },
        );
        let frame = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a message reaches the node of version 3")
            .unwrap();
        assert_eq!(frame[0], 3, "under version 3's frame byte");
        let envelope = driftkv_wire::decode::<EnvelopeV3>(3, &frame).unwrap();
        assert!(
            matches!(&envelope, EnvelopeV3::Message { from, .. } if from.as_str() == "n1"),
            "{envelope:?}"
        );
        assert_eq!(t.version_with(&"old".into()), Some(3));
    }
}
