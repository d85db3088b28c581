//! Key listing: one page of a bucket's live keys, gathered partition by partition from every
//! replica that can be reached (a covering read, as Riak's coverage queries), with a cursor
//! that carries the partition and the last record passed there.
//!
//! Within a partition, records are in stored order (segment, bucket, key), which is the same
//! on every replica; each replica answers the keys it holds after the cursor, at most
//! [`LIST_SCAN_RECORDS_MAX`] records looked at. The coordinator takes the union, cut at the
//! earliest place a replica stopped (past it, that replica has not spoken yet), and decides
//! each key's liveness from the copy that has seen the others (a tombstone that has seen a
//! stale value wins), or, with concurrent copies, from any live one.

use super::*;
use driftkv_wire::{ListCursor, Listed};

/// The most keys one page may ask for.
pub const LIST_LIMIT_MAX: u32 = 10_000;

/// The most records a replica looks at to answer one part of a listing (live or not, of any
/// bucket): bounds the time one listing message holds the node thread.
pub const LIST_SCAN_RECORDS_MAX: usize = 4096;

/// The most partition rounds one page takes before it answers with what it has (and a cursor):
/// a page over a nearly empty bucket ends in bounded time.
pub const LIST_ROUNDS_PER_PAGE_MAX: u32 = 256;

/// One replica's answer for the current round.
#[derive(Debug)]
pub(super) struct ListAnswer {
    keys: Vec<Listed>,
    last: Option<Bytes>,
    more: bool,
}

#[derive(Debug)]
pub(super) struct ListCoord {
    pub(super) waiter: Waiter,
    /// The bucket, and the prefix as its key.
    prefix: Key,
    limit: usize,
    /// Pages end only at a segment's end (RESP `SCAN`).
    whole_segments: bool,
    /// With `whole_segments`: the page is full, and the segment of its last key is being
    /// finished.
    finishing: Option<u16>,
    /// Where this round reads: a partition and the record passed there.
    partition: u32,
    after: Option<Bytes>,
    /// Where the page started: a whole-segment page answers only once it got past it.
    page_start: (u32, Option<Bytes>),
    rounds: u32,
    /// The keys of the page so far, each with what it holds and its record position.
    found: Vec<(Bytes, ObjectKind, Vec<u8>)>,
    answers: Vec<ListAnswer>,
    awaiting: Vec<NodeId>,
    pub(super) deadline_ms: u64,
}

impl Node {
    pub(super) fn start_listing(&mut self, cx: &mut Step<'_>, waiter: Waiter, request: Request) {
        let Request::ListKeys {
            key,
            after,
            limit,
            whole_segments,
        } = request
        else {
            return;
        };
        let partitions = self.ring().partitions_count();
        let (partition, after) = match after {
            None => (0, None),
            Some(ListCursor { partition, after }) => {
                if partition >= partitions {
                    let reply = Reply::error(
                        ErrorKind::BadRequest,
                        "the listing cursor names a partition this cluster does not have",
                    );
                    return self.answer(waiter, reply, cx.out);
                }
                let prefix = keys::partition_prefix(PartitionId(partition));
                if after.as_ref().is_some_and(|a| !a.starts_with(&prefix)) {
                    let reply = Reply::error(ErrorKind::BadRequest, "malformed listing cursor");
                    return self.answer(waiter, reply, cx.out);
                }
                (partition, after)
            }
        };
        self.stats.listings += 1;
        let coord = ListCoord {
            waiter,
            prefix: key,
            limit: limit as usize,
            whole_segments,
            finishing: None,
            page_start: (partition, after.clone()),
            partition,
            after,
            rounds: 0,
            found: Vec::new(),
            answers: Vec::new(),
            awaiting: Vec::new(),
            deadline_ms: 0,
        };
        self.listing_round(cx, coord);
    }

    /// Asks every reachable replica of the coordination's partition for its part.
    fn listing_round(&mut self, cx: &mut Step<'_>, mut coord: ListCoord) {
        let partition = PartitionId(coord.partition);
        let n = self.n_for(&coord.prefix);
        let targets: Vec<NodeId> = self
            .targets(partition, n)
            .into_iter()
            .map(|(node, _)| node)
            .collect();
        if targets.is_empty() {
            let reply = Reply::unavailable(
                format!("no replica of partition {} is reachable", coord.partition),
                0,
                1,
            );
            return self.answer(coord.waiter, reply, cx.out);
        }
        coord.rounds += 1;
        coord.answers.clear();
        coord.awaiting.clear();
        coord.deadline_ms = cx.now_ms + self.cfg.request_timeout_ms;
        // A page finishing a segment takes every key left in it (a segment is small).
        let wanted = match coord.finishing {
            Some(_) => LIST_LIMIT_MAX,
            None => (coord.limit - coord.found.len()) as u32,
        };
        let req = self.new_req();
        for node in targets {
            if node == self.cfg.id {
                let answer = self.list_here(
                    &*cx.store,
                    cx.now_ms,
                    partition,
                    &coord.prefix,
                    coord.after.as_deref(),
                    wanted,
                );
                coord.answers.push(answer);
            } else {
                cx.out.push(Output::Send {
                    to: node.clone(),
                    message: Message::ListRead {
                        req,
                        partition: coord.partition,
                        prefix: coord.prefix.clone(),
                        after: coord.after.clone(),
                        limit: wanted,
                    },
                });
                coord.awaiting.push(node);
            }
        }
        if coord.awaiting.is_empty() {
            return self.listing_round_done(cx, coord);
        }
        self.pending.insert(req, Pending::List(Box::new(coord)));
    }

