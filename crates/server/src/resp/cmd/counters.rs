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
        Reply::Counter { value } => i64::try_from(value)
            .map(Frame::Int)
            .map_err(|_| Frame::err("increment or decrement would overflow")),
        other => Err(failure(other)),
    }
}
