//! `driftkv demo`: starts three real nodes on free loopback ports with temporary data, then
//! narrates eventual consistency with real HTTP requests: replication and convergence, a node
//! down and catching up, siblings resolved with a context, what `lww` loses, and a counter
//! updated on every node. Everything it prints was measured in this run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// How many nodes the demo runs: n1, n2 and n3.
const NODE_COUNT: usize = 3;
/// Where n1, n2 and n3 sit in `Nodes` and in the list of their URLs.
const N1: usize = 0;
const N2: usize = 1;
const N3: usize = 2;
/// Each node binds two ports: node-to-node, then HTTP.
const PORTS_PER_NODE: usize = 2;
/// The cluster's config file: the `lww` bucket of step 4 resolves by last write wins.
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
/// How long n3 has to answer `/health` after its restart (step 2).
const RESTART_WAIT: Duration = Duration::from_secs(20);
/// How long a refused session read is retried (step 2).
const SESSION_READ_WAIT: Duration = Duration::from_secs(30);
/// How long n3 has to receive the write it missed (step 2).
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// How long n1 and n2 have to see n3 up again (step 2).
const REJOIN_WAIT: Duration = Duration::from_secs(15);
/// How long the counter has to converge on every node (step 5).
const COUNTER_WAIT: Duration = Duration::from_secs(10);
/// Increments sent through each node (step 5).
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

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
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
    if let Err(e) = walk_through(&mut nodes, &http, dir.path()).await {
        keep_logs(&nodes, dir, &e);
        return Err(e);
    }
    if args.stay {
        stay_until_ctrl_c(&nodes).await?;
    }
    drop(nodes);
    say("\nStopped the three nodes and removed their data.");
    Ok(())
}

