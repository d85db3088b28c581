//! The replica: this node's copies of keys in the store, the object cache before it, and the
//! hash trees kept in step with every change.

use super::*;
use crate::config::WritePath;

/// What an update knows of the record it replaces, for the partition's hash tree.
#[derive(Clone, Copy, Debug)]
pub(super) enum Prior {
    /// Not read with the update (or no tree followed it then): `track` reads it if needed.
    Unread,
    /// The replaced record's tree entry, hashed as it was read (`None`: there was none).
    Entry(Option<u64>),
}

impl Prior {
    /// What a read of a record leaves for its update: its entry, if a tree follows the record.
    pub(super) fn read(follows: bool, entry: Option<u64>) -> Prior {
        if follows {
            Prior::Entry(entry)
        } else {
            Prior::Unread
        }
    }
}

/// Debug builds hold every object-cache hit to the store: the cached object encodes to exactly
/// the stored record, whose tree entry it carries (a cache out of step would otherwise hide).
#[cfg(debug_assertions)]
pub(super) fn check_cached(store: &dyn Store, record_key: &[u8], key: &Key, cached: &Cached) {
    let stored = store.get(record_key).ok().flatten();
    let encoded = driftkv_wire::encode_object(&cached.object);
    assert_eq!(
        stored.as_deref(),
        Some(&encoded[..]),
        "the object cache is out of step with the store for {key:?}"
    );
    assert_eq!(cached.entry, aae::entry_hash(record_key, &encoded));
}

impl Node {
    /// A coordinator's write for this replica (with the primary it stands in for, if a
    /// fallback): merged in, and acknowledged once durable.
    pub(super) fn on_replica_write(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        req: ReqId,
        key: &Key,
        object: &Object,
        hint: Option<&NodeId>,
    ) {
        let partition = self.partition_of(key);
        let ok = self
            .merge_into_store(cx.store, cx.now_ms, partition, key, object)
            .is_ok();
        if let (true, Some(primary)) = (ok, hint) {
            self.store_hint(cx.store, cx.now_ms, primary, partition, key, object);
        }
        let ack = Output::Send {
            to: from,
            message: Message::ReplicaWriteAck { req, ok },
        };
        cx.out.push(if ok { ack.durable() } else { ack });
    }

    /// A coordinator asks for this replica's copy.
    pub(super) fn on_replica_read(
        &mut self,
        cx: &mut Step<'_>,
        from: NodeId,
        req: ReqId,
        key: &Key,
    ) {
        let partition = self.partition_of(key);
        // An unreadable record answers as missing: the coordinator repairs it.
        let object = self.load(cx.store, partition, key).unwrap_or(None);
        cx.out.push(Output::Send {
            to: from,
            message: Message::ReplicaReadReply { req, object },
        });
    }

    /// A read's merge for this replica, which it was found lacking.
    pub(super) fn on_repair(&mut self, cx: &mut Step<'_>, key: &Key, object: &Object) {
        let partition = self.partition_of(key);
        self.merge_here(cx.store, cx.now_ms, partition, key, object);
    }

    pub(super) fn load(
        &mut self,
        store: &dyn Store,
        partition: PartitionId,
        key: &Key,
    ) -> Result<Option<Object>, String> {
        if let Some(cached) = self.cached(store, partition, key) {
            return Ok(Some(cached.object.clone()));
        }
        let record_key = keys::data_key(partition, key);
        self.read_record(store, partition, &record_key, key)
            .map(|(object, _)| object)
    }

    /// Reads a data record, decoded (from the object cache, or decoded in place with no copy of
    /// the stored bytes), with what an update of it will need to know for the partition's hash
    /// tree.
    pub(super) fn read_record(
        &mut self,
        store: &dyn Store,
        partition: PartitionId,
        record_key: &[u8],
        key: &Key,
    ) -> Result<(Option<Object>, Prior), String> {
        let follows = self.tree_follows(partition, record_key);
        if let Some(cached) = self.cached(store, partition, key) {
            let prior = Prior::read(follows, Some(cached.entry));
            return Ok((Some(cached.object.clone()), prior));
        }
        let mut decoded = Ok(None);
        let mut entry = None;
        let mut bytes = 0;
        let read = store.get_with(record_key, &mut |raw| {
            if let Some(raw) = raw {
                decoded = driftkv_wire::decode_object(raw).map(Some);
                entry = Some(aae::entry_hash(record_key, raw));
                bytes = raw.len();
            }
        });
        if let Err(e) = read {
            self.stats.storage_errors += 1;
            return Err(e.to_string());
        }
        let object = decoded.map_err(|e| {
            self.stats.storage_errors += 1;
            format!("stored record of {key:?} is unreadable: {e}")
        })?;
        if let (Some(object), Some(entry)) = (&object, entry) {
            let cached = Cached {
                partition,
                object: object.clone(),
                entry,
                bytes,
            };
            self.objects.insert(key, cached);
        }
        Ok((object, Prior::read(follows, entry)))
    }

