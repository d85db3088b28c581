//! [`FjallStore`]: the on-disk [`Store`], one fjall keyspace (an LSM tree with a write-ahead
//! journal) in a directory, with the node's [`Durability`] policy mapped onto journal syncs.
//!
//! Key layout inside the keyspace. Every key carries a one-byte tag so that driftkv's own
//! bookkeeping can never collide with, or show up in a scan of, the core's keys:
//!
//! * `0x00 ++ name`: storage metadata (today only `0x00 ++ "format"`: the format version as a
//!   4-byte big-endian integer);
//! * `0x01 ++ key`: the core's key `key`, byte for byte.
//!
//! The tag also makes the core's empty key storable (fjall rejects empty keys with a panic) and
//! keeps the byte order of the core's keys, because every data key shares the same first byte.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use driftkv_core::store::{Durability, Entries, Store, StoreError};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

/// The on-disk format this build writes. Bump it whenever the key layout or the encoding of the
/// metadata changes, so an older build refuses a directory it would misread instead of
/// silently serving wrong data.
pub const FORMAT_VERSION: u32 = 1;

/// The longest key [`FjallStore`] accepts. fjall (lsm-tree) stores key lengths as `u16` and
/// panics beyond that; one byte goes to the tag described in the module docs.
pub const MAX_KEY_LEN: usize = u16::MAX as usize - 1;

/// The single keyspace everything lives in: the core already prefixes its keys by purpose, so
/// separate keyspaces would only add journals and flush work.
const KEYSPACE: &str = "driftkv";
const DATA_TAG: u8 = 0x01;
/// Tag 0x00 (metadata), then the record's name.
const FORMAT_KEY: &[u8] = b"\x00format";

/// A [`Store`] on a fjall database in one directory.
///
/// Writes go to fjall's journal (handed to the OS on every write, so a process crash loses
/// nothing acknowledged by `put`/`delete`) and to its memtable; what reaches stable storage,
/// and when, follows the [`Durability`] given to [`FjallStore::open`]:
///
/// * [`Durability::EveryWrite`]: each `put`/`delete` syncs the journal (`fdatasync`) before it
///   returns.
/// * [`Durability::GroupCommit`]: writes are not synced; [`Store::sync`] syncs everything so far.
/// * [`Durability::None`]: nothing is synced explicitly (`sync` is a no-op); dropping the store
///   still syncs, as fjall does on a clean close.
///
/// Only one process may open a directory at a time (fjall holds a file lock); a second open
/// fails with [`StoreError::Io`].
pub struct FjallStore {
    // Both handles keep the database open; fjall joins its worker threads and releases the
    // directory lock when the last of them is dropped, and syncs the journal on the way out.
    keyspace: Keyspace,
    db: Database,
    durability: Durability,
    path: PathBuf,
    /// Syncs the journal; shared with any [`Syncer`] handed out.
    syncer: Syncer,
    /// Whether anything was written since the last [`FjallStore::begin_sync`].
    dirty: bool,
}

/// Syncs a [`FjallStore`]'s journal from another thread, so the node thread goes on writing
/// the next batch while the previous one is made durable (overlapped group commit). A sync
/// covers every write that returned before it began; writes made while it runs may or may not
/// be covered, so they wait for the next one.
///
/// The fsync does not hold the journal's lock. fjall's own `persist` does, so every insert of
/// the next batch would wait for the disk; instead the syncer hands the journal's buffer to the
/// OS (a short hold of the lock), then `fdatasync`s the active journal file through a
/// descriptor of its own. The active journal is the highest-numbered `N.jnl` in the store's
/// directory (fjall names them so, and creates the next one only when it rotates, after a full
/// sync of the one before), so every write handed to the OS before the sync is either in that
/// file or in an older one already synced by its rotation. Without a journal file it knows,
/// the syncer falls back to fjall's own `persist`. The file naming is fjall 3.1's, pinned by the
/// lock file; `the_syncer_follows_the_active_journal` holds it to it.
///
/// A failed sync is sticky, for the store and every syncer of it: a failed fsync may have
/// dropped the data it was to write while a later one succeeds without it, so the store never
/// again says that what it holds is durable; a restart recovers from what is.
#[derive(Clone)]
pub struct Syncer {
    db: Database,
    durability: Durability,
    failed: Arc<OnceLock<String>>,
    /// The store's directory, where fjall keeps its journals.
    dir: PathBuf,
    /// The active journal as last found: its number and a descriptor of it.
    journal: Arc<std::sync::Mutex<Option<(u64, std::fs::File)>>>,
}

