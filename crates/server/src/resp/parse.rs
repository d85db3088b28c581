//! The RESP request parser: one command (an array of bulk strings, or an inline line) from the
//! front of a connection's buffer, within limits that do not depend on how the bytes arrived.

use bytes::Bytes;

/// Arguments of one command at most (Redis allows more, but no driftkv command needs them:
/// an MSET of 32,768 pairs).
pub const ARGS_MAX: usize = 64 * 1024;
/// Characters of a length line at most (a sign and 19 digits; padded lengths are refused, so a
/// header is judged the same whether its end arrived in one read or several).
pub const LENGTH_DIGITS_MAX: usize = 20;
/// An inline command line at most.
pub const INLINE_MAX: usize = 64 * 1024;
/// Bytes a length line may occupy while its end has not arrived: past this, no valid length
/// line can follow, and the stream is refused.
const LENGTH_LINE_PENDING_MAX: usize = 32;
/// Arguments reserved up front, whatever a command declares (the rest as they arrive).
const ARGS_RESERVED_MAX: usize = 64;

/// One parse step over the connection's buffer.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A whole command and how many bytes it took (no arguments: a blank inline line).
    Command(Vec<Bytes>, usize),
    Incomplete,
    /// The stream is not RESP: answer and close.
    Broken(String),
}

/// Parses one command from the front of `buf`. `bulk_max` bounds each argument.
pub fn parse(buf: &[u8], bulk_max: usize) -> Parsed {
    match buf.first() {
        None => Parsed::Incomplete,
        Some(b'*') => array(buf, bulk_max),
        Some(_) => inline(buf),
    }
}

/// An inline command: words up to a newline.
fn inline(buf: &[u8]) -> Parsed {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > INLINE_MAX {
            Parsed::Broken("too big inline request".into())
        } else {
            Parsed::Incomplete
        };
    };
    // The same answer however the bytes arrived: a line past the limit is refused even when
    // its end came in the same read.
    if end > INLINE_MAX {
        return Parsed::Broken("too big inline request".into());
    }
    let text = &buf[..end];
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let args = text
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(Bytes::copy_from_slice)
        .collect();
    Parsed::Command(args, end + 1)
}

/// A command as an array of bulk strings: `*count`, then `count` times `$len` and the bytes.
fn array(buf: &[u8], bulk_max: usize) -> Parsed {
    let (count, mut at) = match length_line(buf, 0, "invalid multibulk length") {
        Err(step) => return step,
        // Redis reads a negative count as no command at all.
        Ok((n, at)) if n < 0 => return Parsed::Command(Vec::new(), at),
        Ok((n, at)) if n <= ARGS_MAX as i64 => (n as usize, at),
        Ok(_) => return Parsed::Broken("invalid multibulk length".into()),
    };
    let mut args = Vec::with_capacity(count.min(ARGS_RESERVED_MAX));
    for _ in 0..count {
        match bulk(buf, at, bulk_max) {
            Ok((arg, next)) => {
                args.push(arg);
                at = next;
            }
            Err(step) => return step,
        }
    }
    Parsed::Command(args, at)
}

/// One `$len\r\nbytes\r\n` at `at`: the argument and where the next starts.
fn bulk(buf: &[u8], at: usize, bulk_max: usize) -> Result<(Bytes, usize), Parsed> {
    match buf.get(at) {
        None => return Err(Parsed::Incomplete),
        Some(b'$') => {}
        Some(&other) => {
            return Err(Parsed::Broken(format!(
                "expected '$', got '{}'",
                other as char
            )));
        }
    }
    let (len, start) = length_line(buf, at, "invalid bulk length")?;
    let len = match usize::try_from(len) {
        Ok(n) if n <= bulk_max => n,
        _ => return Err(Parsed::Broken("invalid bulk length".into())),
    };
    if buf.len() < start + len + 2 {
        return Err(Parsed::Incomplete);
    }
    if &buf[start + len..start + len + 2] != b"\r\n" {
        return Err(Parsed::Broken("bulk string not terminated by CRLF".into()));
    }
    Ok((
        Bytes::copy_from_slice(&buf[start..start + len]),
        start + len + 2,
    ))
}

