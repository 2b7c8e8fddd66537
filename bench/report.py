#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

  report.py verify URL BODY
      POST one message/send and fail unless the result is a Task whose status.state is
      "completed". A JSON-RPC error is an HTTP 200 too, so this is what tells us the load
      test exercises the real task path and not a fast error path.

  report.py summarize RUNS_TSV OUT_JSON [--connections N ...]
      Read oha's JSON for every row (RUNS_TSV lines: name, label, duration, peak RSS KiB per
      server process, oha json path per concurrent oha run, redis-server peak RSS KiB, kind,
      connections per oha run; lists comma-separated, the last three columns optional),
      print the comparison tables and write OUT_JSON. Exit 1 if any run had a non-2xx
      response or a transport error.
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
# With an app token on every request, throughput relative to no authentication (same store).
AUTH_GOAL_RATIO = 0.8
# The project's target for the Redis backend, relative to the embedded store (message/send).
REDIS_GOAL_RATIO = 0.5


def verify(url: str, body: str) -> int:
    headers = {"content-type": "application/json"}
    # The authenticated row sends an app token with every request.
    if os.environ.get("BENCH_AUTHORIZATION"):
        headers["authorization"] = os.environ["BENCH_AUTHORIZATION"]
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
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


def load_oha(path):
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
        "requests_per_sec": summary.get("requestsPerSec"),
        "p50_ms": ms("p50"),
        "p99_ms": ms("p99"),
        "responses": sum(codes.values()),
        "status_codes": codes,
        "non_2xx": non_2xx,
        "errors": sum(errors.values()),
        "error_distribution": errors,
        "aborted_at_deadline": errors_all.get(DEADLINE_ABORT, 0),
        "valid": non_2xx == 0 and not errors,
    }


def kib(v):
    return int(v) if v.isdigit() else None


def load_run(name, label, duration, rss_kib, paths, redis_rss_kib="", kind="send", conns=""):
    oha_runs = [load_oha(p) for p in paths.split(",")]
    rss = [kib(v) for v in rss_kib.split(",")]
    run = {"name": name, "label": label, "kind": kind, "duration": duration}
    if len(oha_runs) == 1:
        run.update(oha_runs[0])
    else:
        # Concurrent oha runs: throughput adds up; latency percentiles cannot be merged
        # exactly, so the row carries the worst run's and every run's own under oha_runs.
        def worst(key):
            vals = [r[key] for r in oha_runs if r[key] is not None]
            return max(vals) if vals else None

        codes = {}
        errs = {}
        for r in oha_runs:
            for k, v in r["status_codes"].items():
                codes[k] = codes.get(k, 0) + v
            for k, v in r["error_distribution"].items():
                errs[k] = errs.get(k, 0) + v
        rps = [r["requests_per_sec"] for r in oha_runs]
        run.update({
            "requests_per_sec": None if None in rps else sum(rps),
            "p50_ms": worst("p50_ms"),
            "p99_ms": worst("p99_ms"),
            "responses": sum(r["responses"] for r in oha_runs),
            "status_codes": codes,
            "non_2xx": sum(r["non_2xx"] for r in oha_runs),
            "errors": sum(r["errors"] for r in oha_runs),
            "error_distribution": errs,
            "aborted_at_deadline": sum(r["aborted_at_deadline"] for r in oha_runs),
            "valid": all(r["valid"] for r in oha_runs),
            "oha_runs": oha_runs,
        })
    # peak_rss_kib: the server process, or the sum over instances for multi-instance rows.
    run["peak_rss_kib"] = None if None in rss else sum(rss)
    if len(rss) > 1 or kind == "queue":
        run["instances"] = len(rss)
        run["peak_rss_kib_per_instance"] = rss
    if conns.isdigit():
        run["connections_per_oha_run"] = int(conns)
        run["oha_runs_concurrent"] = len(oha_runs)
    if redis_rss_kib:
        run["redis_peak_rss_kib"] = kib(redis_rss_kib)
    return run


