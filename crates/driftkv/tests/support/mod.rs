//! Helpers for tests on real `driftkv node` processes: free loopback ports, a node handle that
//! kills its process by PID on drop (and prints its log tail when the test panicked), a bare
//! HTTP/1.1 client over `std::net::TcpStream`, and `poll` with a deadline.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How often `poll` looks again.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// How long a node may take to answer `/health` after it was spawned.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// The most a single HTTP exchange may take (the server's own request timeouts are shorter).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a node's log shown when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// Calls `f` every 50 ms until it returns `Ok`, and panics once `deadline` has passed with the
/// last state `f` observed (its `Err`): a poll that fails says what it saw.
pub fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() >= deadline {
                    panic!(
                        "timed out after {deadline:?} waiting for {what}; last observed: {last}"
                    );
                }
            }
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// A loopback port below the ephemeral range, checked free by binding it, never handed out
/// twice by this process: a node's outgoing connections cannot take it while the node is
/// down between a kill and a restart.
pub fn free_port() -> u16 {
    static USED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.clamp(10_001, 32_000));
    let random = RandomState::new();
    for attempt in 0..10_000u32 {
        let port = low + (random.hash_one(attempt) % u64::from(high - low)) as u16;
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// A child process killed by PID (`Child::kill`) and reaped when dropped.
pub struct Proc(Child);

impl Proc {
    /// The process id, for reading `/proc/PID`.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// `None` while the process runs; its exit status once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns the driftkv binary with `args`, stdout and stderr appended to `log`.
#[allow(dead_code)] // not every test file spawns by hand
pub fn spawn(args: &[String], log: &Path) -> Proc {
    spawn_with_env(args, log, &[])
}

/// [`spawn`] with environment variables set besides.
pub fn spawn_with_env(args: &[String], log: &Path, env: &[(String, String)]) -> Proc {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the log file");
    let err = out.try_clone().expect("clone the log file handle");
    let child = Command::new(env!("CARGO_BIN_EXE_driftkv"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .env_remove("DRIFTKV_LOG")
        .env_remove("DRIFTKV_LOG_FORMAT")
        .env_remove("DRIFTKV_PROTOCOL_AHEAD")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn the driftkv binary");
    Proc(child)
}

/// Runs the binary until it exits (at most `deadline`, else it is killed and the test fails);
/// returns its exit status and what it wrote on stderr.
pub fn run_to_exit(args: &[String], deadline: Duration) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stderr_path = dir.path().join("stderr");
    let stderr = File::create(&stderr_path).expect("create the stderr file");
    let mut proc = Proc(
        Command::new(env!("CARGO_BIN_EXE_driftkv"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the driftkv binary"),
    );
    let status = poll(&format!("driftkv {args:?} to exit"), deadline, || {
        proc.exited().ok_or_else(|| {
            format!(
                "still running; stderr so far: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        })
    });
    (
        status,
        std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    )
}

/// One node: its ports and data directory stay the same across restarts.
pub struct Node {
    pub id: String,
    pub listen: u16,
    pub http: u16,
    /// Flags beyond id, data dir and addresses (`--join`, `--cluster`, `--config`, ...).
    extra: Vec<String>,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    starts: u32,
    /// Environment variables the process gets besides the harness's own.
    pub env: Vec<(String, String)>,
}

impl Node {
    /// A node not yet started, with fresh ports and an empty data directory.
    pub fn new(id: &str, extra: &[String]) -> Node {
        Node {
            id: id.to_string(),
            listen: free_port(),
            http: free_port(),
            extra: extra.to_vec(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            proc: None,
            starts: 0,
            env: Vec::new(),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// The full command line after `driftkv`.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["node", "--id", &self.id, "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(self.dir.path().join("data").display().to_string());
        a.extend([
            "--listen".to_string(),
            format!("127.0.0.1:{}", self.listen),
            "--http".to_string(),
            format!("127.0.0.1:{}", self.http),
        ]);
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts the process (same ports, same data directory as before) without waiting.
    pub fn spawn(&mut self) {
        assert!(self.proc.is_none(), "node {} is already running", self.id);
        self.starts += 1;
        if let Ok(mut f) = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
        {
            let _ = writeln!(f, "----- test harness: start #{} -----", self.starts);
        }
        self.proc = Some(spawn_with_env(&self.args(), &self.log_path(), &self.env));
    }

    /// Starts the process and waits until it answers `GET /health` with 200.
    pub fn start(&mut self) {
        self.spawn();
        let what = format!("node {} to answer /health", self.id);
        poll(&what, START_DEADLINE, || {
            if let Some(status) = self.proc.as_mut().and_then(Proc::exited) {
                panic!("node {} exited with {status} while starting", self.id);
            }
            match self.try_request("GET", "/health", &[], b"") {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(r.to_string()),
                Err(e) => Err(e),
            }
        });
    }

    /// Resident memory of the running process, in KiB (from `/proc/PID/status`).
    #[allow(dead_code)] // not every test file watches memory
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.proc.as_ref()?.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Sends `signal` (`TERM`, `INT`) to the process by PID and waits, at most `deadline`, for
    /// it to exit; returns its exit status.
    #[allow(dead_code)] // not every test file stops a node gracefully
    pub fn signal_and_wait(&mut self, signal: &str, deadline: Duration) -> ExitStatus {
        let pid = self.proc.as_ref().expect("the node runs").pid();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
        let what = format!("node {} to exit after SIG{signal}", self.id);
        let status = poll(&what, deadline, || {
            self.proc
                .as_mut()
                .and_then(Proc::exited)
                .ok_or_else(|| "still running".to_string())
        });
        self.proc = None;
        status
    }

    /// The process id of the running node.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("the node runs").pid()
    }

    /// The data directory's path (for `--data-dir` of a node started by hand).
    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL by PID, then reap: the node gets no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        drop(self.proc.take());
    }

    /// The exit status once the process has exited by itself (a node that left the cluster);
    /// `None` while it runs or when it was never started.
    #[allow(dead_code)] // not every test file watches a node exit
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.proc.as_mut().and_then(Proc::exited)
    }

    /// Deletes the node's data directory (its log stays): the next start is a node that lost
    /// its disk. The process must be stopped.
    #[allow(dead_code)] // not every test file wipes a node
    pub fn wipe_data(&mut self) {
        assert!(
            self.proc.is_none(),
            "wipe the data of node {} only while it is stopped",
            self.id
        );
        let data = self.dir.path().join("data");
        if data.exists() {
            std::fs::remove_dir_all(&data).expect("remove the node's data directory");
        }
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        request(self.http, method, path, headers, body)
            .map_err(|e| format!("{method} {path} on node {}: {e}", self.id))
    }

    /// An HTTP exchange that must get an answer (any status); panics if the node is unreachable
    /// (the node's log tail is printed when it is dropped during the panic).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn put(&self, path: &str, body: &[u8]) -> Response {
        self.request("PUT", path, &[], body)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- last lines of node {}'s log ({}) -----\n{}",
                self.id,
                self.log_path().display(),
                self.log_tail()
            );
        }
    }
}

/// A cluster of nodes `n1..nN`, each joining `n1`.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `count` nodes and waits until every node sees all of them up.
    pub fn start(count: usize) -> Cluster {
        Cluster::start_with(count, &[])
    }

    /// Starts `count` nodes, each with the flags `extra` (a `--config` file, say) besides its
    /// own, and waits until every node sees all of them up.
    pub fn start_with(count: usize, extra: &[String]) -> Cluster {
        let mut nodes: Vec<Node> = Vec::new();
        for i in 1..=count {
            let mut extra = extra.to_vec();
            if let Some(first) = nodes.first() {
                extra.extend(["--join".to_string(), format!("127.0.0.1:{}", first.listen)]);
            }
            let mut node = Node::new(&format!("n{i}"), &extra);
            node.start();
            nodes.push(node);
        }
        let cluster = Cluster { nodes };
        cluster.wait_all_up(Duration::from_secs(20));
        cluster
    }

    /// Waits until each node's `/cluster` shows every node of the cluster `up`.
    pub fn wait_all_up(&self, deadline: Duration) {
        let want: BTreeSet<String> = self.nodes.iter().map(|n| n.id.clone()).collect();
        poll("every node to see every node up", deadline, || {
            for node in &self.nodes {
                let members = members(node)?;
                let up: BTreeSet<String> = members
                    .iter()
                    .filter(|(_, state)| state == "up")
                    .map(|(id, _)| id.clone())
                    .collect();
                if up != want {
                    return Err(format!("{} sees {members:?}", node.id));
                }
            }
            Ok(())
        });
    }
}

/// `(id, state)` of each member in a node's `GET /cluster`.
pub fn members(node: &Node) -> Result<Vec<(String, String)>, String> {
    let r = node.try_request("GET", "/cluster", &[], b"")?;
    let js = r.json().filter(|_| r.status == 200).ok_or(r.to_string())?;
    let list = js["members"]
        .as_array()
        .ok_or_else(|| format!("/cluster has no \"members\" list: {js}"))?;
    Ok(list
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or("?").to_string(),
                m["state"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect())
}

/// The sum of every series of the metric `name` in a node's `GET /metrics` (0 when absent).
#[allow(dead_code)] // not every test file reads metrics
pub fn metric(node: &Node, name: &str) -> Result<f64, String> {
    let r = node.try_request("GET", "/metrics", &[], b"")?;
    if r.status != 200 {
        return Err(r.to_string());
    }
    let mut sum = 0.0;
    for line in r.text().lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue; // a longer name with this one as its prefix
        }
        let value = rest.rsplit(' ').next().unwrap_or_default();
        sum += value
            .parse::<f64>()
            .map_err(|e| format!("bad sample {line:?} in /metrics of {}: {e}", node.id))?;
    }
    Ok(sum)
}

/// One replica's copy in `GET /kv/{key}/replicas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub node: String,
    pub reachable: bool,
    /// Sorted, each a string (`{"base64": ..}` values are shown as their JSON).
    pub values: Vec<String>,
    pub stale: bool,
    /// The whole JSON object, for fields beyond the four above.
    pub raw: Value,
}

/// The replicas view of a key in the default bucket, as a node reports it.
pub fn replicas(node: &Node, key: &str) -> Result<Vec<Replica>, String> {
    let r = node.try_request("GET", &format!("/kv/{key}/replicas"), &[], b"")?;
    let js = r.json().filter(|_| r.status == 200).ok_or(r.to_string())?;
    let list = js["replicas"]
        .as_array()
        .ok_or_else(|| format!("no \"replicas\" list: {js}"))?;
    list.iter()
        .map(|v| {
            let mut values: Vec<String> = v["values"]
                .as_array()
                .ok_or_else(|| format!("a replica without a \"values\" list: {v}"))?
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect();
            values.sort();
            Ok(Replica {
                node: v["node"].as_str().unwrap_or("?").to_string(),
                reachable: v["reachable"]
                    .as_bool()
                    .ok_or_else(|| format!("a replica without \"reachable\": {v}"))?,
                values,
                stale: v["stale"]
                    .as_bool()
                    .ok_or_else(|| format!("a replica without \"stale\": {v}"))?,
                raw: v.clone(),
            })
        })
        .collect()
}

/// An HTTP answer.
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        let cut: String = text.chars().take(300).collect();
        let more = if cut.len() < text.len() { "..." } else { "" };
        write!(f, "{} {cut:?}{more}", self.status)
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`), bounded in time.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..at]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: raw[at + 4..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body)?;
    }
    Ok(response)
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk without a size line")?;
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err("a truncated chunk".into());
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}
