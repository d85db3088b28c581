//! The bench's HTTP/1.1 client side, without sockets: keep-alive requests (`PUT /kv/{key}`
//! with the value, `GET /kv/{key}`, or the same under `/buckets/{bucket}`) written into a reused buffer, and responses recognised
//! incrementally (status, `Content-Length` or chunked body, `Connection: close`).

use crate::workload::{put_decimal, put_key};

/// Bytes of a response's head (status line and headers) at most.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Bytes of one response body at most (more than any value a node holds).
pub const BODY_BYTES_MAX: usize = 512 * 1024 * 1024;

/// What the bench needs of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server closes the connection after this response.
    pub close: bool,
}

/// Bytes that are not an HTTP/1.x response the bench can frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an HTTP response the bench can read: {0}")]
pub struct HttpError(pub String);

fn bad(why: impl Into<String>) -> HttpError {
    HttpError(why.into())
}

/// What every request to one node shares: the keys' path (`/kv/` or `/buckets/NAME/kv/`)
/// and what follows the path (the version, `Host` and, for a node with users,
/// `Authorization`). Made once per node.
#[derive(Clone, Debug)]
pub struct Requests {
    path: Vec<u8>,
    tail: Vec<u8>,
}

/// Percent-encodes a path segment (the CLI client's URLs use it too).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Requests {
    pub fn new(host: &str, bucket: Option<&str>, basic_token: Option<&str>) -> Requests {
        let path = match bucket {
            Some(b) => format!("/buckets/{}/kv/", segment(b)),
            None => "/kv/".to_string(),
        };
        let mut tail = format!(" HTTP/1.1\r\nHost: {host}\r\n");
        if let Some(token) = basic_token {
            tail.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        Requests {
            path: path.into_bytes(),
            tail: tail.into_bytes(),
        }
    }

    /// `GET .../kv/key:N`.
    pub fn put_get(&self, out: &mut Vec<u8>, key: u64) {
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(&self.path);
        put_key(out, key);
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(b"\r\n");
    }

    /// `PUT .../kv/key:N` with `value` as the body: a blind write (no causal context).
    pub fn put_put(&self, out: &mut Vec<u8>, key: u64, value: &[u8]) {
        out.extend_from_slice(b"PUT ");
        out.extend_from_slice(&self.path);
        put_key(out, key);
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(b"Content-Length: ");
        put_decimal(out, value.len());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(value);
    }
}

/// Where the head ends (the index after its blank line), if it has arrived.
fn head_end(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    let window = &buf[..buf.len().min(HEAD_BYTES_MAX)];
    match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => Ok(Some(at + 4)),
        None if buf.len() >= HEAD_BYTES_MAX => Err(bad(format!(
            "a response head of more than {HEAD_BYTES_MAX} bytes"
        ))),
        None => Ok(None),
    }
}

/// How a response's body is framed.
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// The first whole response in `buf` (interim `1xx` responses skipped): its status, whether
/// the connection closes after it, and the bytes it took; `None` while it is incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HttpError> {
    let mut at = 0;
    loop {
        let Some(end) = head_end(&buf[at..])? else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&buf[at..at + end - 4])
            .map_err(|_| bad("a response head that is not text"))?;
        let (response, framing) = parse_head(head)?;
        let body_at = at + end;
        if (100..200).contains(&response.status) && response.status != 101 {
            at = body_at; // "100 Continue" and the like: the real answer follows
            continue;
        }
        let body_end = match framing {
            Framing::Empty => Some(body_at),
            Framing::Length(n) => (buf.len() >= body_at + n).then_some(body_at + n),
            Framing::Chunked => chunked_end(buf, body_at)?,
        };
        return Ok(body_end.map(|e| (response, e)));
    }
}

