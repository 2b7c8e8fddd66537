#!/usr/bin/env bash
# Load benchmark of A2A `message/send`: switchyard (embedded store, :memory: and Redis) side
# by side with the official JS and Python SDK peer servers, in one run on the same machine,
# plus end-to-end tasks/s through the Redis shared queue with 1 and 2 switchyard instances.
#
#   bench/run.sh PATH_TO_SWITCHYARD_BINARY        (what `make bench` runs)
#
# Environment (all optional):
#   BENCH_DURATION      measured load per server, oha syntax (default 10s)
#   BENCH_PY_DURATION   measured load for the Python peer (default: BENCH_DURATION)
#   BENCH_WARMUP        un-measured load before each measurement (default 2s)
#   BENCH_CONNECTIONS   concurrent connections (default 32)
#   BENCH_SERVERS       comma-separated subset of: ceiling,embedded,memory,auth,redis,redis-cluster,
#                       redis-queue,capture,js,python (default: all). `ceiling` is the harness's
#                       ceiling: examples/bench_ceiling.rs, an axum server that answers with a
#                       canned completed task (no store, no agent). `redis-cluster` runs
#                       switchyard on a Redis Cluster of three masters on this machine. `capture` is the capture-session
#                       benchmark (bench/capture.py): ingest req/s into one session and
#                       ingest-to-live-stream latency, on the embedded store, :memory: and Redis. The redis rows need `redis-server` on PATH; without it
#                       they are skipped with a note, not failed.
#   BENCH_PEERS_DIR     where shared/peers/setup.sh installs the peers (default /tmp/switchyard-peers)
#   BENCH_PEERS_SRC     the shared/peers checkout (default: ../shared/peers next to the repo)
#   BENCH_TOOLS_DIR     where oha is installed if it is not found (default ~/.cache/switchyard-bench)
#   BENCH_PROFILE       cargo profile the ceiling server is built with, to match the switchyard
#                       binary under test (default release; `make bench` measures `dist`)
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
SERVERS="${BENCH_SERVERS:-ceiling,embedded,memory,auth,redis,redis-cluster,redis-queue,capture,js,python}"
OHA_AUTH=()
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
  # redis-server's working directory (its AOF) lives in $WORK too, so it goes only after
  # redis-server itself has exited.
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

# Forget a pid that has been reaped, so the exit trap never signals a recycled pid.
forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
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
  forget_pid "$pid"
}

