//! Commands on keys of any kind: DEL, UNLINK, EXISTS, TYPE, SCAN, KEYS, DBSIZE.
//!
//! A delete removes what its coordinator sees of the key, whatever it holds (a register gets
//! a tombstone, a counter is reset, a set's members and a hash's fields are removed); a write
//! made through another node at the same time survives it. `SCAN` walks the cluster's
//! partitions: its cursor is stateless (any connection, any node of the cluster may carry it
//! on), and a page ends where an anti-entropy segment ends, so it may hold a few more keys
//! than `COUNT`. Every key live for the whole scan is returned once while the cluster is
//! stable; keys written or deleted during the scan may or may not be, and a join or leave
//! during it may repeat or miss keys. `DBSIZE` counts exactly up to [`DBSIZE_EXACT_MAX`] keys,
//! then estimates from how far through the partitions the count got.

use bytes::Bytes;
use driftkv_core::keys::{scan_cursor, scan_number};
use driftkv_wire::{Key, ListCursor, ObjectKind, Reply, Request};

use crate::resp::cmd::args::{expect, integer};
use crate::resp::context::{Context, failure, key};
use crate::resp::frame::Frame;
use crate::resp::session::Session;

/// `SCAN`'s page size when no `COUNT` is given (Redis's).
pub const SCAN_COUNT_DEFAULT: u32 = 10;
/// `KEYS` answers at most this many keys; past it, it asks for `SCAN`.
pub const KEYS_MAX: usize = 100_000;
/// `DBSIZE` counts every key up to this many, then estimates.
pub const DBSIZE_EXACT_MAX: usize = 10_000;
/// Keys per listing page that `KEYS` and `DBSIZE` ask for.
const PAGE: u32 = 1000;
/// The longest `MATCH` or `KEYS` pattern: a match costs up to pattern × key steps per key.
pub const PATTERN_BYTES_MAX: usize = 1024;

/// A glob pattern a client gave, within [`PATTERN_BYTES_MAX`].
fn pattern_within_bounds(p: &[u8]) -> Result<(), Frame> {
    if p.len() > PATTERN_BYTES_MAX {
        return Err(Frame::err(format!(
            "the pattern is {} bytes, the limit is {PATTERN_BYTES_MAX}",
            p.len()
        )));
    }
    Ok(())
}

/// `DEL key [key ...]` / `UNLINK ...`: how many of the keys held something live.
pub async fn del(ctx: &Context, s: &Session, name: &str, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(!a.is_empty(), name)?;
    let mut count = 0;
    for k in a {
        let request = Request::Delete {
            key: key(k),
            kind: None,
            w: s.w,
        };
        match ctx.call(request).await? {
            Reply::Deleted { existed } => count += i64::from(existed),
            other => return Err(failure(other)),
        }
    }
    Ok(Frame::Int(count))
}

/// `EXISTS key [key ...]`: how many of the keys hold something live (of any kind).
pub async fn exists(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(!a.is_empty(), "exists")?;
    let mut count = 0;
    for k in a {
        count += i64::from(type_of(ctx, s, k).await? != "none");
    }
    Ok(Frame::Int(count))
}

/// `TYPE key`: `string` (registers and counters), `set`, `hash` or `none`.
pub async fn type_(ctx: &Context, s: &Session, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "type")?;
    Ok(Frame::Simple(type_of(ctx, s, &a[0]).await?))
}

/// The Redis type name of what key `k` holds, read at the connection's R.
async fn type_of(ctx: &Context, s: &Session, k: &Bytes) -> Result<&'static str, Frame> {
    let request = Request::Read {
        key: key(k),
        r: s.r,
    };
    match ctx.call(request).await? {
        Reply::Object { object, now_ms } => Ok(object
            .filter(|o| o.is_live_at(now_ms))
            .map_or("none", |o| type_name(o.kind()))),
        other => Err(failure(other)),
    }
}

