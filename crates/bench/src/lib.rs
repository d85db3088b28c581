//! `driftkv bench`: a load generator in the line of redis-benchmark, cassandra-stress and
//! YCSB. It drives one node or a cluster over RESP or HTTP with YCSB's core workloads, closed
//! loop (clients x pipeline) or open loop at a total rate with each request timed from its
//! intended start (no coordinated omission, as wrk2), and reports throughput and latency
//! percentiles (HdrHistogram), as text or one JSON object.
//!
//! Layers: `args` (flags, checked into a `Plan`), `workload` + `zipf` + `rng` (what each
//! request does), `schedule` (the open loop's timetable), `resp` and `http` (each protocol's
//! bytes, sans-io), `client` (one connection and its loop: the only socket code), `stats`
//! (counts and histograms), `report` (progress line and summary).
//!
//! Measuring: one task per client on a single-threaded runtime by default (`--threads`), like
//! redis-benchmark, so the node keeps the machine's other cores; buffers are reused, nothing
//! is allocated per request. Timers tick in milliseconds: in the open loop a request may
//! leave up to a millisecond after its intended start, and that delay is in its latency.

#![forbid(unsafe_code)]

pub mod args;
pub mod client;
pub mod http;
pub mod report;
pub mod resp;
pub mod rng;
pub mod schedule;
pub mod stats;
pub mod workload;
pub mod zipf;

use std::io::Write;
use std::sync::Arc;

use tokio::time::Instant;

pub use args::{BenchArgs, Plan};
pub use report::Report;

use client::{Client, ConnectError, Endpoint};
use rng::Rng;
use schedule::{Amount, Schedule};
use stats::Shared;
use workload::{Chooser, Keys};
use zipf::Zipf;

/// Why a run did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The flags are wrong; nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// A node could not be connected to before the run; nothing was measured.
    #[error("cannot reach {0}")]
    Unreachable(String),
    /// A node refused the credentials (or asked for some) before the run.
    #[error("the node refused the credentials: {0} (--user NAME --password PASSWORD)")]
    Refused(String),
    #[error("cannot start the client's runtime: {0}")]
    Runtime(std::io::Error),
    /// A client's task ended abnormally: a bug in the bench.
    #[error("a client failed: {0}")]
    Client(String),
}

/// Runs `driftkv bench` with these flags: checks them, runs the load and prints the report
/// on stdout (the progress line goes to stderr).
pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let plan = args.plan()?;
    let mut builder = if plan.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(plan.threads);
        b
    };
    let runtime = builder.enable_all().build().map_err(BenchError::Runtime)?;
    let report = runtime.block_on(execute(&plan))?;
    // A closed stdout (`| head`) loses the report but is no reason to panic.
    let mut out = std::io::stdout().lock();
    let _ = if plan.json {
        writeln!(out, "{}", report.json())
    } else {
        write!(out, "{}", report.text())
    };
    let _ = out.flush();
    Ok(())
}

/// Runs the load of `plan` and measures it. Every client connects first (connection setup is
/// not measured, and an unreachable node or refused credentials stop the run before it
/// starts); then they all start together.
pub async fn execute(plan: &Plan) -> Result<Report, BenchError> {
    let endpoints: Vec<Arc<Endpoint>> = plan
        .nodes
        .iter()
        .map(|n| Arc::new(Endpoint::new(plan, n.clone())))
        .collect();
    let keys = match plan.zipf {
        Some(s) => Keys::Zipfian(Arc::new(
            Zipf::new(plan.keys, s).map_err(|e| BenchError::Usage(e.to_string()))?,
        )),
        None => Keys::Uniform(plan.keys),
    };
    let value: Arc<[u8]> = vec![b'x'; plan.value_bytes].into();
    let mut streams = Vec::with_capacity(plan.clients);
    for i in 0..plan.clients {
        let first_to_its_node = i < endpoints.len();
        let stream = endpoints[i % endpoints.len()]
            .connect(plan.timeout, first_to_its_node)
            .await
            .map_err(|e| match e {
                ConnectError::Unreachable(why) => BenchError::Unreachable(why),
                ConnectError::Refused(why) => BenchError::Refused(why),
            })?;
        streams.push(stream);
    }
    let unclaimed = match plan.amount {
        Amount::Requests(n) if plan.rate.is_none() => n,
        _ => 0,
    };
    let shared = Arc::new(Shared::new(unclaimed));
    // Every client is made (buffers, histogram) before the clock starts.
    let made = Instant::now();
    let clients: Vec<Client> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let chooser = Chooser::new(plan.workload, keys.clone(), Rng::new(plan.seed, i as u64));
            let endpoint = endpoints[i % endpoints.len()].clone();
            Client::new(
                endpoint,
                shared.clone(),
                chooser,
                value.clone(),
                plan,
                stream,
                made,
            )
        })
        .collect();
    let start = Instant::now();
    let progress = plan
        .progress
        .then(|| tokio::spawn(report::progress(shared.clone(), start)));
    let mut tasks = Vec::with_capacity(plan.clients);
    for (i, client) in clients.into_iter().enumerate() {
        tasks.push(match plan.rate {
            Some(rate) => {
                let schedule = Schedule::new(rate, plan.clients as u64, i as u64, plan.amount);
                tokio::spawn(client.run_open(schedule, start))
            }
            None => tokio::spawn(client.run_closed(plan.amount, start)),
        });
    }
    let mut failed = None;
    for t in tasks {
        if let Err(e) = t.await {
            failed.get_or_insert_with(|| e.to_string());
        }
    }
    let elapsed = start.elapsed();
    if let Some(p) = progress {
        p.abort();
        report::end_progress();
    }
    if let Some(why) = failed {
        return Err(BenchError::Client(why));
    }
    Ok(Report::new(plan, &shared, elapsed))
}
