//! What a request brings besides its path: query parameters and a body, each checked and
//! bounded before any of it reaches the node.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use bytes::Bytes;
use driftkv_wire::Quorum;
use serde_json::Value;

use crate::http::error::ApiError;

/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// `r` and `w` from the query string, and the parameters a route takes besides; unknown
/// parameters are refused.
#[derive(Default)]
pub struct Params {
    pub r: Quorum,
    pub w: Quorum,
    /// `ttl_ms`: a write's time to live.
    pub ttl_ms: Option<u64>,
    /// `timeout_ms`: how long a watch waits.
    pub timeout_ms: Option<u64>,
    /// `prefix`, `after` and `limit`: a key listing's page.
    pub prefix: Option<Bytes>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

use crate::TTL_MS_MAX;

/// Parses the raw query string: `r` and `w` only.
pub fn params(raw: Option<String>) -> Result<Params, ApiError> {
    params_with(raw, &[])
}

/// Parses the raw query string: `r`, `w` and the parameters named in `extra`.
pub fn params_with(raw: Option<String>, extra: &[&str]) -> Result<Params, ApiError> {
    let mut p = Params::default();
    for pair in raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .ok_or_else(|| ApiError::BadRequest(format!("{name}: bad percent-encoding")))?;
        let shown = String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned();
        let text = || {
            std::str::from_utf8(&value)
                .map_err(|_| ApiError::BadRequest(format!("{name} is not UTF-8")))
        };
        let level = || {
            Quorum::parse(text()?).map_err(|e| ApiError::BadRequest(format!("{name}={shown}: {e}")))
        };
        let number = |max: u64| -> Result<u64, ApiError> {
            match text()?.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "{name}={shown}: expected a whole number from 1 to {max}"
                ))),
            }
        };
        match name {
            "r" => p.r = level()?,
            "w" => p.w = level()?,
            "ttl_ms" if extra.contains(&name) => p.ttl_ms = Some(number(TTL_MS_MAX)?),
            "timeout_ms" if extra.contains(&name) => {
                p.timeout_ms = Some(number(crate::http::watch::WATCH_TIMEOUT_MS_MAX)?)
            }
            "prefix" if extra.contains(&name) => p.prefix = Some(Bytes::from(value.clone())),
            "after" if extra.contains(&name) => p.after = Some(text()?.to_string()),
            "limit" if extra.contains(&name) => {
                p.limit = Some(number(u64::from(driftkv_core::node::LIST_LIMIT_MAX))? as u32)
            }
            other => {
                let mut known = vec!["r", "w"];
                known.extend_from_slice(extra);
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {other:?} (known here: {})",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(p)
}

/// `%XX` escapes and `+` (a space) decoded; `None` for a broken escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The whole body, at most `limit` bytes, within [`BODY_TIMEOUT`].
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::TooLarge(format!(
            "request body is over the limit of {limit} bytes"
        ))),
        Err(_) => Err(ApiError::BodyTimeout(format!(
            "the request body did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        ))),
    }
}

/// A JSON body of at most `limit` bytes.
pub async fn read_json(body: Body, limit: usize) -> Result<Value, ApiError> {
    let raw = read_body(body, limit).await?;
    serde_json::from_slice(&raw)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_takes_its_own_parameters_and_refuses_the_rest() {
        let p = params_with(Some("w=all&ttl_ms=3000".into()), &["ttl_ms"]).unwrap();
        assert_eq!((p.w, p.ttl_ms), (Quorum::All, Some(3000)));
        assert!(params(Some("ttl_ms=3000".into())).is_err());
        assert!(params_with(Some("ttl_ms=0".into()), &["ttl_ms"]).is_err());
        assert!(params_with(Some("ttl_ms=-5".into()), &["ttl_ms"]).is_err());
        let p = params_with(
            Some("prefix=user%2D%20x+y&limit=70".into()),
            &["prefix", "limit"],
        )
        .unwrap();
        assert_eq!(p.prefix.as_deref(), Some(&b"user- x y"[..]));
        assert_eq!(p.limit, Some(70));
        assert!(params_with(Some("prefix=%zz".into()), &["prefix"]).is_err());
        assert!(params_with(Some("prefix=%4".into()), &["prefix"]).is_err());
        assert!(params_with(Some("prefix=%+1".into()), &["prefix"]).is_err());
        assert!(params_with(Some("limit=100000".into()), &["limit"]).is_err());
    }
}