/// The Redis type name of a kind.
pub fn type_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Register | ObjectKind::Counter => "string",
        ObjectKind::Set => "set",
        ObjectKind::Map => "hash",
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`.
pub async fn scan(ctx: &Context, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(!a.is_empty(), "scan")?;
    let invalid = || Frame::err("invalid cursor");
    let cursor = std::str::from_utf8(&a[0])
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(invalid)?;
    let after = scan_cursor(cursor).map_err(|_| invalid())?;
    if after
        .as_ref()
        .is_some_and(|c| c.partition >= ctx.node.config().ring.partitions)
    {
        return Err(invalid());
    }
    let (mut pattern, mut count, mut type_filter) = (None, SCAN_COUNT_DEFAULT, None);
    let mut i = 1;
    while i < a.len() {
        let value = a.get(i + 1).ok_or_else(|| Frame::err("syntax error"))?;
        match a[i].to_ascii_lowercase().as_slice() {
            b"match" => {
                pattern_within_bounds(value)?;
                pattern = Some(value.clone());
            }
            b"count" => {
                let n = integer(value)?;
                let max = i64::from(driftkv_core::node::LIST_LIMIT_MAX);
                if !(1..=max).contains(&n) {
                    return Err(Frame::err(format!("COUNT must be 1 to {max}")));
                }
                count = n as u32;
            }
            b"type" => type_filter = Some(value.to_ascii_lowercase()),
            _ => return Err(Frame::err("syntax error")),
        }
        i += 2;
    }
    let (keys, next) = page(ctx, pattern.as_deref(), after, count, true).await?;
    let next = match next {
        None => 0,
        Some(c) => scan_number(&c).ok_or_else(|| Frame::err("the listing ended mid-segment"))?,
    };
    let keys = matching(pattern, keys)
        .await?
        .into_iter()
        .filter(|(_, kind)| {
            type_filter
                .as_deref()
                .is_none_or(|t| t == type_name(*kind).as_bytes())
        })
        .map(|(k, _)| Frame::Bulk(k))
        .collect();
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(keys),
    ]))
}

/// `KEYS pattern`: every live key matching it (at most [`KEYS_MAX`]).
pub async fn keys(ctx: &Context, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.len() == 1, "keys")?;
    let pattern = &a[0];
    pattern_within_bounds(pattern)?;
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let (keys, next) = page(ctx, Some(pattern), after, PAGE, false).await?;
        let keys = matching(Some(pattern.clone()), keys).await?;
        found.extend(keys.into_iter().map(|(k, _)| Frame::Bulk(k)));
        if found.len() > KEYS_MAX {
            return Err(Frame::err(format!(
                "KEYS would answer more than {KEYS_MAX} keys: use SCAN"
            )));
        }
        match next {
            None => return Ok(Frame::Array(found)),
            Some(c) => after = Some(c),
        }
    }
}

/// `DBSIZE`: the live keys of the keyspace, counted exactly up to [`DBSIZE_EXACT_MAX`], then
/// estimated from the share of the partitions counted.
pub async fn dbsize(ctx: &Context, a: &[Bytes]) -> Result<Frame, Frame> {
    expect(a.is_empty(), "dbsize")?;
    let partitions = u64::from(ctx.node.config().ring.partitions);
    let mut count = 0usize;
    let mut after = None;
    loop {
        let (keys, next) = page(ctx, None, after, PAGE, true).await?;
        count += keys.len();
        let Some(c) = next else {
            return Ok(Frame::Int(count as i64));
        };
        if count >= DBSIZE_EXACT_MAX {
            // Pages end at segment ends: the share of the key space counted is known.
            let done = scan_number(&c).unwrap_or(1).saturating_sub(1) as f64;
            let total = (partitions * (driftkv_core::aae::SEGMENTS as u64 + 1)) as f64;
            let share = (done / total).max(f64::MIN_POSITIVE);
            return Ok(Frame::Int((count as f64 / share).round() as i64));
        }
        after = Some(c);
    }
}

/// The keys of a page that match `pattern` (all of them without one). Matching runs on the
/// blocking pool: a long pattern against long keys costs up to pattern × key steps per key,
/// which must not hold the workers that serve every other client.
async fn matching(
    pattern: Option<Bytes>,
    keys: Vec<(Bytes, ObjectKind)>,
) -> Result<Vec<(Bytes, ObjectKind)>, Frame> {
    let Some(pattern) = pattern else {
        return Ok(keys);
    };
    tokio::task::spawn_blocking(move || {
        keys.into_iter()
            .filter(|(k, _)| glob_match(&pattern, k))
            .collect()
    })
    .await
    .map_err(|_| Frame::err("matching the pattern failed"))
}

/// One page of the keyspace's live keys from `after`, narrowed to the literal start of
/// `pattern`.
async fn page(
    ctx: &Context,
    pattern: Option<&[u8]>,
    after: Option<ListCursor>,
    limit: u32,
    whole_segments: bool,
) -> Result<(Vec<(Bytes, ObjectKind)>, Option<ListCursor>), Frame> {
    let prefix = pattern.map_or(&b""[..], literal_prefix);
    let request = Request::ListKeys {
        key: Key::default_bucket(Bytes::copy_from_slice(prefix)),
        after,
        limit,
        whole_segments,
    };
    match ctx.call(request).await? {
        Reply::Keys { keys, next } => Ok((keys, next)),
        other => Err(failure(other)),
    }
}

/// The part of a glob pattern before its first special character: every match starts with it.
fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|c| b"*?[\\".contains(c))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

/// Redis's glob: `*` any run, `?` one byte, `[abc]`, `[^a-z]` a class, `\x` the byte `x`.
/// Backtracks only to the last `*`, so a match costs at most pattern × subject steps.
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < subject.len() {
        if p < pattern.len() {
            let c = subject[i];
            let step = match pattern[p] {
                b'*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' => Some(p + 1),
                b'[' => {
                    let (matched, next) = class(pattern, p, c);
                    matched.then_some(next)
                }
                b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
                literal => (literal == c).then_some(p + 1),
            };
            if let Some(next) = step {
                p = next;
                i += 1;
                continue;
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    while pattern.get(p) == Some(&b'*') {
        p += 1;
    }
    p == pattern.len()
}

/// The class `[...]` at `pattern[start]` against byte `c`: whether it matches and where the
/// pattern goes on. As in Redis, a `]` right after the `[` (or `[^`) closes an empty class,
/// and a class never closed runs to the pattern's end.
fn class(pattern: &[u8], start: usize, c: u8) -> (bool, usize) {
    let mut j = start + 1;
    let negate = pattern.get(j) == Some(&b'^');
    if negate {
        j += 1;
    }
    let mut matched = false;
    while let Some(&b) = pattern.get(j) {
        if b == b']' {
            return (matched != negate, j + 1);
        }
        let (lo, mut next) = match (b, pattern.get(j + 1)) {
            (b'\\', Some(&escaped)) => (escaped, j + 2),
            _ => (b, j + 1),
        };
        if pattern.get(next) == Some(&b'-') && pattern.get(next + 1).is_some_and(|e| *e != b']') {
            let hi = pattern[next + 1];
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            matched |= (lo..=hi).contains(&c);
            next += 2;
        } else {
            matched |= lo == c;
        }
        j = next;
    }
    (matched != negate, pattern.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_redis_does() {
        let yes = |p: &str, s: &str| assert!(glob_match(p.as_bytes(), s.as_bytes()), "{p} {s}");
        let no = |p: &str, s: &str| assert!(!glob_match(p.as_bytes(), s.as_bytes()), "{p} {s}");
        yes("scan:*", "scan:12");
        yes("*", "");
        yes("h?llo", "hello");
        no("h?llo", "hllo");
        yes("h[ae]llo", "hallo");
        no("h[ae]llo", "hillo");
        yes("h[^e]llo", "hallo");
        no("h[^e]llo", "hello");
        yes("h[a-b]llo", "hbllo");
        yes("a\\*b", "a*b");
        no("a\\*b", "axb");
        yes("*a*b*c*", "xxaxxbxxcxx");
        no("*a*b*c*d", "abcabcabcabc");
        no("[]x", "x");
        yes("[^]x", "ax");
        yes("a[bc", "ab");
        // A pattern built to make naive backtracking explode ends at once.
        let subject = "a".repeat(5000);
        no(&format!("{}b", "a*".repeat(50)), &subject);
        assert_eq!(literal_prefix(b"user-*"), b"user-");
        assert_eq!(literal_prefix(b"a\\*"), b"a");
        assert!(pattern_within_bounds(&[b'*'; PATTERN_BYTES_MAX]).is_ok());
        assert!(pattern_within_bounds(&[b'*'; PATTERN_BYTES_MAX + 1]).is_err());
        assert_eq!(type_name(ObjectKind::Map), "hash");
        assert_eq!(type_name(ObjectKind::Counter), "string");
    }
}
