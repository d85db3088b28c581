//! `driftkv demo`: starts three real nodes on free loopback ports with temporary data, then
//! narrates eventual consistency with real HTTP requests: replication and convergence, a node
//! down and catching up, a stale read beside a session read that refuses to go back in time,
//! siblings resolved with a context, what `lww` loses, and a counter updated on every node.
//! Everything it prints was measured in this run, and it checks its own story: each step says
//! what it expects, each claim is marked as held or, plainly, as having gone otherwise, and the
//! demo exits non-zero (after finishing the walk-through) when any claim did not hold.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// How many nodes the demo runs: n1, n2 and n3.
const NODE_COUNT: usize = 3;
/// Where n1, n2 and n3 sit in `Nodes` and in the list of their URLs.
const N1: usize = 0;
const N2: usize = 1;
const N3: usize = 2;
/// Each node binds two ports: node-to-node, then HTTP.
const PORTS_PER_NODE: usize = 2;
/// The cluster's config file: the `lww` bucket of step 5 resolves by last write wins.
const CLUSTER_CONFIG: &str = "[buckets.lww]\nmode = \"lww\"\n";

/// Demo ports are drawn from this port up to the start of the ephemeral range.
const PORT_FLOOR: u16 = 10_000;
/// With less room than this below the ephemeral range, the kernel picks the ports.
const PORT_ROOM_MIN: u16 = 1_000;
/// Random draws below the ephemeral range before falling back to the kernel's choice.
const PORT_DRAWS_RANDOM_MAX: u64 = 10_000;
/// Draws in all before giving up on finding free ports.
const PORT_DRAWS_MAX: u64 = 20_000;

/// How long one HTTP request to a node may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `poll` looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long the three nodes have to find each other at the start.
const CLUSTER_FORM_WAIT: Duration = Duration::from_secs(20);
/// How long a write has to reach every replica (step 1).
const REPLICATION_WAIT: Duration = Duration::from_secs(10);
/// How long gossip has to notice that n3 went down (step 2).
const DOWN_NOTICE_WAIT: Duration = Duration::from_secs(15);
/// How long n1 has to keep a hint of the write n3 missed (step 2): at once when n1 already
/// saw n3 down, else once the write's request deadline passes.
const HINT_WAIT: Duration = Duration::from_secs(10);
/// How long n3 has to serve clients after its restart (step 2).
const RESTART_WAIT: Duration = Duration::from_secs(20);
/// How long n3 has to receive the write it missed, and n1 to hand its hints off (steps 2, 3).
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// How long every node has to see all three up again (steps 2, 3).
const REJOIN_WAIT: Duration = Duration::from_secs(15);
/// How long the counter has to converge on every node (step 6).
const COUNTER_WAIT: Duration = Duration::from_secs(10);
/// Increments sent through each node (step 6).
const INCREMENTS_PER_NODE: i64 = 5;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the cluster running after the walk-through, until Ctrl-C.
    #[arg(long)]
    stay: bool,
}

/// The demo's node processes; killed (by PID) when dropped, whatever happened.
struct Nodes {
    children: Vec<Option<Child>>,
    specs: Vec<Spec>,
}

struct Spec {
    id: String,
    listen: u16,
    http: u16,
    args: Vec<String>,
    log: std::path::PathBuf,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Nodes {
    /// n1, n2 and n3 on free loopback ports with their data and logs under `dir`, n2 and n3
    /// joining through n1; none of them started yet.
    fn plan(dir: &Path, config: &Path) -> anyhow::Result<Nodes> {
        let mut nodes = Nodes {
            children: Vec::new(),
            specs: Vec::new(),
        };
        let ports = free_ports(NODE_COUNT * PORTS_PER_NODE)?;
        for (i, pair) in ports.chunks(PORTS_PER_NODE).enumerate() {
            let id = format!("n{}", i + 1);
            let (listen, http) = (pair[0], pair[1]);
            let join = (i > N1).then(|| nodes.specs[N1].listen);
            let args = node_args(&id, dir, config, (listen, http), join);
            nodes.specs.push(Spec {
                log: dir.join(format!("{id}.log")),
                id,
                listen,
                http,
                args,
            });
            nodes.children.push(None);
        }
        Ok(nodes)
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let spec = &self.specs[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)?;
        let child = Command::new(std::env::current_exe()?)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start a node process")?;
        self.children[i] = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.specs[i].http)
    }
}

/// The command line of the node `id`: `driftkv node` on loopback `(listen, http)` ports, in
/// the lab mode, joining the node-to-node port `join` if given.
fn node_args(
    id: &str,
    dir: &Path,
    config: &Path,
    (listen, http): (u16, u16),
    join: Option<u16>,
) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "node".into(),
        "--id".into(),
        id.to_string(),
        "--data-dir".into(),
        dir.join(id).display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{listen}"),
        "--http".into(),
        format!("127.0.0.1:{http}"),
        "--config".into(),
        config.display().to_string(),
        "--lab".into(),
    ];
    if let Some(port) = join {
        argv.push("--join".into());
        argv.push(format!("127.0.0.1:{port}"));
    }
    argv
}

