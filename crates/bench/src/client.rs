//! One load client: a connection to one node and the loop that drives it, the only code of
//! the bench that touches a socket. Closed loop: send `pipeline` requests in one write, read
//! as many answers, again. Open loop: send each request at its intended start (at once if
//! late), with at most `pipeline` in flight, and time it from that start.
//!
//! Every request ends exactly once, answered or failed. A request not answered within the
//! timeout, a connection that breaks or bytes that are not an answer fail every request in
//! flight on it, and the next request opens a new connection; a node that refuses
//! [`CONNECT_FAILURES_MAX`] connections in a row, or fails [`FAILURES_IN_A_ROW_MAX`] rounds
//! of requests in a row (timeouts, broken connections), makes the client stop early, so a node
//! that accepts and never answers cannot hold a run for hours. A connection's unread input is
//! bounded ([`input_max`]): a node that sends more than any answer could hold is broken.
//! Latency is recorded for answered requests only; failures are counted as errors.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::args::{Node, Plan, Protocol};
use crate::schedule::{Amount, Schedule};
use crate::stats::{Local, Shared};
use crate::workload::{Chooser, Op};
use crate::{http, resp};

/// Failed connection attempts in a row after which a client stops.
pub const CONNECT_FAILURES_MAX: u32 = 5;
/// Rounds of requests failed in a row (no answer in time, a broken connection) after which a
/// client stops.
pub const FAILURES_IN_A_ROW_MAX: u32 = 3;
/// Bytes of input beyond the answers' values a connection may hold unread.
const INPUT_SLACK_BYTES: usize = 1024 * 1024;

/// Bytes of unread input a connection may hold: every answer in flight at its largest
/// (`pipeline` values of `value_bytes`, with room for framing and siblings) and some slack.
pub fn input_max(pipeline: usize, value_bytes: usize) -> usize {
    pipeline
        .saturating_mul(value_bytes.saturating_mul(4).saturating_add(4096))
        .saturating_add(INPUT_SLACK_BYTES)
}
/// The wait after a failed connection attempt, doubled after each (up to the cap).
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Bytes a read may fill at least: room is made for this much before each read.
const READ_ROOM_BYTES: usize = 16 * 1024;

/// How to talk to one node.
pub struct Endpoint {
    pub node: Node,
    protocol: Protocol,
    /// RESP: the AUTH command sent on every new connection (empty: none).
    auth: Vec<u8>,
    /// HTTP: the path and headers every request shares.
    requests: http::Requests,
}

/// An answer recognised at the front of the input.
struct Answer {
    ok: bool,
    used: usize,
    /// The server closes the connection after it.
    close: bool,
}

/// Why a connection could not be made ready.
#[derive(Debug)]
pub enum ConnectError {
    /// No connection (refused, unreachable, timed out).
    Unreachable(String),
    /// Connected, but the node refused the credentials.
    Refused(String),
}

impl Endpoint {
    pub fn new(plan: &Plan, node: Node) -> Endpoint {
        let mut auth = Vec::new();
        let mut token = None;
        if let Some(c) = &plan.credentials {
            match plan.protocol {
                Protocol::Resp => resp::put_auth(&mut auth, c.user.as_deref(), &c.password),
                Protocol::Http => {
                    use base64::Engine;
                    let user = c.user.as_deref().unwrap_or("default");
                    let pair = format!("{user}:{}", c.password);
                    token = Some(base64::engine::general_purpose::STANDARD.encode(pair));
                }
            }
        }
        let requests =
            http::Requests::new(&node.authority, plan.bucket.as_deref(), token.as_deref());
        Endpoint {
            node,
            protocol: plan.protocol,
            auth,
            requests,
        }
    }

    fn encode(&self, op: Op, key: u64, value: &[u8], out: &mut Vec<u8>) {
        match (self.protocol, op) {
            (Protocol::Resp, Op::Read) => resp::put_get(out, key),
            (Protocol::Resp, Op::Write) => resp::put_set(out, key, value),
            (Protocol::Http, Op::Read) => self.requests.put_get(out, key),
            (Protocol::Http, Op::Write) => self.requests.put_put(out, key, value),
        }
    }