    /// The object cache's entry for `key`, if it has one; debug builds hold every hit to the
    /// store (see [`check_cached`]).
    pub(super) fn cached(
        &self,
        store: &dyn Store,
        partition: PartitionId,
        key: &Key,
    ) -> Option<&Cached> {
        let cached = self.objects.get(partition, key)?;
        #[cfg(debug_assertions)]
        check_cached(store, &keys::data_key(partition, key), key, cached);
        #[cfg(not(debug_assertions))]
        let _ = store;
        Some(cached)
    }

    /// Saves a record read with [`Node::read_record`] just before (nothing in between wrote it).
    pub(super) fn save_over(
        &mut self,
        store: &mut dyn Store,
        partition: PartitionId,
        key: &Key,
        record_key: Vec<u8>,
        prior: Prior,
        object: Object,
    ) -> Result<(), String> {
        let record = driftkv_wire::encode_object(&object);
        let entry = aae::entry_hash(&record_key, &record);
        let bytes = record.len();
        self.track(store, partition, key, &record_key, Some(entry), prior);
        if let Err(e) = store.put_owned(record_key, record) {
            // The store may or may not hold the old record now: nothing cached is certain,
            // and the tree (told of the new record above) must be built again.
            self.objects.remove(key);
            self.forget_tree(partition);
            self.stats.storage_errors += 1;
            return Err(e.to_string());
        }
        let cached = Cached {
            partition,
            object,
            entry,
            bytes,
        };
        self.objects.insert(key, cached);
        Ok(())
    }

    /// Deletes a key's record (tombstone collection, handoff of a partition no longer owned).
    pub(super) fn remove(
        &mut self,
        store: &mut dyn Store,
        partition: PartitionId,
        key: &Key,
    ) -> Result<(), String> {
        let record_key = keys::data_key(partition, key);
        let prior = match self.objects.get(partition, key) {
            Some(cached) => Prior::read(
                self.tree_follows(partition, &record_key),
                Some(cached.entry),
            ),
            None => Prior::Unread,
        };
        self.track(store, partition, key, &record_key, None, prior);
        self.objects.remove(key);
        store.delete(&record_key).map_err(|e| {
            self.forget_tree(partition);
            self.stats.storage_errors += 1;
            e.to_string()
        })
    }

    /// Keeps the partition's hash tree (when built, or being built and past this record) in
    /// step with a record about to change.
    pub(super) fn track(
        &mut self,
        store: &dyn Store,
        partition: PartitionId,
        key: &Key,
        record_key: &[u8],
        new: Option<u64>,
        prior: Prior,
    ) {
        let built = self.trees.contains_key(&partition);
        let scanned = self.build_scanned(partition, record_key);
        if !built && !scanned {
            return;
        }
        let old = match prior {
            Prior::Entry(entry) => Ok(entry),
            Prior::Unread => store
                .get(record_key)
                .map(|old| old.map(|old| aae::entry_hash(record_key, &old))),
        };
        let old = match old {
            Ok(old) => old,
            Err(_) => {
                // Unknown old state: drop the trees; the next exchange rebuilds from storage.
                self.stats.storage_errors += 1;
                self.forget_tree(partition);
                return;
            }
        };
        let segment = keys::segment_of_data_key(record_key).expect("made by keys::data_key");
        debug_assert_eq!(segment, aae::segment_of(key));
        let apply = |tree: &mut aae::Tree| {
            for entry in [old, new].into_iter().flatten() {
                tree.toggle(segment, entry);
            }
        };
        if let Some(tree) = self.trees.get_mut(&partition) {
            apply(tree);
        }
        if scanned && let Some(b) = &mut self.building {
            apply(&mut b.tree);
        }
    }

    /// Drops a partition's tree (and its build): its records are in a state the tree cannot
    /// know (a storage error), so it is built again from storage before its next exchange.
    pub(super) fn forget_tree(&mut self, partition: PartitionId) {
        self.trees.remove(&partition);
        self.aae.trees_complete = false;
        if self
            .building
            .as_ref()
            .is_some_and(|b| b.partition == partition)
        {
            self.building = None;
        }
    }

