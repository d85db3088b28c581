//! A node's settings: a TOML file, overridden by command-line flags, checked into a
//! [`ServerConfig`] before anything starts. Every mistake is a clear error naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use driftkv_causal::ConflictMode;
use driftkv_core::{BucketProps, Durability, NodeConfig, WritePath};
use driftkv_ring::{NodeId, RingConfig};
use driftkv_wire::Quorum;
use serde::Deserialize;

use crate::auth::Users;

/// The settings file's shape. Every field is optional; flags override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<String>,
    pub cluster: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub http: Option<String>,
    pub resp: Option<String>,
    #[serde(default)]
    pub join: Vec<String>,
    pub n: Option<usize>,
    pub r: Option<String>,
    pub w: Option<String>,
    pub partitions: Option<u32>,
    pub durability: Option<String>,
    pub request_timeout_ms: Option<u64>,
    pub key_bytes_max: Option<usize>,
    pub value_bytes_max: Option<usize>,
    pub read_repair: Option<bool>,
    pub hinted_handoff: Option<bool>,
    pub hints_max: Option<usize>,
    pub hint_age_max_ms: Option<u64>,
    /// A deleted key's tombstone is collected once every primary holds it and it is this old
    /// (at least `hint_age_max_ms`).
    pub tombstone_grace_ms: Option<u64>,
    /// Anti-entropy: `false` turns exchanges off; the interval between exchanges a node starts.
    pub anti_entropy: Option<bool>,
    pub anti_entropy_interval_ms: Option<u64>,
    /// Client requests between two exchange decisions above which a due exchange is put off
    /// (anti-entropy yields to client traffic, at most 4 intervals in a row); 0: never.
    pub anti_entropy_busy_requests: Option<u64>,
    /// Enables the lab controls (`POST /admin/isolate`, `/admin/heal`) the dashboard uses to
    /// cut a node off: for demo and teaching clusters only.
    pub lab: Option<bool>,
    /// A directory with `ca.pem`, `ID.pem` and `ID.key`: mutual TLS between nodes, TLS on
    /// HTTP and RESP.
    pub tls_dir: Option<PathBuf>,
    /// The users file (`[users.NAME]` with `password` and `role`): clients must authenticate.
    pub users: Option<PathBuf>,
    /// Serve on non-loopback addresses without TLS or users (protected mode off).
    pub insecure: Option<bool>,
    /// Open connections per listener (peer, HTTP, RESP) at most; more wait to be accepted.
    pub connections_max: Option<usize>,
    /// An HTTP client must send a request's headers within this long (also while idle
    /// between requests), or its connection is closed.
    pub http_header_timeout_ms: Option<u64>,
    /// Bytes of one RESP command at most, all arguments together.
    pub resp_command_bytes_max: Option<usize>,
    /// Siblings one key may hold; a write that would leave more is refused.
    pub siblings_max: Option<usize>,
    /// Bytes of values one key may hold (all its siblings).
    pub object_bytes_max: Option<usize>,
    #[serde(default)]
    pub buckets: BTreeMap<String, FileBucket>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBucket {
    pub mode: Option<String>,
    /// `replica` (the default) or `direct` (lww only): see `driftkv_core::WritePath`.
    pub write_path: Option<String>,
    pub n: Option<usize>,
    pub r: Option<String>,
    pub w: Option<String>,
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| format!("config file: {e}"))
    }
}

/// Everything a node needs to start, checked.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub cluster: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub resp: Option<SocketAddr>,
    pub durability: Durability,
    pub lab: bool,
    pub core: NodeConfig,
    /// TLS on every port (mutual between nodes), from `--tls-dir`.
    pub tls: Option<driftkv_tls::NodeTls>,
    /// Client authentication, from `--users`.
    pub users: Option<std::sync::Arc<Users>>,
    pub limits: Limits,
}

