"""Turn calibration measurements into a `BrokerProfile`: distributions, pickup and reclaim.

Latencies: a log-normal is fitted by maximum likelihood (mean and sigma of
the log durations) and kept only where it is good: Kolmogorov-Smirnov
distance at most `KS_MAX` and p95/p99 within `TAIL_TOL` of the measured
ones. Otherwise the profile keeps the measured distribution itself as
`QUANTILES` evenly spaced quantiles (an `Empirical` the simulator resamples).
Real latencies usually have a heavier tail than a log-normal, so most ops end
up empirical; the choice and its statistics are recorded in the profile.

Pickup: a polling adapter's effective poll interval is fitted so that the
simulator's mean idle pickup equals the measured one (see `fit_poll`). A
blocking adapter hands work over when notified; the delay of that wake-up
beyond a claim is recorded in `meta` (the simulator does not model it).

Reclaim: expiries noticed within `RECLAIM_CLAIM_TIME_S` count as found at
claim time (`reclaim_interval=None`); later ones as a periodic sweep whose
period is estimated from the delays.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from stemlab.calibration.measure import Measurements
from stemlab.model.distributions import Constant, Distribution, Empirical, LogNormal

__all__ = [
    "KS_MAX",
    "QUANTILES",
    "RECLAIM_CLAIM_TIME_S",
    "TAIL_TOL",
    "fit_latency",
    "fit_poll",
    "fit_reclaim",
    "quantiles",
    "wakeup",
]

KS_MAX = 0.05
TAIL_TOL = 0.15
QUANTILES = 200
RECLAIM_CLAIM_TIME_S = 0.25
_FLOOR = 1e-7  # 0.1 us: below the clock's resolution; keeps log() finite


def _round(value: float) -> float:
    """Four significant digits: plenty for a latency, and a compact JSON file."""
    return float(f"{value:.4g}")


def quantiles(samples: np.ndarray, probs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, Any]:
    """n, mean, chosen percentiles and max of `samples` (seconds), rounded for the record."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        return {"n": 0}
    out: dict[str, Any] = {"n": int(x.size), "mean": _round(float(x.mean()))}
    for p in probs:
        out[f"p{round(p * 100):d}"] = _round(float(np.quantile(x, p)))
    out["max"] = _round(float(x.max()))
    return out


def _ks_lognormal(sorted_logs: np.ndarray, mu: float, sigma: float) -> float:
    """Kolmogorov-Smirnov distance between the sample and Normal(mu, sigma) on log scale."""
    n = sorted_logs.size
    dist = NormalDist(mu, sigma)
    cdf = np.array([dist.cdf(float(v)) for v in sorted_logs])
    upper = np.arange(1, n + 1) / n - cdf
    lower = cdf - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


def fit_latency(samples: np.ndarray, *, points: int = QUANTILES) -> tuple[Distribution, dict]:
    """The profile distribution for one op's measured latencies, and how it was chosen."""
    x = np.asarray(samples, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("no latency samples to fit")
    x = np.maximum(x, _FLOOR)
    info = quantiles(x)
    if x.size < 3 or float(np.ptp(x)) == 0.0:
        info.update(kind="constant")
        return Constant(_round(float(np.median(x)))), info
    logs = np.sort(np.log(x))
    mu, sigma = float(logs.mean()), float(logs.std(ddof=1))
    ks = _ks_lognormal(logs, mu, sigma) if sigma > 0 else 1.0
    tails_ok = sigma > 0 and all(
        abs(math.exp(NormalDist(mu, sigma).inv_cdf(p)) / float(np.quantile(x, p)) - 1) <= TAIL_TOL
        for p in (0.95, 0.99)
    )
    info["ks_lognormal"] = round(ks, 4)
    if ks <= KS_MAX and tails_ok:
        info.update(kind="lognormal")
        return LogNormal(_round(math.exp(mu + sigma**2 / 2)), _round(sigma)), info
    k = min(points, int(x.size))
    probs = (np.arange(k) + 0.5) / k
    values = [_round(float(v)) for v in np.quantile(x, probs)]
    info.update(kind="empirical", points=k)
    return Empirical(values), info


def fit_poll(m: Measurements, declared: float, listeners: int) -> tuple[float, dict]:
    """Effective poll interval of a polling adapter, from its idle pickups.

    In the simulator an idle consumer asks every claim + poll seconds, at a
    phase of its own, and a successful ask is delivered one claim later. With
    `listeners` idle consumers the first ask after a publish comes, on
    average, (claim + poll) / (listeners + 1) later, so the mean wait after a
    publish is (claim + poll) / (listeners + 1) + claim. Solving for poll with
    the measured means gives the interval that reproduces the measured idle
    pickup (sleep overshoot, the change check and the hand-out included). A
    non-positive estimate (noise) falls back to the adapter's declared value.
    """
    after = float(np.mean(m.after_publish)) if m.after_publish.size else math.nan
    claim = float(np.mean(m.claim)) if m.claim.size else 0.0
    estimate = (listeners + 1) * (after - claim) - claim
    fitted = estimate if math.isfinite(estimate) and estimate > 0 else declared
    info = {
        "declared_s": declared,
        "fitted_s": _round(fitted),
        "mean_after_publish_s": _round(after) if math.isfinite(after) else None,
        "mean_claim_s": _round(claim),
        "listeners": listeners,
        "rule": "poll = (listeners + 1) * (mean after-publish pickup - mean claim) - mean claim",
    }
    return _round(fitted), info


def fit_reclaim(m: Measurements, declared: float) -> tuple[float | None, dict]:
    """None when expired leases are found at claim time, else the estimated sweep period."""
    d = m.expiry_delay
    info: dict[str, Any] = {"declared_reclaim_delay_s": declared, **quantiles(d)}
    if d.size == 0:
        info["rule"] = "no expiry measured: the adapter's declared reclaim delay is used"
        return (declared or None), info
    worst = float(d.max())
    if worst <= RECLAIM_CLAIM_TIME_S:
        info["rule"] = f"every expiry noticed within {RECLAIM_CLAIM_TIME_S:g} s: at claim time"
        return None, info
    # delays of a periodic sweep are spread over one period: its mean is half of it
    period = _round(max(worst, 2 * float(d.mean())))
    info["rule"] = "periodic sweep: period = max(worst delay, 2 * mean delay)"
    return period, info


def wakeup(m: Measurements) -> dict[str, Any]:
    """How much longer an idle consumer takes than a claim on ready work (blocking adapters)."""
    if not m.after_publish.size or not m.claim.size:
        return {"n": 0}
    extra = m.after_publish - float(np.median(m.claim))
    out = quantiles(extra)
    out["note"] = (
        "idle pickup after publish minus the median claim: notification and thread wake-up; "
        "the simulator adds a draw of this law to an idle consumer's pickup (stemlab.sim.broker)"
    )
    return out
