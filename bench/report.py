#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

  report.py verify URL BODY
      POST one message/send and fail unless the result is a Task whose status.state is
      "completed". A JSON-RPC error is an HTTP 200 too, so this is what tells us the load
      test exercises the real task path and not a fast error path.

  report.py summarize RUNS_TSV OUT_JSON [--connections N ...]
      Read oha's JSON for every server (RUNS_TSV lines: name, label, duration, peak RSS KiB,
      oha json path), print the comparison table and write OUT_JSON. Exit 1 if any run had
      a non-2xx response or a transport error.
"""

import argparse
import json
import os
import platform
import sys
import time
import urllib.request

# oha reports requests still in flight when the -z deadline hits under this name; they are
# an artefact of time-bounded runs, not failures.
DEADLINE_ABORT = "aborted due to deadline"

# The README's target for switchyard with its durable store, relative to the JS SDK peer.
GOAL_RATIO = 10.0
GOAL_P99_MS = 5.0


def verify(url: str, body: str) -> int:
    req = urllib.request.Request(
        url, data=body.encode(), headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            reply = json.load(resp)
    except Exception as exc:  # noqa: BLE001 - any failure means "not benchmarkable"
        print(f"verify: {url}: request failed: {exc}", file=sys.stderr)
        return 1
    state = ((reply.get("result") or {}).get("status") or {}).get("state")
    if state != "completed":
        print(f"verify: {url}: expected status.state 'completed', got: "
              f"{json.dumps(reply)[:500]}", file=sys.stderr)
        return 1
    return 0


def load_run(name, label, duration, rss_kib, path):
    with open(path) as f:
        oha = json.load(f)
    summary = oha.get("summary", {})
    pct = oha.get("latencyPercentiles", {})
    codes = {str(k): int(v) for k, v in (oha.get("statusCodeDistribution") or {}).items()}
    errors_all = {str(k): int(v) for k, v in (oha.get("errorDistribution") or {}).items()}
    errors = {k: v for k, v in errors_all.items() if k != DEADLINE_ABORT}
    non_2xx = sum(v for k, v in codes.items() if not k.startswith("2"))

    def ms(key):
        v = pct.get(key)
        return None if v is None else v * 1000.0

    return {
        "name": name,
        "label": label,
        "duration": duration,
        "requests_per_sec": summary.get("requestsPerSec"),
        "p50_ms": ms("p50"),
        "p99_ms": ms("p99"),
        "peak_rss_kib": int(rss_kib) if rss_kib.isdigit() else None,
        "responses": sum(codes.values()),
        "status_codes": codes,
        "non_2xx": non_2xx,
        "errors": sum(errors.values()),
        "error_distribution": errors,
        "aborted_at_deadline": errors_all.get(DEADLINE_ABORT, 0),
        "valid": non_2xx == 0 and not errors,
    }


def fmt(v, spec, suffix=""):
    return "n/a" if v is None else format(v, spec) + suffix


def summarize(args) -> int:
    runs = []
    with open(args.runs_tsv) as f:
        for line in f:
            if line.strip():
                runs.append(load_run(*line.rstrip("\n").split("\t")))

    js = next((r for r in runs if r["name"] == "js"), None)
    for r in runs:
        ok = js and js["requests_per_sec"] and r["requests_per_sec"] is not None
        r["rps_vs_js"] = r["requests_per_sec"] / js["requests_per_sec"] if ok else None

    # The goal is stated for the durable (embedded) store, the configuration users run.
    goal = None
    emb = next((r for r in runs if r["name"] == "embedded"), None)
    if emb and js:
        goal = {
            "rps_ratio_target": GOAL_RATIO,
            "p99_ms_target": GOAL_P99_MS,
            "rps_ratio": emb["rps_vs_js"],
            "p99_ms": emb["p99_ms"],
            "rps_met": emb["rps_vs_js"] is not None and emb["rps_vs_js"] >= GOAL_RATIO,
            "p99_met": emb["p99_ms"] is not None and emb["p99_ms"] <= GOAL_P99_MS,
        }

    headers = ["server", "req/s", "p50 ms", "p99 ms", "peak RSS MiB", "req/s vs JS", "non-2xx", "errors"]
    rows = [
        [
            r["label"],
            fmt(r["requests_per_sec"], ",.0f"),
            fmt(r["p50_ms"], ".2f"),
            fmt(r["p99_ms"], ".2f"),
            fmt(r["peak_rss_kib"] / 1024 if r["peak_rss_kib"] else None, ",.1f"),
            fmt(r["rps_vs_js"], ".2f", "x"),
            str(r["non_2xx"]),
            str(r["errors"]),
        ]
        for r in runs
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells):
        # First column left-aligned (names), numbers right-aligned.
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    durations = sorted({r["duration"] for r in runs})
    print()
    print(f"A2A message/send, {args.connections} connections, "
          f"{' / '.join(durations)} per server after a {args.warmup} warm-up "
          f"({os.cpu_count()} CPUs, load generator on the same CPUs)")
    print(f"switchyard {args.switchyard_version} (git {args.git_rev}), {args.oha_version}")
    print()
    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    print()
    if goal:
        print(f"goal (embedded store): >= {GOAL_RATIO:g}x JS req/s: "
              f"{'met' if goal['rps_met'] else 'NOT met'} ({fmt(goal['rps_ratio'], '.2f', 'x')}); "
              f"p99 <= {GOAL_P99_MS:g} ms: {'met' if goal['p99_met'] else 'NOT met'} "
              f"({fmt(goal['p99_ms'], '.2f', ' ms')})")
    invalid = [r for r in runs if not r["valid"]]
    for r in invalid:
        print(f"INVALID: {r['label']}: {r['non_2xx']} non-2xx responses "
              f"{r['status_codes']}, errors {r['error_distribution']}")
    if not invalid:
        print("all runs valid: 0 non-2xx responses, 0 errors; every server completed a task "
              "before and after its run")

    result = {
        "benchmark": "message/send",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "connections": int(args.connections),
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "oha": args.oha_version,
        "switchyard_version": args.switchyard_version,
        "git_rev": args.git_rev,
        "embedded_data_dir_fs": args.data_fs or None,
        "request_body": json.loads(args.body),
        "results": runs,
        "goal": goal,
        "valid": not invalid,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out_json)), exist_ok=True)
    with open(args.out_json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"results written to {args.out_json}")
    return 1 if invalid else 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("url")
    v.add_argument("body")
    s = sub.add_parser("summarize")
    s.add_argument("runs_tsv")
    s.add_argument("out_json")
    s.add_argument("--connections", default="?")
    s.add_argument("--warmup", default="?")
    s.add_argument("--oha-version", default="oha")
    s.add_argument("--switchyard-version", default="unknown")
    s.add_argument("--git-rev", default="unknown")
    s.add_argument("--data-fs", default="")
    s.add_argument("--body", default="{}")
    a = p.parse_args()
    return verify(a.url, a.body) if a.cmd == "verify" else summarize(a)


if __name__ == "__main__":
    sys.exit(main())
