//! Fuzzes the node-to-node frame decoder, `driftkv_wire::decode_envelope`, with what a peer (or
//! anyone reaching the cluster port) could send after the length prefix.
//!
//! Checked: no panic on any bytes; an envelope that decodes re-encodes (with
//! `encode_envelope`) to a frame that decodes to an equal envelope, and that frame is the
//! encoder's fixed point (encoding the second decode gives the same bytes). The decoder of
//! every version a node accepts (`decode_envelope_from`, version 3's frames included) never
//! panics either.
#![no_main]

use driftkv_wire::{decode_envelope, encode_envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = driftkv_wire::decode_envelope_from(
        data,
        driftkv_wire::PROTOCOL_VERSION_OLDEST..=driftkv_wire::PROTOCOL_VERSION + 1,
    );
    let Ok(envelope) = decode_envelope(data) else {
        return;
    };
    let frame = encode_envelope(&envelope);
    let again = decode_envelope(&frame)
        .unwrap_or_else(|e| panic!("a re-encoded envelope does not decode: {e}\n{envelope:?}"));
    assert_eq!(
        again, envelope,
        "the envelope changed through a re-encoding"
    );
    assert_eq!(
        encode_envelope(&again),
        frame,
        "encoding is not stable across a round trip"
    );
});
