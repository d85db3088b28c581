//! String keys (registers): GET, SET (with its options), SETEX, PSETEX, SETNX, MSET, MGET,
//! GETSET, GETDEL, APPEND, STRLEN.
//!
//! `SET` overwrites what its coordinator has seen, like Redis; writes through other nodes at
//! the same time become siblings. A `GET` on a key with siblings answers the greatest sibling
//! in byte order (the same choice on every node) and counts it in `INFO`
//! (`sibling_reads_resolved`).
//!
//! Commands that decide on the key's current value (`SET` with `NX`, `XX`, `GET` or
//! `KEEPTTL`, `SETNX`, `GETSET`, `GETDEL`, `APPEND`) read it at the connection's R, then write
//! with the context they read: there is no lock. Two `SET NX` through different nodes at once
//! can both answer OK, and their values become siblings; a write the read did not see stays
//! beside the new value as a sibling instead of being lost.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use driftkv_causal::VersionVector;
use driftkv_wire::{Object, Reply, Request};

use crate::resp::cmd::args::{expect, integer};
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

/// When a written value expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Never (`SET` without options drops any expiry, as in Redis).
    Never,
    /// At this wall-clock millisecond.
    At(u64),
    /// Whatever the value it replaces had (`KEEPTTL`).
    Keep,
}

/// `SET`'s options.
#[derive(Debug, PartialEq, Eq)]
pub struct SetOptions {
    pub expiry: Expiry,
    /// `Some(true)`: only if the key exists (`XX`); `Some(false)`: only if not (`NX`).
    pub exists: Option<bool>,
    /// Answer the value replaced (`GET`).
    pub get: bool,
}

impl SetOptions {
    /// Whether the write needs the key's current value first.
    pub fn reads_first(&self) -> bool {
        self.exists.is_some() || self.get || self.expiry == Expiry::Keep
    }
}

/// Milliseconds from `now_ms` after `amount` units of `unit_ms`, as an expiry; refused when
/// not positive or further than [`crate::TTL_MS_MAX`] away (Redis's error).
pub fn expiry_after(now_ms: u64, amount: i64, unit_ms: u64, name: &str) -> Result<u64, Frame> {
    let ms = u64::try_from(amount)
        .ok()
        .filter(|a| *a > 0)
        .and_then(|a| a.checked_mul(unit_ms));
    within_ttl_max(now_ms, ms.and_then(|ms| now_ms.checked_add(ms)), name)
}

/// An absolute expiry (`EXAT` seconds, `PXAT` milliseconds), refused when not positive or
/// further than [`crate::TTL_MS_MAX`] from `now_ms`.
fn expiry_at(now_ms: u64, amount: i64, unit_ms: u64, name: &str) -> Result<u64, Frame> {
    let at = u64::try_from(amount)
        .ok()
        .filter(|a| *a > 0)
        .and_then(|a| a.checked_mul(unit_ms));
    within_ttl_max(now_ms, at, name)
}

/// `at`, if it is no further than [`crate::TTL_MS_MAX`] from `now_ms`; else Redis's error.
pub fn within_ttl_max(now_ms: u64, at: Option<u64>, name: &str) -> Result<u64, Frame> {
    at.filter(|at| at.saturating_sub(now_ms) <= crate::TTL_MS_MAX)
        .ok_or_else(|| Frame::err(format!("invalid expire time in '{name}' command")))
}

