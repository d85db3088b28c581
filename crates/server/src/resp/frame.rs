//! A reply in RESP2 (and the one RESP3 map HELLO 3 asks for), and its encoding.

use bytes::Bytes;

/// A reply frame.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Simple(&'static str),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Frame>),
    /// A RESP3 map of alternating keys and values (HELLO 3 only).
    Map(Vec<Frame>),
}

impl Frame {
    /// `-ERR message`, the generic error line.
    pub fn err(message: impl Into<String>) -> Frame {
        Frame::Error(format!("ERR {}", message.into()))
    }

    /// A bulk string of `s`.
    pub fn bulk(s: impl Into<Vec<u8>>) -> Frame {
        Frame::Bulk(Bytes::from(s.into()))
    }

    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK")
    }

    /// Whether this is an error line whose code (its first word) is `code`.
    pub fn is_error_code(&self, code: &str) -> bool {
        matches!(self, Frame::Error(e) if e.split(' ').next() == Some(code))
    }

    /// Appends the frame's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
            }
            Frame::Error(e) => {
                out.push(b'-');
                // An error line cannot carry a line break.
                out.extend(
                    e.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
            }
            Frame::Int(i) => out.extend_from_slice(format!(":{i}").as_bytes()),
            Frame::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Frame::Null => out.extend_from_slice(b"$-1"),
            Frame::Array(items) => return encode_items(out, '*', items.len(), items),
            Frame::Map(items) => return encode_items(out, '%', items.len() / 2, items),
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// An aggregate: its type byte, its declared length, then each item.
fn encode_items(out: &mut Vec<u8>, kind: char, len: usize, items: &[Frame]) {
    out.extend_from_slice(format!("{kind}{len}\r\n").as_bytes());
    for item in items {
        item.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = Vec::new();
        Frame::Array(vec![
            Frame::Int(3),
            Frame::Null,
            Frame::bulk("hi"),
            Frame::Simple("OK"),
            Frame::err("bad\r\nline"),
        ])
        .encode(&mut out);
        assert_eq!(
            out,
            b"*5\r\n:3\r\n$-1\r\n$2\r\nhi\r\n+OK\r\n-ERR bad  line\r\n"
        );
    }

    #[test]
    fn a_map_declares_its_pairs() {
        let mut out = Vec::new();
        Frame::Map(vec![Frame::bulk("proto"), Frame::Int(3)]).encode(&mut out);
        assert_eq!(out, b"%1\r\n$5\r\nproto\r\n:3\r\n");
    }

    #[test]
    fn an_error_code_is_its_first_word() {
        assert!(Frame::Error("WRONGTYPE Operation".into()).is_error_code("WRONGTYPE"));
        assert!(!Frame::err("WRONGTYPE").is_error_code("WRONGTYPE"));
        assert!(!Frame::Simple("WRONGTYPE").is_error_code("WRONGTYPE"));
    }
}
