//! Causal-context tokens: the opaque string a client gets with a read and sends back with a
//! write, so the write replaces exactly what the client saw.
//!
//! Layout, then base64url without padding:
//! `[format version: u8][postcard(Body)][xxh3-64 of everything before, first 4 bytes, LE]`.
//! The body binds the token to its key, so a context read from one key and sent with another
//! is refused instead of silently discarding that key's siblings. Tokens are checksummed, not
//! signed: corruption is caught; a client crafting counters is trusted like any other writer.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::vv::VersionVector;

/// The token format this build writes and reads.
pub const TOKEN_FORMAT_VERSION: u8 = 1;
/// A token longer than this (in characters) is refused before decoding.
pub const TOKEN_CHARS_MAX: usize = 8 * 1024;
/// A version vector with more actors than this is refused: real clusters have a handful.
pub const TOKEN_ACTORS_MAX: usize = 512;
const CHECKSUM_BYTES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("causal context token is too long ({0} characters, at most {TOKEN_CHARS_MAX})")]
    TooLong(usize),
    #[error("causal context token is not base64url")]
    NotBase64,
    #[error("causal context token is truncated")]
    Truncated,
    #[error(
        "causal context token has format version {0}, this node reads version {TOKEN_FORMAT_VERSION}"
    )]
    UnknownVersion(u8),
    #[error("causal context token is corrupt (checksum mismatch)")]
    Corrupt,
    #[error("causal context token is malformed")]
    Malformed,
    #[error("causal context token names {0} actors, at most {TOKEN_ACTORS_MAX}")]
    TooManyActors(usize),
    #[error("causal context token belongs to another key")]
    WrongKey,
}

#[derive(Serialize, Deserialize)]
struct Body {
    key_check: u32,
    context: VersionVector,
}

/// Encoding and decoding of causal-context tokens.
pub struct ContextToken;

impl ContextToken {
    pub fn encode(context: &VersionVector, bucket: &[u8], key: &[u8]) -> String {
        let body = Body {
            key_check: key_check(bucket, key),
            context: context.clone(),
        };
        let mut bytes = vec![TOKEN_FORMAT_VERSION];
        bytes.extend(postcard::to_allocvec(&body).expect("encoding to a Vec cannot fail"));
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes).to_le_bytes();
        bytes.extend_from_slice(&sum[..CHECKSUM_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(token: &str, bucket: &[u8], key: &[u8]) -> Result<VersionVector, TokenError> {
        let token = token.trim();
        if token.len() > TOKEN_CHARS_MAX {
            return Err(TokenError::TooLong(token.len()));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::NotBase64)?;
        if bytes.len() < 1 + CHECKSUM_BYTES {
            return Err(TokenError::Truncated);
        }
        let (payload, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        if payload[0] != TOKEN_FORMAT_VERSION {
            return Err(TokenError::UnknownVersion(payload[0]));
        }
        if xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes()[..CHECKSUM_BYTES] != *sum {
            return Err(TokenError::Corrupt);
        }
        let (body, rest): (Body, &[u8]) =
            postcard::take_from_bytes(&payload[1..]).map_err(|_| TokenError::Malformed)?;
        if !rest.is_empty() {
            return Err(TokenError::Malformed);
        }
        if body.context.len() > TOKEN_ACTORS_MAX {
            return Err(TokenError::TooManyActors(body.context.len()));
        }
        if body.key_check != key_check(bucket, key) {
            return Err(TokenError::WrongKey);
        }
        Ok(body.context)
    }
}

fn key_check(bucket: &[u8], key: &[u8]) -> u32 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(bucket.len() as u64).to_le_bytes());
    h.update(bucket);
    h.update(key);
    h.digest() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Actor;
    use proptest::prelude::*;

    fn arb_context() -> impl Strategy<Value = VersionVector> {
        proptest::collection::vec(("[a-z0-9]{1,8}", 0u32..3, 1u64..u64::MAX), 0..8).prop_map(|v| {
            v.into_iter()
                .map(|(n, i, c)| (Actor::new(n, i), c))
                .collect()
        })
    }

    #[test]
    fn a_token_for_another_key_is_refused() {
        let vv: VersionVector = [(Actor::from("n1"), 3)].into_iter().collect();
        let t = ContextToken::encode(&vv, b"default", b"a");
        assert_eq!(
            ContextToken::decode(&t, b"default", b"b"),
            Err(TokenError::WrongKey)
        );
        assert_eq!(
            ContextToken::decode(&t, b"other", b"a"),
            Err(TokenError::WrongKey)
        );
        assert_eq!(ContextToken::decode(&t, b"default", b"a"), Ok(vv));
    }

    #[test]
    fn garbage_gives_clear_errors() {
        assert_eq!(
            ContextToken::decode("", b"d", b"k"),
            Err(TokenError::Truncated)
        );
        assert_eq!(
            ContextToken::decode("!!!", b"d", b"k"),
            Err(TokenError::NotBase64)
        );
        assert_eq!(
            ContextToken::decode(&"A".repeat(TOKEN_CHARS_MAX + 1), b"d", b"k"),
            Err(TokenError::TooLong(TOKEN_CHARS_MAX + 1))
        );
        let other_version = URL_SAFE_NO_PAD.encode([9u8, 0, 0, 0, 0, 0]);
        assert_eq!(
            ContextToken::decode(&other_version, b"d", b"k"),
            Err(TokenError::UnknownVersion(9))
        );
    }

    proptest! {
        #[test]
        fn tokens_round_trip(vv in arb_context(), key in proptest::collection::vec(any::<u8>(), 0..64)) {
            let t = ContextToken::encode(&vv, b"default", &key);
            prop_assert_eq!(ContextToken::decode(&t, b"default", &key), Ok(vv));
        }

        #[test]
        fn a_corrupted_token_is_an_error_never_a_panic_or_another_context(
            vv in arb_context(), flip_at in any::<proptest::sample::Index>(), flip in 1u8..=255,
        ) {
            let t = ContextToken::encode(&vv, b"default", b"k");
            let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
            let i = flip_at.index(raw.len());
            raw[i] ^= flip;
            let bad = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(ContextToken::decode(&bad, b"default", b"k").is_err());
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,200}") {
            let _ = ContextToken::decode(&s, b"default", b"k");
        }
    }
}