/// Where a node listens for nodes unless told otherwise.
const LISTEN_DEFAULT: &str = "127.0.0.1:7070";
/// Where a node serves HTTP unless told otherwise.
const HTTP_DEFAULT: &str = "127.0.0.1:8080";
/// The cluster's name unless told otherwise.
const CLUSTER_DEFAULT: &str = "driftkv";
/// Characters of a node id at most.
pub const ID_CHARS_MAX: usize = 64;
/// Replicas of a key (n) at most.
pub const REPLICAS_MAX: usize = 16;
/// Ring partitions at most.
pub const PARTITIONS_MAX: u32 = 4096;
const MIB: usize = 1024 * 1024;
/// The largest `key_bytes_max` (a larger setting is lowered to it).
pub const KEY_BYTES_MAX_CEILING: usize = 64 * 1024;
/// The largest `value_bytes_max` accepted.
pub const VALUE_BYTES_MAX_CEILING: usize = 32 * MIB;
/// The largest `siblings_max` accepted.
pub const SIBLINGS_MAX_CEILING: usize = 10_000;
/// The largest `connections_max` accepted.
pub const CONNECTIONS_MAX_CEILING: usize = 1_000_000;
/// Open connections per listener unless told otherwise.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// The time an HTTP client has to send a request's headers, unless told otherwise.
pub const HTTP_HEADER_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Room in a RESP command beyond the largest value, unless told otherwise: its key and a few
/// small arguments.
pub const RESP_COMMAND_ROOM_BYTES: usize = MIB;

/// The named bounds of the client and peer ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub connections_max: usize,
    pub http_header_timeout_ms: u64,
    pub resp_command_bytes_max: usize,
}

impl Limits {
    pub fn for_values(value_bytes_max: usize) -> Limits {
        Limits {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            http_header_timeout_ms: HTTP_HEADER_TIMEOUT_MS_DEFAULT,
            // A SET of the largest value, with room for its key and a few small arguments.
            resp_command_bytes_max: value_bytes_max + RESP_COMMAND_ROOM_BYTES,
        }
    }
}

fn loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

fn addr(name: &str, value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!(
            "--{name} {value:?} is not HOST:PORT with a numeric host (for example 127.0.0.1:7070)"
        )
    })
}

fn quorum(name: &str, value: &str) -> Result<Quorum, String> {
    Quorum::parse(value).map_err(|e| format!("{name}: {e}"))
}

impl ServerConfig {
    /// Checks a merged file + flags configuration. Settings are checked in a fixed order, so
    /// a file with several mistakes names the same one first every time.
    pub fn from_file(f: FileConfig) -> Result<ServerConfig, String> {
        let id = node_id(f.id.as_deref())?;
        let data_dir = f
            .data_dir
            .clone()
            .ok_or("a node needs a data directory (--data-dir DIR)")?;
        let listen = addr("listen", f.listen.as_deref().unwrap_or(LISTEN_DEFAULT))?;
        let http = addr("http", f.http.as_deref().unwrap_or(HTTP_DEFAULT))?;
        let resp = f.resp.as_deref().map(|r| addr("resp", r)).transpose()?;
        for j in &f.join {
            if j.is_empty() || !j.contains(':') {
                return Err(format!("--join {j:?} is not HOST:PORT"));
            }
        }
        let durability: Durability = match &f.durability {
            None => Durability::default(),
            Some(d) => d.parse().map_err(|e| format!("durability: {e}"))?,
        };
        let mut core = NodeConfig::new(NodeId::from(id.as_str()));
        core.listen = listen.to_string();
        core.http = http.to_string();
        core.seeds = f.join.clone();
        set_ring(&f, &mut core)?;
        set_request_limits(&f, &mut core)?;
        set_repair(&f, &mut core)?;
        set_buckets(&f, &mut core)?;
        set_object_limits(&f, &mut core)?;
        let limits = client_limits(&f, &core)?;
        protected_mode(
            &f,
            [
                Some(("--listen", listen)),
                Some(("--http", http)),
                resp.map(|r| ("--resp", r)),
            ],
        )?;
        let tls = match &f.tls_dir {
            Some(dir) => Some(
                driftkv_tls::load_node(dir, &id)
                    .map_err(|e| format!("--tls-dir {}: {e}", dir.display()))?,
            ),
            None => None,
        };
        let users = match &f.users {
            Some(path) => Some(std::sync::Arc::new(Users::load(path)?)),
            None => None,
        };
        Ok(ServerConfig {
            cluster: f.cluster.unwrap_or_else(|| CLUSTER_DEFAULT.into()),
            data_dir,
            listen,
            http,
            resp,
            durability,
            lab: f.lab.unwrap_or(false),
            core,
            tls,
            users,
            limits,
        })
    }
}

