//! `driftkv bench`'s flags (clap) and their check into a [`Plan`]: every mistake is a clear
//! message before any connection is made, and every amount has a named bound.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::ArgGroup;

use crate::BenchError;
use crate::schedule::Amount;
use crate::workload::{KEYS_MAX, Workload};

/// Clients at most (each holds a connection and a latency histogram of about 200 KB).
pub const CLIENTS_MAX: usize = 1024;
/// Requests one client keeps in flight at most.
pub const PIPELINE_MAX: usize = 1024;
/// Requests of one run at most.
pub const REQUESTS_MAX: u64 = 1_000_000_000_000;
/// Seconds of one run at most (a day).
pub const DURATION_S_MAX: f64 = 86_400.0;
/// The open loop's rate, requests per second in all, at least and at most.
pub const RATE_MIN: f64 = 0.01;
pub const RATE_MAX: f64 = 100_000_000.0;
/// Bytes of the value every write sends, at most (a node's own ceiling).
pub const VALUE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Value bytes in flight at once (clients x pipeline x value) at most: the client's memory.
pub const IN_FLIGHT_BYTES_MAX: usize = 1024 * 1024 * 1024;
/// Runtime threads at most.
pub const THREADS_MAX: usize = 64;
/// A request's timeout at most (an hour) and unless told otherwise.
pub const TIMEOUT_MS_MAX: u64 = 3_600_000;
pub const TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Requests of a run given neither `--requests` nor `--duration-s` (redis-benchmark's `-n`).
pub const REQUESTS_DEFAULT: u64 = 100_000;

/// Drives a node or a cluster with a YCSB workload over RESP or HTTP and reports throughput
/// and latency percentiles.
#[derive(clap::Args, Debug, Clone)]
#[command(group(ArgGroup::new("target").required(true).args(["resp", "http"])))]
#[command(group(ArgGroup::new("amount").args(["requests", "duration_s"])))]
pub struct BenchArgs {
    /// The nodes' Redis-protocol addresses; clients are spread over them in turn.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]")]
    pub resp: Option<String>,
    /// The nodes' HTTP addresses (http://HOST:PORT); clients are spread over them in turn.
    #[arg(long, value_name = "URL[,URL...]")]
    pub http: Option<String>,
    /// What the requests do (YCSB's core workloads, or writes only).
    #[arg(long, value_enum, default_value = "a")]
    pub workload: Workload,
    /// Connections, each with its own client.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Requests each client keeps in flight, sent in one write.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Requests in all, across clients (default 100000).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Run for this many seconds instead of a number of requests.
    #[arg(long, value_name = "S")]
    pub duration_s: Option<f64>,
    /// Open loop: requests per second in all, on a fixed timetable; latency is measured from
    /// each request's intended start.
    #[arg(long, value_name = "OPS")]
    pub rate: Option<f64>,
    /// Distinct keys (key:000000000000 ...).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Bytes of the value each write sends.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Zipfian keys with this exponent, in (0, 1) (YCSB's generator; 0.99 is YCSB's
    /// default); uniform keys without it.
    #[arg(long, value_name = "S")]
    pub zipf: Option<f64>,
    /// HTTP only: the bucket to use (`/buckets/NAME/kv/...`; RESP has the default bucket
    /// only). HTTP writes are blind PUTs: in a siblings-mode bucket each adds a sibling, and a
    /// hot key reaches the node's siblings_max; an lww bucket overwrites, as RESP SET does.
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// A user of the node's users file (RESP `AUTH user password`, HTTP Basic); NAME:PASSWORD
    /// is taken too.
    #[arg(long, env = "DRIFTKV_USER", hide_env_values = true)]
    pub user: Option<String>,
    /// The user's password.
    #[arg(long, env = "DRIFTKV_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Seeds the choice of operations and keys: the same seed sends the same requests.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A request not answered within this long is an error, and its connection is remade.
    #[arg(long, default_value_t = TIMEOUT_MS_DEFAULT)]
    pub timeout_ms: u64,
    /// Threads of the client's runtime (1, as redis-benchmark: the node keeps the other cores).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Which protocol the nodes are driven over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp,
    Http,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Resp => "resp",
            Protocol::Http => "http",
        }
    }
}

