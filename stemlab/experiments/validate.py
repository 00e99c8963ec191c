"""`validate(scenario, broker)`: run a scenario live and simulated, and say how wrong the model was.

Each replication r runs the scenario on the real broker with seed r and in
the simulator with the same seed (so both see the same arrivals, priorities
and service-time law) on the broker's calibrated profile. The report gives,
per metric, the measured and predicted means over replications, their
spread, and the relative error of the prediction.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stemlab.brokers import connect
from stemlab.calibration import calibrate
from stemlab.core.broker import Broker
from stemlab.core.progress import Progress
from stemlab.live import run_live
from stemlab.model.names import broker_name
from stemlab.model.profile import BrokerProfile, load_profile
from stemlab.model.result import RunResult
from stemlab.model.scenario import Scenario
from stemlab.model.stats import mean_ci
from stemlab.sim import simulate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "COLUMNS",
    "LATENCY_LOAD_MAX",
    "METRICS",
    "NAMESPACE",
    "TARGETS",
    "ValidationReport",
    "fidelity_table",
    "targets_for",
    "validate",
]

METRICS = ("wait_p50", "wait_p95", "wait_p99", "e2e_p50", "e2e_p95", "e2e_p99", "throughput")
# The fidelity targets: |relative error| at most this much. Latency targets hold up to
# load LATENCY_LOAD_MAX; above it the queue grows for the whole run and only the throughput
# (then the capacity) is targeted.
TARGETS = {"e2e_p50": 0.20, "e2e_p95": 0.20, "throughput": 0.10}
LATENCY_LOAD_MAX = 0.95


def targets_for(scenario: Scenario) -> dict[str, float]:
    """The targets `scenario` is held to: all of TARGETS up to load 0.95, throughput above."""
    if scenario.load <= LATENCY_LOAD_MAX + 1e-9:
        return dict(TARGETS)
    return {"throughput": TARGETS["throughput"]}


COLUMNS = [
    "measured",
    "measured_sd",
    "live_spread",
    "predicted",
    "predicted_sd",
    "rel_error",
    "rel_error_sd",
    "within_spread",
    "target",
    "within_target",
]
# live_spread: half-width of the 95 % interval of the measured mean, relative to it (how
# much the live number itself is uncertain); within_spread: |rel_error| <= live_spread, i.e.
# the prediction error is no bigger than the live runs' own noise (None with one replication).
NAMESPACE = "stemlab-validate"  # used when validate opens the broker from a URL


def _nanstd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size > 1 else math.nan


def _nanmean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


@dataclass
class ValidationReport:
    """Live and simulated runs of one scenario on one broker, and the prediction errors."""

    scenario: Scenario
    broker: str
    profile: BrokerProfile
    live: list[RunResult]
    sim: list[RunResult]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> pd.DataFrame:
        """One row per metric (METRICS), columns COLUMNS; times in seconds, throughput per s."""
        live = pd.DataFrame([r.summary() for r in self.live])
        sim = pd.DataFrame([r.summary() for r in self.sim])
        rows = {}
        targets = targets_for(self.scenario)
        for metric in METRICS:
            meas = live[metric].to_numpy(dtype=float)
            pred = sim[metric].to_numpy(dtype=float)
            m, p = _nanmean(meas), _nanmean(pred)
            paired = pred / meas - 1 if meas.size == pred.size else np.array([math.nan])
            target = targets.get(metric, math.nan)
            error = p / m - 1 if m and math.isfinite(m) else math.nan
            _, low, high, _, n = mean_ci(meas)
            spread = (high - low) / 2 / abs(m) if n > 1 and m and math.isfinite(m) else math.nan
            rows[metric] = {
                "measured": m,
                "measured_sd": _nanstd(meas),
                "live_spread": spread,
                "predicted": p,
                "predicted_sd": _nanstd(pred),
                "rel_error": error,
                "rel_error_sd": _nanstd(paired),
                "within_spread": bool(abs(error) <= spread) if math.isfinite(spread) else None,
                "target": target,
                "within_target": bool(abs(error) <= target) if math.isfinite(target) else None,
            }
        return pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS).rename_axis("metric")

    @property
    def ok(self) -> bool:
        """Every targeted metric within its target."""
        return bool(self.frame["within_target"].dropna().all())

    def row(self) -> dict[str, Any]:
        """This report's line of the fidelity table (see `fidelity_table`)."""
        f = self.frame
        out: dict[str, Any] = {
            "broker": self.broker,
            "scenario": self.scenario.name,
            "load": self.scenario.load,
            "replications": len(self.live),
            "load_average": self.meta.get("load_average_max"),
        }
        for metric in ("e2e_p50", "e2e_p95", "throughput", "wait_p50"):
            out[metric] = (
                f.at[metric, "measured"],
                f.at[metric, "predicted"],
                f.at[metric, "rel_error"],
                f.at[metric, "live_spread"],
            )
        return out

    def _load_note(self) -> str:
        """`; calibrated on a busy machine ...` when the profile's load check was not quiet."""
        check = self.meta.get("calibration_load") or {}
        if check.get("verdict") in (None, "quiet"):
            return ""
        return (
            f"; calibrated on a {check['verdict']} machine (other programs: "
            f"{check.get('background_share')} of the cores, load average "
            f"{check.get('load_average_max')})"
        )

    def table(self) -> str:
        """The per-metric table as text (ms for latencies)."""
        f = self.frame.copy()
        lines = [
            f"{self.scenario.name} on {self.broker}: {len(self.live)} replication(s), "
            f"load {self.scenario.load:.2f}, profile {self.profile.name!r} "
            f"({self.profile.meta.get('status', 'unknown')}){self._load_note()}",
            f"{'metric':<12}{'measured':>12}{'± sd':>9}{'predicted':>12}{'± sd':>9}"
            f"{'error':>9}{'± sd':>8}{'live ±95%':>11}  target",
        ]
        for metric, r in f.iterrows():
            scale, unit = (1.0, "/s") if metric == "throughput" else (1000.0, "ms")
            verdict = ""
            if r["within_target"] is not None and not pd.isna(r["within_target"]):
                verdict = f"±{r['target']:.0%} {'ok' if r['within_target'] else 'MISSED'}"
            lines.append(
                f"{metric:<12}{r['measured'] * scale:>10.2f}{unit:<2}"
                f"{r['measured_sd'] * scale:>7.2f}"
                f"{r['predicted'] * scale:>12.2f}{r['predicted_sd'] * scale:>9.2f}"
                f"{r['rel_error']:>+9.1%}{r['rel_error_sd']:>8.1%}{r['live_spread']:>11.1%}"
                f"  {verdict}"
            )
        return "\n".join(lines)

    def figure(self) -> Figure:
        """Measured vs predicted percentiles (bars, ± sd) and the pooled latency CDFs."""
        from matplotlib.figure import Figure  # only when drawing: importing stemlab stays light

        fig = Figure(figsize=(11.0, 4.0), layout="constrained")
        bars, cdf = fig.subplots(1, 2)
        f = self.frame.drop(index="throughput")
        x = np.arange(len(f))
        for offset, (col, label) in enumerate([("measured", "live"), ("predicted", "simulated")]):
            bars.bar(
                x + (offset - 0.5) * 0.4,
                f[col] * 1000,
                0.4,
                yerr=f[f"{col}_sd"].fillna(0) * 1000,
                label=label,
                capsize=3,
            )
        bars.set_xticks(x, list(f.index), rotation=30)
        bars.set_ylabel("ms")
        bars.set_title(f"{self.scenario.name} on {self.broker}")
        bars.legend(fontsize="small")
        for runs, label in ((self.live, "live"), (self.sim, "simulated")):
            e2e = np.sort(np.concatenate([_e2e(r) for r in runs]))
            if e2e.size:
                cdf.step(
                    e2e * 1000, np.arange(1, e2e.size + 1) / e2e.size, where="post", label=label
                )
        cdf.set_xscale("log")
        cdf.set_xlabel("end-to-end latency (ms)")
        cdf.set_ylabel("fraction of tasks")
        cdf.set_title("end-to-end latency CDF (all replications)")
        cdf.grid(True, alpha=0.3)
        cdf.legend(fontsize="small")
        return fig

    def to_dict(self) -> dict[str, Any]:
        """Everything but the frames, JSON-ready (NaN becomes None): scenario, profile,
        per-run summaries, errors, meta."""
        return _finite(
            {
                "scenario": self.scenario.to_dict(),
                "broker": self.broker,
                "profile": self.profile.to_dict(),
                "live": [r.summary() for r in self.live],
                "sim": [r.summary() for r in self.sim],
                "errors": self.frame.reset_index().to_dict(orient="records"),
                "meta": self.meta,
            }
        )


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _e2e(result: RunResult) -> np.ndarray:
    t = result.tasks
    done = t[t["outcome"] == "acked"]
    values = (done["finished_at"] - done["enqueued_at"]).to_numpy(dtype=float)
    return values[np.isfinite(values)]


