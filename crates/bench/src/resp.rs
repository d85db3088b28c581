//! The bench's Redis-protocol client side, without sockets: commands written as RESP arrays
//! into a reused buffer, and replies recognised incrementally from whatever bytes have arrived
//! (a reply split across reads is simply "not yet").

use crate::workload::{put_decimal, put_key};

/// Bytes of a reply's header line (type, length or simple string) at most.
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// Bytes of one bulk string at most (Redis's own limit).
pub const BULK_BYTES_MAX: usize = 512 * 1024 * 1024;
/// Elements of one array reply at most, and nesting depth: bench replies are flat.
pub const ARRAY_ITEMS_MAX: usize = 1 << 20;
pub const ARRAY_DEPTH_MAX: usize = 8;

/// What kind of reply arrived: all the bench needs to tell success from error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other simple strings.
    Simple,
    /// `-ERR ...`: the server refused the command.
    Error,
    Integer,
    /// A bulk string (a value).
    Bulk,
    /// A null bulk string or array (`$-1`, `*-1`, RESP3 `_`): a key never written.
    Nil,
    Array,
}

/// Bytes that are not a RESP reply: the connection cannot be trusted any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a RESP reply: {0}")]
pub struct RespError(pub String);

/// Appends `*N\r\n` and each argument as a bulk string.
fn put_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    put_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for a in args {
        put_bulk(out, a);
    }
}

fn put_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    put_decimal(out, bytes.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// `SET key:N value`.
pub fn put_set(out: &mut Vec<u8>, key: u64, value: &[u8]) {
    out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$16\r\n");
    put_key(out, key);
    out.extend_from_slice(b"\r\n");
    put_bulk(out, value);
}

/// `GET key:N`.
pub fn put_get(out: &mut Vec<u8>, key: u64) {
    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$16\r\n");
    put_key(out, key);
    out.extend_from_slice(b"\r\n");
}

/// `AUTH [user] password`.
pub fn put_auth(out: &mut Vec<u8>, user: Option<&str>, password: &str) {
    match user {
        Some(u) => put_command(out, &[b"AUTH", u.as_bytes(), password.as_bytes()]),
        None => put_command(out, &[b"AUTH", password.as_bytes()]),
    }
}

/// The line at the start of `buf` without its CRLF, and the bytes it took with it; `None` if
/// its end has not arrived.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, RespError> {
    let window = &buf[..buf.len().min(LINE_BYTES_MAX + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&buf[..end], end + 2))),
        None if buf.len() > LINE_BYTES_MAX + 1 => Err(RespError(format!(
            "a line of more than {LINE_BYTES_MAX} bytes"
        ))),
        None => Ok(None),
    }
}

/// A length (`-1` is nil).
fn length(digits: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= -1)
        .ok_or_else(|| {
            RespError(format!(
                "bad length {:?}",
                String::from_utf8_lossy(&digits[..digits.len().min(32)])
            ))
        })
}

/// The first whole reply in `buf`: its kind and its length in bytes, or `None` while it is
/// incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, RespError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some((text, head)) = line(&buf[1..])? else {
        return Ok(None);
    };
    let head = head + 1;
    let reply = match kind {
        b'+' => Reply::Simple,
        b'-' => Reply::Error,
        b':' => {
            integer(text)?;
            Reply::Integer
        }
        b'_' => Reply::Nil,
        b'$' => {
            let n = length(text)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, head)));
            }
            let n = n as usize;
            if n > BULK_BYTES_MAX {
                return Err(RespError(format!("a bulk string of {n} bytes")));
            }
            let end = head + n + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(RespError("a bulk string not ended by CRLF".into()));
            }
            return Ok(Some((Reply::Bulk, end)));
        }
        b'*' => {
            let n = length(text)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, head)));
            }
            if n as usize > ARRAY_ITEMS_MAX || depth >= ARRAY_DEPTH_MAX {
                return Err(RespError(format!("an array of {n} items at depth {depth}")));
            }
            let mut at = head;
            for _ in 0..n {
                match parse_at(&buf[at..], depth + 1)? {
                    Some((_, used)) => at += used,
                    None => return Ok(None),
                }
            }
            return Ok(Some((Reply::Array, at)));
        }
        other => {
            return Err(RespError(format!("unknown reply type byte {other:#04x}")));
        }
    };
    Ok(Some((reply, head)))
}

