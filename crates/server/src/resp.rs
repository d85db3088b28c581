//! The Redis protocol (RESP2) front-end, so redis-cli, redis-benchmark and Redis client
//! libraries talk to driftkv.
//!
//! Commands are parsed from arrays of bulk strings (or inline lines), executed in order, and
//! their replies written back in order, so pipelining works. Each command becomes one or more
//! core requests at the connection's consistency levels (`DRIFTKV CONSISTENCY r w`).
//!
//! Mapping: string keys are registers (`SET` overwrites what its coordinator has seen, like
//! Redis; writes through other nodes at the same time become siblings), `INCR`-family keys are
//! PN-counters, `S*` keys are add-wins sets. A `GET` on a key with siblings answers the greatest
//! sibling in byte order (the same choice on every node) and counts it in `INFO`
//! (`sibling_reads_resolved`). Bad input answers a Redis-style error line and the connection
//! stays open; only a broken frame closes it, as in Redis.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use driftkv_causal::VersionVector;
use driftkv_wire::{ErrorKind, Key, Quorum, Reply, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::auth::Role;
use crate::http::AppState;

/// Arguments of one command at most (Redis allows more, but no driftkv command needs them:
/// an MSET of 32,768 pairs).
const ARGS_MAX: usize = 64 * 1024;

/// How a RESP listener serves.
#[derive(Clone)]
pub struct Settings {
    pub tls: Option<Arc<driftkv_tls::rustls::ServerConfig>>,
    pub connections_max: usize,
    /// Bytes of one command at most, all arguments together: a client declaring a million
    /// arguments of 4 MiB is cut off at this, not at what it declared.
    pub command_bytes_max: usize,
}

/// Replies buffered before they are written, at most (beyond one reply).
const OUT_FLUSH_BYTES: usize = 64 * 1024;
/// A command before AUTH, at most (AUTH and HELLO are short).
const PREAUTH_COMMAND_BYTES_MAX: usize = 64 * 1024;
/// How long a client on a node with users has to authenticate.
const AUTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Commands a connection may send before it authenticates (AUTH, HELLO, PING).
const PREAUTH_COMMANDS_MAX: u32 = 64;
/// Failed AUTH attempts after which the connection is closed.
const AUTH_FAILURES_MAX: u32 = 3;

/// How long a client has for the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Characters of a length line at most (a sign and 19 digits; padded lengths are refused, so a
/// header is judged the same whether its end arrived in one read or several).
const LENGTH_DIGITS_MAX: usize = 20;
/// An inline command line at most.
const INLINE_MAX: usize = 64 * 1024;

#[derive(Default, Debug)]
pub struct RespStats {
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub commands: AtomicU64,
    pub errors: AtomicU64,
    pub sibling_reads_resolved: AtomicU64,
    pub auth_failures: AtomicU64,
    pub listener: Arc<crate::listen::ListenerStats>,
}

/// A reply in RESP2.
#[derive(Debug, PartialEq)]
pub enum Value {
    Simple(&'static str),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Value>),
    /// A RESP3 map of alternating keys and values (HELLO 3 only).
    Map(Vec<Value>),
}

impl Value {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
            }
            Value::Error(e) => {
                out.push(b'-');
                // An error line cannot carry a line break.
                out.extend(
                    e.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
            }
            Value::Int(i) => out.extend_from_slice(format!(":{i}").as_bytes()),
            Value::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::Null => out.extend_from_slice(b"$-1"),
            Value::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
                return;
            }
            Value::Map(items) => {
                out.extend_from_slice(format!("%{}\r\n", items.len() / 2).as_bytes());
                for item in items {
                    item.encode(out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    fn bulk(s: impl Into<Vec<u8>>) -> Value {
        Value::Bulk(Bytes::from(s.into()))
    }
}

fn err(message: impl Into<String>) -> Value {
    Value::Error(format!("ERR {}", message.into()))
}

/// One parse step over the connection's buffer.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A whole command and how many bytes it took (no arguments: a blank inline line).
    Command(Vec<Bytes>, usize),
    Incomplete,
    /// The stream is not RESP: answer and close.
    Broken(String),
}

fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let at = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..at], from + at + 2))
}

