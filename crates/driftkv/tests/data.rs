//! The data applications keep, over HTTP and the command line, on real node processes: expiry,
//! conditional writes, key listing, maps and CRDTs in buckets, deletes of every type, watch.

#[allow(dead_code)]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Cluster, poll, spawn};

/// A JSON body's field, or null.
fn field(body: &support::Response, name: &str) -> Value {
    body.json().map(|v| v[name].clone()).unwrap_or(Value::Null)
}

/// Runs the CLI to its end; its stdout.
fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_driftkv"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run driftkv");
    assert!(
        out.status.success(),
        "driftkv {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn expiry_conditions_listing_maps_deletes_and_watch_work_across_a_cluster() {
    let c = Cluster::start(3);
    let (n1, n2, n3) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let url = |n: &support::Node| format!("http://127.0.0.1:{}", n.http);

    // Expiry: readable everywhere, then missing everywhere.
    let r = n1.put("/kv/brief?w=all&ttl_ms=1500", b"soon gone");
    assert_eq!(r.status, 204, "{r}");
    assert_eq!(n3.get("/kv/brief?r=one").text(), "soon gone");
    poll(
        "the key to expire on every node",
        Duration::from_secs(15),
        || {
            let codes: Vec<u16> = c
                .nodes
                .iter()
                .map(|n| n.get("/kv/brief?r=one").status)
                .collect();
            if codes.iter().all(|s| *s == 404) {
                Ok(())
            } else {
                Err(format!("{codes:?}"))
            }
        },
    );
    for bad in ["ttl_ms=0", "ttl_ms=-1", "ttl_ms=soon", "ttl=5"] {
        let r = n1.put(&format!("/kv/x?{bad}"), b"v");
        assert_eq!(r.status, 400, "{bad}: {r}");
    }
    assert_eq!(n1.get("/kv/x?ttl_ms=5").status, 400, "a read takes no ttl");

    // A write only if the key does not exist.
    let none = [("If-None-Match", "*")];
    assert_eq!(n1.request("PUT", "/kv/lock?w=all", &none, b"a").status, 204);
    let second = n2.request("PUT", "/kv/lock?w=all", &none, b"b");
    assert_eq!(second.status, 412, "{second}");
    assert_eq!(n3.get("/kv/lock?r=all").text(), "a");
    let other = n1.request("PUT", "/kv/lock", &[("If-None-Match", "\"etag\"")], b"c");
    assert_eq!(other.status, 400, "{other}");

    // Listing across the cluster, page by page, and from the command line.
    for i in 0..120 {
        let r = c.nodes[i % 3].put(&format!("/buckets/people/kv/user-{i:03}?w=all"), b"v");
        assert_eq!(r.status, 204, "{r}");
    }
    n1.put("/buckets/people/kv/admin?w=all", b"x");
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..200 {
        let mut path = "/buckets/people/keys?prefix=user-&limit=25".to_string();
        if let Some(c) = &next {
            path.push_str(&format!("&after={c}"));
        }
        let page = n2.get(&path);
        assert_eq!(page.status, 200, "{page}");
        let keys = field(&page, "keys");
        assert!(keys.as_array().is_some_and(|k| k.len() <= 25), "{page}");
        seen.extend(
            keys.as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string()),
        );
        match field(&page, "next") {
            Value::String(s) => next = Some(s),
            _ => break,
        }
    }
    let mut want: Vec<String> = (0..120).map(|i| format!("user-{i:03}")).collect();
    seen.sort();
    assert_eq!(seen, want, "every key once");
    let printed = cli(&[
        "keys",
        "--node",
        &url(n3),
        "--bucket",
        "people",
        "--page",
        "7",
    ]);
    want.push("admin".into());
    let mut lines: Vec<String> = printed.lines().map(str::to_string).collect();
    lines.sort();
    want.sort();
    assert_eq!(lines, want);
    for bad in [
        "after=zz",
        "after=99999",
        "limit=0",
        "limit=100001",
        "prefix=%zz",
    ] {
        let r = n1.get(&format!("/buckets/people/keys?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {r}");
    }

    // Maps in a bucket: fields set on different nodes merge; a removed field goes.
    let post = |n: &support::Node, body: Value| {
        let r = n.post_json("/buckets/app/maps/profile?w=all", &body);
        assert_eq!(r.status, 200, "{r}");
        r
    };
    post(n1, json!({"set": {"name": "ann"}}));
    post(
        n2,
        json!({"set": {"city": "oslo"}, "increment": {"visits": 2}}),
    );
    let r = post(n3, json!({"increment": {"visits": 3}}));
    assert_eq!(field(&r, "fields")["visits"], json!(5));
    let r = n1.get("/buckets/app/maps/profile?r=all");
    assert_eq!(
        field(&r, "fields"),
        json!({"name": "ann", "city": "oslo", "visits": 5})
    );
    post(n2, json!({"remove": ["city"]}));
    assert_eq!(
        field(&n3.get("/buckets/app/maps/profile?r=all"), "fields"),
        json!({"name": "ann", "visits": 5})
    );
    for bad in [
        json!([1]),
        json!({"put": {}}),
        json!({"set": [1]}),
        json!({"increment": {"a": "one"}}),
        json!({"remove": "city"}),
    ] {
        let r = n1.post_json("/maps/bad", &bad);
        assert_eq!(r.status, 400, "{bad}: {r}");
    }
    let r = n1.post_json(
        "/buckets/app/maps/profile",
        &json!({"increment": {"name": 1}}),
    );
    assert_eq!(r.status, 400, "an increment of a word: {r}");

    // Counters and sets in a bucket; deletes of every type.
    assert_eq!(
        n1.post_json("/buckets/app/counters/hits?w=all", &json!({"delta": 4}))
            .status,
        200
    );
    assert_eq!(
        n2.post_json("/buckets/app/sets/tags?w=all", &json!({"add": ["a"]}))
            .status,
        204
    );
    assert_eq!(
        n3.get("/buckets/app/counters/hits").json(),
        Some(json!({"value": 4}))
    );
    assert_eq!(
        n1.get("/counters/hits").json(),
        Some(json!({"value": 0})),
        "buckets apart"
    );
    for path in ["counters/hits", "sets/tags", "maps/profile"] {
        let r = n1.request("DELETE", &format!("/buckets/app/{path}?w=all"), &[], b"");
        assert_eq!(r.status, 204, "{path}: {r}");
    }
    assert_eq!(
        n2.get("/buckets/app/counters/hits?r=all").json(),
        Some(json!({"value": 0}))
    );
    assert_eq!(
        n2.get("/buckets/app/sets/tags?r=all").json(),
        Some(json!({"members": []}))
    );
    assert_eq!(
        n2.get("/buckets/app/maps/profile?r=all").json(),
        Some(json!({"fields": {}}))
    );
    let r = n1.request("DELETE", "/buckets/people/counters/user-001", &[], b"");
    assert_eq!(
        r.status, 409,
        "a counter delete of a string key is the wrong type: {r}"
    );

    // Watch: waits for a write through another node, or answers 304 at its timeout.
    let r = n1.put("/kv/watched?w=all", b"v1");
    let ctx = r.header("X-Causal-Context").expect("a context").to_string();
    let port = n3.http;
    let ctx_for_watch = ctx.clone();
    let watcher = std::thread::spawn(move || {
        support::request(
            port,
            "GET",
            "/kv/watched/watch?timeout_ms=8000",
            &[("X-Causal-Context", &ctx_for_watch)],
            b"",
        )
    });
    // The watch holds on while nothing changes (its first reads see the context it has).
    poll(
        "the watch to be open",
        Duration::from_secs(5),
        || match support::metric(n3, "driftkv_http_watches_open") {
            Ok(v) if v >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(
        !watcher.is_finished(),
        "the watch answered though nothing changed"
    );
    n2.request(
        "PUT",
        "/kv/watched?w=one",
        &[("X-Causal-Context", &ctx)],
        b"v2",
    );
    let answer = watcher.join().unwrap().expect("the watch answers");
    assert_eq!((answer.status, answer.text().as_str()), (200, "v2"));
    let now = n3.get("/kv/watched?r=all");
    let now_ctx = now.header("X-Causal-Context").unwrap();
    let idle = n3.request(
        "GET",
        "/kv/watched/watch?timeout_ms=200",
        &[("X-Causal-Context", now_ctx)],
        b"",
    );
    assert_eq!(idle.status, 304, "{idle}");
    let bad = n3.request(
        "GET",
        "/kv/watched/watch",
        &[("X-Causal-Context", "forged")],
        b"",
    );
    assert_eq!(bad.status, 400, "{bad}");
    assert_eq!(n3.get("/kv/watched/watch?timeout_ms=999999999").status, 400);

    // `driftkv watch` prints the state, then each change.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut proc = spawn(
        &[
            "watch".into(),
            "watched".into(),
            "--node".into(),
            url(n1),
            "--count".into(),
            "1".into(),
        ],
        log.path(),
    );
    poll(
        "driftkv watch to print the value",
        Duration::from_secs(10),
        || {
            let out = std::fs::read_to_string(log.path()).unwrap_or_default();
            if out.contains("v2") { Ok(()) } else { Err(out) }
        },
    );
    n2.put("/kv/watched?w=all", b"v3");
    poll(
        "driftkv watch to print the change and exit",
        Duration::from_secs(15),
        || {
            let out = std::fs::read_to_string(log.path()).unwrap_or_default();
            match proc.exited() {
                Some(status) if status.success() && out.contains("v3") => Ok(()),
                Some(status) => panic!("driftkv watch exited with {status}: {out}"),
                None => Err(out),
            }
        },
    );
}
