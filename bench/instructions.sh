#!/usr/bin/env bash
# Instructions per blocking `message/send`, counted by valgrind's callgrind: unlike req/s on a
# shared 2-core machine, the count repeats to within 0.1% for the same binary, so it can tell
# a 1% change from noise. It counts user-space instructions only (no kernel time, no waiting).
#
#   bench/instructions.sh PATH_TO_SWITCHYARD_BINARY [REQUESTS]     (default 3000)
#
# The server runs the benchmark's echo agent (bench/echo.yaml) on a fresh embedded store;
# 500 requests warm it up uninstrumented, then REQUESTS requests (8 connections) are counted.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench/instructions.sh PATH_TO_SWITCHYARD_BINARY [REQUESTS]" >&2; exit 2; }
BIN="$1"
REQUESTS="${2:-3000}"
command -v valgrind >/dev/null || { echo "instructions: valgrind is needed" >&2; exit 2; }
OHA="$(command -v oha || echo "${BENCH_TOOLS_DIR:-$HOME/.cache/switchyard-bench}/bin/oha")"
[ -x "$OHA" ] || { echo "instructions: oha not found (make bench installs it)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-instructions.XXXXXX")"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

BODY='{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"kind":"message","messageId":"m1","role":"user","parts":[{"kind":"text","text":"hello"}]}}}'

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.%p" \
  "$BIN" serve --config "$(dirname "$0")/echo.yaml" --host 127.0.0.1 --port 0 --data-dir "$WORK/data" \
  >"$WORK/server.log" 2>&1 &
PID=$!
PORT=""
for _ in $(seq 1 600); do
  PORT="$(sed -n 's#^switchyard listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "$WORK/server.log" | head -1)"
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { echo "instructions: the server did not start" >&2; exit 1; }
load() {
  "$OHA" -m POST -H 'content-type: application/json' -d "$BODY" -c 8 -n "$1" --no-tui \
    "http://127.0.0.1:$PORT/agents/echo" >"$WORK/oha.txt" 2>&1
  grep -q 'Success rate:.*100.00%' "$WORK/oha.txt" || { cat "$WORK/oha.txt" >&2; exit 1; }
}
load 500
callgrind_control -i on "$PID" >/dev/null 2>&1
load "$REQUESTS"
callgrind_control -i off "$PID" >/dev/null 2>&1
callgrind_control -d "$PID" >/dev/null 2>&1
TOTAL="$(cat "$WORK"/callgrind.* | awk '/^totals:/ {sum += $2} END {print sum + 0}')"
echo "$(basename "$BIN"): $((TOTAL / REQUESTS)) instructions per message/send ($REQUESTS requests, $TOTAL in all)"