fn integer(digits: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| RespError("bad integer".into()))
}

/// The text of an error reply at the start of `buf` (for the report's first error).
pub fn error_text(buf: &[u8]) -> String {
    let end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[1..end.clamp(1, 200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_get_are_written_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        put_set(&mut out, 7, b"xyz");
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000007\r\n$3\r\nxyz\r\n"
        );
        out.clear();
        put_get(&mut out, 7);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000007\r\n");
        out.clear();
        put_auth(&mut out, Some("ann"), "pw");
        assert_eq!(out, b"*3\r\n$4\r\nAUTH\r\n$3\r\nann\r\n$2\r\npw\r\n");
        out.clear();
        put_auth(&mut out, None, "pw");
        assert_eq!(out, b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
    }

    #[test]
    fn each_reply_kind_is_recognised_with_its_length() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Simple),
            (b"-ERR no\r\n", Reply::Error),
            (b":42\r\n", Reply::Integer),
            (b"$3\r\nabc\r\n", Reply::Bulk),
            (b"$0\r\n\r\n", Reply::Bulk),
            (b"$-1\r\n", Reply::Nil),
            (b"*-1\r\n", Reply::Nil),
            (b"_\r\n", Reply::Nil),
            (b"*2\r\n$1\r\na\r\n:1\r\n", Reply::Array),
            (b"*1\r\n*1\r\n+x\r\n", Reply::Array),
        ];
        for (bytes, kind) in cases {
            assert_eq!(
                parse_reply(bytes).unwrap(),
                Some((*kind, bytes.len())),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_reply_split_anywhere_is_incomplete_until_its_last_byte() {
        let stream = b"+OK\r\n$5\r\nhello\r\n$-1\r\n-ERR x\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n";
        let expected = [
            Reply::Simple,
            Reply::Bulk,
            Reply::Nil,
            Reply::Error,
            Reply::Array,
        ];
        // Feeds the stream one byte at a time, as the slowest network would.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for &b in stream.iter() {
            buf.push(b);
            while let Some((reply, used)) = parse_reply(&buf).unwrap() {
                got.push(reply);
                buf.drain(..used);
            }
        }
        assert_eq!(got, expected);
        assert!(buf.is_empty());
        for cut in 0..b"$5\r\nhello\r\n".len() {
            assert_eq!(parse_reply(&b"$5\r\nhello\r\n"[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn pipelined_replies_come_out_one_at_a_time_in_order() {
        let buf = b"+OK\r\n+OK\r\n$-1\r\n";
        let (a, n1) = parse_reply(buf).unwrap().unwrap();
        let (b, n2) = parse_reply(&buf[n1..]).unwrap().unwrap();
        let (c, n3) = parse_reply(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!((a, b, c), (Reply::Simple, Reply::Simple, Reply::Nil));
        assert_eq!(n1 + n2 + n3, buf.len());
    }

    #[test]
    fn bytes_that_are_not_resp_are_an_error_not_a_wait() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"$abc\r\n",
            b"$-2\r\n",
            b"$3\r\nabcde\r\n",
            b":x\r\n",
            b"*-5\r\n",
        ] {
            assert!(
                parse_reply(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let endless = vec![b'+'; LINE_BYTES_MAX + 10];
        assert!(parse_reply(&endless).is_err());
        let deep = b"*1\r\n".repeat(ARRAY_DEPTH_MAX + 1);
        assert!(parse_reply(&deep).is_err());
    }

    #[test]
    fn an_error_reply_keeps_its_text() {
        assert_eq!(
            error_text(b"-WRONGPASS invalid\r\n+OK\r\n"),
            "WRONGPASS invalid"
        );
    }
}