impl fmt::Debug for Syncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Syncer")
            .field("durability", &self.durability)
            .field("failed", &self.failed.get())
            .finish()
    }
}

impl Syncer {
    /// Makes every write that returned before this call durable (a no-op unless the policy is
    /// [`Durability::GroupCommit`]: under `EveryWrite` each write was synced as it was made,
    /// under `None` never syncing is the point).
    pub fn sync(&self) -> Result<(), StoreError> {
        if self.durability != Durability::GroupCommit {
            return Ok(());
        }
        self.check()?;
        let fail = |e: StoreError| {
            let _ = self.failed.set(e.to_string());
            e
        };
        self.db
            .persist(PersistMode::Buffer)
            .map_err(|e| fail(io("sync", e)))?;
        let Some(id) = self.active_journal() else {
            return self
                .db
                .persist(PersistMode::SyncData)
                .map_err(|e| fail(io("sync", e)));
        };
        let mut journal = self.journal.lock().expect("journal lock");
        if journal.as_ref().map(|(i, _)| *i) != Some(id) {
            let file = std::fs::File::open(self.dir.join(format!("{id}.jnl")))
                .map_err(|e| fail(StoreError::Io(format!("sync: opening the journal: {e}"))))?;
            *journal = Some((id, file));
        }
        let (_, file) = journal.as_ref().expect("just set");
        file.sync_data()
            .map_err(|e| fail(StoreError::Io(format!("sync: {e}"))))
    }

    /// The number of the journal fjall writes to: the highest `N.jnl` in the directory.
    fn active_journal(&self) -> Option<u64> {
        std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                name.to_str()?.strip_suffix(".jnl")?.parse::<u64>().ok()
            })
            .max()
    }

    /// Whether a sync has failed: then every later one fails too, until a restart.
    pub fn has_failed(&self) -> bool {
        self.failed.get().is_some()
    }

    fn check(&self) -> Result<(), StoreError> {
        match self.failed.get() {
            Some(first) => Err(StoreError::Io(format!(
                "an earlier sync failed ({first}); restart the node to recover from what is \
                 durable"
            ))),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// Wraps a fjall error with what was being done; fjall's own text is a `Debug` dump, so the
/// context is what tells an operator which operation failed.
fn io(context: impl fmt::Display, e: fjall::Error) -> StoreError {
    let hint = if matches!(e, fjall::Error::Poisoned) {
        " (an earlier journal write or sync failed; restart the node to recover)"
    } else if matches!(e, fjall::Error::Locked) {
        " (another process has this directory open)"
    } else {
        ""
    };
    StoreError::Io(format!("{context}: {e}{hint}"))
}

fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_TAG);
    k.extend_from_slice(key);
    k
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
/// Trailing 0xFF bytes cannot be incremented, so they are dropped first: the bound for
/// `b"k\xff"` is `b"l"`.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let end = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut succ = prefix[..=end].to_vec();
    succ[end] += 1;
    Some(succ)
}

/// Bytes allocated to the files under `dir`. Files that vanish during the walk (compaction
/// deletes tables concurrently) are skipped rather than failing a metrics read.
fn dir_allocated_bytes(dir: &Path) -> Result<u64, StoreError> {
    let failed = |p: &Path, e: std::io::Error| {
        StoreError::Io(format!("measuring disk usage of {}: {e}", p.display()))
    };
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => return Err(failed(&d, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| failed(&d, e))?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(&entry.path(), e)),
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += allocated(&meta);
            }
        }
    }
    Ok(total)
}

#[cfg(unix)]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    // st_blocks is in 512-byte units whatever the file system's block size.
    std::os::unix::fs::MetadataExt::blocks(meta) * 512
}

#[cfg(not(unix))]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

