//! Runs the one conformance suite against every backend and durability policy: `MemStore` and
//! `FjallStore`, each under `EveryWrite`, `GroupCommit` and `None`.

use driftkv_storage::{Durability, Entries, FjallStore, MemStore, Store, StoreError};
use tempfile::TempDir;

/// A `FjallStore` in its own temporary directory, removed when the test's store is dropped.
struct TempFjall {
    // Declared first so it is dropped first: fjall closes before its directory is deleted.
    store: FjallStore,
    _dir: TempDir,
}

impl TempFjall {
    fn new(durability: Durability) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store = FjallStore::open(dir.path(), durability).expect("open a fresh FjallStore");
        TempFjall { store, _dir: dir }
    }
}

impl Store for TempFjall {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(key)
    }
    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        self.store.get_with(key, f)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.store.put(key, value)
    }
    fn put_owned(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.store.put_owned(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.store.delete(key)
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.store.scan(prefix, after, limit)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.store.sync()
    }
}

mod mem_every_write {
    use super::*;
    driftkv_storage::store_conformance_tests!(MemStore::new(Durability::EveryWrite));
}

mod mem_group_commit {
    use super::*;
    driftkv_storage::store_conformance_tests!(MemStore::new(Durability::GroupCommit));
}

mod mem_none {
    use super::*;
    driftkv_storage::store_conformance_tests!(MemStore::new(Durability::None));
}

mod fjall_every_write {
    use super::*;
    driftkv_storage::store_conformance_tests!(TempFjall::new(Durability::EveryWrite));
}

mod fjall_group_commit {
    use super::*;
    driftkv_storage::store_conformance_tests!(TempFjall::new(Durability::GroupCommit));
}

mod fjall_none {
    use super::*;
    driftkv_storage::store_conformance_tests!(TempFjall::new(Durability::None));
}

/// The factory form of the suite, as another crate with a new backend would call it.
#[test]
fn run_all_accepts_a_factory() {
    driftkv_storage::conformance::run_all(|| MemStore::new(Durability::GroupCommit));
}