# Peak RSS of the server process itself. Servers are started with exec semantics (a plain
# `cmd &`), so $! is node / python / switchyard, not a wrapper shell.
peak_rss_kib() {
  awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# redis-server outlives a single row, so its VmHWM is reset before each Redis row (writing
# 5 to clear_refs, Linux >= 4.0) to get that row's peak rather than the run's so far.
REDIS_RSS_RESET=1
reset_peak_rss() {
  echo 5 >"/proc/$1/clear_refs" 2>/dev/null || {
    [ "$REDIS_RSS_RESET" = 0 ] || log "cannot reset VmHWM of pid $1: redis-server peak RSS is since its start"
    REDIS_RSS_RESET=0
  }
}

# runs.tsv, one line per row (tab-separated; report.py reads it):
#   name  label  duration  switchyard/server peak RSS KiB (comma-separated, one per process)
#   oha JSON (comma-separated, one per concurrent oha run)  redis-server peak RSS KiB or ""
#   kind ("send": one server, one oha run; "queue": Redis shared-queue row)
#   connections per oha run

# One server: verify it completes a task, warm up, measure, re-verify, record peak RSS.
#   measure NAME LABEL PID PORT DURATION [REDIS_PID]
measure() {
  local name=$1 label=$2 pid=$3 port=$4 dur=$5 redis_pid=${6:-}
  local url="http://127.0.0.1:$port/agents/echo"
  # A JSON-RPC error still comes back as HTTP 200, so oha alone cannot tell a fast error
  # path from real work: check one real answer before and after the load.
  python3 "$HERE/report.py" verify "$url" "$BODY" || die "$label: message/send did not complete a task"
  log "$label: warm-up $WARMUP"
  "$OHA" -z "$WARMUP" -c "$CONNECTIONS" -m POST -T application/json -d "$BODY" \
    "${OHA_AUTH[@]}" --no-tui "${OHA_JSON[@]}" "$url" >/dev/null
  log "$label: measuring $dur with $CONNECTIONS connections"
  "$OHA" -z "$dur" -c "$CONNECTIONS" -m POST -T application/json -d "$BODY" \
    "${OHA_AUTH[@]}" --no-tui "${OHA_JSON[@]}" "$url" >"$WORK/$name.oha.json"
  python3 "$HERE/report.py" verify "$url" "$BODY" || die "$label: message/send stopped completing tasks under load"
  local rss redis_rss=""
  rss="$(peak_rss_kib "$pid")"
  [ -z "$redis_pid" ] || redis_rss="$(peak_rss_kib "$redis_pid")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$label" "$dur" "$rss" "$WORK/$name.oha.json" \
    "$redis_rss" send "$CONNECTIONS" >>"$WORK/runs.tsv"
  stop_server "$pid"
}

: >"$WORK/runs.tsv"

# --- switchyard -------------------------------------------------------------------------
CONFIG="$HERE/echo.yaml"

# Start one switchyard; sets SY_PID and SY_PORT.
#   start_switchyard NAME DATA_DIR [EXTRA SERVE ARGS...]
start_switchyard() {
  local name=$1 data_dir=$2
  shift 2
  "$BIN" serve --config "$CONFIG" --host 127.0.0.1 --port 0 --data-dir "$data_dir" "$@" \
    >"$WORK/$name.log" 2>"$WORK/$name.log.err" &
  SY_PID=$!
  PIDS+=("$SY_PID")
  SY_PORT="$(wait_for_switchyard "$SY_PID" "$WORK/$name.log")"
}

run_switchyard() {
  local name=$1 label=$2 data_dir=$3
  start_switchyard "$name" "$data_dir"
  measure "$name" "$label" "$SY_PID" "$SY_PORT" "$DURATION"
}

# The harness's ceiling: HTTP, JSON and oha on this machine, with no store and no agent.
if wants ceiling; then
  profile="${BENCH_PROFILE:-release}"
  (cd "$REPO" && cargo build --profile "$profile" --quiet --example bench_ceiling) >&2 || die "cannot build examples/bench_ceiling.rs"
  port="$(free_port)"
  "$REPO/target/$profile/examples/bench_ceiling" "$port" >"$WORK/ceiling.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_for_port "$pid" "$port" "$WORK/ceiling.log"
  measure ceiling "ceiling (axum, canned task, no store)" "$pid" "$port" "$DURATION"
fi

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
# Authentication's cost: the same in-memory store, every request with an app token (an ES256
# JWT minted for the default app), compared with the row above.
if wants auth; then
  start_switchyard auth ":memory:" --auth-secret bench-admin-secret
  TOKEN="$(curl -sf -X POST -H 'authorization: Bearer bench-admin-secret' \
    "http://127.0.0.1:$SY_PORT/admin/apps/default/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')" ||
    die "auth: cannot mint an app token"
  OHA_AUTH=(-H "authorization: Bearer $TOKEN")
  export BENCH_AUTHORIZATION="Bearer $TOKEN"
  measure auth "switchyard (:memory:, app token)" "$SY_PID" "$SY_PORT" "$DURATION"
  OHA_AUTH=()
  unset BENCH_AUTHORIZATION
fi

# --- switchyard on Redis ----------------------------------------------------------------
# One private redis-server for all Redis rows (each row uses its own --redis-prefix, so rows
# share no data); it is stopped before the peers run, and by the exit trap on any failure.
REDIS_PID=""
REDIS_PORT=""
REDIS_NOTE=""
REDIS_VERSION=""

redis_ping() {
  python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5)
s.settimeout(0.5)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)' "$1" 2>/dev/null
}

start_redis() {
  local attempt i port
  mkdir -p "$WORK/redis"
  # A free port can be taken between probing it and redis-server binding it; try again then.
  for attempt in 1 2 3; do
    port="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
      --dir "$WORK/redis" --daemonize no >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for i in $(seq 1 100); do
      kill -0 "$REDIS_PID" 2>/dev/null || break
      if redis_ping "$port"; then REDIS_PORT=$port; return 0; fi
      sleep 0.1
    done
    stop_server "$REDIS_PID"
    REDIS_PID=""
  done
  cat "$WORK/redis.log" >&2
  die "redis-server did not answer PING (3 attempts)"
}

