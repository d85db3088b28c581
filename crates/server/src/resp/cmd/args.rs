//! Checks of a command's arguments that every command family shares.

use crate::resp::frame::Frame;
use crate::resp::parse::number;

/// The error for a command given the wrong number of arguments.
pub fn arity(name: &str) -> Frame {
    Frame::err(format!("wrong number of arguments for '{name}' command"))
}

/// `Ok` when the argument count is right (`ok`), else the arity error of command `name`.
pub fn expect(ok: bool, name: &str) -> Result<(), Frame> {
    if ok { Ok(()) } else { Err(arity(name)) }
}

/// An integer argument.
pub fn integer(raw: &[u8]) -> Result<i64, Frame> {
    number(raw).ok_or_else(|| Frame::err("value is not an integer or out of range"))
}

/// The first argument in lower case: the subcommand of CONFIG, CLIENT, DRIFTKV, ...
pub fn subcommand(args: &[bytes::Bytes]) -> Option<Vec<u8>> {
    args.first().map(|a| a.to_ascii_lowercase())
}