fn parse_head(head: &str) -> Result<(Response, Framing), HttpError> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(bad(format!("status line {status_line:.80?}"))),
    };
    let status: u16 = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| bad(format!("status line {status_line:.80?}")))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = http10;
    for header in lines {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| bad(format!("header line {header:.80?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| bad(format!("Content-Length {value:.40?}")))?;
            if n > BODY_BYTES_MAX || length.is_some_and(|l| l != n) {
                return Err(bad(format!("Content-Length {n}")));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(bad(format!("Transfer-Encoding {value:.40?}")));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        // A body that runs to the connection's close: hyper never answers a keep-alive
        // request so, and timing one would time the close.
        return Err(bad("a response with neither Content-Length nor chunks"));
    };
    Ok((Response { status, close }, framing))
}

/// Where a chunked body starting at `at` ends (after its trailers), if it has arrived.
fn chunked_end(buf: &[u8], mut at: usize) -> Result<Option<usize>, HttpError> {
    let mut total = 0usize;
    loop {
        let rest = &buf[at..];
        let Some(eol) = rest.iter().take(1024).position(|&b| b == b'\n') else {
            return if rest.len() >= 1024 {
                Err(bad("a chunk size line of 1 KiB"))
            } else {
                Ok(None)
            };
        };
        let size_line = rest[..eol].strip_suffix(b"\r").unwrap_or(&rest[..eol]);
        let size_text = size_line.split(|&b| b == b';').next().unwrap_or(b"");
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or_else(|| bad("a bad chunk size"))?;
        total = total.saturating_add(size);
        if total > BODY_BYTES_MAX {
            return Err(bad(format!(
                "a chunked body of more than {BODY_BYTES_MAX} bytes"
            )));
        }
        at += eol + 1;
        if size == 0 {
            // Trailers, each a line, then an empty line.
            loop {
                let rest = &buf[at..];
                let Some(eol) = rest.iter().take(HEAD_BYTES_MAX).position(|&b| b == b'\n') else {
                    return Ok(None);
                };
                at += eol + 1;
                if rest[..eol]
                    .strip_suffix(b"\r")
                    .unwrap_or(&rest[..eol])
                    .is_empty()
                {
                    return Ok(Some(at));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(bad("a chunk not ended by CRLF"));
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_host_auth_and_length() {
        let to = Requests::new("127.0.0.1:8080", None, Some("YTpi"));
        let mut out = Vec::new();
        to.put_put(&mut out, 3, b"vv");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "PUT /kv/key:000000000003 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
             Authorization: Basic YTpi\r\nContent-Length: 2\r\n\r\nvv"
        );
        out.clear();
        Requests::new("h:1", None, None).put_get(&mut out, 3);
        assert_eq!(
            out,
            b"GET /kv/key:000000000003 HTTP/1.1\r\nHost: h:1\r\n\r\n"
        );
        out.clear();
        Requests::new("h:1", Some("fast lww"), None).put_get(&mut out, 3);
        assert_eq!(
            out,
            b"GET /buckets/fast%20lww/kv/key:000000000003 HTTP/1.1\r\nHost: h:1\r\n\r\n"
        );
    }

    fn ok(status: u16, close: bool) -> Response {
        Response { status, close }
    }

    #[test]
    fn responses_are_framed_by_length_by_chunks_or_by_status() {
        let cases: &[(&[u8], Response)] = &[
            (
                b"HTTP/1.1 204 No Content\r\nx-causal-context: abc\r\n\r\n",
                ok(204, false),
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                ok(200, false),
            ),
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                ok(404, true),
            ),
            (
                b"HTTP/1.1 300 Multiple Choices\r\ntransfer-encoding: chunked\r\n\r\n\
                  3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
                ok(300, false),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx-trailer: 1\r\n\r\n",
                ok(200, false),
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
                ok(200, true),
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 1\r\n\r\nx",
                ok(503, false),
            ),
        ];
        for (bytes, expected) in cases {
            let text = String::from_utf8_lossy(bytes);
            assert_eq!(
                parse_response(bytes).unwrap(),
                Some((*expected, bytes.len())),
                "{text}"
            );
            for cut in 0..bytes.len() {
                assert_eq!(
                    parse_response(&bytes[..cut]).unwrap(),
                    None,
                    "{text} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn pipelined_responses_come_out_one_at_a_time() {
        let buf = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 4";
        let (a, n) = parse_response(buf).unwrap().unwrap();
        assert_eq!(a.status, 204);
        let (b, m) = parse_response(&buf[n..]).unwrap().unwrap();
        assert_eq!(b.status, 200);
        assert_eq!(parse_response(&buf[n + m..]).unwrap(), None);
    }

    #[test]
    fn what_cannot_be_framed_is_an_error() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n",
            b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_response(&vec![b'a'; HEAD_BYTES_MAX + 1]).is_err());
    }
}
