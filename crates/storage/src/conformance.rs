//! The [`Store`] contract as executable checks, so every backend is held to the same behaviour
//! the core relies on (byte-ordered keys, exact `scan` bounds, deletes that stick).
//!
//! Each check takes a fresh, empty store and panics with a message naming the broken rule, as a
//! test assertion does. Run them all with [`run_all`], or one test per check with
//! [`store_conformance_tests!`](crate::store_conformance_tests), which is what this crate does
//! for `MemStore` and `FjallStore` under every [`Durability`](driftkv_core::store::Durability).

use driftkv_core::store::Store;

/// One named check of the contract. The store handed in must be empty.
pub type Check = fn(&mut dyn Store);

/// Every check, by name, in a stable order. [`store_conformance_tests!`] mirrors this list.
///
/// [`store_conformance_tests!`]: crate::store_conformance_tests
pub const CHECKS: &[(&str, Check)] = &[
    ("get_after_put", get_after_put),
    ("missing_key", missing_key),
    ("overwrite", overwrite),
    ("delete", delete),
    ("empty_value", empty_value),
    ("empty_key", empty_key),
    ("binary_keys_and_values", binary_keys_and_values),
    ("large_value", large_value),
    ("scan_order", scan_order),
    ("scan_prefix", scan_prefix),
    ("scan_prefix_ending_in_ff", scan_prefix_ending_in_ff),
    ("scan_after", scan_after),
    ("scan_limit", scan_limit),
    ("scan_pages", scan_pages),
    (
        "scan_sees_overwrites_and_deletes",
        scan_sees_overwrites_and_deletes,
    ),
    (
        "sync_keeps_everything_readable",
        sync_keeps_everything_readable,
    ),
    ("many_keys", many_keys),
    (
        "borrowed_reads_and_owned_writes",
        borrowed_reads_and_owned_writes,
    ),
];

/// Runs every check in [`CHECKS`], each on a fresh store from `new_store`.
pub fn run_all<S: Store, F: FnMut() -> S>(mut new_store: F) {
    for (name, check) in CHECKS {
        let mut store = new_store();
        // Name the check in the output: a bare assertion message does not say which one ran.
        eprintln!("store conformance: {name}");
        check(&mut store);
    }
}

/// Generates one `#[test]` per conformance check, each on a fresh store from `$new_store`
/// (an expression evaluated once per test), plus a test that the list is complete.
///
/// ```
/// // In a test file (here the generated tests are compiled out: doctests are not `cfg(test)`).
/// use driftkv_storage::{Durability, MemStore};
///
/// mod mem_group_commit {
///     use super::*;
///     driftkv_storage::store_conformance_tests!(MemStore::new(Durability::GroupCommit));
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($new_store:expr) => {
        $crate::store_conformance_tests!(@each $new_store;
            get_after_put, missing_key, overwrite, delete, empty_value, empty_key,
            binary_keys_and_values, large_value, scan_order, scan_prefix,
            scan_prefix_ending_in_ff, scan_after, scan_limit, scan_pages,
            scan_sees_overwrites_and_deletes, sync_keeps_everything_readable, many_keys,
            borrowed_reads_and_owned_writes);
    };
    (@each $new_store:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let mut store = $new_store;
                $crate::conformance::$check(&mut store);
            }
        )*

        /// A check added to `CHECKS` but not to the macro would silently go untested.
        #[test]
        fn every_check_is_generated() {
            let generated: &[&str] = &[$(stringify!($check)),*];
            let listed: Vec<&str> = $crate::conformance::CHECKS.iter().map(|(name, _)| *name).collect();
            assert_eq!(generated, listed.as_slice());
        }
    };
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn put(s: &mut dyn Store, k: &[u8], v: &[u8]) {
    s.put(k, v).unwrap_or_else(|e| panic!("put {k:?}: {e}"));
}

fn del(s: &mut dyn Store, k: &[u8]) {
    s.delete(k).unwrap_or_else(|e| panic!("delete {k:?}: {e}"));
}

fn get(s: &dyn Store, k: &[u8]) -> Option<Vec<u8>> {
    s.get(k).unwrap_or_else(|e| panic!("get {k:?}: {e}"))
}