fn number(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Parses one command from the front of `buf`. `bulk_max` bounds each argument.
pub fn parse(buf: &[u8], bulk_max: usize) -> Parsed {
    let Some(&first) = buf.first() else {
        return Parsed::Incomplete;
    };
    if first != b'*' {
        // Inline command: words up to a newline.
        let Some(end) = buf.iter().position(|&b| b == b'\n') else {
            return if buf.len() > INLINE_MAX {
                Parsed::Broken("too big inline request".into())
            } else {
                Parsed::Incomplete
            };
        };
        // The same answer however the bytes arrived: a line past the limit is refused even
        // when its end came in the same read.
        if end > INLINE_MAX {
            return Parsed::Broken("too big inline request".into());
        }
        let text = &buf[..end];
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let args = text
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(Bytes::copy_from_slice)
            .collect();
        return Parsed::Command(args, end + 1);
    }
    let Some((head, mut at)) = line(buf, 1) else {
        return if buf.len() > 32 {
            Parsed::Broken("invalid multibulk length".into())
        } else {
            Parsed::Incomplete
        };
    };
    if head.len() > LENGTH_DIGITS_MAX {
        return Parsed::Broken("invalid multibulk length".into());
    }
    let count = match number(head) {
        Some(n) if (0..=ARGS_MAX as i64).contains(&n) => n as usize,
        Some(n) if n < 0 => return Parsed::Command(Vec::new(), at),
        _ => return Parsed::Broken("invalid multibulk length".into()),
    };
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        match buf.get(at) {
            None => return Parsed::Incomplete,
            Some(b'$') => {}
            Some(&other) => {
                return Parsed::Broken(format!("expected '$', got '{}'", other as char));
            }
        }
        let Some((len, start)) = line(buf, at + 1) else {
            return if buf.len() - at > 32 {
                Parsed::Broken("invalid bulk length".into())
            } else {
                Parsed::Incomplete
            };
        };
        if len.len() > LENGTH_DIGITS_MAX {
            return Parsed::Broken("invalid bulk length".into());
        }
        let len = match number(len) {
            Some(n) if n >= 0 && (n as usize) <= bulk_max => n as usize,
            _ => return Parsed::Broken("invalid bulk length".into()),
        };
        if buf.len() < start + len + 2 {
            return Parsed::Incomplete;
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return Parsed::Broken("bulk string not terminated by CRLF".into());
        }
        args.push(Bytes::copy_from_slice(&buf[start..start + len]));
        at = start + len + 2;
    }
    Parsed::Command(args, at)
}

/// A connection's settings.
struct Session {
    r: Quorum,
    w: Quorum,
    name: Option<Bytes>,
    id: u64,
    quit: bool,
    /// With `DRIFTKV SESSION ON`: the last context of each string key this connection read or
    /// wrote, so its GETs read its own writes and never go back (oldest forgotten first).
    seen: Option<(HashMap<Bytes, VersionVector>, VecDeque<Bytes>)>,
    /// What the connection may do: `None` until it authenticates (on a node with users).
    role: Option<Role>,
    /// Commands run before authenticating, and failed authentications.
    before_auth: u32,
    auth_failures: u32,
}

/// Keys a session remembers at most.
const SESSION_KEYS_MAX: usize = 10_000;

