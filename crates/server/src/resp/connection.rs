//! One RESP connection: the only code that touches its socket. It reads commands into a
//! bounded buffer and writes their replies in order, and holds a connection that has not
//! authenticated to small commands, few of them, for a short while.
//!
//! Pipelining: of the commands it has read, the connection hands every `GET` and `SET` to the
//! node at once, without waiting for the replies of those before it, so a pipeline of 16 costs
//! the node one batch (and one fsync), not 16. The ordering a client gets: replies come in the
//! order of the commands, and a command sees the effect of every earlier command of the same
//! connection on the same key (one waits for the same key's earlier commands to be answered
//! before it goes to the node). Any other command runs alone, after every earlier one has
//! answered. A connection has a bounded number of commands, and of their bytes, in flight;
//! beyond its first, each takes a permit from a pool all connections share
//! ([`PIPELINED_MAX`](crate::resp::context::PIPELINED_MAX)).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use driftkv_core::NodeConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::handle::Pending;
use crate::resp::cmd::{self, Prepared, Then};
use crate::resp::context::{Context, Permit, unavailable};
use crate::resp::frame::Frame;
use crate::resp::parse::{Parsed, parse};
use crate::resp::session::Session;

/// Replies buffered before they are written, at most (beyond one reply).
pub const OUT_FLUSH_BYTES: usize = 64 * 1024;
/// A command before AUTH, at most (AUTH and HELLO are short).
pub const PREAUTH_COMMAND_BYTES_MAX: usize = 64 * 1024;
/// How long a client on a node with users has to authenticate.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands a connection may send before it authenticates (AUTH, HELLO, PING).
pub const PREAUTH_COMMANDS_MAX: u32 = 64;
/// Room beyond the largest key or value that one argument may take.
const BULK_OVERHEAD_BYTES: usize = 1024;
/// What a connection's input and output buffers start with.
const BUFFER_BYTES_INITIAL: usize = 16 * 1024;
/// Bytes reserved for one read at most.
const READ_RESERVE_BYTES_MAX: usize = 64 * 1024;
/// Commands of one connection in flight at the node at most.
pub const IN_FLIGHT_MAX: usize = 256;
/// Bytes of keys and values of one connection's commands in flight at most (one command may
/// pass it alone).
pub const IN_FLIGHT_BYTES_MAX: usize = 1024 * 1024;

/// A command whose answer is not written yet, in the order of the commands.
enum Slot {
    /// Answered already (a refusal, a node that could not take it).
    Ready(Frame),
    /// At the node.
    Waiting {
        bytes: usize,
        pending: Pending,
        then: Then,
        /// Its place among the pipelined commands of all connections (none for a
        /// connection's only command in flight).
        _permit: Option<Permit>,
    },
}

