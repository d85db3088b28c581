//! Records of the format before this one (format 1), read into today's objects: a node
//! upgraded in place reads the data it wrote before, and rewrites each record in today's
//! format when its key next changes.
//!
//! Format 1 differs in two places: a register's values had no expiry, and a counter had no
//! record of what deletes took away. Sets are encoded alike, and maps did not exist.

use bytes::Bytes;
use serde::Deserialize;

use driftkv_causal::{Dvv, Register, Sibling, Timestamp};
use driftkv_crdt::AwSet;
use driftkv_crdt::counter::PnCounterV1;

use crate::{Object, WireError, decode};

pub(crate) const RECORD_FORMAT_V1: u8 = 1;

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct SiblingV1 {
    value: Option<Bytes>,
    timestamp: Timestamp,
}

#[derive(Deserialize)]
struct RegisterV1 {
    dvv: Dvv<SiblingV1>,
}

#[derive(Deserialize)]
enum ObjectV1 {
    Register(RegisterV1),
    Counter(PnCounterV1),
    Set(AwSet),
}

pub(crate) fn decode_object_v1(bytes: &[u8]) -> Result<Object, WireError> {
    let old: ObjectV1 = decode(RECORD_FORMAT_V1, bytes)?;
    Ok(match old {
        ObjectV1::Register(r) => {
            let dvv = r.dvv.map_values(|s| Sibling {
                value: s.value,
                timestamp: s.timestamp,
                expires_ms: None,
            });
            Object::Register(Register::from_dvv(dvv).map_err(WireError::Malformed)?)
        }
        ObjectV1::Counter(c) => Object::Counter(c.into()),
        ObjectV1::Set(s) => Object::Set(s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftkv_causal::{Actor, ConflictMode, VersionVector};
    use serde::Serialize;
    use std::collections::BTreeMap;

    /// Format 1's shapes, written as that release's derived encoders wrote them.
    #[derive(Serialize)]
    struct SiblingW {
        value: Option<Bytes>,
        timestamp: Timestamp,
    }
    #[derive(Serialize)]
    struct TotalsW {
        increments: u64,
        decrements: u64,
    }
    #[derive(Serialize)]
    enum ObjectW {
        Register {
            siblings: Vec<((Actor, u64), SiblingW)>,
            context: Vec<(Actor, u64)>,
        },
        Counter {
            entries: BTreeMap<Actor, TotalsW>,
        },
    }

    #[test]
    fn records_of_format_1_are_read_into_todays_objects() {
        let n1 = Actor::new("n1", 7);
        let old = ObjectW::Register {
            siblings: vec![(
                (n1.clone(), 1),
                SiblingW {
                    value: Some(Bytes::from_static(b"kept")),
                    timestamp: Timestamp::new(5, 0),
                },
            )],
            context: vec![(n1.clone(), 1)],
        };
        let bytes = crate::encode(RECORD_FORMAT_V1, &old);
        let Object::Register(reg) = crate::decode_object(&bytes).expect("a format-1 register")
        else {
            panic!("not a register")
        };
        assert_eq!(
            reg.values().cloned().collect::<Vec<_>>(),
            vec![Bytes::from_static(b"kept")]
        );
        assert_eq!(reg.newest_live(u64::MAX).and_then(|s| s.expires_ms), None);
        // The same state written today and merged: nothing differs.
        let mut today = Register::new();
        today
            .write(
                ConflictMode::Siblings,
                &n1,
                &VersionVector::new(),
                Some(Bytes::from_static(b"kept")),
                Timestamp::new(5, 0),
            )
            .unwrap();
        assert_eq!(reg, today);
        // Written again (as the store writes every record: `encode_object`), it is in today's
        // format, and reads back the same.
        let again = crate::encode_object(&Object::Register(reg.clone()));
        assert_eq!(again[0], crate::RECORD_FORMAT_VERSION);
        assert_eq!(crate::decode_object(&again), Ok(Object::Register(reg)));

        let old = ObjectW::Counter {
            entries: BTreeMap::from([(
                n1,
                TotalsW {
                    increments: 9,
                    decrements: 2,
                },
            )]),
        };
        let bytes = crate::encode(RECORD_FORMAT_V1, &old);
        let Object::Counter(c) = crate::decode_object(&bytes).expect("a format-1 counter") else {
            panic!("not a counter")
        };
        assert_eq!(c.value(), 7);
        // Today's records are written in today's format.
        assert_eq!(
            crate::encode_object(&Object::Counter(c))[0],
            crate::RECORD_FORMAT_VERSION
        );
    }
}
