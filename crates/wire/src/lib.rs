//! What crosses the wire and lands on disk: keys, stored objects, requests, replies and
//! node-to-node messages, with one versioned binary encoding (postcard) for both.
//!
//! Every encoded frame and record starts with a format version byte, so a node refuses what a
//! newer release wrote instead of misreading it.

#![forbid(unsafe_code)]

pub mod backup;
mod legacy;
pub mod message;
pub mod object;
mod record;

pub use driftkv_crdt::FieldValue;
pub use message::{
    Envelope, ErrorKind, Hash64, Hello, ListCursor, Listed, MemberDigest, MemberInfo, MemberState,
    Message, Quorum, ReplicaView, Reply, ReqId, Request,
};
pub use message::{EnvelopeV3, HelloV3};
pub use object::{Key, Object, ObjectKind};

/// Version of the node-to-node protocol. A node speaks its own and the one before
/// ([`PROTOCOL_VERSION_OLDEST`]); two nodes agree at the handshake on the newest both speak,
/// and refuse each other when they share none. 3: values carry an expiry, counters their
/// deletes, maps and key listing. 4: the handshake names the versions spoken and the ring's
/// settings, a refusal can be answered, and a forwarded request may be a restore.
pub const PROTOCOL_VERSION: u16 = 4;
/// The oldest protocol version this node still speaks.
pub const PROTOCOL_VERSION_OLDEST: u16 = 3;
/// The frame byte of a handshake of version 4 or later: its layout stays the same in later
/// versions, so nodes of different versions read each other's handshake.
pub const HANDSHAKE_FRAME_VERSION: u8 = 4;
/// Version of the on-disk record format. 2: a register's values carry an expiry, a counter
/// what deletes took away, and maps exist. Records of format 1 are still read
/// ([`decode_object`]); they are rewritten in format 2 the next time their key changes.
pub const RECORD_FORMAT_VERSION: u8 = 2;
/// The largest frame a node sends or accepts: a 4 MiB value plus its causal metadata, with
/// room for a configured larger value limit.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty frame")]
    Empty,
    #[error("format version {found} is not one this build reads (it reads up to {expected})")]
    Version { found: u8, expected: u8 },
    #[error("frame of {0} bytes exceeds the limit of {FRAME_BYTES_MAX}")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Bytes as lower-case hexadecimal (record positions in cursors and dump requests).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Reads what [`hex`] wrote (either case); `None` for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Encodes a value behind a format version byte.
pub fn encode<T: serde::Serialize>(version: u8, value: &T) -> Vec<u8> {
    // One buffer from the start (most frames and records fit it), the version byte first.
    let mut out = Vec::with_capacity(128);
    out.push(version);
    postcard::to_extend(value, out).expect("postcard encoding into a Vec cannot fail")
}

/// Decodes what [`encode`] wrote with the same version; never panics on any input.
pub fn decode<T: serde::de::DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let (&found, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if found != version {
        return Err(WireError::Version {
            found,
            expected: version,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// The frame version of node-to-node messages: the low byte of [`PROTOCOL_VERSION`].
pub const FRAME_VERSION: u8 = PROTOCOL_VERSION as u8;

pub fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    encode(FRAME_VERSION, envelope)
}

pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, WireError> {
    decode(FRAME_VERSION, bytes)
}

/// Whether a node of protocol version 3 can read `message` (a restore is new in 4).
pub fn message_in_v3(message: &Message) -> bool {
    !matches!(message, Message::Forward { request, .. } if matches!(**request, Request::Restore { .. }))
}

/// The frame of `envelope` on a connection speaking `version`; `None` when that version
/// cannot carry it. Version 3 has its own handshake and no refusal; its messages are laid out
/// as today's, under its own frame byte.
pub fn encode_envelope_for(version: u16, envelope: &Envelope) -> Option<Vec<u8>> {
    let byte = u8::try_from(version).ok()?;
    if version > PROTOCOL_VERSION_OLDEST {
        return Some(encode(byte, envelope));
    }
    match envelope {
        Envelope::Hello(h) => Some(encode(byte, &EnvelopeV3::Hello(h.to_v3()))),
        Envelope::Message { message, .. } if message_in_v3(message) => Some(encode(byte, envelope)),
        Envelope::Message { .. } | Envelope::Refused(_) => None,
    }
}

/// Reads a frame of any version in `versions` (the ones a connection accepts), with the
/// version it was written in. A version 3 handshake reads as a [`Hello`] that speaks only 3
/// and names no ring settings.
pub fn decode_envelope_from(
    bytes: &[u8],
    versions: std::ops::RangeInclusive<u16>,
) -> Result<(u16, Envelope), WireError> {
    let found = *bytes.first().ok_or(WireError::Empty)?;
    let version = u16::from(found);
    if !versions.contains(&version) {
        return Err(WireError::Version {
            found,
            expected: u8::try_from(*versions.end()).unwrap_or(u8::MAX),
        });
    }
    if version <= PROTOCOL_VERSION_OLDEST {
        let envelope = match decode::<EnvelopeV3>(found, bytes)? {
            EnvelopeV3::Hello(h) if h.protocol_version != version => {
                return Err(WireError::Malformed(format!(
                    "a handshake of version {version} claims version {}",
                    h.protocol_version
                )));
            }
            EnvelopeV3::Hello(h) => Envelope::Hello(Hello::from_v3(h)),
            EnvelopeV3::Message { from, message } => Envelope::Message { from, message },
        };
        return Ok((version, envelope));
    }
    Ok((version, decode(found, bytes)?))
}

/// A stored record: registers (most writes) by the direct encoder in `record`, which writes
/// the bytes [`encode`] would; counters and sets through serde.
pub fn encode_object(object: &Object) -> Vec<u8> {
    match object {
        Object::Register(register) => record::encode_register(RECORD_FORMAT_VERSION, register),
        _ => encode(RECORD_FORMAT_VERSION, object),
    }
}

/// A stored record of this format or the one before.
pub fn decode_object(bytes: &[u8]) -> Result<Object, WireError> {
    match bytes.first() {
        Some(&legacy::RECORD_FORMAT_V1) => legacy::decode_object_v1(bytes),
        _ => decode(RECORD_FORMAT_VERSION, bytes),
    }
}