# Start one oha run in the background; sets OHA_PID. The exit trap kills it on failure.
#   oha_bg DURATION CONNECTIONS PORT OUT_FILE
oha_bg() {
  "$OHA" -z "$1" -c "$2" -m POST -T application/json -d "$BODY" \
    --no-tui "${OHA_JSON[@]}" "http://127.0.0.1:$3/agents/echo" >"$4" &
  OHA_PID=$!
  PIDS+=("$OHA_PID")
}
wait_oha() {
  local pid=$1 rc=0
  wait "$pid" || rc=$?
  forget_pid "$pid"
  [ "$rc" -eq 0 ] || die "oha (pid $pid) failed with status $rc"
}

# End-to-end tasks/s through the shared queue: N instances on one Redis and one prefix, and
# always two concurrent oha runs of CONNECTIONS/2 connections (with 1 instance both target
# it, with 2 each targets one instance), so the load generator is the same in both rows and
# only the number of instances changes. Each blocking message/send is one task; it runs on the
# instance it was sent to when a worker or prefetch slot (--redis-prefetch) is free there (kept
# back: written once, when its turn ends), else it is queued on the stream for either instance.
#   run_queue NAME LABEL INSTANCES
run_queue() {
  local name=$1 label=$2 n=$3 prefix="bench-$1-$$"
  local per=$(( CONNECTIONS / 2 )); [ "$per" -ge 1 ] || per=1
  local pids=() ports=() i k url p rss=() outs=() ohas=()
  reset_peak_rss "$REDIS_PID"
  for i in $(seq 1 "$n"); do
    start_switchyard "$name-$i" ":memory:" --redis-url "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$prefix"
    pids+=("$SY_PID")
    ports+=("$SY_PORT")
  done
  for p in "${ports[@]}"; do
    python3 "$HERE/report.py" verify "http://127.0.0.1:$p/agents/echo" "$BODY" \
      || die "$label: message/send did not complete a task on port $p"
  done
  log "$label: warm-up $WARMUP (2 oha runs x $per connections)"
  for k in 0 1; do
    oha_bg "$WARMUP" "$per" "${ports[$(( k % n ))]}" /dev/null
    ohas+=("$OHA_PID")
  done
  for p in "${ohas[@]}"; do wait_oha "$p"; done
  ohas=()
  log "$label: measuring $DURATION (2 concurrent oha runs x $per connections)"
  for k in 0 1; do
    oha_bg "$DURATION" "$per" "${ports[$(( k % n ))]}" "$WORK/$name.$k.oha.json"
    ohas+=("$OHA_PID")
    outs+=("$WORK/$name.$k.oha.json")
  done
  for p in "${ohas[@]}"; do wait_oha "$p"; done
  for p in "${ports[@]}"; do
    python3 "$HERE/report.py" verify "http://127.0.0.1:$p/agents/echo" "$BODY" \
      || die "$label: message/send stopped completing tasks under load (port $p)"
  done
  for p in "${pids[@]}"; do rss+=("$(peak_rss_kib "$p")"); done
  local redis_rss
  redis_rss="$(peak_rss_kib "$REDIS_PID")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$label" "$DURATION" \
    "$(IFS=,; echo "${rss[*]}")" "$(IFS=,; echo "${outs[*]}")" "$redis_rss" queue "$per" >>"$WORK/runs.tsv"
  for p in "${pids[@]}"; do stop_server "$p"; done
}

# Capture sessions: bench/capture.py starts its own servers (one per backend) and prints its
# own table, shown after the message/send tables.
CAPTURED=0
run_capture() {
  local redis_url=$1 format=()
  [ "${OHA_JSON[0]}" != "--output-format" ] || format=(--oha-output-format)
  mkdir -p "$WORK/capture-data" "$OUT_DIR"
  python3 "$HERE/capture.py" --bin "$BIN" --oha "$OHA" "${format[@]}" --config "$CONFIG" \
    --duration "$DURATION" --warmup "$WARMUP" --connections "$CONNECTIONS" \
    --data-dir "$WORK/capture-data" ${redis_url:+--redis-url "$redis_url"} --out "$OUT_DIR/capture.json" \
    >"$WORK/capture.table" || die "capture benchmark failed"
  CAPTURED=1
}

