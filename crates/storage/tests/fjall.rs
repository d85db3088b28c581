//! `FjallStore` behaviour beyond the shared contract: opening, limits, disk size, the on-disk
//! table read path, and reopening after a clean close.

use driftkv_storage::{Durability, FjallStore, MAX_KEY_LEN, Store, StoreError};

const ALL: [Durability; 3] = [
    Durability::EveryWrite,
    Durability::GroupCommit,
    Durability::None,
];

fn key(i: u32) -> Vec<u8> {
    format!("k/{i:06}").into_bytes()
}

#[test]
fn opening_a_file_as_a_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a database").unwrap();
    let err = FjallStore::open(&file, Durability::EveryWrite).unwrap_err();
    let StoreError::Io(msg) = &err else {
        panic!("expected Io, got {err:?}")
    };
    assert!(
        msg.contains("plain-file"),
        "the error should name the path: {msg}"
    );
    // Below a file, too (the parent cannot be created).
    assert!(FjallStore::open(file.join("sub"), Durability::None).is_err());
}

#[test]
fn a_missing_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let mut s = FjallStore::open(&nested, Durability::GroupCommit).unwrap();
    s.put(b"k", b"v").unwrap();
    assert_eq!(s.path(), nested.as_path());
    assert_eq!(s.durability(), Durability::GroupCommit);
}

#[test]
fn a_directory_in_use_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let first = FjallStore::open(dir.path(), Durability::EveryWrite).unwrap();
    let err = FjallStore::open(dir.path(), Durability::EveryWrite).unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err:?}");
    drop(first);
    // Closing releases the lock.
    FjallStore::open(dir.path(), Durability::EveryWrite).unwrap();
}

#[test]
fn oversized_keys_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
    let longest = vec![0xAB; MAX_KEY_LEN];
    s.put(&longest, b"fits").unwrap();
    assert_eq!(s.get(&longest).unwrap(), Some(b"fits".to_vec()));

    let too_long = vec![0xAB; MAX_KEY_LEN + 1];
    let err = s.put(&too_long, b"x").unwrap_err();
    assert!(
        matches!(&err, StoreError::Io(m) if m.contains("exceeds")),
        "{err:?}"
    );
    assert_eq!(s.get(&too_long).unwrap(), None);
    s.delete(&too_long).unwrap();
    // Over-long bounds are handled without handing fjall a key it would reject.
    assert_eq!(s.scan(&too_long, None, 10).unwrap(), vec![]);
    let huge = vec![0xAB; 3 * MAX_KEY_LEN];
    assert_eq!(s.scan(&huge, None, 10).unwrap(), vec![]);
    s.put(b"\xab\xac", b"after").unwrap();
    let got = s.scan(b"\xab", Some(&too_long), 10).unwrap();
    assert_eq!(
        got,
        vec![(b"\xab\xac".to_vec(), b"after".to_vec())],
        "after longer than any key"
    );
    let got = s.scan(b"", Some(&longest[..MAX_KEY_LEN - 1]), 10).unwrap();
    assert_eq!(got.len(), 2, "after a truncation of the longest key");
    assert_eq!(got[0].0, longest);
    s.sync().unwrap();
    drop(s);
    let s = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
    assert_eq!(s.get(&longest).unwrap(), Some(b"fits".to_vec()));
}

#[test]
fn approximate_size_grows_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
    let before = s.approximate_size_bytes().unwrap();
    // The journal is pre-sized (sparse) to 64 MiB; an empty store must not report that.
    assert!(before < 16 << 20, "an empty store reports {before} bytes");
    // Incompressible, so journal compression cannot hide it.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let value: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 7;
            x ^= x >> 9;
            x as u8
        })
        .collect();
    s.put(b"big", &value).unwrap();
    s.sync().unwrap();
    let after = s.approximate_size_bytes().unwrap();
    assert!(
        after >= before + (1 << 20),
        "before {before}, after {after}"
    );
    s.flush_memtable().unwrap();
    assert!(s.approximate_size_bytes().unwrap() > 0);
}

/// Reads must merge the memtable with on-disk tables: a newer write or a delete in memory hides
/// the older table entry, in `get` and in `scan`, before and after a reopen.
#[test]
fn reads_merge_tables_and_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
    for i in 0..3000 {
        s.put(&key(i), b"table-1").unwrap();
    }
    s.flush_memtable().unwrap();
    for i in (0..3000).step_by(3) {
        s.put(&key(i), b"table-2").unwrap();
    }
    for i in (1..3000).step_by(3) {
        s.delete(&key(i)).unwrap();
    }
    s.flush_memtable().unwrap();
    for i in (0..3000).step_by(6) {
        s.delete(&key(i)).unwrap();
    }
    s.put(&key(1), b"memtable").unwrap();

    let expect = |i: u32| -> Option<&'static [u8]> {
        match i {
            1 => Some(b"memtable"),
            _ if i.is_multiple_of(6) => None,
            _ if i.is_multiple_of(3) => Some(b"table-2"),
            _ if i % 3 == 1 => None,
            _ => Some(b"table-1"),
        }
    };
    let check = |s: &FjallStore| {
        for i in 0..3000 {
            assert_eq!(s.get(&key(i)).unwrap().as_deref(), expect(i), "get key {i}");
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = (0..3000)
            .filter_map(|i| expect(i).map(|v| (key(i), v.to_vec())))
            .collect();
        assert_eq!(s.scan(b"k/", None, usize::MAX).unwrap(), want);
        let page = s.scan(b"k/", Some(&key(1)), 3).unwrap();
        assert_eq!(
            page.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            vec![key(2), key(3), key(5)]
        );
    };
    check(&s);
    s.sync().unwrap();
    drop(s);
    let s = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
    check(&s);
}

/// (a) of the crash tests: a clean close keeps every write under every policy, including
/// `None`, because closing syncs.
#[test]
fn reopen_after_a_clean_close_keeps_everything() {
    for durability in ALL {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = FjallStore::open(dir.path(), durability).unwrap();
            for i in 0..500u32 {
                s.put(&key(i), &i.to_le_bytes()).unwrap();
            }
            for i in (0..500).step_by(5) {
                s.delete(&key(i)).unwrap();
            }
            s.put(b"", b"empty key").unwrap();
            // No sync: dropping the store must be enough.
        }
        let s = FjallStore::open(dir.path(), durability).unwrap();
        for i in 0..500u32 {
            let want = (!i.is_multiple_of(5)).then(|| i.to_le_bytes().to_vec());
            assert_eq!(s.get(&key(i)).unwrap(), want, "{durability:?}: key {i}");
        }
        assert_eq!(
            s.get(b"").unwrap(),
            Some(b"empty key".to_vec()),
            "{durability:?}"
        );
        assert_eq!(
            s.scan(b"k/", None, usize::MAX).unwrap().len(),
            400,
            "{durability:?}"
        );
    }
}

/// A store written under one policy opens under another: the policy is not part of the format.
#[test]
fn the_policy_can_change_between_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = FjallStore::open(dir.path(), Durability::None).unwrap();
    s.put(b"a", b"1").unwrap();
    drop(s);
    let mut s = FjallStore::open(dir.path(), Durability::EveryWrite).unwrap();
    assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
    s.put(b"b", b"2").unwrap();
    drop(s);
    let s = FjallStore::open(dir.path(), Durability::GroupCommit).unwrap();
    assert_eq!(s.scan(b"", None, 10).unwrap().len(), 2);
}
