#!/usr/bin/env python3
"""Redis instructions per `decide.lua` call, deterministic enough for a noisy box.

Two steps:

  capture  runs `limitree serve` on a fresh redis-server (free ports, loopback) under
           `wrk -t1 -c64` (the side-by-side harness's JSON body), records the script
           calls with MONITOR for a few seconds and writes them to a file;
  replay   starts redis-server under callgrind (instrumentation off), loads a
           decide.lua, replays the captured calls (the same keys and arguments, so
           the same batches), counts the server's user-space instructions for
           exactly N calls and prints them per call.

  python3 scripts/callgrind-decide.py capture --bin target/release/limitree \
      --config ../shared/bench/vs-limitador/configs/limitree-throughput.toml --out calls.txt
  python3 scripts/callgrind-decide.py replay --calls calls.txt \
      --script crates/limitree/src/store/redis/decide.lua --n 500 --min-keys 10

Replaying the same capture with two versions of the script compares them on the
same batches (kernel time, which callgrind does not see, is the same for both).
The capture's key names are replayed as they are, so a script that changed the
key codes still reads and writes its own encoding. Every process it starts is
stopped by PID; nothing else is touched.
"""

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import SHARED, free_port, stop




def wait_ping(port, secs=20):
    end = time.time() + secs
    while time.time() < end:
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True)
        if r.stdout.strip() == b"PONG":
            return
        time.sleep(0.1)
    raise SystemExit(f"redis on {port} did not answer")




def capture(a):
    rport, hport = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="limitree-capture-")
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", tmp],
                             stdout=subprocess.DEVNULL)
    server = monitor = None
    try:
        wait_ping(rport)
        env = dict(os.environ, RUST_LOG="warn")
        server = subprocess.Popen([a.bin, "serve", "--config", a.config, "--http",
                                   f"127.0.0.1:{hport}", "--grpc", "off", "--redis",
                                   f"redis://127.0.0.1:{rport}"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["curl", "-sf", f"http://127.0.0.1:{hport}/healthz"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("limitree serve did not become ready")
        post = os.path.join(SHARED, "vs-limitador", "post.lua")
        wrk_env = dict(os.environ, BODY_KIND="limitree", REQ_PATH="/v1/check")
        with open(a.out, "wb") as out:
            monitor = subprocess.Popen(["redis-cli", "-p", str(rport), "monitor"], stdout=out)
            subprocess.run(["wrk", "-t1", f"-c{a.conns}", f"-d{a.secs}s", "-s", post,
                            f"http://127.0.0.1:{hport}/v1/check"], env=wrk_env,
                           stdout=subprocess.DEVNULL, check=True)
            stop(monitor)
        n = sum(1 for line in open(a.out, errors="replace") if '"EVALSHA"' in line)
        print(f"{n} script calls captured in {a.out}")
    finally:
        for p in (monitor, server, redis):
            if p:
                stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


def unrepr(s):
    """Undoes redis-cli MONITOR's quoting of one argument."""
    out, i = bytearray(), 0
    escapes = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}
    while i < len(s):
        c = s[i]
        if c == "\\":
            n = s[i + 1]
            if n == "x":
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            out += escapes[n]
            i += 2
            continue
        out += c.encode("utf-8", "surrogateescape")
        i += 1
    return bytes(out)


def resp(args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in args)


def replay(a):
    token = re.compile(r'"((?:[^"\\]|\\.)*)"')
    calls = []
    for line in open(a.calls, errors="surrogateescape"):
        if '"EVALSHA"' not in line:
            continue
        args = [unrepr(m) for m in token.findall(line)]
        if int(args[2]) >= a.min_keys:
            calls.append(args[2:])
    if not calls:
        raise SystemExit(f"no script call with at least {a.min_keys} keys in {a.calls}")
    script = open(a.script, "rb").read()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="limitree-callgrind-")
    out = os.path.join(tmp, "cg.out.%p")
    vg = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                           f"--callgrind-out-file={out}", "redis-server", "--port", str(port),
                           "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                           "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ping(port, 60)
        sock = socket.create_connection(("127.0.0.1", port))
        f = sock.makefile("rb")

        def read_reply():
            line = f.readline()
            if line[:1] == b"$":
                size = int(line[1:])
                return f.read(size + 2)[:-2] if size >= 0 else b""
            if line[:1] == b"-":
                raise SystemExit(f"redis answered {line!r}")
            return line

        def command(*args):
            sock.sendall(resp(list(args)))
            return read_reply()

        sha = command(b"SCRIPT", b"LOAD", script).strip()

        def run(n):
            batch = []
            for i in range(n):
                batch.append(resp([b"EVALSHA", sha] + calls[i % len(calls)]))
                if len(batch) == 50 or i == n - 1:
                    sock.sendall(b"".join(batch))
                    for _ in batch:
                        read_reply()
                    batch = []

        run(min(50, a.n))  # warm: the script compiled, the keys there
        subprocess.run(["callgrind_control", "-i", "on", str(vg.pid)], capture_output=True)
        run(a.n)
        subprocess.run(["callgrind_control", "-i", "off", str(vg.pid)], capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(vg.pid)], capture_output=True)
        sock.close()
    finally:
        stop(vg, timeout=60)
    totals = []
    for path in glob.glob(os.path.join(tmp, "cg.out.*")):
        for line in open(path):
            if line.startswith("totals:"):
                totals.append(int(line.split()[1]))
    shutil.rmtree(tmp, ignore_errors=True)
    if not totals or max(totals) == 0:
        raise SystemExit("callgrind counted nothing")
    keys = sum(int(c[0]) for c in calls) / len(calls)
    replayed = [calls[i % len(calls)] for i in range(a.n)]
    # ARGV[5] (after the keys and ARGV[1..4]) holds the decisions.
    decisions = sum(decisions_in(c[1 + int(c[0]) + 4]) for c in replayed)
    print(f"{a.script}: {max(totals) / a.n:,.0f} instructions per call, "
          f"{max(totals) / decisions:,.0f} per decision "
          f"({a.n} calls, {decisions / a.n:.1f} decisions and {keys:.1f} keys per call on average)")


def decisions_in(packed):
    """How many decisions a call's ARGV[5] holds (protocol.rs's layout: per
    decision its mode, its number of levels and of shared parents, 3 bytes per
    shared parent, then 6 bytes per level)."""
    pos, n = 0, 0
    while pos < len(packed):
        pos += 3 + 3 * packed[pos + 2] + 6 * packed[pos + 1]
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    c = sub.add_parser("capture")
    c.add_argument("--bin", default="target/release/limitree")
    c.add_argument("--config", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--secs", type=int, default=3)
    c.add_argument("--conns", type=int, default=64)
    r = sub.add_parser("replay")
    r.add_argument("--calls", required=True)
    r.add_argument("--script", required=True)
    r.add_argument("--n", type=int, default=500)
    r.add_argument("--min-keys", type=int, default=1)
    a = ap.parse_args()
    for tool in (["redis-server", "redis-cli", "wrk", "curl"] if a.step == "capture"
                 else ["redis-server", "redis-cli", "valgrind", "callgrind_control"]):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed")
    capture(a) if a.step == "capture" else replay(a)


if __name__ == "__main__":
    sys.exit(main())