if wants redis || wants redis-queue || wants capture; then
  if ! command -v redis-server >/dev/null 2>&1; then
    REDIS_NOTE="redis rows skipped: redis-server is not on PATH"
    log "NOTE: $REDIS_NOTE"
  else
    REDIS_VERSION="$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p' | head -1)"
    start_redis
    log "redis-server $REDIS_VERSION (pid $REDIS_PID) on 127.0.0.1:$REDIS_PORT"
    if wants redis; then
      reset_peak_rss "$REDIS_PID"
      start_switchyard redis ":memory:" \
        --redis-url "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "bench-redis-$$"
      measure redis "switchyard (redis)" "$SY_PID" "$SY_PORT" "$DURATION" "$REDIS_PID"
    fi
    if wants redis-queue; then
      run_queue redis-queue-1 "switchyard redis, 1 instance" 1
      run_queue redis-queue-2 "switchyard redis, 2 instances" 2
    fi
    if wants capture; then
      run_capture "redis://127.0.0.1:$REDIS_PORT"
    fi
    stop_server "$REDIS_PID"
    REDIS_PID=""
  fi
fi

# --- switchyard on a Redis Cluster ------------------------------------------------------
# Three masters on this machine, joined with CLUSTER ADDSLOTSRANGE / MEET. A deployment's keys
# share one hash tag, so one master does all of its work: the row shows what the cluster
# client costs next to the single-server row, not what sharding could add.
if wants redis-cluster; then
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    log "NOTE: redis-cluster row skipped: redis-server or redis-cli is not on PATH"
  else
    [ -n "$REDIS_VERSION" ] || REDIS_VERSION="$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p' | head -1)"
    CLUSTER_PIDS=()
    CLUSTER_PORTS=()
    for i in 0 1 2; do
      # A node's cluster bus listens 10000 above its port, so the port must be <= 55535.
      port="$(python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p <= 55535:
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", p + 10000)); print(p); break
        except OSError:
            pass
        finally:
            b.close()
    s.close()')"
      mkdir -p "$WORK/cluster-$i"
      redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
        --cluster-enabled yes --dir "$WORK/cluster-$i" --daemonize no >"$WORK/cluster-$i.log" 2>&1 &
      CLUSTER_PIDS+=("$!")
      PIDS+=("$!")
      CLUSTER_PORTS+=("$port")
    done
    for i in 0 1 2; do
      for k in $(seq 1 100); do redis_ping "${CLUSTER_PORTS[$i]}" && break; sleep 0.1; done
      redis_ping "${CLUSTER_PORTS[$i]}" || { cat "$WORK/cluster-$i.log" >&2; die "cluster node on port ${CLUSTER_PORTS[$i]} did not answer PING"; }
      first=$(( i * 5461 )); last=$(( i == 2 ? 16383 : (i + 1) * 5461 - 1 ))
      redis-cli -p "${CLUSTER_PORTS[$i]}" cluster addslotsrange "$first" "$last" >/dev/null
      [ "$i" = 0 ] || redis-cli -p "${CLUSTER_PORTS[0]}" cluster meet 127.0.0.1 "${CLUSTER_PORTS[$i]}" >/dev/null
    done
    for i in 0 1 2; do
      for k in $(seq 1 200); do
        redis-cli -p "${CLUSTER_PORTS[$i]}" cluster info | grep -q cluster_state:ok && break
        sleep 0.1
      done
      redis-cli -p "${CLUSTER_PORTS[$i]}" cluster info | grep -q cluster_state:ok \
        || die "the benchmark cluster did not reach cluster_state:ok"
    done
    prefix="bench-cluster-$$"
    slot="$(redis-cli -p "${CLUSTER_PORTS[0]}" cluster keyslot "$prefix")"
    owner=$(( slot / 5461 )); [ "$owner" -le 2 ] || owner=2
    reset_peak_rss "${CLUSTER_PIDS[$owner]}"
    start_switchyard redis-cluster ":memory:" --redis-prefix "$prefix" \
      --redis-url "redis://127.0.0.1:${CLUSTER_PORTS[0]},127.0.0.1:${CLUSTER_PORTS[1]},127.0.0.1:${CLUSTER_PORTS[2]}"
    measure redis-cluster "switchyard (redis cluster, 3 masters)" "$SY_PID" "$SY_PORT" "$DURATION" \
      "${CLUSTER_PIDS[$owner]}"
    for p in "${CLUSTER_PIDS[@]}"; do stop_server "$p"; done
  fi
fi

if wants capture && [ "$CAPTURED" = 0 ]; then
  run_capture ""
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
  --redis-version "$REDIS_VERSION" \
  --redis-note "$REDIS_NOTE" \
  --body "$BODY"
[ ! -f "$WORK/capture.table" ] || cat "$WORK/capture.table"