/// `count` distinct free loopback ports. All are held bound until every one is found (the
/// kernel may hand a port it just released out again: two nodes once got the same one), and
/// they are taken below the ephemeral range where it can be read, so that no node's outgoing
/// connection takes one before the node that owns it binds it.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    use std::hash::BuildHasher;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok());
    let random = std::collections::hash_map::RandomState::new();
    let mut held: Vec<std::net::TcpListener> = Vec::with_capacity(count);
    let mut attempt = 0u64;
    while held.len() < count {
        attempt += 1;
        let port = match ephemeral_low {
            Some(low) if low > PORT_FLOOR + PORT_ROOM_MIN && attempt < PORT_DRAWS_RANDOM_MAX => {
                PORT_FLOOR + (random.hash_one(attempt) % u64::from(low - PORT_FLOOR)) as u16
            }
            _ => 0,
        };
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            let taken = l.local_addr()?.port();
            if !held
                .iter()
                .any(|h| h.local_addr().ok().map(|a| a.port()) == Some(taken))
            {
                held.push(l);
            }
        }
        if attempt > PORT_DRAWS_MAX {
            anyhow::bail!("no {count} free loopback ports");
        }
    }
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// One replica's view of a key: its node, its values (`None`: unreachable), whether stale.
type Replica = (String, Option<Vec<String>>, bool);

struct Http {
    client: reqwest::Client,
}

impl Http {
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Vec<u8>>,
        context: Option<&str>,
    ) -> anyhow::Result<(u16, Vec<u8>, Option<String>)> {
        let mut req = self.client.request(method, url);
        if let Some(b) = body {
            req = req.body(b);
        }
        if let Some(c) = context {
            req = req.header("X-Causal-Context", c);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("request to {url} failed"))?;
        let status = resp.status().as_u16();
        let ctx = resp
            .headers()
            .get("x-causal-context")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((status, resp.bytes().await?.to_vec(), ctx))
    }

    /// A session read: `GET url` that must answer at least what `token` covers.
    async fn session_get(&self, url: &str, token: &str) -> anyhow::Result<(u16, String)> {
        let resp = self
            .client
            .get(url)
            .header("X-Session-Token", token)
            .send()
            .await
            .with_context(|| format!("request to {url} failed"))?;
        let status = resp.status().as_u16();
        Ok((
            status,
            String::from_utf8_lossy(&resp.bytes().await?).into_owned(),
        ))
    }

    async fn get(&self, url: &str) -> anyhow::Result<(u16, Vec<u8>, Option<String>)> {
        self.call(reqwest::Method::GET, url, None, None).await
    }

    async fn json(&self, url: &str) -> anyhow::Result<Value> {
        let (status, body, _) = self.get(url).await?;
        if status != 200 {
            bail!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice(&body)?)
    }

    async fn put(&self, url: &str, value: &str, context: Option<&str>) -> anyhow::Result<u16> {
        Ok(self
            .call(
                reqwest::Method::PUT,
                url,
                Some(value.as_bytes().to_vec()),
                context,
            )
            .await?
            .0)
    }

    /// Each replica's values of `path`'s key, as `/replicas` on `node` shows them.
    async fn replicas(&self, node: &str, path: &str) -> anyhow::Result<Vec<Replica>> {
        let v = self.json(&format!("{node}{path}/replicas")).await?;
        Ok(v["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let values = r["reachable"].as_bool().unwrap_or(false).then(|| {
                    r["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| x.as_str().unwrap_or("<bytes>").to_string())
                        .collect()
                });
                (
                    r["node"].as_str().unwrap_or("?").to_string(),
                    values,
                    r["stale"].as_bool().unwrap_or(false),
                )
            })
            .collect())
    }
}

fn show(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .map(|(node, values, stale)| match values {
            None => format!("{node}: unreachable"),
            Some(v) if v.is_empty() => {
                format!("{node}: (nothing){}", if *stale { " STALE" } else { "" })
            }
            Some(v) => format!(
                "{node}: {}{}",
                v.join(" | "),
                if *stale { " STALE" } else { "" }
            ),
        })
        .collect::<Vec<_>>()
        .join("   ")
}

/// Polls `check` every `POLL_INTERVAL` until it yields or `deadline` passes.
async fn poll<T, F, Fut>(deadline: Duration, mut check: F) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(Some(v));
        }
        if start.elapsed() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls the replicas of `path`'s key, as `node` sees them, until each holds just `value`.
async fn until_every_replica_holds(
    http: &Http,
    node: &str,
    path: &str,
    value: &str,
    deadline: Duration,
) -> anyhow::Result<Option<Vec<Replica>>> {
    poll(deadline, || async {
        let r = http.replicas(node, path).await?;
        Ok(r.iter()
            .all(|(_, v, _)| v.as_deref() == Some(&[value.to_string()][..]))
            .then_some(r))
    })
    .await
}

async fn members_up(http: &Http, node: &str) -> anyhow::Result<Vec<String>> {
    let v = match http.json(&format!("{node}/cluster")).await {
        Ok(v) => v,
        Err(_) => return Ok(Vec::new()),
    };
    Ok(v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "up")
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect())
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn say(text: &str) {
    println!("{text}");
}

