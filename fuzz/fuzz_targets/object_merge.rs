//! Fuzzes merges of what peers send and storage holds: two objects decoded from the input
//! (`driftkv_wire::decode_object`, split at a length byte) are merged both ways, under both
//! conflict modes, as a replica merges a peer's state into its own.
//!
//! Checked: no panic (debug assertions on: a merge's change report must match whether the
//! state changed); a merge is idempotent (merging the same state again changes nothing); the
//! result re-encodes and decodes to itself.
#![no_main]

use driftkv_causal::ConflictMode;
use driftkv_wire::{decode_object, encode_object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize).min(rest.len());
    let (a, b) = rest.split_at(at);
    let (Ok(a), Ok(b)) = (decode_object(a), decode_object(b)) else {
        return;
    };
    for mode in [ConflictMode::Siblings, ConflictMode::Lww] {
        for (x, y) in [(&a, &b), (&b, &a)] {
            let mut merged = x.clone();
            merged.merge(mode, y);
            let once = merged.clone();
            let again = merged.merge(mode, y);
            assert!(
                !again.changed,
                "{mode:?}: merging the same state twice changed it\n{x:?}\n+ {y:?}\n= {once:?}\n+ again = {merged:?}"
            );
            let record = encode_object(&merged);
            let decoded = decode_object(&record)
                .unwrap_or_else(|e| panic!("a merged object does not decode: {e}"));
            assert_eq!(
                decoded, merged,
                "the merged object changed through a re-encoding"
            );
        }
    }
});