/// One node to send to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// As given on the command line, for messages.
    pub label: String,
    pub addr: SocketAddr,
    /// `HOST:PORT` as given: HTTP's `Host` header.
    pub authority: String,
}

/// Credentials to present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// None: RESP's one-argument AUTH (the `default` user).
    pub user: Option<String>,
    pub password: String,
}

/// A checked run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub protocol: Protocol,
    pub nodes: Vec<Node>,
    pub workload: Workload,
    pub clients: usize,
    pub pipeline: usize,
    pub amount: Amount,
    pub rate: Option<f64>,
    pub keys: u64,
    pub value_bytes: usize,
    pub zipf: Option<f64>,
    pub bucket: Option<String>,
    pub json: bool,
    pub credentials: Option<Credentials>,
    pub seed: u64,
    pub timeout: Duration,
    pub threads: usize,
    pub progress: bool,
}

fn usage(message: impl Into<String>) -> BenchError {
    BenchError::Usage(message.into())
}

/// Resolves `HOST:PORT` (the first address it names).
fn resolve(flag: &str, authority: &str) -> Result<SocketAddr, BenchError> {
    let (host, port) = authority
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
        .ok_or_else(|| usage(format!("--{flag} {authority:?} is not HOST:PORT")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port.parse::<u16>().unwrap_or(0))
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| usage(format!("--{flag} {authority:?}: cannot resolve {host:?}")))
}

/// The nodes of `--resp`.
fn resp_nodes(list: &str) -> Result<Vec<Node>, BenchError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|a| {
            Ok(Node {
                label: a.to_string(),
                addr: resolve("resp", a)?,
                authority: a.to_string(),
            })
        })
        .collect()
}

/// The nodes of `--http`: `http://HOST:PORT` (the scheme may be left out; no path).
fn http_nodes(list: &str) -> Result<Vec<Node>, BenchError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|url| {
            let rest = match url.split_once("://") {
                Some(("http", rest)) => rest,
                Some(("https", _)) => {
                    return Err(usage(format!(
                        "--http {url:?}: driftkv bench speaks plain HTTP, not https://; \
                         benchmark a node started without --tls-dir"
                    )));
                }
                Some((scheme, _)) => {
                    return Err(usage(format!(
                        "--http {url:?}: unknown scheme {scheme:?} (use http://HOST:PORT)"
                    )));
                }
                None => url,
            };
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.contains('/') || authority.contains('?') {
                return Err(usage(format!(
                    "--http {url:?}: give the node's address only (http://HOST:PORT), no path"
                )));
            }
            let authority = if authority
                .rsplit_once(':')
                .is_some_and(|(_, p)| !p.contains(']'))
            {
                authority.to_string()
            } else {
                format!("{authority}:80")
            };
            Ok(Node {
                label: url.to_string(),
                addr: resolve("http", &authority)?,
                authority,
            })
        })
        .collect()
}