@contextlib.contextmanager
def _opened(broker: Broker | str) -> Iterator[Broker]:
    if isinstance(broker, str):
        opened = connect(broker, namespace=NAMESPACE)
        try:
            yield opened
        finally:
            opened.close()
    elif isinstance(broker, Broker):
        yield broker
    else:
        raise TypeError(f"broker must be a Broker or a URL, got {type(broker).__name__}")


def _load() -> float | None:
    with contextlib.suppress(OSError):
        return round(os.getloadavg()[0], 2)
    return None


def validate(
    scenario: Scenario,
    broker: Broker | str,
    *,
    replications: int = 3,
    profile: BrokerProfile | str | Path | None = None,
    quick: bool = False,
    progress: bool = False,
    force: bool = False,
) -> ValidationReport:
    """Run `scenario` live on `broker` and simulated on its profile; compare.

    `profile` is a BrokerProfile, a profile name or JSON path; by default the
    broker is calibrated first (`quick` selects the short calibration), so
    the prediction uses this machine as it is now (`force` keeps a
    calibration the load check would refuse). `broker` is an open Broker
    (left open) or a URL.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise ValueError(f"replications must be an int >= 1, got {replications!r}")
    with _opened(broker) as raw:
        name = broker_name(raw)
        chosen = (
            calibrate(raw, quick=quick, progress=progress, force=force)
            if profile is None
            else load_profile(profile)
        )
        live: list[RunResult] = []
        sim: list[RunResult] = []
        loads: list[float] = []
        started = datetime.now(UTC)
        with Progress(
            replications, f"validating {scenario.name} on {name}", enabled=progress
        ) as bar:
            for seed in range(replications):
                loads += [x for x in [_load()] if x is not None]
                live.append(run_live(scenario, raw, seed=seed, progress=progress))
                loads += [x for x in [_load()] if x is not None]
                sim.append(simulate(scenario, chosen, seed=seed))
                bar.advance()
    meta = {
        "started_at": started.isoformat(timespec="seconds"),
        "load_average_max": max(loads) if loads else None,
        "cpus": os.cpu_count(),
        "seeds": list(range(replications)),
        "live_incomplete": [r.label for r in live if r.summary()["lost"]],
        # the profile's own load check (calibrate's ramp): "quiet", "busy" or "forced"
        "calibration_load": (chosen.meta.get("host_model") or {}).get("load_check"),
    }
    return ValidationReport(scenario, name, chosen, live, sim, meta)


def _cell(value: tuple[float, float, float, float], metric: str, load: float) -> str:
    measured, predicted, error, spread = value
    scale = 1.0 if metric == "throughput" else 1000.0
    digits = 1 if metric == "throughput" or measured * scale >= 10 else 2
    noise = f", live ±{spread:.0%}" if math.isfinite(spread) else ""
    text = f"{measured * scale:.{digits}f} / {predicted * scale:.{digits}f} ({error:+.0%}{noise})"
    target = TARGETS.get(metric) if load <= LATENCY_LOAD_MAX + 1e-9 else None
    if metric == "throughput":
        target = TARGETS["throughput"]
    if target is not None and not abs(error) <= target:
        text = f"**{text}**"
    return text


def fidelity_table(reports: Sequence[ValidationReport]) -> str:
    """The README's fidelity table (Markdown): measured / predicted (error) per report.

    Misses of the target (e2e p50 and p95 within 20 % up to load 0.95,
    throughput within 10 % at every load) are in bold.
    """
    head = (
        "| broker | scenario | load | e2e p50 ms | e2e p95 ms | throughput /s | wait p50 ms "
        "| reps | load avg |"
    )
    lines = [head, "|" + "---|" * 9]
    for report in reports:
        r = report.row()
        cells = [r["broker"], r["scenario"], f"{r['load']:.2f}"]
        cells += [
            _cell(r[m], m, r["load"]) for m in ("e2e_p50", "e2e_p95", "throughput", "wait_p50")
        ]
        cells += [str(r["replications"]), f"{r['load_average'] or math.nan:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Each cell: measured / predicted (relative error of the prediction, and the live "
        "spread: the 95 % half-width of the measured mean, relative), means over the "
        "replications; bold = outside the target (e2e p50/p95 within 20 % up to load 0.95, "
        "throughput within 10 %). Load avg: the highest 1-minute load average seen during "
        "the live runs."
    )
    return "\n".join(lines)