    /// Prefetches the hash-tree leaf a write of this record will update: the trees are large
    /// and their leaves touched at random, so the leaf is rarely in cache, and asked for here
    /// it arrives while the record is read, merged and encoded (see `driftkv_hint`).
    pub(super) fn warm_leaf(&self, partition: PartitionId, key: &Key) {
        if let Some(tree) = self.trees.get(&partition) {
            driftkv_hint::prefetch(tree.leaf_ref(aae::segment_of(key)));
        }
    }

    /// Whether a hash tree follows this record now: the partition's tree is built, or being
    /// built and its scan is past the record.
    pub(super) fn tree_follows(&self, partition: PartitionId, record_key: &[u8]) -> bool {
        self.trees.contains_key(&partition) || self.build_scanned(partition, record_key)
    }

    /// Whether the tree being built is of this partition and its scan is past the record.
    pub(super) fn build_scanned(&self, partition: PartitionId, record_key: &[u8]) -> bool {
        self.building.as_ref().is_some_and(|b| {
            b.partition == partition && b.after.as_deref().is_some_and(|a| record_key <= a)
        })
    }

    /// Merges `incoming` into the stored state of `key`; returns whether that changed it.
    pub(super) fn merge_into_store(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        partition: PartitionId,
        key: &Key,
        incoming: &Object,
    ) -> Result<bool, String> {
        if let Object::Register(r) = incoming {
            // So a later LWW write coordinated here orders after what it just learned.
            self.hlc.observe(r.timestamp_max(), now_ms);
        }
        let props = self.cfg.bucket(key.bucket());
        let mode = props.mode;
        self.warm_leaf(partition, key);
        let record_key = keys::data_key(partition, key);
        let (local, prior) = self.read_record(store, partition, &record_key, key)?;
        let merged = match local {
            None => incoming.clone(),
            Some(mut local) => {
                let outcome = local.merge(mode, incoming);
                if props.write_path == WritePath::Direct {
                    // A direct write saw nothing, so every overwrite meets the value before it
                    // as a concurrent one: counted, that would be every write. What is counted
                    // is a write that arrived to find a later one here, and lost.
                    self.stats.lww_discarded += u64::from(arrived_and_lost(incoming, &local));
                } else {
                    self.stats.conflicts += outcome.concurrent as u64;
                    self.stats.lww_discarded += outcome.lww_discarded as u64;
                }
                self.stats.dot_clashes += outcome.dot_clashes as u64;
                if !outcome.changed {
                    return Ok(false);
                }
                local
            }
        };
        // A write arrived that this replica did not have: how long after it was made.
        if let Object::Register(r) = incoming {
            let made = r.timestamp_max().physical_ms();
            if made > 0 {
                self.stats
                    .replication_lag_ms
                    .record(now_ms.saturating_sub(made));
            }
        }
        self.save_over(store, partition, key, record_key, prior, merged)?;
        Ok(true)
    }

    /// Merges a copy in where no one waits for the outcome (a repair): a failure is counted.
    pub(super) fn merge_here(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        partition: PartitionId,
        key: &Key,
        object: &Object,
    ) {
        if self
            .merge_into_store(store, now_ms, partition, key, object)
            .is_err()
        {
            self.stats.repairs_failed += 1;
        }
    }

    /// Calls `f` with this node's copy of `key` (`None`: absent or unreadable), lent from the
    /// object cache: for an observer that only looks (the simulator's oracle), no copy is made.
    pub fn with_local_object<R>(
        &mut self,
        store: &dyn Store,
        key: &Key,
        f: impl FnOnce(Option<&Object>) -> R,
    ) -> R {
        let partition = self.partition_of(key);
        if self.cached(store, partition, key).is_none() {
            // A miss reads the record, which caches it (when there is one and it decodes).
            let _ = self.load(store, partition, key);
        }
        f(self.objects.get(partition, key).map(|c| &c.object))
    }

    /// This node's own copy of a key, for tests and tools (no network, no repair).
    pub fn local_object(&mut self, store: &dyn Store, key: &Key) -> Result<Option<Object>, String> {
        let partition = self.partition_of(key);
        self.load(store, partition, key)
    }
}

/// Whether the register write `incoming` left no value of its own in `merged`: it arrived at a
/// copy that already held a later write (by the lww rule) and was discarded.
fn arrived_and_lost(incoming: &Object, merged: &Object) -> bool {
    let (Object::Register(inc), Object::Register(held)) = (incoming, merged) else {
        return false;
    };
    !inc.dvv()
        .siblings()
        .any(|(dot, _)| held.dvv().siblings().any(|(kept, _)| kept == dot))
}
