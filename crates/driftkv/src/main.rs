//! The `driftkv` binary: subcommands over the library crates.

mod demo;

use clap::{Parser, Subcommand};

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
    /// Walks through replication, stale reads, a down node, siblings, LWW and counters on a
    /// three-node cluster, narrating each step.
    Demo,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo => demo::run(&mut std::io::stdout()),
    }
}
