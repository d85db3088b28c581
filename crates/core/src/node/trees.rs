//! Building and checking the anti-entropy trees from storage, a batch of records per tick.

use super::*;

/// A partition's tree being built by scanning its records in key order, [`TREE_BUILD_BATCH`]
/// per tick, so a large partition never holds the node for a whole scan. Changes to records at
/// or before `after` (already scanned) are applied to it as they happen; later ones the scan
/// will read. When the partition already has a tree, this is its periodic check: the finished
/// build replaces it if they differ.
#[derive(Debug)]
pub(super) struct TreeBuild {
    pub(super) partition: PartitionId,
    pub(super) tree: aae::Tree,
    pub(super) after: Option<Vec<u8>>,
}

/// Records a tree build scans per tick.
pub(super) const TREE_BUILD_BATCH: usize = 8192;

/// Adds a batch of a partition's stored records to its tree.
pub(super) fn add_records(tree: &mut aae::Tree, batch: &[(Vec<u8>, Vec<u8>)]) {
    for (raw_key, raw) in batch {
        if let Some(segment) = keys::segment_of_data_key(raw_key) {
            tree.toggle(segment, aae::entry_hash(raw_key, raw));
        }
    }
}

impl Node {
    /// Diagnostics (tests, the bench): how many anti-entropy trees are built, and whether each
    /// equals a tree built afresh by one full scan of its partition now.
    pub fn aae_trees_check(&self, store: &dyn Store) -> (usize, bool) {
        let consistent = self.trees.iter().all(|(&partition, kept)| {
            let mut fresh = aae::Tree::default();
            let prefix = keys::partition_prefix(partition);
            let mut after: Option<Vec<u8>> = None;
            loop {
                let Ok(batch) = store.scan(&prefix, after.as_deref(), 4096) else {
                    return false;
                };
                let Some((last, _)) = batch.last() else { break };
                after = Some(last.clone());
                add_records(&mut fresh, &batch);
            }
            fresh == *kept
        });
        (self.trees.len(), consistent)
    }

    /// The partition's hash tree, if built.
    pub(super) fn tree(&self, partition: PartitionId) -> Result<&aae::Tree, ()> {
        self.trees.get(&partition).ok_or(())
    }

    /// Starts building the partition's tree unless a build is under way.
    pub(super) fn begin_tree_build(&mut self, partition: PartitionId) {
        if self.building.is_none() {
            self.building = Some(TreeBuild {
                partition,
                tree: aae::Tree::default(),
                after: None,
            });
        }
    }

    /// Scans the next batch of the tree under construction; a finished build becomes the
    /// partition's tree (a check that finds the kept tree different replaces it, and counts).
    pub(super) fn tree_build_step(&mut self, store: &dyn Store) {
        if self.building.is_none() && self.cfg.aae.enabled && !self.aae.trees_complete {
            // In the background, the trees of the partitions this node is a primary of, so
            // they are ready when exchanges come (after a restart, or a change of ownership).
            let missing = self
                .ring()
                .owned_by(&self.cfg.id)
                .iter()
                .copied()
                .find(|p| !self.trees.contains_key(p));
            match missing {
                Some(partition) => self.begin_tree_build(partition),
                None => self.aae.trees_complete = true,
            }
        }
        let Some(b) = &mut self.building else {
            return;
        };
        let prefix = keys::partition_prefix(b.partition);
        let batch = match store.scan(&prefix, b.after.as_deref(), TREE_BUILD_BATCH) {
            Ok(batch) => batch,
            Err(_) => {
                self.stats.storage_errors += 1;
                self.building = None;
                return;
            }
        };
        add_records(&mut b.tree, &batch);
        if let Some((last, _)) = batch.last() {
            b.after = Some(last.clone());
        }
        if batch.len() == TREE_BUILD_BATCH {
            return;
        }
        let TreeBuild {
            partition, tree, ..
        } = self.building.take().expect("checked above");
        match self.trees.get(&partition) {
            None => self.stats.aae_tree_builds += 1,
            Some(kept) if *kept != tree => self.stats.aae_tree_mismatches += 1,
            Some(_) => return,
        }
        self.trees.insert(partition, tree);
    }

    /// The records of one segment: `(key, entry hash, record)`.
    pub(super) fn segment_entries(
        &mut self,
        store: &dyn Store,
        partition: PartitionId,
        segment: u16,
    ) -> Result<Vec<(Key, u64, Vec<u8>)>, String> {
        let prefix = keys::segment_prefix(partition, segment);
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = store
                .scan(&prefix, after.as_deref(), SCAN_BATCH)
                .map_err(|e| {
                    self.stats.storage_errors += 1;
                    e.to_string()
                })?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            for (raw_key, raw) in batch {
                if let Some((_, key)) = keys::parse_data_key(&raw_key) {
                    out.push((key, aae::entry_hash(&raw_key, &raw), raw));
                }
            }
        }
        Ok(out)
    }
}
