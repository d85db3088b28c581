#!/usr/bin/env python3
"""Reproduces the README's performance table: driftkv against Redis on this machine.

Starts, on loopback ports it picks, a one-node driftkv (`--n 1`, group commit), a one-node
driftkv with `--durability none`, a three-node driftkv cluster (N=3, R=W=quorum), and Redis
without persistence, with `appendfsync always`, and as a primary with two replicas. Then, in
rounds, it runs redis-benchmark (`-c 50 -n N -t set,get -P 1|16 -d 100 -r 100000 --csv`)
against each driftkv setup and its Redis counterpart one after the other (so both are
measured in the same minutes), and `driftkv bench` with the same shapes against both. It
prints the medians as Markdown tables (setup | driftkv ops/s (p99) | Redis ops/s (p99) |
ratio) and each node's peak RSS (VmHWM) after the runs.

It builds nothing: run `cargo build --release -p driftkv` first. It needs redis-server and
redis-benchmark (`apt-get install -y redis-server redis-tools`). It stops only the processes
it started, by their process ids, when it exits; if it is killed outright, the kernel stops
them (each is started with a parent-death signal).

Environment (defaults in brackets):
  PERF_ROUNDS    rounds; each figure is the median over them [3]
  PERF_REQUESTS  requests per test, redis-benchmark's -n [100000]
  PERF_CLIENTS   connections, redis-benchmark's -c [50]
  PERF_QUICK=1   a quick check that everything works: 1 round of 10000 requests
  PERF_KEEP=1    keep the data directories and logs (their folder is printed)
  DRIFTKV_BIN    the driftkv binary [target/release/driftkv]
"""
import atexit, csv, datetime, io, json, os, platform, random, shutil, signal, socket
import statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
BIN = os.environ.get("DRIFTKV_BIN") or os.path.join(ROOT, "target", "release", "driftkv")
QUICK = os.environ.get("PERF_QUICK") == "1"
ROUNDS = int(os.environ.get("PERF_ROUNDS") or (1 if QUICK else 3))
REQUESTS = int(os.environ.get("PERF_REQUESTS") or (10_000 if QUICK else 100_000))
CLIENTS = int(os.environ.get("PERF_CLIENTS") or 50)
KEEP = os.environ.get("PERF_KEEP") == "1"
KEYS, VALUE_BYTES = 100_000, 100
# One benchmark run at most (a stuck server must not hang the script).
RUN_TIMEOUT_S = max(300, REQUESTS // 100)
START_TIMEOUT_S = 30

# Loopback only: ignore http_proxy and the like.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def die(msg, code=2):
    say(msg)
    sys.exit(code)


# --- what this script started, and only that, is stopped on any exit ---------------------
PROCS = []  # subprocess.Popen, each in a session of its own
TMP = None


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the session this script gave it
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
    if TMP and not KEEP:
        shutil.rmtree(TMP, ignore_errors=True)


atexit.register(cleanup)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda s, f: sys.exit(128 + s))

_USED = set()


def free_port():
    """A loopback port below the ephemeral range, so no outgoing connection takes it first."""
    try:
        lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError):
        lo = 32768
    for _ in range(10_000):
        p = random.randint(10000, max(10001, lo - 1))
        if p in _USED:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        _USED.add(p)
        return p
    sys.exit("no free loopback port found below the ephemeral range")


def _die_with_parent():
    # Linux: the child gets SIGTERM if this script dies, even by SIGKILL (prctl PR_SET_PDEATHSIG).
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def spawn(name, argv):
    with open(os.path.join(TMP, name + ".log"), "ab") as log:
        p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=TMP, preexec_fn=_die_with_parent)
    PROCS.append(p)
    return p


def poll(fn, what, p_list):
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        for p in p_list:
            if p.poll() is not None:
                die(f"{what}: a process exited with {p.returncode} (logs in {TMP})", 1)
        if fn():
            return
        time.sleep(0.1)
    die(f"{what}: not ready within {START_TIMEOUT_S} s (logs in {TMP})", 1)


