//! `driftkv demo`: three real local nodes, narrated.

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the cluster running after the walk-through, until Ctrl-C.
    #[arg(long)]
    stay: bool,
}

pub async fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
