//! The register checks, per key:
//!
//! - `acknowledged_writes_survive`: every acknowledged write is in the final state, or was
//!   replaced by a write that had seen it, or (lww mode) lost a race to a concurrent write with
//!   a later (timestamp, dot), counted as "lost by lww"; its dot must be in the final context.
//! - `siblings_only_for_concurrent_writes`: no two final values coexist if one's write had read
//!   the other; lww keys never end with two values.
//! - `reads_return_written_values`: every final value is one some client wrote.
//!
//! A write "saw" a dot when, in siblings mode, its client's context held it; in lww mode, when
//! one of its coordinators' states did. A delete is a write of a tombstone that saw what its
//! coordinator held, in either mode (`WriteRec::saw`).

use bytes::Bytes;
use driftkv_causal::{Actor, ConflictMode, Dot, Timestamp, VersionVector};
use driftkv_wire::{Key, Object};

use super::{Collector, Findings, dots_of, text};
use crate::history::{Coordination, History, Outcome};
use crate::world::{Outcomes, describe};

/// A coordination whose dot landed (is in the final context): the write, by index into
/// `History::writes`, the coordination, and its dot.
type Landed<'a> = (usize, &'a Coordination, &'a Dot);

/// A final sibling: its dot, and its value (`None` for a deletion's tombstone).
type Sibling<'a> = (&'a Dot, Option<&'a Bytes>);

pub(super) fn check_registers(h: &History, o: &Outcomes, c: &mut Collector, f: &mut Findings) {
    let by_key = WritesByKey::of(h);
    // Per-key working lists, reused from key to key (most keys have a write or two).
    let mut landed: Vec<Landed> = Vec::new();
    let mut reach = Reach::default();
    let empty_context = VersionVector::new();
    for (slot, writes) in by_key.iter().enumerate() {
        if writes.is_empty() {
            continue;
        }
        let key = &h.keys[slot].key;
        let mode = h.keys[slot].kind.mode();
        let Some((siblings, context)) = final_register(o, slot, key, &empty_context, c) else {
            continue;
        };
        count_siblings(key, mode, siblings.len(), c, f);
        collect_landed(h, writes, context, &mut landed);
        reach.measure(h, mode, &landed);
        let k = RegisterKey {
            h,
            final_object: o.final_objects[slot].as_ref(),
            key,
            mode,
            siblings,
            context,
            landed: &landed,
            reach: &reach,
        };
        for &w in writes {
            k.judge_acked_write(w, c, f);
        }
        k.check_final_siblings(c);
    }
}

/// Every write's index, grouped by key slot in slot order: one list of every write, grouped by
/// a counting sort, not a vector per key.
struct WritesByKey {
    /// Where each slot's writes start in `grouped`; one more entry than slots.
    starts: Vec<usize>,
    grouped: Vec<usize>,
}

impl WritesByKey {
    fn of(h: &History) -> WritesByKey {
        let mut starts = vec![0usize; h.keys.len() + 1];
        for rec in &h.writes {
            starts[rec.key + 1] += 1;
        }
        for slot in 0..h.keys.len() {
            starts[slot + 1] += starts[slot];
        }
        let mut grouped = vec![0usize; h.writes.len()];
        let mut next = starts.clone();
        for (w, rec) in h.writes.iter().enumerate() {
            grouped[next[rec.key]] = w;
            next[rec.key] += 1;
        }
        WritesByKey { starts, grouped }
    }

    /// For each key slot in order, its writes in the order they were issued.
    fn iter(&self) -> impl Iterator<Item = &[usize]> {
        self.starts
            .windows(2)
            .map(|span| &self.grouped[span[0]..span[1]])
    }
}

/// The key's final siblings and context (empty if no replica holds it); `None`, after
/// reporting it, if it ends as something other than a register.
fn final_register<'a>(
    o: &'a Outcomes,
    slot: usize,
    key: &Key,
    empty_context: &'a VersionVector,
    c: &mut Collector,
) -> Option<(Vec<Sibling<'a>>, &'a VersionVector)> {
    match &o.final_objects[slot] {
        Some(Object::Register(r)) => Some((
            r.dvv()
                .siblings()
                .map(|(d, s)| (d, s.value.as_ref()))
                .collect(),
            r.context(),
        )),
        Some(other) => {
            c.fail(
                "acknowledged_writes_survive",
                format!(
                    "{key:?} ends as a {} instead of a register",
                    other.kind().name()
                ),
            );
            None
        }
        None => Some((Vec::new(), empty_context)),
    }
}

/// Counts keys ending with siblings (and the most any had); an lww key must end with one value.
fn count_siblings(
    key: &Key,
    mode: ConflictMode,
    siblings: usize,
    c: &mut Collector,
    f: &mut Findings,
) {
    if siblings > 1 {
        f.keys_with_siblings_at_end += 1;
    }
    f.siblings_at_end_max = f.siblings_at_end_max.max(siblings);
    if mode == ConflictMode::Lww && siblings > 1 {
        c.fail(
            "siblings_only_for_concurrent_writes",
            format!("lww key {key:?} ends with {siblings} values"),
        );
    }
}