def http_json(url):
    try:
        with HTTP.open(url, timeout=2) as r:
            return json.loads(r.read())
    except Exception:
        return None


# --- the setups ----------------------------------------------------------------------------
class Driftkv:
    """A driftkv cluster of `count` nodes on loopback, each serving RESP."""

    def __init__(self, name, count, extra):
        self.name, self.nodes = name, []
        for i in range(count):
            nid = f"{name}-n{i + 1}"
            listen, http, resp = free_port(), free_port(), free_port()
            argv = [BIN, "node", "--id", nid, "--data-dir", os.path.join(TMP, nid),
                    "--listen", f"127.0.0.1:{listen}", "--http", f"127.0.0.1:{http}",
                    "--resp", f"127.0.0.1:{resp}"] + extra
            if self.nodes:
                argv += ["--join", f"127.0.0.1:{self.nodes[0]['listen']}"]
            node = {"id": nid, "listen": listen, "http": http, "resp": resp}
            node["proc"] = spawn(nid, argv)
            self.nodes.append(node)
            poll(lambda: (http_json(f"http://127.0.0.1:{http}/health") is not None),
                 f"driftkv node {nid}", [node["proc"]])

        def all_up():
            for n in self.nodes:
                js = http_json(f"http://127.0.0.1:{n['http']}/cluster")
                if not isinstance(js, dict):
                    return False
                up = [m for m in js.get("members", []) if m.get("state") == "up"]
                if len(up) < count:
                    return False
            return True
        poll(all_up, f"driftkv {name}: {count} members up", [n["proc"] for n in self.nodes])
        self.port = self.nodes[0]["resp"]


def redis_cli(port, *args):
    try:
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                           capture_output=True, text=True, timeout=5)
        return r.stdout
    except (subprocess.TimeoutExpired, OSError):
        return ""


class Redis:
    """A Redis server on loopback, with `replicas` replicas of it."""

    def __init__(self, name, config, replicas=0):
        self.name, self.procs = name, []
        self.port = self.start(name, config)
        for i in range(replicas):
            self.start(f"{name}-replica{i + 1}", ["--save", "", "--appendonly", "no",
                                                  "--replicaof", "127.0.0.1", str(self.port)])
        if replicas:
            def linked():
                info = redis_cli(self.port, "info", "replication")
                return f"connected_slaves:{replicas}" in info and "state=online" in info \
                    and info.count("state=online") == replicas
            poll(linked, f"redis {name}: {replicas} replicas online", self.procs)

    def start(self, name, config):
        port = free_port()
        d = os.path.join(TMP, name)
        os.makedirs(d, exist_ok=True)
        p = spawn(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                         "--dir", d, "--protected-mode", "yes", "--daemonize", "no"] + config)
        self.procs.append(p)
        poll(lambda: redis_cli(port, "ping").strip() == "PONG", f"redis {name}", [p])
        return port