def mib(v):
    return None if not v else v / 1024


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
    red = next((r for r in runs if r["name"] == "redis"), None)
    q1 = next((r for r in runs if r["name"] == "redis-queue-1"), None)
    q2 = next((r for r in runs if r["name"] == "redis-queue-2"), None)
    for r in runs:
        ok = emb and emb["requests_per_sec"] and r["requests_per_sec"] is not None
        r["rps_vs_embedded"] = r["requests_per_sec"] / emb["requests_per_sec"] if ok else None
    if emb and js:
        goal = {
            "rps_ratio_target": GOAL_RATIO,
            "p99_ms_target": GOAL_P99_MS,
            "rps_ratio": emb["rps_vs_js"],
            "p99_ms": emb["p99_ms"],
            "rps_met": emb["rps_vs_js"] is not None and emb["rps_vs_js"] >= GOAL_RATIO,
            "p99_met": emb["p99_ms"] is not None and emb["p99_ms"] <= GOAL_P99_MS,
        }

    redis_goal = None
    if emb and red:
        ratio = red["rps_vs_embedded"]
        redis_goal = {
            "rps_ratio_vs_embedded_target": REDIS_GOAL_RATIO,
            "rps_ratio_vs_embedded": ratio,
            "redis_rps": red["requests_per_sec"],
            "embedded_rps": emb["requests_per_sec"],
            "met": ratio is not None and ratio >= REDIS_GOAL_RATIO,
        }
    # Authentication's cost: the app-token row against the same store without authentication.
    auth_goal = None
    auth = next((r for r in runs if r["name"] == "auth"), None)
    mem = next((r for r in runs if r["name"] == "memory"), None)
    if auth and mem and auth["requests_per_sec"] and mem["requests_per_sec"]:
        ratio = auth["requests_per_sec"] / mem["requests_per_sec"]
        auth_goal = {"ratio_target": AUTH_GOAL_RATIO, "ratio": ratio, "met": ratio >= AUTH_GOAL_RATIO}
    scale_out = None
    if q1 and q2 and q1["requests_per_sec"] and q2["requests_per_sec"] is not None:
        scale_out = q2["requests_per_sec"] / q1["requests_per_sec"]

    def table(headers, rows):
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
                  for i, h in enumerate(headers)]

        def line(cells):
            # First column left-aligned (names), numbers right-aligned.
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths)))

        print(line(headers))
        print(line(["-" * w for w in widths]))
        for row in rows:
            print(line(row))

    send = [r for r in runs if r["kind"] == "send"]
    queue = [r for r in runs if r["kind"] == "queue"]
    durations = sorted({r["duration"] for r in runs})
    print()
    print(f"A2A message/send, {args.connections} connections, "
          f"{' / '.join(durations)} per server after a {args.warmup} warm-up "
          f"({os.cpu_count()} CPUs, load generator on the same CPUs)")
    print(f"switchyard {args.switchyard_version} (git {args.git_rev}), {args.oha_version}"
          + (f", redis-server {args.redis_version}" if args.redis_version else ""))
    print()
    table(
        ["server", "req/s", "p50 ms", "p99 ms", "peak RSS MiB", "req/s vs JS", "non-2xx", "errors"],
        [
            [
                r["label"],
                fmt(r["requests_per_sec"], ",.0f"),
                fmt(r["p50_ms"], ".2f"),
                fmt(r["p99_ms"], ".2f"),
                fmt(mib(r["peak_rss_kib"]), ",.1f"),
                fmt(r["rps_vs_js"], ".2f", "x"),
                str(r["non_2xx"]),
                str(r["errors"]),
            ]
            for r in send
        ],
    )
    if red and "redis_peak_rss_kib" in red:
        print(f"(switchyard (redis): peak RSS is switchyard's own; redis-server peaked at "
              f"{fmt(mib(red['redis_peak_rss_kib']), ',.1f', ' MiB')} during that row)")
    clu = next((r for r in runs if r["name"] == "redis-cluster"), None)
    if clu and "redis_peak_rss_kib" in clu:
        print(f"(switchyard (redis cluster): the master that owns the deployment's slot peaked at "
              f"{fmt(mib(clu['redis_peak_rss_kib']), ',.1f', ' MiB')} during that row)")
    if queue:
        print()
        conns = sorted({f"{r.get('oha_runs_concurrent', 1)} x {r.get('connections_per_oha_run', '?')}"
                        for r in queue})
        print(f"Redis shared queue, end to end: blocking message/send, {' / '.join(conns)} "
              f"connections in concurrent oha runs (one per instance with 2 instances), one "
              f"--redis-prefix per row; each request is one task, run by the instance it was sent "
              f"to while it has a free worker or prefetch slot, else queued for either")
        print()
        table(
            ["row", "tasks/s", "p99 ms per oha run", "switchyard RSS MiB", "redis RSS MiB",
             "non-2xx", "errors"],
            [
                [
                    r["label"],
                    fmt(r["requests_per_sec"], ",.0f"),
                    " / ".join(fmt(o["p99_ms"], ".2f") for o in r.get("oha_runs", [r])),
                    " + ".join(fmt(mib(v), ",.1f") for v in r.get("peak_rss_kib_per_instance", [])),
                    fmt(mib(r.get("redis_peak_rss_kib")), ",.1f"),
                    str(r["non_2xx"]),
                    str(r["errors"]),
                ]
                for r in queue
            ],
        )
    print()
    if goal:
        print(f"goal (embedded store): >= {GOAL_RATIO:g}x JS req/s: "
              f"{'met' if goal['rps_met'] else 'NOT met'} ({fmt(goal['rps_ratio'], '.2f', 'x')}); "
              f"p99 <= {GOAL_P99_MS:g} ms: {'met' if goal['p99_met'] else 'NOT met'} "
              f"({fmt(goal['p99_ms'], '.2f', ' ms')})")
    ceiling = next((r for r in runs if r["name"] == "ceiling"), None)
    if ceiling and ceiling["requests_per_sec"] and emb and emb["requests_per_sec"]:
        line = (f"ceiling (no store, no agent): {fmt(ceiling['requests_per_sec'], ',.0f')} req/s, "
                f"p99 {fmt(ceiling['p99_ms'], '.2f', ' ms')}; the embedded store serves "
                f"{emb['requests_per_sec'] / ceiling['requests_per_sec']:.0%} of it")
        if js and js["requests_per_sec"]:
            line += (f"; {GOAL_RATIO:g}x JS is {fmt(GOAL_RATIO * js['requests_per_sec'], ',.0f')} req/s = "
                     f"{GOAL_RATIO * js['requests_per_sec'] / ceiling['requests_per_sec']:.0%} of the ceiling")
        print(line)
    if redis_goal:
        print(f"goal (redis backend): >= {REDIS_GOAL_RATIO:g}x embedded req/s: "
              f"{'met' if redis_goal['met'] else 'NOT met'} "
              f"({fmt(redis_goal['rps_ratio_vs_embedded'], '.2f', 'x')}: "
              f"{fmt(redis_goal['redis_rps'], ',.0f')} vs {fmt(redis_goal['embedded_rps'], ',.0f')} req/s)")
    if auth_goal:
        print(f"goal (authentication): app-token req/s >= {AUTH_GOAL_RATIO:.0%} of unauthenticated (:memory:): "
              f"{'met' if auth_goal['met'] else 'NOT met'} ({auth_goal['ratio']:.0%})")
    if scale_out is not None:
        print(f"shared queue: 2 instances / 1 instance tasks/s = {scale_out:.2f}x "
              f"(one machine: the instances, redis-server and oha share its CPUs)")
    if args.redis_note:
        print(f"NOTE: {args.redis_note}")
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
        "redis_version": args.redis_version or None,
        "redis_note": args.redis_note or None,
        "results": runs,
        "goal": goal,
        "redis_goal": redis_goal,
        "auth_goal": auth_goal,
        "redis_scale_out_2_vs_1": scale_out,
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
    s.add_argument("--redis-version", default="")
    s.add_argument("--redis-note", default="")
    s.add_argument("--body", default="{}")
    a = p.parse_args()
    return verify(a.url, a.body) if a.cmd == "verify" else summarize(a)


if __name__ == "__main__":
    sys.exit(main())
