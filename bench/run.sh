#!/usr/bin/env bash
# Load benchmark of A2A `message/send`: switchyard (embedded store and :memory:) side by side
# with the official JS and Python SDK peer servers, in one run on the same machine.
#
#   bench/run.sh PATH_TO_SWITCHYARD_BINARY        (what `make bench` runs)
#
# Environment (all optional):
#   BENCH_DURATION      measured load per server, oha syntax (default 10s)
#   BENCH_PY_DURATION   measured load for the Python peer (default: BENCH_DURATION)
#   BENCH_WARMUP        un-measured load before each measurement (default 2s)
#   BENCH_CONNECTIONS   concurrent connections (default 32)
#   BENCH_SERVERS       comma-separated subset of: embedded,memory,js,python (default: all)
#   BENCH_PEERS_DIR     where shared/peers/setup.sh installs the peers (default /tmp/switchyard-peers)
#   BENCH_PEERS_SRC     the shared/peers checkout (default: ../shared/peers next to the repo)
#   BENCH_TOOLS_DIR     where oha is installed if it is not found (default ~/.cache/switchyard-bench)
#
# Output: a table on stdout and target/bench/results.json. Exits non-zero if any server
# answered with a non-2xx status, had transport errors, or did not complete a task.
set -euo pipefail

usage() { echo "usage: bench/run.sh PATH_TO_SWITCHYARD_BINARY" >&2; exit 2; }
[ $# -eq 1 ] || usage

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
[ -x "$BIN" ] || { echo "bench: switchyard binary not found or not executable: $1" >&2; exit 2; }

DURATION="${BENCH_DURATION:-10s}"
PY_DURATION="${BENCH_PY_DURATION:-$DURATION}"
WARMUP="${BENCH_WARMUP:-2s}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
SERVERS="${BENCH_SERVERS:-embedded,memory,js,python}"
PEERS_DIR="${BENCH_PEERS_DIR:-/tmp/switchyard-peers}"
PEERS_SRC="${BENCH_PEERS_SRC:-$REPO/../shared/peers}"
TOOLS_DIR="${BENCH_TOOLS_DIR:-$HOME/.cache/switchyard-bench}"
OUT_DIR="$REPO/target/bench"

# No explicit id in the message: every request creates a fresh task, so we measure the full
# task lifecycle (create, run the agent, persist, answer) rather than a cached lookup.
BODY='{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":"hello"}]}}}'

WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")"
PIDS=()

# Every server we start is killed on any exit path, so an interrupted or failed run never
# leaves a process holding a port or a CPU.
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }
wants() { [[ ",$SERVERS," == *",$1,"* ]]; }

# --- load generator ---------------------------------------------------------------------
# oha 1.16.0 needs --locked to build on current rustc; install it out of the repo tree so
# the bench never dirties the checkout or the user's ~/.cargo.
find_oha() {
  local c
  for c in "$(command -v oha 2>/dev/null || true)" "$HOME/.cargo/bin/oha" "$TOOLS_DIR/bin/oha"; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}
if ! OHA="$(find_oha)"; then
  log "oha not found; installing it into $TOOLS_DIR (about 5 minutes)"
  cargo install oha --locked --root "$TOOLS_DIR" >&2
  OHA="$TOOLS_DIR/bin/oha"
fi
# Older oha releases spell JSON output `--json`; newer ones `--output-format json`.
if "$OHA" --help 2>&1 | grep -q -- '--output-format'; then
  OHA_JSON=(--output-format json)
else
  OHA_JSON=(--json)
fi
OHA_VERSION="$("$OHA" --version 2>/dev/null | head -1)"

# --- peers ------------------------------------------------------------------------------
if wants js || wants python; then
  [ -x "$PEERS_SRC/setup.sh" ] || die "peer sources not found at $PEERS_SRC (set BENCH_PEERS_SRC)"
  PEERS_SRC="$(cd "$PEERS_SRC" && pwd)"
  "$PEERS_SRC/setup.sh" "$PEERS_DIR" >&2
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Peers print their banner before they actually listen (python prints, then starts
# uvicorn), so readiness is "a TCP connection succeeds", not "the banner appeared".
wait_for_port() {
  local pid=$1 port=$2 logf=$3 i
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; die "server (pid $pid) exited during startup"; }
    if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2).close()' "$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  cat "$logf" >&2
  die "server (pid $pid) did not listen on port $port within 30 s"
}

