//! The `driftkv` binary: subcommands over the library crates.

#![forbid(unsafe_code)]

/// mimalloc (see the alloc crate): the simulator and the node allocate small, short-lived
/// objects on every message; it runs them measurably faster than the system allocator.
#[global_allocator]
static ALLOCATOR: driftkv_alloc::Allocator = driftkv_alloc::Allocator;

mod backup;
mod client;
mod demo;
mod logs;
mod sim;
mod tour;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use driftkv_server::{FileConfig, ServerConfig};

#[derive(Parser)]
#[command(
    name = "driftkv",
    version,
    about = "An eventually consistent key-value store with a consistency lab"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one node of a cluster.
    Node(NodeArgs),
    /// Starts three local nodes and walks through replication, stale reads, a down node,
    /// siblings, LWW and counters with real requests.
    Demo(demo::DemoArgs),
    /// The demo's story told in-process and instantly (no sockets, no files).
    Tour,
    /// Writes a value: `driftkv put KEY VALUE`.
    Put(client::PutArgs),
    /// Reads a key: prints its value, or its siblings.
    Get(client::GetArgs),
    /// Deletes a key (writes a tombstone).
    Del(client::DelArgs),
    /// Lists the live keys of a bucket across the cluster, one per line.
    Keys(client::KeysArgs),
    /// Prints a key's value, then each new value as writes through any node change it.
    Watch(client::WatchArgs),
    /// Shows the cluster as one node sees it.
    Status(client::StatusArgs),
    /// Runs the deterministic simulator (the consistency lab) on a scenario file and writes a
    /// report: text, JSON and SVG plots.
    Sim(sim::SimArgs),
    /// Makes a node leave the cluster: it hands its partitions to their new owners, then exits.
    Leave(client::LeaveArgs),
    /// Takes a member that is down out of the cluster for good: `driftkv remove ID`. Its
    /// partitions go to the others, which anti-entropy refills. Refused while it is up.
    Remove(backup::RemoveArgs),
    /// Writes every key of the cluster, with its siblings, context, counter, set or map, to one
    /// file: `driftkv backup --out FILE`.
    Backup(backup::BackupArgs),
    /// Merges a backup into the cluster (newer state survives; running it twice changes
    /// nothing): `driftkv restore FILE`.
    Restore(backup::RestoreArgs),
    /// Makes the cluster's certificates: `cert ca --dir DIR`, then `cert node --dir DIR --id ID`
    /// for each node.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Drives nodes with a YCSB workload over RESP or HTTP and reports throughput and latency.
    Bench(driftkv_bench::BenchArgs),
}

