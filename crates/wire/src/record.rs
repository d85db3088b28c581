//! The stored record of a register, written directly: the same bytes the serde encoder
//! (postcard) writes for `Object::Register`, without going through serde.
//!
//! A replica encodes a record for every write it takes, and registers are most of them. The
//! generic path pays for serde's layering at every field (a call per varint, a call per short
//! copy, a grown buffer); this one sizes the buffer once and writes the fields in line. Decoding
//! stays with serde (it must check everything anyway, and records are decoded once per key,
//! then cached). The property test below holds this encoder to postcard's bytes for arbitrary
//! registers, so the format has one definition: the derived one.
//!
//! The shape (postcard): the variant index of `Object::Register` (0); the sibling map (its
//! length, then each dot and sibling); the context (its length, then each actor and counter).
//! A dot is its actor then its counter; an actor its name (length, bytes) then incarnation; a
//! sibling its value (`0`, or `1`, length, bytes), its timestamp, then its expiry (`0`, or `1`
//! and the millisecond). Integers and lengths are LEB128 varints.

use driftkv_causal::Register;
use driftkv_causal::actor::Actor;

/// The variant index postcard writes for `Object::Register`.
const REGISTER_VARIANT: u8 = 0;

/// Appends `n` as an unsigned LEB128 varint.
#[inline]
fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[inline]
fn actor(out: &mut Vec<u8>, actor: &Actor) {
    varint(out, actor.node.len() as u64);
    out.extend_from_slice(actor.node.as_bytes());
    varint(out, u64::from(actor.incarnation));
}

/// An upper bound on the encoded size (each varint at its widest), so one allocation holds it.
fn size_bound(register: &Register) -> usize {
    const VARINT_MAX: usize = 10;
    let dvv = register.dvv();
    let siblings: usize = dvv
        .siblings()
        .map(|(dot, s)| {
            dot.actor.node.len() + s.value.as_ref().map_or(0, |v| v.len()) + 8 * VARINT_MAX
        })
        .sum();
    let context: usize = dvv
        .context()
        .iter()
        .map(|(a, _)| a.node.len() + 3 * VARINT_MAX)
        .sum();
    // Version byte, variant, two map lengths.
    4 + 2 * VARINT_MAX + siblings + context
}

/// The record of `register` behind the format version byte `version`.
pub(crate) fn encode_register(version: u8, register: &Register) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_bound(register));
    out.push(version);
    out.push(REGISTER_VARIANT);
    let dvv = register.dvv();
    varint(&mut out, dvv.len() as u64);
    for (dot, sibling) in dvv.siblings() {
        actor(&mut out, &dot.actor);
        varint(&mut out, dot.counter);
        match &sibling.value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                varint(&mut out, value.len() as u64);
                out.extend_from_slice(value);
            }
        }
        varint(&mut out, sibling.timestamp.0);
        match sibling.expires_ms {
            None => out.push(0),
            Some(ms) => {
                out.push(1);
                varint(&mut out, ms);
            }
        }
    }
    let context = dvv.context();
    varint(&mut out, context.len() as u64);
    for (a, counter) in context.iter() {
        actor(&mut out, a);
        varint(&mut out, *counter);
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use driftkv_causal::actor::Actor;
    use driftkv_causal::{ConflictMode, Register, Timestamp, VersionVector};
    use proptest::prelude::*;

    use crate::{Object, RECORD_FORMAT_VERSION, decode_object, encode, encode_object};

    /// One step of a register's history on one of three replicas.
    #[derive(Clone, Debug)]
    enum Step {
        /// Replica `at` writes (`None`: deletes) with its own context or an empty one.
        Write {
            at: usize,
            value: Option<Vec<u8>>,
            timestamp: u64,
            expires: Option<u64>,
            blind: bool,
        },
        /// Replica `at` merges replica `from`'s state.
        Merge { at: usize, from: usize },
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (
                0..3usize,
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                any::<u64>(),
                proptest::option::of(any::<u64>()),
                any::<bool>(),
            )
                .prop_map(|(at, value, timestamp, expires, blind)| Step::Write {
                    at,
                    value,
                    timestamp,
                    expires,
                    blind
                }),
            (0..3usize, 0..3usize).prop_map(|(at, from)| Step::Merge { at, from }),
        ]
    }

    /// Three actors, one with a name long enough that its length takes two varint bytes, and
    /// incarnations that do too.
    fn actors() -> [Actor; 3] {
        [
            Actor::new("n1", 0),
            Actor::new("a-much-longer-node-name-".repeat(7), 300),
            Actor::new("", u32::MAX),
        ]
    }

    proptest! {
        #[test]
        fn registers_encode_to_the_bytes_serde_writes(
            steps in proptest::collection::vec(arb_step(), 0..24),
            lww in any::<bool>(),
        ) {
            let mode = if lww { ConflictMode::Lww } else { ConflictMode::Siblings };
            let actors = actors();
            let mut replicas = vec![Register::new(); 3];
            for step in steps {
                match step {
                    Step::Write { at, value, timestamp, expires, blind } => {
                        let context = if blind {
                            VersionVector::new()
                        } else {
                            replicas[at].context().clone()
                        };
                        replicas[at].write_expiring(
                            mode,
                            &actors[at],
                            &context,
                            value.map(Bytes::from),
                            expires,
                            Timestamp(timestamp),
                        ).unwrap();
                    }
                    Step::Merge { at, from } => {
                        let other = replicas[from].clone();
                        replicas[at].merge(mode, &other);
                    }
                }
            }
            for register in replicas {
                let object = Object::Register(register);
                let direct = encode_object(&object);
                prop_assert_eq!(&direct, &encode(RECORD_FORMAT_VERSION, &object));
                prop_assert_eq!(decode_object(&direct).expect("decodes"), object);
            }
        }
    }
}
