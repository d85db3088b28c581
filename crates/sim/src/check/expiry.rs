//! `expired_values_stay_gone`: writes with a TTL (`Request::Put { expires_ms, .. }`).
//!
//! The semantics (`driftkv_causal::register`): a value written with `expires_ms` reads as
//! deleted from that wall-clock millisecond on. The expiry travels inside the value's dot, so
//! every copy of the value (a hint, a repair, an anti-entropy exchange) carries it; a node
//! judges by its own clock, which in the simulator lags virtual time by at most the
//! scenario's skew (`Scenario::clock_lag_bound_ms`: `[clock_skew]` and `[clocks]` offsets and
//! drifts at their worst). Clients stamp `expires_ms` from an unskewed clock.
//!
//! Checked:
//!
//! - no register read was answered with a value by a node whose clock had reached that
//!   value's expiry;
//! - no register read answered at virtual time `t >= expires_ms + bound(t)` returned it (the
//!   first implies this; it is the promise as a client sees it);
//! - after settling, every primary's copy of a key written with TTLs keeps each value's
//!   expiry as it was written, and reads as missing (by the primary's clock at the end) when
//!   no value of the key can still be live: every value written to it has expired or was
//!   replaced by a landed write or delete that had seen it. An expired key never comes back:
//!   not its value, not an older value the expired one replaced.
//!
//! Measured: reads answered at or after a value's expiry in virtual time by a node whose
//! clock had not reached it yet (the skew at work), and how late the latest was.

use driftkv_causal::{ConflictMode, Register, VersionVector};
use driftkv_wire::Object;

use super::{Collector, DataTypeFindings, EXPIRY_CHECK, acked, text};
use crate::history::History;
use crate::scenario::Scenario;
use crate::world::{EPOCH_MS, Outcomes};

/// Microseconds in a millisecond.
const US_PER_MS: u64 = 1000;

pub(super) fn check_expiry(
    sc: &Scenario,
    h: &History,
    o: &Outcomes,
    c: &mut Collector,
    d: &mut DataTypeFindings,
) {
    d.ttl_writes_acknowledged = h
        .writes
        .iter()
        .filter(|w| w.expires_ms.is_some() && acked(&w.outcome))
        .count() as u64;
    let traffic_end_ms = (sc.warmup_ms + sc.duration_ms) as f64;
    d.clock_lag_bound_ms = (sc.clock_lag_bound_ms(traffic_end_ms) * 1000.0).round() / 1000.0;
    check_reads(sc, h, c, d);
    check_end(h, o, c);
}

/// Every read that returned a value written with an expiry, judged by when it was answered.
fn check_reads(sc: &Scenario, h: &History, c: &mut Collector, d: &mut DataTypeFindings) {
    for r in &h.expiring_reads {
        d.reads_of_expiring_values += 1;
        let key = &h.keys[r.key].key;
        let value = text(&h.writes[r.write].value);
        let at_us = r.answered_ms.saturating_sub(EPOCH_MS) * US_PER_MS;
        if r.node_ms >= r.expires_ms {
            c.fail(
                EXPIRY_CHECK,
                format!(
                    "n{} answered a read of {key:?} with {value:?} at {} by its clock {} ms past the value's expiry",
                    r.node + 1,
                    c.at(at_us),
                    r.node_ms - r.expires_ms
                ),
            );
            continue;
        }
        let bound = sc.clock_lag_bound_ms((at_us / US_PER_MS) as f64);
        if r.answered_ms as f64 >= r.expires_ms as f64 + bound {
            c.fail(
                EXPIRY_CHECK,
                format!(
                    "a read of {key:?} answered at {} returned {value:?}, {} ms past its expiry, beyond the clock skew bound of {bound:.3} ms",
                    c.at(at_us),
                    r.answered_ms - r.expires_ms
                ),
            );
        } else if r.answered_ms >= r.expires_ms {
            d.reads_past_expiry_within_skew += 1;
            d.past_expiry_max_ms = d.past_expiry_max_ms.max(r.answered_ms - r.expires_ms);
        }
    }
}