/// The number on the line after the type byte at `at`, and where the line after it starts;
/// `broken` names a line that cannot be a length.
fn length_line(buf: &[u8], at: usize, broken: &str) -> Result<(i64, usize), Parsed> {
    let Some((digits, next)) = line(buf, at + 1) else {
        return Err(if buf.len() - at > LENGTH_LINE_PENDING_MAX {
            Parsed::Broken(broken.into())
        } else {
            Parsed::Incomplete
        });
    };
    if digits.len() > LENGTH_DIGITS_MAX {
        return Err(Parsed::Broken(broken.into()));
    }
    number(digits)
        .map(|n| (n, next))
        .ok_or_else(|| Parsed::Broken(broken.into()))
}

/// The bytes from `from` up to the next CRLF, and where the line after it starts.
fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let at = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..at], from + at + 2))
}

/// A decimal integer, as RESP lengths and integer arguments are written.
pub fn number(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<Bytes> {
        args.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn parses_arrays_pipelines_and_inline_commands() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let Parsed::Command(args, used) = parse(buf, 100) else {
            panic!()
        };
        assert_eq!(args, cmd(&["GET", "k"]));
        assert_eq!(
            parse(&buf[used..], 100),
            Parsed::Command(cmd(&["PING"]), buf.len() - used)
        );
        assert_eq!(
            parse(b"SET a  b\r\n", 100),
            Parsed::Command(cmd(&["SET", "a", "b"]), 10)
        );
        assert_eq!(parse(b"\r\n", 100), Parsed::Command(Vec::new(), 2));
    }

    #[test]
    fn binary_values_pass_unchanged() {
        let buf = b"*2\r\n$3\r\nSET\r\n$4\r\n\r\n\x00\xff\r\n";
        let Parsed::Command(args, _) = parse(buf, 100) else {
            panic!()
        };
        assert_eq!(&args[1][..], b"\r\n\x00\xff");
    }

    #[test]
    fn every_prefix_of_a_command_is_incomplete_never_wrong() {
        let buf = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        for cut in 0..buf.len() {
            assert_eq!(parse(&buf[..cut], 100), Parsed::Incomplete, "cut at {cut}");
        }
        assert!(matches!(parse(buf, 100), Parsed::Command(..)));
    }

    #[test]
    fn a_length_line_is_judged_the_same_however_it_arrives() {
        let padded = format!("*{}1\r\n$4\r\nPING\r\n", "0".repeat(40));
        assert!(matches!(parse(padded.as_bytes(), 100), Parsed::Broken(_)));
        assert!(matches!(
            parse(&padded.as_bytes()[..41], 100),
            Parsed::Broken(_)
        ));
        let mut inline = vec![b'a'; INLINE_MAX + 1];
        inline.push(b'\n');
        assert!(matches!(parse(&inline, 100), Parsed::Broken(_)));
    }

    #[test]
    fn broken_frames_are_errors() {
        assert!(matches!(parse(b"*x\r\n", 100), Parsed::Broken(_)));
        assert!(matches!(parse(b"*1\r\n+OK\r\n", 100), Parsed::Broken(_)));
        assert!(
            matches!(parse(b"*1\r\n$999\r\n", 100), Parsed::Broken(_)),
            "over the bulk limit"
        );
        assert!(matches!(
            parse(b"*1\r\n$2\r\nabcd\r\n", 100),
            Parsed::Broken(_)
        ));
        assert!(matches!(parse(b"*1\r\n$-5\r\n", 100), Parsed::Broken(_)));
        assert!(matches!(
            parse(&vec![b'a'; INLINE_MAX + 1], 100),
            Parsed::Broken(_)
        ));
    }

    #[test]
    fn a_negative_count_is_an_empty_command_and_too_many_arguments_are_refused() {
        assert_eq!(parse(b"*-1\r\n", 100), Parsed::Command(Vec::new(), 5));
        let over = format!("*{}\r\n", ARGS_MAX + 1);
        assert_eq!(
            parse(over.as_bytes(), 100),
            Parsed::Broken("invalid multibulk length".into())
        );
    }
}