    /// The answer at the front of `buf` to a request of kind `op`, if it has arrived whole.
    fn parse(&self, buf: &[u8], op: Op) -> Result<Option<Answer>, String> {
        match self.protocol {
            Protocol::Resp => {
                Ok(resp::parse_reply(buf)
                    .map_err(|e| e.to_string())?
                    .map(|(reply, used)| Answer {
                        ok: reply != resp::Reply::Error,
                        used,
                        close: false,
                    }))
            }
            Protocol::Http => {
                Ok(http::parse_response(buf)
                    .map_err(|e| e.to_string())?
                    .map(|(r, used)| Answer {
                        ok: http_success(r.status, op),
                        used,
                        close: r.close,
                    }))
            }
        }
    }

    /// Describes a failed answer (the first error of a run is reported).
    fn describe(&self, answer: &[u8]) -> String {
        match self.protocol {
            Protocol::Resp => format!("{}: {}", self.node.label, resp::error_text(answer)),
            Protocol::Http => {
                let text = String::from_utf8_lossy(answer);
                let status = text.lines().next().unwrap_or("").trim();
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b.trim());
                format!("{}: {status} {body}", self.node.label)
            }
        }
    }

    /// Opens a connection and authenticates on it. With `check`, an HTTP node is also asked
    /// for a key, so wrong or missing credentials are found before the run rather than as
    /// errors during it.
    pub async fn connect(&self, timeout: Duration, check: bool) -> Result<TcpStream, ConnectError> {
        let label = &self.node.label;
        let unreachable = |why: String| ConnectError::Unreachable(format!("{label}: {why}"));
        let mut stream =
            match tokio::time::timeout(timeout, TcpStream::connect(self.node.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(unreachable(e.to_string())),
                Err(_) => return Err(unreachable("timed out connecting".into())),
            };
        let _ = stream.set_nodelay(true);
        let mut probe = Vec::new();
        match self.protocol {
            Protocol::Resp if !self.auth.is_empty() => probe.extend_from_slice(&self.auth),
            Protocol::Http if check => self.requests.put_get(&mut probe, 0),
            _ => return Ok(stream),
        }
        let mut input = BytesMut::with_capacity(READ_ROOM_BYTES);
        let answer = async {
            stream.write_all(&probe).await.map_err(|e| e.to_string())?;
            loop {
                if let Some(a) = self.parse(&input, Op::Read)? {
                    let used = a.used;
                    return Ok::<_, String>((a, input.split_to(used)));
                }
                if stream
                    .read_buf(&mut input)
                    .await
                    .map_err(|e| e.to_string())?
                    == 0
                {
                    return Err("the node closed the connection".into());
                }
            }
        };
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(unreachable("no answer to the first request in time".into())),
            Ok(Err(why)) => Err(unreachable(why)),
            Ok(Ok((a, bytes))) => {
                let refused = match self.protocol {
                    Protocol::Resp => !a.ok,
                    Protocol::Http => {
                        bytes.starts_with(b"HTTP/1.1 401") || bytes.starts_with(b"HTTP/1.1 403")
                    }
                };
                if refused {
                    Err(ConnectError::Refused(self.describe(&bytes)))
                } else if a.close {
                    Err(unreachable(
                        "the node closed the connection after one request".into(),
                    ))
                } else {
                    Ok(stream)
                }
            }
        }
    }
}

/// Whether an HTTP status answers a request of kind `op` successfully: 2xx, and for reads
/// also 404 (never written) and 300 (siblings).
fn http_success(status: u16, op: Op) -> bool {
    (200..300).contains(&status) || (op == Op::Read && (status == 404 || status == 300))
}

/// A request sent and not yet answered.
struct Pending {
    op: Op,
    /// Latency is measured from here: the send (closed loop) or the timetable (open loop).
    intended: Instant,
    /// The timeout runs from here.
    sent: Instant,
}

/// One client of the run.
pub struct Client {
    endpoint: Arc<Endpoint>,
    shared: Arc<Shared>,
    chooser: Chooser,
    value: Arc<[u8]>,
    pipeline: usize,
    timeout: Duration,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    input: BytesMut,
    in_flight: VecDeque<Pending>,
    local: Local,
    connect_failures: u32,
    /// Rounds failed in a row since the last answer.
    failures_in_a_row: u32,
    /// Bytes of unread input at most ([`input_max`]).
    input_max: usize,
}

