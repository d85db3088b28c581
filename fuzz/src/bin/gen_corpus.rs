//! Writes the fuzz targets' seed corpora (fuzz/corpus/TARGET/) from real inputs: RESP commands
//! as clients send them, frames and records as the encoders write them, tokens as the HTTP API
//! hands them out, the repository's scenario files, and JSON bodies of the HTTP API.
//!
//! Run from fuzz/: `cargo run --features gen --bin gen_corpus` (or pass another output
//! directory). Each target's directory is emptied and rewritten, so the committed corpus is
//! exactly what this program makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use driftkv_causal::{Actor, ConflictMode, ContextToken, Register, Timestamp, VersionVector};
use driftkv_core::keys;
use driftkv_core::membership::Remembered;
use driftkv_crdt::{AwSet, OrMap, PnCounter};
use driftkv_ring::{NodeId, PartitionId};
use driftkv_wire::{
    Envelope, ErrorKind, Hash64, Hello, Key, MemberDigest, Message, Object, ObjectKind,
    PROTOCOL_VERSION, Quorum, ReplicaView, Reply, Request, encode_envelope, encode_object,
};

type Seeds = Vec<(String, Vec<u8>)>;

fn seed(name: &str, bytes: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_string(), bytes.into())
}

/// A command as clients send it: an array of bulk strings.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn resp_seeds() -> Seeds {
    let mut pipeline = Vec::new();
    for i in 0..4 {
        let key = format!("key:{i}");
        pipeline.extend(resp(&[b"SET", key.as_bytes(), b"value"]));
        pipeline.extend(resp(&[b"GET", key.as_bytes()]));
    }
    let mut mixed = b"PING\r\n".to_vec();
    mixed.extend(resp(&[b"INCRBY", b"hits", b"-5"]));
    mixed.extend_from_slice(b"DRIFTKV CONSISTENCY one all\r\n");
    mixed.extend(resp(&[b"SMEMBERS", b"tags"]));
    let mut partial = resp(&[b"SET", b"k", b"v"]);
    partial.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$1");
    vec![
        seed("set.resp", resp(&[b"SET", b"k", b"v"])),
        seed("get.resp", resp(&[b"GET", b"k"])),
        seed("del_many.resp", resp(&[b"DEL", b"a", b"b", b"c"])),
        seed(
            "set_binary.resp",
            resp(&[b"SET", b"bin\x00key", b"\xff\x00\r\n\xfe"]),
        ),
        seed("incr.resp", resp(&[b"INCR", b"counter"])),
        seed("sadd.resp", resp(&[b"SADD", b"tags", b"red", b"green"])),
        seed(
            "consistency.resp",
            resp(&[b"DRIFTKV", b"CONSISTENCY", b"quorum", b"2"]),
        ),
        seed("session.resp", resp(&[b"DRIFTKV", b"SESSION", b"ON"])),
        seed("empty_array.resp", b"*0\r\n".to_vec()),
        seed("null_array.resp", b"*-1\r\n".to_vec()),
        seed("inline_ping.txt", b"PING\r\n".to_vec()),
        seed("inline_set.txt", b"SET greeting hello\n".to_vec()),
        seed("inline_blank.txt", b"\r\n".to_vec()),
        seed("pipeline.resp", pipeline),
        seed("mixed_pipeline.resp", mixed),
        seed("partial_tail.resp", partial),
    ]
}

fn actor(name: &str, incarnation: u32) -> Actor {
    Actor::new(name, incarnation)
}

fn vv(entries: &[(&str, u32, u64)]) -> VersionVector {
    entries.iter().map(|&(n, i, c)| (actor(n, i), c)).collect()
}

/// A register with one value written by n1.
fn register_one() -> Register {
    let mut r = Register::new();
    r.write(
        ConflictMode::Siblings,
        &actor("n1", 7),
        &VersionVector::new(),
        Some(Bytes::from_static(b"hello")),
        Timestamp::new(1_700_000_000_000, 0),
    )
    .expect("a fresh register takes a write");
    r
}