/// Parses `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]` (`opts`: what
/// follows the value), against the clock reading `now_ms`.
pub fn set_options(opts: &[Bytes], now_ms: u64) -> Result<SetOptions, Frame> {
    let syntax = || Frame::err("syntax error");
    let mut o = SetOptions {
        expiry: Expiry::Never,
        exists: None,
        get: false,
    };
    let mut expiry_given = false;
    let mut i = 0;
    while i < opts.len() {
        let word = opts[i].to_ascii_lowercase();
        match word.as_slice() {
            b"nx" | b"xx" if o.exists.is_none_or(|xx| xx == (word == b"xx")) => {
                o.exists = Some(word == b"xx")
            }
            b"get" => o.get = true,
            b"keepttl" if !expiry_given => {
                expiry_given = true;
                o.expiry = Expiry::Keep;
            }
            b"ex" | b"px" | b"exat" | b"pxat" if !expiry_given => {
                expiry_given = true;
                i += 1;
                let amount = integer(opts.get(i).ok_or_else(syntax)?)?;
                o.expiry = Expiry::At(match word.as_slice() {
                    b"ex" => expiry_after(now_ms, amount, 1000, "set")?,
                    b"px" => expiry_after(now_ms, amount, 1, "set")?,
                    b"exat" => expiry_at(now_ms, amount, 1000, "set")?,
                    _ => expiry_at(now_ms, amount, 1, "set")?,
                });
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    Ok(o)
}

/// `SET key value [options]`.
pub async fn set(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() >= 2, "set")?;
    let o = set_options(&a[2..], crate::wall_ms())?;
    if !o.reads_first() {
        let expires_ms = match o.expiry {
            Expiry::At(ms) => Some(ms),
            _ => None,
        };
        write_expiring(ctx, s, &a[0], &a[1], expires_ms).await?;
        return Ok(Frame::ok());
    }
    let now = current(ctx, s, &a[0]).await?;
    let old = now.value.clone();
    if o.exists.is_some_and(|want| want != old.is_some()) {
        return Ok(if o.get {
            old.map_or(Frame::Null, Frame::Bulk)
        } else {
            Frame::Null
        });
    }
    let expires_ms = match o.expiry {
        Expiry::Never => None,
        Expiry::At(ms) => Some(ms),
        Expiry::Keep => now.expires_ms,
    };
    replace(ctx, s, &a[0], &now, Some(a[1].clone()), expires_ms).await?;
    Ok(if o.get {
        old.map_or(Frame::Null, Frame::Bulk)
    } else {
        Frame::ok()
    })
}

/// `SETEX key seconds value` / `PSETEX key milliseconds value`.
pub async fn setex(
    ctx: &Context,
    s: &mut Session,
    name: &str,
    a: &[Bytes],
) -> Result<Frame, Frame> {
    expect(a.len() == 3, name)?;
    let unit = if name == "psetex" { 1 } else { 1000 };
    let expires_ms = expiry_after(crate::wall_ms(), integer(&a[1])?, unit, name)?;
    write_expiring(ctx, s, &a[0], &a[2], Some(expires_ms)).await?;
    Ok(Frame::ok())
}

/// `SETNX key value`: 1 if it wrote (the key read as missing at R), else 0.
pub async fn setnx(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 2, "setnx")?;
    let now = current(ctx, s, &a[0]).await?;
    if now.value.is_some() {
        return Ok(Frame::Int(0));
    }
    replace(ctx, s, &a[0], &now, Some(a[1].clone()), None).await?;
    Ok(Frame::Int(1))
}

/// `GETSET key value`: the value replaced (the new one has no expiry).
pub async fn getset(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 2, "getset")?;
    let now = current(ctx, s, &a[0]).await?;
    replace(ctx, s, &a[0], &now, Some(a[1].clone()), None).await?;
    Ok(now.value.map_or(Frame::Null, Frame::Bulk))
}

/// `GETDEL key`: the value, deleted.
pub async fn getdel(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "getdel")?;
    let now = current(ctx, s, &a[0]).await?;
    if now.value.is_some() {
        replace(ctx, s, &a[0], &now, None, None).await?;
    }
    Ok(now.value.map_or(Frame::Null, Frame::Bulk))
}

/// `APPEND key value`: the new length (the expiry is kept).
pub async fn append(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 2, "append")?;
    let now = current(ctx, s, &a[0]).await?;
    let mut joined = now.value.clone().map(Vec::from).unwrap_or_default();
    joined.extend_from_slice(&a[1]);
    let len = joined.len() as i64;
    replace(
        ctx,
        s,
        &a[0],
        &now,
        Some(Bytes::from(joined)),
        now.expires_ms,
    )
    .await?;
    Ok(Frame::Int(len))
}

/// `STRLEN key`: the value's length, 0 when missing.
pub async fn strlen(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "strlen")?;
    let now = current(ctx, s, &a[0]).await?;
    Ok(Frame::Int(now.value.map_or(0, |v| v.len() as i64)))
}

/// What a command that decides on a string key's value sees of it.
#[derive(Default)]
pub struct Current {
    /// The newest live value (highest hybrid-clock time), if any.
    pub value: Option<Bytes>,
    /// That value's expiry.
    pub expires_ms: Option<u64>,
    /// Everything the read saw: a write with it replaces every value read.
    pub context: VersionVector,
    /// The time the node judged expiry by (0 when nothing was there).
    pub now_ms: u64,
}

