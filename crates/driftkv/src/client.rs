//! `driftkv put|get|del|keys|watch|status`: a small client of the HTTP API.
//!
//! `get` prints the value on stdout and the causal context on stderr (`context: TOKEN`), so
//! `driftkv put KEY NEW --context TOKEN` can resolve siblings from a shell.

use anyhow::{Context, bail};
use clap::Args;
use driftkv_bench::http::segment;
use serde_json::Value;

/// How to reach a secured node: its CA and a user.
#[derive(Args, Clone, Default)]
pub struct Credentials {
    /// The cluster's CA certificate (`ca.pem` from `driftkv cert ca`), for `https://` nodes.
    #[arg(long, value_name = "FILE", env = "DRIFTKV_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// A user of the node's users file, as NAME:PASSWORD (or set DRIFTKV_USER).
    #[arg(
        long,
        value_name = "NAME:PASSWORD",
        env = "DRIFTKV_USER",
        hide_env_values = true
    )]
    pub user: Option<String>,
}

#[derive(Args)]
pub struct Target {
    /// A node's HTTP address (`https://...` for a node with TLS).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    node: String,
    /// The bucket (default: `default`).
    #[arg(long)]
    bucket: Option<String>,
    #[command(flatten)]
    credentials: Credentials,
}

#[derive(Args)]
pub struct PutArgs {
    key: String,
    value: String,
    #[command(flatten)]
    target: Target,
    /// Write quorum: one, quorum, all or a number.
    #[arg(short, long)]
    w: Option<String>,
    /// The context token a read gave (omit for a blind write).
    #[arg(long)]
    context: Option<String>,
    /// The value expires this many milliseconds after it is written (a TTL): every node then
    /// reads the key as missing.
    #[arg(long, value_name = "MS")]
    ttl_ms: Option<u64>,
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    target: Target,
    /// Only keys that start with this.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Keys asked for per page (the listing goes on until every page is read).
    #[arg(long, default_value_t = 1000)]
    page: u32,
}

#[derive(Args)]
pub struct WatchArgs {
    key: String,
    #[command(flatten)]
    target: Target,
    /// How long each wait for a change lasts before it is asked again, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Stop after this many changes (default: watch until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Args)]
pub struct GetArgs {
    key: String,
    #[command(flatten)]
    target: Target,
    /// Read quorum: one, quorum, all or a number.
    #[arg(short, long)]
    r: Option<String>,
    /// A session read: the context this client last got for the key (from a put or a get);
    /// the answer is that state or newer, or an error when no replica has caught up.
    #[arg(long, value_name = "TOKEN")]
    session: Option<String>,
}

#[derive(Args)]
pub struct DelArgs {
    key: String,
    #[command(flatten)]
    target: Target,
    #[arg(short, long)]
    w: Option<String>,
    #[arg(long)]
    context: Option<String>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// A node's HTTP address (`https://...` for a node with TLS).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    node: String,
    #[command(flatten)]
    credentials: Credentials,
    /// Print the cluster view as JSON (for scripts) instead of a table.
    #[arg(long)]
    json: bool,
}

/// ANSI colour for a member state, only when stdout is a terminal.
fn paint(state: &str, width: usize) -> String {
    use std::io::IsTerminal;
    let padded = format!("{state:<width$}");
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return padded;
    }
    let code = match state {
        "up" => "32",
        "suspect" => "33",
        "down" => "31",
        _ => "36",
    };
    format!("\x1b[{code}m{padded}\x1b[0m")
}

fn url(t: &Target, key: &str, level: Option<(&str, &Option<String>)>) -> String {
    let base = t.node.trim_end_matches('/');
    let path = match &t.bucket {
        Some(b) => format!("{base}/buckets/{}/kv/{}", segment(b), segment(key)),
        None => format!("{base}/kv/{}", segment(key)),
    };
    match level {
        Some((name, Some(v))) => format!("{path}?{name}={}", segment(v)),
        _ => path,
    }
}

/// An HTTP client for `node`: trusting the CA given (for `https://`), sending the user given.
pub fn client(node: &str, credentials: &Credentials) -> anyhow::Result<reqwest::Client> {
    client_waiting(node, credentials, std::time::Duration::from_secs(10))
}

