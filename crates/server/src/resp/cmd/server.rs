//! The connection and the server itself: PING, ECHO, QUIT, SELECT, INFO, CONFIG, CLIENT and
//! HELLO, answered as far as common clients and redis-benchmark need to start cleanly.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use driftkv_core::stats::COUNTERS;

use crate::metrics::level_name;
use crate::resp::cmd::args::{arity, expect, subcommand};
use crate::resp::cmd::auth::authenticate;
use crate::resp::context::Context;
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// The Redis version driftkv presents itself as.
pub const REDIS_VERSION: &str = "7.0.0";

/// What `CONFIG GET` knows: the settings clients and benchmarks ask about.
const CONFIG_KNOWN: &[(&str, &str)] = &[("save", ""), ("appendonly", "no"), ("databases", "1")];

/// `PING [message]`.
pub fn ping(a: &[Bytes]) -> Result<Frame, Frame> {
    match a {
        [] => Ok(Frame::Simple("PONG")),
        [m] => Ok(Frame::Bulk(m.clone())),
        _ => Err(arity("ping")),
    }
}

/// `ECHO message`.
pub fn echo(a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "echo")?;
    Ok(Frame::Bulk(a[0].clone()))
}

/// `QUIT`: answers, then the connection closes.
pub fn quit(s: &mut Session) -> Result<Frame, Frame> {
    s.quit = true;
    Ok(Frame::ok())
}

/// `SELECT 0`: driftkv has one database.
pub fn select(a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "select")?;
    if &a[0][..] == b"0" {
        Ok(Frame::ok())
    } else {
        Err(Frame::err("DB index is out of range"))
    }
}

/// `CONFIG GET pattern...` (exact names or `*`) and `CONFIG RESETSTAT`.
pub fn config(a: &[Bytes]) -> Result<Frame, Frame> {
    match subcommand(a).as_deref() {
        Some(b"get") => {
            expect(a.len() >= 2, "config")?;
            let mut out = Vec::new();
            for pattern in &a[1..] {
                let p = pattern.to_ascii_lowercase();
                for (k, v) in CONFIG_KNOWN {
                    if p == b"*" || p == k.as_bytes() {
                        out.push(Frame::bulk(*k));
                        out.push(Frame::bulk(*v));
                    }
                }
            }
            Ok(Frame::Array(out))
        }
        Some(b"resetstat") => Ok(Frame::ok()),
        _ => Err(Frame::err(
            "driftkv supports CONFIG GET and CONFIG RESETSTAT only",
        )),
    }
}

/// `CLIENT SETNAME|GETNAME|ID`; other subcommands are accepted and do nothing.
pub fn client(s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    match subcommand(a).as_deref() {
        Some(b"setname") => {
            expect(a.len() == 2, "client")?;
            s.name = Some(a[1].clone());
            Ok(Frame::ok())
        }
        Some(b"getname") => Ok(s.name.clone().map_or(Frame::Null, Frame::Bulk)),
        Some(b"id") => Ok(Frame::Int(s.id as i64)),
        Some(_) => Ok(Frame::ok()),
        None => Err(arity("client")),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
pub fn hello(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    let proto = match a.first() {
        None => 2,
        Some(v) => protocol_version(v)?,
    };
    let mut rest = a.get(1..).unwrap_or_default();
    while let Some(option) = rest.first() {
        match (option.to_ascii_lowercase().as_slice(), rest) {
            (b"auth", [_, user, password, ..]) => {
                authenticate(ctx, s, user, password)?;
                rest = &rest[3..];
            }
            (b"setname", [_, client, ..]) => {
                s.name = Some(client.clone());
                rest = &rest[2..];
            }
            _ => return Err(Frame::err("syntax error in HELLO option")),
        }
    }
    if !s.authenticated() {
        return Err(Frame::Error(
            "NOAUTH HELLO must be called with the client's credentials (AUTH) on this node".into(),
        ));
    }
    Ok(greeting(s, proto))
}

/// HELLO's protocol version: 2 or 3.
fn protocol_version(raw: &[u8]) -> Result<i64, Frame> {
    match std::str::from_utf8(raw)
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        Some(v @ (2 | 3)) => Ok(v),
        Some(_) => Err(Frame::Error("NOPROTO unsupported protocol version".into())),
        None => Err(Frame::err(
            "Protocol version is not an integer or out of range",
        )),
    }
}

/// HELLO's answer. RESP3 clients get the map they ask for; every other reply of driftkv is
/// RESP2, which RESP3 clients read as well.
fn greeting(s: &Session, proto: i64) -> Frame {
    let fields = vec![
        Frame::bulk("server"),
        Frame::bulk("redis"),
        Frame::bulk("version"),
        Frame::bulk(REDIS_VERSION),
        Frame::bulk("proto"),
        Frame::Int(proto),
        Frame::bulk("id"),
        Frame::Int(s.id as i64),
        Frame::bulk("mode"),
        Frame::bulk("standalone"),
        Frame::bulk("role"),
        Frame::bulk("master"),
        Frame::bulk("modules"),
        Frame::Array(Vec::new()),
    ];
    if proto == 3 {
        Frame::Map(fields)
    } else {
        Frame::Array(fields)
    }
}

/// `INFO`: the sections clients and tools read, this front-end's counters, and the node's
/// own counters (the core's one registry, as `/metrics` shows them).
pub async fn info(ctx: &Context) -> Result<Frame, Frame> {
    let c = ctx.node.config();
    let stats = &ctx.stats;
    let mut text = format!(
        "# Server\r\nredis_version:{REDIS_VERSION}\r\ndriftkv_version:{}\r\nnode:{}\r\nredis_mode:standalone\r\n\
         \r\n# Clients\r\nconnected_clients:{}\r\n\
         \r\n# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nerror_replies:{}\r\n\
         sibling_reads_resolved:{}\r\n\
         \r\n# Replication\r\nrole:master\r\ndriftkv_n:{}\r\ndriftkv_r:{}\r\ndriftkv_w:{}\r\n\
         \r\n# Keyspace\r\n",
        env!("CARGO_PKG_VERSION"),
        ctx.node.id(),
        stats.connections.load(Ordering::Relaxed),
        stats.connections_total.load(Ordering::Relaxed),
        stats.commands.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
        stats.sibling_reads_resolved.load(Ordering::Relaxed),
        c.ring.n,
        level_name(&c.r),
        level_name(&c.w),
    );
    // A node too busy to answer leaves its section out; the rest is this front-end's own.
    if let Ok(stats) = ctx.node.query(|node, _| node.stats().clone()).await {
        text.push_str("\r\n# Driftkv\r\n");
        for counter in COUNTERS {
            let _ = write!(text, "{}:{}\r\n", counter.name, (counter.get)(&stats));
        }
    }
    Ok(Frame::bulk(text))
}
