//! driftkv's own commands: `DRIFTKV CONSISTENCY [R W]` (the connection's read and write
//! levels) and `DRIFTKV SESSION [ON|OFF]` (reads that never go back on what this connection
//! saw).

use bytes::Bytes;
use driftkv_wire::Quorum;

use crate::metrics::level_name;
use crate::resp::cmd::args::subcommand;
use crate::resp::context::Context;
use crate::resp::frame::Frame;
use crate::resp::session::{Seen, Session};

/// `DRIFTKV CONSISTENCY ...` or `DRIFTKV SESSION ...`.
pub fn driftkv(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    match subcommand(a).as_deref() {
        Some(b"consistency") => consistency(ctx, s, &a[1..]),
        Some(b"session") => session(s, &a[1..]),
        _ => Err(Frame::err(
            "usage: DRIFTKV CONSISTENCY [R W] | DRIFTKV SESSION [ON|OFF]",
        )),
    }
}

/// Shows the connection's levels, or sets both (each checked against the cluster's N).
fn consistency(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    match a {
        [] => Ok(Frame::Array(vec![
            Frame::bulk(level_name(&s.r)),
            Frame::bulk(level_name(&s.w)),
        ])),
        [r, w] => {
            let (r, w) = (level(r, "r")?, level(w, "w")?);
            for q in [r, w] {
                q.resolve(ctx.node.config().ring.n, Quorum::Quorum)
                    .map_err(Frame::err)?;
            }
            s.r = r;
            s.w = w;
            Ok(Frame::ok())
        }
        _ => Err(Frame::err(
            "usage: DRIFTKV CONSISTENCY [R W], each one, quorum, all, default or a number",
        )),
    }
}

/// A level argument; `what` names it in the error.
fn level(raw: &Bytes, what: &str) -> Result<Quorum, Frame> {
    Quorum::parse(&String::from_utf8_lossy(raw)).map_err(|e| Frame::err(format!("{what}: {e}")))
}

/// Shows whether session reads are on, or turns them on (keeping what was seen) or off.
fn session(s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    match a {
        [] => Ok(Frame::bulk(if s.seen.is_some() { "on" } else { "off" })),
        [on] if on.eq_ignore_ascii_case(b"on") => {
            s.seen.get_or_insert_with(Seen::default);
            Ok(Frame::ok())
        }
        [off] if off.eq_ignore_ascii_case(b"off") => {
            s.seen = None;
            Ok(Frame::ok())
        }
        _ => Err(Frame::err("usage: DRIFTKV SESSION [ON|OFF]")),
    }
}
