"""`calibrate(broker)`: measure a live broker through instrumentation and fit its profile.

The runs are described in `stemlab.calibration.measure`, the fitting in
`stemlab.calibration.fit`. The returned `BrokerProfile` is what `simulate`
reads; its `meta` says where, when and how it was measured (host, time,
load, samples per op, which fit each op got and why), and `save` writes it
as JSON for `data/profiles/`. `measure_task(app, name, args)` times a
registered task's own service time (`stemlab.calibration.task`), so the
simulator can predict each broker with that real work.

A load ramp (`stemlab.calibration.ramp`) then measures what each call costs
the machine (the profile's `host` section: client and server CPU,
serialisation, cores), `stemlab.calibration.harness` what `run_live`'s own
harness costs per task (its CPU outside the calls, how late its work ends),
and the ramp how busy the machine was with other programs:
`calibrate` warns (`BusyMachineWarning`) when the machine was busy and
refuses (`BusyMachineError`) a profile measured while other programs used
more than half of its cores, unless `force=True`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from stemlab._version import __version__
from stemlab.brokers import connect
from stemlab.calibration.fit import fit_latency, fit_poll, fit_reclaim, quantiles, wakeup
from stemlab.calibration.harness import HarnessCosts, measure_harness
from stemlab.calibration.measure import QUEUE, Measurements, Plan, _clean, measure
from stemlab.calibration.procfs import server_tree
from stemlab.calibration.ramp import RampPlan, fit_host, ramp
from stemlab.calibration.task import measure_task
from stemlab.core.broker import Broker
from stemlab.core.progress import Progress
from stemlab.errors import CalibrationError
from stemlab.instrument import InstrumentedBroker, instrument
from stemlab.model.distributions import Distribution
from stemlab.model.host import HostModel
from stemlab.model.names import broker_name
from stemlab.model.profile import OPS, BrokerProfile

__all__ = [
    "BUSY_REFUSE",
    "BUSY_WARN",
    "PROFILE_VERSION",
    "BusyMachineError",
    "BusyMachineWarning",
    "CalibrationError",
    "Plan",
    "RampPlan",
    "calibrate",
    "describe",
    "measure_task",
    "redact",
]

PROFILE_VERSION = 1  # meta["profile_version"]: bump when the meaning of a field changes
NAMESPACE = "stemlab-calibrate"  # used when calibrate opens the broker from a URL
# Other programs' CPU during the ramp, as a share of the cores: warn above BUSY_WARN
# (or when the load average exceeds the cores), refuse above BUSY_REFUSE unless forced.
BUSY_WARN = 0.25
BUSY_REFUSE = 0.5


class BusyMachineError(CalibrationError):
    """Other programs used so much CPU during calibration that its costs are not this broker's."""


class BusyMachineWarning(UserWarning):
    """The machine was busy while calibrating: the profile may over-state the broker's costs."""


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
    host: bool = True,
    ramp_plan: RampPlan | None = None,
    force: bool = False,
) -> BrokerProfile:
    """Measure `broker` (an open Broker, left open, or a URL) and return its fitted profile.

    `quick=True` makes a few hundred calls and finishes in seconds; the full
    run makes a few thousand. `plan` overrides both. Only the queue
    `stemlab.calibrate` of the broker's namespace is used (purged before and
    after). `name` defaults to the adapter's scheme ("sqlite", "redis", ...).
    `host=True` adds the load ramp and the profile's `host` section (the
    contention model); its load check warns or raises `BusyMachineError`
    (see the module doc) unless `force=True`.
    """
    chosen = plan or (Plan.quick() if quick else Plan())
    steps = ramp_plan or (RampPlan.quick() if quick else RampPlan())
    rng = np.random.default_rng(seed)
    with _opened(broker) as (raw, url):
        ib = instrument(raw)
        load_before = _loadavg()
        started = datetime.now(UTC)
        with Progress(chosen.total, "calibrating", enabled=progress, unit="msg") as bar:
            m = measure(ib, chosen, rng, lambda n: bar.advance(n))
        profile = _profile(ib, m, chosen, name, url, started, load_before)
        if not host:
            return profile
        tree = server_tree(redact(url) if url else describe(ib))
        _clean(ib)
        try:
            result = ramp(ib, steps, tree)
        finally:
            _clean(ib)
    unwatched = fit_latency(m.publish_unwatched)[0] if m.publish_unwatched.size else None
    loaded = fit_latency(m.ack_loaded)[0] if m.ack_loaded.size else None
    cores = os.cpu_count() or 1
    backoff = ib.capabilities.lock_backoff
    model, info = fit_host(result, cores, unwatched, chosen.listeners, backoff)
    costs = measure_harness(steps.harness_tasks, steps.waits, rng)
    model, info["harness"] = _with_harness(model, costs)
    model = replace(model, ack_loaded=loaded)
    loads = [x[0] for x in (load_before, _loadavg()) if x]
    info["load_check"] = _check_load(result.background_cores, cores, loads, force)
    profile.meta["host_model"] = info  # meta["host"] is the machine's name
    profile.meta["load_average_after"] = _loadavg()
    return profile.with_overrides(host=model)


def _with_harness(model: HostModel, costs: HarnessCosts) -> tuple[HostModel, dict[str, Any]]:
    """The host section with the live harness's own costs, and what was measured (for meta)."""
    late, fit = fit_latency(costs.overshoot)
    cpu = {
        "producer": float(f"{costs.producer_cpu:.4g}"),
        "worker": float(f"{costs.worker_cpu:.4g}"),
    }
    info = {"cpu_s": cpu, "work_overshoot": fit}
    return replace(model, harness_cpu=cpu, work_overshoot=late), info


def _check_load(
    background: float | None, cores: int, loads: list[float], force: bool
) -> dict[str, Any]:
    """Warn when the machine was busy; refuse (unless forced) when others used > half the cores."""
    share = background / cores if background is not None else None
    worst = max(loads) if loads else None
    verdict = "quiet"
    if share is not None and share > BUSY_REFUSE:
        verdict = "refused" if not force else "forced"
    elif (share is not None and share > BUSY_WARN) or (worst is not None and worst > cores):
        verdict = "busy"
    what = (
        f"other programs used {background:.2f} of {cores} cores during the load ramp"
        if background is not None
        else "the machine's CPU use could not be measured (/proc/stat)"
    )
    message = f"{what}; 1-minute load average up to {worst}"
    if verdict == "refused":
        raise BusyMachineError(
            f"{message}: more than {BUSY_REFUSE:.0%} of the cores went to a load this "
            "calibration cannot explain, so its costs are not the broker's. Calibrate on a "
            "quieter machine, or pass force=True (CLI: --force) to keep the profile anyway."
        )
    if verdict in ("busy", "forced"):
        warnings.warn(
            f"{message}: the profile may over-state the broker's costs",
            BusyMachineWarning,
            stacklevel=3,
        )
    return {
        "verdict": verdict,
        "background_share": round(share, 3) if share is not None else None,
        "load_average_max": worst,
        "warn_above": BUSY_WARN,
        "refuse_above": BUSY_REFUSE,
    }


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
        "to wake, as at load <= 0.7); with the load ramp the host section keeps it as "
        "publish_unwatched and the simulator interpolates by the number of idle consumers",
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
