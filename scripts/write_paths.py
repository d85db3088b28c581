#!/usr/bin/env python3
"""Measures what the direct write path saves: `driftkv bench` against two lww buckets of one
cluster, one with `write_path = "replica"` (a node that is not a replica forwards the write to
one, which applies it, syncs, and sends it on) and one with `write_path = "direct"` (the node
the client reached sends it to all N replicas at once and answers after W of them).

Starts, on loopback ports it picks, a cluster of NODES nodes (N=3 of 5 by default, so two
writes in five arrive at a node that is not a replica of their key), then, in rounds, runs the same bench (HTTP PUTs, the
clients spread over every node) against each bucket one after the other, so both are measured
in the same minutes. Prints the medians as a Markdown table (ops/s, p50, p99, and the messages
the nodes sent per write), and the ratios.

It builds nothing: run `cargo build --release -p driftkv` first. It stops only the processes it
started, by their process ids (see scripts/perf.py, whose helpers it uses).

Environment (defaults in brackets):
  PATHS_ROUNDS     rounds; each figure is the median over them [3]
  PATHS_SECONDS    seconds of each bench run [10]
  PATHS_CLIENTS    connections [16]
  PATHS_NODES      nodes in the cluster [5]
  PATHS_N          replicas per key [3]
  PATHS_W          the buckets' write quorum [quorum]
  DRIFTKV_BIN      the driftkv binary [target/release/driftkv]
"""
import json, os, statistics, subprocess, sys, tempfile, urllib.request

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import perf  # noqa: E402  (spawn, poll, free ports, stop on exit)

ROUNDS = int(os.environ.get("PATHS_ROUNDS") or 3)
SECONDS = float(os.environ.get("PATHS_SECONDS") or 10)
CLIENTS = int(os.environ.get("PATHS_CLIENTS") or 16)
NODES = int(os.environ.get("PATHS_NODES") or 5)
W = os.environ.get("PATHS_W") or "quorum"
N = int(os.environ.get("PATHS_N") or 3)
BUCKETS = [("replica", "replica_path"), ("direct", "direct_path")]


def metric_sum(nodes, name):
    """The sum over the nodes of one Prometheus counter."""
    total = 0.0
    for n in nodes:
        with perf.HTTP.open(f"http://127.0.0.1:{n['http']}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def bench(nodes, bucket):
    urls = ",".join(f"http://127.0.0.1:{n['http']}" for n in nodes)
    argv = [perf.BIN, "bench", "--http", urls, "--bucket", bucket, "--workload", "w",
            "--clients", str(CLIENTS), "--duration-s", str(SECONDS), "--keys", "100000",
            "--value-bytes", "100", "--json", "--quiet"]
    sent_before = metric_sum(nodes, "driftkv_peer_frames_sent_total")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=SECONDS * 10 + 60)
    js = json.loads(r.stdout)
    sent = metric_sum(nodes, "driftkv_peer_frames_sent_total") - sent_before
    ok = max(js["ops"] - js.get("errors", 0), 1)
    return {"ops_per_s": js["ops_per_s"], "p50": js["latency_ms"]["p50"],
            "p99": js["latency_ms"]["p99"], "errors": js.get("errors", 0),
            "messages_per_write": sent / ok}


def main():
    if not os.path.exists(perf.BIN):
        perf.die(f"no binary at {perf.BIN}: run cargo build --release -p driftkv first")
    perf.TMP = tempfile.mkdtemp(prefix="driftkv-paths-")
    config = os.path.join(perf.TMP, "buckets.toml")
    with open(config, "w") as f:
        for path, name in BUCKETS:
            f.write(f'[buckets.{name}]\nmode = "lww"\nwrite_path = "{path}"\nw = "{W}"\n')
    cluster = perf.Driftkv("paths", NODES, ["--config", config, "--n", str(N)])
    results = {path: [] for path, _ in BUCKETS}
    for rnd in range(ROUNDS):
        for path, name in BUCKETS:
            res = bench(cluster.nodes, name)
            perf.say(f"round {rnd + 1}: {path}: {res['ops_per_s']:.0f} ops/s, p50 "
                     f"{res['p50']} ms, p99 {res['p99']} ms, {res['messages_per_write']:.2f} "
                     f"frames per write, {res['errors']} errors")
            results[path].append(res)
    med = {path: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for path, runs in results.items()}
    print(f"\nlww writes over HTTP, {NODES} nodes, N={N}, W={W}, {CLIENTS} clients spread over "
          f"every node, {SECONDS:g} s per run, median of {ROUNDS} rounds\n")
    print("| write path | ops/s | p50 ms | p99 ms | frames sent per write |")
    print("|---|---|---|---|---|")
    for path, _ in BUCKETS:
        m = med[path]
        print(f"| {path} | {m['ops_per_s']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
              f"{m['messages_per_write']:.2f} |")
    d, r = med["direct"], med["replica"]
    print(f"\ndirect / replica: throughput x{d['ops_per_s'] / r['ops_per_s']:.2f}, p50 "
          f"x{d['p50'] / r['p50']:.2f}, p99 x{d['p99'] / r['p99']:.2f}")


if __name__ == "__main__":
    main()