    /// A replica's part of a listing: the keys of `prefix`'s bucket starting with its key,
    /// after `after`, in stored order.
    fn list_here(
        &mut self,
        store: &dyn Store,
        now_ms: u64,
        partition: PartitionId,
        prefix: &Key,
        after: Option<&[u8]>,
        wanted: u32,
    ) -> ListAnswer {
        let range = keys::partition_prefix(partition);
        let after = after.filter(|a| a.starts_with(&range));
        let now_ms = self.expiry_now(now_ms);
        let (mut walked, mut taken) = (0usize, 0usize);
        let mut last: Option<Vec<u8>> = None;
        let mut keys_found = Vec::new();
        let lent: &dyn Store = store;
        let scanned = lent.scan_with(&range, after, LIST_SCAN_RECORDS_MAX, &mut |raw_key, raw| {
            walked += 1;
            if keys_found.len() >= wanted as usize {
                return;
            }
            taken += 1;
            last = Some(raw_key.to_vec());
            let Some((_, key)) = keys::parse_data_key(raw_key) else {
                return;
            };
            if key.bucket() != prefix.bucket() || !key.key().starts_with(prefix.key()) {
                return;
            }
            let object = match self.cached(lent, partition, &key) {
                Some(cached) => cached.object.clone(),
                None => match driftkv_wire::decode_object(raw) {
                    Ok(object) => object,
                    Err(_) => return,
                },
            };
            keys_found.push(Listed {
                key: key.key().clone(),
                kind: object.kind(),
                live: object.is_live_at(now_ms),
                context: object.version_vector().cloned(),
            });
        });
        if scanned.is_err() {
            self.stats.storage_errors += 1;
        }
        ListAnswer {
            keys: keys_found,
            last: last.map(Bytes::from),
            more: taken < walked || walked == LIST_SCAN_RECORDS_MAX,
        }
    }

    /// A peer coordinating a listing asks for this replica's part.
    pub(super) fn on_list_read(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        req: ReqId,
        read: (u32, Key, Option<Bytes>, u32),
    ) {
        let (partition, prefix, after, limit) = read;
        if partition >= self.ring().partitions_count() {
            return;
        }
        let wanted = limit.min(LIST_LIMIT_MAX);
        let answer = self.list_here(
            &*cx.store,
            cx.now_ms,
            PartitionId(partition),
            &prefix,
            after.as_deref(),
            wanted,
        );
        cx.out.push(Output::Send {
            to: from,
            message: Message::ListReadReply {
                req,
                keys: answer.keys,
                last: answer.last,
                more: answer.more,
            },
        });
    }

    pub(super) fn on_list_read_reply(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        req: ReqId,
        reply: (Vec<Listed>, Option<Bytes>, bool),
    ) {
        let Some(Pending::List(coord)) = self.pending.get_mut(&req) else {
            return;
        };
        let Some(at) = coord.awaiting.iter().position(|n| *n == from) else {
            return;
        };
        coord.awaiting.swap_remove(at);
        let (keys, last, more) = reply;
        // Only keys of the asked range count: a reply is a peer's word, bounded like one.
        let mut keys = keys;
        keys.truncate(LIST_LIMIT_MAX as usize);
        coord.answers.push(ListAnswer { keys, last, more });
        if !coord.awaiting.is_empty() {
            return;
        }
        let Some(Pending::List(coord)) = self.pending.remove(&req) else {
            unreachable!("looked at above")
        };
        self.listing_round_done(cx, *coord);
    }

    /// A round past its deadline: what answered is taken, if anything did besides nothing.
    pub(super) fn listing_expired(&mut self, cx: &mut Step<'_>, coord: ListCoord) {
        if coord.answers.is_empty() {
            let reply = Reply::unavailable(
                format!(
                    "no replica of partition {} answered the listing in time",
                    coord.partition
                ),
                0,
                1,
            );
            return self.answer(coord.waiter, reply, cx.out);
        }
        self.listing_round_done(cx, coord);
    }

