//! Hash keys (observed-remove maps of fields): HSET, HMSET, HGET, HMGET, HGETALL, HDEL,
//! HINCRBY, HEXISTS, HLEN, HKEYS, HVALS.
//!
//! Fields written through different nodes at once both stay; the same field written twice at
//! once reads as the write with the later hybrid-clock time; `HINCRBY`s through different
//! nodes all count; a field removed (`HDEL`) while another node writes it stays with that
//! write (add wins). Answers that count changes (`HSET`'s new fields, `HDEL`'s removed ones)
//! count them as the coordinator saw the hash.

use bytes::Bytes;
use driftkv_wire::{FieldValue, Reply, Request};

use crate::resp::cmd::args::{expect, integer};
use crate::resp::context::{Context, failure, key};
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// A hash's fields, as the node answered them.
type Fields = Vec<(Bytes, FieldValue)>;

/// `HSET key field value [field value ...]`: how many fields were new. `HMSET`: `+OK`.
pub async fn hset(ctx: &Context, s: &Session, name: &str, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() >= 3 && a.len() % 2 == 1, name)?;
    let set: Vec<(Bytes, Bytes)> = a[1..]
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    let (_, added, _) = update(ctx, s, &a[0], set, Vec::new(), Vec::new()).await?;
    Ok(if name == "hmset" {
        Frame::ok()
    } else {
        Frame::Int(i64::from(added))
    })
}

/// `HDEL key field [field ...]`: how many of the fields were there.
pub async fn hdel(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() >= 2, "hdel")?;
    let mut remove = a[1..].to_vec();
    remove.sort();
    remove.dedup();
    let (_, _, removed) = update(ctx, s, &a[0], Vec::new(), Vec::new(), remove).await?;
    Ok(Frame::Int(i64::from(removed)))
}

/// `HINCRBY key field n`: the field's new value.
pub async fn hincrby(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 3, "hincrby")?;
    let by = integer(&a[2])?;
    let field = a[1].clone();
    let (fields, _, _) = update(ctx, s, &a[0], Vec::new(), vec![(field, by)], Vec::new()).await?;
    match fields.into_iter().find(|(n, _)| *n == a[1]) {
        Some((_, FieldValue::Int(n))) => Ok(super::counters::integer_reply(n)),
        Some((_, FieldValue::Bytes(b))) => crate::resp::parse::number(&b)
            .map(Frame::Int)
            .ok_or_else(|| Frame::err("hash value is not an integer")),
        None => Err(Frame::err("the field was not found after its increment")),
    }
}

/// `HGET key field`.
pub async fn hget(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 2, "hget")?;
    let fields = read(ctx, s, &a[0]).await?;
    Ok(field(&fields, &a[1]))
}

/// `HMGET key field [field ...]`.
pub async fn hmget(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() >= 2, "hmget")?;
    let fields = read(ctx, s, &a[0]).await?;
    Ok(Frame::Array(
        a[1..].iter().map(|f| field(&fields, f)).collect(),
    ))
}

/// `HGETALL key`: fields and values, alternating.
pub async fn hgetall(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "hgetall")?;
    let fields = read(ctx, s, &a[0]).await?;
    Ok(Frame::Array(
        fields
            .into_iter()
            .flat_map(|(n, v)| [Frame::Bulk(n), Frame::Bulk(v.to_bytes())])
            .collect(),
    ))
}

/// `HEXISTS key field`.
pub async fn hexists(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 2, "hexists")?;
    let fields = read(ctx, s, &a[0]).await?;
    Ok(Frame::Int(i64::from(
        fields.iter().any(|(n, _)| *n == a[1]),
    )))
}

/// `HLEN key`.
pub async fn hlen(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "hlen")?;
    Ok(Frame::Int(read(ctx, s, &a[0]).await?.len() as i64))
}

/// `HKEYS key` / `HVALS key`.
pub async fn hkeys(ctx: &Context, s: &Session, name: &str, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, name)?;
    let fields = read(ctx, s, &a[0]).await?;
    Ok(Frame::Array(
        fields
            .into_iter()
            .map(|(n, v)| Frame::Bulk(if name == "hkeys" { n } else { v.to_bytes() }))
            .collect(),
    ))
}

fn field(fields: &Fields, name: &Bytes) -> Frame {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map_or(Frame::Null, |(_, v)| Frame::Bulk(v.to_bytes()))
}

/// Hash `k`'s fields at the connection's R.
async fn read(ctx: &Context, s: &Session, k: &Bytes) -> Result<Fields, Frame> {
    let request = Request::MapGet {
        key: key(k),
        r: s.r,
    };
    match ctx.call(request).await? {
        Reply::Map { fields, .. } => Ok(fields),
        other => Err(failure(other)),
    }
}

/// Updates hash `k`: its fields after, and how many fields it added and removed.
async fn update(
    ctx: &Context,
    s: &Session,
    k: &Bytes,
    set: Vec<(Bytes, Bytes)>,
    increment: Vec<(Bytes, i64)>,
    remove: Vec<Bytes>,
) -> Result<(Fields, u32, u32), Frame> {
    let request = Request::MapUpdate {
        key: key(k),
        set,
        increment,
        remove,
        w: s.w,
    };
    match ctx.call(request).await? {
        Reply::Map {
            fields,
            added,
            removed,
        } => Ok((fields, added, removed)),
        other => Err(failure(other)),
    }
}
