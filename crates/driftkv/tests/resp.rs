//! The Redis protocol front-end against real clients: the `redis` client library, Debian's
//! `redis-cli` and `redis-benchmark` (installed by `.ci/run`), on real node processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Ports below the ephemeral range (a port picked by binding port 0 is one an outgoing
// connection, redis-benchmark's say, can take before the node binds it).
#[allow(dead_code)]
mod support;
use support::free_port;

struct Node {
    child: Child,
    http: u16,
    resp: u16,
    listen: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(id: &str, join: Option<u16>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (listen, http, resp) = (free_port(), free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftkv"));
    cmd.args(["node", "--id", id, "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--resp", &format!("127.0.0.1:{resp}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap());
    if let Some(j) = join {
        cmd.args(["--join", &format!("127.0.0.1:{j}")]);
    }
    let node = Node {
        child: cmd.spawn().unwrap(),
        http,
        resp,
        listen,
        _dir: dir,
    };
    poll(
        Duration::from_secs(20),
        || TcpStream::connect(("127.0.0.1", resp)).ok().map(|_| ()),
        "RESP port open",
    );
    node
}

fn poll<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>, what: &str) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A bare HTTP/1.1 request; returns status and body.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text[9..12].parse().unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, raw[at..].to_vec())
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs (Debian's redis-tools; .ci/run installs it)");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn a_redis_client_library_uses_every_data_type() {
    let node = start("n1", None);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", node.resp)).unwrap();
    let mut c = client.get_connection().unwrap();
    let cmd = |name: &str| redis::cmd(name);
    let _: () = cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut c)
        .unwrap();
    let v: String = cmd("GET").arg("greeting").query(&mut c).unwrap();
    assert_eq!(v, "hello");
    // Binary-safe keys and values.
    let key: &[u8] = b"k\x00\r\n\xff";
    let value: &[u8] = b"\x00\x01\r\n\xfe";
    let _: () = cmd("SET").arg(key).arg(value).query(&mut c).unwrap();
    let got: Vec<u8> = cmd("GET").arg(key).query(&mut c).unwrap();
    assert_eq!(got, value);
    let missing: Option<String> = cmd("GET").arg("nope").query(&mut c).unwrap();
    assert_eq!(missing, None);
    // Counters.
    let n: i64 = cmd("INCR").arg("hits").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let n: i64 = cmd("INCRBY").arg("hits").arg(10).query(&mut c).unwrap();
    assert_eq!(n, 11);
    let n: i64 = cmd("DECRBY").arg("hits").arg(4).query(&mut c).unwrap();
    assert_eq!(n, 7);
    let n: i64 = cmd("DECR").arg("hits").query(&mut c).unwrap();
    assert_eq!(n, 6);
    // Sets: SADD and SREM count what changed, as in Redis.
    let added: i64 = cmd("SADD")
        .arg("s")
        .arg("a")
        .arg("b")
        .arg("c")
        .query(&mut c)
        .unwrap();
    assert_eq!(added, 3);
    let added: i64 = cmd("SADD")
        .arg("s")
        .arg("a")
        .arg("d")
        .query(&mut c)
        .unwrap();
    assert_eq!(added, 1);
    let removed: i64 = cmd("SREM")
        .arg("s")
        .arg("b")
        .arg("zz")
        .query(&mut c)
        .unwrap();
    assert_eq!(removed, 1);
    let mut members: Vec<String> = cmd("SMEMBERS").arg("s").query(&mut c).unwrap();
    members.sort();
    assert_eq!(members, ["a", "c", "d"]);
    let card: i64 = cmd("SCARD").arg("s").query(&mut c).unwrap();
    assert_eq!(card, 3);
    let is: i64 = cmd("SISMEMBER").arg("s").arg("c").query(&mut c).unwrap();
    assert_eq!(is, 1);
    // Multi-key commands.
    let _: () = cmd("MSET")
        .arg("m1")
        .arg("x")
        .arg("m2")
        .arg("y")
        .query(&mut c)
        .unwrap();
    let got: Vec<Option<String>> = cmd("MGET")
        .arg("m1")
        .arg("m2")
        .arg("m3")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, [Some("x".into()), Some("y".into()), None]);
    let n: i64 = cmd("EXISTS")
        .arg("m1")
        .arg("m3")
        .arg("hits")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    let n: i64 = cmd("DEL").arg("m1").arg("m3").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let gone: Option<String> = cmd("GET").arg("m1").query(&mut c).unwrap();
    assert_eq!(gone, None);
    // Wrong type and bad arguments are errors; the connection stays usable.
    let e = cmd("INCR")
        .arg("greeting")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    let e = cmd("INCRBY")
        .arg("hits")
        .arg("lots")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");
    let e = cmd("FROBNICATE").query::<String>(&mut c).unwrap_err();
    assert!(e.to_string().contains("unknown command"), "{e}");
    let e = cmd("SET")
        .arg("only-key")
        .query::<String>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("wrong number of arguments"), "{e}");
    let e = cmd("DRIFTKV")
        .arg("CONSISTENCY")
        .arg("most")
        .arg("one")
        .query::<String>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("r:"), "{e}");
    let _: () = cmd("DRIFTKV")
        .arg("CONSISTENCY")
        .arg("all")
        .arg("one")
        .query(&mut c)
        .unwrap();
    let levels: Vec<String> = cmd("DRIFTKV").arg("CONSISTENCY").query(&mut c).unwrap();
    assert_eq!(levels, ["all", "one"]);
    let v: String = cmd("GET").arg("greeting").query(&mut c).unwrap();
    assert_eq!(v, "hello", "the connection still serves after errors");
    // Pipelining: replies come back in order.
    let (a, b, n): (String, String, i64) = redis::pipe()
        .cmd("ECHO")
        .arg("one")
        .cmd("ECHO")
        .arg("two")
        .cmd("INCR")
        .arg("hits")
        .query(&mut c)
        .unwrap();
    assert_eq!((a.as_str(), b.as_str(), n), ("one", "two", 7));
    // Session guarantees per connection: on, GETs read this connection's writes.
    let state: String = cmd("DRIFTKV").arg("SESSION").query(&mut c).unwrap();
    assert_eq!(state, "off");
    let _: () = cmd("DRIFTKV")
        .arg("SESSION")
        .arg("on")
        .query(&mut c)
        .unwrap();
    let _: () = cmd("DRIFTKV")
        .arg("CONSISTENCY")
        .arg("one")
        .arg("one")
        .query(&mut c)
        .unwrap();
    let _: () = cmd("SET").arg("mine").arg("v1").query(&mut c).unwrap();
    let v: String = cmd("GET").arg("mine").query(&mut c).unwrap();
    assert_eq!(v, "v1");
    let state: String = cmd("DRIFTKV").arg("SESSION").query(&mut c).unwrap();
    assert_eq!(state, "on");
    let e = cmd("DRIFTKV")
        .arg("SESSION")
        .arg("maybe")
        .query::<String>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("usage: DRIFTKV SESSION"), "{e}");
}