# --- measuring -------------------------------------------------------------------------------
def redis_benchmark(port, tests, pipeline):
    """{"SET": (ops/s, p99 ms or None), ...} from one redis-benchmark run."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CLIENTS),
            "-n", str(REQUESTS), "-t", ",".join(tests), "-P", str(pipeline),
            "-d", str(VALUE_BYTES), "-r", str(KEYS), "--csv"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        say(f"  redis-benchmark on port {port} timed out after {RUN_TIMEOUT_S} s")
        return {}
    out = {}
    for row in csv.DictReader(io.StringIO(r.stdout)):
        test = (row.get("test") or "").upper()
        try:
            rps = float(row["rps"])
        except (KeyError, TypeError, ValueError):
            continue
        p99 = row.get("p99_latency_ms")
        out[test] = (rps, float(p99) if p99 not in (None, "") else None)
    if not out:
        say(f"  redis-benchmark on port {port} gave no figures: {r.stderr.strip()[-200:]}")
    return out


def driftkv_bench(port, tests, pipeline):
    """The same shapes with `driftkv bench`: SET is workload w, GET workload c."""
    out = {}
    for test in tests:
        workload = {"set": "w", "get": "c"}[test]
        argv = [BIN, "bench", "--resp", f"127.0.0.1:{port}", "--workload", workload,
                "--clients", str(CLIENTS), "--pipeline", str(pipeline), "--requests",
                str(REQUESTS), "--keys", str(KEYS), "--value-bytes", str(VALUE_BYTES),
                "--json", "--quiet"]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
            js = json.loads(r.stdout)
        except subprocess.TimeoutExpired:
            say(f"  driftkv bench on port {port} timed out after {RUN_TIMEOUT_S} s")
            continue
        except ValueError:
            say(f"  driftkv bench on port {port} failed: {r.stderr.strip()[-200:]}")
            continue
        if js.get("errors"):
            say(f"  driftkv bench on port {port}, {test.upper()} -P {pipeline}: "
                f"{js['errors']} errors of {js['ops']} ({js.get('first_error', '')})")
        if js.get("errors", 0) > 0.01 * max(js.get("ops", 0), 1):
            say("  (more than 1 % errors: the run is left out of the table)")
            continue
        out[test.upper()] = (js["ops_per_s"], js["latency_ms"]["p99"])
    return out


# (row label, driftkv setup, Redis setup, test, pipeline)
ROWS = [
    ("one node (`--n 1`, group commit) SET, no pipeline", "one", "plain", "set", 1),
    ("one node GET, no pipeline", "one", "plain", "get", 1),
    ("one node SET, pipeline 16", "one", "plain", "set", 16),
    ("one node GET, pipeline 16", "one", "plain", "get", 16),
    ("one node SET, pipeline 16, same durability (Redis `appendfsync always`)", "one", "always", "set", 16),
    ("one node SET, no pipeline, same durability", "one", "always", "set", 1),
    ("one node SET, pipeline 16, `--durability none` vs Redis without persistence", "none", "plain", "set", 16),
    ("three nodes N=3 R=W=quorum vs Redis primary + 2 replicas: SET, no pipeline", "three", "replicas", "set", 1),
    ("three nodes GET, no pipeline", "three", "replicas", "get", 1),
    ("three nodes SET, pipeline 16", "three", "replicas", "set", 16),
    ("three nodes GET, pipeline 16", "three", "replicas", "get", 16),
]
REDIS_NAMES = {"plain": "no persistence", "always": "appendfsync always",
               "replicas": "primary + 2 replicas"}


# Each benchmark invocation of a round, (product, setup, tests, pipeline): every driftkv run
# next to the Redis runs it is compared with, SET before GET so that reads find keys. The
# one-node group-commit runs serve both the no-persistence and the same-durability rows.
PLAN = [
    ("driftkv", "one", ["set", "get"], 1),
    ("redis", "plain", ["set", "get"], 1),
    ("redis", "always", ["set"], 1),
    ("driftkv", "one", ["set", "get"], 16),
    ("redis", "plain", ["set", "get"], 16),
    ("redis", "always", ["set"], 16),
    ("driftkv", "none", ["set"], 16),
    ("driftkv", "three", ["set", "get"], 1),
    ("redis", "replicas", ["set", "get"], 1),
    ("driftkv", "three", ["set", "get"], 16),
    ("redis", "replicas", ["set", "get"], 16),
]


def fmt_rate(x):
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M/s"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k/s"
    return f"{x:.0f}/s"


def cell(v):
    if not v:
        return "—"
    rate, p99 = v
    return fmt_rate(rate) + (f", p99 {p99:.2f} ms" if p99 is not None else "")


def median(samples):
    """The median of (ops/s, p99) samples, each taken separately."""
    if not samples:
        return None
    rates = [s[0] for s in samples]
    p99s = [s[1] for s in samples if s[1] is not None]
    return statistics.median(rates), (statistics.median(p99s) if p99s else None)


def table(title, results):
    lines = [f"**{title}**", "",
             "| setup | driftkv ops/s (p99) | Redis ops/s (p99) | ratio |",
             "|---|---|---|---|"]
    for (label, d, r, test, p) in ROWS:
        ours = median(results.get(("driftkv", d, p, test.upper()), []))
        theirs = median(results.get(("redis", r, p, test.upper()), []))
        ratio = f"{ours[0] / theirs[0]:.2f}×" if ours and theirs and theirs[0] else "—"
        lines.append(f"| {label} | {cell(ours)} | {cell(theirs)} ({REDIS_NAMES[r]}) | {ratio} |")
    return "\n".join(lines)


def vm_hwm_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    global TMP
    if not os.access(BIN, os.X_OK):
        die(f"no driftkv binary at {BIN}: build it first (cargo build --release -p driftkv)")
    for tool, pkg in (("redis-server", "redis-server"), ("redis-benchmark", "redis-tools"),
                      ("redis-cli", "redis-tools")):
        if not shutil.which(tool):
            die(f"{tool} is not installed: apt-get install -y {pkg}")
    if ROUNDS < 1 or REQUESTS < 1 or CLIENTS < 1:
        die("PERF_ROUNDS, PERF_REQUESTS and PERF_CLIENTS must be at least 1")
    TMP = tempfile.mkdtemp(prefix="driftkv-perf-")
    say(f"starting driftkv and Redis on loopback (data and logs in {TMP})")
    driftkv = {
        "one": Driftkv("one", 1, ["--n", "1"]),
        "none": Driftkv("none", 1, ["--n", "1", "--durability", "none"]),
        "three": Driftkv("three", 3, ["--n", "3"]),
    }
    redis = {
        "plain": Redis("plain", ["--save", "", "--appendonly", "no"]),
        "always": Redis("always", ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]),
        "replicas": Redis("replicas", ["--save", "", "--appendonly", "no"], replicas=2),
    }
    ports = {("driftkv", k): v.port for k, v in driftkv.items()}
    ports.update({("redis", k): v.port for k, v in redis.items()})
    tools = (("redis-benchmark", redis_benchmark), ("driftkv bench", driftkv_bench))
    results = {name: {} for name, _ in tools}
    started = time.time()
    for rnd in range(ROUNDS):
        say(f"round {rnd + 1} of {ROUNDS}")
        for tool, fn in tools:
            # Every other round runs backwards, so neither product always follows the other.
            order = PLAN if rnd % 2 == 0 else PLAN[::-1]
            for kind, setup, tests, p in order:
                got = fn(ports[(kind, setup)], tests, p)
                say(f"  {tool:15} {kind:7} {setup:8} -P {p:<2} " +
                    "  ".join(f"{t} {fmt_rate(v[0])}" for t, v in got.items()))
                for test, v in got.items():
                    results[tool].setdefault((kind, setup, p, test), []).append(v)
    elapsed = time.time() - started

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.machine())
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                   text=True).stdout.split()[2:3]
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu}); {version}, "
          f"Redis {(redis_version or ['?'])[0].removeprefix('v=')}; {CLIENTS} connections, "
          f"{REQUESTS} requests per test, {VALUE_BYTES}-byte values over {KEYS} keys; "
          f"median of {ROUNDS} round{'s' if ROUNDS != 1 else ''} "
          f"({elapsed:.0f} s){' (quick mode)' if QUICK else ''}; driftkv and Redis runs interleaved.")
    print()
    print(table("redis-benchmark", results["redis-benchmark"]))
    print()
    print(table("driftkv bench (the same shapes)", results["driftkv bench"]))
    print()
    print("**Peak memory (VmHWM) after the runs**")
    print()
    print("| process | peak RSS |")
    print("|---|---|")
    for setup in driftkv.values():
        for n in setup.nodes:
            kib = vm_hwm_kib(n["proc"].pid)
            print(f"| driftkv {n['id']} | {kib / 1024:.0f} MiB |" if kib else f"| driftkv {n['id']} | — |")
    for r in redis.values():
        for i, p in enumerate(r.procs):
            kib = vm_hwm_kib(p.pid)
            name = r.name if i == 0 else f"{r.name}-replica{i}"
            print(f"| redis {name} | {kib / 1024:.0f} MiB |" if kib else f"| redis {name} | — |")
    if KEEP:
        say(f"kept {TMP}")


if __name__ == "__main__":
    main()