/// Whether an HTTP status acknowledges a write.
fn acknowledged(status: u16) -> bool {
    (200..300).contains(&status)
}

/// A body as text (values in the demo are UTF-8).
fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The `error` of a JSON error body, or the body itself.
fn error_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}

/// What every replica holds, as `want` sorted: each holds exactly those values.
fn every_replica_holds(replicas: &[Replica], want: &[&str]) -> bool {
    !replicas.is_empty()
        && replicas.iter().all(|(_, values, _)| {
            values.as_ref().is_some_and(|v| {
                let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
                v.sort_unstable();
                v == want
            })
        })
}

/// What the walk-through says will happen, checked against what did: each step states its
/// story, then each of its claims is marked as held or, plainly, as having gone otherwise.
#[derive(Default)]
struct Story {
    step: u32,
    /// The claims that did not hold: their step, what was expected and what happened.
    differed: Vec<String>,
}

impl Story {
    /// Starts step `n`: its title, then what it expects to happen.
    fn step(&mut self, n: u32, title: &str, expected: &str) {
        self.step = n;
        println!("\n== {n}. {title}");
        println!("   the story: {expected}");
    }

    /// One claim of the step's story against what happened: says it held, or that it did not
    /// and what happened `instead`. Whether it held.
    fn check(&mut self, claim: &str, held: bool, instead: impl FnOnce() -> String) -> bool {
        if held {
            say(&format!("  [as told] {claim}"));
        } else {
            let instead = instead();
            say(&format!(
                "  [NOT AS TOLD] the outcome differed from the story: expected {claim}; \
                 what happened instead: {instead}"
            ));
            self.differed.push(format!(
                "step {}: expected {claim}; instead {instead}",
                self.step
            ));
        }
        held
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("driftkv-demo-").tempdir()?;
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, CLUSTER_CONFIG)?;
    let mut nodes = Nodes::plan(dir.path(), &config)?;
    let http = Http {
        client: reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()?,
    };
    let story = match walk_through(&mut nodes, &http, dir.path()).await {
        Ok(story) => story,
        Err(e) => {
            eprintln!("\nthe demo stopped: {e:#}");
            keep_logs(&nodes, dir);
            return Err(e);
        }
    };
    if args.stay {
        stay_until_ctrl_c(&nodes).await?;
    }
    if !story.differed.is_empty() {
        let e = anyhow!(
            "{} of the demo's claims did not hold (each is marked NOT AS TOLD above)",
            story.differed.len()
        );
        eprintln!("\nthe demo finished, but {e}");
        keep_logs(&nodes, dir);
        return Err(e);
    }
    drop(nodes);
    say("\nStopped the three nodes and removed their data.");
    Ok(())
}

/// After a walk-through that failed or did not go as told: says where the nodes' logs are,
/// and keeps them.
fn keep_logs(nodes: &Nodes, dir: tempfile::TempDir) {
    for spec in &nodes.specs {
        eprintln!("  log of {}: {}", spec.id, spec.log.display());
    }
    // Keep the logs for a look.
    let kept = dir.keep();
    eprintln!("  (logs kept in {})", kept.display());
}

