//! Expiry of string keys: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL, PERSIST.
//!
//! A key's expiry is part of its value, replicated with it: `EXPIRE` rewrites the value it
//! read (at the connection's R) with the new expiry, under the context it read. So an `EXPIRE`
//! and a `SET` made at once through different nodes are two concurrent writes: both values
//! stay, as siblings, until a write that saw both (a `GET` answers the greatest); a `SET`
//! that saw the `EXPIRE` replaces it and, without `KEEPTTL`, drops the expiry, as in Redis.
//! Only string keys expire here: counters, sets and hashes answer an error.

use bytes::Bytes;

use crate::resp::cmd::args::{expect, integer};
use crate::resp::cmd::strings::{current, replace};
use crate::resp::context::Context;
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// `EXPIRE key seconds [NX|XX|GT|LT]`, `PEXPIRE` (milliseconds), `EXPIREAT` (a Unix time in
/// seconds), `PEXPIREAT` (in milliseconds): 1 if the expiry was set, 0 if the key is missing
/// or the condition does not hold. An expiry in the past deletes the key.
pub async fn expire(
    ctx: &Context,
    s: &mut Session,
    name: &str,
    a: &[Bytes],
) -> Result<Frame, Frame> {
    expect(a.len() == 2 || a.len() == 3, name)?;
    let amount = integer(&a[1])?;
    let now_ms = crate::wall_ms();
    let at = match name {
        "expire" | "pexpire" => {
            let unit: i128 = if name == "expire" { 1000 } else { 1 };
            i128::from(now_ms) + i128::from(amount) * unit
        }
        "expireat" => i128::from(amount) * 1000,
        _ => i128::from(amount),
    };
    // In the past (or at 0) deletes; further than the longest time to live is refused.
    let at = u64::try_from(at.max(0)).ok();
    let at = crate::resp::cmd::strings::within_ttl_max(now_ms, at, name)?;
    let condition = match a.get(2).map(|c| c.to_ascii_lowercase()) {
        None => None,
        Some(c) if [&b"nx"[..], b"xx", b"gt", b"lt"].contains(&c.as_slice()) => Some(c),
        Some(_) => return Err(Frame::err("Unsupported option")),
    };
    let now = current(ctx, s, &a[0]).await?;
    let Some(value) = now.value.clone() else {
        return Ok(Frame::Int(0));
    };
    let holds = match condition.as_deref() {
        None => true,
        Some(b"nx") => now.expires_ms.is_none(),
        Some(b"xx") => now.expires_ms.is_some(),
        // No expiry is forever: greater than any, less than none.
        Some(b"gt") => now.expires_ms.is_some_and(|e| at > e),
        _ => now.expires_ms.is_none_or(|e| at < e),
    };
    if !holds {
        return Ok(Frame::Int(0));
    }
    if at <= now_ms {
        replace(ctx, s, &a[0], &now, None, None).await?;
    } else {
        replace(ctx, s, &a[0], &now, Some(value), Some(at)).await?;
    }
    Ok(Frame::Int(1))
}

/// `TTL key` (seconds, rounded) / `PTTL key` (milliseconds): -2 when the key is missing, -1
/// when it does not expire.
pub async fn ttl(ctx: &Context, s: &mut Session, name: &str, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, name)?;
    let now = current(ctx, s, &a[0]).await?;
    let now_ms = now.now_ms;
    Ok(Frame::Int(match (&now.value, now.expires_ms) {
        (None, _) => -2,
        (Some(_), None) => -1,
        (Some(_), Some(at)) => {
            let left = at.saturating_sub(now_ms);
            let left = if name == "ttl" {
                (left + 500) / 1000
            } else {
                left
            };
            i64::try_from(left).unwrap_or(i64::MAX)
        }
    }))
}

/// `PERSIST key`: 1 if it removed an expiry, else 0.
pub async fn persist(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "persist")?;
    let now = current(ctx, s, &a[0]).await?;
    match (&now.value, now.expires_ms) {
        (Some(value), Some(_)) => {
            replace(ctx, s, &a[0], &now, Some(value.clone()), None).await?;
            Ok(Frame::Int(1))
        }
        _ => Ok(Frame::Int(0)),
    }
}