impl FjallStore {
    /// Opens the store in `dir`, creating the directory and an empty store if needed.
    ///
    /// Fails with [`StoreError::Io`] if the directory cannot be opened (not a directory, no
    /// permission, locked by another process) or was written by a newer build (a higher
    /// [`FORMAT_VERSION`]), and with [`StoreError::Corrupt`] if its metadata is unreadable.
    pub fn open(dir: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = dir.as_ref().to_path_buf();
        let shown = path.display();
        let db = Database::builder(&path)
            .open()
            .map_err(|e| io(format_args!("opening fjall database in {shown}"), e))?;
        // The default options keep `manual_journal_persist` off (a per-keyspace option, fixed
        // when the keyspace is created; the builder's flag of the same name only covers
        // batches): every insert then reaches the OS before returning, which is what lets a
        // `GroupCommit` or `None` store survive a process crash. tests/crash.rs checks it.
        let keyspace = db
            .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(|e| io(format_args!("opening keyspace {KEYSPACE:?} in {shown}"), e))?;
        let syncer = Syncer {
            db: db.clone(),
            durability,
            failed: Arc::default(),
            dir: path.clone(),
            journal: Arc::default(),
        };
        let store = FjallStore {
            keyspace,
            db,
            durability,
            path,
            syncer,
            dirty: false,
        };
        store.check_format()?;
        Ok(store)
    }