/// A register with two concurrent siblings (written through n1 and n2) and a third actor's
/// history in its context.
fn register_siblings() -> Register {
    let mut a = register_one();
    let mut b = Register::new();
    b.write(
        ConflictMode::Siblings,
        &actor("n2", 1),
        &VersionVector::new(),
        Some(Bytes::from_static(b"\xff\x00binary")),
        Timestamp::new(1_700_000_000_001, 3),
    )
    .expect("a fresh register takes a write");
    let mut c = Register::new();
    c.write(
        ConflictMode::Siblings,
        &actor("a-longer-node-name", 300),
        &VersionVector::new(),
        Some(Bytes::from_static(b"old")),
        Timestamp::new(1_600_000_000_000, 0),
    )
    .expect("a fresh register takes a write");
    b.merge(ConflictMode::Siblings, &c);
    let context = b.context().clone();
    b.write(
        ConflictMode::Siblings,
        &actor("n2", 1),
        &context,
        Some(Bytes::from_static(b"newer")),
        Timestamp::new(1_700_000_000_002, 0),
    )
    .expect("a register takes a write");
    a.merge(ConflictMode::Siblings, &b);
    a
}

/// A deleted register: a tombstone over the value.
fn register_tombstone() -> Register {
    let mut r = register_one();
    let context = r.context().clone();
    r.write(
        ConflictMode::Siblings,
        &actor("n1", 7),
        &context,
        None,
        Timestamp::new(1_700_000_000_500, 1),
    )
    .expect("a register takes a delete");
    r
}

fn register_lww() -> Register {
    let mut r = register_siblings();
    r.write(
        ConflictMode::Lww,
        &actor("n3", 2),
        &VersionVector::new(),
        Some(Bytes::from(vec![b'x'; 300])),
        Timestamp::new(1_800_000_000_000, 9),
    )
    .expect("a register takes a write");
    r
}

fn counter() -> PnCounter {
    let mut c = PnCounter::new();
    c.apply(&actor("n1", 7), 42).expect("no overflow");
    c.apply(&actor("n2", 1), -17).expect("no overflow");
    c.apply(&actor("n1", 7), i64::MAX).expect("no overflow");
    c
}

fn set() -> AwSet {
    let mut s = AwSet::new();
    for m in [&b"red"[..], b"green", b"\xff\xfe"] {
        s.add(&actor("n1", 7), Bytes::copy_from_slice(m))
            .expect("dots left");
    }
    s.add(&actor("n2", 1), Bytes::from_static(b"blue"))
        .expect("dots left");
    s.remove(b"green");
    s
}

fn register_expiring() -> Register {
    let mut r = register_one();
    let context = r.context().clone();
    r.write_expiring(
        ConflictMode::Siblings,
        &actor("n2", 1),
        &context,
        Some(Bytes::from_static(b"session")),
        Some(1_700_000_060_000),
        Timestamp::new(1_700_000_000_700, 0),
    )
    .expect("a register takes a write");
    r
}

fn counter_reset() -> PnCounter {
    let mut c = counter();
    c.reset();
    c.apply(&actor("n3", 4), 5).expect("no overflow");
    c
}

fn map() -> OrMap {
    let mut m = OrMap::new();
    let ts = Timestamp::new(1_700_000_000_000, 0);
    m.set(
        &actor("n1", 7),
        Bytes::from_static(b"name"),
        Bytes::from_static(b"ann"),
        ts,
    )
    .expect("dots left");
    m.set(
        &actor("n2", 1),
        Bytes::from_static(b"city"),
        Bytes::from_static(b"oslo"),
        ts,
    )
    .expect("dots left");
    m.increment(&actor("n2", 1), Bytes::from_static(b"visits"), 3)
        .expect("no overflow");
    m.increment(&actor("n1", 7), Bytes::from_static(b"visits"), -1)
        .expect("no overflow");
    m.remove(b"city");
    m
}

fn objects() -> Vec<(&'static str, Object)> {
    vec![
        ("register_expiring", Object::Register(register_expiring())),
        ("counter_reset", Object::Counter(counter_reset())),
        ("map", Object::Map(map())),
        ("register_one", Object::Register(register_one())),
        ("register_siblings", Object::Register(register_siblings())),
        ("register_tombstone", Object::Register(register_tombstone())),
        ("register_lww", Object::Register(register_lww())),
        ("register_empty", Object::empty(ObjectKind::Register)),
        ("counter", Object::Counter(counter())),
        ("set", Object::Set(set())),
    ]
}

fn digest(id: &str, generation: u64, heartbeat: u64, leaving: bool) -> MemberDigest {
    MemberDigest {
        id: NodeId::from(id),
        listen: Arc::from(format!("127.0.0.1:70{generation:02}")),
        http: Arc::from(format!("127.0.0.1:80{generation:02}")),
        generation,
        heartbeat,
        leaving,
    }
}