impl Client {
    #[allow(clippy::too_many_arguments)] // each is one of the run's settings
    pub fn new(
        endpoint: Arc<Endpoint>,
        shared: Arc<Shared>,
        chooser: Chooser,
        value: Arc<[u8]>,
        plan: &Plan,
        stream: TcpStream,
        now: Instant,
    ) -> Client {
        Client {
            endpoint,
            shared,
            chooser,
            value,
            pipeline: plan.pipeline,
            timeout: plan.timeout,
            stream: Some(stream),
            out: Vec::with_capacity(READ_ROOM_BYTES),
            input: BytesMut::with_capacity(READ_ROOM_BYTES),
            in_flight: VecDeque::with_capacity(plan.pipeline),
            local: Local::new(now),
            connect_failures: 0,
            failures_in_a_row: 0,
            input_max: input_max(plan.pipeline, plan.value_bytes),
        }
    }

    /// The closed loop: batches of `pipeline` requests until the run's requests are claimed
    /// or its time is up.
    pub async fn run_closed(mut self, amount: Amount, start: Instant) {
        let end = match amount {
            Amount::Duration(d) => Some(start + d),
            Amount::Requests(_) => None,
        };
        loop {
            let batch = match end {
                Some(end) if Instant::now() >= end => 0,
                Some(_) => self.pipeline as u64,
                None => self.shared.claim(self.pipeline as u64),
            };
            if batch == 0 {
                break;
            }
            if !self.ready(end).await {
                // The claimed requests fail with the connection.
                for _ in 0..batch {
                    let (op, _) = self.chooser.choose();
                    self.local.done(op, false, None);
                }
                if self.gave_up() {
                    break;
                }
                continue;
            }
            let now = Instant::now();
            for _ in 0..batch {
                self.push(now, now);
            }
            if self.send().await {
                self.receive(now + self.timeout, None).await;
            }
            self.local.flush(&self.shared, Some(Instant::now()));
            if self.gave_up() {
                break;
            }
        }
        self.local.flush(&self.shared, None);
    }

    /// The open loop: each request at its intended start, at most `pipeline` in flight.
    pub async fn run_open(mut self, schedule: Schedule, start: Instant) {
        let mut k = 0;
        let mut next = schedule.offset(0).map(|d| start + d);
        loop {
            let Some(due) = next else {
                if self.in_flight.is_empty() {
                    break;
                }
                let deadline = self.in_flight.front().map_or(start, |p| p.sent) + self.timeout;
                self.receive(deadline, Some(1)).await;
                continue;
            };
            if self.stream.is_none() && !self.ready(None).await {
                // The request due fails with the connection.
                let (op, _) = self.chooser.choose();
                self.local.done(op, false, None);
                k += 1;
                next = schedule.offset(k).map(|d| start + d);
                if self.gave_up() {
                    break;
                }
                continue;
            }
            let now = Instant::now();
            while self.in_flight.len() < self.pipeline
                && let Some(due) = next.filter(|d| *d <= now)
            {
                self.push(due, now);
                k += 1;
                next = schedule.offset(k).map(|d| start + d);
            }
            if !self.out.is_empty() && !self.send().await {
                if self.gave_up() {
                    break;
                }
                continue;
            }
            if self.in_flight.is_empty() {
                tokio::time::sleep_until(next.unwrap_or(due)).await;
            } else if self.in_flight.len() < self.pipeline && next.is_some() {
                // Room for the next request: wait for an answer or its start, whichever first.
                let wake = next.unwrap_or(due);
                let deadline = self.in_flight.front().map_or(wake, |p| p.sent) + self.timeout;
                tokio::select! {
                    biased;
                    _ = self.receive(deadline, Some(1)) => {}
                    _ = tokio::time::sleep_until(wake) => {}
                }
            } else {
                let deadline = self.in_flight.front().map_or(due, |p| p.sent) + self.timeout;
                self.receive(deadline, Some(1)).await;
            }
            self.local.flush(&self.shared, Some(Instant::now()));
            if self.gave_up() {
                break;
            }
        }
        self.local.flush(&self.shared, None);
    }

    /// Queues the next request for sending.
    fn push(&mut self, intended: Instant, sent: Instant) {
        let (op, key) = self.chooser.choose();
        self.endpoint.encode(op, key, &self.value, &mut self.out);
        self.in_flight.push_back(Pending { op, intended, sent });
    }

