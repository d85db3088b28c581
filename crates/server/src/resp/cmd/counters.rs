//! Counter keys (PN-counters): INCR, DECR, INCRBY, DECRBY.

use bytes::Bytes;
use driftkv_wire::{Reply, Request};

use crate::resp::cmd::args::{expect, integer};
use crate::resp::context::{Context, failure, key};
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// `INCR key` / `DECR key`: by one.
pub async fn step(ctx: &Context, s: &Session, name: &str, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, name)?;
    add(ctx, s, name, &a[0], 1).await
}

/// `INCRBY key n` / `DECRBY key n`.
pub async fn by(ctx: &Context, s: &Session, name: &str, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 2, name)?;
    add(ctx, s, name, &a[0], integer(&a[1])?).await
}

/// Adds `by` to counter `k` (subtracts it for the DECR forms); answers the new value.
async fn add(ctx: &Context, s: &Session, name: &str, k: &Bytes, by: i64) -> Result<Frame, Frame> {
    let delta = if name.starts_with("decr") {
        by.checked_neg()
            .ok_or_else(|| Frame::err("decrement would overflow"))?
    } else {
        by
    };
    let request = Request::CounterAdd {
        key: key(k),
        delta,
        w: s.w,
    };
    match ctx.call(request).await? {
        Reply::Counter { value } => Ok(integer_reply(value)),
        other => Err(failure(other)),
    }
}

/// A count as RESP answers it: an integer; past 64 bits (increments through several nodes at
/// once can sum past it, and the change is applied by then), its decimal digits as a bulk
/// string, as `GET` answers it, rather than an error for a change that took place.
pub fn integer_reply(value: i128) -> Frame {
    match i64::try_from(value) {
        Ok(n) => Frame::Int(n),
        Err(_) => Frame::bulk(value.to_string()),
    }
}
