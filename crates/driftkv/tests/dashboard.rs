//! The dashboard in a real browser: headless Chromium (Debian's package, installed by
//! `.ci/run`) loads the dashboard of a running three-node cluster over the DevTools protocol,
//! finds the nodes and a written key's replicas, clicks "cut off" on a node, sees the cluster
//! react, and saves a screenshot under `target/` for CI to keep.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// Ports below the ephemeral range (a port picked by binding port 0 is one an outgoing
// connection, redis-benchmark's say, can take before the node binds it).
#[allow(dead_code)]
mod support;
use support::free_port;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Node {
    _proc: Proc,
    http: u16,
    listen: u16,
}

fn start(id: &str, dir: &std::path::Path, join: Option<u16>) -> Node {
    let (listen, http) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftkv"));
    cmd.args(["node", "--lab", "--id", id, "--data-dir"])
        .arg(dir.join(id))
        .args([
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--http",
            &format!("127.0.0.1:{http}"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{id}.log"))).unwrap());
    if let Some(j) = join {
        cmd.args(["--join", &format!("127.0.0.1:{j}")]);
    }
    Node {
        _proc: Proc(cmd.spawn().unwrap()),
        http,
        listen,
    }
}

fn poll<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .ok()?;
    s.write_all(body).ok()?;
    // Read by Content-Length: Chromium's DevTools server keeps the connection open.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| raw.len() >= end + 4 + len) {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.get(9..12)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn chromium() -> PathBuf {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("headless Chromium is installed (Debian's chromium; .ci/run installs it)")
}

/// One DevTools-protocol session on a page.
struct Page {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(tungstenite::Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .unwrap();
        loop {
            let msg = self.ws.read().expect("DevTools connection open");
            if let tungstenite::Message::Text(text) = msg {
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method} failed: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }
}

#[test]
fn the_dashboard_shows_the_cluster_and_its_controls_work_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = start("n1", dir.path(), None);
    let n2 = start("n2", dir.path(), Some(n1.listen));
    let n3 = start("n3", dir.path(), Some(n1.listen));
    poll(
        Duration::from_secs(30),
        "three members up on every node",
        || {
            [&n1, &n2, &n3]
                .iter()
                .all(|n| {
                    http(n.http, "GET", "/cluster", b"")
                        .is_some_and(|(st, b)| st == 200 && b.matches("\"up\"").count() == 3)
                })
                .then_some(())
        },
    );
    assert_eq!(
        http(n1.http, "PUT", "/kv/greeting?w=all", b"hello").map(|r| r.0),
        Some(204)
    );

    let profile = tempfile::tempdir().unwrap();
    let browser = Proc(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,1100",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("http://127.0.0.1:{}/", n1.http))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts"),
    );
    // Chromium writes the port it chose to DevToolsActivePort in its profile.
    let port: u16 = poll(Duration::from_secs(30), "Chromium's DevTools port", || {
        std::fs::read_to_string(profile.path().join("DevToolsActivePort"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    });
    let ws_url = poll(Duration::from_secs(30), "the dashboard page target", || {
        let (_, body) = http(port, "GET", "/json/list", b"")?;
        let targets: Value = serde_json::from_str(&body).ok()?;
        targets.as_array()?.iter().find_map(|t| {
            (t["type"] == "page" && t["url"].as_str()?.contains(&n1.http.to_string()))
                .then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_string))?
        })
    });
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (ws, _) = tungstenite::client(ws_url.as_str(), stream).expect("DevTools websocket");
    let mut page = Page { ws, next: 0 };

    // The nodes appear, each with its state, streamed from its own /events.
    poll(Duration::from_secs(30), "three node cards, all up", || {
        let cards =
            page.eval("[...document.querySelectorAll('.node')].map(e => e.textContent).join('|')");
        let text = cards.as_str()?.to_string();
        (["n1", "n2", "n3"].iter().all(|n| text.contains(n)) && text.matches("up").count() >= 3)
            .then_some(())
    });
    // The key inspector shows the written key on every replica.
    poll(
        Duration::from_secs(30),
        "the replicas of 'greeting' in the inspector",
        || {
            let rows = page.eval("[...document.querySelectorAll('#replicas tbody tr')].map(r => r.textContent).join('|')");
            let text = rows.as_str()?.to_string();
            (text.matches("hello").count() == 3).then_some(())
        },
    );
    // The inspector shows a key's type, a map's fields and a value's expiry.
    let map = br#"{"set": {"name": "ann"}, "increment": {"visits": 2}}"#;
    assert_eq!(
        http(n1.http, "POST", "/maps/profile?w=all", map).map(|(s, _)| s),
        Some(200)
    );
    assert_eq!(
        http(n1.http, "PUT", "/kv/brief?w=all&ttl_ms=600000", b"soon").map(|(s, _)| s),
        Some(204)
    );
    for (key, want) in [
        ("profile", ["map", "name=ann"]),
        ("brief", ["register", "in 5"]),
    ] {
        page.eval(&format!(
            "document.getElementById('key').value = '{key}'; inspect()"
        ));
        let started = Instant::now();
        loop {
            let rows = page.eval("document.querySelector('#replicas tbody').textContent");
            let text = rows.as_str().unwrap_or_default().to_string();
            if want.iter().all(|w| text.matches(w).count() == 3) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the inspector never showed {want:?} for {key}: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    page.eval("document.getElementById('key').value = 'greeting'; inspect()");
    // Click "cut off" on n3's card: n3 is isolated, and the cluster sees it go down.
    let clicked = page.eval(
        "(() => { const card = [...document.querySelectorAll('.node')].find(e => e.querySelector('.name').textContent.startsWith('n3'));
                  const b = card && card.querySelector('button'); if (!b) return false; b.click(); return true; })()",
    );
    assert_eq!(clicked, json!(true), "n3's card has a cut-off button");
    poll(
        Duration::from_secs(30),
        "n1 to see n3 down after the cut",
        || {
            http(n1.http, "GET", "/cluster", b"").and_then(|(_, b)| {
                let v: Value = serde_json::from_str(&b).ok()?;
                let n3 = v["members"]
                    .as_array()?
                    .iter()
                    .find(|m| m["id"] == "n3")?
                    .clone();
                (n3["state"] != "up").then_some(())
            })
        },
    );
    poll(
        Duration::from_secs(30),
        "the dashboard to show n3 isolated",
        || {
            let text = page.eval("document.getElementById('nodes').textContent");
            text.as_str()?.contains("isolated").then_some(())
        },
    );
    // Write two conflicting values from the page; the inspector shows the siblings.
    page.eval("document.getElementById('b-conflict').click()");
    poll(Duration::from_secs(30), "siblings in the inspector", || {
        let rows = page.eval("document.querySelector('#replicas tbody').textContent");
        let text = rows.as_str()?.to_string();
        (text.contains("left-") && text.contains("right-")).then_some(())
    });

    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
    std::fs::create_dir_all(&target).unwrap();
    let path = target.join("dashboard-screenshot.png");
    std::fs::write(&path, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    println!("screenshot: {} ({} bytes)", path.display(), png.len());
    drop(page);
    drop(browser);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 screenshot")
}
