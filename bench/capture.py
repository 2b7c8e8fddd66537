#!/usr/bin/env python3
"""Capture-session benchmark for bench/run.sh (standard library only).

For each backend (embedded store on disk, :memory:, and Redis when a URL is given) it starts
one switchyard, creates two capture sessions and measures:

  * ingest throughput: oha POSTs a small JSON webhook into session A for DURATION with
    CONNECTIONS connections (requests/s and p99 as oha reports them);
  * ingest-to-live latency: a probe sends one request into session B and times how long until
    it arrives on B's live SSE stream (`GET /v1/agent/sessions/B/events/stream`): once with
    the server idle (sequential probes), once while the oha load runs (a probe every 10 ms).

It checks that nothing was lost: session A's request_count must be at least the number of
200 answers oha counted, and every probe must arrive on the live stream.

  capture.py --bin BIN --oha OHA --duration 10s --warmup 2s --connections 32 \
             --data-dir DIR [--redis-url URL] --out OUT_JSON
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

BODY = '{"type":"order.created","data":{"id":"ord_123","amount":4200,"currency":"usd"}}'
IDLE_PROBES = 500
LOAD_PROBE_INTERVAL = 0.010
PROBE_TIMEOUT = 10.0


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def start_server(binary, config, data_dir, extra):
    args = [binary, "serve", "--config", config, "--host", "127.0.0.1", "--port", "0",
            "--data-dir", data_dir, "--capture-request-limit", "0",
            "--capture-sessions-per-hour", "0", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "SWITCHYARD_LOG": "warn"})
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("switchyard listening on http://"):
            port = int(line.strip().rsplit(":", 1)[1])
            # Keep draining stdout so the server never blocks on a full pipe.
            threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
            return proc, port
    proc.kill()
    raise SystemExit("bench: switchyard did not start")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def create_session(port):
    status, data = request(port, "POST", "/v1/agent/sessions")
    if status != 201:
        raise SystemExit(f"bench: creating a capture session answered {status}: {data[:200]!r}")
    return json.loads(data)["session_id"]


class LiveStream:
    """Reads a session's SSE stream on a thread and notes when each probe body arrives."""

    def __init__(self, port, session):
        self.arrivals = {}
        self.cond = threading.Condition()
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(f"GET /v1/agent/sessions/{session}/events/stream HTTP/1.1\r\n"
                          f"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter()
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.startswith(b"data: "):
                    continue
                try:
                    body = json.loads(line[6:])["body"]
                except (ValueError, KeyError):
                    continue
                with self.cond:
                    self.arrivals[body] = now
                    self.cond.notify_all()

    def wait_for(self, body, timeout=PROBE_TIMEOUT):
        deadline = time.perf_counter() + timeout
        with self.cond:
            while body not in self.arrivals:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.arrivals[body]

    def close(self):
        self.sock.close()


def probe(port, session, stream, count=None, interval=0.0, stop=None):
    """Sends probes; returns their ingest-to-live latencies in ms (None for a lost probe)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    sent = 0
    while (count is None or sent < count) and not (stop and stop.is_set()):
        marker = f"probe-{uuid.uuid4().hex}"
        started = time.perf_counter()
        conn.request("POST", f"/v1/ingest/{session}", body=marker, headers={"content-type": "text/plain"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"bench: probe ingest answered {resp.status}")
        arrived = stream.wait_for(marker)
        latencies.append(None if arrived is None else (arrived - started) * 1000.0)
        sent += 1
        if interval:
            time.sleep(interval)
    conn.close()
    return latencies


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def latency_summary(latencies):
    arrived = [v for v in latencies if v is not None]
    return {"probes": len(latencies), "lost": len(latencies) - len(arrived),
            "p50_ms": percentile(arrived, 50), "p99_ms": percentile(arrived, 99),
            "max_ms": max(arrived) if arrived else None}


def oha_args(args, port, session, duration):
    json_flag = ["--output-format", "json"] if args.oha_output_format else ["--json"]
    return [args.oha, "-z", duration, "-c", str(args.connections), "-m", "POST", "-T",
            "application/json", "-d", BODY, "--no-tui", *json_flag,
            f"http://127.0.0.1:{port}/v1/ingest/{session}"]


def measure(args, name, label, data_dir, extra):
    log(f"{label}: starting")
    proc, port = start_server(args.bin, args.config, data_dir, extra)
    try:
        load_session, probe_session = create_session(port), create_session(port)
        status, data = request(port, "POST", f"/v1/ingest/{load_session}", BODY,
                               {"content-type": "application/json"})
        if status != 200 or json.loads(data) != {"ok": True}:
            raise SystemExit(f"bench: {label}: ingest answered {status}: {data[:200]!r}")
        stream = LiveStream(port, probe_session)
        time.sleep(0.2)
        log(f"{label}: idle latency, {IDLE_PROBES} sequential probes")
        idle = latency_summary(probe(port, probe_session, stream, count=IDLE_PROBES))
        log(f"{label}: warm-up {args.warmup}")
        subprocess.run(oha_args(args, port, load_session, args.warmup), check=True, stdout=subprocess.DEVNULL)
        log(f"{label}: measuring {args.duration} with {args.connections} connections, probing every 10 ms")
        stop = threading.Event()
        under_load = []
        prober = threading.Thread(target=lambda: under_load.extend(
            probe(port, probe_session, stream, interval=LOAD_PROBE_INTERVAL, stop=stop)))
        prober.start()
        out = subprocess.run(oha_args(args, port, load_session, args.duration), check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        stop.set()
        prober.join()
        stream.close()
        oha = json.loads(out)
        summary = oha.get("summary", {})
        codes = {str(k): v for k, v in (oha.get("statusCodeDistribution") or {}).items()}
        errors = {k: v for k, v in (oha.get("errorDistribution") or {}).items() if "deadline" not in k}
        ok = codes.get("200", 0)
        status, data = request(port, "GET", f"/v1/agent/sessions/{load_session}?limit=1")
        recorded = json.loads(data)["session"]["request_count"]
        bad_codes = {k: v for k, v in codes.items() if k != "200"}
        if bad_codes or errors:
            raise SystemExit(f"bench: {label}: non-200 answers {bad_codes} or errors {errors}")
        if recorded < ok:
            raise SystemExit(f"bench: {label}: {ok} requests answered 200 but only {recorded} recorded")
        load = latency_summary(under_load)
        if idle["lost"] or load["lost"]:
            raise SystemExit(f"bench: {label}: probes never reached the live stream: {idle} {load}")
        p99 = (oha.get("latencyPercentiles") or {}).get("p99")
        return {"name": name, "label": label, "rps": summary.get("requestsPerSec"),
                "p99_ms": p99 * 1000.0 if p99 is not None else None, "answered_200": ok,
                "recorded": recorded, "live_idle": idle, "live_under_load": load}
    finally:
        stop_server(proc)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--oha", required=True)
    ap.add_argument("--oha-output-format", action="store_true")
    ap.add_argument("--config", required=True)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--warmup", default="2s")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--redis-url")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rows = [measure(args, "capture-embedded", "embedded store", args.data_dir, []),
            measure(args, "capture-memory", ":memory:", ":memory:", [])]
    if args.redis_url:
        rows.append(measure(args, "capture-redis", "redis", ":memory:",
                            ["--redis-url", args.redis_url, "--redis-prefix", f"bench-capture-{os.getpid()}"]))
    print()
    print(f"Capture ingest into one session ({args.connections} connections, {args.duration}); "
          f"ingest-to-live-stream latency idle ({IDLE_PROBES} sequential probes) and under that load "
          f"(a probe every 10 ms)")
    header = ["backend", "ingest req/s", "p99 ms", "live p50 idle", "live p99 idle",
              "live p50 load", "live p99 load"]
    table = [header] + [[r["label"], fmt(r["rps"], ",.0f"), fmt(r["p99_ms"], ".2f"),
                         fmt(r["live_idle"]["p50_ms"], ".2f"), fmt(r["live_idle"]["p99_ms"], ".2f"),
                         fmt(r["live_under_load"]["p50_ms"], ".2f"),
                         fmt(r["live_under_load"]["p99_ms"], ".2f")] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("| " + " | ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j])
                                for j, c in enumerate(row)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    with open(args.out, "w") as f:
        json.dump({"capture": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