#[test]
fn redis_cli_and_redis_benchmark_run_against_a_cluster() {
    let [n1, n2, n3] = cluster();
    assert_eq!(cli(n1.resp, &["PING"]), "PONG");
    assert_eq!(cli(n1.resp, &["SET", "city", "Lisbon"]), "OK");
    // A write through n1 is readable through n3 (W and R default to quorum: R + W > N).
    assert_eq!(cli(n3.resp, &["GET", "city"]), "Lisbon");
    assert!(cli(n2.resp, &["INFO"]).contains("node:n2"));

    // Siblings: two blind HTTP writes through different nodes; GET answers the greatest
    // sibling in byte order on every node, and INFO counts it.
    assert_eq!(http(n1.http, "PUT", "/kv/pet?w=all", b"cat").0, 204);
    assert_eq!(http(n2.http, "PUT", "/kv/pet?w=all", b"dog").0, 204);
    assert_eq!(http(n3.http, "GET", "/kv/pet?r=all", b"").0, 300);
    for node in [&n1, &n2, &n3] {
        assert_eq!(cli(node.resp, &["GET", "pet"]), "dog");
    }
    let info = cli(n1.resp, &["INFO"]);
    assert!(info.contains("sibling_reads_resolved:1"), "{info}");
    // The node's own counters follow, from the same registry as /metrics: n1 coordinated
    // (or forwarded) the first SET, and coordinated this test's reads through it.
    let counters = info
        .split("# Driftkv")
        .nth(1)
        .expect("INFO has the node's section");
    let count = |name: &str| -> u64 {
        counters
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {counters}"))
            .parse()
            .unwrap()
    };
    assert!(count("writes") + count("forwarded") >= 1, "{counters}");
    assert!(count("reads") >= 1, "{counters}");
    assert_eq!(count("storage_errors"), 0);
    // SET overwrites every sibling its coordinator has seen.
    assert_eq!(cli(n1.resp, &["SET", "pet", "fish"]), "OK");
    assert_eq!(
        http(n2.http, "GET", "/kv/pet?r=all", b""),
        (200, b"fish".to_vec())
    );

    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &n1.resp.to_string(),
            "-t",
            "set,get",
            "-n",
            "2000",
            "-c",
            "10",
            "-q",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("redis-benchmark runs (Debian's redis-tools; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "redis-benchmark failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in ["SET:", "GET:"] {
        assert!(
            text.contains(t) && text.contains("requests per second"),
            "redis-benchmark printed: {text}"
        );
    }
    println!("redis-benchmark against a 3-node cluster (debug build):\n{text}");
    assert_eq!(
        cli(n2.resp, &["PING"]),
        "PONG",
        "the node serves after the benchmark"
    );
}

/// Three nodes joined into one cluster, each seeing all three up.
fn cluster() -> [Node; 3] {
    let n1 = start("n1", None);
    let n2 = start("n2", Some(n1.listen));
    let n3 = start("n3", Some(n1.listen));
    poll(
        Duration::from_secs(20),
        || {
            [&n1, &n2, &n3]
                .iter()
                .all(|n| {
                    let (st, body) = http(n.http, "GET", "/cluster", b"");
                    st == 200 && String::from_utf8_lossy(&body).matches("\"up\"").count() == 3
                })
                .then_some(())
        },
        "every node sees three members up",
    );
    [n1, n2, n3]
}

#[test]
fn applications_get_expiry_conditions_hashes_scans_and_deletes_of_every_type() {
    let nodes = cluster();
    let conn = |n: &Node| {
        redis::Client::open(format!("redis://127.0.0.1:{}/", n.resp))
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let (mut c1, mut c2, mut c3) = (conn(&nodes[0]), conn(&nodes[1]), conn(&nodes[2]));
    let cmd = |name: &str| redis::cmd(name);

    // Expiry: SET with PX, TTL and PTTL, PERSIST, EXPIRE; expired on every node.
    let _: () = cmd("SET")
        .arg("sess")
        .arg("v")
        .arg("PX")
        .arg(1500)
        .query(&mut c1)
        .unwrap();
    let pttl: i64 = cmd("PTTL").arg("sess").query(&mut c2).unwrap();
    assert!((1..=1500).contains(&pttl), "{pttl}");
    let ttl: i64 = cmd("TTL").arg("sess").query(&mut c3).unwrap();
    assert!((1..=2).contains(&ttl), "{ttl}");
    poll(
        Duration::from_secs(15),
        || {
            let gone = [&mut c1, &mut c2, &mut c3].into_iter().all(|c| {
                cmd("GET")
                    .arg("sess")
                    .query::<Option<String>>(c)
                    .unwrap()
                    .is_none()
            });
            gone.then_some(())
        },
        "the key to expire on every node",
    );
    let ttl: i64 = cmd("TTL").arg("sess").query(&mut c1).unwrap();
    assert_eq!(ttl, -2, "a missing key");
    let _: () = cmd("SETEX")
        .arg("cache")
        .arg(100)
        .arg("c")
        .query(&mut c1)
        .unwrap();
    let n: i64 = cmd("PERSIST").arg("cache").query(&mut c2).unwrap();
    assert_eq!(n, 1);
    let ttl: i64 = cmd("TTL").arg("cache").query(&mut c3).unwrap();
    assert_eq!(ttl, -1, "persisted");
    let n: i64 = cmd("EXPIRE")
        .arg("cache")
        .arg(100)
        .arg("XX")
        .query(&mut c1)
        .unwrap();
    assert_eq!(n, 0, "XX: it had no expiry");
    let n: i64 = cmd("EXPIRE").arg("cache").arg(100).query(&mut c1).unwrap();
    assert_eq!(n, 1);
    let _: () = cmd("SET")
        .arg("cache")
        .arg("d")
        .arg("KEEPTTL")
        .query(&mut c2)
        .unwrap();
    let ttl: i64 = cmd("TTL").arg("cache").query(&mut c3).unwrap();
    assert!((90..=100).contains(&ttl), "KEEPTTL kept it: {ttl}");
    let n: i64 = cmd("PEXPIRE").arg("cache").arg(-1).query(&mut c1).unwrap();
    assert_eq!(n, 1, "an expiry in the past deletes");
    let gone: Option<String> = cmd("GET").arg("cache").query(&mut c2).unwrap();
    assert_eq!(gone, None);
    for bad in [
        &["EX", "0"][..],
        &["PX", "-5"],
        &["EX", "x"],
        &["NX", "XX"],
        &["EX", "1", "KEEPTTL"],
        &["BOGUS"],
    ] {
        let e = cmd("SET")
            .arg("k")
            .arg("v")
            .arg(bad)
            .query::<String>(&mut c1)
            .unwrap_err();
        let text = e.to_string();
        assert!(
            ["syntax error", "invalid expire time", "not an integer"]
                .iter()
                .any(|why| text.contains(why)),
            "{bad:?}: {e}"
        );
    }

    // Conditions decided on what R replicas hold.
    let ok: Option<String> = cmd("SET")
        .arg("lock")
        .arg("a")
        .arg("NX")
        .query(&mut c1)
        .unwrap();
    assert_eq!(ok.as_deref(), Some("OK"));
    let again: Option<String> = cmd("SET")
        .arg("lock")
        .arg("b")
        .arg("NX")
        .query(&mut c2)
        .unwrap();
    assert_eq!(again, None);
    let old: Option<String> = cmd("SET")
        .arg("lock")
        .arg("c")
        .arg("XX")
        .arg("GET")
        .query(&mut c3)
        .unwrap();
    assert_eq!(old.as_deref(), Some("a"));
    let n: i64 = cmd("SETNX").arg("lock").arg("d").query(&mut c1).unwrap();
    assert_eq!(n, 0);
    let old: Option<String> = cmd("GETSET").arg("lock").arg("e").query(&mut c2).unwrap();
    assert_eq!(old.as_deref(), Some("c"));
    let len: i64 = cmd("APPEND").arg("lock").arg("fg").query(&mut c3).unwrap();
    assert_eq!(len, 3);
    let len: i64 = cmd("STRLEN").arg("lock").query(&mut c1).unwrap();
    assert_eq!(len, 3);
    let v: Option<String> = cmd("GETDEL").arg("lock").query(&mut c2).unwrap();
    assert_eq!(v.as_deref(), Some("efg"));
    let v: Option<String> = cmd("GET").arg("lock").query(&mut c3).unwrap();
    assert_eq!(v, None);

    // Hashes: fields from different nodes merge; increments count on every node.
    let n: i64 = cmd("HSET")
        .arg("obj")
        .arg("f1")
        .arg("x")
        .arg("f2")
        .arg("y")
        .query(&mut c1)
        .unwrap();
    assert_eq!(n, 2);
    let n: i64 = cmd("HINCRBY")
        .arg("obj")
        .arg("n")
        .arg(4)
        .query(&mut c2)
        .unwrap();
    assert_eq!(n, 4);
    let n: i64 = cmd("HINCRBY")
        .arg("obj")
        .arg("n")
        .arg(-1)
        .query(&mut c3)
        .unwrap();
    assert_eq!(n, 3);
    let all: std::collections::HashMap<String, String> =
        cmd("HGETALL").arg("obj").query(&mut c3).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        (all["f1"].as_str(), all["f2"].as_str(), all["n"].as_str()),
        ("x", "y", "3")
    );
    let got: Vec<Option<String>> = cmd("HMGET")
        .arg("obj")
        .arg("f1")
        .arg("zz")
        .query(&mut c1)
        .unwrap();
    assert_eq!(got, [Some("x".into()), None]);
    let n: i64 = cmd("HDEL")
        .arg("obj")
        .arg("f1")
        .arg("zz")
        .query(&mut c2)
        .unwrap();
    assert_eq!(n, 1);
    let (len, exists): (i64, i64) = redis::pipe()
        .cmd("HLEN")
        .arg("obj")
        .cmd("HEXISTS")
        .arg("obj")
        .arg("f1")
        .query(&mut c3)
        .unwrap();
    assert_eq!((len, exists), (2, 0));
    let mut keys: Vec<String> = cmd("HKEYS").arg("obj").query(&mut c1).unwrap();
    keys.sort();
    assert_eq!(keys, ["f2", "n"]);
    let e = cmd("HINCRBY")
        .arg("obj")
        .arg("f2")
        .arg(1)
        .query::<i64>(&mut c1)
        .unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");
    let e = cmd("HSET")
        .arg("obj")
        .arg("odd")
        .query::<i64>(&mut c1)
        .unwrap_err();
    assert!(e.to_string().contains("wrong number"), "{e}");

    // TYPE, and DEL of every type.
    let _: i64 = cmd("INCRBY").arg("cnt").arg(5).query(&mut c1).unwrap();
    let _: i64 = cmd("SADD").arg("tags").arg("a").query(&mut c1).unwrap();
    let _: () = cmd("SET").arg("plain").arg("p").query(&mut c1).unwrap();
    for (k, t) in [
        ("obj", "hash"),
        ("cnt", "string"),
        ("tags", "set"),
        ("plain", "string"),
        ("nothing", "none"),
    ] {
        let got: String = cmd("TYPE").arg(k).query(&mut c2).unwrap();
        assert_eq!(got, t, "{k}");
    }
    let v: String = cmd("GET").arg("cnt").query(&mut c3).unwrap();
    assert_eq!(v, "5", "a counter reads as its value");
    let e = cmd("EXPIRE")
        .arg("tags")
        .arg(10)
        .query::<i64>(&mut c1)
        .unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    let n: i64 = cmd("DEL")
        .arg("obj")
        .arg("cnt")
        .arg("tags")
        .arg("plain")
        .arg("nothing")
        .query(&mut c2)
        .unwrap();
    assert_eq!(n, 4);
    let n: i64 = cmd("UNLINK").arg("obj").query(&mut c3).unwrap();
    assert_eq!(n, 0, "already gone");
    let n: i64 = cmd("EXISTS")
        .arg("obj")
        .arg("cnt")
        .arg("tags")
        .arg("plain")
        .query(&mut c1)
        .unwrap();
    assert_eq!(n, 0);
    let v: Option<String> = cmd("GET").arg("cnt").query(&mut c3).unwrap();
    assert_eq!(v, None, "a deleted counter reads as missing");
    let n: i64 = cmd("INCR").arg("cnt").query(&mut c1).unwrap();
    assert_eq!(n, 1, "counting on after a delete starts from zero");

    // SCAN over the cluster: every key once, whatever node carries the cursor on; KEYS and
    // DBSIZE see the same keys.
    let _: i64 = cmd("DEL").arg("cnt").query(&mut c1).unwrap();
    for i in 0..60 {
        let _: () = cmd("SET")
            .arg(format!("scan:{i}"))
            .arg("v")
            .query(&mut c1)
            .unwrap();
    }
    let _: i64 = cmd("SADD").arg("scan:set").arg("m").query(&mut c1).unwrap();
    let mut found = Vec::new();
    let mut cursor = "0".to_string();
    let mut conns = [c1, c2, c3];
    for turn in 0..1000 {
        let (next, keys): (String, Vec<String>) = cmd("SCAN")
            .arg(&cursor)
            .arg("MATCH")
            .arg("scan:*")
            .arg("COUNT")
            .arg(7)
            .arg("TYPE")
            .arg("string")
            .query(&mut conns[turn % 3])
            .unwrap();
        found.extend(keys);
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0", "the scan ended");
    let n = found.len();
    found.sort();
    found.dedup();
    assert_eq!(found.len(), n, "a key scanned twice");
    let mut want: Vec<String> = (0..60).map(|i| format!("scan:{i}")).collect();
    want.sort();
    assert_eq!(found, want);
    let [mut c1, mut c2, mut c3] = conns;
    let mut keys: Vec<String> = cmd("KEYS").arg("scan:*").query(&mut c2).unwrap();
    keys.sort();
    want.push("scan:set".into());
    want.sort();
    assert_eq!(keys, want);
    let size: i64 = cmd("DBSIZE").query(&mut c3).unwrap();
    let all: Vec<String> = cmd("KEYS").arg("*").query(&mut c3).unwrap();
    assert_eq!(
        size,
        all.len() as i64,
        "small keyspaces are counted exactly"
    );
    for bad in ["x", "-1", "99999999999999999"] {
        let e = cmd("SCAN")
            .arg(bad)
            .query::<(String, Vec<String>)>(&mut c1)
            .unwrap_err();
        assert!(e.to_string().contains("invalid cursor"), "{bad}: {e}");
    }
}