    /// Reads the format record, or writes it on first open; refuses formats this build cannot
    /// read.
    fn check_format(&self) -> Result<(), StoreError> {
        let shown = self.path.display();
        let stored = self
            .keyspace
            .get(FORMAT_KEY)
            .map_err(|e| io(format_args!("reading the format record in {shown}"), e))?;
        match stored {
            Some(raw) => {
                let bytes: [u8; 4] = (*raw).try_into().map_err(|_| {
                    StoreError::Corrupt(format!(
                        "format record in {shown} is {} bytes, expected 4",
                        raw.len()
                    ))
                })?;
                let version = u32::from_be_bytes(bytes);
                if version == 0 {
                    return Err(StoreError::Corrupt(format!(
                        "format record in {shown} holds version 0"
                    )));
                }
                if version > FORMAT_VERSION {
                    return Err(StoreError::Io(format!(
                        "{shown} holds storage format version {version}, newer than the version {FORMAT_VERSION} \
                         this build understands; run a newer driftkv on it"
                    )));
                }
                // Every version up to FORMAT_VERSION is readable as is: version 1 is the first.
                // A future format change puts its upgrade step here.
                Ok(())
            }
            None => {
                // A directory with data but no format record was not written by this crate
                // (or by a build that predates the record): refuse rather than guess.
                if let Some(first) = self.keyspace.first_key_value() {
                    let key = first
                        .key()
                        .map_err(|e| io(format_args!("reading {shown}"), e))?;
                    return Err(StoreError::Corrupt(format!(
                        "{shown} holds data (first key {:?}) but no driftkv format record",
                        String::from_utf8_lossy(&key)
                    )));
                }
                self.keyspace
                    .insert(FORMAT_KEY, FORMAT_VERSION.to_be_bytes())
                    .map_err(|e| io(format_args!("writing the format record in {shown}"), e))?;
                // Durable whatever the policy: a store must never exist without its version.
                self.db
                    .persist(PersistMode::SyncAll)
                    .map_err(|e| io(format_args!("syncing {shown}"), e))
            }
        }
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability policy given to [`FjallStore::open`].
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// A handle that syncs this store from another thread.
    pub fn syncer(&self) -> Syncer {
        self.syncer.clone()
    }

    /// Starts a sync's accounting: true when a sync is needed to make what was written since
    /// the last call durable (something was written under group commit, or an earlier sync
    /// failed and the store can promise nothing). A caller that gets true runs
    /// [`Syncer::sync`] (or [`Store::sync`]) next; one that gets false may treat everything
    /// written so far as being as durable as the last sync left it.
    pub fn begin_sync(&mut self) -> bool {
        let dirty = std::mem::take(&mut self.dirty);
        self.syncer.has_failed() || (dirty && self.durability == Durability::GroupCommit)
    }

    /// Disk space the store's directory takes, in bytes: blocks actually allocated on unix
    /// (the file length elsewhere), summed over a walk of the directory.
    ///
    /// Not fjall's `Database::disk_space`: that counts each journal at its file length, and
    /// fjall pre-sizes journals to 64 MiB (sparse), so even an empty store would report 64 MiB.
    /// The walk touches a few dozen files for a typical store: cheap enough for a metrics scrape.
    pub fn approximate_size_bytes(&self) -> Result<u64, StoreError> {
        dir_allocated_bytes(&self.path)
    }

    /// Writes the in-memory write buffer out as an on-disk table and waits for it. The store
    /// does this on its own as the buffer fills; calling it is for tests that must exercise the
    /// table read path, and before copying the directory.
    pub fn flush_memtable(&self) -> Result<(), StoreError> {
        // `rotate_memtable_and_wait` is `#[doc(hidden)]` in fjall 3.1 (it has no public
        // equivalent); the version is pinned by the lock file.
        self.keyspace
            .rotate_memtable_and_wait()
            .map_err(|e| io("flushing the memtable", e))
    }

    /// After a write: under `EveryWrite` the write is not acknowledged until it is on disk.
    fn settle(&self, what: &str) -> Result<(), StoreError> {
        if self.durability == Durability::EveryWrite {
            // fdatasync suffices: fjall pre-sizes and fully syncs a journal file when it
            // creates it (and syncs the directory), and syncs the old journal when it rotates
            // to a new one, so this write is on disk even if it landed in the previous file.
            self.db
                .persist(PersistMode::SyncData)
                .map_err(|e| io(format_args!("syncing after {what}"), e))?;
        }
        Ok(())
    }
}

impl Store for FjallStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if key.len() > MAX_KEY_LEN {
            // `put` refuses such keys, so none is stored; asking fjall would panic.
            return Ok(None);
        }
        let value = self.keyspace.get(data_key(key)).map_err(|e| io("get", e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        if key.len() > MAX_KEY_LEN {
            f(None);
            return Ok(());
        }
        let value = self.keyspace.get(data_key(key)).map_err(|e| io("get", e))?;
        f(value.as_deref());
        Ok(())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        // fjall asserts these limits (a panic); turn them into errors the node can answer with.
        if key.len() > MAX_KEY_LEN {
            return Err(StoreError::Io(format!(
                "key of {} bytes exceeds the limit of {MAX_KEY_LEN}",
                key.len()
            )));
        }
        if u32::try_from(value.len()).is_err() {
            return Err(StoreError::Io(format!(
                "value of {} bytes exceeds the limit of {} bytes",
                value.len(),
                u32::MAX
            )));
        }
        self.dirty = true;
        self.keyspace
            .insert(data_key(key), value)
            .map_err(|e| io("put", e))?;
        self.settle("put")
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if key.len() > MAX_KEY_LEN {
            // Such a key cannot be stored, so deleting it has nothing to do.
            return Ok(());
        }
        self.dirty = true;
        self.keyspace
            .remove(data_key(key))
            .map_err(|e| io("delete", e))?;
        self.settle("delete")
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        if limit == 0 || prefix.len() > MAX_KEY_LEN {
            return Ok(Vec::new());
        }
        let lo_prefix = data_key(prefix);
        // Tagged with DATA_TAG (< 0xFF), so a successor always exists: the scan never runs into
        // the metadata or past the end of the data keys.
        let Some(hi) = prefix_successor(&lo_prefix) else {
            return Ok(Vec::new());
        };
        // Start at the later of the prefix and `after`. The start is inclusive and `after`
        // itself is skipped below, which also covers an `after` too long to be a fjall bound
        // (any stored key greater than `after` is at least its truncation).
        let lo = match after {
            Some(a) if a > prefix => {
                let mut lo = data_key(a);
                lo.truncate(MAX_KEY_LEN + 1);
                lo
            }
            _ => lo_prefix,
        };
        if lo >= hi {
            // `after` is past every key with this prefix; an inverted range is not asked of
            // fjall at all.
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for guard in self
            .keyspace
            .range::<Vec<u8>, _>((Bound::Included(lo), Bound::Excluded(hi)))
        {
            let (k, v) = guard.into_inner().map_err(|e| io("scan", e))?;
            // The range lies inside the data tag, so this only fails on a damaged table.
            let Some(user_key) = k.strip_prefix(&[DATA_TAG]) else {
                return Err(StoreError::Corrupt(format!(
                    "scan met key {k:?} outside the data range"
                )));
            };
            if after.is_some_and(|a| user_key <= a) {
                continue;
            }
            out.push((user_key.to_vec(), v.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.syncer.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syncer_follows_the_active_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
        let syncer = store.syncer();
        store.put(b"a", b"1").unwrap();
        syncer.sync().unwrap();
        let first = syncer.journal.lock().unwrap().as_ref().map(|(id, _)| *id);
        assert!(
            first.is_some(),
            "the syncer found no journal: fjall's naming changed"
        );
        // Writes land in the file the syncer syncs: it is the one fjall appends to (each write
        // reaches the OS as it is made, so the file's bytes hold it at once).
        let path = dir.path().join(format!("{}.jnl", first.unwrap()));
        let marker = b"a marker only this write holds";
        store.put(b"b", marker).unwrap();
        let journal = std::fs::read(&path).unwrap();
        assert!(
            journal.windows(marker.len()).any(|w| w == marker),
            "the journal the syncer syncs is not the one written to"
        );
        // fjall rotates its journal at a flush once the journal passed 64 MB: the next sync
        // follows it to the new file.
        // Values that do not compress (the journal compresses large values).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut big = vec![0u8; 1 << 20];
        for i in 0..66u32 {
            for b in big.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            store.put(&i.to_be_bytes(), &big).unwrap();
        }
        store.flush_memtable().unwrap();
        store.put(b"c", b"3").unwrap();
        syncer.sync().unwrap();
        let second = syncer.journal.lock().unwrap().as_ref().map(|(id, _)| *id);
        assert!(second > first, "the syncer kept syncing a sealed journal");
        // A syncer holds the database open, as the store does.
        drop((store, syncer));
        let store = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
        for (k, v) in [(&b"a"[..], &b"1"[..]), (b"c", b"3")] {
            assert_eq!(store.get(k).unwrap().as_deref(), Some(v));
        }
    }

    #[test]
    fn prefix_successor_drops_trailing_ff() {
        assert_eq!(prefix_successor(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"k\xff"), Some(b"l".to_vec()));
        assert_eq!(prefix_successor(b"\x01\xff\xff"), Some(b"\x02".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn metadata_lives_outside_the_data_keys() {
        assert_eq!(FORMAT_KEY[0], 0x00);
        assert!(FORMAT_KEY[0] < DATA_TAG);
    }

    #[test]
    fn a_newer_format_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        drop(FjallStore::open(dir.path(), Durability::EveryWrite).unwrap());
        {
            // Pretend a newer build wrote this directory.
            let db = Database::builder(dir.path()).open().unwrap();
            let ks = db
                .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
                .unwrap();
            ks.insert(FORMAT_KEY, (FORMAT_VERSION + 1).to_be_bytes())
                .unwrap();
            db.persist(PersistMode::SyncAll).unwrap();
        }
        let err = FjallStore::open(dir.path(), Durability::EveryWrite).unwrap_err();
        let StoreError::Io(msg) = &err else {
            panic!("expected Io, got {err:?}")
        };
        assert!(
            msg.contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{msg}"
        );
        assert!(msg.contains("newer"), "{msg}");
    }

    #[test]
    fn a_garbled_format_record_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let ks = db
                .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
                .unwrap();
            ks.insert(FORMAT_KEY, b"xyz").unwrap();
        }
        let err = FjallStore::open(dir.path(), Durability::None).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn data_without_a_format_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let ks = db
                .keyspace(KEYSPACE, KeyspaceCreateOptions::default)
                .unwrap();
            ks.insert(data_key(b"k"), b"v").unwrap();
        }
        let err = FjallStore::open(dir.path(), Durability::None).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn the_format_record_is_written_once_and_invisible_to_scans() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
        assert_eq!(s.scan(b"", None, usize::MAX).unwrap(), vec![]);
        assert_eq!(
            s.keyspace.get(FORMAT_KEY).unwrap().as_deref(),
            Some(&FORMAT_VERSION.to_be_bytes()[..])
        );
        s.put(b"", b"empty key").unwrap();
        drop(s);
        let s = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
        assert_eq!(
            s.scan(b"", None, 10).unwrap(),
            vec![(vec![], b"empty key".to_vec())]
        );
    }
}