/// Fills `landed` with the coordinations of `writes` whose dots are in the final `context`.
fn collect_landed<'a>(
    h: &'a History,
    writes: &[usize],
    context: &VersionVector,
    landed: &mut Vec<Landed<'a>>,
) {
    landed.clear();
    landed.extend(
        writes
            .iter()
            .flat_map(|&x| {
                h.writes[x]
                    .coordinations
                    .iter()
                    .filter(|cd| !cd.void)
                    .filter_map(move |cd| cd.dot.as_ref().map(|d| (x, cd, d)))
            })
            .filter(|(_, _, d)| context.contains(d)),
    );
}

/// How far one actor's counter was seen by the writes with a landed dot.
#[derive(Clone, Copy)]
struct ActorReach {
    /// The highest counter any of them saw ...
    best: u64,
    /// ... which write saw it (`NO_WRITE` before any did) ...
    by: usize,
    /// ... and the highest counter any write other than `by` saw.
    other: u64,
}

/// `ActorReach::by` before any write was counted.
const NO_WRITE: usize = usize::MAX;

/// How far the writes with a landed dot saw, per actor. A write `w` was seen by some other
/// landed write exactly when that other write's counter reaches its dot. (A few actors: a list
/// looked through, not a tree.)
#[derive(Default)]
struct Reach<'a> {
    actors: Vec<(&'a Actor, ActorReach)>,
}

impl<'a> Reach<'a> {
    /// Measures what the writes of `landed` (grouped by write) saw, forgetting the last key's.
    fn measure(&mut self, h: &'a History, mode: ConflictMode, landed: &[Landed<'a>]) {
        self.actors.clear();
        let mut last = None;
        for &(x, _, _) in landed {
            if last == Some(x) {
                continue;
            }
            last = Some(x);
            let rec = &h.writes[x];
            if mode == ConflictMode::Siblings && !rec.delete {
                for (actor, &counter) in rec.context_in.iter() {
                    self.bump(actor, counter, x);
                }
            } else {
                for cd in rec.coordinations.iter().filter(|cd| !cd.void) {
                    for (actor, &counter) in cd.context_after.iter() {
                        self.bump(actor, counter, x);
                    }
                }
            }
        }
    }

    /// Write `x` saw `actor` up to `counter`.
    fn bump(&mut self, actor: &'a Actor, counter: u64, x: usize) {
        let at = match self.actors.iter().position(|(a, _)| *a == actor) {
            Some(at) => at,
            None => {
                let none = ActorReach {
                    best: 0,
                    by: NO_WRITE,
                    other: 0,
                };
                self.actors.push((actor, none));
                self.actors.len() - 1
            }
        };
        let e = &mut self.actors[at].1;
        if counter > e.best {
            if e.by != x {
                e.other = e.best;
            }
            e.best = counter;
            e.by = x;
        } else if counter > e.other && e.by != x {
            e.other = counter;
        }
    }

    /// Whether a landed write other than `w` saw dot `d`.
    fn seen_by_another(&self, w: usize, d: &Dot) -> bool {
        let found = self.actors.iter().find(|(a, _)| **a == d.actor);
        found.is_some_and(|(_, r)| {
            let counter = if r.by == w { r.other } else { r.best };
            d.counter <= counter
        })
    }
}

/// One register key as the checks see it, once its landed writes are measured.
struct RegisterKey<'a> {
    h: &'a History,
    final_object: Option<&'a Object>,
    key: &'a Key,
    mode: ConflictMode,
    siblings: Vec<Sibling<'a>>,
    context: &'a VersionVector,
    landed: &'a [Landed<'a>],
    reach: &'a Reach<'a>,
}

