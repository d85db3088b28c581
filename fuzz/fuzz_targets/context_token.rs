//! Fuzzes the causal-context token decoder, `driftkv_causal::ContextToken::decode`, which reads
//! the `X-Causal-Context` and `X-Session-Token` headers clients send.
//!
//! Input layout: byte 0 holds flags (bit 0: "seal"), byte 1 the bucket's length, byte 2 the
//! key's length, then the bucket, the key and the token's text. Unsealed, the text must be
//! UTF-8 and is decoded as sent. Sealed, the rest is the token's raw bytes (format version and
//! postcard body): the harness appends their checksum and base64url-encodes them, as
//! `ContextToken::encode` does, so the fuzzer gets past the checksum into the body decoder.
//!
//! Checked: no panic; a version vector that decodes re-encodes (for the same bucket and key)
//! to a token that decodes to an equal version vector.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use driftkv_causal::ContextToken;
use libfuzzer_sys::fuzz_target;

/// The checksum bytes a token ends with: the first 4 bytes of the xxh3-64 of what precedes.
const CHECKSUM_BYTES: usize = 4;

fuzz_target!(|data: &[u8]| {
    let [flags, bucket_len, key_len, rest @ ..] = data else {
        return;
    };
    let (bucket_len, key_len) = (*bucket_len as usize, *key_len as usize);
    if rest.len() < bucket_len + key_len {
        return;
    }
    let (bucket, rest) = rest.split_at(bucket_len);
    let (key, raw) = rest.split_at(key_len);
    let token = if flags & 1 == 1 {
        let mut sealed = raw.to_vec();
        let sum = xxhash_rust::xxh3::xxh3_64(raw).to_le_bytes();
        sealed.extend_from_slice(&sum[..CHECKSUM_BYTES]);
        URL_SAFE_NO_PAD.encode(sealed)
    } else {
        match std::str::from_utf8(raw) {
            Ok(text) => text.to_string(),
            Err(_) => return,
        }
    };
    let Ok(context) = ContextToken::decode(&token, bucket, key) else {
        return;
    };
    let again = ContextToken::encode(&context, bucket, key);
    match ContextToken::decode(&again, bucket, key) {
        Ok(back) => assert_eq!(back, context, "the context changed through a re-encoding"),
        Err(e) => panic!("a re-encoded token does not decode: {e}\n{context:?}\n{again}"),
    }
});
