#!/usr/bin/env bash
# User-space instructions per gRPC `ShouldRateLimit` call of `limitree serve`,
# counted by callgrind: deterministic, so it separates changes a noisy shared
# machine cannot. Starts the server under valgrind on free loopback ports (memory
# store, the bench-grpc.py policy), warms up with WARMUP calls, counts exactly
# CALLS calls from the shared load client (64 in flight over 4 connections, one
# descriptor `[category=cat-N]` over 20 categories), dumps (callgrind.out.1 in
# OUT_DIR: read it with callgrind_annotate), and stops the server
# it started (by PID). Prints instructions per call.
#
#   LIMITREE_BIN=target/release/limitree RLS_LOADGEN=…/rls-loadgen \
#     scripts/callgrind-grpc.sh [OUT_DIR]        # RUST_LOG is passed through
set -euo pipefail
BIN=${LIMITREE_BIN:-target/release/limitree}
LOADGEN=${RLS_LOADGEN:-rls-loadgen/target/release/rls-loadgen}
CALLS=${CALLS:-4000}
WARMUP=${WARMUP:-2000}
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC=$(free_port)
HTTP=$(free_port)
cat >"$OUT/limitree.toml" <<'TOML'
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
TOML
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$BIN" serve --config "$OUT/limitree.toml" --http "127.0.0.1:$HTTP" --grpc "127.0.0.1:$GRPC" \
  >"$OUT/server.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$GRPC),0.2)" 2>/dev/null; then break; fi
  kill -0 "$PID" || { cat "$OUT/server.log"; exit 1; }
  sleep 0.1
done
load() { "$LOADGEN" burst --addr "http://127.0.0.1:$GRPC" --domain slack --n "$1" \
  --concurrency 64 --conns 4 --categories 20 --prefix cat; }
load "$WARMUP" >/dev/null
# Count from here: zero after the warm-up, dump after exactly CALLS calls.
callgrind_control -z "$PID" >/dev/null
load "$CALLS" | tee "$OUT/load.txt"
callgrind_control -d "$PID" >/dev/null
FILE="$OUT/callgrind.out.1"
IR=$(callgrind_annotate "$FILE" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
echo "file=$FILE instructions=$IR calls=$CALLS per_call=$((IR / CALLS))"