/// A scan, held to lend exactly what it returns: every scan of the suite checks `scan_with`
/// too.
fn scan(s: &dyn Store, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Pairs {
    let pairs = s
        .scan(prefix, after, limit)
        .unwrap_or_else(|e| panic!("scan {prefix:?} after {after:?} limit {limit}: {e}"));
    let mut lent = Vec::new();
    s.scan_with(prefix, after, limit, &mut |k, v| {
        lent.push((k.to_vec(), v.to_vec()))
    })
    .unwrap_or_else(|e| panic!("scan_with {prefix:?} after {after:?} limit {limit}: {e}"));
    assert_eq!(lent, pairs, "scan_with lends what scan returns");
    pairs
}

fn keys(pairs: &Pairs) -> Vec<&[u8]> {
    pairs.iter().map(|(k, _)| k.as_slice()).collect()
}

/// Puts each key with a value derived from it, in the given order.
fn put_keys(s: &mut dyn Store, ks: &[&[u8]]) {
    for k in ks {
        put(s, k, &value_for(k));
    }
}

fn value_for(k: &[u8]) -> Vec<u8> {
    let mut v = b"v:".to_vec();
    v.extend_from_slice(k);
    v
}

/// A value written is the value read.
pub fn get_after_put(s: &mut dyn Store) {
    put(s, b"k", b"v");
    assert_eq!(get(s, b"k"), Some(b"v".to_vec()), "get after put");
    put(s, b"k2", b"v2");
    assert_eq!(
        get(s, b"k"),
        Some(b"v".to_vec()),
        "an unrelated put changed a key"
    );
    assert_eq!(get(s, b"k2"), Some(b"v2".to_vec()));
}

/// A key never written reads as `None`, including neighbours of written keys.
pub fn missing_key(s: &mut dyn Store) {
    assert_eq!(get(s, b"nope"), None, "empty store");
    put(s, b"ab", b"1");
    for k in [&b"a"[..], b"abc", b"ab\x00", b"aa\xff", b"b", b""] {
        assert_eq!(get(s, k), None, "missing key {k:?} next to b\"ab\"");
    }
}

/// The last put wins, also when the new value is shorter.
pub fn overwrite(s: &mut dyn Store) {
    put(s, b"k", b"first, longer value");
    put(s, b"k", b"second");
    assert_eq!(get(s, b"k"), Some(b"second".to_vec()), "overwrite");
    assert_eq!(
        scan(s, b"", None, 10),
        vec![(b"k".to_vec(), b"second".to_vec())],
        "overwrite left two entries"
    );
}

/// A deleted key is gone; deleting a missing key succeeds; a key can be written again.
pub fn delete(s: &mut dyn Store) {
    put(s, b"k", b"v");
    put(s, b"keep", b"v");
    del(s, b"k");
    assert_eq!(get(s, b"k"), None, "get after delete");
    assert_eq!(
        get(s, b"keep"),
        Some(b"v".to_vec()),
        "delete removed a different key"
    );
    del(s, b"k");
    del(s, b"never-written");
    put(s, b"k", b"again");
    assert_eq!(get(s, b"k"), Some(b"again".to_vec()), "put after delete");
}

/// An empty value is a present key, distinct from a missing one.
pub fn empty_value(s: &mut dyn Store) {
    put(s, b"k", b"");
    assert_eq!(
        get(s, b"k"),
        Some(Vec::new()),
        "empty value must read back as Some(empty)"
    );
    assert_eq!(scan(s, b"", None, 10), vec![(b"k".to_vec(), Vec::new())]);
}

/// The empty key is a key like any other, and sorts first.
pub fn empty_key(s: &mut dyn Store) {
    put(s, b"a", b"1");
    put(s, b"", b"0");
    assert_eq!(get(s, b""), Some(b"0".to_vec()), "empty key");
    assert_eq!(
        keys(&scan(s, b"", None, 10)),
        vec![&b""[..], b"a"],
        "the empty key sorts first"
    );
    del(s, b"");
    assert_eq!(get(s, b""), None);
}

/// Keys and values are raw bytes: 0x00 and 0xFF anywhere, every byte value, no text handling.
pub fn binary_keys_and_values(s: &mut dyn Store) {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"\x00".to_vec(), b"\x00".to_vec()),
        (b"\x00\x00".to_vec(), b"\x00\xff\x00".to_vec()),
        (b"\xff".to_vec(), b"\xff".to_vec()),
        (b"\xff\xff\xff".to_vec(), all_bytes.clone()),
        (b"a\x00b".to_vec(), b"nul inside".to_vec()),
        (all_bytes.clone(), all_bytes.iter().rev().copied().collect()),
        ("ключ".as_bytes().to_vec(), b"\x80\x81 not utf-8".to_vec()),
    ];
    for (k, v) in &cases {
        put(s, k, v);
    }
    for (k, v) in &cases {
        assert_eq!(get(s, k).as_ref(), Some(v), "binary key {k:?}");
    }
    let mut expected = cases.clone();
    expected.sort();
    assert_eq!(
        scan(s, b"", None, usize::MAX),
        expected,
        "binary keys in byte order"
    );
}