impl RegisterKey<'_> {
    /// Whether write `x` saw dot `d` (see the module's note on "saw").
    fn saw(&self, x: usize, d: &Dot) -> bool {
        self.h.writes[x].saw(self.mode, d)
    }

    fn is_sibling(&self, d: &Dot) -> bool {
        self.siblings.iter().any(|(s, _)| *s == d)
    }

    /// `acknowledged_writes_survive` for write `w`, if it was acknowledged: applied, seen, and
    /// either still a final value or replaced by the rules.
    fn judge_acked_write(&self, w: usize, c: &mut Collector, f: &mut Findings) {
        let rec = &self.h.writes[w];
        if rec.outcome != Outcome::Acked {
            return;
        }
        if self.mode == ConflictMode::Lww {
            f.lww_acked_writes += 1;
        }
        let key = self.key;
        let dots = dots_of(&rec.coordinations);
        if dots.is_empty() && rec.delete {
            // Its coordinator held nothing of the key, so it wrote nothing (as it answered).
            return;
        }
        if dots.is_empty() {
            c.fail(
                "acknowledged_writes_survive",
                format!(
                    "the write of {:?} to {key:?} was acknowledged but no coordinator applied it",
                    text(&rec.value)
                ),
            );
            return;
        }
        let seen: Vec<&Dot> = dots
            .iter()
            .copied()
            .filter(|d| self.context.contains(d))
            .collect();
        if seen.is_empty() {
            c.fail(
                "acknowledged_writes_survive",
                format!(
                    "the acknowledged write of {:?} to {key:?} (dot {:?}) is gone: no replica has seen it; final copy {}",
                    text(&rec.value),
                    dots[0],
                    describe(self.final_object)
                ),
            );
            return;
        }
        if seen.iter().any(|d| self.is_sibling(d)) {
            return;
        }
        self.judge_replaced(w, &seen, c, f);
    }

    /// An acknowledged write `w` whose `seen` dots are not among the final values: it must
    /// have been replaced by a write that had seen it, or (lww) have lost a race.
    fn judge_replaced(&self, w: usize, seen: &[&Dot], c: &mut Collector, f: &mut Findings) {
        let rec = &self.h.writes[w];
        let key = self.key;
        let replaced_causally = seen.iter().any(|d| self.reach.seen_by_another(w, d));
        match self.mode {
            ConflictMode::Siblings if !replaced_causally => c.fail(
                "acknowledged_writes_survive",
                format!(
                    "the acknowledged write of {:?} to {key:?} was replaced by no write that had seen it; final copy {}",
                    text(&rec.value),
                    describe(self.final_object)
                ),
            ),
            ConflictMode::Siblings => {}
            ConflictMode::Lww => {
                if self.lost_lww_race(w) {
                    f.writes_lost_by_lww += 1;
                } else if !replaced_causally {
                    c.fail(
                        "acknowledged_writes_survive",
                        format!(
                            "the acknowledged lww write of {:?} to {key:?} was replaced by no write that had seen it and lost no race to a concurrent one; final copy {}",
                            text(&rec.value),
                            describe(self.final_object)
                        ),
                    );
                }
            }
        }
    }

    /// Whether lww write `w` lost a race: a concurrent landed write (neither coordinator had
    /// seen the other) won by its later (timestamp, dot). That is the lww rule at work.
    fn lost_lww_race(&self, w: usize) -> bool {
        let mine: Vec<(Option<Timestamp>, &Dot)> = self.h.writes[w]
            .coordinations
            .iter()
            .filter(|cd| !cd.void)
            .filter_map(|cd| cd.dot.as_ref().map(|d| (cd.timestamp, d)))
            .collect();
        self.landed.iter().any(|&(x, cx, dx)| {
            x != w
                && mine.iter().all(|(tw, dw)| {
                    !cx.context_after.contains(dw)
                        && !self.saw(w, dx)
                        && (cx.timestamp, dx) > (*tw, *dw)
                })
        })
    }

    /// The final siblings: each a value some client wrote, and pairwise concurrent.
    fn check_final_siblings(&self, c: &mut Collector) {
        let sibling_writes = self.sibling_writes(c);
        let key = self.key;
        for (i, (da, a)) in sibling_writes.iter().enumerate() {
            for (db, b) in &sibling_writes[i + 1..] {
                let a_saw_b = self.h.writes[*a].context_in.contains(db);
                let b_saw_a = self.h.writes[*b].context_in.contains(da);
                if a_saw_b || b_saw_a {
                    c.fail(
                        "siblings_only_for_concurrent_writes",
                        format!(
                            "{key:?} ends with siblings {:?} and {:?}, but one's write had read the other",
                            text(&self.h.writes[*a].value),
                            text(&self.h.writes[*b].value)
                        ),
                    );
                }
            }
        }
    }

    /// The write of each final sibling that holds a value, with its dot; a value no client
    /// wrote is reported.
    fn sibling_writes(&self, c: &mut Collector) -> Vec<(&Dot, usize)> {
        let mut found = Vec::new();
        for &(dot, value) in &self.siblings {
            let Some(value) = value else { continue };
            // The write whose coordination made the dot, found among the few that landed
            // (values name their writes: the table by value is the fallback).
            let by_dot = self
                .landed
                .iter()
                .find(|(x, _, d)| *d == dot && self.h.writes[*x].value == *value)
                .map(|(x, _, _)| x);
            match by_dot.or_else(|| self.h.write_by_value.get(value)) {
                Some(&w) => found.push((dot, w)),
                None => c.fail(
                    "reads_return_written_values",
                    format!(
                        "{:?} ends holding {:?}, which no client wrote",
                        self.key,
                        text(value)
                    ),
                ),
            }
        }
        found
    }
}
