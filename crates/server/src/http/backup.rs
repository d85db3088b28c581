//! `GET /admin/dump` and `POST /admin/restore`: the node's side of `driftkv backup` and
//! `driftkv restore`.
//!
//! A dump page is this node's own records of one partition, as stored: the backup tool asks
//! every replica of each partition and merges their copies itself, so a replica that is
//! behind loses nothing another holds. A restore batch is merged key by key into the cluster
//! through the core (`Request::Restore`: a join at every replica, no dot issued), so state
//! newer than the backup survives it and restoring twice changes nothing.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use driftkv_core::node::DUMP_RECORDS_MAX;
use driftkv_storage::FjallStore;
use driftkv_wire::backup::{DumpPage, decode_batch, encode_page};
use driftkv_wire::{Quorum, Reply, Request};
use futures_util::StreamExt;
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::input::{params, read_body};
use crate::http::state::AppState;

/// Restore requests one batch runs at once.
const RESTORE_CONCURRENCY: usize = 32;
/// Records one restore batch may hold (`driftkv restore` sends at most 500).
pub const RESTORE_BATCH_RECORDS_MAX: usize = 10_000;
/// Restore batches a node takes at once; another is answered 503 until one ends.
const RESTORES_AT_ONCE: usize = 2;

/// The restore batches running on this node.
static RESTORES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(RESTORES_AT_ONCE);
/// Errors a restore answer names (the rest are counted).
const RESTORE_ERRORS_SHOWN: usize = 5;
/// The smallest body limit of a restore batch (it grows with `object_bytes_max`).
const RESTORE_BODY_BYTES_MIN: usize = 16 * 1024 * 1024;

/// The longest record position a dump may be asked to go on after, in hex.
const POSITION_HEX_MAX: usize = 4096;

/// `GET /admin/dump?partition=P[&after=HEX][&limit=N]`: this node's records of partition `P`.
pub async fn dump(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (partition, after, limit) = dump_params(raw.as_deref().unwrap_or(""))?;
    let page = s
        .node
        .query(move |node: &driftkv_core::Node, store: &FjallStore| {
            node.dump(store, partition, after.as_deref(), limit)
        })
        .await?
        .map_err(ApiError::BadRequest)?;
    let page = DumpPage {
        records: page
            .records
            .into_iter()
            .map(|(position, key, raw)| (Bytes::from(position), key, Bytes::from(raw)))
            .collect(),
        last: page.last.map(Bytes::from),
        more: page.more,
    };
    let body = encode_page(&page);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

fn dump_params(raw: &str) -> Result<(u32, Option<Vec<u8>>, usize), ApiError> {
    let (mut partition, mut after, mut limit) = (None, None, DUMP_RECORDS_MAX);
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| ApiError::BadRequest(format!("{name}: {what}"));
        match name {
            "partition" => {
                partition = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| bad("not a partition number"))?,
                )
            }
            "after" => {
                if value.len() > POSITION_HEX_MAX {
                    return Err(bad("too long"));
                }
                after = Some(driftkv_wire::unhex(value).ok_or_else(|| bad("not hex"))?);
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=DUMP_RECORDS_MAX).contains(l))
                    .ok_or_else(|| bad(&format!("must be 1 to {DUMP_RECORDS_MAX}")))?
            }
            _ => return Err(ApiError::BadRequest(format!("unknown parameter {name:?}"))),
        }
    }
    let partition =
        partition.ok_or_else(|| ApiError::BadRequest("partition is required".into()))?;
    Ok((partition, after, limit))
}

/// `POST /admin/restore[?w=LEVEL]`: merges a batch of backed-up records into the cluster.
/// Answers how many were merged and, for the rest, why not.
pub async fn restore(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let w = params(raw)?.w;
    let Ok(_running) = RESTORES.try_acquire() else {
        return Err(ApiError::unavailable(format!(
            "this node is already merging {RESTORES_AT_ONCE} restore batches: send this one again when one ends"
        )));
    };
    let config = s.node.config();
    let limit = config
        .object_bytes_max
        .saturating_mul(2)
        .max(RESTORE_BODY_BYTES_MIN);
    let bytes = read_body(body, limit).await?;
    let records = decode_batch(&bytes, RESTORE_BATCH_RECORDS_MAX)
        .map_err(|e| ApiError::BadRequest(format!("not a restore batch: {e}")))?;
    drop(bytes);
    let total = records.len();
    let (failed, errors) = futures_util::stream::iter(records)
        .map(|(key, raw)| {
            let node = s.node.clone();
            async move { restore_one(&node, key, &raw, w).await }
        })
        .buffer_unordered(RESTORE_CONCURRENCY)
        .fold(
            (0usize, Vec::new()),
            |(failed, mut errors), outcome| async move {
                match outcome {
                    Ok(()) => (failed, errors),
                    Err(e) => {
                        // Only the first few are kept: a batch of bad records costs no memory.
                        if errors.len() < RESTORE_ERRORS_SHOWN {
                            errors.push(e);
                        }
                        (failed + 1, errors)
                    }
                }
            },
        )
        .await;
    let body = json!({
        "records": total,
        "restored": total - failed,
        "failed": failed,
        "errors": errors,
    });
    Ok(axum::Json(body).into_response())
}

async fn restore_one(
    node: &crate::handle::NodeHandle,
    key: driftkv_wire::Key,
    raw: &[u8],
    w: Quorum,
) -> Result<(), String> {
    let shown = String::from_utf8_lossy(&key.key()[..key.key().len().min(64)]).into_owned();
    let object = driftkv_wire::decode_object(raw)
        .map_err(|e| format!("key {shown:?}: the record does not decode: {e}"))?;
    match node.call(Request::Restore { key, object, w }).await {
        Ok(Reply::Written { .. }) => Ok(()),
        Ok(Reply::Error { message, .. }) => Err(format!("key {shown:?}: {message}")),
        Ok(other) => Err(format!("key {shown:?}: unexpected answer {other:?}")),
        Err(e) => Err(format!("key {shown:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_parameters_are_checked() {
        assert_eq!(
            dump_params("partition=3").unwrap(),
            (3, None, DUMP_RECORDS_MAX)
        );
        assert_eq!(
            dump_params("partition=0&after=00ff&limit=5").unwrap(),
            (0, Some(vec![0, 255]), 5)
        );
        for bad in [
            "",
            "after=00",
            "partition=x",
            "partition=1&after=0",
            "partition=1&after=zz",
            "partition=1&limit=0",
            "partition=1&limit=99999999",
            "partition=1&other=1",
        ] {
            assert!(dump_params(bad).is_err(), "{bad}");
        }
    }
}
