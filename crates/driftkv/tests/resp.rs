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
