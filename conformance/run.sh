#!/usr/bin/env bash
# Run the A2A conformance suite against a switchyard binary, with the official client SDKs.
#
#   conformance/run.sh PATH_TO_SWITCHYARD_BINARY
#
# 1. Installs the clients into a cache dir (default target/conformance-env under the repo
#    root; override with SWITCHYARD_CONFORMANCE_ENV):
#      py/  venv with conformance/python/requirements.txt  (a2a-sdk 0.3.26, PyJWT 2.15.1,
#           standardwebhooks 1.1.0)
#      js/  npm ci of conformance/js/package-lock.json     (@a2a-js/sdk 0.3.14)
#    Each is rebuilt only when its requirements / lockfile change (stamp files).
# 2. Uses tests/agents.yaml (agents echo, slow and done; shared with the Rust tests).
# 3. Starts `BIN serve` on 127.0.0.1 with an ephemeral port and an in-memory store (or, with
#    CONFORMANCE_BACKEND=redis, on a private redis-server child), with authentication on
#    (--auth-secret conformance-admin-secret: the admin API and app tokens; the agents of
#    tests/agents.yaml are public, so the SDK clients still call them anonymously), and reads
#    the port from its "listening on http://127.0.0.1:PORT" line on stdout. Deliveries may go
#    to private addresses (--allow-private-targets): the clients' receivers are on 127.0.0.1.
# 4. Runs against it, in this order:
#      conformance/python/test_client.py  the A2A checks, official Python SDK
#      conformance/python/test_tokens.py  app tokens (admin API, JWKS, key rotation) verified
#                                         by PyJWT, an independent JWT implementation
#      conformance/python/test_webhooks.py  Standard Webhooks signatures, outgoing ones verified
#                                         and incoming ones made by the `standardwebhooks`
#                                         reference library (and GitHub-style ones by hmac)
#      conformance/js/client.mjs          the A2A checks, official JS SDK
# 5. Stops the server; exits 1 if any of the four reported a failure.
#
# Needs python3 (with venv), node >= 18 and npm; registries: PyPI and npm.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

