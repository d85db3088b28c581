//! `driftkv bench` against a real node started in process on loopback (RESP and HTTP, closed
//! and pipelined and open loop, with users), and against small stand-in servers that break
//! connections or never answer: every run ends, counts each request once and says what failed.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use driftkv_bench::client::FAILURES_IN_A_ROW_MAX;
use driftkv_bench::{BenchArgs, BenchError, Plan, Report, execute};
use driftkv_server::config::FileBucket;
use driftkv_server::{FileConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn plan(flags: &[&str]) -> Plan {
    let cli = Cli::try_parse_from(
        ["bench", "--quiet"]
            .into_iter()
            .chain(flags.iter().copied()),
    )
    .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
    cli.args.plan().unwrap_or_else(|e| panic!("{flags:?}: {e}"))
}

/// A one-node cluster (n = 1) serving HTTP and RESP on free loopback ports, with an lww
/// bucket named `fast`; with `users`, a users file. The node lives as long as the test's
/// runtime.
async fn node(dir: &Path, users: Option<&str>) -> (String, String) {
    let fast = FileBucket {
        mode: Some("lww".into()),
        ..FileBucket::default()
    };
    let mut f = FileConfig {
        id: Some("n1".into()),
        data_dir: Some(dir.join("n1")),
        listen: Some("127.0.0.1:0".into()),
        http: Some("127.0.0.1:0".into()),
        resp: Some("127.0.0.1:0".into()),
        n: Some(1),
        buckets: [("fast".to_string(), fast)].into(),
        ..FileConfig::default()
    };
    if let Some(text) = users {
        let path = dir.join("users.toml");
        std::fs::write(&path, text).unwrap();
        f.users = Some(path);
    }
    let cfg = ServerConfig::from_file(f).expect("a valid node configuration");
    let running = driftkv_server::start(cfg).await.expect("the node starts");
    let resp = running.resp.expect("the node serves RESP").to_string();
    let http = format!("http://{}", running.http);
    // The node's tasks run on this runtime; its handle is not needed to keep it serving.
    std::mem::forget(running);
    (resp, http)
}

/// The report's JSON has the fields DESIGN.md promises, and they are sane.
fn check_json(r: &Report) {
    let v = r.json();
    for field in ["ops", "ops_per_s", "errors"] {
        assert!(v[field].is_number(), "{field} in {v}");
    }
    let l = &v["latency_ms"];
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(l[p].is_number(), "latency_ms.{p} in {v}");
    }
    let (p50, p99, max) = (
        l["p50"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{v}");
    assert!(v["ops_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(
        v["reads"].as_u64().unwrap() + v["writes"].as_u64().unwrap(),
        v["ops"].as_u64().unwrap()
    );
    let line = v.to_string();
    assert!(!line.contains('\n'), "one line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_over_resp_runs_every_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let (resp, _) = node(dir.path(), None).await;
    let r = execute(&plan(&[
        "--resp",
        &resp,
        "--workload",
        "a",
        "--clients",
        "4",
        "--requests",
        "1000",
        "--keys",
        "100",
    ]))
    .await
    .unwrap();
    assert_eq!(r.ops, 1000);
    assert_eq!(r.errors, 0, "{:?}", r.first_error);
    assert!(
        r.reads > 300 && r.writes > 300,
        "{} / {}",
        r.reads,
        r.writes
    );
    check_json(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_run_ends_on_the_exact_count_even_mid_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (resp, _) = node(dir.path(), None).await;
    let r = execute(&plan(&[
        "--resp",
        &resp,
        "--workload",
        "w",
        "--clients",
        "3",
        "--pipeline",
        "16",
        "--requests",
        "1003",
    ]))
    .await
    .unwrap();
    assert_eq!(
        (r.ops, r.writes, r.errors),
        (1003, 1003, 0),
        "{:?}",
        r.first_error
    );
    check_json(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_keeps_its_rate_and_times_from_the_timetable() {
    let dir = tempfile::tempdir().unwrap();
    let (resp, _) = node(dir.path(), None).await;
    let r = execute(&plan(&[
        "--resp",
        &resp,
        "--workload",
        "b",
        "--clients",
        "4",
        "--duration-s",
        "1.5",
        "--rate",
        "200",
    ]))
    .await
    .unwrap();
    assert_eq!(r.ops, 300, "rate x duration");
    assert_eq!(r.errors, 0, "{:?}", r.first_error);
    assert!(
        (120.0..=280.0).contains(&r.ops_per_s),
        "{} ops/s at --rate 200",
        r.ops_per_s
    );
    let v = r.json();
    assert_eq!(v["loop"], "open");
    check_json(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_missing_keys_are_answers_and_writes_land() {
    let dir = tempfile::tempdir().unwrap();
    let (_, http) = node(dir.path(), None).await;
    // Reads only, of keys never written: every one is a 404, none an error.
    let misses = execute(&plan(&[
        "--http",
        &http,
        "--workload",
        "c",
        "--clients",
        "2",
        "--requests",
        "200",
    ]))
    .await
    .unwrap();
    assert_eq!(
        (misses.ops, misses.errors),
        (200, 0),
        "{:?}",
        misses.first_error
    );
    let mixed = execute(&plan(&[
        "--http",
        &http,
        "--workload",
        "a",
        "--clients",
        "4",
        "--pipeline",
        "4",
        "--requests",
        "800",
        "--keys",
        "50",
        "--value-bytes",
        "512",
        "--zipf",
        "0.99",
    ]))
    .await
    .unwrap();
    assert_eq!(
        (mixed.ops, mixed.errors),
        (800, 0),
        "{:?}",
        mixed.first_error
    );
    check_json(&mixed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_writes_go_to_the_bucket_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (_, http) = node(dir.path(), None).await;
    // Blind writes to one key: in the default (siblings) bucket they would pile up past the
    // node's siblings_max (100) and be refused; the lww bucket overwrites.
    let r = execute(&plan(&[
        "--http",
        &http,
        "--bucket",
        "fast",
        "--workload",
        "w",
        "--clients",
        "2",
        "--requests",
        "300",
        "--keys",
        "1",
    ]))
    .await
    .unwrap();
    assert_eq!((r.ops, r.errors), (300, 0), "{:?}", r.first_error);
    assert_eq!(r.json()["bucket"], "fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_users_takes_the_right_password_and_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let users = "[users.ann]\npassword = \"secret\"\nrole = \"write\"\n";
    let (resp, http) = node(dir.path(), Some(users)).await;
    for (flag, addr) in [("--resp", &resp), ("--http", &http)] {
        let good = execute(&plan(&[
            flag,
            addr,
            "--clients",
            "2",
            "--requests",
            "100",
            "--user",
            "ann",
            "--password",
            "secret",
        ]))
        .await
        .unwrap();
        assert_eq!(
            (good.ops, good.errors),
            (100, 0),
            "{flag}: {:?}",
            good.first_error
        );
        let wrong = execute(&plan(&[
            flag,
            addr,
            "--requests",
            "10",
            "--user",
            "ann:guess",
        ]))
        .await;
        assert!(
            matches!(wrong, Err(BenchError::Refused(_))),
            "{flag}: {wrong:?}"
        );
        let none = execute(&plan(&[flag, addr, "--requests", "10"])).await;
        match flag {
            // Without AUTH every RESP command is refused: errors, and the run still ends.
            "--resp" => {
                let r = none.unwrap();
                assert_eq!((r.ops, r.errors), (10, 10));
                assert!(r.first_error.unwrap().contains("NOAUTH"));
            }
            _ => assert!(matches!(none, Err(BenchError::Refused(_))), "{none:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_there_stops_the_run_before_it_starts() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let r = execute(&plan(&["--resp", &addr, "--requests", "10"])).await;
    match r {
        Err(e @ BenchError::Unreachable(_)) => assert!(e.to_string().contains(&addr), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A stand-in RESP server that answers `+OK` to every command but closes each connection
/// after `per_connection` commands, or (`None`) reads and never answers. Serves until the
/// test's runtime ends.
async fn stand_in(per_connection: Option<usize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                // The end of the bytes read before, so a marker split across reads is seen.
                let mut carry: Vec<u8> = Vec::new();
                let mut answered = 0;
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let Some(limit) = per_connection else {
                        continue;
                    };
                    carry.extend_from_slice(&buf[..n]);
                    // Each SET the bench sends starts with "*3\r\n".
                    let commands = carry.windows(4).filter(|w| w == b"*3\r\n").count();
                    carry.drain(..carry.len() - 3.min(carry.len()));
                    for _ in 0..commands {
                        if answered == limit {
                            return;
                        }
                        if s.write_all(b"+OK\r\n").await.is_err() {
                            return;
                        }
                        answered += 1;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_connections_are_remade_and_counted_as_errors() {
    let addr = stand_in(Some(10)).await;
    let r = execute(&plan(&[
        "--resp",
        &addr,
        "--workload",
        "w",
        "--clients",
        "2",
        "--pipeline",
        "4",
        "--requests",
        "200",
    ]))
    .await
    .unwrap();
    assert_eq!(r.ops, 200, "every request ends once");
    assert!(r.errors > 0 && r.errors < 200, "{} errors", r.errors);
    assert!(r.first_error.unwrap().contains("closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_answers_times_out_instead_of_hanging() {
    let addr = stand_in(None).await;
    let started = std::time::Instant::now();
    let r = execute(&plan(&[
        "--resp",
        &addr,
        "--workload",
        "w",
        "--clients",
        "2",
        "--requests",
        "6",
        "--timeout-ms",
        "100",
    ]))
    .await
    .unwrap();
    assert_eq!((r.ops, r.errors), (6, 6));
    assert!(r.first_error.unwrap().contains("no answer within 100 ms"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    // The open loop too; and a long run stops after a few rounds that time out, instead of
    // waiting out every request (1,000 of them would take 50 s here).
    let started = std::time::Instant::now();
    let r = execute(&plan(&[
        "--resp",
        &addr,
        "--clients",
        "2",
        "--pipeline",
        "2",
        "--requests",
        "1000",
        "--rate",
        "100000",
        "--timeout-ms",
        "100",
    ]))
    .await
    .unwrap();
    assert!(r.ops >= 1 && r.errors == r.ops, "{r:?}");
    assert!(r.ops < 1000, "every request waited out: {r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the clients gave up after {FAILURES_IN_A_ROW_MAX} failed rounds in a row"
    );
    let started = std::time::Instant::now();
    let r = execute(&plan(&[
        "--resp",
        &addr,
        "--workload",
        "w",
        "--clients",
        "2",
        "--requests",
        "1000",
        "--timeout-ms",
        "100",
    ]))
    .await
    .unwrap();
    assert!(r.ops < 1000 && r.errors == r.ops, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
