//! Hinted handoff: copies kept for down primaries, handed over when they are back.

use super::*;

/// The hints waiting for one primary.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    /// Hint records on disk.
    pub(super) count: usize,
    /// While the primary is down, no look at its hints is needed before this: the earliest a
    /// hint in the batch `hand_off` looked at can expire (see there).
    pub(super) quiet_until: Option<u64>,
}

/// A stored hint: the copy a fallback holds for a primary, and when it was first stored.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct HintRecord {
    pub(super) created_ms: u64,
    pub(super) object: Object,
}

impl Node {
    pub(super) fn store_hint(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        primary: &NodeId,
        partition: PartitionId,
        key: &Key,
        object: &Object,
    ) {
        let hint_key = keys::hint_key(primary, &keys::data_key(partition, key));
        let existing = match store.get(&hint_key) {
            Ok(existing) => existing,
            Err(_) => {
                self.stats.storage_errors += 1;
                return;
            }
        };
        let record = match existing
            .as_deref()
            .map(|raw| driftkv_wire::decode::<HintRecord>(driftkv_wire::RECORD_FORMAT_VERSION, raw))
        {
            Some(Ok(mut held)) => {
                held.object
                    .merge(self.cfg.bucket(key.bucket()).mode, object);
                held
            }
            _ => {
                if self.hints_pending() >= self.cfg.hints_max {
                    self.stats.hints_refused += 1;
                    return;
                }
                let waiting = self.hints.entry(primary.clone()).or_default();
                waiting.count += 1;
                // A new hint may be dated back to its write's start (a missed write): the
                // next look at this primary's hints is not skipped (see `hand_off`).
                waiting.quiet_until = None;
                self.stats.hints_stored += 1;
                HintRecord {
                    created_ms: now_ms,
                    object: object.clone(),
                }
            }
        };
        if store
            .put(
                &hint_key,
                &driftkv_wire::encode(driftkv_wire::RECORD_FORMAT_VERSION, &record),
            )
            .is_err()
        {
            self.stats.storage_errors += 1;
        }
    }

    pub(super) fn hint_missed_write(
        &mut self,
        store: &mut dyn Store,
        coord: &WriteCoord,
        node: &NodeId,
        hint: Option<&NodeId>,
    ) {
        let now_ms = coord
            .deadline_ms
            .saturating_sub(self.cfg.request_timeout_ms);
        self.hint_missed_write_at(store, now_ms, coord, node, hint);
    }

    /// Keeps a hint for the primary behind a replica that did not take a write.
    pub(super) fn hint_missed_write_at(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        coord: &WriteCoord,
        node: &NodeId,
        hint: Option<&NodeId>,
    ) {
        let primary = hint.unwrap_or(node).clone();
        if self.cfg.hinted_handoff && primary != self.cfg.id {
            self.store_hint(
                store,
                now_ms,
                &primary,
                coord.partition,
                &coord.key,
                &coord.object,
            );
        }
    }

    pub(super) fn forget_hint(&mut self, target: &NodeId) {
        if let Some(waiting) = self.hints.get_mut(target) {
            waiting.count = waiting.count.saturating_sub(1);
            if waiting.count == 0 {
                self.hints.remove(target);
            }
        }
    }

    /// Sends hints to their primaries that are up again, a bounded batch per primary.
    pub(super) fn hand_off(&mut self, store: &mut dyn Store, now_ms: u64, out: &mut Vec<Output>) {
        let waiting: Vec<NodeId> = self.hints.keys().cloned().collect();
        // The hints in flight to each primary, from one walk of the requests (at the first
        // primary looked at; the handoffs sent below are to primaries already past).
        let mut in_flight_to: Option<BTreeMap<NodeId, Vec<Vec<u8>>>> = None;
        for target in waiting {
            let up = self.is_up(&target);
            // For a down primary a look only expires hints. After a look that expired none,
            // with none of its hints in flight, the batch looked at (the first in key order)
            // changes only by new hints, and a new hint ends the skip (`store_hint`; it may be
            // dated back). So nothing can expire before the batch's earliest expiry: until
            // then the look is skipped (a thousand-node cluster keeps hints for many down
            // members, and read and decoded them on every tick). A look that expired some
            // is followed by another on the next tick: the batch moved on to later keys.
            let Some(waiting) = self.hints.get_mut(&target) else {
                continue;
            };
            if up {
                waiting.quiet_until = None;
            } else if waiting.quiet_until.is_some_and(|until| now_ms < until) {
                continue;
            }
            let in_flight = in_flight_to
                .get_or_insert_with(|| {
                    let mut by_target: BTreeMap<NodeId, Vec<Vec<u8>>> = BTreeMap::new();
                    for p in self.pending.of_class(HANDOFF) {
                        if let Pending::Handoff(h) = p {
                            by_target
                                .entry(h.target.clone())
                                .or_default()
                                .push(h.hint_key.clone());
                        }
                    }
                    by_target
                })
                .remove(&target)
                .unwrap_or_default();
            if up && in_flight.len() >= self.cfg.handoff_batch_max {
                continue;
            }
            let room = self.cfg.handoff_batch_max - in_flight.len().min(self.cfg.handoff_batch_max);
            let batch = match store.scan(&keys::hint_prefix(&target), None, room + in_flight.len())
            {
                Ok(batch) => batch,
                Err(_) => {
                    self.stats.storage_errors += 1;
                    continue;
                }
            };
            if batch.is_empty() {
                self.hints.remove(&target);
                continue;
            }
            let mut earliest_expiry: Option<u64> = None;
            let mut expired_seen = false;
            for (hint_key, raw) in batch {
                if in_flight.contains(&hint_key) {
                    continue;
                }
                let record =
                    driftkv_wire::decode::<HintRecord>(driftkv_wire::RECORD_FORMAT_VERSION, &raw);
                let expiry = record
                    .as_ref()
                    .ok()
                    .map(|r| r.created_ms.saturating_add(self.cfg.hint_age_max_ms));
                let Some(expiry) = expiry.filter(|e| *e > now_ms) else {
                    // Expired, or unreadable.
                    expired_seen = true;
                    if store.delete(&hint_key).is_ok() {
                        self.stats.hints_expired += 1;
                        self.forget_hint(&target);
                    }
                    continue;
                };
                if !up {
                    earliest_expiry = Some(earliest_expiry.map_or(expiry, |e| e.min(expiry)));
                    continue;
                }
                let Some((_, data_key)) = keys::parse_hint_key(&hint_key) else {
                    continue;
                };
                let Some((_, key)) = keys::parse_data_key(data_key) else {
                    continue;
                };
                let record = record.expect("checked above");
                let req = self.new_req();
                out.push(Output::Send {
                    to: target.clone(),
                    message: Message::ReplicaWrite {
                        req,
                        key,
                        object: record.object,
                        hint: None,
                    },
                });
                let handoff = Handoff {
                    target: target.clone(),
                    hint_key,
                    sent: raw,
                    deadline_ms: now_ms + self.cfg.request_timeout_ms,
                };
                self.pending.insert(req, Pending::Handoff(handoff));
            }
            // (All of its hints may have expired, and the primary be forgotten with them.)
            if let Some(waiting) = self.hints.get_mut(&target) {
                waiting.quiet_until =
                    earliest_expiry.filter(|_| !up && in_flight.is_empty() && !expired_seen);
            }
        }
    }
}