/// Counts an error answer in the front-end's stats.
fn count_error(ctx: &Context, reply: &Frame) {
    if matches!(reply, Frame::Error(_)) {
        ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The bytes a submitted command holds in flight: its key and value.
fn request_bytes(then: &Then) -> usize {
    match then {
        Then::Get(k) => k.len(),
        Then::Set(k, v, _) => k.len().saturating_add(v.len()),
    }
}

impl Slot {
    /// Whether this command is at the node on `key`.
    fn is_on(&self, key: &Bytes) -> bool {
        matches!(self, Slot::Waiting { then, .. } if then.key() == key)
    }
}

/// Whether a connection goes on after a step.
enum Step {
    Continue,
    Close,
}

/// A client's stream with its input and output buffers.
struct Connection<S> {
    stream: S,
    buf: BytesMut,
    out: Vec<u8>,
    connected: Instant,
    /// Bytes of one argument at most.
    bulk_max: usize,
    /// Bytes of one whole command at most, once authenticated.
    command_bytes_max: usize,
    /// Commands read and not yet answered, oldest first.
    in_flight: VecDeque<Slot>,
    /// Bytes of keys and values of the commands in `in_flight`.
    in_flight_bytes: usize,
}

/// Serves one connection, numbered `id`, until the client leaves, quits or breaks the
/// protocol. `command_bytes_max` bounds one whole command.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    ctx: &Context,
    id: u64,
    command_bytes_max: usize,
) -> std::io::Result<()> {
    let mut conn = Connection::new(stream, ctx.node.config(), command_bytes_max);
    let mut session = Session::new(id, ctx.users.is_some());
    loop {
        if let Step::Close = conn.run_buffered(ctx, &mut session).await? {
            return Ok(());
        }
        conn.answer_all(ctx, &mut session).await?;
        conn.flush().await?;
        if let Step::Close = conn.read_more(&session).await? {
            return Ok(());
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn new(stream: S, config: &NodeConfig, command_bytes_max: usize) -> Self {
        Connection {
            stream,
            buf: BytesMut::with_capacity(BUFFER_BYTES_INITIAL),
            out: Vec::with_capacity(BUFFER_BYTES_INITIAL),
            connected: Instant::now(),
            bulk_max: config.value_bytes_max.max(config.key_bytes_max) + BULK_OVERHEAD_BYTES,
            command_bytes_max,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
        }
    }

    /// Bytes of one command at most. Before it authenticates, a client may send only small
    /// commands (AUTH, HELLO): unauthenticated connections cannot hold memory. Judged anew
    /// after every command: an AUTH pipelined ahead of a large SET lifts the limit for the SET.
    fn limit(&self, session: &Session) -> usize {
        if session.authenticated() {
            self.command_bytes_max
        } else {
            self.command_bytes_max.min(PREAUTH_COMMAND_BYTES_MAX)
        }
    }

    /// Runs every whole command in the buffer.
    async fn run_buffered(
        &mut self,
        ctx: &Context,
        session: &mut Session,
    ) -> std::io::Result<Step> {
        loop {
            match parse(&self.buf, self.bulk_max) {
                Parsed::Command(args, used) => {
                    self.buf.advance(used);
                    if args.is_empty() {
                        continue;
                    }
                    if let Step::Close = self.command(ctx, session, args).await? {
                        return Ok(Step::Close);
                    }
                }
                Parsed::Incomplete | Parsed::Broken(_) if !self.in_flight.is_empty() => {
                    // What was read before answers first, in order.
                    self.answer_all(ctx, session).await?;
                }
                Parsed::Incomplete if self.buf.len() > self.limit(session) => {
                    let limit = self.limit(session);
                    let why = if session.authenticated() {
                        format!("a command of more than {limit} bytes (resp_command_bytes_max)")
                    } else {
                        format!("a command of more than {limit} bytes before AUTH")
                    };
                    return self.refuse(ctx, &why).await;
                }
                Parsed::Incomplete => return Ok(Step::Continue),
                Parsed::Broken(why) => return self.refuse(ctx, &why).await,
            }
        }
    }

    /// Starts one command: a `GET` or `SET` goes to the node at once (after the same key's
    /// earlier commands have answered), any other runs once every earlier command has.
    async fn command(
        &mut self,
        ctx: &Context,
        session: &mut Session,
        args: Vec<Bytes>,
    ) -> std::io::Result<Step> {
        ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
        if !session.authenticated() {
            session.auth.commands_before += 1;
            if session.auth.commands_before > PREAUTH_COMMANDS_MAX {
                self.answer_all(ctx, session).await?;
                return self
                    .close_with(Frame::err("too many commands before AUTH"))
                    .await;
            }
        }
        match cmd::prepare(session, args) {
            Prepared::Answered(frame) => {
                self.in_flight.push_back(Slot::Ready(frame));
                Ok(Step::Continue)
            }
            Prepared::Submit(then) => {
                let bytes = request_bytes(&then);
                let permit = loop {
                    let waiting = self.waiting();
                    let room = waiting < IN_FLIGHT_MAX
                        && (self.in_flight_bytes == 0
                            || self.in_flight_bytes.saturating_add(bytes) <= IN_FLIGHT_BYTES_MAX)
                        && !self.in_flight.iter().any(|slot| slot.is_on(then.key()));
                    if room {
                        if waiting == 0 {
                            break None;
                        }
                        if let Some(permit) = Permit::try_take(&ctx.pipelined) {
                            break Some(permit);
                        }
                    }
                    self.answer_first(ctx, session).await?;
                };
                // Made now, after the same key's earlier commands have answered: a session
                // read carries what they wrote.
                let request = cmd::request(session, &then);
                let slot = match ctx.node.submit(request).await {
                    Ok(pending) => {
                        self.in_flight_bytes += bytes;
                        Slot::Waiting {
                            bytes,
                            pending,
                            then,
                            _permit: permit,
                        }
                    }
                    Err(e) => Slot::Ready(unavailable(e)),
                };
                self.in_flight.push_back(slot);
                Ok(Step::Continue)
            }
            Prepared::Alone(args) => {
                self.answer_all(ctx, session).await?;
                let reply = cmd::execute(ctx, session, args).await;
                if session.quit {
                    count_error(ctx, &reply);
                    return self.close_with(reply).await;
                }
                self.answer(ctx, reply).await?;
                Ok(Step::Continue)
            }
        }
    }

    /// Commands of this connection at the node.
    fn waiting(&self) -> usize {
        self.in_flight
            .iter()
            .filter(|slot| matches!(slot, Slot::Waiting { .. }))
            .count()
    }

    /// Writes the answer of the oldest command in flight, waiting for it if need be.
    async fn answer_first(&mut self, ctx: &Context, session: &mut Session) -> std::io::Result<()> {
        let Some(slot) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let frame = match slot {
            Slot::Ready(frame) => frame,
            Slot::Waiting {
                bytes,
                pending,
                then,
                ..
            } => {
                self.in_flight_bytes -= bytes;
                let reply = ctx.node.wait(pending).await;
                cmd::complete(ctx, session, then, reply)
            }
        };
        self.answer(ctx, frame).await
    }

    /// Writes the answers of every command in flight.
    async fn answer_all(&mut self, ctx: &Context, session: &mut Session) -> std::io::Result<()> {
        while !self.in_flight.is_empty() {
            self.answer_first(ctx, session).await?;
        }
        Ok(())
    }

    /// Queues one answer for the client.
    async fn answer(&mut self, ctx: &Context, reply: Frame) -> std::io::Result<()> {
        count_error(ctx, &reply);
        reply.encode(&mut self.out);
        // Pipelined replies go out as they pile up: a client that sends many commands and
        // reads nothing stalls its own connection instead of making the node hold every reply.
        if self.out.len() >= OUT_FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Answers a stream that is not RESP, or a command past the limit, and closes.
    async fn refuse(&mut self, ctx: &Context, why: &str) -> std::io::Result<Step> {
        ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.close_with(Frame::err(format!("Protocol error: {why}")))
            .await
    }

    /// Writes what is pending and `last`, then closes.
    async fn close_with(&mut self, last: Frame) -> std::io::Result<Step> {
        last.encode(&mut self.out);
        self.stream.write_all(&self.out).await?;
        Ok(Step::Close)
    }

    /// Writes the replies queued so far.
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads more of the client's bytes: no more than the command limit allows to be
    /// buffered (plus one byte, to notice a command that passes it). Before AUTH, only until
    /// the connection's time to authenticate runs out.
    async fn read_more(&mut self, session: &Session) -> std::io::Result<Step> {
        let room = (self.limit(session) + 1)
            .saturating_sub(self.buf.len())
            .max(1);
        self.buf.reserve(room.min(READ_RESERVE_BYTES_MAX));
        let mut limited = (&mut self.stream).take(room as u64);
        let read = limited.read_buf(&mut self.buf);
        let n = if session.authenticated() {
            read.await?
        } else {
            match tokio::time::timeout_at(self.connected + AUTH_TIMEOUT, read).await {
                Ok(n) => n?,
                Err(_) => {
                    Frame::err("Protocol error: no AUTH in time").encode(&mut self.out);
                    let _ = self.stream.write_all(&self.out).await;
                    return Ok(Step::Close);
                }
            }
        };
        Ok(if n == 0 { Step::Close } else { Step::Continue })
    }
}

#[cfg(test)]
mod tests {
    //! Raw RESP bytes in, the exact bytes back, over an in-memory stream, with a stand-in for
    //! the node thread.

    use std::collections::HashMap;
    use std::sync::Arc;

    use driftkv_wire::{Reply, Request};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::mpsc;

    use super::*;
    use crate::auth::Users;
    use crate::handle::NodeHandle;
    use crate::resp::context::PIPELINED_MAX;
    use crate::runtime::Event;

    /// A node thread that keeps registers in a map (enough for SET and GET), or none at all.
    fn context(node_runs: bool, users: Option<&str>) -> Context {
        let (tx, mut events) = mpsc::channel::<Event>(16);
        if node_runs {
            tokio::spawn(async move {
                let mut registers: HashMap<Bytes, Bytes> = HashMap::new();
                while let Some(event) = events.recv().await {
                    let Event::Client { request, reply } = event else {
                        continue;
                    };
                    let answer = match request {
                        Request::Overwrite { key, value, .. } => {
                            match value {
                                Some(v) => registers.insert(key.key().clone(), v),
                                None => registers.remove(key.key()),
                            };
                            Reply::Written {
                                context: Default::default(),
                            }
                        }
                        Request::Get { key, .. } => match registers.get(key.key()) {
                            Some(v) => Reply::Values {
                                values: vec![v.clone()],
                                context: Default::default(),
                            },
                            None => Reply::NotFound {
                                context: Default::default(),
                            },
                        },
                        other => panic!("the stand-in does not serve {other:?}"),
                    };
                    let _ = reply.send(answer.into());
                }
            });
        }
        Context {
            users: users.map(|u| Arc::new(Users::parse(u).unwrap())),
            ..over(tx, NodeConfig::new("n1"))
        }
    }

    /// A listener's context over the stand-in node thread behind `tx`, with no users.
    fn over(tx: mpsc::Sender<Event>, config: NodeConfig) -> Context {
        Context {
            node: NodeHandle::new(tx, config, Arc::default()),
            users: None,
            stats: Arc::default(),
            pipelined: Arc::default(),
        }
    }

    /// A client connected to a served connection.
    fn connect(ctx: Context) -> DuplexStream {
        let (client, server) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move { serve(server, &ctx, 7, 1 << 20).await });
        client
    }

    /// Sends `request` and reads back exactly as many bytes as `expected` holds.
    async fn exchange(client: &mut DuplexStream, request: &[u8], expected: &[u8]) {
        client.write_all(request).await.unwrap();
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// A node thread that takes the requests waiting in its queue as one batch and answers
    /// them (registers in a map, applied in arrival order) in reverse order; it notes the
    /// largest batch and whether a batch held two requests on one key. With `gather`, it waits
    /// until it holds that many requests before it answers any.
    fn batching_context(gather: usize) -> (Context, Arc<std::sync::Mutex<(usize, bool)>>) {
        let (tx, mut events) = mpsc::channel::<Event>(1024);
        let seen = Arc::new(std::sync::Mutex::new((0usize, false)));
        let noted = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut registers: HashMap<Bytes, Bytes> = HashMap::new();
            while let Some(first) = events.recv().await {
                let mut batch = vec![first];
                while batch.len() < gather {
                    match events.recv().await {
                        Some(e) => batch.push(e),
                        None => return,
                    }
                }
                while let Ok(e) = events.try_recv() {
                    batch.push(e);
                }
                let mut keys = std::collections::HashSet::new();
                let mut answers = Vec::new();
                for event in batch {
                    let Event::Client { request, reply } = event else {
                        continue;
                    };
                    let answer = match request {
                        Request::Overwrite { key, value, .. } => {
                            noted.lock().unwrap().1 |= !keys.insert(key.key().clone());
                            registers.insert(key.key().clone(), value.unwrap());
                            Reply::Written {
                                context: Default::default(),
                            }
                        }
                        Request::Get { key, .. } => {
                            noted.lock().unwrap().1 |= !keys.insert(key.key().clone());
                            match registers.get(key.key()) {
                                Some(v) => Reply::Values {
                                    values: vec![v.clone()],
                                    context: Default::default(),
                                },
                                None => Reply::NotFound {
                                    context: Default::default(),
                                },
                            }
                        }
                        other => panic!("the stand-in does not serve {other:?}"),
                    };
                    answers.push((reply, answer));
                }
                let mut largest = noted.lock().unwrap();
                largest.0 = largest.0.max(answers.len());
                drop(largest);
                for (reply, answer) in answers.into_iter().rev() {
                    let _ = reply.send(answer.into());
                }
            }
        });
        let ctx = over(tx, NodeConfig::new("n1"));
        (ctx, seen)
    }

    #[tokio::test]
    async fn a_pipeline_reaches_the_node_whole_and_is_answered_in_order() {
        // The node answers nothing until it holds all sixteen: a connection that waited for
        // each reply before sending the next command would never be answered.
        let (ctx, seen) = batching_context(16);
        let mut client = connect(ctx);
        let mut request = Vec::new();
        let mut expected = Vec::new();
        for i in 0..16 {
            let key = format!("k{i}");
            request.extend_from_slice(
                format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
            );
            expected.extend_from_slice(b"$-1\r\n");
        }
        tokio::time::timeout(
            Duration::from_secs(10),
            exchange(&mut client, &request, &expected),
        )
        .await
        .expect("the pipeline was answered");
        assert_eq!(seen.lock().unwrap().0, 16);
    }

    #[tokio::test]
    async fn a_command_sees_the_same_connections_earlier_commands_on_its_key() {
        let (ctx, seen) = batching_context(1);
        let mut client = connect(ctx);
        exchange(
            &mut client,
            b"SET k 1\r\nGET k\r\nSET j 2\r\nGET j\r\nSET k 3\r\nGET k\r\nGET j\r\n",
            b"+OK\r\n$1\r\n1\r\n+OK\r\n$1\r\n2\r\n+OK\r\n$1\r\n3\r\n$1\r\n2\r\n",
        )
        .await;
        let (largest, same_key_together) = *seen.lock().unwrap();
        assert!(
            !same_key_together,
            "two commands on one key were at the node at once"
        );
        assert!(
            largest >= 2,
            "commands on different keys went to the node together"
        );
    }

    #[tokio::test]
    async fn a_pipelined_session_read_carries_the_write_before_it() {
        // Each write answers with a context one step past the last; a session read records
        // the context it asked for, and answers nothing found.
        let (tx, mut events) = mpsc::channel::<Event>(64);
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let noted = Arc::clone(&asked);
        tokio::spawn(async move {
            let actor = driftkv_causal::actor::Actor::new("n1", 1);
            let mut clock = driftkv_causal::vv::VersionVector::new();
            let mut count = 0;
            while let Some(event) = events.recv().await {
                let Event::Client { request, reply } = event else {
                    continue;
                };
                let answer = match request {
                    Request::Overwrite { .. } => {
                        count += 1;
                        clock.observe(&actor, count);
                        Reply::Written {
                            context: clock.clone(),
                        }
                    }
                    Request::SessionGet { seen, .. } => {
                        noted.lock().unwrap().push(seen.get(&actor));
                        Reply::NotFound {
                            context: Default::default(),
                        }
                    }
                    other => panic!("the stand-in does not serve {other:?}"),
                };
                let _ = reply.send(answer.into());
            }
        });
        let ctx = over(tx, NodeConfig::new("n1"));
        let mut client = connect(ctx);
        exchange(&mut client, b"DRIFTKV SESSION ON\r\n", b"+OK\r\n").await;
        exchange(
            &mut client,
            b"SET k 1\r\nGET k\r\nSET k 2\r\nGET k\r\n",
            b"+OK\r\n$-1\r\n+OK\r\n$-1\r\n",
        )
        .await;
        assert_eq!(
            *asked.lock().unwrap(),
            vec![1, 2],
            "each session read asked for at least the write before it"
        );
    }

    #[tokio::test]
    async fn pipelined_commands_beyond_the_first_take_places_from_a_shared_pool() {
        // A node that never answers: the connections fill the pool and no more is taken;
        // the places come back once their requests time out (a connection whose client left
        // notices when it next writes).
        let (tx, mut events) = mpsc::channel::<Event>(4 * PIPELINED_MAX);
        let held = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(event) = events.recv().await {
                kept.push(event);
            }
        });
        let mut config = NodeConfig::new("n1");
        config.request_timeout_ms = 200;
        let ctx = over(tx, config);
        let pool = Arc::clone(&ctx.pipelined);
        let mut pipeline = Vec::new();
        for i in 0..IN_FLIGHT_MAX {
            pipeline.extend_from_slice(format!("GET k{i}\r\n").as_bytes());
        }
        let mut clients = Vec::new();
        let connections = PIPELINED_MAX / (IN_FLIGHT_MAX - 1) + 2;
        for _ in 0..connections {
            let mut client = connect(ctx.clone());
            client.write_all(&pipeline).await.unwrap();
            clients.push(client);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pool.load(Ordering::Acquire) < PIPELINED_MAX {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the pool never filled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            pool.load(Ordering::Acquire),
            PIPELINED_MAX,
            "never more than the pool"
        );
        drop(clients);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while pool.load(Ordering::Acquire) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "places not given back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        held.abort();
    }

    const USERS: &str = "[users.app]\npassword = \"secret\"\nrole = \"write\"\n";

    #[tokio::test]
    async fn pipelined_commands_are_answered_in_order() {
        let mut client = connect(context(true, None));
        exchange(
            &mut client,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nGET nope\r\n",
            b"+OK\r\n$1\r\nv\r\n$-1\r\n",
        )
        .await;
    }

    #[tokio::test]
    async fn a_stopped_node_is_reported_as_stopped_not_as_slow() {
        let mut client = connect(context(false, None));
        exchange(
            &mut client,
            b"GET k\r\nPING\r\n",
            b"-UNAVAILABLE the node is shutting down\r\n+PONG\r\n",
        )
        .await;
    }

    #[tokio::test]
    async fn before_auth_only_the_way_in_is_open() {
        let mut client = connect(context(true, Some(USERS)));
        exchange(
            &mut client,
            b"PING\r\nGET k\r\nAUTH app wrong\r\nAUTH app secret\r\nGET k\r\n",
            b"+PONG\r\n-NOAUTH Authentication required.\r\n\
              -WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n$-1\r\n",
        )
        .await;
    }

    #[tokio::test]
    async fn too_many_commands_before_auth_close_the_connection() {
        let mut client = connect(context(true, Some(USERS)));
        let pings = b"PING\r\n".repeat(PREAUTH_COMMANDS_MAX as usize + 1);
        let mut expected = b"+PONG\r\n".repeat(PREAUTH_COMMANDS_MAX as usize);
        expected.extend_from_slice(b"-ERR too many commands before AUTH\r\n");
        exchange(&mut client, &pings, &expected).await;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed after the refusal");
    }

    #[tokio::test]
    async fn a_broken_frame_is_answered_and_closes_the_connection() {
        let mut client = connect(context(true, None));
        exchange(
            &mut client,
            b"*1\r\n+OK\r\n",
            b"-ERR Protocol error: expected '$', got '+'\r\n",
        )
        .await;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
