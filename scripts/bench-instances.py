#!/usr/bin/env python3
"""Several instances, one Redis: 3 `limitree serve` processes (or 3 limitador
processes) sharing one redis-server, each driven by its own load client.

Throughput mode (default): per run, one fresh redis-server on a free loopback
port, 3 servers on it (free ports), a warm-up, then 3 load clients at once for
--secs: `wrk -t1 -c64` with the JSON bodies of ../shared/bench/vs-limitador/post.lua
(--client http), or rls-loadgen's `bench` over gRPC (--client grpc). Reads from
/proc the CPU (utime + stime, all threads) of every server and of redis-server,
and prints total decisions/s, server CPU µs per request (summed over the 3) and
redis-server CPU µs per decision. limitree and limitador alternate per
repetition. Limits are the default-policy shape (global + per-category),
`fixed_window`, too high to reach: every request takes the admit path.

Exactness mode (--mode exact): limits 100 (global) / 10 (per category) per 30 min,
one fresh redis-server per trial; rls-loadgen's `burst` sends --n calls over 20
categories, 64 in flight, its connections spread over the 3 instances; admitted
calls are counted across all instances. limitree must admit exactly 100.

Everything is started here and stopped here, by PID; nothing else is touched.
Every run is bounded in time (client durations, and timeouts on every wait).

    LIMITREE_BIN=target/release/limitree \\
    LIMITADOR_BIN=/path/to/limitador/target/release/limitador-server \\
    RLS_LOADGEN=/path/to/rls-loadgen/target/release/rls-loadgen \\
      python3 scripts/bench-instances.py --reps 3              # throughput, HTTP
      python3 scripts/bench-instances.py --client grpc --reps 3
      python3 scripts/bench-instances.py --mode exact --trials 3

Prints one JSON line per run and a median summary; nothing is written into the repo.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import HERE, SHARED, cpu_of, free_port, stop, wait_port
VS = os.path.join(SHARED, "vs-limitador")
LT_BIN = os.environ.get("LIMITREE_BIN", os.path.join(HERE, "..", "target", "release", "limitree"))
LD_BIN = os.environ.get("LIMITADOR_BIN", "limitador/target/release/limitador-server")
LOADGEN = os.environ.get("RLS_LOADGEN", "rls-loadgen/target/release/rls-loadgen")
INSTANCES = 3
# Longest a client run may take beyond its own duration before it is killed.
CLIENT_GRACE_S = 30


def limitree_toml(limit, small):
    """Trees `t` (what post.lua's bodies name) and `slack` (the gRPC domain),
    each the default-policy shape: `limit` globally, `small` per category, 30 min."""
    return '[store]\ntimeout = "1s"\n' + "".join(tree(name, limit, small) for name in ["t", "slack"])


def tree(name, limit, small):
    return f"""
[[trees]]
name = "{name}"
[[trees.levels]]
name = "global"
limit = {limit}
window = "30m"
algorithm = "fixed_window"
[[trees.levels]]
name = "category"
by = ["category"]
limit = {small}
window = "30m"
algorithm = "fixed_window"
"""






def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]






class Cluster:
    """One redis-server and INSTANCES servers of one kind on it."""

    def __init__(self, kind, limits, tmp, log):
        self.procs = []
        try:
            rport = free_port()
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=log, stderr=log)
            self.procs.append(self.redis)
            wait_port(rport, self.redis, "redis-server")
            url = f"redis://127.0.0.1:{rport}"
            self.servers = []  # (proc, http_port, grpc_port)
            for i in range(INSTANCES):
                http, grpc = free_port(), free_port()
                env = dict(os.environ)
                env.pop("RUST_LOG", None)  # each server at its default log level
                if kind == "limitree":
                    cfg = os.path.join(tmp, f"limitree-{limits}.toml")
                    argv = [LT_BIN, "serve", "--config", cfg, "--http", f"127.0.0.1:{http}",
                            "--grpc", f"127.0.0.1:{grpc}", "--redis", url]
                else:
                    cfg = os.path.join(VS, "configs", f"limitador-{limits}.yaml")
                    argv = [LD_BIN, "-b", "127.0.0.1", "-p", str(grpc), "-B", "127.0.0.1", "-P",
                            str(http), cfg, "redis", url]
                p = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
                self.procs.append(p)
                wait_port(http, p, f"{kind} {i}")
                wait_port(grpc, p, f"{kind} {i}")
                self.servers.append((p, http, grpc))
        except BaseException:
            self.close()
            raise

    def close(self):
        # Servers first, then the Redis they use.
        for p in reversed(self.procs):
            stop(p)


def wrk_argv(kind, port, secs):
    path = "/v1/check" if kind == "limitree" else "/check_and_report"
    return (["wrk", "-t1", "-c64", f"-d{secs}s", "-s", os.path.join(VS, "post.lua"),
             f"http://127.0.0.1:{port}{path}"],
            dict(os.environ, BODY_KIND=kind, REQ_PATH=path))


def grpc_argv(port, secs, domain):
    return ([LOADGEN, "bench", "--addr", f"http://127.0.0.1:{port}", "--domain", domain,
             "--secs", str(secs), "--concurrency", "64", "--conns", "4", "--categories", "20"],
            dict(os.environ))


def drive(kind, cluster, a, secs):
    """Runs the INSTANCES clients at once; returns (total requests, errors, wall s)."""
    clients = []
    for _, http, grpc in cluster.servers:
        if a.client == "http":
            argv, env = wrk_argv(kind, http, secs)
        else:
            # Both servers' configs here name the domain `slack` over gRPC.
            argv, env = grpc_argv(grpc, secs, "slack")
        clients.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
    t0 = time.time()
    outs = []
    try:
        for c in clients:
            out, _ = c.communicate(timeout=secs + CLIENT_GRACE_S)
            if c.returncode != 0:
                sys.exit(f"load client failed (rc={c.returncode}):\n{out}")
            outs.append(out)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
    wall = time.time() - t0
    total = errors = 0
    for out in outs:
        if a.client == "http":
            line = [l for l in out.splitlines() if l.startswith("RESULT ")]
            if not line:
                sys.exit("wrk printed no RESULT line:\n" + out)
            m = dict(kv.split("=") for kv in line[0].split()[1:])
            total += int(m["requests"])
            errors += sum(int(m[k]) for k in ["err_connect", "err_read", "err_write",
                                               "err_status", "err_timeout"])
        else:
            m = dict(re.findall(r"(\w+)=([\d.]+)", out))
            total += int(m["total"])
            errors += int(m["errors"]) + int(m["over_limit"]) + int(m["unknown"])
    return total, errors, wall


def throughput_run(kind, a, tmp, log):
    cluster = Cluster(kind, "throughput", tmp, log)
    try:
        drive(kind, cluster, a, a.warmup)
        la0 = loadavg()
        pids = [p.pid for p, _, _ in cluster.servers]
        s0 = sum(cpu_of(p) for p in pids)
        r0 = cpu_of(cluster.redis.pid)
        total, errors, wall = drive(kind, cluster, a, a.secs)
        s1 = sum(cpu_of(p) for p in pids)
        r1 = cpu_of(cluster.redis.pid)
    finally:
        cluster.close()
    return {
        "server": kind, "client": a.client, "instances": INSTANCES, "requests": total,
        "errors_or_denied": errors, "decisions_per_s": round(total / a.secs),
        "server_us_per_req": round((s1 - s0) / total * 1e6, 2),
        "redis_us_per_decision": round((r1 - r0) / total * 1e6, 2),
        "wall_s": round(wall, 2), "loadavg_before": la0, "loadavg_after": loadavg(),
    }


def exact_run(kind, a, tmp, log):
    cluster = Cluster(kind, "scenario", tmp, log)
    try:
        addrs = ",".join(f"http://127.0.0.1:{g}" for _, _, g in cluster.servers)
        out = subprocess.run(
            [LOADGEN, "burst", "--addr", addrs, "--domain", "slack", "--n", str(a.n),
             "--concurrency", "64", "--conns", str(4 * INSTANCES), "--categories", "20"],
            check=True, capture_output=True, text=True, timeout=120).stdout
    finally:
        cluster.close()
    m = dict(re.findall(r"(\w+)=(\d+)", out))
    return {
        "server": kind, "instances": INSTANCES, "n": a.n, "admitted": int(m["ok"]),
        "limit": 100, "max_admitted_per_category": int(m["max_ok_per_category"]),
        "categories_over_10": int(m["categories_over_10"]), "errors": int(m["errors"]),
        "loadavg_after": loadavg(),
    }


def summary(rows, servers, keys):
    for name in servers:
        mine = [r for r in rows if r["server"] == name]
        for key in keys:
            vals = [r[key] for r in mine]
            if vals:
                print(f"{name} {key}: median {statistics.median(vals)} "
                      f"(min {min(vals)}, max {max(vals)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["throughput", "exact"], default="throughput")
    ap.add_argument("--client", choices=["http", "grpc"], default="http")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--n", type=int, default=5000, help="calls per exactness trial")
    ap.add_argument("--servers", default="limitree,limitador")
    a = ap.parse_args()
    servers = a.servers.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for limits, (big, small) in [("throughput", (10**9, 10**9)), ("scenario", (100, 10))]:
            with open(os.path.join(tmp, f"limitree-{limits}.toml"), "w") as f:
                f.write(limitree_toml(big, small))
        with open(os.path.join(tmp, "servers.log"), "w") as log:
            count = a.reps if a.mode == "throughput" else a.trials
            for rep in range(count):
                order = servers if rep % 2 == 0 else servers[::-1]
                for name in order:
                    if a.mode == "throughput":
                        row = throughput_run(name, a, tmp, log)
                    else:
                        row = exact_run(name, a, tmp, log)
                    row["rep"] = rep
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    if a.mode == "throughput":
        summary(rows, servers, ["decisions_per_s", "server_us_per_req", "redis_us_per_decision"])
    else:
        summary(rows, servers, ["admitted", "max_admitted_per_category"])
        bad = [r for r in rows if r["server"] == "limitree" and r["admitted"] != 100]
        if bad:
            sys.exit(f"limitree admitted other than 100 in {len(bad)} trial(s)")


if __name__ == "__main__":
    main()
