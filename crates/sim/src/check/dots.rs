//! `dots_issued_once`: no two writes (register writes, set adds) of one key got the same dot.
//! A reissued dot makes the second write invisible wherever the first was seen (Riak's kv679);
//! the other checks reason by dots, so this one guards them.

use driftkv_causal::Dot;
use driftkv_core::fasthash::FastMap;

use super::{Collector, text};
use crate::history::{Coordination, History};

/// What issued a dot: a write or a set add, by index (named only if a check fails).
#[derive(Clone, Copy)]
enum Source {
    Write(usize),
    Add(usize),
    MapOp(usize),
}

impl Source {
    /// The write's value, or the added member, as a failure text names it.
    fn name(self, h: &History) -> String {
        match self {
            Source::Write(w) => text(&h.writes[w].value),
            Source::Add(s) => format!("add {}", text(&h.set_ops[s].member)),
            Source::MapOp(m) => format!("map update {:?}", h.map_ops[m].op),
        }
    }
}

pub(super) fn check_dots_issued_once(h: &History, c: &mut Collector) {
    // About a dot per write and add: sized once rather than grown through every doubling.
    let mut issued: FastMap<(usize, &Dot), (Source, u64)> = FastMap::with_capacity_and_hasher(
        h.writes.len() + h.set_ops.len() + h.map_ops.len(),
        Default::default(),
    );
    for (key, source, coordinations) in dot_issuers(h) {
        for cd in coordinations.iter().filter(|cd| !cd.void) {
            let Some(dot) = cd.dot.as_ref() else { continue };
            match issued.get(&(key, dot)) {
                Some(&(first, at_us)) => {
                    report_reissue(h, c, key, dot, (first, at_us), source, cd);
                }
                None => {
                    issued.insert((key, dot), (source, cd.at_us));
                }
            }
        }
    }
}

/// Every write, then every set add: its key slot, what it is, and its coordinations.
fn dot_issuers(h: &History) -> impl Iterator<Item = (usize, Source, &[Coordination])> {
    let writes = h
        .writes
        .iter()
        .enumerate()
        .map(|(i, w)| (w.key, Source::Write(i), &*w.coordinations));
    let adds = h
        .set_ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.add)
        .map(|(i, op)| (op.key, Source::Add(i), &*op.coordinations));
    let map_ops = h
        .map_ops
        .iter()
        .enumerate()
        .map(|(i, op)| (op.key, Source::MapOp(i), &*op.coordinations));
    writes.chain(adds).chain(map_ops)
}

/// A dot issued a second time: by whom, when, and for what, both times.
fn report_reissue(
    h: &History,
    c: &mut Collector,
    key: usize,
    dot: &Dot,
    (first, first_at_us): (Source, u64),
    again: Source,
    cd: &Coordination,
) {
    let what = format!(
        "dot {dot:?} of {:?} was issued for {:?} at {} and again for {:?} by n{} at {}: the second write is invisible wherever the first was seen",
        h.keys[key].key,
        first.name(h),
        c.at(first_at_us),
        again.name(h),
        cd.node + 1,
        c.at(cd.at_us)
    );
    c.fail("dots_issued_once", what);
}