impl Session {
    fn remember(&mut self, k: &Bytes, context: &VersionVector) {
        let Some((seen, order)) = &mut self.seen else {
            return;
        };
        match seen.get_mut(k) {
            Some(old) => {
                let _ = old.merge(context);
            }
            None => {
                if seen.len() >= SESSION_KEYS_MAX
                    && let Some(oldest) = order.pop_front()
                {
                    seen.remove(&oldest);
                }
                seen.insert(k.clone(), context.clone());
                order.push_back(k.clone());
            }
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stats: Arc<RespStats>,
    settings: Settings,
) {
    let acceptor = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let listener_stats = Arc::clone(&stats.listener);
    crate::listen::accept_loop(
        listener,
        settings.connections_max,
        "RESP listener",
        listener_stats,
        move |stream, peer, permit| {
            let state = state.clone();
            let stats = Arc::clone(&stats);
            let acceptor = acceptor.clone();
            let command_bytes_max = settings.command_bytes_max;
            tokio::spawn(async move {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let id = stats.connections_total.fetch_add(1, Ordering::Relaxed) + 1;
                let ended =
                    match crate::listen::secure(stream, acceptor.as_ref(), TLS_HANDSHAKE_TIMEOUT)
                        .await
                    {
                        Ok(stream) => {
                            connection(stream, &state, &stats, id, command_bytes_max).await
                        }
                        Err(e) => Err(e),
                    };
                if let Err(e) = ended {
                    tracing::debug!(peer = %peer, "RESP connection ended: {e}");
                }
                stats.connections.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        },
    )
    .await;
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    state: &AppState,
    stats: &RespStats,
    id: u64,
    command_bytes_max: usize,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(16 * 1024);
    let mut session = Session {
        r: Quorum::Default,
        w: Quorum::Default,
        name: None,
        id,
        quit: false,
        seen: None,
        role: if state.users.is_some() {
            None
        } else {
            Some(Role::Admin)
        },
        before_auth: 0,
        auth_failures: 0,
    };
    let bulk_max = state.config.value_bytes_max.max(state.config.key_bytes_max) + 1024;
    let connected = tokio::time::Instant::now();
    // Before it authenticates, a client may send only small commands (AUTH, HELLO), and only
    // for a while: unauthenticated connections cannot hold memory or places. (Judged anew after
    // every command: an AUTH pipelined ahead of a large SET lifts the limit for the SET.)
    let limit = |session: &Session| {
        if session.role.is_some() {
            command_bytes_max
        } else {
            command_bytes_max.min(PREAUTH_COMMAND_BYTES_MAX)
        }
    };
    loop {
        loop {
            match parse(&buf, bulk_max) {
                Parsed::Command(args, used) => {
                    buf.advance(used);
                    if args.is_empty() {
                        continue;
                    }
                    stats.commands.fetch_add(1, Ordering::Relaxed);
                    if session.role.is_none() {
                        session.before_auth += 1;
                        if session.before_auth > PREAUTH_COMMANDS_MAX {
                            err("too many commands before AUTH").encode(&mut out);
                            stream.write_all(&out).await?;
                            return Ok(());
                        }
                    }
                    let reply = execute(state, stats, &mut session, args).await;
                    if matches!(reply, Value::Error(_)) {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    reply.encode(&mut out);
                    if session.quit {
                        stream.write_all(&out).await?;
                        return Ok(());
                    }
                    // Pipelined replies go out as they pile up: a client that sends many
                    // commands and reads nothing stalls its own connection instead of making
                    // the node hold every reply.
                    if out.len() >= OUT_FLUSH_BYTES {
                        stream.write_all(&out).await?;
                        out.clear();
                    }
                }
                Parsed::Incomplete if buf.len() > limit(&session) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    let limit = limit(&session);
                    let why = if session.role.is_some() {
                        format!("a command of more than {limit} bytes (resp_command_bytes_max)")
                    } else {
                        format!("a command of more than {limit} bytes before AUTH")
                    };
                    err(format!("Protocol error: {why}")).encode(&mut out);
                    stream.write_all(&out).await?;
                    return Ok(());
                }
                Parsed::Incomplete => break,
                Parsed::Broken(why) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    err(format!("Protocol error: {why}")).encode(&mut out);
                    stream.write_all(&out).await?;
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        // Read no more than the command limit allows to be buffered (plus one byte, to notice
        // a command that passes it).
        let room = (limit(&session) + 1).saturating_sub(buf.len()).max(1);
        buf.reserve(room.min(64 * 1024));
        let mut limited = (&mut stream).take(room as u64);
        let read = limited.read_buf(&mut buf);
        let n = if session.role.is_some() {
            read.await?
        } else {
            match tokio::time::timeout_at(connected + AUTH_TIMEOUT, read).await {
                Ok(n) => n?,
                Err(_) => {
                    err("Protocol error: no AUTH in time").encode(&mut out);
                    let _ = stream.write_all(&out).await;
                    return Ok(());
                }
            }
        };
        if n == 0 {
            return Ok(());
        }
    }
}

fn key(raw: &Bytes) -> Key {
    Key::default_bucket(raw.clone())
}

fn integer(raw: &[u8]) -> Result<i64, Value> {
    number(raw).ok_or_else(|| err("value is not an integer or out of range"))
}

/// The RESP error for a core error reply.
fn failure(reply: Reply) -> Value {
    match reply {
        Reply::Error {
            kind: ErrorKind::WrongType,
            ..
        } => {
            Value::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
        }
        Reply::Error {
            kind: ErrorKind::Unavailable,
            message,
            ..
        } => Value::Error(format!("UNAVAILABLE {message}")),
        Reply::Error { message, .. } => err(message),
        other => err(format!("unexpected answer from the node: {other:?}")),
    }
}

async fn call(state: &AppState, request: Request) -> Reply {
    match state.call(request).await {
        Ok(reply) => reply,
        Err(_) => Reply::error(ErrorKind::Unavailable, "the node did not answer in time"),
    }
}

/// A register's value as GET answers it: the greatest sibling when there are several.
async fn get(
    state: &AppState,
    stats: &RespStats,
    s: &mut Session,
    k: &Bytes,
) -> Result<Option<Bytes>, Value> {
    let request = match &s.seen {
        Some((seen, _)) => Request::SessionGet {
            key: key(k),
            r: s.r,
            seen: seen.get(k).cloned().unwrap_or_default(),
        },
        None => Request::Get {
            key: key(k),
            r: s.r,
        },
    };
    match call(state, request).await {
        Reply::Values { values, context } => {
            s.remember(k, &context);
            if values.len() > 1 {
                stats.sibling_reads_resolved.fetch_add(1, Ordering::Relaxed);
            }
            Ok(values.into_iter().max())
        }
        Reply::NotFound { context } => {
            s.remember(k, &context);
            Ok(None)
        }
        other => Err(failure(other)),
    }
}

async fn members(state: &AppState, s: &Session, k: &Bytes) -> Result<Vec<Bytes>, Value> {
    match call(
        state,
        Request::SetGet {
            key: key(k),
            r: s.r,
        },
    )
    .await
    {
        Reply::Set { members } => Ok(members),
        other => Err(failure(other)),
    }
}

fn arity(name: &str) -> Value {
    err(format!("wrong number of arguments for '{name}' command"))
}

/// Commands that change data (need the `write` role).
const WRITE_COMMANDS: &[&str] = &[
    "set", "mset", "del", "incr", "decr", "incrby", "decrby", "sadd", "srem",
];
/// Commands a connection may send before it authenticates.
const BEFORE_AUTH: &[&str] = &["auth", "hello", "ping", "quit"];

async fn execute(state: &AppState, stats: &RespStats, s: &mut Session, args: Vec<Bytes>) -> Value {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let a = &args[1..];
    if !BEFORE_AUTH.contains(&name.as_str()) {
        match s.role {
            None => return Value::Error("NOAUTH Authentication required.".into()),
            Some(role) if role < Role::Write && WRITE_COMMANDS.contains(&name.as_str()) => {
                return Value::Error(format!(
                    "NOPERM this user has the {} role and cannot run the '{name}' command",
                    role.name()
                ));
            }
            Some(_) => {}
        }
    }
    match run(state, stats, s, &name, a).await {
        Ok(v) | Err(v) => v,
    }
}

/// `AUTH [user] password`, alone or inside `HELLO`: sets the connection's role.
fn authenticate(
    state: &AppState,
    stats: &RespStats,
    s: &mut Session,
    user: &[u8],
    password: &[u8],
) -> Result<(), Value> {
    let Some(users) = &state.users else {
        return Err(err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    };
    match users.check(user, password) {
        Some(role) => {
            s.role = Some(role);
            Ok(())
        }
        None => {
            stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            // Guessing costs a connection (and a TLS handshake) every few tries.
            s.auth_failures += 1;
            if s.auth_failures >= AUTH_FAILURES_MAX {
                s.quit = true;
            }
            Err(Value::Error(
                "WRONGPASS invalid username-password pair or user is disabled.".into(),
            ))
        }
    }
}

async fn run(
    state: &AppState,
    stats: &RespStats,
    s: &mut Session,
    name: &str,
    a: &[Bytes],
) -> Result<Value, Value> {
    let need = |ok: bool| if ok { Ok(()) } else { Err(arity(name)) };
    Ok(match name {
        "ping" => match a {
            [] => Value::Simple("PONG"),
            [m] => Value::Bulk(m.clone()),
            _ => return Err(arity(name)),
        },
        "echo" => {
            need(a.len() == 1)?;
            Value::Bulk(a[0].clone())
        }
        "quit" => {
            s.quit = true;
            Value::Simple("OK")
        }
        "auth" => {
            match a {
                // Redis's one-argument form authenticates the user named "default".
                [password] => authenticate(state, stats, s, b"default", password)?,
                [user, password] => authenticate(state, stats, s, user, password)?,
                _ => return Err(arity(name)),
            }
            Value::Simple("OK")
        }
        "select" => {
            need(a.len() == 1)?;
            if &a[0][..] == b"0" {
                Value::Simple("OK")
            } else {
                return Err(err("DB index is out of range"));
            }
        }
        "get" => {
            need(a.len() == 1)?;
            get(state, stats, s, &a[0])
                .await?
                .map_or(Value::Null, Value::Bulk)
        }
        "set" => {
            need(a.len() >= 2)?;
            if a.len() > 2 {
                return Err(err(
                    "syntax error (driftkv's SET takes no options: no expiry, NX or XX)",
                ));
            }
            let request = Request::Overwrite {
                key: key(&a[0]),
                value: Some(a[1].clone()),
                w: s.w,
            };
            match call(state, request).await {
                Reply::Written { context } => {
                    s.remember(&a[0], &context);
                    Value::Simple("OK")
                }
                other => return Err(failure(other)),
            }
        }
        "mset" => {
            need(!a.is_empty() && a.len().is_multiple_of(2))?;
            for pair in a.chunks(2) {
                let request = Request::Overwrite {
                    key: key(&pair[0]),
                    value: Some(pair[1].clone()),
                    w: s.w,
                };
                match call(state, request).await {
                    Reply::Written { context } => s.remember(&pair[0], &context),
                    reply => return Err(failure(reply)),
                }
            }
            Value::Simple("OK")
        }
        "mget" => {
            need(!a.is_empty())?;
            let mut out = Vec::with_capacity(a.len().min(1024));
            let mut bytes = 0usize;
            // One reply holds at most what one value may be, as a GET's does: a client that
            // reads nothing makes the node hold one reply per connection, not many values.
            let reply_max = state.config.value_bytes_max;
            for k in a {
                // As in Redis, a key of another type reads as nil.
                out.push(match get(state, stats, s, k).await {
                    Ok(Some(v)) => {
                        bytes = bytes.saturating_add(v.len());
                        if bytes > reply_max {
                            return Err(err(format!(
                                "MGET would answer more than {reply_max} bytes (value_bytes_max): ask for fewer keys"
                            )));
                        }
                        Value::Bulk(v)
                    }
                    Ok(None) => Value::Null,
                    Err(Value::Error(e)) if e.starts_with("WRONGTYPE") => Value::Null,
                    Err(e) => return Err(e),
                });
            }
            Value::Array(out)
        }
        "del" | "exists" => {
            need(!a.is_empty())?;
            let mut count = 0;
            for k in a {
                let present = match get(state, stats, s, k).await {
                    Ok(v) => v.is_some(),
                    Err(Value::Error(e)) if e.starts_with("WRONGTYPE") && name == "exists" => true,
                    Err(e) => return Err(e),
                };
                if present && name == "del" {
                    let request = Request::Overwrite {
                        key: key(k),
                        value: None,
                        w: s.w,
                    };
                    if let reply @ Reply::Error { .. } = call(state, request).await {
                        return Err(failure(reply));
                    }
                }
                count += present as i64;
            }
            Value::Int(count)
        }
        "incr" | "decr" | "incrby" | "decrby" => {
            let by = if name.ends_with("by") {
                need(a.len() == 2)?;
                integer(&a[1])?
            } else {
                need(a.len() == 1)?;
                1
            };
            let delta = if name.starts_with("decr") {
                by.checked_neg()
                    .ok_or_else(|| err("decrement would overflow"))?
            } else {
                by
            };
            match call(
                state,
                Request::CounterAdd {
                    key: key(&a[0]),
                    delta,
                    w: s.w,
                },
            )
            .await
            {
                Reply::Counter { value } => Value::Int(
                    i64::try_from(value)
                        .map_err(|_| err("increment or decrement would overflow"))?,
                ),
                other => return Err(failure(other)),
            }
        }
        "sadd" | "srem" => {
            need(a.len() >= 2)?;
            let before = members(state, s, &a[0]).await?;
            let mut named: Vec<Bytes> = a[1..].to_vec();
            named.sort();
            named.dedup();
            let changed = named
                .iter()
                .filter(|m| before.contains(m) == (name == "srem"))
                .count();
            let (add, remove) = if name == "sadd" {
                (named, Vec::new())
            } else {
                (Vec::new(), named)
            };
            match call(
                state,
                Request::SetUpdate {
                    key: key(&a[0]),
                    add,
                    remove,
                    w: s.w,
                },
            )
            .await
            {
                Reply::Written { .. } => Value::Int(changed as i64),
                other => return Err(failure(other)),
            }
        }
        "smembers" => {
            need(a.len() == 1)?;
            Value::Array(
                members(state, s, &a[0])
                    .await?
                    .into_iter()
                    .map(Value::Bulk)
                    .collect(),
            )
        }
        "sismember" => {
            need(a.len() == 2)?;
            Value::Int(members(state, s, &a[0]).await?.contains(&a[1]) as i64)
        }
        "scard" => {
            need(a.len() == 1)?;
            Value::Int(members(state, s, &a[0]).await?.len() as i64)
        }
        "info" => Value::bulk(info(state, stats)),
        "command" => match a.first().map(|x| x.to_ascii_lowercase()) {
            Some(sub) if sub == b"count" => Value::Int(COMMANDS.len() as i64),
            _ => Value::Array(Vec::new()),
        },
        "config" => match a.first().map(|x| x.to_ascii_lowercase()) {
            Some(sub) if sub == b"get" => {
                need(a.len() >= 2)?;
                let mut out = Vec::new();
                for pattern in &a[1..] {
                    let p = pattern.to_ascii_lowercase();
                    let known: &[(&str, &str)] =
                        &[("save", ""), ("appendonly", "no"), ("databases", "1")];
                    for (k, v) in known {
                        if p == b"*" || p == k.as_bytes() {
                            out.push(Value::bulk(*k));
                            out.push(Value::bulk(*v));
                        }
                    }
                }
                Value::Array(out)
            }
            Some(sub) if sub == b"resetstat" => Value::Simple("OK"),
            _ => return Err(err("driftkv supports CONFIG GET and CONFIG RESETSTAT only")),
        },
        "client" => match a.first().map(|x| x.to_ascii_lowercase()) {
            Some(sub) if sub == b"setname" => {
                need(a.len() == 2)?;
                s.name = Some(a[1].clone());
                Value::Simple("OK")
            }
            Some(sub) if sub == b"getname" => s.name.clone().map_or(Value::Null, Value::Bulk),
            Some(sub) if sub == b"id" => Value::Int(s.id as i64),
            Some(_) => Value::Simple("OK"),
            None => return Err(arity("client")),
        },
        "hello" => {
            // HELLO [protover [AUTH username password] [SETNAME clientname]]
            let proto = match a.first() {
                None => 2,
                Some(v) => match std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    Some(2) => 2,
                    Some(3) => 3,
                    Some(_) => {
                        return Err(Value::Error("NOPROTO unsupported protocol version".into()));
                    }
                    None => {
                        return Err(err("Protocol version is not an integer or out of range"));
                    }
                },
            };
            let mut rest = a.get(1..).unwrap_or_default();
            while let Some(option) = rest.first() {
                match (option.to_ascii_lowercase().as_slice(), rest) {
                    (b"auth", [_, user, password, ..]) => {
                        authenticate(state, stats, s, user, password)?;
                        rest = &rest[3..];
                    }
                    (b"setname", [_, client, ..]) => {
                        s.name = Some(client.clone());
                        rest = &rest[2..];
                    }
                    _ => return Err(err("syntax error in HELLO option")),
                }
            }
            if s.role.is_none() {
                return Err(Value::Error(
                    "NOAUTH HELLO must be called with the client's credentials (AUTH) on this node"
                        .into(),
                ));
            }
            let fields = vec![
                Value::bulk("server"),
                Value::bulk("redis"),
                Value::bulk("version"),
                Value::bulk(REDIS_VERSION),
                Value::bulk("proto"),
                Value::Int(proto),
                Value::bulk("id"),
                Value::Int(s.id as i64),
                Value::bulk("mode"),
                Value::bulk("standalone"),
                Value::bulk("role"),
                Value::bulk("master"),
                Value::bulk("modules"),
                Value::Array(Vec::new()),
            ];
            // RESP3 clients get the map they ask for; every other reply of driftkv is
            // RESP2, which RESP3 clients read as well.
            if proto == 3 {
                Value::Map(fields)
            } else {
                Value::Array(fields)
            }
        }
        "driftkv" => match a.first().map(|x| x.to_ascii_lowercase()) {
            Some(sub) if sub == b"consistency" => match &a[1..] {
                [] => Value::Array(vec![Value::bulk(level(s.r)), Value::bulk(level(s.w))]),
                [r, w] => {
                    let parse = |raw: &Bytes, what: &str| {
                        Quorum::parse(&String::from_utf8_lossy(raw))
                            .map_err(|e| err(format!("{what}: {e}")))
                    };
                    let (r, w) = (parse(r, "r")?, parse(w, "w")?);
                    for q in [r, w] {
                        q.resolve(state.config.ring.n, Quorum::Quorum)
                            .map_err(err)?;
                    }
                    s.r = r;
                    s.w = w;
                    Value::Simple("OK")
                }
                _ => {
                    return Err(err(
                        "usage: DRIFTKV CONSISTENCY [R W], each one, quorum, all, default or a number",
                    ));
                }
            },
            Some(sub) if sub == b"session" => match &a[1..] {
                [] => Value::bulk(if s.seen.is_some() { "on" } else { "off" }),
                [on] if on.eq_ignore_ascii_case(b"on") => {
                    if s.seen.is_none() {
                        s.seen = Some((HashMap::new(), VecDeque::new()));
                    }
                    Value::Simple("OK")
                }
                [off] if off.eq_ignore_ascii_case(b"off") => {
                    s.seen = None;
                    Value::Simple("OK")
                }
                _ => return Err(err("usage: DRIFTKV SESSION [ON|OFF]")),
            },
            _ => {
                return Err(err(
                    "usage: DRIFTKV CONSISTENCY [R W] | DRIFTKV SESSION [ON|OFF]",
                ));
            }
        },
        _ => {
            let start: Vec<String> = a
                .iter()
                .take(3)
                .map(|x| format!("'{}'", String::from_utf8_lossy(x)))
                .collect();
            return Err(err(format!(
                "unknown command '{name}', with args beginning with: {}",
                start.join(" ")
            )));
        }
    })
}

const REDIS_VERSION: &str = "7.0.0";

/// The commands this front-end knows.
pub const COMMANDS: &[&str] = &[
    "ping",
    "echo",
    "quit",
    "select",
    "get",
    "set",
    "mset",
    "mget",
    "del",
    "exists",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "sadd",
    "srem",
    "smembers",
    "sismember",
    "scard",
    "info",
    "command",
    "config",
    "client",
    "hello",
    "auth",
    "driftkv",
];

fn level(q: Quorum) -> String {
    match q {
        Quorum::Default => "default".into(),
        Quorum::One => "one".into(),
        Quorum::Quorum => "quorum".into(),
        Quorum::All => "all".into(),
        Quorum::Count(n) => n.to_string(),
    }
}

fn info(state: &AppState, stats: &RespStats) -> String {
    let c = &state.config;
    format!(
        "# Server\r\nredis_version:{REDIS_VERSION}\r\ndriftkv_version:{}\r\nnode:{}\r\nredis_mode:standalone\r\n\
         \r\n# Clients\r\nconnected_clients:{}\r\n\
         \r\n# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nerror_replies:{}\r\n\
         sibling_reads_resolved:{}\r\n\
         \r\n# Replication\r\nrole:master\r\ndriftkv_n:{}\r\ndriftkv_r:{}\r\ndriftkv_w:{}\r\n\
         \r\n# Keyspace\r\n",
        env!("CARGO_PKG_VERSION"),
        state.node_id,
        stats.connections.load(Ordering::Relaxed),
        stats.connections_total.load(Ordering::Relaxed),
        stats.commands.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
        stats.sibling_reads_resolved.load(Ordering::Relaxed),
        c.ring.n,
        level(c.r),
        level(c.w),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<Bytes> {
        args.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn parses_arrays_pipelines_and_inline_commands() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let Parsed::Command(args, used) = parse(buf, 100) else {
            panic!()
        };
        assert_eq!(args, cmd(&["GET", "k"]));
        assert_eq!(
            parse(&buf[used..], 100),
            Parsed::Command(cmd(&["PING"]), buf.len() - used)
        );
        assert_eq!(
            parse(b"SET a  b\r\n", 100),
            Parsed::Command(cmd(&["SET", "a", "b"]), 10)
        );
        assert_eq!(parse(b"\r\n", 100), Parsed::Command(Vec::new(), 2));
    }

    #[test]
    fn binary_values_pass_unchanged() {
        let buf = b"*2\r\n$3\r\nSET\r\n$4\r\n\r\n\x00\xff\r\n";
        let Parsed::Command(args, _) = parse(buf, 100) else {
            panic!()
        };
        assert_eq!(&args[1][..], b"\r\n\x00\xff");
    }

    #[test]
    fn every_prefix_of_a_command_is_incomplete_never_wrong() {
        let buf = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        for cut in 0..buf.len() {
            assert_eq!(parse(&buf[..cut], 100), Parsed::Incomplete, "cut at {cut}");
        }
        assert!(matches!(parse(buf, 100), Parsed::Command(..)));
    }

    #[test]
    fn a_length_line_is_judged_the_same_however_it_arrives() {
        let padded = format!("*{}1\r\n$4\r\nPING\r\n", "0".repeat(40));
        assert!(matches!(parse(padded.as_bytes(), 100), Parsed::Broken(_)));
        assert!(matches!(
            parse(&padded.as_bytes()[..41], 100),
            Parsed::Broken(_)
        ));
        let mut inline = vec![b'a'; INLINE_MAX + 1];
        inline.push(b'\n');
        assert!(matches!(parse(&inline, 100), Parsed::Broken(_)));
    }

    #[test]
    fn broken_frames_are_errors() {
        assert!(matches!(parse(b"*x\r\n", 100), Parsed::Broken(_)));
        assert!(matches!(parse(b"*1\r\n+OK\r\n", 100), Parsed::Broken(_)));
        assert!(
            matches!(parse(b"*1\r\n$999\r\n", 100), Parsed::Broken(_)),
            "over the bulk limit"
        );
        assert!(matches!(
            parse(b"*1\r\n$2\r\nabcd\r\n", 100),
            Parsed::Broken(_)
        ));
        assert!(matches!(parse(b"*1\r\n$-5\r\n", 100), Parsed::Broken(_)));
        assert!(matches!(
            parse(&vec![b'a'; INLINE_MAX + 1], 100),
            Parsed::Broken(_)
        ));
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = Vec::new();
        Value::Array(vec![
            Value::Int(3),
            Value::Null,
            Value::bulk("hi"),
            Value::Simple("OK"),
            err("bad\r\nline"),
        ])
        .encode(&mut out);
        assert_eq!(
            out,
            b"*5\r\n:3\r\n$-1\r\n$2\r\nhi\r\n+OK\r\n-ERR bad  line\r\n"
        );
    }
}
