"""What the bench scripts in this folder share: where ../shared/bench is, free
loopback ports, a process's CPU from /proc, waiting for a listener, and
stopping what a script started (by its Popen, never by name)."""

import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# ../shared/bench next to the repository (a worktree under wt/ has it one more
# level up); BENCH_SHARED overrides.
SHARED = os.environ.get("BENCH_SHARED") or next(
    (p for p in (os.path.join(HERE, "..", *[".."] * up, "shared", "bench") for up in (1, 2))
     if os.path.isdir(p)), os.path.join(HERE, "..", "..", "shared", "bench"))
HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_of(pid):
    """CPU seconds (user + system, all threads) the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def wait_port(port, proc, what):
    """Until `proc` listens on loopback `port` (20 s at most; exits if it died)."""
    for _ in range(400):
        if proc.poll() is not None:
            sys.exit(f"{what} exited: rc={proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port} within 20 s")


def stop(p, timeout=15):
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