/// Every primary's copy of every key written with a TTL, at the end.
fn check_end(h: &History, o: &Outcomes, c: &mut Collector) {
    let mut keys: Vec<usize> = h
        .writes
        .iter()
        .filter(|w| w.expires_ms.is_some())
        .map(|w| w.key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let empty = VersionVector::new();
    for slot in keys {
        let mode = h.keys[slot].kind.mode();
        let context = match &o.final_objects[slot] {
            Some(Object::Register(reg)) => reg.context(),
            _ => &empty,
        };
        let writes: Vec<usize> = (0..h.writes.len())
            .filter(|&w| h.writes[w].key == slot)
            .collect();
        let copies = o.end_copies.get(slot).map_or(&[][..], |v| v.as_slice());
        for (node, copy) in copies {
            let node_ms = o.end_node_ms[*node];
            match copy {
                None => {}
                Some(Object::Register(reg)) => {
                    let k = TtlKey {
                        h,
                        slot,
                        mode,
                        context,
                        writes: &writes,
                    };
                    k.judge_copy(*node, node_ms, reg, c);
                }
                Some(other) => c.fail(
                    EXPIRY_CHECK,
                    format!(
                        "{:?} ends as a {} on n{}",
                        h.keys[slot].key,
                        other.kind().name(),
                        node + 1
                    ),
                ),
            }
        }
    }
}

/// A register key written with TTLs, as the end check sees it.
struct TtlKey<'a> {
    h: &'a History,
    slot: usize,
    mode: ConflictMode,
    /// The final context (the join of the primaries' copies).
    context: &'a VersionVector,
    /// The key's writes and deletes, as indices into `h.writes`.
    writes: &'a [usize],
}

impl TtlKey<'_> {
    /// One primary's copy at its clock `node_ms`: each value keeps its expiry, and the copy
    /// reads as missing when no value of the key can be live.
    fn judge_copy(&self, node: usize, node_ms: u64, reg: &Register, c: &mut Collector) {
        let key = &self.h.keys[self.slot].key;
        for sibling in reg.dvv().values() {
            let Some(value) = &sibling.value else {
                continue;
            };
            let Some(&w) = self.h.write_by_value.get(value) else {
                continue; // reads_return_written_values reports it
            };
            let written = self.h.writes[w].expires_ms;
            if sibling.expires_ms != written {
                c.fail(
                    EXPIRY_CHECK,
                    format!(
                        "n{}'s copy of {key:?} holds {:?} expiring at {:?}, but it was written expiring at {written:?}",
                        node + 1,
                        text(value),
                        sibling.expires_ms
                    ),
                );
            }
        }
        let live: Vec<String> = reg.values_at(node_ms).map(text).collect();
        if !live.is_empty() && !self.writes.iter().any(|&w| self.may_be_live(w, node_ms)) {
            c.fail(
                EXPIRY_CHECK,
                format!(
                    "{key:?} reads [{}] on n{} after settling, though every value written to it expired or was replaced by a write that had seen it",
                    live.join(", "),
                    node + 1
                ),
            );
        }
    }

    /// Whether write `w` may still be a live value at `node_ms`: a value (not a delete) that
    /// a coordinator applied, not expired, and not replaced by a landed write that saw it.
    fn may_be_live(&self, w: usize, node_ms: u64) -> bool {
        let rec = &self.h.writes[w];
        if rec.delete || rec.expires_ms.is_some_and(|e| e <= node_ms) {
            return false;
        }
        let dots: Vec<_> = rec
            .coordinations
            .iter()
            .filter(|cd| !cd.void)
            .filter_map(|cd| cd.dot.as_ref())
            .collect();
        !dots.is_empty() && dots.iter().any(|d| !self.replaced(w, d))
    }

    /// Whether another write or delete whose dot landed saw dot `d` (of write `w`).
    fn replaced(&self, w: usize, d: &driftkv_causal::Dot) -> bool {
        self.writes.iter().any(|&x| {
            x != w && {
                let rec = &self.h.writes[x];
                let landed = rec
                    .coordinations
                    .iter()
                    .filter(|cd| !cd.void)
                    .filter_map(|cd| cd.dot.as_ref())
                    .any(|dx| self.context.contains(dx));
                landed && rec.saw(self.mode, d)
            }
        })
    }
}