# switchyard binds port 0 and tells us which port it got; that avoids any port race.
wait_for_switchyard() {
  local pid=$1 logf=$2 i port
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { cat "$logf" "$logf.err" >&2; die "switchyard exited during startup"; }
    port="$(sed -n 's#^switchyard listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "$logf" | head -1)"
    if [ -n "$port" ]; then echo "$port"; return 0; fi
    sleep 0.1
  done
  cat "$logf" "$logf.err" >&2
  die "switchyard did not print its listening address within 30 s"
}

# Stop one server before the next is measured, so an idle process (or its background
# housekeeping) does not take CPU from the next run on this small machine.
stop_server() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Forget it, so the exit trap never signals a recycled pid.
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Peak RSS of the server process itself. Servers are started with exec semantics (a plain
# `cmd &`), so $! is node / python / switchyard, not a wrapper shell.
peak_rss_kib() {
  awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# One server: verify it completes a task, warm up, measure, re-verify, record peak RSS.
#   measure NAME LABEL PID PORT DURATION
measure() {
  local name=$1 label=$2 pid=$3 port=$4 dur=$5
  local url="http://127.0.0.1:$port/agents/echo"
  # A JSON-RPC error still comes back as HTTP 200, so oha alone cannot tell a fast error
  # path from real work: check one real answer before and after the load.
  python3 "$HERE/report.py" verify "$url" "$BODY" || die "$label: message/send did not complete a task"
  log "$label: warm-up $WARMUP"
  "$OHA" -z "$WARMUP" -c "$CONNECTIONS" -m POST -T application/json -d "$BODY" \
    --no-tui "${OHA_JSON[@]}" "$url" >/dev/null
  log "$label: measuring $dur with $CONNECTIONS connections"
  "$OHA" -z "$dur" -c "$CONNECTIONS" -m POST -T application/json -d "$BODY" \
    --no-tui "${OHA_JSON[@]}" "$url" >"$WORK/$name.oha.json"
  python3 "$HERE/report.py" verify "$url" "$BODY" || die "$label: message/send stopped completing tasks under load"
  local rss
  rss="$(peak_rss_kib "$pid")"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$label" "$dur" "$rss" "$WORK/$name.oha.json" >>"$WORK/runs.tsv"
  stop_server "$pid"
}

: >"$WORK/runs.tsv"

# --- switchyard -------------------------------------------------------------------------
cat >"$WORK/switchyard.yaml" <<'EOF'
agents:
  echo:
    type: echo
    description: Echoes text back
    end_state: completed
    chunk_delay_ms: 0
EOF

run_switchyard() {
  local name=$1 label=$2 data_dir=$3 pid port
  "$BIN" serve --config "$WORK/switchyard.yaml" --host 127.0.0.1 --port 0 --data-dir "$data_dir" \
    >"$WORK/$name.log" 2>"$WORK/$name.log.err" &
  pid=$!
  PIDS+=("$pid")
  port="$(wait_for_switchyard "$pid" "$WORK/$name.log")"
  measure "$name" "$label" "$pid" "$port" "$DURATION"
}

DATA_FS=""
if wants embedded; then
  mkdir -p "$WORK/data"
  # The durable store's speed depends on the filesystem under it (fsync on tmpfs is free).
  DATA_FS="$(df --output=fstype "$WORK/data" 2>/dev/null | tail -1 || echo unknown)"
  run_switchyard embedded "switchyard (embedded store)" "$WORK/data"
fi
if wants memory; then
  run_switchyard memory "switchyard (:memory:)" ":memory:"
fi

# --- official SDK peers -----------------------------------------------------------------
if wants js; then
  port="$(free_port)"
  PORT="$port" MODE=task END_STATE=completed CHUNK_DELAY_MS=0 \
    node "$PEERS_DIR/js/server.mjs" >"$WORK/js.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_for_port "$pid" "$port" "$WORK/js.log"
  measure js "JS SDK (@a2a-js/sdk)" "$pid" "$port" "$DURATION"
fi
if wants python; then
  port="$(free_port)"
  PORT="$port" MODE=task END_STATE=completed CHUNK_DELAY_MS=0 \
    "$PEERS_DIR/py/bin/python" "$PEERS_SRC/python/server.py" >"$WORK/python.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_for_port "$pid" "$port" "$WORK/python.log"
  measure python "Python SDK (a2a-sdk)" "$pid" "$port" "$PY_DURATION"
fi

# --- report -----------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
python3 "$HERE/report.py" summarize "$WORK/runs.tsv" "$OUT_DIR/results.json" \
  --connections "$CONNECTIONS" --warmup "$WARMUP" \
  --oha-version "$OHA_VERSION" \
  --switchyard-version "$("$BIN" version 2>/dev/null | head -1 | sed 's/^switchyard //' || echo unknown)" \
  --git-rev "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --data-fs "$DATA_FS" \
  --body "$BODY"