/// After a failed walk-through: says why and where the nodes' logs are, and keeps them.
fn keep_logs(nodes: &Nodes, dir: tempfile::TempDir, e: &anyhow::Error) {
    eprintln!("\nthe demo stopped: {e:#}");
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

async fn walk_through(nodes: &mut Nodes, http: &Http, dir: &Path) -> anyhow::Result<()> {
    say("driftkv demo: three nodes on this machine, every number below measured now.");
    say(&format!("(data and logs under {})", dir.display()));
    let urls = start_cluster(nodes, http).await?;
    replicate_a_write(http, &urls).await?;
    survive_a_node_down(nodes, http, &urls).await?;
    resolve_siblings(http, &urls).await?;
    lose_a_write_to_lww(http, &urls).await?;
    converge_a_counter(http, &urls).await?;
    say(
        "\nDone: replication, a stale replica caught up, siblings resolved, an LWW loss shown, a converged counter.",
    );
    Ok(())
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
async fn replicate_a_write(http: &Http, urls: &[String]) -> anyhow::Result<()> {
    step(1, "A write on n1, replicated asynchronously");
    let t0 = Instant::now();
    let st = http
        .put(&format!("{}/kv/greeting?w=one", urls[N1]), "hello", None)
        .await?;
    say(&format!(
        "PUT /kv/greeting = \"hello\" on n1 with w=one: {st} after {:.1} ms (n1 alone acknowledged)",
        millis_since(t0)
    ));
    let first = http.replicas(&urls[N1], "/kv/greeting").await?;
    say(&format!(
        "  each replica's own copy right away: {}",
        show(&first)
    ));
    let converged =
        until_every_replica_holds(http, &urls[N1], "/kv/greeting", "hello", REPLICATION_WAIT)
            .await?
            .with_context(|| {
                format!(
                    "the write did not reach all three replicas in {} s",
                    REPLICATION_WAIT.as_secs()
                )
            })?;
    say(&format!(
        "  all three replicas hold it {:.1} ms after the write: {}",
        millis_since(t0),
        show(&converged)
    ));
    say(
        "  (on loopback the inconsistency window is tiny; `driftkv sim` stretches the network to measure it)",
    );
    Ok(())
}

/// Step 2: n3 dies, writes go on without it (w=quorum, not w=all), and once restarted it
/// first answers stale, a session read refuses to, and hinted handoff catches it up.
async fn survive_a_node_down(
    nodes: &mut Nodes,
    http: &Http,
    urls: &[String],
) -> anyhow::Result<()> {
    step(
        2,
        "A node goes down; writes go on; it comes back and catches up",
    );
    kill_n3(nodes, http, urls).await?;
    let written = write_while_n3_is_down(http, urls).await?;
    let t_back = restart_n3_and_read_at_once(nodes, http, urls).await?;
    if let Some(token) = written {
        session_read_on_n3(http, urls, &token).await?;
    }
    n3_catches_up(http, urls, t_back).await
}

/// n3 is killed without warning; says how soon gossip on n1 noticed.
async fn kill_n3(nodes: &mut Nodes, http: &Http, urls: &[String]) -> anyhow::Result<()> {
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
    Ok(())
}

/// An overwrite at w=quorum succeeds with n3 down, one at w=all is refused; the context the
/// overwrite answered, for a session read later.
async fn write_while_n3_is_down(http: &Http, urls: &[String]) -> anyhow::Result<Option<String>> {
    // An overwrite names what it replaces: the context of a read.
    let (_, _, ctx) = http.get(&format!("{}/kv/greeting", urls[N1])).await?;
    let (st, _, written) = http
        .call(
            reqwest::Method::PUT,
            &format!("{}/kv/greeting?w=quorum", urls[N1]),
            Some(b"hello again".to_vec()),
            ctx.as_deref(),
        )
        .await?;
    let read = http.get(&format!("{}/kv/greeting", urls[N2])).await?;
    say(&format!(
        "PUT greeting = \"hello again\" (with the context of a read) and w=quorum while n3 is down: {st}; \
         a read on n2 answers {} {:?}",
        read.0,
        String::from_utf8_lossy(&read.1)
    ));
    let st_all = http
        .put(&format!("{}/kv/other?w=all", urls[N1]), "x", None)
        .await?;
    say(&format!(
        "  the same with w=all cannot gather 3 acknowledgements: {st_all} (refused, not hung)"
    ));
    say(&format!(
        "  replicas now: {}",
        show(&http.replicas(&urls[N1], "/kv/greeting").await?)
    ));
    Ok(written)
}

/// Restarts n3 from its data and reads there at once with r=one: stale, unless the missed
/// write already arrived; when the restart began.
async fn restart_n3_and_read_at_once(
    nodes: &mut Nodes,
    http: &Http,
    urls: &[String],
) -> anyhow::Result<Instant> {
    let t_back = Instant::now();
    nodes.start(N3)?;
    let back = poll(RESTART_WAIT, || async {
        Ok(http
            .json(&format!("{}/health", urls[N3]))
            .await
            .ok()
            .map(|_| ()))
    })
    .await?;
    if back.is_none() {
        bail!("n3 did not restart within {} s", RESTART_WAIT.as_secs());
    }
    let (st, body, _) = http.get(&format!("{}/kv/greeting?r=one", urls[N3])).await?;
    let seen = String::from_utf8_lossy(&body).to_string();
    say(&format!(
        "restarted n3 from its data directory; a read on n3 with r=one at once: {st} {seen:?}{}",
        if seen == "hello" {
            " -- a STALE read: n3 answered from its own copy, which missed the write"
        } else {
            " (the missed write already reached it)"
        }
    ));
    Ok(t_back)
}

/// The same read on n3 as a session read (the write's context as `X-Session-Token`): it
/// answers the session's write or refuses, and is retried until it answers.
async fn session_read_on_n3(http: &Http, urls: &[String], token: &str) -> anyhow::Result<()> {
    let url = format!("{}/kv/greeting?r=one", urls[N3]);
    let t_session = Instant::now();
    let (st, value) = http.session_get(&url, token).await?;
    if st == 200 {
        say(&format!(
            "  the same read as a session read (X-Session-Token = the context the write \
             answered): {st} {value:?} -- never older than the session's own write"
        ));
        return Ok(());
    }
    let why = serde_json::from_str::<Value>(&value)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or(value);
    say(&format!(
        "  the same read as a session read (X-Session-Token = the context the write \
         answered): {st}, refused rather than go back in time: {why}"
    ));
    let answered = poll(SESSION_READ_WAIT, || async {
        let (st, value) = http.session_get(&url, token).await?;
        Ok((st == 200).then_some(value))
    })
    .await?
    .with_context(|| {
        format!(
            "the session read never succeeded within {} s",
            SESSION_READ_WAIT.as_secs()
        )
    })?;
    say(&format!(
        "  retried until it answered: 200 {answered:?} after {:.0} ms",
        millis_since(t_session)
    ));
    Ok(())
}

/// Waits until every replica, n3 included, holds the write n3 missed, then until n1 and n2
/// both see n3 up again.
async fn n3_catches_up(http: &Http, urls: &[String], t_back: Instant) -> anyhow::Result<()> {
    let caught = until_every_replica_holds(
        http,
        &urls[N1],
        "/kv/greeting",
        "hello again",
        CATCH_UP_WAIT,
    )
    .await?
    .with_context(|| format!("n3 did not catch up within {} s", CATCH_UP_WAIT.as_secs()))?;
    say(&format!(
        "  n3 caught up {:.1} s after restarting, through hinted handoff: {}",
        t_back.elapsed().as_secs_f64(),
        show(&caught)
    ));
    poll(REJOIN_WAIT, || async {
        Ok((members_up(http, &urls[N1]).await?.len() == NODE_COUNT
            && members_up(http, &urls[N2]).await?.len() == NODE_COUNT)
            .then_some(()))
    })
    .await?
    .context("the cluster did not see n3 up again")?;
    Ok(())
}

/// Step 3: two blind writes on different nodes are kept side by side, then merged by a write
/// carrying the context of the read that saw both.
async fn resolve_siblings(http: &Http, urls: &[String]) -> anyhow::Result<()> {
    step(3, "Two concurrent writes without context become siblings");
    let ctx = write_siblings(http, urls).await?;
    say(&format!(
        "  every replica keeps both: {}",
        show(&http.replicas(&urls[N1], "/kv/cart").await?)
    ));
    let st = http
        .put(
            &format!("{}/kv/cart?w=all", urls[N3]),
            "milk,eggs",
            Some(&ctx),
        )
        .await?;
    let (st2, body, _) = http.get(&format!("{}/kv/cart?r=all", urls[N1])).await?;
    say(&format!(
        "the client merges them and writes \"milk,eggs\" with the context it read: {st}; GET: {st2} {}",
        String::from_utf8_lossy(&body)
    ));
    Ok(())
}

/// Blind writes of "milk" on n1 and "eggs" on n2, read on n3 as siblings (300); the context
/// that read answered.
async fn write_siblings(http: &Http, urls: &[String]) -> anyhow::Result<String> {
    http.put(&format!("{}/kv/cart?w=all", urls[N1]), "milk", None)
        .await?;
    http.put(&format!("{}/kv/cart?w=all", urls[N2]), "eggs", None)
        .await?;
    let (st, body, _) = http.get(&format!("{}/kv/cart?r=all", urls[N3])).await?;
    say(&format!(
        "blind PUT cart = \"milk\" on n1 and \"eggs\" on n2; GET on n3: {st} {}",
        String::from_utf8_lossy(&body)
    ));
    if st != 300 {
        bail!("expected 300 siblings, got {st}");
    }
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v["context"]
        .as_str()
        .context("no context in the 300 answer")?
        .to_string())
}

/// Step 4: the same two blind writes in the `lww` bucket: one wins, the other is gone.
async fn lose_a_write_to_lww(http: &Http, urls: &[String]) -> anyhow::Result<()> {
    step(4, "The same under last-write-wins loses a write");
    http.put(
        &format!("{}/buckets/lww/kv/cart?w=all", urls[N1]),
        "milk",
        None,
    )
    .await?;
    http.put(
        &format!("{}/buckets/lww/kv/cart?w=all", urls[N2]),
        "eggs",
        None,
    )
    .await?;
    let (st, body, _) = http
        .get(&format!("{}/buckets/lww/kv/cart?r=all", urls[N3]))
        .await?;
    let kept = String::from_utf8_lossy(&body).to_string();
    let lost = if kept == "milk" { "eggs" } else { "milk" };
    say(&format!(
        "bucket `lww`: the same two blind writes; GET: {st} {kept:?}. The write of {lost:?} was acknowledged and is gone: \
         the later timestamp won, the other was discarded without a trace."
    ));
    Ok(())
}

/// Step 5: increments sent through every node at once; every node reads their sum.
async fn converge_a_counter(http: &Http, urls: &[String]) -> anyhow::Result<()> {
    step(
        5,
        "A counter incremented on all three nodes converges to the sum",
    );
    increment_on_every_node(http, urls).await?;
    let total = INCREMENTS_PER_NODE * urls.len() as i64;
    let t0 = Instant::now();
    let sums = poll(COUNTER_WAIT, || async {
        let mut all = Vec::new();
        for url in urls {
            all.push(
                http.json(&format!("{url}/counters/visits")).await?["value"]
                    .as_i64()
                    .unwrap_or(-1),
            );
        }
        Ok(all.iter().all(|v| *v == total).then_some(all))
    })
    .await?
    .with_context(|| format!("the counter did not converge to {total}"))?;
    say(&format!(
        "{INCREMENTS_PER_NODE} increments on each node at once; every node reads {:?} ({:.0} ms after the last): per-node entries, merged, never lost",
        sums,
        millis_since(t0)
    ));
    Ok(())
}

/// `INCREMENTS_PER_NODE` increments of the counter `visits` through each node, concurrently.
async fn increment_on_every_node(http: &Http, urls: &[String]) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for url in urls {
        let client = http.client.clone();
        let url = format!("{url}/counters/visits");
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS_PER_NODE {
                client.post(&url).json(&json!({"delta": 1})).send().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