/// [`client`] whose requests may take up to `timeout` (a watch waits on the node's side).
pub(crate) fn client_waiting(
    node: &str,
    credentials: &Credentials,
    timeout: std::time::Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().no_proxy().timeout(timeout);
    if let Some(ca) = &credentials.ca {
        let tls = driftkv_tls::client_config(ca).map_err(|e| anyhow::anyhow!("--ca: {e}"))?;
        builder = builder.use_preconfigured_tls(tls);
    } else if node.starts_with("https://") {
        bail!("an https:// node needs the cluster's CA certificate: --ca FILE (ca.pem)");
    }
    if let Some(user) = &credentials.user {
        use base64::Engine;
        if !user.contains(':') {
            bail!("--user takes NAME:PASSWORD");
        }
        let token = base64::engine::general_purpose::STANDARD.encode(user.as_bytes());
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {token}"))
            .context("--user is not valid in a header")?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    builder.build().context("cannot build an HTTP client")
}

pub(crate) async fn fail(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(body);
    anyhow::anyhow!("{status}: {message}")
}

fn print_context(resp: &reqwest::Response) {
    if let Some(ctx) = resp
        .headers()
        .get("x-causal-context")
        .and_then(|v| v.to_str().ok())
    {
        eprintln!("context: {ctx}");
    }
}

pub async fn put(a: PutArgs) -> anyhow::Result<()> {
    let mut url = url(&a.target, &a.key, Some(("w", &a.w)));
    if let Some(ttl) = a.ttl_ms {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("ttl_ms={ttl}"));
    }
    let mut req = client(&a.target.node, &a.target.credentials)?
        .put(url)
        .body(a.value);
    if let Some(ctx) = &a.context {
        req = req.header("X-Causal-Context", ctx);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {}", a.target.node))?;
    if !resp.status().is_success() {
        return Err(fail(resp).await);
    }
    print_context(&resp);
    Ok(())
}

pub async fn get(a: GetArgs) -> anyhow::Result<()> {
    let mut req = client(&a.target.node, &a.target.credentials)?.get(url(
        &a.target,
        &a.key,
        Some(("r", &a.r)),
    ));
    if let Some(token) = &a.session {
        req = req.header("X-Session-Token", token);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {}", a.target.node))?;
    match resp.status().as_u16() {
        200 => {
            print_context(&resp);
            let body = resp.bytes().await?;
            println!("{}", String::from_utf8_lossy(&body));
            Ok(())
        }
        300 => {
            print_context(&resp);
            let body: Value = resp.json().await?;
            let siblings = body["siblings"].as_array().cloned().unwrap_or_default();
            println!(
                "{} siblings (concurrent writes); write with the context to resolve:",
                siblings.len()
            );
            for s in siblings {
                println!("  {s}");
            }
            Ok(())
        }
        404 => bail!("{}: not found", a.key),
        _ => Err(fail(resp).await),
    }
}

pub async fn del(a: DelArgs) -> anyhow::Result<()> {
    let mut req = client(&a.target.node, &a.target.credentials)?.delete(url(
        &a.target,
        &a.key,
        Some(("w", &a.w)),
    ));
    if let Some(ctx) = &a.context {
        req = req.header("X-Causal-Context", ctx);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {}", a.target.node))?;
    if !resp.status().is_success() {
        return Err(fail(resp).await);
    }
    Ok(())
}

/// A key as the listing's JSON carries it: the string, or `base64:...` for other bytes.
fn shown_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => match other.get("base64").and_then(Value::as_str) {
            Some(b) => format!("base64:{b}"),
            None => other.to_string(),
        },
    }
}

/// `driftkv keys`: every live key of the bucket (with the prefix), one per line, page after
/// page across the cluster.
pub async fn keys(a: KeysArgs) -> anyhow::Result<()> {
    let base = a.target.node.trim_end_matches('/');
    let path = match &a.target.bucket {
        Some(b) => format!("{base}/buckets/{}/keys", segment(b)),
        None => format!("{base}/keys"),
    };
    let http = client(&a.target.node, &a.target.credentials)?;
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{path}?limit={}&prefix={}", a.page, segment(&a.prefix));
        if let Some(c) = &after {
            url.push_str(&format!("&after={}", segment(c)));
        }
        let resp = http
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", a.target.node))?;
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        let page: Value = resp.json().await?;
        for k in page["keys"].as_array().into_iter().flatten() {
            println!("{}", shown_key(k));
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return Ok(()),
        }
    }
}

