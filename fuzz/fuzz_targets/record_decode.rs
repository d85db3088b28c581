//! Fuzzes the decoders a node runs on what it reads back from storage (a corrupt disk, or a
//! data directory written by another build): stored objects (`driftkv_wire::decode_object`,
//! registers, counters and sets), the membership record (`Vec<Remembered>` behind format
//! version 1), and the record keys of data and hints (`driftkv_core::keys`); and what
//! `POST /admin/restore` and `driftkv backup` read, which are stored records too: restore
//! batches, dump pages and backup file records (`driftkv_wire::backup`).
//!
//! Every decoder is tried on the whole input. Checked: no panic; a decoded object re-encodes
//! (with `encode_object`, whose direct register encoder must write exactly the bytes of the
//! serde encoder) to a record that decodes to an equal object; a decoded membership record
//! round-trips likewise; a parsed data or hint key rebuilds to the same bytes (a data key's
//! segment aside: the harness does not make it agree with the key) and parses back the same.
#![no_main]

use driftkv_core::keys;
use driftkv_core::membership::Remembered;
use driftkv_wire::{RECORD_FORMAT_VERSION, decode_object, encode, encode_object};
use libfuzzer_sys::fuzz_target;

/// The format version the node writes its membership record with.
const MEMBERS_RECORD_VERSION: u8 = 1;

fn object(data: &[u8]) {
    let Ok(object) = decode_object(data) else {
        return;
    };
    let record = encode_object(&object);
    assert_eq!(
        record,
        encode(RECORD_FORMAT_VERSION, &object),
        "encode_object and the serde encoder disagree on {object:?}"
    );
    let again = decode_object(&record)
        .unwrap_or_else(|e| panic!("a re-encoded object does not decode: {e}\n{object:?}"));
    assert_eq!(again, object, "the object changed through a re-encoding");
    assert_eq!(encode_object(&again), record, "encoding is not stable");
}

fn members(data: &[u8]) {
    let Ok(members) = driftkv_wire::decode::<Vec<Remembered>>(MEMBERS_RECORD_VERSION, data) else {
        return;
    };
    let record = encode(MEMBERS_RECORD_VERSION, &members);
    let again: Vec<Remembered> = driftkv_wire::decode(MEMBERS_RECORD_VERSION, &record)
        .unwrap_or_else(|e| panic!("a re-encoded membership record does not decode: {e}"));
    assert_eq!(
        again, members,
        "the membership record changed through a re-encoding"
    );
}

fn data_key(raw: &[u8]) {
    let Some((partition, key)) = keys::parse_data_key(raw) else {
        return;
    };
    let segment = keys::segment_of_data_key(raw).expect("a parsed data key has a segment");
    let rebuilt = keys::data_key(partition, &key);
    assert_eq!(
        rebuilt.len(),
        raw.len(),
        "a data key rebuilt to another length"
    );
    // Byte 0 is the tag, 1..5 the partition, 5..7 the segment.
    assert_eq!(rebuilt[..5], raw[..5], "a data key's partition changed");
    assert_eq!(rebuilt[7..], raw[7..], "a data key's bucket or key changed");
    let mut same = rebuilt.clone();
    same[5..7].copy_from_slice(&segment.to_be_bytes());
    assert_eq!(same, raw, "a data key does not rebuild to its bytes");
    assert_eq!(
        keys::parse_data_key(&rebuilt),
        Some((partition, key)),
        "a rebuilt data key parses to another key"
    );
}

fn hint_key(raw: &[u8]) {
    let Some((node, data_key)) = keys::parse_hint_key(raw) else {
        return;
    };
    let rebuilt = keys::hint_key(&node, data_key);
    assert_eq!(rebuilt, raw, "a hint key does not rebuild to its bytes");
}

/// A restore batch, a dump page and a backup file record: each record's object decodes or
/// is refused, and a decoded batch never holds more records than its bound.
fn backup(data: &[u8]) {
    use driftkv_wire::backup::{decode_batch, decode_page, decode_record};
    if let Ok(batch) = decode_batch(data, 64) {
        assert!(batch.len() <= 64, "a batch past its bound decoded");
        for (_, raw) in &batch {
            let _ = decode_object(raw);
        }
    }
    if let Ok(page) = decode_page(data) {
        for (_, _, raw) in &page.records {
            let _ = decode_object(raw);
        }
    }
    if let Ok((_, raw)) = decode_record(data) {
        let _ = decode_object(&raw);
    }
}

fuzz_target!(|data: &[u8]| {
    object(data);
    backup(data);
    members(data);
    data_key(data);
    hint_key(data);
});
