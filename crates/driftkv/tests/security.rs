//! Trust boundaries, tried from outside on real processes: certificates and mutual TLS between
//! nodes, users and roles on HTTP and RESP, forged tokens and hostile arithmetic through the
//! public API, and the bounds on connections, headers, commands and the peer port.

#[allow(dead_code)] // the harness serves several test files; this one uses part of it
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use driftkv_causal::{Actor, ContextToken, VersionVector};
use support::{Node, poll, run_to_exit};

const DEADLINE: Duration = Duration::from_secs(30);

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn cli(args: &[String]) -> (bool, String) {
    let (status, stderr) = run_to_exit(args, Duration::from_secs(30));
    (status.success(), stderr)
}

fn write_users(dir: &Path) -> String {
    let path = dir.join("users.toml");
    std::fs::write(
        &path,
        "[users.root]\npassword = \"r00t-pw\"\nrole = \"admin\"\n\n\
         [users.app]\npassword = \"app-pw\"\nrole = \"write\"\n\n\
         [users.viewer]\npassword = \"view-pw\"\nrole = \"read\"\n",
    )
    .unwrap();
    path.display().to_string()
}

/// `driftkv status --json` over HTTPS: the ids a node lists as up.
fn members_up(node: &Node, ca: &Path) -> Result<Vec<String>, String> {
    let args = s(&[
        "status",
        "--json",
        "--node",
        &format!("https://127.0.0.1:{}", node.http),
        "--ca",
        &ca.display().to_string(),
        "--user",
        "viewer:view-pw",
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftkv"))
        .args(&args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let js: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut up: Vec<String> = js["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "up")
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    up.sort();
    Ok(up)
}

#[test]
fn a_tls_cluster_admits_its_members_and_refuses_another_ca_and_impostors() {
    let certs = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let d = |p: &Path| p.display().to_string();
    for dir in [certs.path(), other.path()] {
        assert!(cli(&s(&["cert", "ca", "--dir", &d(dir)])).0);
    }
    for id in ["n1", "n2"] {
        assert!(cli(&s(&["cert", "node", "--dir", &d(certs.path()), "--id", id])).0);
    }
    assert!(
        cli(&s(&[
            "cert",
            "node",
            "--dir",
            &d(other.path()),
            "--id",
            "n3"
        ]))
        .0
    );
    let (ok, err) = cli(&s(&["cert", "ca", "--dir", &d(certs.path())]));
    assert!(
        !ok && err.contains("exists"),
        "a CA is never overwritten: {err}"
    );
    // n3 holds a certificate of another CA; n4 presents n1's certificate under its own name.
    let evil = tempfile::tempdir().unwrap();
    let impostor = tempfile::tempdir().unwrap();
    for dir in [evil.path(), impostor.path()] {
        std::fs::copy(certs.path().join("ca.pem"), dir.join("ca.pem")).unwrap();
    }
    for ext in ["pem", "key"] {
        std::fs::copy(
            other.path().join(format!("n3.{ext}")),
            evil.path().join(format!("n3.{ext}")),
        )
        .unwrap();
        std::fs::copy(
            certs.path().join(format!("n1.{ext}")),
            impostor.path().join(format!("n4.{ext}")),
        )
        .unwrap();
    }
    let users = write_users(certs.path());
    let tls = |dir: &Path| s(&["--tls-dir", &d(dir), "--users", &users]);
    let ca = certs.path().join("ca.pem");

    let mut n1 = Node::new("n1", &tls(certs.path()));
    n1.spawn();
    let join = |dir: &Path| {
        let mut a = tls(dir);
        a.extend(["--join".to_string(), format!("127.0.0.1:{}", n1.listen)]);
        a
    };
    let mut n2 = Node::new("n2", &join(certs.path()));
    n2.spawn();
    poll(
        "n1 and n2 to see each other over mutual TLS",
        DEADLINE,
        || match (members_up(&n1, &ca)?, members_up(&n2, &ca)?) {
            (a, b) if a == ["n1", "n2"] && b == a => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // The impostor's own certificate check stops it at start: n1's certificate is not n4's.
    let (ok, err) = run_to_exit(
        &[
            s(&["node", "--id", "n4", "--data-dir"]),
            vec![d(&impostor.path().join("data"))],
            join(impostor.path()),
        ]
        .concat(),
        DEADLINE,
    );
    assert!(
        !ok.success() && err.contains("not a certificate for node"),
        "{err}"
    );
    // A node holding another CA's certificate with that CA's ca.pem copied in refuses to
    // start (its own certificate does not verify); one of another cluster altogether starts
    // but never gets in.
    let (ok, err) = run_to_exit(
        &[
            s(&["node", "--id", "n3", "--data-dir"]),
            vec![d(&evil.path().join("data"))],
            join(evil.path()),
        ]
        .concat(),
        DEADLINE,
    );
    assert!(!ok.success() && err.contains("does not verify"), "{err}");
    let mut n3 = Node::new("n3", &join(other.path()));
    n3.spawn();
    poll("n1 to log the refused TLS handshake", DEADLINE, || {
        n1.log()
            .lines()
            .find(|l| l.contains("refused a connection: TLS handshake failed"))
            .map(str::to_string)
            .ok_or_else(|| n1.log_tail())
    });
    assert_eq!(members_up(&n1, &ca).unwrap(), ["n1", "n2"]);
    assert!(
        n3.log().contains("TLS handshake failed"),
        "{}",
        n3.log_tail()
    );

    // Clients: HTTPS with the CA and a user, through the CLI.
    let node = format!("https://127.0.0.1:{}", n1.http);
    let as_user = |user: &str, cmd: &[&str]| {
        let mut a = s(cmd);
        a.extend(s(&["--node", &node, "--ca", &d(&ca), "--user", user]));
        cli(&a)
    };
    let (ok, err) = as_user("viewer:view-pw", &["put", "k", "v", "-w", "all"]);
    assert!(!ok && err.contains("403"), "a read user wrote: {err}");
    let (ok, err) = as_user("app:wrong", &["put", "k", "v"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, err) = as_user("app:app-pw", &["put", "k", "v", "-w", "all"]);
    assert!(ok, "{err}");
    let (ok, err) = cli(&s(&["get", "k", "--node", &node]));
    assert!(!ok && err.contains("--ca"), "https without a CA: {err}");
    // Plain HTTP on the TLS port carries nothing.
    let plain = n1.try_request(
        "GET",
        "/kv/k",
        &[("Authorization", "Basic cm9vdDpyMDB0LXB3")],
        b"",
    );
    assert!(plain.is_err() || !plain.unwrap().text().contains('v'));
}

fn resp(port: u16, commands: &[&[&str]]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    for c in commands {
        out.extend(format!("*{}\r\n", c.len()).bytes());
        for a in *c {
            out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
        }
    }
    out.extend(b"*1\r\n$4\r\nQUIT\r\n");
    s.write_all(&out).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn users_and_roles_guard_http_and_resp_and_admin_needs_more_than_a_form() {
    let dir = tempfile::tempdir().unwrap();
    let users = write_users(dir.path());
    let resp_port = support::free_port();
    let mut n = Node::new(
        "n1",
        &s(&[
            "--users",
            &users,
            "--resp",
            &format!("127.0.0.1:{resp_port}"),
        ]),
    );
    n.start();
    let basic = |u: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(u)
        )
    };
    let put = |auth: Option<&str>| {
        let auth = auth.map(basic);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        n.request("PUT", "/kv/k", &headers, b"v").status
    };
    assert_eq!(put(None), 401);
    assert_eq!(put(Some("app:nope")), 401);
    assert_eq!(put(Some("nobody:app-pw")), 401);
    assert_eq!(put(Some("viewer:view-pw")), 403);
    assert_eq!(put(Some("app:app-pw")), 204);
    assert_eq!(n.get("/health").status, 200, "health needs no credentials");
    assert_eq!(n.get("/metrics").status, 401);
    let viewer = basic("viewer:view-pw");
    assert_eq!(
        n.request("GET", "/kv/k", &[("Authorization", &viewer)], b"")
            .status,
        200
    );

    // Admin: a write user is refused; so is an admin request a web page could send (a form's
    // text/plain body, or another origin).
    let root = basic("root:r00t-pw");
    let app = basic("app:app-pw");
    let json = ("Content-Type", "application/json");
    let r = n.request(
        "POST",
        "/admin/leave",
        &[("Authorization", &app), json],
        b"{}",
    );
    assert_eq!(r.status, 403, "{r}");
    let r = n.request(
        "POST",
        "/admin/leave",
        &[("Authorization", &root), ("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(r.status, 403, "{r}");
    let r = n.request(
        "POST",
        "/admin/leave",
        &[
            ("Authorization", &root),
            json,
            ("Origin", "http://evil.example"),
        ],
        b"{}",
    );
    assert_eq!(r.status, 403, "{r}");
    // A change with another site's Origin, on any route, is refused; so, on a node without
    // users, is a request addressed by a DNS name (rebinding).
    let r = n.request(
        "POST",
        "/counters/c",
        &[
            ("Authorization", &app),
            ("Content-Type", "text/plain"),
            ("Origin", "https://evil.example"),
        ],
        b"{\"delta\": 1}",
    );
    assert_eq!(r.status, 403, "{r}");
    assert!(n.exited().is_none(), "the node left on a forgeable request");

    // RESP: nothing but PING/HELLO/AUTH/QUIT before AUTH; roles hold.
    let a = resp(resp_port, &[&["PING"], &["GET", "k"], &["SET", "k", "x"]]);
    assert!(a.starts_with("+PONG\r\n-NOAUTH"), "{a:?}");
    assert_eq!(a.matches("-NOAUTH").count(), 2, "{a:?}");
    let a = resp(resp_port, &[&["AUTH", "viewer", "bad"], &["GET", "k"]]);
    assert!(
        a.starts_with("-WRONGPASS") && a.contains("-NOAUTH"),
        "{a:?}"
    );
    let a = resp(
        resp_port,
        &[
            &["AUTH", "viewer", "view-pw"],
            &["GET", "k"],
            &["SET", "k", "x"],
        ],
    );
    assert!(a.starts_with("+OK\r\n$1\r\nv\r\n-NOPERM"), "{a:?}");
    // Guessing costs the connection after three tries; a flood of commands before AUTH too.
    let a = resp(
        resp_port,
        &[
            &["AUTH", "app", "a"],
            &["AUTH", "app", "b"],
            &["AUTH", "app", "c"],
            &["PING"],
        ],
    );
    assert_eq!(a.matches("-WRONGPASS").count(), 3, "{a:?}");
    assert!(
        !a.contains("PONG"),
        "the connection went on after three failures: {a:?}"
    );
    let pings: Vec<&[&str]> = vec![&["PING"]; 70];
    let a = resp(resp_port, &pings);
    assert!(a.contains("too many commands before AUTH"), "{a:?}");
    // An AUTH pipelined ahead of a large SET lifts the pre-AUTH limit for the SET.
    let big = "b".repeat(200 * 1024);
    let a = resp(
        resp_port,
        &[&["AUTH", "app", "app-pw"], &["SET", "big", &big]],
    );
    assert!(
        a.starts_with("+OK\r\n+OK\r\n"),
        "{:?}",
        &a[..a.len().min(200)]
    );
    // Before AUTH only a short command is read, and only for a while.
    let mut early = TcpStream::connect(("127.0.0.1", resp_port)).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = early.write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 4 << 20).as_bytes());
    let _ = early.write_all(&vec![b'x'; 256 * 1024]);
    let mut answer = String::new();
    let _ = early.read_to_string(&mut answer);
    assert!(answer.contains("before AUTH"), "{answer:?}");
    let mut idle = TcpStream::connect(("127.0.0.1", resp_port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = idle.read_to_string(&mut answer);
    assert!(
        answer.contains("no AUTH in time") && started.elapsed() < Duration::from_secs(25),
        "{answer:?} after {:?}",
        started.elapsed()
    );
    let a = resp(
        resp_port,
        &[
            &["HELLO", "3", "AUTH", "app", "app-pw"],
            &["SET", "k", "w"],
            &["GET", "k"],
        ],
    );
    assert!(
        a.starts_with('%') && a.contains("+OK\r\n$1\r\nw\r\n"),
        "{a:?}"
    );
}

#[test]
fn forged_contexts_and_counter_overflow_through_http_and_resp_never_stop_a_node() {
    let resp_port = support::free_port();
    let mut n = Node::new("n1", &s(&["--resp", &format!("127.0.0.1:{resp_port}")]));
    n.start();
    let r = n.put("/kv/k", b"first");
    let token = r.header("x-causal-context").unwrap().to_string();
    let ctx = ContextToken::decode(&token, b"default", b"k").unwrap();
    let me = ctx.iter().next().unwrap().0.clone();
    for counter in [u64::MAX, u64::MAX - 1] {
        let forged: VersionVector = [(me.clone(), counter)].into_iter().collect();
        let t = ContextToken::encode(&forged, b"default", b"k");
        let r = n.request("PUT", "/kv/k", &[("X-Causal-Context", &t)], b"evil");
        assert_eq!(r.status, 400, "{r}");
        assert!(r.text().contains("causal context"), "{r}");
    }
    // Each round reads the key, adds 360 invented actors to its context and writes with it.
    for round in 0..3 {
        let r = n.get("/kv/k");
        let read = r.header("x-causal-context").unwrap();
        let read = ContextToken::decode(read, b"default", b"k").unwrap();
        let fakes: VersionVector = (0..360)
            .map(|i| (Actor::new(format!("fake{round}-{i}"), 1), 5))
            .chain(read.iter().map(|(a, n)| (a.clone(), *n)))
            .collect();
        let t = ContextToken::encode(&fakes, b"default", b"k");
        let r = n.request("PUT", "/kv/k", &[("X-Causal-Context", &t)], b"x");
        assert_eq!(r.status, 204, "{r}");
    }
    let r = n.get("/kv/k");
    assert_eq!(r.status, 200, "{r}");
    let after = r.header("x-causal-context").unwrap();
    let actors = ContextToken::decode(after, b"default", b"k").unwrap().len();
    assert!(
        actors <= 64,
        "the context grew to {actors} actors ({} characters)",
        after.len()
    );
    let r = n.request("PUT", "/kv/k", &[("X-Causal-Context", after)], b"honest");
    assert_eq!(r.status, 204, "an honest write after the forgeries: {r}");

    // Counters: i64::MAX, then one more is refused and changes nothing, on HTTP and RESP.
    let max = serde_json::json!({ "delta": i64::MAX });
    assert_eq!(n.post_json("/counters/c", &max).status, 200);
    let r = n.post_json("/counters/c", &serde_json::json!({ "delta": 1 }));
    assert_eq!(r.status, 400, "{r}");
    let a = resp(resp_port, &[&["INCRBY", "c", "1"], &["INCRBY", "c", "-2"]]);
    assert!(
        a.starts_with("-ERR") && a.contains(&format!(":{}\r\n", i64::MAX - 2)),
        "{a:?}"
    );
    assert_eq!(n.get("/counters/c").json().unwrap()["value"], i64::MAX - 2);
    // DNS rebinding: a page on evil.example re-pointed at this node's address.
    let evil = format!("evil.example:{}", n.http);
    let r = n.request("GET", "/kv/k", &[("Host", &evil)], b"");
    assert_eq!(r.status, 403, "{r}");
    assert!(n.exited().is_none());
}

fn config(dir: &Path, text: &str) -> Vec<String> {
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    s(&["--config", &path.display().to_string()])
}

#[test]
fn connections_headers_and_commands_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let resp_port = support::free_port();
    let mut extra = config(
        dir.path(),
        "connections_max = 4\nhttp_header_timeout_ms = 500\nresp_command_bytes_max = 4300000\n",
    );
    extra.extend(s(&["--resp", &format!("127.0.0.1:{resp_port}")]));
    let mut n = Node::new("n1", &extra);
    n.start();

    // A slow header is cut off at the timeout, not held forever.
    let mut slow = TcpStream::connect(("127.0.0.1", n.http)).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = slow.read_to_end(&mut sink);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a slow header held its connection {:?}",
        started.elapsed()
    );

    // Idle connections past connections_max wait; the node serves again as they go.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", resp_port)).unwrap())
        .collect();
    let mut waiting = TcpStream::connect(("127.0.0.1", resp_port)).unwrap();
    waiting.write_all(b"PING\r\n").unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 7];
    assert!(
        waiting.read_exact(&mut buf).is_err(),
        "a fifth connection was served"
    );
    drop(idle);
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    waiting.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n");

    // A command declaring a million arguments of 4 MiB is cut at resp_command_bytes_max.
    let mut big = TcpStream::connect(("127.0.0.1", resp_port)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sent = 0usize;
    let mut head = b"*65000\r\n".to_vec();
    let chunk = vec![b'x'; 4 * 1024 * 1024];
    let mut answer = String::new();
    for _ in 0..4 {
        head.extend(format!("${}\r\n", chunk.len()).bytes());
        if big.write_all(&head).is_err() || big.write_all(&chunk).is_err() {
            break;
        }
        sent += head.len() + chunk.len();
        head = b"\r\n".to_vec();
    }
    let _ = big.read_to_string(&mut answer);
    assert!(
        answer.contains("resp_command_bytes_max"),
        "after {sent} bytes: {answer:?}"
    );
    assert_eq!(n.get("/health").status, 200);

    // Pipelined GETs of a 4 MiB value from a client that reads nothing: the node writes as it
    // goes and stalls that connection, instead of holding every reply.
    let value = vec![b'v'; 4 << 20];
    assert_eq!(n.put("/kv/big", &value).status, 204);
    let before = n.rss_kib().unwrap();
    let mut greedy = TcpStream::connect(("127.0.0.1", resp_port)).unwrap();
    let gets = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(200);
    greedy.write_all(&gets).unwrap();
    // Watch the node's memory while it works through what it can: the peak over two seconds
    // of samples (a late sample alone could miss a peak that came and went).
    let watch_until = Instant::now() + Duration::from_secs(2);
    let mut peak = before;
    while Instant::now() < watch_until {
        peak = peak.max(n.rss_kib().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 150 * 1024,
        "200 unread replies of 4 MiB grew the node by {grown} KiB"
    );
    drop(greedy);
    assert_eq!(n.get("/health").status, 200);
}

#[test]
fn the_peer_port_bounds_frames_before_the_handshake_and_answers_no_stranger() {
    let mut n = Node::new("n1", &s(&["--cluster", "secret-name"]));
    n.start();
    // A frame declaring 63 MiB before any handshake: the connection is dropped at once.
    let mut s1 = TcpStream::connect(("127.0.0.1", n.listen)).unwrap();
    s1.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s1.write_all(&(63u32 * 1024 * 1024).to_be_bytes()).unwrap();
    let _ = s1.write_all(&vec![0u8; 64 * 1024]);
    let mut sink = Vec::new();
    let started = Instant::now();
    let _ = s1.read_to_end(&mut sink);
    assert!(sink.is_empty() && started.elapsed() < Duration::from_secs(8));
    // A hello of another cluster gets no answer: nothing about this cluster leaks.
    let hello = driftkv_wire::Envelope::Hello(driftkv_wire::Hello::new("guess", "stranger", 3, 64));
    let frame = driftkv_wire::encode_envelope(&hello);
    let mut s2 = TcpStream::connect(("127.0.0.1", n.listen)).unwrap();
    s2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s2.write_all(&(frame.len() as u32).to_be_bytes()).unwrap();
    s2.write_all(&frame).unwrap();
    let mut answer = Vec::new();
    let _ = s2.read_to_end(&mut answer);
    assert!(answer.is_empty(), "a stranger was answered: {answer:?}");
    // The node closes the connection, then logs why: the line may come a moment later.
    poll("n1 to log the refused stranger", DEADLINE, || {
        match n.log().contains("refused a connection") {
            true => Ok(()),
            false => Err(n.log_tail()),
        }
    });
    assert_eq!(n.get("/health").status, 200);
}