fn envelope_seeds() -> Seeds {
    let k = Key::default_bucket(Bytes::from_static(b"user:42"));
    let other = Key::new(
        Bytes::from_static(b"photos"),
        Bytes::from_static(b"\x00\xffraw"),
    );
    let context = vv(&[("n1", 7, 3), ("n2", 1, 1)]);
    let from = NodeId::from("n1");
    let message = |message: Message| Envelope::Message {
        from: from.clone(),
        message,
    };
    let envelopes = vec![
        (
            "hello",
            Envelope::Hello(Hello {
                cluster: "driftkv".into(),
                protocol_version: PROTOCOL_VERSION,
                node: NodeId::from("n1"),
                listen: "127.0.0.1:7001".into(),
                http: "127.0.0.1:8001".into(),
                protocol_newest: PROTOCOL_VERSION,
                n: 3,
                partitions: 64,
            }),
        ),
        (
            "refused",
            Envelope::Refused("refused node n9: its ring differs".into()),
        ),
        (
            "forward_put",
            message(Message::Forward {
                req: 1,
                request: Box::new(Request::Put {
                    key: k.clone(),
                    value: Some(Bytes::from_static(b"v")),
                    context: context.clone(),
                    expires_ms: None,
                    w: Quorum::Quorum,
                }),
            }),
        ),
        (
            "forward_session_get",
            message(Message::Forward {
                req: 2,
                request: Box::new(Request::SessionGet {
                    key: k.clone(),
                    r: Quorum::Count(2),
                    seen: context.clone(),
                }),
            }),
        ),
        (
            "forward_set_update",
            message(Message::Forward {
                req: 3,
                request: Box::new(Request::SetUpdate {
                    key: other.clone(),
                    add: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
                    remove: vec![Bytes::from_static(b"c")],
                    w: Quorum::All,
                }),
            }),
        ),
        (
            "forward_counter_add",
            message(Message::Forward {
                req: 4,
                request: Box::new(Request::CounterAdd {
                    key: k.clone(),
                    delta: -3,
                    w: Quorum::One,
                }),
            }),
        ),
        (
            "forward_reply_values",
            message(Message::ForwardReply {
                req: 1,
                reply: Reply::Values {
                    values: vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
                    context: context.clone(),
                },
            }),
        ),
        (
            "forward_reply_error",
            message(Message::ForwardReply {
                req: 5,
                reply: Reply::unavailable("1 of 2 replicas answered", 1, 2),
            }),
        ),
        (
            "forward_reply_replicas",
            message(Message::ForwardReply {
                req: 6,
                reply: Reply::Replicas {
                    key: k.clone(),
                    replicas: vec![
                        ReplicaView {
                            node: NodeId::from("n2"),
                            reachable: true,
                            object: Some(Object::Register(register_one())),
                        },
                        ReplicaView {
                            node: NodeId::from("n3"),
                            reachable: false,
                            object: None,
                        },
                    ],
                },
            }),
        ),
        (
            "forward_reply_bad_request",
            message(Message::ForwardReply {
                req: 7,
                reply: Reply::error(ErrorKind::BadRequest, "key is empty"),
            }),
        ),
        (
            "replica_write",
            message(Message::ReplicaWrite {
                req: 8,
                key: k.clone(),
                object: Object::Register(register_siblings()),
                hint: Some(NodeId::from("n3")),
            }),
        ),
        (
            "replica_write_ack",
            message(Message::ReplicaWriteAck { req: 8, ok: true }),
        ),
        (
            "replica_read",
            message(Message::ReplicaRead {
                req: 9,
                key: other.clone(),
                kind: ObjectKind::Set,
            }),
        ),
        (
            "replica_read_reply",
            message(Message::ReplicaReadReply {
                req: 9,
                object: Some(Object::Set(set())),
            }),
        ),
        (
            "repair",
            message(Message::Repair {
                key: k.clone(),
                object: Object::Counter(counter()),
            }),
        ),
        (
            "gossip",
            message(Message::Gossip {
                members: Arc::from(vec![
                    digest("n1", 1, 40, false),
                    digest("n2", 3, 7, false),
                    digest("n3", 2, 0, true),
                ]),
            }),
        ),
        (
            "aae_root",
            message(Message::AaeRoot {
                xid: 10,
                partition: 17,
                root: Hash64(0x0123_4567_89ab_cdef),
            }),
        ),
        (
            "aae_mids",
            message(Message::AaeMids {
                xid: 10,
                partition: 17,
                mids: (0..8u64)
                    .map(|i| Hash64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                    .collect(),
            }),
        ),
        (
            "aae_leaves",
            message(Message::AaeLeaves {
                xid: 10,
                partition: 17,
                groups: vec![(3, vec![Hash64(1), Hash64(u64::MAX)])],
            }),
        ),
        (
            "aae_keys",
            message(Message::AaeKeys {
                xid: 10,
                partition: 17,
                segments: vec![3, 900],
                entries: vec![(k.clone(), Hash64(5)), (other.clone(), Hash64(6))],
            }),
        ),
        (
            "aae_sync",
            message(Message::AaeSync {
                xid: 10,
                partition: 17,
                objects: vec![(k.clone(), Object::Register(register_tombstone()))],
                want: vec![other.clone()],
            }),
        ),
        (
            "transfer",
            message(Message::Transfer {
                xid: 11,
                partition: 4,
                objects: objects()
                    .into_iter()
                    .enumerate()
                    .map(|(i, (_, o))| (Key::default_bucket(format!("k{i}")), o))
                    .collect(),
            }),
        ),
        (
            "transfer_ack",
            message(Message::TransferAck { xid: 11, ok: false }),
        ),
        (
            "list_read",
            message(Message::ListRead {
                req: 12,
                partition: 17,
                prefix: Key::new(Bytes::from_static(b"people"), Bytes::from_static(b"user-")),
                after: Some(Bytes::from(keys::data_key(PartitionId(17), &other))),
                limit: 70,
            }),
        ),
        (
            "list_read_reply",
            message(Message::ListReadReply {
                req: 12,
                keys: vec![driftkv_wire::Listed {
                    key: Bytes::from_static(b"user-1"),
                    kind: ObjectKind::Map,
                    live: true,
                    context: Some(context.clone()),
                }],
                last: Some(Bytes::from(keys::data_key(PartitionId(17), &k))),
                more: true,
            }),
        ),
        (
            "forward_map_update",
            message(Message::Forward {
                req: 13,
                request: Box::new(Request::MapUpdate {
                    key: k.clone(),
                    set: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
                    increment: vec![(Bytes::from_static(b"n"), -4)],
                    remove: vec![Bytes::from_static(b"old")],
                    w: Quorum::Quorum,
                }),
            }),
        ),
        (
            "forward_delete",
            message(Message::Forward {
                req: 14,
                request: Box::new(Request::Delete {
                    key: k.clone(),
                    kind: Some(ObjectKind::Counter),
                    w: Quorum::All,
                }),
            }),
        ),
        (
            "forward_list_keys",
            message(Message::Forward {
                req: 15,
                request: Box::new(Request::ListKeys {
                    key: Key::new(Bytes::from_static(b"people"), Bytes::from_static(b"u")),
                    after: Some(driftkv_wire::ListCursor {
                        partition: 3,
                        after: None,
                    }),
                    limit: 100,
                    whole_segments: true,
                }),
            }),
        ),
        (
            "purge",
            message(Message::Purge {
                key: k.clone(),
                object: Object::Register(register_tombstone()),
            }),
        ),
    ];
    envelopes
        .into_iter()
        .map(|(name, e)| seed(&format!("{name}.bin"), encode_envelope(&e)))
        .collect()
}

/// `[flags, bucket length, key length, bucket, key, token]`, as the context_token target reads.
fn token_input(sealed: bool, bucket: &[u8], key: &[u8], token: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(sealed), bucket.len() as u8, key.len() as u8];
    out.extend_from_slice(bucket);
    out.extend_from_slice(key);
    out.extend_from_slice(token);
    out
}