/// A 4 MiB value is stored and read back whole.
pub fn large_value(s: &mut dyn Store) {
    // Not a repeating pattern, so a backend that compresses still has to keep every byte.
    let mut x: u32 = 0x9E37_79B9;
    let big: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    put(s, b"big", &big);
    put(s, b"small", b"s");
    assert!(
        get(s, b"big") == Some(big.clone()),
        "4 MiB value did not read back intact"
    );
    let all = scan(s, b"", None, 10);
    assert_eq!(keys(&all), vec![&b"big"[..], b"small"]);
    assert!(all[0].1 == big, "4 MiB value differs in scan");
}

/// Scans walk keys in byte order whatever the insertion order; a key sorts before its
/// extensions, and 0x00 < 0x01 < ... < 0xFF (unsigned).
pub fn scan_order(s: &mut dyn Store) {
    let sorted: &[&[u8]] = &[
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x01",
        b"A",
        b"Z",
        b"a",
        b"a\x00",
        b"a\x01",
        b"aa",
        b"ab",
        b"b",
        b"\x7f",
        b"\x80",
        b"\xfe\xff",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
    ];
    // Inserted in a scrambled order (a fixed permutation: step 7 is coprime with 18).
    let scrambled: Vec<&[u8]> = (0..sorted.len())
        .map(|i| sorted[(i * 7) % sorted.len()])
        .collect();
    put_keys(s, &scrambled);
    let mut want: Vec<&[u8]> = sorted.to_vec();
    want.sort();
    let got = scan(s, b"", None, usize::MAX);
    assert_eq!(keys(&got), want, "scan order");
    for (k, v) in &got {
        assert_eq!(v, &value_for(k), "scan returned the wrong value for {k:?}");
    }
}

/// A prefix selects exactly the keys that start with it, including the key equal to it.
pub fn scan_prefix(s: &mut dyn Store) {
    put_keys(
        s,
        &[
            b"a",
            b"ab",
            b"abc",
            b"ab\x00",
            b"ab\xff",
            b"aa\xff",
            b"ac",
            b"b",
            b"abd",
            b"ab\xff\xff",
        ],
    );
    let got = scan(s, b"ab", None, usize::MAX);
    assert_eq!(
        keys(&got),
        vec![
            &b"ab"[..],
            b"ab\x00",
            b"abc",
            b"abd",
            b"ab\xff",
            b"ab\xff\xff"
        ],
        "prefix b\"ab\""
    );
    assert_eq!(
        keys(&scan(s, b"abc", None, 10)),
        vec![&b"abc"[..]],
        "a prefix equal to a whole key"
    );
    assert_eq!(
        scan(s, b"abcd", None, 10),
        vec![],
        "a prefix longer than every key"
    );
    assert_eq!(scan(s, b"zz", None, 10), vec![], "a prefix past every key");
    assert_eq!(scan(s, b"0", None, 10), vec![], "a prefix before every key");
    assert_eq!(
        scan(s, b"", None, usize::MAX).len(),
        10,
        "the empty prefix is everything"
    );
}