impl BenchArgs {
    /// Checks the flags and resolves the nodes' addresses.
    pub fn plan(&self) -> Result<Plan, BenchError> {
        let (protocol, nodes) = match (&self.resp, &self.http) {
            (Some(r), None) => (Protocol::Resp, resp_nodes(r)?),
            (None, Some(h)) => (Protocol::Http, http_nodes(h)?),
            (Some(_), Some(_)) => return Err(usage("give --resp or --http, not both")),
            (None, None) => return Err(usage("give the nodes: --resp HOST:PORT or --http URL")),
        };
        if nodes.is_empty() {
            return Err(usage(
                "no nodes given (--resp HOST:PORT[,...] or --http URL[,...])",
            ));
        }
        if let Some(b) = &self.bucket {
            if protocol == Protocol::Resp {
                return Err(usage(
                    "--bucket is for --http: RESP serves the default bucket only",
                ));
            }
            if b.is_empty() {
                return Err(usage("--bucket needs a name"));
            }
        }
        if !(1..=CLIENTS_MAX).contains(&self.clients) {
            return Err(usage(format!(
                "--clients must be 1 to {CLIENTS_MAX}; got {}",
                self.clients
            )));
        }
        if !(1..=PIPELINE_MAX).contains(&self.pipeline) {
            return Err(usage(format!(
                "--pipeline must be 1 to {PIPELINE_MAX}; got {}",
                self.pipeline
            )));
        }
        let amount = match (self.requests, self.duration_s) {
            (Some(_), Some(_)) => return Err(usage("give --requests or --duration-s, not both")),
            (Some(n), None) if (1..=REQUESTS_MAX).contains(&n) => Amount::Requests(n),
            (Some(n), None) => {
                return Err(usage(format!(
                    "--requests must be 1 to {REQUESTS_MAX}; got {n}"
                )));
            }
            (None, Some(s)) if s > 0.0 && s <= DURATION_S_MAX => {
                Amount::Duration(Duration::from_secs_f64(s))
            }
            (None, Some(s)) => {
                return Err(usage(format!(
                    "--duration-s must be above 0 and at most {DURATION_S_MAX}; got {s}"
                )));
            }
            (None, None) => Amount::Requests(REQUESTS_DEFAULT),
        };
        if let Some(rate) = self.rate
            && !(RATE_MIN..=RATE_MAX).contains(&rate)
        {
            return Err(usage(format!(
                "--rate must be {RATE_MIN} to {RATE_MAX} requests per second; got {rate}"
            )));
        }
        if !(1..=KEYS_MAX).contains(&self.keys) {
            return Err(usage(format!(
                "--keys must be 1 to {KEYS_MAX}; got {}",
                self.keys
            )));
        }
        if self.value_bytes > VALUE_BYTES_MAX {
            return Err(usage(format!(
                "--value-bytes must be at most {VALUE_BYTES_MAX}; got {}",
                self.value_bytes
            )));
        }
        let in_flight = self.clients * self.pipeline * self.value_bytes.max(1);
        if in_flight > IN_FLIGHT_BYTES_MAX {
            return Err(usage(format!(
                "--clients x --pipeline x --value-bytes is {in_flight} bytes in flight; \
                 at most {IN_FLIGHT_BYTES_MAX}"
            )));
        }
        if let Some(s) = self.zipf
            && !(s > 0.0 && s < 1.0)
        {
            return Err(usage(format!(
                "--zipf takes an exponent above 0 and below 1 (YCSB's default is 0.99); got {s}"
            )));
        }
        if !(1..=TIMEOUT_MS_MAX).contains(&self.timeout_ms) {
            return Err(usage(format!(
                "--timeout-ms must be 1 to {TIMEOUT_MS_MAX}; got {}",
                self.timeout_ms
            )));
        }
        if !(1..=THREADS_MAX).contains(&self.threads) {
            return Err(usage(format!(
                "--threads must be 1 to {THREADS_MAX}; got {}",
                self.threads
            )));
        }
        Ok(Plan {
            protocol,
            nodes,
            workload: self.workload,
            clients: self.clients,
            pipeline: self.pipeline,
            amount,
            rate: self.rate,
            keys: self.keys,
            value_bytes: self.value_bytes,
            zipf: self.zipf,
            bucket: self.bucket.clone(),
            json: self.json,
            credentials: self.credentials()?,
            seed: self.seed,
            timeout: Duration::from_millis(self.timeout_ms),
            threads: self.threads,
            progress: !self.quiet,
        })
    }