    /// Every replica of the round answered (or the deadline passed): the union taken, and the
    /// next round started or the page answered.
    fn listing_round_done(&mut self, cx: &mut Step<'_>, mut coord: ListCoord) {
        let partition = PartitionId(coord.partition);
        // Past the earliest place a replica with more stopped, that replica has not spoken.
        let cut: Option<Bytes> = coord
            .answers
            .iter()
            .filter(|a| a.more)
            .filter_map(|a| a.last.clone())
            .min();
        let mut merged: BTreeMap<Vec<u8>, (Bytes, Vec<Listed>)> = BTreeMap::new();
        for answer in std::mem::take(&mut coord.answers) {
            for listed in answer.keys {
                let key = Key::new(coord.prefix.bucket().clone(), listed.key.clone());
                let position = keys::data_key(partition, &key);
                if cut
                    .as_ref()
                    .is_some_and(|c| position.as_slice() > c.as_ref())
                {
                    continue;
                }
                // A peer's key at or before where this round started is not of this round.
                if coord
                    .after
                    .as_ref()
                    .is_some_and(|a| position.as_slice() <= a.as_ref())
                {
                    continue;
                }
                merged
                    .entry(position)
                    .or_insert_with(|| (listed.key.clone(), Vec::new()))
                    .1
                    .push(listed);
            }
        }
        // Whether the page is complete, and where the next one starts in this partition.
        let mut next_after = cut.clone();
        let mut full = false;
        for (position, (key, copies)) in merged {
            let segment = keys::segment_of_position(&position).unwrap_or(0);
            if let Some(s) = coord.finishing
                && segment != s
            {
                // The segment being finished is done: the page ends at its end.
                next_after = Some(Bytes::from(keys::segment_end(partition, s)));
                full = true;
                break;
            }
            if let Some(kind) = live_kind(&copies) {
                coord.found.push((key, kind, position.clone()));
                if coord.found.len() >= coord.limit && coord.finishing.is_none() {
                    if coord.whole_segments {
                        coord.finishing = Some(segment);
                    } else {
                        next_after = Some(Bytes::from(position));
                        full = true;
                        break;
                    }
                }
            }
        }
        // Every record up to the cut is known: a cut past the segment being finished ends it.
        if let (Some(s), false, Some(c)) = (coord.finishing, full, cut.as_deref())
            && keys::segment_of_position(c).is_some_and(|seg| seg > s)
        {
            next_after = Some(Bytes::from(keys::segment_end(partition, s)));
            full = true;
        }
        let partition_done = !full && cut.is_none();
        if partition_done && coord.finishing.is_some() {
            // The partition ended inside the segment being finished: the page ends with it.
            full = true;
            next_after = None;
            coord.partition += 1;
        } else if partition_done {
            coord.partition += 1;
            next_after = None;
        }
        coord.after = next_after;
        let partitions = self.ring().partitions_count();
        if coord.partition >= partitions {
            return self.answer_page(cx, coord, None);
        }
        if full {
            let next = ListCursor {
                partition: coord.partition,
                after: coord.after.clone(),
            };
            return self.answer_page(cx, coord, Some(next));
        }
        if coord.rounds >= LIST_ROUNDS_PER_PAGE_MAX {
            // A long page ends with what it has. With whole segments it ends where the last
            // segment it knows completely ends: keys of the segment it is inside go to the
            // next page; unless no segment completed since the page started (one segment of
            // over a million records), when it goes on until one does, or it would answer
            // its own cursor again and never end.
            let mut next = (coord.partition, coord.after.clone());
            let mut keep = coord.found.len();
            if coord.whole_segments
                && let Some(at) = coord.after.as_deref()
            {
                let s = keys::segment_of_position(at).unwrap_or(0);
                let here = keys::partition_prefix(partition);
                keep = coord
                    .found
                    .iter()
                    .filter(|(_, _, pos)| {
                        !pos.starts_with(&here)
                            || keys::segment_of_position(pos).is_none_or(|seg| seg < s)
                    })
                    .count();
                next.1 = s
                    .checked_sub(1)
                    .map(|prev| Bytes::from(keys::segment_end(partition, prev)));
            }
            if next != coord.page_start {
                // Found keys are in listing order: those kept are a prefix.
                coord.found.truncate(keep);
                coord.after = next.1.clone();
                let next = ListCursor {
                    partition: next.0,
                    after: next.1,
                };
                return self.answer_page(cx, coord, Some(next));
            }
        }
        self.listing_round(cx, coord);
    }

    /// Answers the page: its keys, and where the next one starts (`None`: the end).
    fn answer_page(&mut self, cx: &mut Step<'_>, coord: ListCoord, next: Option<ListCursor>) {
        let reply = Reply::Keys {
            keys: coord
                .found
                .into_iter()
                .map(|(k, kind, _)| (k, kind))
                .collect(),
            next,
        };
        self.answer(coord.waiter, reply, cx.out);
    }
}

/// Whether a key is live, from the replicas' copies of it, and what it holds: the copy whose
/// context has seen every other's decides; with concurrent copies, any live one does.
fn live_kind(copies: &[Listed]) -> Option<ObjectKind> {
    fn ctx(l: &Listed) -> Option<&VersionVector> {
        l.context.as_ref()
    }
    // Counters carry no context: any live copy decides.
    let decider = copies.iter().find(|c| {
        ctx(c).is_some_and(|mine| {
            copies
                .iter()
                .all(|o| ctx(o).is_none_or(|theirs| mine.descends(theirs)))
        })
    });
    match decider {
        Some(c) if copies.iter().all(|o| o.kind == c.kind) => c.live.then_some(c.kind),
        _ => copies.iter().filter(|c| c.live).map(|c| c.kind).max(),
    }
}