/// Prefixes ending in (or made of) 0xFF bytes, whose range has no simple upper bound.
pub fn scan_prefix_ending_in_ff(s: &mut dyn Store) {
    put_keys(
        s,
        &[
            b"k\xfe",
            b"k\xfe\xff",
            b"k\xff",
            b"k\xff\x00",
            b"k\xff\xff",
            b"k\xff\xff\xff",
            b"l",
            b"l\x00",
            b"\xff",
            b"\xff\xff",
            b"\xff\xff\x00",
            b"\xff\xfe",
        ],
    );
    assert_eq!(
        keys(&scan(s, b"k\xff", None, usize::MAX)),
        vec![&b"k\xff"[..], b"k\xff\x00", b"k\xff\xff", b"k\xff\xff\xff"],
        "prefix b\"k\\xff\""
    );
    assert_eq!(
        keys(&scan(s, b"k\xff\xff", None, usize::MAX)),
        vec![&b"k\xff\xff"[..], b"k\xff\xff\xff"]
    );
    assert_eq!(
        keys(&scan(s, b"\xff", None, usize::MAX)),
        vec![&b"\xff"[..], b"\xff\xfe", b"\xff\xff", b"\xff\xff\x00"],
        "prefix b\"\\xff\""
    );
    assert_eq!(
        keys(&scan(s, b"\xff\xff", None, usize::MAX)),
        vec![&b"\xff\xff"[..], b"\xff\xff\x00"],
        "prefix b\"\\xff\\xff\""
    );
    assert_eq!(
        keys(&scan(s, b"\xff\xff", Some(b"\xff\xff"), 10)),
        vec![&b"\xff\xff\x00"[..]],
        "after the key equal to an all-0xFF prefix"
    );
    assert_eq!(
        scan(s, b"\xff\xff\xff", None, 10),
        vec![],
        "an all-0xFF prefix with no keys"
    );
}

/// `after` is exclusive, need not be a stored key, and combines with the prefix.
pub fn scan_after(s: &mut dyn Store) {
    put_keys(s, &[b"p", b"p1", b"p2", b"p3", b"q", b"o"]);
    let after = |a: &[u8]| {
        keys(&scan(s, b"p", Some(a), usize::MAX))
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    };
    let v = |ks: &[&[u8]]| ks.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        after(b"p1"),
        v(&[b"p2", b"p3"]),
        "after a stored key is exclusive"
    );
    assert_eq!(
        after(b"p"),
        v(&[b"p1", b"p2", b"p3"]),
        "after the key equal to the prefix"
    );
    assert_eq!(
        after(b"p1\x00"),
        v(&[b"p2", b"p3"]),
        "after a key that is not stored"
    );
    assert_eq!(
        after(b"a"),
        v(&[b"p", b"p1", b"p2", b"p3"]),
        "after a key before the prefix"
    );
    assert_eq!(
        after(b""),
        v(&[b"p", b"p1", b"p2", b"p3"]),
        "after the empty key"
    );
    assert_eq!(after(b"p3"), v(&[]), "after the last key of the prefix");
    assert_eq!(after(b"p9"), v(&[]), "after past the prefix's keys");
    assert_eq!(after(b"z"), v(&[]), "after past every key");
    assert_eq!(
        keys(&scan(s, b"", Some(b"p3"), 10)),
        vec![&b"q"[..]],
        "after with the empty prefix"
    );
}

/// `limit` caps the count, takes the first keys in order, and 0 means none.
pub fn scan_limit(s: &mut dyn Store) {
    put_keys(s, &[b"c", b"a", b"e", b"b", b"d"]);
    assert_eq!(scan(s, b"", None, 0), vec![], "limit 0");
    assert_eq!(keys(&scan(s, b"", None, 1)), vec![&b"a"[..]], "limit 1");
    assert_eq!(
        keys(&scan(s, b"", None, 3)),
        vec![&b"a"[..], b"b", b"c"],
        "limit 3"
    );
    assert_eq!(scan(s, b"", None, 5).len(), 5, "limit equal to the count");
    assert_eq!(scan(s, b"", None, 1000).len(), 5, "limit above the count");
    assert_eq!(
        keys(&scan(s, b"", Some(b"b"), 2)),
        vec![&b"c"[..], b"d"],
        "limit with after"
    );
}

/// Paging with `after` = the last key of the previous page visits every key exactly once.
pub fn scan_pages(s: &mut dyn Store) {
    let ks: Vec<Vec<u8>> = (0..500u32)
        .map(|i| format!("page/{:05}", i * 3).into_bytes())
        .collect();
    for k in &ks {
        put(s, k, &value_for(k));
    }
    put(s, b"pagf", b"outside the prefix");
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    for _ in 0..ks.len() {
        let page = scan(s, b"page/", after.as_deref(), 7);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        seen.extend(page.into_iter().map(|(k, _)| k));
    }
    assert_eq!(seen, ks, "pages of 7 must cover every key once, in order");
}

