//! Set keys (add-wins sets): SADD, SREM, SMEMBERS, SISMEMBER, SCARD.

use bytes::Bytes;
use driftkv_wire::{Reply, Request};

use crate::resp::cmd::args::expect;
use crate::resp::context::{Context, failure, key};
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// `SADD key member [member ...]` / `SREM ...`: how many members it changed.
pub async fn update(ctx: &Context, s: &Session, name: &str, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() >= 2, name)?;
    let removing = name == "srem";
    let before = members(ctx, s, &a[0]).await?;
    let mut named: Vec<Bytes> = a[1..].to_vec();
    named.sort();
    named.dedup();
    let changed = named
        .iter()
        .filter(|m| before.contains(m) == removing)
        .count();
    let (add, remove) = if removing {
        (Vec::new(), named)
    } else {
        (named, Vec::new())
    };
    let request = Request::SetUpdate {
        key: key(&a[0]),
        add,
        remove,
        w: s.w,
    };
    match ctx.call(request).await? {
        Reply::Written { .. } => Ok(Frame::Int(changed as i64)),
        other => Err(failure(other)),
    }
}

/// `SMEMBERS key`.
pub async fn smembers(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "smembers")?;
    let members = members(ctx, s, &a[0]).await?;
    Ok(Frame::Array(members.into_iter().map(Frame::Bulk).collect()))
}

/// `SISMEMBER key member`.
pub async fn sismember(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 2, "sismember")?;
    Ok(Frame::Int(
        members(ctx, s, &a[0]).await?.contains(&a[1]) as i64
    ))
}

/// `SCARD key`.
pub async fn scard(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "scard")?;
    Ok(Frame::Int(members(ctx, s, &a[0]).await?.len() as i64))
}

/// The members of set `k`, read at the connection's read level.
async fn members(ctx: &Context, s: &Session, k: &Bytes) -> Result<Vec<Bytes>, Frame> {
    let request = Request::SetGet {
        key: key(k),
        r: s.r,
    };
    match ctx.call(request).await? {
        Reply::Set { members } => Ok(members),
        other => Err(failure(other)),
    }
}