/// `driftkv watch KEY`: prints the key's state, then each new state as writes through any
/// node change it (a line `(deleted)` when it goes), until interrupted or `--count` changes.
pub async fn watch(a: WatchArgs) -> anyhow::Result<()> {
    let wait = std::time::Duration::from_millis(a.timeout_ms);
    let http = client_waiting(
        &a.target.node,
        &a.target.credentials,
        wait + std::time::Duration::from_secs(10),
    )?;
    let key_url = url(&a.target, &a.key, None);
    let resp = http
        .get(&key_url)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", a.target.node))?;
    let mut context = show_state(resp).await?;
    let mut changes = 0;
    while a.count.is_none_or(|n| changes < n) {
        let mut req = http.get(format!("{key_url}/watch?timeout_ms={}", a.timeout_ms));
        if let Some(c) = &context {
            req = req.header("X-Causal-Context", c);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", a.target.node))?;
        if resp.status().as_u16() == 304 {
            continue;
        }
        context = show_state(resp).await?;
        changes += 1;
    }
    Ok(())
}

/// Prints a key's state from a read or a watch (value, siblings or `(deleted)`); returns its
/// context.
async fn show_state(resp: reqwest::Response) -> anyhow::Result<Option<String>> {
    let context = resp
        .headers()
        .get("x-causal-context")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match resp.status().as_u16() {
        200 => println!("{}", String::from_utf8_lossy(&resp.bytes().await?)),
        300 => {
            let body: Value = resp.json().await?;
            let siblings: Vec<String> = body["siblings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            println!("{} siblings: {}", siblings.len(), siblings.join(" | "));
        }
        404 => println!("(deleted)"),
        _ => return Err(fail(resp).await),
    }
    use std::io::Write;
    std::io::stdout().flush().ok();
    Ok(context)
}

pub async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let base = a.node.trim_end_matches('/');
    let resp = client(&a.node, &a.credentials)?
        .get(format!("{base}/cluster"))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", a.node))?;
    if !resp.status().is_success() {
        return Err(fail(resp).await);
    }
    let v: Value = resp.json().await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "node {}: n={}, {} partitions, {} hints waiting",
        v["node"].as_str().unwrap_or("?"),
        v["n"],
        v["partitions"],
        v["hints_pending"]
    );
    println!(
        "{:<12} {:<8} {:<22} {:<22} {:>10}",
        "member", "state", "listen", "http", "partitions"
    );
    for m in v["members"].as_array().into_iter().flatten() {
        println!(
            "{:<12} {} {:<22} {:<22} {:>10}",
            m["id"].as_str().unwrap_or("?"),
            paint(m["state"].as_str().unwrap_or("?"), 8),
            m["listen"].as_str().unwrap_or(""),
            m["http"].as_str().unwrap_or(""),
            m["partitions"]
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct LeaveArgs {
    /// The HTTP address of the node that leaves.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    node: String,
    #[command(flatten)]
    credentials: Credentials,
    /// Print the node's answer as JSON (for scripts).
    #[arg(long)]
    json: bool,
    /// Follow the handoff until the node has exited, showing its progress on stderr.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up (the node goes on leaving) after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// How often `leave --wait` looks at the leaving node again.
const LEAVE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(300);

async fn pause() {
    tokio::time::sleep(LEAVE_POLL_INTERVAL).await;
}

/// `POST {base}{path}` with an empty JSON body (what `/admin/*` changes take): the answer
/// when it is a success, else the node's error.
pub(crate) async fn admin_post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> anyhow::Result<reqwest::Response> {
    let resp = http
        .post(format!("{base}{path}"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body("{}")
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if !resp.status().is_success() {
        return Err(fail(resp).await);
    }
    Ok(resp)
}

pub async fn leave(a: LeaveArgs) -> anyhow::Result<()> {
    let base = a.node.trim_end_matches('/');
    let http = client(&a.node, &a.credentials)?;
    let resp = admin_post(&http, base, "/admin/leave").await?;
    if a.json {
        println!("{}", resp.text().await?);
    } else {
        println!("the node is leaving: it hands its partitions to their new owners, then exits");
    }
    if !a.wait {
        return Ok(());
    }
    follow_leave(&http, base, a.timeout_s).await
}

/// `leave --wait`: shows the leaving node's handoff on stderr until the node exits, or gives
/// up after `timeout_s` seconds.
async fn follow_leave(http: &reqwest::Client, base: &str, timeout_s: u64) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    // Progress: on a terminal one line redrawn in place; otherwise a line per change.
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let deadline = std::time::Duration::from_secs(timeout_s);
    let mut last = String::new();
    loop {
        let view = match http.get(format!("{base}/cluster")).send().await {
            Ok(r) => r.json::<Value>().await.ok(),
            // The node stopped answering: it finished and exited.
            Err(e) if e.is_connect() => None,
            // Mid-shutdown (a reset, a timeout): look again, within the deadline.
            Err(_) if started.elapsed() < deadline => {
                pause().await;
                continue;
            }
            Err(e) => return Err(e).context("following the leave"),
        };
        let Some(v) = view else {
            if terminal {
                eprintln!();
            }
            println!(
                "the node handed everything off and exited after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        };
        let line = handoff_progress(&v);
        if terminal {
            eprint!("\r{line}\x1b[K");
            let _ = std::io::stderr().flush();
        } else if line != last {
            eprintln!("{line}");
        }
        last = line;
        if started.elapsed() >= deadline {
            if terminal {
                eprintln!();
            }
            bail!(
                "the node is still leaving after {timeout_s} s (it goes on; follow it with driftkv status)"
            );
        }
        pause().await;
    }
}

/// One line of a leaving node's progress, from its `/cluster` view.
fn handoff_progress(view: &Value) -> String {
    format!(
        "leaving: {} partitions still to hand off, {} keys handed over, {} hints waiting",
        view["handoff"]["partitions_to_transfer"],
        view["handoff"]["keys_transferred"],
        view["hints_pending"]
    )
}
