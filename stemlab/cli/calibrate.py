"""`stemlab calibrate URL -o profile.json`: measure a live broker and fit its profile."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import stemlab
from stemlab.calibration import redact
from stemlab.model.profile import BrokerProfile

__all__ = ["profile_table", "register", "run"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="measure a live broker and fit its simulator profile",
        description="Drive a live broker through instrumentation (idle pickup, claims on a "
        "loaded queue, publish/ack/extend/nack/dead-letter, lease expiry) and fit a "
        "BrokerProfile. Uses only the queue 'stemlab.calibrate' (purged before and after).",
    )
    parser.add_argument("url", help="broker URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--output", "-o", help="write the profile JSON here")
    parser.add_argument("--quick", action="store_true", help="a short run (under 15 s)")
    parser.add_argument("--name", help="profile name (default: the adapter, e.g. 'redis')")
    parser.add_argument(
        "--force",
        action="store_true",
        help="keep the profile even when other programs loaded the machine during the ramp",
    )
    parser.add_argument(
        "--namespace", default="stemlab-calibrate", help="broker namespace (default: %(default)s)"
    )
    parser.set_defaults(func=run)


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 1000:.3f}"


def profile_table(profile: BrokerProfile) -> str:
    """What was fitted: per op the distribution kind and measured percentiles; pickup; reclaim."""
    meta = profile.meta
    lines = [
        f"profile {profile.name!r}: {meta.get('mode', '?')} calibration on {meta.get('host', '?')} "
        f"at {meta.get('calibrated_at', '?')}, load average {meta.get('load_average_before')}",
        f"{'op':<13}{'fit':<11}{'n':>6}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}",
    ]
    for op, fit in meta.get("fits", {}).items():
        lines.append(
            f"{op:<13}{fit.get('kind', '?'):<11}{fit.get('n', 0):>6}{_ms(fit.get('mean')):>10}"
            f"{_ms(fit.get('p50')):>10}{_ms(fit.get('p95')):>10}{_ms(fit.get('p99')):>10}"
        )
    idle = meta.get("idle_pickup", {})
    lines.append(
        f"{'idle pickup':<24}{idle.get('n', 0):>6}{_ms(idle.get('mean')):>10}"
        f"{_ms(idle.get('p50')):>10}{_ms(idle.get('p95')):>10}{_ms(idle.get('p99')):>10}"
    )
    if profile.pickup == "polling":
        lines.append(f"pickup: polling every {_ms(profile.poll_interval)} ms (fitted)")
    else:
        wake = meta.get("wakeup", {})
        lines.append(f"pickup: blocking; wake-up beyond a claim p50 {_ms(wake.get('p50'))} ms")
    reclaim = meta.get("reclaim_fit", {})
    where = (
        "found at claim time"
        if profile.reclaim_interval is None
        else f"swept every {profile.reclaim_interval:g} s"
    )
    lines.append(f"lease expiry: {where} (worst delay measured {_ms(reclaim.get('max'))} ms)")
    host, info = profile.host, meta.get("host_model", {})
    if host is not None:
        cpu = ", ".join(
            f"{op} {_ms(host.client_cpu.get(op))}" for op in ("publish", "claim", "ack")
        )
        serial = ", ".join(f"{op} {_ms(v)}" for op, v in host.serial.items()) or "none"
        check = info.get("load_check", {})
        lines.append(f"host: {host.cores} cores; client CPU ms: {cpu}; serial ms: {serial}")
        lines.append(
            f"load ramp: cycles/s by threads {info.get('rates_per_s')}; machine "
            f"{check.get('verdict', '?')} (others used {info.get('background_cores')} cores)"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with stemlab.connect(args.url, namespace=args.namespace) as broker:
        profile = stemlab.calibrate(
            broker, quick=args.quick, name=args.name, progress=True, force=args.force
        )
    profile.meta["broker"] = redact(args.url)
    print(profile_table(profile))
    if args.output:
        path = Path(args.output)
        profile.save(path)
        print(f"wrote {path}")
    else:
        print("(not saved: pass -o FILE to keep it)")
    return 0