/// A node's id: 1 to [`ID_CHARS_MAX`] letters, digits, '-', '_' or '.'.
fn node_id(id: Option<&str>) -> Result<String, String> {
    let id = id.ok_or("a node needs an id (--id NAME)")?;
    if id.is_empty()
        || id.len() > ID_CHARS_MAX
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(format!(
            "node id {id:?} must be 1 to {ID_CHARS_MAX} characters of letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(id.to_string())
}

/// The ring (n, partitions) and the default read and write levels, which must fit n.
fn set_ring(f: &FileConfig, core: &mut NodeConfig) -> Result<(), String> {
    core.ring = RingConfig {
        partitions: f.partitions.unwrap_or(RingConfig::default().partitions),
        n: f.n.unwrap_or(RingConfig::default().n),
        ..RingConfig::default()
    };
    if core.ring.n == 0 || core.ring.n > REPLICAS_MAX {
        return Err(format!(
            "n must be 1 to {REPLICAS_MAX}, not {}",
            core.ring.n
        ));
    }
    if core.ring.partitions == 0 || core.ring.partitions > PARTITIONS_MAX {
        return Err(format!(
            "partitions must be 1 to {PARTITIONS_MAX}, not {}",
            core.ring.partitions
        ));
    }
    if let Some(r) = &f.r {
        core.r = quorum("r", r)?;
    }
    if let Some(w) = &f.w {
        core.w = quorum("w", w)?;
    }
    for (level, name) in [(core.r, "r"), (core.w, "w")] {
        level
            .resolve(core.ring.n, Quorum::Quorum)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// The request timeout and the bounds on keys and values.
fn set_request_limits(f: &FileConfig, core: &mut NodeConfig) -> Result<(), String> {
    if let Some(t) = f.request_timeout_ms {
        if t == 0 {
            return Err("request_timeout_ms must be positive".into());
        }
        core.request_timeout_ms = t;
    }
    if let Some(k) = f.key_bytes_max {
        core.key_bytes_max = k.clamp(1, KEY_BYTES_MAX_CEILING);
    }
    if let Some(v) = f.value_bytes_max {
        if v == 0 || v > VALUE_BYTES_MAX_CEILING {
            return Err(format!(
                "value_bytes_max must be 1 byte to {} MiB",
                VALUE_BYTES_MAX_CEILING / MIB
            ));
        }
        core.value_bytes_max = v;
    }
    Ok(())
}

/// Read repair, hinted handoff, tombstone collection and anti-entropy.
fn set_repair(f: &FileConfig, core: &mut NodeConfig) -> Result<(), String> {
    if let Some(b) = f.read_repair {
        core.read_repair = b;
    }
    if let Some(b) = f.hinted_handoff {
        core.hinted_handoff = b;
    }
    if let Some(h) = f.hints_max {
        core.hints_max = h;
    }
    if let Some(a) = f.hint_age_max_ms {
        core.hint_age_max_ms = a;
    }
    if let Some(g) = f.tombstone_grace_ms {
        core.tombstone_grace_ms = g;
    }
    if core.tombstone_grace_ms < core.hint_age_max_ms {
        return Err(format!(
            "tombstone_grace_ms ({}) must be at least hint_age_max_ms ({}): an older hint could bring a collected key back",
            core.tombstone_grace_ms, core.hint_age_max_ms
        ));
    }
    if let Some(on) = f.anti_entropy {
        core.aae.enabled = on;
    }
    if let Some(i) = f.anti_entropy_interval_ms {
        if i == 0 {
            return Err("anti_entropy_interval_ms must be positive".into());
        }
        core.aae.interval_ms = i;
    }
    if let Some(b) = f.anti_entropy_busy_requests {
        core.aae.busy_requests = b;
    }
    Ok(())
}

/// Each `[buckets.NAME]`: its conflict mode, and n, r and w within the cluster's.
fn set_buckets(f: &FileConfig, core: &mut NodeConfig) -> Result<(), String> {
    for (name, b) in &f.buckets {
        let mode = match b.mode.as_deref() {
            None | Some("siblings") => ConflictMode::Siblings,
            Some("lww") => ConflictMode::Lww,
            Some(other) => {
                return Err(format!(
                    "buckets.{name}.mode {other:?}: use \"siblings\" or \"lww\""
                ));
            }
        };
        let write_path = match b.write_path.as_deref() {
            None => WritePath::Replica,
            Some(path) => path
                .parse::<WritePath>()
                .map_err(|e| format!("buckets.{name}.write_path: {e}"))?,
        };
        if write_path == WritePath::Direct && mode != ConflictMode::Lww {
            return Err(format!(
                "buckets.{name}.write_path \"direct\" needs mode \"lww\": a direct write reads nothing, so it cannot replace the siblings a client saw"
            ));
        }
        if let Some(n) = b.n
            && (n == 0 || n > core.ring.n)
        {
            return Err(format!(
                "buckets.{name}.n must be 1 to the cluster's n ({})",
                core.ring.n
            ));
        }
        let level = |raw: &Option<String>, which: &str| {
            raw.as_deref()
                .map(|q| quorum(&format!("buckets.{name}.{which}"), q))
                .transpose()
        };
        let props = BucketProps {
            mode,
            write_path,
            n: b.n,
            r: level(&b.r, "r")?,
            w: level(&b.w, "w")?,
        };
        core.buckets
            .insert(Bytes::from(name.clone().into_bytes()), props);
    }
    Ok(())
}

/// The bounds on what one key may hold: siblings and bytes.
fn set_object_limits(f: &FileConfig, core: &mut NodeConfig) -> Result<(), String> {
    if let Some(n) = f.siblings_max {
        if n == 0 || n > SIBLINGS_MAX_CEILING {
            return Err(format!("siblings_max must be 1 to {SIBLINGS_MAX_CEILING}"));
        }
        core.siblings_max = n;
    }
    if let Some(b) = f.object_bytes_max {
        // A replica must still receive the object in one frame, with room for the rest of
        // the message.
        let most = driftkv_wire::FRAME_BYTES_MAX / 2;
        if b < core.value_bytes_max || b > most {
            return Err(format!(
                "object_bytes_max must be at least value_bytes_max ({}) and at most {most}",
                core.value_bytes_max
            ));
        }
        core.object_bytes_max = b;
    }
    core.object_bytes_max = core.object_bytes_max.max(core.value_bytes_max);
    Ok(())
}

/// The bounds of the client and peer ports.
fn client_limits(f: &FileConfig, core: &NodeConfig) -> Result<Limits, String> {
    let mut limits = Limits::for_values(core.value_bytes_max);
    if let Some(c) = f.connections_max {
        if c == 0 || c > CONNECTIONS_MAX_CEILING {
            return Err(format!(
                "connections_max must be 1 to {CONNECTIONS_MAX_CEILING}"
            ));
        }
        limits.connections_max = c;
    }
    if let Some(t) = f.http_header_timeout_ms {
        if t == 0 {
            return Err("http_header_timeout_ms must be positive".into());
        }
        limits.http_header_timeout_ms = t;
    }
    if let Some(b) = f.resp_command_bytes_max {
        if b < core.value_bytes_max + core.key_bytes_max {
            return Err(format!(
                "resp_command_bytes_max must be at least value_bytes_max + key_bytes_max ({})",
                core.value_bytes_max + core.key_bytes_max
            ));
        }
        limits.resp_command_bytes_max = b;
    }
    Ok(limits)
}

/// Protected mode, as Redis has it: a node reachable from other hosts (any of `ports`, each a
/// flag and its address) serves only with TLS and users, unless told otherwise.
fn protected_mode(f: &FileConfig, ports: [Option<(&str, SocketAddr)>; 3]) -> Result<(), String> {
    let exposed: Vec<String> = ports
        .into_iter()
        .flatten()
        .filter(|(_, a)| !loopback(a))
        .map(|(flag, a)| format!("{flag} {a}"))
        .collect();
    let insecure = f.insecure.unwrap_or(false);
    if !exposed.is_empty() && !insecure && (f.tls_dir.is_none() || f.users.is_none()) {
        return Err(format!(
            "refusing to serve on {} without both --tls-dir and --users: anyone who can reach \
             the node could read, write and reshape the cluster. Give both (see `driftkv cert`), \
             bind to 127.0.0.1, or pass --insecure to run unprotected anyway",
            exposed.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> FileConfig {
        FileConfig {
            id: Some("n1".into()),
            data_dir: Some("/tmp/x".into()),
            ..FileConfig::default()
        }
    }

    #[test]
    fn a_file_with_buckets_parses() {
        let f = FileConfig::parse(
            "id = \"n1\"\ndata_dir = \"/tmp/d\"\nw = \"all\"\n[buckets.carts]\nmode = \"lww\"\nn = 2\n",
        )
        .unwrap();
        let c = ServerConfig::from_file(f).unwrap();
        assert_eq!(c.core.w, Quorum::All);
        assert_eq!(c.core.bucket(b"carts").mode, ConflictMode::Lww);
        assert_eq!(c.core.bucket(b"carts").n, Some(2));
        assert_eq!(c.core.bucket(b"carts").write_path, WritePath::Replica);
    }

    #[test]
    fn a_direct_write_path_needs_an_lww_bucket_and_a_known_name() {
        let parse = |bucket: &str| {
            let text = format!("id = \"n1\"\ndata_dir = \"/tmp/d\"\n[buckets.b]\n{bucket}\n");
            ServerConfig::from_file(FileConfig::parse(&text).unwrap())
        };
        let c = parse("mode = \"lww\"\nwrite_path = \"direct\"").unwrap();
        assert_eq!(c.core.bucket(b"b").write_path, WritePath::Direct);
        let err = parse("write_path = \"direct\"").unwrap_err();
        assert!(err.contains("needs mode \"lww\""), "{err}");
        let err = parse("mode = \"lww\"\nwrite_path = \"sideways\"").unwrap_err();
        assert!(
            err.contains("buckets.b.write_path") && err.contains("\"direct\""),
            "{err}"
        );
    }

    #[test]
    fn a_node_reachable_from_other_hosts_needs_tls_and_users_or_insecure() {
        for (listen, http, resp) in [
            ("0.0.0.0:7070", "127.0.0.1:8080", None),
            ("127.0.0.1:7070", "10.1.2.3:8080", None),
            ("127.0.0.1:7070", "127.0.0.1:8080", Some("[::]:6379")),
        ] {
            let f = || FileConfig {
                listen: Some(listen.into()),
                http: Some(http.into()),
                resp: resp.map(Into::into),
                ..base()
            };
            let err = ServerConfig::from_file(f()).unwrap_err();
            assert!(err.contains("--insecure"), "{err}");
            let err = ServerConfig::from_file(FileConfig {
                tls_dir: Some("/nonexistent".into()),
                ..f()
            })
            .unwrap_err();
            assert!(err.contains("--insecure"), "TLS alone is not enough: {err}");
            ServerConfig::from_file(FileConfig {
                insecure: Some(true),
                ..f()
            })
            .unwrap();
        }
        // Loopback only: no TLS needed.
        let c = ServerConfig::from_file(FileConfig {
            resp: Some("127.0.0.1:6379".into()),
            ..base()
        })
        .unwrap();
        assert!(c.tls.is_none() && c.users.is_none());
    }

    #[test]
    fn mistakes_name_the_setting() {
        let cases: Vec<(FileConfig, &str)> = vec![
            (
                FileConfig {
                    r: Some("most".into()),
                    ..base()
                },
                "r:",
            ),
            (
                FileConfig {
                    listen: Some("localhost".into()),
                    ..base()
                },
                "--listen",
            ),
            (
                FileConfig {
                    n: Some(0),
                    ..base()
                },
                "n must be",
            ),
            (
                FileConfig {
                    w: Some("5".into()),
                    ..base()
                },
                "w:",
            ),
            (
                FileConfig {
                    durability: Some("sometimes".into()),
                    ..base()
                },
                "durability",
            ),
            (
                FileConfig {
                    id: Some("a b".into()),
                    ..base()
                },
                "node id",
            ),
            (FileConfig { id: None, ..base() }, "--id"),
            (
                FileConfig {
                    tombstone_grace_ms: Some(1),
                    ..base()
                },
                "tombstone_grace_ms",
            ),
            (
                FileConfig {
                    siblings_max: Some(0),
                    ..base()
                },
                "siblings_max",
            ),
            (
                FileConfig {
                    resp_command_bytes_max: Some(10),
                    ..base()
                },
                "resp_command_bytes_max",
            ),
            (
                FileConfig {
                    users: Some("/nonexistent/users.toml".into()),
                    ..base()
                },
                "users file",
            ),
        ];
        for (f, want) in cases {
            let err = ServerConfig::from_file(f).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
        assert!(
            FileConfig::parse("id = ")
                .unwrap_err()
                .contains("config file")
        );
        assert!(
            FileConfig::parse("colour = \"red\"")
                .unwrap_err()
                .contains("colour")
        );
        let mut buckets = BTreeMap::new();
        buckets.insert(
            "b".to_string(),
            FileBucket {
                mode: Some("newest".into()),
                ..FileBucket::default()
            },
        );
        let err = ServerConfig::from_file(FileConfig { buckets, ..base() }).unwrap_err();
        assert!(err.contains("buckets.b.mode"), "{err}");
    }
}
