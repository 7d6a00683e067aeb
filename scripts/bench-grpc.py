#!/usr/bin/env python3
"""gRPC ShouldRateLimit through `limitree serve`, side by side with limitador.

Both servers get the same load from the same client (../shared/bench/rls-loadgen,
built outside the repo), the same default-shaped limits (a global and a
per-category limit, 20 categories, limits too high to reach: every call takes the
admit path), alternating per repetition. Server CPU per request and Redis CPU per
request are read from /proc (utime + stime of the process, all threads): the
figure that holds on a shared, noisy machine.

    LIMITREE_BIN=target/release/limitree \\
    LIMITADOR_BIN=/path/to/limitador/target/release/limitador-server \\
    RLS_LOADGEN=/path/to/rls-loadgen/target/release/rls-loadgen \\
      python3 scripts/bench-grpc.py --storage memory --reps 3

Prints one JSON line per run and a median summary; nothing is written into the repo.
limitador's limits file is ../shared/bench/vs-limitador/configs/limitador-throughput.yaml.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile

from benchlib import HERE, SHARED, cpu_of, free_port, stop, wait_port
LT_BIN = os.environ.get("LIMITREE_BIN", os.path.join(HERE, "..", "target", "release", "limitree"))
LD_BIN = os.environ.get("LIMITADOR_BIN", "limitador/target/release/limitador-server")
LOADGEN = os.environ.get("RLS_LOADGEN", "rls-loadgen/target/release/rls-loadgen")
LD_LIMITS = os.path.join(SHARED, "vs-limitador", "configs", "limitador-throughput.yaml")

LIMITREE_TOML = """
[store]
timeout = "1s"

[[trees]]
name = "slack"
[[trees.levels]]
name = "global"
limit = 1000000000
window = "30m"
algorithm = "fixed_window"
[[trees.levels]]
name = "category"
by = ["category"]
limit = 1000000000
window = "30m"
algorithm = "fixed_window"
"""








def start_redis(port, log):
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], stdout=log, stderr=log)
    wait_port(port, p, "redis-server")
    return p


def start(name, storage, redis_url, cfg, log):
    grpc = free_port()
    if name == "limitree":
        argv = [LT_BIN, "serve", "--config", cfg, "--http", f"127.0.0.1:{free_port()}",
                "--grpc", f"127.0.0.1:{grpc}"]
        if storage == "redis":
            argv += ["--redis", redis_url]
        env = dict(os.environ)
    else:
        st = ["memory"] if storage == "memory" else ["redis", redis_url]
        argv = [LD_BIN, "-b", "127.0.0.1", "-p", str(grpc), "-B", "127.0.0.1", "-P",
                str(free_port()), LD_LIMITS] + st
        env = dict(os.environ)
    p = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    wait_port(grpc, p, name)
    return p, grpc




def run(name, storage, a, cfg, log):
    redis = None
    redis_url = None
    if storage == "redis":
        rport = free_port()
        redis = start_redis(rport, log)
        redis_url = f"redis://127.0.0.1:{rport}"
    p, port = start(name, storage, redis_url, cfg, log)
    try:
        # Warm up (connections, script load), then measure.
        subprocess.run([LOADGEN, "bench", "--addr", f"http://127.0.0.1:{port}", "--domain", "slack",
                        "--secs", "2", "--concurrency", str(a.concurrency), "--conns", str(a.conns),
                        "--categories", "20"], check=True, capture_output=True)
        s0 = cpu_of(p.pid)
        r0 = cpu_of(redis.pid) if redis else 0.0
        out = subprocess.run([LOADGEN, "bench", "--addr", f"http://127.0.0.1:{port}", "--domain",
                              "slack", "--secs", str(a.secs), "--concurrency", str(a.concurrency),
                              "--conns", str(a.conns), "--categories", "20"],
                             check=True, capture_output=True, text=True).stdout
        s1 = cpu_of(p.pid)
        r1 = cpu_of(redis.pid) if redis else 0.0
    finally:
        stop(p)
        if redis:
            stop(redis)
    m = dict(re.findall(r"(\w+)=([\d.]+)", out))
    total = int(m["total"])
    return {
        "server": name, "storage": storage, "requests": total, "rps": float(m["rps"]),
        "ok": int(m["ok"]), "errors": int(m["errors"]), "p50_ms": float(m["p50_ms"]),
        "p99_ms": float(m["p99_ms"]),
        "server_us_per_req": round((s1 - s0) / total * 1e6, 2),
        "redis_us_per_req": round((r1 - r0) / total * 1e6, 2) if redis else None,
        "loadavg": os.getloadavg()[0],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", choices=["memory", "redis"], default="memory")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--servers", default="limitree,limitador")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "limitree.toml")
        with open(cfg, "w") as f:
            f.write(LIMITREE_TOML)
        with open(os.path.join(tmp, "servers.log"), "w") as log:
            for rep in range(a.reps):
                order = a.servers.split(",")
                if rep % 2:
                    order.reverse()
                for name in order:
                    row = run(name, a.storage, a, cfg, log)
                    row["rep"] = rep
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    for name in a.servers.split(","):
        mine = [r for r in rows if r["server"] == name]
        for key in ["rps", "p50_ms", "p99_ms", "server_us_per_req", "redis_us_per_req"]:
            vals = [r[key] for r in mine if r[key] is not None]
            if vals:
                print(f"{name} {a.storage} {key}: median {statistics.median(vals)} "
                      f"(min {min(vals)}, max {max(vals)})")


if __name__ == "__main__":
    main()
