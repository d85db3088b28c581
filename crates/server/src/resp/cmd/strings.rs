//! String keys (registers) and commands on keys of any kind: GET, SET, MSET, MGET, DEL,
//! EXISTS.
//!
//! `SET` overwrites what its coordinator has seen, like Redis; writes through other nodes at
//! the same time become siblings. A `GET` on a key with siblings answers the greatest sibling
//! in byte order (the same choice on every node) and counts it in `INFO`
//! (`sibling_reads_resolved`).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use driftkv_wire::{Reply, Request};

use crate::resp::cmd::args::expect;
use crate::resp::context::{Context, failure, key};
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// Values an MGET reply is prepared for up front, whatever it names (the rest as they come).
const MGET_RESERVED_MAX: usize = 1024;

/// `GET key`.
pub async fn get(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "get")?;
    Ok(read(ctx, s, &a[0]).await?.map_or(Frame::Null, Frame::Bulk))
}

/// `SET key value`: no options.
pub async fn set(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() >= 2, "set")?;
    if a.len() > 2 {
        return Err(Frame::err(
            "syntax error (driftkv's SET takes no options: no expiry, NX or XX)",
        ));
    }
    write(ctx, s, &a[0], &a[1]).await?;
    Ok(Frame::ok())
}

/// `MSET key value [key value ...]`: each pair written in turn; the first failure ends it.
pub async fn mset(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(!a.is_empty() && a.len().is_multiple_of(2), "mset")?;
    for pair in a.chunks(2) {
        write(ctx, s, &pair[0], &pair[1]).await?;
    }
    Ok(Frame::ok())
}

/// `MGET key [key ...]`: a key of another type reads as nil, as in Redis.
pub async fn mget(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(!a.is_empty(), "mget")?;
    let mut out = Vec::with_capacity(a.len().min(MGET_RESERVED_MAX));
    let mut bytes = 0usize;
    // One reply holds at most what one value may be, as a GET's does: a client that reads
    // nothing makes the node hold one reply per connection, not many values.
    let reply_max = ctx.node.config().value_bytes_max;
    for k in a {
        out.push(match read(ctx, s, k).await {
            Ok(Some(v)) => {
                bytes = bytes.saturating_add(v.len());
                if bytes > reply_max {
                    return Err(Frame::err(format!(
                        "MGET would answer more than {reply_max} bytes (value_bytes_max): ask for fewer keys"
                    )));
                }
                Frame::Bulk(v)
            }
            Ok(None) => Frame::Null,
            Err(e) if e.is_error_code("WRONGTYPE") => Frame::Null,
            Err(e) => return Err(e),
        });
    }
    Ok(Frame::Array(out))
}

/// `DEL key [key ...]`: how many of the keys were there. Only string keys are deleted.
pub async fn del(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(!a.is_empty(), "del")?;
    let mut count = 0;
    for k in a {
        let present = read(ctx, s, k).await?.is_some();
        if present {
            let request = Request::Overwrite {
                key: key(k),
                value: None,
                expires_ms: None,
                w: s.w,
            };
            if let reply @ Reply::Error { .. } = ctx.call(request).await? {
                return Err(failure(reply));
            }
        }
        count += present as i64;
    }
    Ok(Frame::Int(count))
}

/// `EXISTS key [key ...]`: how many of the keys hold something (of any kind).
pub async fn exists(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(!a.is_empty(), "exists")?;
    let mut count = 0;
    for k in a {
        let present = match read(ctx, s, k).await {
            Ok(v) => v.is_some(),
            Err(e) if e.is_error_code("WRONGTYPE") => true,
            Err(e) => return Err(e),
        };
        count += present as i64;
    }
    Ok(Frame::Int(count))
}

/// A register's value as GET answers it: the greatest sibling when there are several. A
/// session read asks for at least what this connection saw of the key.
async fn read(ctx: &Context, s: &mut Session, k: &Bytes) -> Result<Option<Bytes>, Frame> {
    let reply = ctx.call(read_request(s, k)).await?;
    read_reply(ctx, s, k, reply)
}

/// The request a read of register `k` makes.
pub fn read_request(s: &Session, k: &Bytes) -> Request {
    match &s.seen {
        Some(seen) => Request::SessionGet {
            key: key(k),
            r: s.r,
            seen: seen.context(k),
        },
        None => Request::Get {
            key: key(k),
            r: s.r,
        },
    }
}

/// A read of register `k` answered `reply`: its value, remembered by a session.
pub fn read_reply(
    ctx: &Context,
    s: &mut Session,
    k: &Bytes,
    reply: Reply,
) -> Result<Option<Bytes>, Frame> {
    match reply {
        Reply::Values { values, context } => {
            s.remember(k, &context);
            if values.len() > 1 {
                ctx.stats
                    .sibling_reads_resolved
                    .fetch_add(1, Ordering::Relaxed);
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

/// Overwrites register `k` with `value` at the connection's write level.
async fn write(ctx: &Context, s: &mut Session, k: &Bytes, value: &Bytes) -> Result<(), Frame> {
    let reply = ctx.call(write_request(s, k, value)).await?;
    write_reply(s, k, reply)
}

/// The request an overwrite of register `k` with `value` makes.
pub fn write_request(s: &Session, k: &Bytes, value: &Bytes) -> Request {
    Request::Overwrite {
        key: key(k),
        value: Some(value.clone()),
        expires_ms: None,
        w: s.w,
    }
}

/// An overwrite of register `k` answered `reply`: its context remembered by a session.
pub fn write_reply(s: &mut Session, k: &Bytes, reply: Reply) -> Result<(), Frame> {
    match reply {
        Reply::Written { context } => {
            s.remember(k, &context);
            Ok(())
        }
        other => Err(failure(other)),
    }
}