/// String key `k` as it reads at the connection's R (a key of another kind live is the
/// wrong type; a deleted counter, set or map reads as missing).
pub async fn current(ctx: &Context, s: &mut Session, k: &Bytes) -> Result<Current, Frame> {
    let request = Request::Read {
        key: key(k),
        r: s.r,
    };
    match ctx.call(request).await? {
        Reply::Object { object: None, .. } => Ok(Current::default()),
        Reply::Object {
            object: Some(Object::Register(reg)),
            now_ms,
        } => {
            s.remember(k, reg.context());
            let newest = reg.newest_live(now_ms);
            Ok(Current {
                value: newest.and_then(|n| n.value.clone()),
                expires_ms: newest.and_then(|n| n.expires_ms),
                context: reg.context().clone(),
                now_ms,
            })
        }
        Reply::Object {
            object: Some(other),
            now_ms,
        } if !other.is_live_at(now_ms) => Ok(Current::default()),
        Reply::Object { .. } => Err(wrong_type()),
        other => Err(failure(other)),
    }
}

/// Writes `value` (`None`: deletes) over string key `k` as `now` read it, expiring at
/// `expires_ms`.
pub async fn replace(
    ctx: &Context,
    s: &mut Session,
    k: &Bytes,
    now: &Current,
    value: Option<Bytes>,
    expires_ms: Option<u64>,
) -> Result<(), Frame> {
    let request = Request::Put {
        key: key(k),
        value,
        context: now.context.clone(),
        expires_ms,
        w: s.w,
    };
    let reply = ctx.call(request).await?;
    write_reply(s, k, reply)
}

/// The WRONGTYPE error line.
pub fn wrong_type() -> Frame {
    Frame::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
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
    write_expiring(ctx, s, k, value, None).await
}

/// Overwrites register `k` with `value`, expiring at `expires_ms`.
async fn write_expiring(
    ctx: &Context,
    s: &mut Session,
    k: &Bytes,
    value: &Bytes,
    expires_ms: Option<u64>,
) -> Result<(), Frame> {
    let reply = ctx.call(write_request(s, k, value, expires_ms)).await?;
    write_reply(s, k, reply)
}

/// The request an overwrite of register `k` with `value` makes.
pub fn write_request(s: &Session, k: &Bytes, value: &Bytes, expires_ms: Option<u64>) -> Request {
    Request::Overwrite {
        key: key(k),
        value: Some(value.clone()),
        expires_ms,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(words: &[&str]) -> Result<SetOptions, Frame> {
        let words: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
        set_options(&words, 1_000_000)
    }

    #[test]
    fn set_options_parse_as_redis_reads_them_and_refuse_what_it_refuses() {
        let o = opts(&["px", "1500", "NX", "get"]).unwrap();
        assert_eq!(o.expiry, Expiry::At(1_001_500));
        assert_eq!((o.exists, o.get), (Some(false), true));
        assert!(o.reads_first());
        assert_eq!(opts(&["EX", "2"]).unwrap().expiry, Expiry::At(1_002_000));
        assert_eq!(
            opts(&["PXAT", "1000500"]).unwrap().expiry,
            Expiry::At(1_000_500)
        );
        assert_eq!(opts(&["KEEPTTL", "XX"]).unwrap().expiry, Expiry::Keep);
        assert!(!opts(&[]).unwrap().reads_first());
        assert_eq!(
            opts(&["NX", "NX", "GET", "GET"]).unwrap().exists,
            Some(false)
        );
        for bad in [
            &["NX", "XX"][..],
            &["EX"],
            &["EX", "0"],
            &["PX", "-1"],
            &["EX", "ten"],
            &["EX", "1", "PX", "1"],
            &["EX", "1", "KEEPTTL"],
            &["LATER"],
            // Past the longest time to live, or past 64 bits: refused, not saturated.
            &["PX", "9223372036854775807"],
            &["EX", "9223372036854775807"],
            &["EXAT", "18000000000000000"],
            &["PXAT", "9223372036854775807"],
        ] {
            assert!(opts(bad).is_err(), "{bad:?}");
        }
    }
}