/// Scans reflect the latest value of a key and skip deleted keys.
pub fn scan_sees_overwrites_and_deletes(s: &mut dyn Store) {
    put_keys(s, &[b"a", b"b", b"c", b"d"]);
    put(s, b"b", b"new");
    del(s, b"c");
    del(s, b"a");
    put(s, b"a", b"back");
    assert_eq!(
        scan(s, b"", None, 10),
        vec![
            (b"a".to_vec(), b"back".to_vec()),
            (b"b".to_vec(), b"new".to_vec()),
            (b"d".to_vec(), value_for(b"d"))
        ]
    );
    assert_eq!(
        keys(&scan(s, b"", Some(b"b"), 1)),
        vec![&b"d"[..]],
        "after and limit skip a deleted key"
    );
}

/// `sync` succeeds on an empty and on a written store and changes nothing visible.
pub fn sync_keeps_everything_readable(s: &mut dyn Store) {
    s.sync()
        .unwrap_or_else(|e| panic!("sync on an empty store: {e}"));
    put(s, b"a", b"1");
    put(s, b"b", b"2");
    del(s, b"b");
    s.sync().unwrap_or_else(|e| panic!("sync: {e}"));
    s.sync().unwrap_or_else(|e| panic!("second sync: {e}"));
    assert_eq!(scan(s, b"", None, 10), vec![(b"a".to_vec(), b"1".to_vec())]);
}

/// 10,000 keys: all readable, scanned in order, and deletes of half of them stick.
pub fn many_keys(s: &mut dyn Store) {
    const N: u32 = 10_000;
    // Written in a scrambled order (7919 is prime, so i * 7919 mod N is a permutation).
    let key = |i: u32| format!("many/{i:08}").into_bytes();
    for i in 0..N {
        let j = (i * 7919) % N;
        put(s, &key(j), &j.to_be_bytes());
    }
    for i in 0..N {
        assert_eq!(
            get(s, &key(i)),
            Some(i.to_be_bytes().to_vec()),
            "key {i} of {N}"
        );
    }
    let all = scan(s, b"many/", None, usize::MAX);
    assert_eq!(all.len(), N as usize, "scan count");
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, (k, v))| *k == key(i as u32) && *v == (i as u32).to_be_bytes()),
        "scan order over {N} keys"
    );
    for i in (0..N).filter(|i| i % 2 == 1) {
        del(s, &key(i));
    }
    let left = scan(s, b"many/", None, usize::MAX);
    assert_eq!(
        left.len(),
        N as usize / 2,
        "count after deleting the odd keys"
    );
    assert!(
        left.iter()
            .enumerate()
            .all(|(i, (k, _))| *k == key(2 * i as u32)),
        "only even keys remain"
    );
    assert_eq!(
        keys(&scan(s, b"many/", Some(&key(N - 3)), 10)),
        vec![key(N - 2).as_slice()],
        "after near the end"
    );
}

/// `get_with` lends exactly what `get` returns, once, and `put_owned` stores what `put` would,
/// before and after a sync, over deletes and overwrites.
pub fn borrowed_reads_and_owned_writes(s: &mut dyn Store) {
    fn lent(s: &dyn Store, k: &[u8]) -> Option<Vec<u8>> {
        let mut calls = 0;
        let mut seen = None;
        s.get_with(k, &mut |v| {
            calls += 1;
            seen = v.map(<[u8]>::to_vec);
        })
        .unwrap_or_else(|e| panic!("get_with {k:?}: {e}"));
        assert_eq!(calls, 1, "get_with must call back exactly once for {k:?}");
        seen
    }
    assert_eq!(lent(s, b"k"), None, "get_with of a missing key");
    s.put_owned(b"k".to_vec(), b"v1".to_vec())
        .unwrap_or_else(|e| panic!("put_owned: {e}"));
    assert_eq!(
        lent(s, b"k"),
        Some(b"v1".to_vec()),
        "get_with after put_owned"
    );
    assert_eq!(get(s, b"k"), Some(b"v1".to_vec()), "get after put_owned");
    s.sync().unwrap_or_else(|e| panic!("sync: {e}"));
    s.put_owned(b"k".to_vec(), Vec::new())
        .unwrap_or_else(|e| panic!("put_owned: {e}"));
    assert_eq!(
        lent(s, b"k"),
        Some(Vec::new()),
        "an owned empty value is present"
    );
    put(s, b"j", b"x");
    del(s, b"j");
    assert_eq!(lent(s, b"j"), None, "get_with after delete");
    assert_eq!(
        scan(s, b"", None, 10),
        vec![(b"k".to_vec(), Vec::new())],
        "scan after owned writes"
    );
}