fn token_seeds() -> Seeds {
    let contexts = [
        ("empty", vv(&[])),
        ("one", vv(&[("n1", 7, 3)])),
        (
            "three",
            vv(&[
                ("n1", 7, 3),
                ("n2", 1, 12),
                ("a-longer-node-name", 300, 1 << 40),
            ]),
        ),
    ];
    let keys: [(&[u8], &[u8]); 2] = [(b"default", b"user:42"), (b"photos", b"\x00\xff")];
    let mut out = Vec::new();
    for (name, context) in &contexts {
        for (i, (bucket, key)) in keys.iter().enumerate() {
            let token = ContextToken::encode(context, bucket, key);
            out.push(seed(
                &format!("{name}_{i}.token"),
                token_input(false, bucket, key, token.as_bytes()),
            ));
            // Sealed: the raw bytes without their 4 checksum bytes (the harness adds them).
            let raw = URL_SAFE_NO_PAD
                .decode(&token)
                .expect("a token is base64url");
            out.push(seed(
                &format!("{name}_{i}_sealed.bin"),
                token_input(true, bucket, key, &raw[..raw.len() - 4]),
            ));
        }
    }
    out
}

fn record_seeds() -> Seeds {
    let mut out: Seeds = objects()
        .into_iter()
        .map(|(name, o)| seed(&format!("{name}.record"), encode_object(&o)))
        .collect();
    let members = vec![
        Remembered {
            id: NodeId::from("n1"),
            listen: "127.0.0.1:7001".into(),
            http: "127.0.0.1:8001".into(),
            generation: 3,
            leaving: false,
        },
        Remembered {
            id: NodeId::from("n2"),
            listen: "127.0.0.2:7000".into(),
            http: "127.0.0.2:8000".into(),
            generation: 1,
            leaving: true,
        },
    ];
    out.push(seed("members.record", driftkv_wire::encode(1, &members)));
    // A register as format 1 wrote it (no expiry on its value), which nodes still read: the
    // variant, one sibling (dot n1/7 #1, a value, a timestamp), the context.
    let v1_register: (
        u8,
        Vec<((Actor, u64), (Option<Bytes>, Timestamp))>,
        Vec<(Actor, u64)>,
    ) = (
        0,
        vec![(
            (actor("n1", 7), 1),
            (
                Some(Bytes::from_static(b"old")),
                Timestamp::new(1_600_000_000_000, 0),
            ),
        )],
        vec![(actor("n1", 7), 1)],
    );
    out.push(seed(
        "register_v1.record",
        driftkv_wire::encode(1, &v1_register),
    ));
    let key = Key::new(
        Bytes::from_static(b"photos"),
        Bytes::from_static(b"cat.jpg"),
    );
    let data_key = keys::data_key(PartitionId(17), &key);
    out.push(seed("data.key", data_key.clone()));
    out.push(seed(
        "data_default.key",
        keys::data_key(PartitionId(0), &Key::default_bucket("user:42")),
    ));
    out.push(seed(
        "hint.key",
        keys::hint_key(&NodeId::from("n3"), &data_key),
    ));
    out
}

