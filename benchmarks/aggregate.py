"""Aggregate results/raw.jsonl and results/raw_limits.jsonl into markdown tables (stdout).

Every cell is `median [min-max]` over the repetitions found (the run count is shown).
"""

import json
import os
import statistics
import sys
from collections import OrderedDict, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = os.path.join(HERE, "results", "raw.jsonl")
LIM = os.path.join(HERE, "results", "raw_limits.jsonl")

# (peer, broker) -> (concurrency-1 config, default config, label of default)
SUMMARY = OrderedDict(
    [
        (("celery", "redis"), ("solo", "prefork", "prefork -c 2")),
        (("dramatiq", "redis"), ("p1t1", "default", "2 proc x 8 thr")),
        (("celery", "rabbitmq"), ("solo", "prefork", "prefork -c 2")),
        (("dramatiq", "rabbitmq"), ("p1t1", "default", "2 proc x 8 thr")),
        (("rq", "redis"), ("worker", "worker", "rq.Worker (fork/job)")),
        (("huey", "redis"), ("default", "default", "1 thread")),
        (("huey", "sqlite"), ("default", "default", "1 thread")),
        (("huey", "postgres"), ("default", "default", "1 thread")),
        (("procrastinate", "postgres"), ("c1", "c1", "concurrency 1")),
        (("arq", "redis"), ("j1", "default", "max_jobs 10")),
        (("saq", "redis"), ("c1", "default", "concurrency 10")),
        (("saq", "postgres"), ("c1", "default", "concurrency 10")),
        (("dramatiq", "in-process memory"), ("dramatiq-stub-t1", "dramatiq-stub", "8 threads")),
        (("huey", "in-process memory"), ("huey-memory", "huey-memory", "1 thread")),
    ]
)


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cell(vals, fmt="{:.0f}"):
    total = len(vals)
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    missing = f" (only {len(vals)} of {total} runs)" if len(vals) < total else ""
    if len(vals) == 1:
        return fmt.format(m) + " (1 run)"
    return f"{fmt.format(m)} [{fmt.format(min(vals))}-{fmt.format(max(vals))}]{missing}"


def ms(vals):
    known = [v for v in vals if v is not None]
    if not known:
        return "n/a"
    f = "{:.1f}" if statistics.median(known) < 100 else "{:.0f}"
    return cell(vals, f)


def main():
    rows = load(RAW)
    by = defaultdict(list)
    for r in rows:
        by[(r["peer"], r["broker"], r["config"])].append(r)

    out = []
    out.append("### Peers: summary (enqueue and e2e from the default-config runs)\n")
    out.append(
        "| peer | broker | version | enqueue tasks/s | drain tasks/s, conc 1 "
        "| drain tasks/s, default (what) | e2e p50 ms | e2e p99 ms | runs |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for (peer, broker), (c1, dflt, label) in SUMMARY.items():
        d = by.get((peer, broker, dflt), [])
        one = by.get((peer, broker, c1), [])
        if not d and not one:
            continue
        ver = (d or one)[0]["version"]
        rate = {r.get("e2e_rate_target") for r in d if r.get("e2e_rate_target")}
        rate_s = (
            "" if rate == {200.0} or not rate else f" (at {'/'.join(str(int(x)) for x in rate)}/s)"
        )
        out.append(
            f"| {peer} | {broker} | {ver} | {cell([r.get('enqueue_per_s') for r in d])} "
            f"| {cell([r.get('drain_per_s') for r in one])} "
            f"| {cell([r.get('drain_per_s') for r in d])} ({label}) "
            f"| {ms([r.get('e2e_p50_ms') for r in d])}{rate_s} "
            f"| {ms([r.get('e2e_p99_ms') for r in d])} "
            f"| {len(d)}/{len(one)} |"
        )
    out.append("")
    out.append("### Peers: every configuration\n")
    out.append(
        "| peer | broker | config | N | enqueue tasks/s | drain tasks/s | first task after spawn s "
        "| e2e rate /s | e2e p50 ms | e2e p99 ms | e2e max ms | runs | load (1 min) | errors |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (peer, broker, cfg), rs in sorted(
        by.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])
    ):
        errs = [r["error"].strip()[:120] for r in rs if r.get("error")]
        rates = sorted({r.get("e2e_rate_target") for r in rs if r.get("e2e_rate_target")})
        out.append(
            f"| {peer} | {broker} | {cfg} | {rs[0]['n']} "
            f"| {cell([r.get('enqueue_per_s') for r in rs])} "
            f"| {cell([r.get('drain_per_s') for r in rs])} "
            f"| {cell([r.get('worker_first_task_s') for r in rs], '{:.2f}')} "
            f"| {'/'.join(str(int(x)) for x in rates)} "
            f"| {ms([r.get('e2e_p50_ms') for r in rs])} | {ms([r.get('e2e_p99_ms') for r in rs])} "
            f"| {ms([r.get('e2e_max_ms') for r in rs])} | {len(rs)} "
            f"| {cell([r.get('loadavg') for r in rs], '{:.1f}')} | {'; '.join(errs) or '-'} |"
        )
    out.append("")

    lim = load(LIM)
    g = OrderedDict()
    for r in lim:
        g.setdefault((r["section"], r["name"]), []).append(r)
    out.append("### Raw limits (ops/s = tasks/s for the queue loops)\n")
    out.append(
        "| section | measurement | N per run | ops/s median [min-max] "
        "| p50 / p99 ms (redis-benchmark) | runs | client/server |"
    )
    out.append("|---|---|---|---|---|---|---|")
    for (sec, name), rs in g.items():
        lat = ""
        if rs[0].get("p50_ms") is not None:
            p50 = statistics.median(r["p50_ms"] for r in rs)
            p99 = statistics.median(r["p99_ms"] for r in rs)
            lat = f"{p50:.3f} / {p99:.3f}"
        out.append(
            f"| {sec} | {name} | {rs[0]['n']} | {cell([r['per_s'] for r in rs])} | {lat} "
            f"| {len(rs)} "
            f"| {rs[0].get('version', '')} |"
        )
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