/// `--stay`: the cluster runs on, its addresses printed, until Ctrl-C.
async fn stay_until_ctrl_c(nodes: &Nodes) -> anyhow::Result<()> {
    say("\nThe cluster keeps running; press Ctrl-C to stop it and delete its data.");
    for i in 0..NODE_COUNT {
        say(&format!("  {}: {}", nodes.specs[i].id, nodes.url(i)));
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Every step in turn, each checking its own story; the story with what did not hold. Fails
/// only when the demo cannot go on (the cluster does not form, a node cannot be reached).
async fn walk_through(nodes: &mut Nodes, http: &Http, dir: &Path) -> anyhow::Result<Story> {
    say("driftkv demo: three nodes on this machine, every number below measured now.");
    say("Each step says what it expects, and says so plainly when something else happened.");
    say(&format!("(data and logs under {})", dir.display()));
    let urls = start_cluster(nodes, http).await?;
    let mut story = Story::default();
    replicate_a_write(http, &urls, &mut story).await?;
    survive_a_node_down(nodes, http, &urls, &mut story).await?;
    read_stale_beside_a_session(http, &urls, &mut story).await?;
    resolve_siblings(http, &urls, &mut story).await?;
    lose_a_write_to_lww(http, &urls, &mut story).await?;
    converge_a_counter(http, &urls, &mut story).await?;
    if story.differed.is_empty() {
        say(
            "\nDone, every step as told: replication, a node down and caught up, a stale read beside a \
             refused session read, siblings resolved, an LWW loss shown, a converged counter.",
        );
    } else {
        say(&format!(
            "\nDone, but {} of the story's claims did not hold:",
            story.differed.len()
        ));
        for claim in &story.differed {
            say(&format!("  - {claim}"));
        }
    }
    Ok(story)
}

/// Starts the nodes, waits until n1 sees all of them up and says where they serve; their URLs.
async fn start_cluster(nodes: &mut Nodes, http: &Http) -> anyhow::Result<Vec<String>> {
    for i in 0..NODE_COUNT {
        nodes.start(i)?;
    }
    let n1 = nodes.url(N1);
    let started = poll(CLUSTER_FORM_WAIT, || async {
        Ok((members_up(http, &n1).await?.len() == NODE_COUNT).then_some(()))
    })
    .await?;
    if started.is_none() {
        bail!(
            "the three nodes did not see each other within {} s",
            CLUSTER_FORM_WAIT.as_secs()
        );
    }
    for i in 0..NODE_COUNT {
        say(&format!(
            "  {} serves HTTP on {}",
            nodes.specs[i].id,
            nodes.url(i)
        ));
    }
    say(&format!("  dashboard: {n1}/   cluster view: {n1}/cluster"));
    Ok((0..NODE_COUNT).map(|i| nodes.url(i)).collect())
}

/// Step 1: n1 alone acknowledges a write (w=one); the other replicas receive it a moment later.
async fn replicate_a_write(http: &Http, urls: &[String], story: &mut Story) -> anyhow::Result<()> {
    story.step(
        1,
        "A write on n1, replicated asynchronously",
        "n1 alone acknowledges a write (w=one); n2 and n3 receive it a moment later",
    );
    let t0 = Instant::now();
    let st = http
        .put(&format!("{}/kv/greeting?w=one", urls[N1]), "hello", None)
        .await?;
    say(&format!(
        "PUT /kv/greeting = \"hello\" on n1 with w=one: {st} after {:.1} ms",
        millis_since(t0)
    ));
    story.check("n1 acknowledges the write", acknowledged(st), || {
        format!("n1 answered {st}")
    });
    let first = http.replicas(&urls[N1], "/kv/greeting").await?;
    say(&format!(
        "  each replica's own copy right away: {}",
        show(&first)
    ));
    let converged =
        until_every_replica_holds(http, &urls[N1], "/kv/greeting", "hello", REPLICATION_WAIT)
            .await?;
    if let Some(r) = &converged {
        say(&format!(
            "  all three replicas hold it {:.1} ms after the write: {}",
            millis_since(t0),
            show(r)
        ));
    }
    let now = http.replicas(&urls[N1], "/kv/greeting").await?;
    story.check(
        &format!(
            "every replica holds \"hello\" within {} s",
            REPLICATION_WAIT.as_secs()
        ),
        converged.is_some(),
        || show(&now),
    );
    say(
        "  (on loopback the inconsistency window is tiny; `driftkv sim` stretches the network to measure it)",
    );
    Ok(())
}

/// Step 2: n3 dies, writes go on without it (w=quorum, not w=all) and n1 keeps a hint for it;
/// restarted, n3 serves clients once it hears from a member, and catches up.
async fn survive_a_node_down(
    nodes: &mut Nodes,
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<()> {
    story.step(
        2,
        "A node goes down; writes go on; it comes back and catches up",
        "with n3 killed, a write at w=quorum is acknowledged and one at w=all refused (503); \
         n1 keeps a hint for n3; restarted, n3 serves clients again, catches up on the write \
         it missed and is seen up again",
    );
    kill_n3(nodes, http, urls, story).await?;
    write_while_n3_is_down(http, urls, story).await?;
    let hints = n1_keeps_a_hint(
        http,
        urls,
        "a cluster of three has no other node to stand in for it",
        story,
    )
    .await?;
    let t_back = restart_n3(nodes, http, urls, story).await?;
    n3_catches_up(http, urls, t_back, hints, story).await?;
    all_see_every_node_up(http, urls, story).await
}

/// n3 is killed without warning; says how soon gossip on n1 noticed.
async fn kill_n3(
    nodes: &mut Nodes,
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<()> {
    nodes.kill(N3);
    say("killed n3 (SIGKILL).");
    let t_down = Instant::now();
    let noticed = poll(DOWN_NOTICE_WAIT, || async {
        Ok((!members_up(http, &urls[N1])
            .await?
            .contains(&"n3".to_string()))
        .then_some(()))
    })
    .await?;
    if noticed.is_some() {
        say(&format!(
            "  gossip marked n3 not up on n1 after {:.1} s",
            t_down.elapsed().as_secs_f64()
        ));
    }
    story.check(
        "gossip on n1 notices that n3 is not up",
        noticed.is_some(),
        || format!("n1 still saw n3 up after {} s", DOWN_NOTICE_WAIT.as_secs()),
    );
    Ok(())
}

/// An overwrite at w=quorum succeeds with n3 down and n2 reads it; one at w=all is refused.
async fn write_while_n3_is_down(
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<()> {
    // An overwrite names what it replaces: the context of a read.
    let (_, _, ctx) = http.get(&format!("{}/kv/greeting", urls[N1])).await?;
    let st = http
        .put(
            &format!("{}/kv/greeting?w=quorum", urls[N1]),
            "hello again",
            ctx.as_deref(),
        )
        .await?;
    let (st_read, body, _) = http.get(&format!("{}/kv/greeting", urls[N2])).await?;
    let read = text(&body);
    say(&format!(
        "PUT greeting = \"hello again\" (with the context of a read) and w=quorum while n3 is down: {st}; \
         a read on n2 answers {st_read} {read:?}"
    ));
    story.check(
        "the write at w=quorum is acknowledged without n3",
        acknowledged(st),
        || format!("n1 answered {st}"),
    );
    story.check(
        "a read on n2 answers \"hello again\"",
        st_read == 200 && read == "hello again",
        || format!("it answered {st_read} {read:?}"),
    );
    let st_all = http
        .put(&format!("{}/kv/other?w=all", urls[N1]), "x", None)
        .await?;
    say(&format!(
        "  the same with w=all cannot gather 3 acknowledgements: {st_all}"
    ));
    story.check(
        "the write at w=all is refused (503), not hung",
        st_all == 503,
        || format!("n1 answered {st_all}"),
    );
    say(&format!(
        "  replicas now: {}",
        show(&http.replicas(&urls[N1], "/kv/greeting").await?)
    ));
    Ok(())
}

/// How many hints n1 holds for nodes that missed writes (`hints_pending` of its `/cluster`).
async fn hints_pending(http: &Http, node: &str) -> anyhow::Result<u64> {
    Ok(
        http.json(&format!("{node}/cluster")).await?["hints_pending"]
            .as_u64()
            .unwrap_or(0),
    )
}

/// n1 keeps the write n3 missed as a hint, for the reason `why`; how many hints it holds.
async fn n1_keeps_a_hint(
    http: &Http,
    urls: &[String],
    why: &str,
    story: &mut Story,
) -> anyhow::Result<u64> {
    let hints = poll(HINT_WAIT, || async {
        let n = hints_pending(http, &urls[N1]).await?;
        Ok((n > 0).then_some(n))
    })
    .await?;
    if let Some(n) = hints {
        say(&format!("  n1 keeps {n} hint(s) for n3: {why}"));
    }
    story.check(
        "n1 keeps a hint of the write for n3",
        hints.is_some(),
        || format!("n1 held no hint after {} s", HINT_WAIT.as_secs()),
    );
    Ok(hints.unwrap_or(0))
}

/// Restarts n3 from its data and reads there with r=one until it serves clients (a restarted
/// node refuses them until it hears from a member); says what it answered first, stale or
/// not, and when the restart began.
async fn restart_n3(
    nodes: &mut Nodes,
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<Instant> {
    let t_back = Instant::now();
    nodes.start(N3)?;
    let url = format!("{}/kv/greeting?r=one", urls[N3]);
    let deadline = t_back + RESTART_WAIT;
    // The first refusal's reason, and how long after the restart the last came.
    let mut refused: Option<(String, f64)> = None;
    let first = loop {
        match http.get(&url).await {
            Ok((503, body, _)) => {
                let why = refused
                    .take()
                    .map_or_else(|| error_of(&text(&body)), |(why, _)| why);
                refused = Some((why, millis_since(t_back)));
            }
            Ok((st, body, _)) => break Some((st, text(&body))),
            // Not listening yet.
            Err(_) => {}
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    match &refused {
        Some((why, ms)) => say(&format!(
            "restarted n3 from its data directory; until {ms:.0} ms after the restart it refused \
             clients (503: {why})"
        )),
        None => {
            say("restarted n3 from its data directory; it served clients as soon as it listened")
        }
    }
    if let Some((st, seen)) = &first {
        let which = match seen.as_str() {
            "hello" => {
                " -- a stale read: n3 answered from its own copy, which the write it missed had not reached yet"
            }
            "hello again" => " -- the write it missed had already reached it",
            _ => "",
        };
        say(&format!(
            "  its first answer to a read with r=one, {:.0} ms after the restart: {st} {seen:?}{which}",
            millis_since(t_back)
        ));
    }
    story.check(
        &format!(
            "n3 serves clients again within {} s of its restart",
            RESTART_WAIT.as_secs()
        ),
        first.is_some(),
        || match refused {
            Some((why, _)) => format!("it still refused them: {why}"),
            None => "it did not answer at all".to_string(),
        },
    );
    Ok(t_back)
}

/// Waits until every replica, n3 included, holds the write n3 missed, and until n1 has handed
/// its `hints` off.
async fn n3_catches_up(
    http: &Http,
    urls: &[String],
    t_back: Instant,
    hints: u64,
    story: &mut Story,
) -> anyhow::Result<()> {
    let caught = until_every_replica_holds(
        http,
        &urls[N1],
        "/kv/greeting",
        "hello again",
        CATCH_UP_WAIT,
    )
    .await?;
    if let Some(r) = &caught {
        say(&format!(
            "  every replica holds \"hello again\" {:.1} s after n3 restarted: {}",
            t_back.elapsed().as_secs_f64(),
            show(r)
        ));
    }
    let now = http.replicas(&urls[N1], "/kv/greeting").await?;
    story.check(
        "n3 catches up on the write it missed",
        caught.is_some(),
        || show(&now),
    );
    n1_hands_hints_off(http, urls, t_back, hints, "n3 restarted", story).await
}

/// Waits until n1, which held `hints` for n3 since `since` (when `what` happened), has handed
/// them off; nothing to wait for without hints (the claim that n1 kept one did not hold).
async fn n1_hands_hints_off(
    http: &Http,
    urls: &[String],
    since: Instant,
    hints: u64,
    what: &str,
    story: &mut Story,
) -> anyhow::Result<()> {
    if hints == 0 {
        return Ok(());
    }
    let handed = poll(CATCH_UP_WAIT, || async {
        Ok((hints_pending(http, &urls[N1]).await? == 0).then_some(()))
    })
    .await?;
    if handed.is_some() {
        say(&format!(
            "  n1 handed its {hints} hint(s) off to n3 (hinted handoff) within {:.1} s after {what}",
            since.elapsed().as_secs_f64()
        ));
    }
    let left = hints_pending(http, &urls[N1]).await?;
    story.check("n1 hands its hints off to n3", handed.is_some(), || {
        format!("n1 still holds {left} hint(s)")
    });
    Ok(())
}

/// Waits until every node sees all three up (step 4 writes with w=all).
async fn all_see_every_node_up(
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<()> {
    let seen = poll(REJOIN_WAIT, || async {
        for url in urls {
            if members_up(http, url).await?.len() != NODE_COUNT {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    let mut views = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        views.push(format!(
            "n{} sees {:?} up",
            i + 1,
            members_up(http, url).await?
        ));
    }
    story.check("every node sees all three up again", seen.is_some(), || {
        views.join(", ")
    });
    Ok(())
}

/// Presses a lab control of `node` (`isolate` or `heal`); the status it answered.
async fn lab(http: &Http, node: &str, control: &str) -> anyhow::Result<u16> {
    let url = format!("{node}/admin/{control}");
    let resp = http
        .client
        .post(&url)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .with_context(|| format!("request to {url} failed"))?;
    Ok(resp.status().as_u16())
}

/// Step 3: n3 is cut off from its peers while a write goes through n1: a read there at r=one
/// answers its older copy, a session read refuses to; healed, n3 catches up.
async fn read_stale_beside_a_session(
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<()> {
    story.step(
        3,
        "A stale read beside a session read that refuses to go back in time",
        "with n3 cut off from its peers, a write through n1 is acknowledged by n1 and n2; a read \
         on n3 with r=one answers n3's older copy (a stale read); the same read as a session \
         read is refused (503) rather than go back in time; healed, n3 catches up and the \
         session read answers the write",
    );
    let st = lab(http, &urls[N3], "isolate").await?;
    say(&format!(
        "cut n3 off from every peer (POST /admin/isolate, a lab control): {st}"
    ));
    story.check("n3 is cut off", st == 200, || format!("n3 answered {st}"));
    // Healed whatever happened while it was cut off.
    let cut_off = async {
        let token = while_n3_is_cut_off(http, urls, story).await?;
        let why = "n3 never acknowledged the write, and n1 gave up on it at the request deadline";
        let hints = n1_keeps_a_hint(http, urls, why, story).await?;
        anyhow::Ok((token, hints))
    }
    .await;
    let t_heal = Instant::now();
    let st = lab(http, &urls[N3], "heal").await?;
    let (token, hints) = cut_off?;
    say(&format!("healed n3 (POST /admin/heal): {st}"));
    story.check("n3 is healed", st == 200, || format!("n3 answered {st}"));
    let caught = until_every_replica_holds(
        http,
        &urls[N1],
        "/kv/greeting",
        "hello at last",
        CATCH_UP_WAIT,
    )
    .await?;
    if let Some(r) = &caught {
        say(&format!(
            "  every replica holds \"hello at last\" {:.1} s after the heal: {}",
            t_heal.elapsed().as_secs_f64(),
            show(r)
        ));
    }
    let now = http.replicas(&urls[N1], "/kv/greeting").await?;
    story.check(
        "healed, n3 catches up on the write",
        caught.is_some(),
        || show(&now),
    );
    n1_hands_hints_off(http, urls, t_heal, hints, "the heal", story).await?;
    if let Some(token) = token {
        let (st, value) = http
            .session_get(&format!("{}/kv/greeting?r=one", urls[N3]), &token)
            .await?;
        say(&format!("  the session read on n3 again: {st} {value:?}"));
        story.check(
            "the session read on n3 now answers the write, 200 \"hello at last\"",
            st == 200 && value == "hello at last",
            || format!("it answered {st} {value:?}"),
        );
    }
    all_see_every_node_up(http, urls, story).await
}

/// While n3 is cut off: a write through n1, a stale read on n3 and a refused session read
/// there; the context the write answered (the session's token).
async fn while_n3_is_cut_off(
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<Option<String>> {
    let (_, _, ctx) = http.get(&format!("{}/kv/greeting", urls[N1])).await?;
    let (st, _, token) = http
        .call(
            reqwest::Method::PUT,
            &format!("{}/kv/greeting?w=quorum", urls[N1]),
            Some(b"hello at last".to_vec()),
            ctx.as_deref(),
        )
        .await?;
    say(&format!(
        "PUT greeting = \"hello at last\" on n1 with w=quorum (and the context of a read) while n3 hears nothing: {st}"
    ));
    story.check(
        "n1 and n2 acknowledge the write without n3",
        acknowledged(st),
        || format!("n1 answered {st}"),
    );
    let url = format!("{}/kv/greeting?r=one", urls[N3]);
    let (st, body, _) = http.get(&url).await?;
    let seen = text(&body);
    let (st1, body1, _) = http.get(&format!("{}/kv/greeting?r=one", urls[N1])).await?;
    say(&format!(
        "a read on n3 with r=one: {st} {seen:?}; the same read on n1: {st1} {:?}",
        text(&body1)
    ));
    story.check(
        "a stale read: n3 answers its own older copy, \"hello again\"",
        st == 200 && seen == "hello again",
        || format!("n3 answered {st} {seen:?}"),
    );
    let Some(token) = token else {
        story.check(
            "the write answers a context, the session's token",
            false,
            || "it answered no X-Causal-Context".to_string(),
        );
        return Ok(None);
    };
    let t0 = Instant::now();
    let (st, value) = http.session_get(&url, &token).await?;
    let answer = if st == 200 {
        format!("{value:?}")
    } else {
        error_of(&value)
    };
    say(&format!(
        "  the same read on n3 as a session read (X-Session-Token = the context the write \
         answered): {st} after {:.0} ms: {answer}",
        millis_since(t0)
    ));
    story.check(
        "the session read is refused (503) rather than answer the older \"hello again\"",
        st == 503,
        || {
            if st == 200 && value == "hello again" {
                "it answered 200 \"hello again\": it went back in time".to_string()
            } else {
                format!("it answered {st} {answer}")
            }
        },
    );
    Ok(Some(token))
}

/// Step 4: two blind writes on different nodes are kept side by side, then merged by a write
/// carrying the context of the read that saw both.
async fn resolve_siblings(http: &Http, urls: &[String], story: &mut Story) -> anyhow::Result<()> {
    story.step(
        4,
        "Two concurrent writes without context become siblings",
        "blind writes of \"milk\" on n1 and \"eggs\" on n2 (w=all) are both kept: a read answers \
         300 with both, every replica keeps both, and a write with that read's context leaves \
         one value",
    );
    let ctx = write_siblings(http, urls, story).await?;
    let replicas = http.replicas(&urls[N1], "/kv/cart").await?;
    say(&format!("  each replica's copy: {}", show(&replicas)));
    story.check(
        "every replica keeps both",
        every_replica_holds(&replicas, &["eggs", "milk"]),
        || show(&replicas),
    );
    let Some(ctx) = ctx else {
        story.check(
            "the 300 answer carries a context to write with",
            false,
            || "there was none, so nothing merges them".to_string(),
        );
        return Ok(());
    };
    let st = http
        .put(
            &format!("{}/kv/cart?w=all", urls[N3]),
            "milk,eggs",
            Some(&ctx),
        )
        .await?;
    let (st2, body, _) = http.get(&format!("{}/kv/cart?r=all", urls[N1])).await?;
    let merged = text(&body);
    say(&format!(
        "the client merges them and writes \"milk,eggs\" with the context it read: {st}; GET: {st2} {merged}"
    ));
    story.check(
        "the merged write leaves one value: 200 milk,eggs",
        acknowledged(st) && st2 == 200 && merged == "milk,eggs",
        || format!("the write answered {st}, the read {st2} {merged}"),
    );
    Ok(())
}

/// Blind writes of "milk" on n1 and "eggs" on n2, read on n3; the context of a 300 answer.
async fn write_siblings(
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<Option<String>> {
    let st_a = http
        .put(&format!("{}/kv/cart?w=all", urls[N1]), "milk", None)
        .await?;
    let st_b = http
        .put(&format!("{}/kv/cart?w=all", urls[N2]), "eggs", None)
        .await?;
    let (st, body, _) = http.get(&format!("{}/kv/cart?r=all", urls[N3])).await?;
    let answer = text(&body);
    say(&format!(
        "blind PUT cart = \"milk\" on n1: {st_a}, \"eggs\" on n2: {st_b}; GET on n3: {st} {answer}"
    ));
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut siblings: Vec<&str> = v["siblings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    siblings.sort_unstable();
    story.check(
        "a read answers 300 with the siblings \"milk\" and \"eggs\"",
        st == 300 && siblings == ["eggs", "milk"],
        || format!("it answered {st} {answer}"),
    );
    Ok((st == 300)
        .then(|| v["context"].as_str().map(str::to_string))
        .flatten())
}

/// Step 5: the same two blind writes in the `lww` bucket: one wins, the other is gone.
async fn lose_a_write_to_lww(
    http: &Http,
    urls: &[String],
    story: &mut Story,
) -> anyhow::Result<()> {
    story.step(
        5,
        "The same under last-write-wins loses a write",
        "the same two blind writes in the bucket `lww` are both acknowledged, but only the \
         later one, n2's \"eggs\" (its clock has seen n1's write), survives on every replica",
    );
    let st_a = http
        .put(
            &format!("{}/buckets/lww/kv/cart?w=all", urls[N1]),
            "milk",
            None,
        )
        .await?;
    let st_b = http
        .put(
            &format!("{}/buckets/lww/kv/cart?w=all", urls[N2]),
            "eggs",
            None,
        )
        .await?;
    story.check(
        "both writes are acknowledged",
        acknowledged(st_a) && acknowledged(st_b),
        || format!("\"milk\" on n1 answered {st_a}, \"eggs\" on n2 {st_b}"),
    );
    let (st, body, _) = http
        .get(&format!("{}/buckets/lww/kv/cart?r=all", urls[N3]))
        .await?;
    let kept = text(&body);
    let what = match (st, kept.as_str()) {
        (200, "eggs") => {
            " The write of \"milk\" was acknowledged and is gone: the later timestamp won, the \
             other was discarded without a trace."
        }
        (200, "milk") => {
            " The write of \"eggs\" was acknowledged and is gone: the earlier write won, the \
             later one was discarded."
        }
        _ => "",
    };
    say(&format!(
        "bucket `lww`: the same two blind writes; GET on n3: {st} {kept:?}.{what}"
    ));
    story.check(
        "a read answers the later write alone: 200 \"eggs\"",
        st == 200 && kept == "eggs",
        || format!("it answered {st} {kept:?}"),
    );
    let replicas = http.replicas(&urls[N1], "/buckets/lww/kv/cart").await?;
    say(&format!("  each replica's copy: {}", show(&replicas)));
    story.check(
        "every replica holds \"eggs\" alone",
        every_replica_holds(&replicas, &["eggs"]),
        || show(&replicas),
    );
    Ok(())
}

/// Step 6: increments sent through every node at once; every node reads their sum.
async fn converge_a_counter(http: &Http, urls: &[String], story: &mut Story) -> anyhow::Result<()> {
    let total = INCREMENTS_PER_NODE * urls.len() as i64;
    story.step(
        6,
        "A counter incremented on all three nodes converges to the sum",
        &format!(
            "{INCREMENTS_PER_NODE} increments through each node at once are all acknowledged, \
             and every node reads their sum, {total}"
        ),
    );
    let refused = increment_on_every_node(http, urls).await?;
    story.check(
        "every increment is acknowledged",
        refused.is_empty(),
        || format!("refused: {refused:?}"),
    );
    let t0 = Instant::now();
    let read_all = || async {
        let mut all = Vec::new();
        for url in urls {
            all.push(
                http.json(&format!("{url}/counters/visits")).await?["value"]
                    .as_i64()
                    .unwrap_or(-1),
            );
        }
        anyhow::Ok(all)
    };
    let sums = poll(COUNTER_WAIT, || async {
        let all = read_all().await?;
        Ok(all.iter().all(|v| *v == total).then_some(all))
    })
    .await?;
    if let Some(sums) = &sums {
        say(&format!(
            "{INCREMENTS_PER_NODE} increments on each node at once; every node reads {sums:?} ({:.0} ms after the last): \
             per-node entries, merged, never lost",
            millis_since(t0)
        ));
    }
    let now = read_all().await?;
    story.check(
        &format!(
            "every node reads {total} within {} s",
            COUNTER_WAIT.as_secs()
        ),
        sums.is_some(),
        || format!("the nodes read {now:?}"),
    );
    Ok(())
}

/// `INCREMENTS_PER_NODE` increments of the counter `visits` through each node, concurrently;
/// the statuses of those not acknowledged.
async fn increment_on_every_node(http: &Http, urls: &[String]) -> anyhow::Result<Vec<u16>> {
    let mut tasks = Vec::new();
    for url in urls {
        let client = http.client.clone();
        let url = format!("{url}/counters/visits");
        tasks.push(tokio::spawn(async move {
            let mut refused = Vec::new();
            for _ in 0..INCREMENTS_PER_NODE {
                let st = client
                    .post(&url)
                    .json(&json!({"delta": 1}))
                    .send()
                    .await?
                    .status()
                    .as_u16();
                if !acknowledged(st) {
                    refused.push(st);
                }
            }
            anyhow::Ok(refused)
        }));
    }
    let mut refused = Vec::new();
    for t in tasks {
        refused.extend(t.await??);
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_that_did_not_hold_is_kept_with_what_happened_instead() {
        let mut story = Story::default();
        story.step(3, "A stale read", "a stale read");
        assert!(story.check("a stale read", true, || unreachable!()));
        assert!(story.differed.is_empty());
        assert!(!story.check("a stale read", false, || "200 \"new\"".to_string()));
        assert_eq!(
            story.differed,
            ["step 3: expected a stale read; instead 200 \"new\""]
        );
    }

    #[test]
    fn every_replica_must_hold_exactly_the_values_wanted() {
        let replica = |values: Option<&[&str]>| {
            (
                "n1".to_string(),
                values.map(|v| v.iter().map(|s| s.to_string()).collect()),
                false,
            )
        };
        let both = [
            replica(Some(&["milk", "eggs"])),
            replica(Some(&["eggs", "milk"])),
        ];
        assert!(every_replica_holds(&both, &["eggs", "milk"]));
        assert!(!every_replica_holds(&both, &["eggs"]));
        assert!(!every_replica_holds(
            &[replica(Some(&["eggs"])), replica(None)],
            &["eggs"]
        ));
        assert!(!every_replica_holds(&[], &["eggs"]));
    }
}
