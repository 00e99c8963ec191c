"""`calibrate(broker)`: measure a live broker through instrumentation and fit its profile.

The runs are described in `stemlab.calibration.measure`, the fitting in
`stemlab.calibration.fit`. The returned `BrokerProfile` is what `simulate`
reads; its `meta` says where, when and how it was measured (host, time,
load, samples per op, which fit each op got and why), and `save` writes it
as JSON for `data/profiles/`. `measure_task(app, name, args)` times a
registered task's own service time (`stemlab.calibration.task`), so the
simulator can predict each broker with that real work.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from stemlab._version import __version__
from stemlab.brokers import connect
from stemlab.calibration.fit import fit_latency, fit_poll, fit_reclaim, quantiles, wakeup
from stemlab.calibration.measure import QUEUE, Measurements, Plan, measure
from stemlab.calibration.task import measure_task
from stemlab.core.broker import Broker
from stemlab.core.progress import Progress
from stemlab.errors import CalibrationError
from stemlab.instrument import InstrumentedBroker, instrument
from stemlab.model.distributions import Distribution
from stemlab.model.names import broker_name
from stemlab.model.profile import OPS, BrokerProfile

__all__ = [
    "PROFILE_VERSION",
    "CalibrationError",
    "Plan",
    "calibrate",
    "describe",
    "measure_task",
    "redact",
]

PROFILE_VERSION = 1  # meta["profile_version"]: bump when the meaning of a field changes
NAMESPACE = "stemlab-calibrate"  # used when calibrate opens the broker from a URL


def redact(url: str) -> str:
    """`url` without its password (kept in provenance, so it must not leak secrets)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def describe(broker: Broker) -> str:
    """The broker's URL (password redacted) when the adapter keeps one, else its file or kind."""
    inner = broker.inner if isinstance(broker, InstrumentedBroker) else broker
    url = getattr(getattr(inner, "settings", None), "url", None)
    if isinstance(url, str):
        return redact(url)
    path = getattr(inner, "path", None)
    if path is not None:
        return f"sqlite:///{path}"
    return f"{broker_name(inner)}://"


@contextlib.contextmanager
def _opened(broker: Broker | str) -> Iterator[tuple[Broker, str | None]]:
    if isinstance(broker, str):
        opened = connect(broker, namespace=NAMESPACE)
        try:
            yield opened, broker
        finally:
            opened.close()
    elif isinstance(broker, Broker):
        yield broker, None
    else:
        raise TypeError(f"broker must be a Broker or a URL, got {type(broker).__name__}")


def calibrate(
    broker: Broker | str,
    *,
    quick: bool = False,
    name: str | None = None,
    plan: Plan | None = None,
    seed: int = 0,
    progress: bool = False,
) -> BrokerProfile:
    """Measure `broker` (an open Broker, left open, or a URL) and return its fitted profile.

    `quick=True` makes a few hundred calls and finishes in seconds; the full
    run makes a few thousand. `plan` overrides both. Only the queue
    `stemlab.calibrate` of the broker's namespace is used (purged before and
    after). `name` defaults to the adapter's scheme ("sqlite", "redis", ...).
    """
    chosen = plan or (Plan.quick() if quick else Plan())
    rng = np.random.default_rng(seed)
    with _opened(broker) as (raw, url):
        ib = instrument(raw)
        load_before = _loadavg()
        started = datetime.now(UTC)
        with Progress(chosen.total, "calibrating", enabled=progress, unit="msg") as bar:
            m = measure(ib, chosen, rng, lambda n: bar.advance(n))
        return _profile(ib, m, chosen, name, url, started, load_before)


def _profile(
    ib: InstrumentedBroker,
    m: Measurements,
    plan: Plan,
    name: str | None,
    url: str | None,
    started: datetime,
    load_before: list[float] | None,
) -> BrokerProfile:
    caps = ib.capabilities
    latency: dict[str, Distribution] = {}
    fits: dict[str, Any] = {}
    for op in OPS:
        samples = getattr(m, op)
        if samples.size:
            latency[op], fits[op] = fit_latency(samples)
    polling = caps.poll_interval is not None
    poll: float | None = None
    poll_info: dict[str, Any] | None = None
    if caps.poll_interval is not None:
        poll, poll_info = fit_poll(m, caps.poll_interval, plan.listeners)
    reclaim, reclaim_info = fit_reclaim(m, caps.reclaim_delay)
    meta = _provenance(ib, m, plan, url, started, load_before)
    meta["fits"] = fits
    meta["pickup_model"] = (
        "polling: an idle consumer asks every claim + poll_interval seconds"
        if polling
        else "blocking: a publish wakes an idle consumer, which then claims"
    )
    meta["idle_pickup"] = quantiles(m.idle_pickup)
    meta["idle_pickup_after_publish"] = quantiles(m.after_publish)
    meta["publish_unwatched"] = {
        **quantiles(m.publish_unwatched),
        "note": "publish with no consumer attached (the profile's publish has idle consumers "
        "to wake, as at load <= 0.7); the simulator uses one publish law for both",
    }
    if polling:
        meta["poll_fit"] = poll_info
    else:
        meta["wakeup"] = wakeup(m)
    meta["reclaim_fit"] = reclaim_info
    return BrokerProfile(
        name=name or broker_name(ib),
        latency=latency,
        pickup="polling" if polling else "blocking",
        poll_interval=poll,
        reclaim_interval=reclaim,
        priority_levels=caps.priority_levels,
        broadcast_scope=caps.broadcast_scope,
        meta=meta,
    )


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _provenance(
    ib: InstrumentedBroker,
    m: Measurements,
    plan: Plan,
    url: str | None,
    started: datetime,
    load_before: list[float] | None,
) -> dict[str, Any]:
    """Where, when and how the profile was measured."""
    caps = ib.capabilities
    return {
        "status": "calibrated",
        "profile_version": PROFILE_VERSION,
        "calibrated_at": started.isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(terse=True),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": _loadavg(),
        "stemlab_version": __version__,
        "broker": redact(url) if url else describe(ib),
        "namespace": getattr(ib, "namespace", None),
        "queue": QUEUE,
        "mode": "quick" if plan == Plan.quick() else "full" if plan == Plan() else "custom",
        "plan": {
            "idle_messages": plan.idle,
            "loaded_messages": plan.loaded,
            "expiry_rounds": plan.rounds,
            "expiries_per_round": plan.expiries,
            "idle_listeners": plan.listeners,
            "lease_s": plan.lease_s,
        },
        "samples": m.counts(),
        "wall_s": {k: round(v, 2) for k, v in m.wall_s.items()},
        "declared_capabilities": {
            "poll_interval": caps.poll_interval,
            "reclaim_delay": caps.reclaim_delay,
            "broadcast_scope": caps.broadcast_scope,
            "durable": caps.durable,
            "cross_process": caps.cross_process,
        },
        "method": (
            "publish and ack: timed with idle consumers attached (publish_unwatched: "
            "without); claim: gets on a queue with work ready (one consumer); extend, nack, "
            "dead_letter: during that drain; see stemlab.calibration.measure"
        ),
    }