    /// `--user` and `--password`, or `--user NAME:PASSWORD`.
    fn credentials(&self) -> Result<Option<Credentials>, BenchError> {
        Ok(match (&self.user, &self.password) {
            (None, None) => None,
            (Some(u), Some(p)) => Some(Credentials {
                user: Some(u.clone()),
                password: p.clone(),
            }),
            (Some(u), None) => match u.split_once(':') {
                Some((name, password)) => Some(Credentials {
                    user: Some(name.to_string()),
                    password: password.to_string(),
                }),
                None => return Err(usage("--user needs --password (or --user NAME:PASSWORD)")),
            },
            (None, Some(p)) => Some(Credentials {
                user: None,
                password: p.clone(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(flags: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args.plan().map_err(|e| e.to_string())
    }

    #[test]
    fn a_plan_takes_every_flag() {
        let p = plan(&[
            "--resp",
            "127.0.0.1:7001,127.0.0.1:7002",
            "--workload",
            "b",
            "--clients",
            "8",
            "--pipeline",
            "4",
            "--duration-s",
            "2.5",
            "--rate",
            "500",
            "--keys",
            "10",
            "--value-bytes",
            "512",
            "--zipf",
            "0.99",
            "--user",
            "ann:pw",
        ])
        .unwrap();
        assert_eq!(p.protocol, Protocol::Resp);
        assert_eq!(p.nodes.len(), 2);
        assert_eq!(p.nodes[1].addr, "127.0.0.1:7002".parse().unwrap());
        assert_eq!(p.workload, Workload::B);
        assert_eq!((p.clients, p.pipeline), (8, 4));
        assert_eq!(p.amount, Amount::Duration(Duration::from_millis(2500)));
        assert_eq!(p.rate, Some(500.0));
        assert_eq!(p.zipf, Some(0.99));
        assert_eq!(
            p.credentials,
            Some(Credentials {
                user: Some("ann".into()),
                password: "pw".into()
            })
        );
        let h = plan(&["--http", "http://127.0.0.1:8080/,localhost:9"]).unwrap();
        assert_eq!(h.protocol, Protocol::Http);
        assert_eq!(h.nodes[0].authority, "127.0.0.1:8080");
        assert_eq!(h.nodes[1].authority, "localhost:9");
        assert_eq!(h.amount, Amount::Requests(REQUESTS_DEFAULT));
    }

    #[test]
    fn bad_input_is_a_clear_message() {
        let cases: &[(&[&str], &str)] = &[
            (&["--workload", "a"], "--resp"),
            (
                &["--resp", "127.0.0.1:1", "--http", "http://127.0.0.1:2"],
                "cannot be used with",
            ),
            (&["--resp", ","], "no nodes"),
            (&["--resp", "127.0.0.1"], "not HOST:PORT"),
            (&["--resp", "127.0.0.1:0"], "not HOST:PORT"),
            (&["--http", "https://127.0.0.1:1"], "plain HTTP"),
            (&["--http", "http://127.0.0.1:1/kv"], "no path"),
            (&["--resp", "127.0.0.1:1", "--clients", "0"], "--clients"),
            (
                &["--resp", "127.0.0.1:1", "--bucket", "b"],
                "--bucket is for --http",
            ),
            (&["--resp", "127.0.0.1:1", "--pipeline", "0"], "--pipeline"),
            (&["--resp", "127.0.0.1:1", "--requests", "0"], "--requests"),
            (
                &["--resp", "127.0.0.1:1", "--duration-s", "0"],
                "--duration-s",
            ),
            (
                &[
                    "--resp",
                    "127.0.0.1:1",
                    "--requests",
                    "5",
                    "--duration-s",
                    "1",
                ],
                "cannot be used with",
            ),
            (&["--resp", "127.0.0.1:1", "--rate", "0"], "--rate"),
            (&["--resp", "127.0.0.1:1", "--keys", "0"], "--keys"),
            (&["--resp", "127.0.0.1:1", "--zipf", "1.2"], "--zipf"),
            (
                &["--resp", "127.0.0.1:1", "--workload", "z"],
                "invalid value",
            ),
            (&["--resp", "127.0.0.1:1", "--user", "ann"], "--password"),
        ];
        for (flags, expected) in cases {
            let err = plan(flags)
                .err()
                .unwrap_or_else(|| panic!("{flags:?} passed"));
            assert!(err.contains(expected), "{flags:?}: {err}");
        }
    }
}