fn scenario_seeds(root: &Path) -> Seeds {
    let mut out = Vec::new();
    for dir in ["scenarios", "scenarios/sweeps", "scenarios/pbs", "scenarios/pbs/common"] {
        let dir = root.join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read(&path).expect("a scenario file reads");
            let name = path.strip_prefix(root).expect("under the root");
            let name = name.to_string_lossy().replace('/', "_");
            out.push(seed(&name, text));
        }
    }
    out
}

fn json_seeds() -> Seeds {
    let bodies: [(&str, &[u8]); 12] = [
        ("counter_delta.json", br#"{"delta": 5}"#),
        (
            "counter_delta_min.json",
            br#"{"delta": -9223372036854775808}"#,
        ),
        ("write.json", br#"{"key": "user:42", "value": "hello"}"#),
        (
            "write_base64.json",
            br#"{"key": "bin", "value": {"base64": "/wABAg=="}}"#,
        ),
        ("write_number.json", br#"{"key": "pi", "value": 3.14159e0}"#),
        ("write_bool.json", br#"{"key": "flag", "value": true}"#),
        (
            "set_update.json",
            br#"{"add": ["red", "green", {"base64": "AAE="}], "remove": ["blue"]}"#,
        ),
        ("set_null.json", br#"{"add": null, "remove": []}"#),
        (
            "unicode.json",
            "{\"key\": \"caf\\u00e9 \u{1F600}\", \"value\": \"\\n\\t\\\"\"}".as_bytes(),
        ),
        (
            "nested.json",
            br#"[{"a": [1, -2.5e-300, 1e300, null]}, {}]"#,
        ),
        ("value_utf8.txt", "plain value \u{e9}".as_bytes()),
        ("value_binary.bin", b"\xff\x00binary\xfe"),
    ];
    bodies.iter().map(|(n, b)| seed(n, b.to_vec())).collect()
}

fn main() {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| fuzz_dir.join("corpus"));
    let root = fuzz_dir.parent().expect("fuzz/ sits in the repository");
    let corpora: [(&str, Seeds); 6] = [
        ("resp_parse", resp_seeds()),
        ("envelope_decode", envelope_seeds()),
        ("context_token", token_seeds()),
        ("record_decode", record_seeds()),
        ("scenario_toml", scenario_seeds(root)),
        ("http_json", json_seeds()),
    ];
    for (target, seeds) in corpora {
        let dir = out.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("the old corpus is removable");
        }
        std::fs::create_dir_all(&dir).expect("the corpus directory is creatable");
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).expect("a seed is writable");
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
}