[ $# -eq 1 ] || { echo "usage: conformance/run.sh PATH_TO_SWITCHYARD_BINARY" >&2; exit 2; }
BIN="$1"
[ -x "$BIN" ] || { echo "run.sh: $BIN is not an executable file" >&2; exit 2; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

ENV_DIR="${SWITCHYARD_CONFORMANCE_ENV:-$ROOT/target/conformance-env}"
mkdir -p "$ENV_DIR"
ENV_DIR="$(cd "$ENV_DIR" && pwd)"

# --- 1. client environments ------------------------------------------------------------------
# One installer at a time (two runs sharing the cache dir must not rebuild it concurrently).
exec 9>"$ENV_DIR/.install.lock"
flock -w 1200 9 || { echo "run.sh: timed out waiting for $ENV_DIR/.install.lock" >&2; exit 1; }

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

want_py="$(stamp_of "$HERE/python/requirements.txt")"
if [ ! -x "$ENV_DIR/py/bin/python" ] || [ "$(cat "$ENV_DIR/py/.stamp" 2>/dev/null || true)" != "$want_py" ]; then
  echo "run.sh: installing python client (a2a-sdk) into $ENV_DIR/py"
  rm -rf "$ENV_DIR/py"
  timeout 120 python3 -m venv "$ENV_DIR/py"
  timeout 900 "$ENV_DIR/py/bin/pip" install --disable-pip-version-check --no-input -q \
    -r "$HERE/python/requirements.txt"
  echo "$want_py" >"$ENV_DIR/py/.stamp"
fi

# Node resolves imports from the script's own directory, so the JS client runs from the cache
# dir, next to its node_modules; client.mjs is re-copied on every run.
mkdir -p "$ENV_DIR/js"
want_js="$(stamp_of "$HERE/js/package.json" "$HERE/js/package-lock.json")"
cp "$HERE/js/package.json" "$HERE/js/package-lock.json" "$HERE/js/client.mjs" "$ENV_DIR/js/"
if [ ! -f "$ENV_DIR/js/node_modules/@a2a-js/sdk/package.json" ] ||
  [ "$(cat "$ENV_DIR/js/.stamp" 2>/dev/null || true)" != "$want_js" ]; then
  echo "run.sh: installing js client (@a2a-js/sdk) into $ENV_DIR/js"
  rm -rf "$ENV_DIR/js/node_modules"
  (cd "$ENV_DIR/js" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
  echo "$want_js" >"$ENV_DIR/js/.stamp"
fi
flock -u 9

# --- 2. config ---------------------------------------------------------------------------------
TMP="$(mktemp -d -t switchyard-conformance.XXXXXX)"
SERVER_PID=""
REDIS_PID=""
cleanup() {
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    # Give it 5 s to exit cleanly, then force it.
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The agents the clients expect (echo, slow, done), shared with the Rust integration tests.
CONFIG="$ROOT/tests/agents.yaml"
# The admin bearer secret; a fixed test value, only ever given to this loopback server.
AUTH_SECRET=conformance-admin-secret

# --- 3. server ---------------------------------------------------------------------------------
BACKEND_ARGS=(--data-dir :memory:)
if [ "${CONFORMANCE_BACKEND:-embedded}" = redis ]; then
  command -v redis-server >/dev/null || { echo "run.sh: CONFORMANCE_BACKEND=redis needs redis-server on PATH" >&2; exit 1; }
  REDIS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
    --daemonize no >"$TMP/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 100); do
    [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && head -c 5 <&3) 2>/dev/null)" = "+PONG" ] && break
    sleep 0.1
  done
  BACKEND_ARGS=(--redis-url "redis://127.0.0.1:$REDIS_PORT" --redis-prefix conformance)
  echo "run.sh: backend redis on port $REDIS_PORT"
fi
OUT="$TMP/server.stdout"
ERR="$TMP/server.stderr"
# The clients' push and webhook receivers listen on 127.0.0.1, which the SSRF guard refuses
# unless private targets are allowed.
"$BIN" serve --config "$CONFIG" --host 127.0.0.1 --port 0 "${BACKEND_ARGS[@]}" \
  --auth-secret "$AUTH_SECRET" --allow-private-targets >"$OUT" 2>"$ERR" &
SERVER_PID=$!

show_server_output() {
  echo "---- server stdout (last 40 lines) ----" >&2
  tail -n 40 "$OUT" >&2 || true
  echo "---- server stderr (last 40 lines) ----" >&2
  tail -n 40 "$ERR" >&2 || true
  echo "---------------------------------------" >&2
}

PORT=""
for _ in $(seq 300); do # 30 s
  PORT="$(grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$OUT" 2>/dev/null | head -n1 | grep -oE '[0-9]+$' || true)"
  [ -n "$PORT" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "run.sh: server exited before it was listening" >&2
    show_server_output
    exit 1
  fi
  sleep 0.1
done
if [ -z "$PORT" ]; then
  echo "run.sh: no 'listening on http://127.0.0.1:PORT' line on the server's stdout within 30 s" >&2
  show_server_output
  exit 1
fi
BASE="http://127.0.0.1:$PORT"
echo "run.sh: switchyard listening on $BASE"

# --- 4. clients --------------------------------------------------------------------------------
# Agent names are the config's; PEER_MODE must never be on against switchyard.
client_env=(env -u PEER_MODE -u A2A_ONLY "A2A_BASE_URL=$BASE" A2A_AGENT_ECHO=echo A2A_AGENT_SLOW=slow A2A_AGENT_DONE=done)

py_rc=0
"${client_env[@]}" "$ENV_DIR/py/bin/python" "$HERE/python/test_client.py" | tee "$TMP/py.out" || py_rc=$?
# Only the token and webhook checks get the admin secret; the SDK clients stay anonymous.
tok_rc=0
"${client_env[@]}" "SWITCHYARD_AUTH_SECRET=$AUTH_SECRET" "$ENV_DIR/py/bin/python" "$HERE/python/test_tokens.py" \
  | tee "$TMP/tok.out" || tok_rc=$?
hook_rc=0
"${client_env[@]}" "SWITCHYARD_AUTH_SECRET=$AUTH_SECRET" "$ENV_DIR/py/bin/python" "$HERE/python/test_webhooks.py" | tee "$TMP/hook.out" || hook_rc=$?
js_rc=0
"${client_env[@]}" node "$ENV_DIR/js/client.mjs" | tee "$TMP/js.out" || js_rc=$?

# --- 5. verdict --------------------------------------------------------------------------------
# Add up the "N/M passed" summaries; a script that died without one counts as one failure.
passed=0
failed=0
for out in "$TMP/py.out" "$TMP/tok.out" "$TMP/hook.out" "$TMP/js.out"; do
  line="$(grep -oE '[0-9]+/[0-9]+ passed' "$out" | tail -n1 || true)"
  if [ -z "$line" ]; then
    failed=$((failed + 1))
    continue
  fi
  n="${line%%/*}"
  m="${line#*/}"
  m="${m%% *}"
  passed=$((passed + n))
  failed=$((failed + m - n))
done
if [ "$py_rc" -ne 0 ] || [ "$tok_rc" -ne 0 ] || [ "$hook_rc" -ne 0 ] || [ "$js_rc" -ne 0 ]; then
  [ "$failed" -gt 0 ] || failed=1 # a client failed without reporting a failed check
  show_server_output
fi
echo "conformance: python rc=$py_rc, tokens rc=$tok_rc, webhooks rc=$hook_rc, js rc=$js_rc"
echo "conformance: $passed passed, $failed failed"
[ "$py_rc" -eq 0 ] && [ "$tok_rc" -eq 0 ] && [ "$hook_rc" -eq 0 ] && [ "$js_rc" -eq 0 ]
