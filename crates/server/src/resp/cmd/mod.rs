//! The commands: who may run which ([`execute`]), and which function runs each, one module
//! per family. Every command answers one frame; an error frame leaves the connection open.

mod args;
mod auth;
mod counters;
mod driftkv;
mod expiry;
mod hashes;
mod keyspace;
mod server;
mod sets;
mod strings;

use bytes::Bytes;
use driftkv_wire::{Reply, Request};

use crate::auth::Role;
use crate::handle::HandleError;
use crate::resp::context::{Context, unavailable};
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// The commands this front-end knows.
pub const COMMANDS: &[&str] = &[
    "ping",
    "echo",
    "quit",
    "select",
    "get",
    "set",
    "setex",
    "psetex",
    "setnx",
    "getset",
    "getdel",
    "append",
    "strlen",
    "mset",
    "mget",
    "del",
    "unlink",
    "exists",
    "type",
    "scan",
    "keys",
    "dbsize",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "ttl",
    "pttl",
    "persist",
    "hset",
    "hmset",
    "hget",
    "hmget",
    "hgetall",
    "hdel",
    "hincrby",
    "hexists",
    "hlen",
    "hkeys",
    "hvals",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "sadd",
    "srem",
    "smembers",
    "sismember",
    "scard",
    "info",
    "command",
    "config",
    "client",
    "hello",
    "auth",
    "driftkv",
];

/// Commands that change data (need the `write` role).
const WRITE_COMMANDS: &[&str] = &[
    "set",
    "setex",
    "psetex",
    "setnx",
    "getset",
    "getdel",
    "append",
    "mset",
    "del",
    "unlink",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "hset",
    "hmset",
    "hdel",
    "hincrby",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "sadd",
    "srem",
];
/// Commands a connection may send before it authenticates.
const BEFORE_AUTH: &[&str] = &["auth", "hello", "ping", "quit"];
/// Arguments of an unknown command quoted in its error, as Redis quotes them.
const UNKNOWN_ARGS_SHOWN: usize = 3;

/// Runs one command (`args[0]` its name) for a connection, if its role allows.
pub async fn execute(ctx: &Context, s: &mut Session, args: Vec<Bytes>) -> Frame {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if let Err(refused) = allowed(s, &name) {
        return refused;
    }
    match run(ctx, s, &name, &args[1..]).await {
        Ok(reply) | Err(reply) => reply,
    }
}

/// A command as a pipelining connection runs it.
pub enum Prepared {
    /// Answered without the node (a refusal).
    Answered(Frame),
    /// A command on one key that makes one request: once the same key's earlier commands
    /// have answered, [`request`] makes its request (from the session as it is then) and
    /// [`complete`] turns the reply into the command's answer.
    Submit(Then),
    /// Any other command: run by [`execute`] once every earlier command has answered.
    Alone(Vec<Bytes>),
}

/// A submitted command: what it asks, and what it does with the reply.
pub enum Then {
    /// `GET key`: the value.
    Get(Bytes),
    /// `SET key value` (with an expiry: `SET ... EX|PX|EXAT|PXAT`, `SETEX`, `PSETEX`): `+OK`.
    Set(Bytes, Bytes, Option<u64>),
}

impl Then {
    /// The key the command is on.
    pub fn key(&self) -> &Bytes {
        match self {
            Then::Get(k) | Then::Set(k, _, _) => k,
        }
    }
}

/// How command `args` runs on a pipelining connection: `GET` and plain `SET` (with an expiry
/// or not), the commands clients pipeline by the thousand, go to the node without waiting for
/// the commands before them; every other command runs alone (a `SET` that reads first, or
/// whose options are wrong, included: it answers in turn).
pub fn prepare(s: &Session, mut args: Vec<Bytes>) -> Prepared {
    let name = &args[0];
    let (name, then) = if args.len() == 2 && name.eq_ignore_ascii_case(b"get") {
        ("get", Then::Get(args.swap_remove(1)))
    } else if args.len() >= 3 && name.eq_ignore_ascii_case(b"set") {
        match strings::set_options(&args[3..], crate::wall_ms()) {
            Ok(o) if !o.reads_first() => {
                let expires_ms = match o.expiry {
                    strings::Expiry::At(ms) => Some(ms),
                    _ => None,
                };
                args.truncate(3);
                let value = args.swap_remove(2);
                ("set", Then::Set(args.swap_remove(1), value, expires_ms))
            }
            _ => return Prepared::Alone(args),
        }
    } else {
        return Prepared::Alone(args);
    };
    if let Err(refused) = allowed(s, name) {
        return Prepared::Answered(refused);
    }
    Prepared::Submit(then)
}

/// The request of a submitted command, made from the session as it is when the command goes
/// to the node (a session read carries what the connection saw of the key by then).
pub fn request(s: &Session, then: &Then) -> Request {
    match then {
        Then::Get(k) => strings::read_request(s, k),
        Then::Set(k, value, expires_ms) => strings::write_request(s, k, value, *expires_ms),
    }
}

/// The answer of a submitted command whose request the node answered with `reply`.
pub fn complete(
    ctx: &Context,
    s: &mut Session,
    then: Then,
    reply: Result<Reply, HandleError>,
) -> Frame {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => return unavailable(e),
    };
    let answer = match then {
        Then::Get(k) => {
            strings::read_reply(ctx, s, &k, reply).map(|v| v.map_or(Frame::Null, Frame::Bulk))
        }
        Then::Set(k, _, _) => strings::write_reply(s, &k, reply).map(|()| Frame::ok()),
    };
    match answer {
        Ok(frame) | Err(frame) => frame,
    }
}