    /// Writes what is queued; false (and every request in flight failed) if it cannot.
    async fn send(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            self.fail_all("not connected".into());
            return false;
        };
        let written = tokio::time::timeout(self.timeout, stream.write_all(&self.out)).await;
        self.out.clear();
        match written {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.fail_all(format!("writing: {e}"));
                false
            }
            Err(_) => {
                self.fail_all("timed out writing".into());
                false
            }
        }
    }

    /// Reads answers until every request in flight is answered, or `enough` of them are (the
    /// open loop wants to send again), or the deadline passes (every request in flight
    /// fails). Cancel-safe between reads: a request is taken off only with its answer.
    async fn receive(&mut self, deadline: Instant, enough: Option<usize>) {
        let mut answered = 0;
        loop {
            match self.take_answers() {
                Ok(n) => answered += n,
                Err(why) => return self.fail_all(why),
            }
            if self.in_flight.is_empty() || enough.is_some_and(|e| answered >= e) {
                return;
            }
            let Some(stream) = self.stream.as_mut() else {
                return self.fail_all("not connected".into());
            };
            if self.input.len() > self.input_max {
                let max = self.input_max;
                return self.fail_all(format!(
                    "more than {max} bytes of answers to {} requests",
                    self.in_flight.len()
                ));
            }
            if self.input.capacity() - self.input.len() < READ_ROOM_BYTES / 4 {
                self.input.reserve(READ_ROOM_BYTES);
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut self.input)).await {
                Ok(Ok(0)) => return self.fail_all("the node closed the connection".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return self.fail_all(format!("reading: {e}")),
                Err(_) => {
                    let after = self.timeout.as_millis();
                    return self.fail_all(format!("no answer within {after} ms"));
                }
            }
        }
    }

    /// Takes every whole answer at the front of the input: how many.
    fn take_answers(&mut self) -> Result<usize, String> {
        let mut taken = 0;
        let mut now = None;
        while let Some(front) = self.in_flight.front() {
            let Some(a) = self.endpoint.parse(&self.input, front.op)? else {
                break;
            };
            let now = *now.get_or_insert_with(Instant::now);
            let p = self.in_flight.pop_front().expect("a request is in flight");
            if !a.ok {
                let endpoint = &self.endpoint;
                let answer = &self.input[..a.used];
                self.local.error(&self.shared, || endpoint.describe(answer));
            }
            // Latency is of answered requests; an error answer counts as an error only.
            let latency = a.ok.then(|| now.saturating_duration_since(p.intended));
            self.local.done(p.op, a.ok, latency);
            self.input.advance(a.used);
            taken += 1;
            self.failures_in_a_row = 0;
            if a.close {
                self.fail_all("the node closed the connection".into());
                break;
            }
        }
        if self.in_flight.is_empty() && !self.input.is_empty() {
            return Err(format!("{} bytes that answer no request", self.input.len()));
        }
        Ok(taken)
    }

    /// Fails every request in flight and drops the connection.
    fn fail_all(&mut self, why: String) {
        if !self.in_flight.is_empty() {
            self.failures_in_a_row += 1;
            let label = &self.endpoint.node.label;
            self.local.error(&self.shared, || format!("{label}: {why}"));
        }
        for p in self.in_flight.drain(..) {
            self.local.done(p.op, false, None);
        }
        self.stream = None;
        self.input.clear();
        self.out.clear();
    }

    /// Makes sure a connection is open, making a new one if needed (after a wait if the
    /// last attempt failed). False if it cannot; the failure is counted.
    async fn ready(&mut self, end: Option<Instant>) -> bool {
        if self.stream.is_some() {
            return true;
        }
        if self.connect_failures > 0 {
            let wait = BACKOFF_FIRST
                .saturating_mul(1 << (self.connect_failures - 1).min(10))
                .min(BACKOFF_MAX);
            let until = Instant::now() + wait;
            tokio::time::sleep_until(end.map_or(until, |e| e.min(until))).await;
        }
        match self.endpoint.connect(self.timeout, false).await {
            Ok(s) => {
                self.stream = Some(s);
                self.connect_failures = 0;
                true
            }
            Err(ConnectError::Unreachable(why) | ConnectError::Refused(why)) => {
                self.connect_failures += 1;
                self.local.error(&self.shared, || why);
                false
            }
        }
    }

    /// Whether this client has failed to connect too often and stops (counted).
    fn gave_up(&self) -> bool {
        let stop = self.connect_failures >= CONNECT_FAILURES_MAX
            || self.failures_in_a_row >= FAILURES_IN_A_ROW_MAX;
        if stop {
            self.shared.clients_gave_up.fetch_add(1, Ordering::Relaxed);
        }
        stop
    }
}