#[derive(Subcommand)]
enum CertCommand {
    /// Writes a new cluster CA: DIR/ca.pem (for every node and client) and DIR/ca.key (keep it
    /// where certificates are made).
    Ca {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Writes DIR/ID.pem and DIR/ID.key, signed by the CA in DIR, valid for the node id, each
    /// --host, 127.0.0.1 and localhost.
    Node {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: String,
        /// A DNS name or IP address clients use to reach the node; repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

fn cert(command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Ca { dir } => {
            let path = driftkv_tls::write_ca(&dir)?;
            println!(
                "wrote {} and {} (keep ca.key off the nodes)",
                path.display(),
                dir.join(driftkv_tls::CA_KEY_FILE).display()
            );
        }
        CertCommand::Node { dir, id, hosts } => {
            let (pem, key) = driftkv_tls::write_node(&dir, &id, &hosts)?;
            println!(
                "wrote {} and {}: give the node these and ca.pem (--tls-dir)",
                pem.display(),
                key.display()
            );
        }
    }
    Ok(())
}

#[derive(Args)]
struct NodeArgs {
    /// A TOML file with any of the settings below (flags override it), and `[buckets.NAME]`
    /// tables with `mode = "siblings"|"lww"`, `write_path = "replica"|"direct"` (lww only),
    /// `n`, `r`, `w`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's name, unique in the cluster.
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Node-to-node address (default 127.0.0.1:7070).
    #[arg(long)]
    listen: Option<String>,
    /// HTTP API address (default 127.0.0.1:8080).
    #[arg(long)]
    http: Option<String>,
    /// Redis-protocol address (optional).
    #[arg(long)]
    resp: Option<String>,
    /// Any existing member's node-to-node address; repeatable.
    #[arg(long)]
    join: Vec<String>,
    /// Replicas per key (cluster default).
    #[arg(long)]
    n: Option<usize>,
    /// Default read quorum: one, quorum, all or a number.
    #[arg(long)]
    r: Option<String>,
    /// Default write quorum: one, quorum, all or a number.
    #[arg(long)]
    w: Option<String>,
    /// Cluster name; nodes of other clusters are refused.
    #[arg(long)]
    cluster: Option<String>,
    /// every-write, group-commit (default) or none.
    #[arg(long)]
    durability: Option<String>,
    /// Partitions of the ring (default 64); the same on every node.
    #[arg(long)]
    partitions: Option<u32>,
    /// Enables the dashboard's lab controls (cut this node off, heal it): demo clusters only.
    #[arg(long)]
    lab: bool,
    /// A directory holding ca.pem, ID.pem and ID.key (`driftkv cert`): mutual TLS between
    /// nodes, TLS on HTTP and RESP.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// A TOML file of users (`[users.NAME]` with `password` and `role` read|write|admin):
    /// clients must authenticate.
    #[arg(long)]
    users: Option<PathBuf>,
    /// Serve on addresses other than loopback without TLS and users (unprotected).
    #[arg(long)]
    insecure: bool,
}

impl NodeArgs {
    fn config(self) -> anyhow::Result<ServerConfig> {
        let mut f = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                FileConfig::parse(&text).map_err(anyhow::Error::msg)?
            }
            None => FileConfig::default(),
        };
        macro_rules! take {
            ($($field:ident),*) => { $( if self.$field.is_some() { f.$field = self.$field; } )* };
        }
        take!(
            id, data_dir, listen, http, resp, n, r, w, cluster, durability, partitions, tls_dir,
            users
        );
        if self.insecure {
            f.insecure = Some(true);
        }
        if !self.join.is_empty() {
            f.join = self.join;
        }
        if self.lab {
            f.lab = Some(true);
        }
        ServerConfig::from_file(f).map_err(anyhow::Error::msg)
    }
}

/// Runs a node until it leaves, fails or is told to stop. SIGTERM (what supervisors send) and
/// SIGINT stop it gracefully and exit 0; a second signal during the stop exits at once with
/// 130. A panicked node thread exits 70.
async fn run_node(cfg: ServerConfig) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
    let mut running = driftkv_server::start(cfg).await?;
    let why = tokio::select! {
        _ = &mut running.done => {
            tracing::error!("the HTTP server stopped: stopping the node");
            if let Err(why) = running.stop().await {
                panicked(&why);
            }
            anyhow::bail!("the HTTP server stopped");
        }
        _ = &mut running.left => return Ok(()),
        Ok(why) = &mut running.failed => panicked(&why),
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!("{why}: stopping gracefully (a second signal stops at once)");
    tokio::select! {
        stopped = running.stop() => match stopped {
            Ok(()) => Ok(()),
            Err(why) => panicked(&why),
        },
        _ = terminate.recv() => stop_now(),
        _ = interrupt.recv() => stop_now(),
    }
}

fn panicked(why: &str) -> ! {
    tracing::error!("the node thread panicked ({why}): a bug; exiting");
    std::process::exit(70);
}

fn stop_now() -> ! {
    tracing::warn!("a second signal: exiting without finishing the stop");
    std::process::exit(130);
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    driftkv_tls::install_default_provider();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    match cli.command {
        Command::Node(args) => {
            let cfg = args.config()?;
            logs::install(cfg.core.id.as_str(), logs::Format::from_env()?);
            runtime()?.block_on(run_node(cfg))
        }
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::Tour => tour::run(&mut std::io::stdout()),
        Command::Put(a) => runtime()?.block_on(client::put(a)),
        Command::Get(a) => runtime()?.block_on(client::get(a)),
        Command::Del(a) => runtime()?.block_on(client::del(a)),
        Command::Keys(a) => runtime()?.block_on(client::keys(a)),
        Command::Watch(a) => runtime()?.block_on(client::watch(a)),
        Command::Status(a) => runtime()?.block_on(client::status(a)),
        Command::Sim(a) => sim::run(a),
        Command::Leave(a) => runtime()?.block_on(client::leave(a)),
        Command::Remove(a) => runtime()?.block_on(backup::remove(a)),
        Command::Backup(a) => runtime()?.block_on(backup::backup(a)),
        Command::Restore(a) => runtime()?.block_on(backup::restore(a)),
        Command::Cert(c) => cert(c),
        Command::Bench(a) => Ok(driftkv_bench::run(&a)?),
    }
}