/// Whether the connection may run command `name`: `-NOAUTH` before it authenticates (but for
/// the few commands that get it there), `-NOPERM` for a change by a reader.
fn allowed(s: &Session, name: &str) -> Result<(), Frame> {
    if BEFORE_AUTH.contains(&name) {
        return Ok(());
    }
    match s.auth.role {
        None => Err(Frame::Error("NOAUTH Authentication required.".into())),
        Some(role) if role < Role::Write && WRITE_COMMANDS.contains(&name) => {
            Err(Frame::Error(format!(
                "NOPERM this user has the {} role and cannot run the '{name}' command",
                role.name()
            )))
        }
        Some(_) => Ok(()),
    }
}

/// The function that runs command `name` with arguments `a`.
async fn run(ctx: &Context, s: &mut Session, name: &str, a: &[Bytes]) -> Result<Frame, Frame> {
    match name {
        "ping" => server::ping(a),
        "echo" => server::echo(a),
        "quit" => server::quit(s),
        "auth" => auth::auth(ctx, s, a),
        "select" => server::select(a),
        "get" => strings::get(ctx, s, a).await,
        "set" => strings::set(ctx, s, a).await,
        "setex" | "psetex" => strings::setex(ctx, s, name, a).await,
        "setnx" => strings::setnx(ctx, s, a).await,
        "getset" => strings::getset(ctx, s, a).await,
        "getdel" => strings::getdel(ctx, s, a).await,
        "append" => strings::append(ctx, s, a).await,
        "strlen" => strings::strlen(ctx, s, a).await,
        "mset" => strings::mset(ctx, s, a).await,
        "mget" => strings::mget(ctx, s, a).await,
        "del" | "unlink" => keyspace::del(ctx, s, name, a).await,
        "exists" => keyspace::exists(ctx, s, a).await,
        "type" => keyspace::type_(ctx, s, a).await,
        "scan" => keyspace::scan(ctx, a).await,
        "keys" => keyspace::keys(ctx, a).await,
        "dbsize" => keyspace::dbsize(ctx, a).await,
        "expire" | "pexpire" | "expireat" | "pexpireat" => expiry::expire(ctx, s, name, a).await,
        "ttl" | "pttl" => expiry::ttl(ctx, s, name, a).await,
        "persist" => expiry::persist(ctx, s, a).await,
        "hset" | "hmset" => hashes::hset(ctx, s, name, a).await,
        "hget" => hashes::hget(ctx, s, a).await,
        "hmget" => hashes::hmget(ctx, s, a).await,
        "hgetall" => hashes::hgetall(ctx, s, a).await,
        "hdel" => hashes::hdel(ctx, s, a).await,
        "hincrby" => hashes::hincrby(ctx, s, a).await,
        "hexists" => hashes::hexists(ctx, s, a).await,
        "hlen" => hashes::hlen(ctx, s, a).await,
        "hkeys" | "hvals" => hashes::hkeys(ctx, s, name, a).await,
        "incr" | "decr" => counters::step(ctx, s, name, a).await,
        "incrby" | "decrby" => counters::by(ctx, s, name, a).await,
        "sadd" | "srem" => sets::update(ctx, s, name, a).await,
        "smembers" => sets::smembers(ctx, s, a).await,
        "sismember" => sets::sismember(ctx, s, a).await,
        "scard" => sets::scard(ctx, s, a).await,
        "info" => server::info(ctx).await,
        "command" => command(a),
        "config" => server::config(a),
        "client" => server::client(s, a),
        "hello" => server::hello(ctx, s, a),
        "driftkv" => driftkv::driftkv(ctx, s, a),
        _ => Err(unknown(name, a)),
    }
}

/// `COMMAND COUNT` (how many commands this front-end knows); any other form answers an
/// empty list, which clients take as "no details".
fn command(a: &[Bytes]) -> Result<Frame, Frame> {
    match args::subcommand(a).as_deref() {
        Some(b"count") => Ok(Frame::Int(COMMANDS.len() as i64)),
        _ => Ok(Frame::Array(Vec::new())),
    }
}

/// The error for a command this front-end does not know, naming its first arguments.
fn unknown(name: &str, a: &[Bytes]) -> Frame {
    let start: Vec<String> = a
        .iter()
        .take(UNKNOWN_ARGS_SHOWN)
        .map(|x| format!("'{}'", String::from_utf8_lossy(x)))
        .collect();
    Frame::err(format!(
        "unknown command '{name}', with args beginning with: {}",
        start.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_auth_only_the_way_in_is_open_and_readers_cannot_write() {
        let mut s = Session::new(1, true);
        for name in BEFORE_AUTH {
            assert!(allowed(&s, name).is_ok(), "{name}");
        }
        assert!(allowed(&s, "get").unwrap_err().is_error_code("NOAUTH"));
        s.auth.role = Some(Role::Read);
        assert!(allowed(&s, "get").is_ok());
        for name in WRITE_COMMANDS {
            assert!(
                allowed(&s, name).unwrap_err().is_error_code("NOPERM"),
                "{name}"
            );
        }
        s.auth.role = Some(Role::Write);
        assert!(allowed(&s, "set").is_ok());
    }

    #[test]
    fn every_gated_command_is_a_known_command() {
        for name in WRITE_COMMANDS.iter().chain(BEFORE_AUTH) {
            assert!(COMMANDS.contains(name), "{name}");
        }
    }
}
