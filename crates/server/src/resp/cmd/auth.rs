//! AUTH, and the check of a user and password that AUTH and `HELLO ... AUTH` share.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::resp::cmd::args::arity;
use crate::resp::context::Context;
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// Failed AUTH attempts after which the connection is closed: guessing costs a connection
/// (and a TLS handshake) every few tries.
pub const AUTH_FAILURES_MAX: u32 = 3;

/// `AUTH [user] password`. Redis's one-argument form authenticates the user named "default".
pub fn auth(ctx: &Context, s: &mut Session, a: &[Bytes]) -> Result<Frame, Frame> {
    match a {
        [password] => authenticate(ctx, s, b"default", password)?,
        [user, password] => authenticate(ctx, s, user, password)?,
        _ => return Err(arity("auth")),
    }
    Ok(Frame::ok())
}

/// Sets the connection's role from `user` and `password`, or counts a failure.
pub fn authenticate(
    ctx: &Context,
    s: &mut Session,
    user: &[u8],
    password: &[u8],
) -> Result<(), Frame> {
    let Some(users) = &ctx.users else {
        return Err(Frame::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    };
    if let Some(role) = users.check(user, password) {
        s.auth.role = Some(role);
        return Ok(());
    }
    ctx.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
    s.auth.failures += 1;
    if s.auth.failures >= AUTH_FAILURES_MAX {
        s.quit = true;
    }
    Err(Frame::Error(
        "WRONGPASS invalid username-password pair or user is disabled.".into(),
    ))
}
