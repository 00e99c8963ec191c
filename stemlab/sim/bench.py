"""Speed benchmark: `simulate` on the ideal broker beside a minimal hand-written simpy M/M/c.

Run it as `python -m stemlab.sim.bench [--tasks 100000] [--repeat 5]`. The
models run in the same process in `--repeat` interleaved rounds; rates are
tasks per CPU second of this process (so other programs' load distorts them
less than wall time would), reported as medians and ranges over the rounds,
with the machine's load average. The target (issue #14) is that `simulate`
(end to end, `.ops` and frames included) is at least as fast as the minimal
model.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Generator

import numpy as np
import simpy

from stemlab.model.distributions import Exponential
from stemlab.model.scenario import Scenario
from stemlab.sim.simulation import simulate
from stemlab.sim.theory import mmc_mean_wait

__all__ = ["MINIMAL", "TARGET", "bench_scenario", "main", "minimal_mmc", "run"]

MINIMAL = "minimal simpy M/M/c"
TARGET = 1.0  # issue #14: at least as fast as the minimal model, `.ops` recorded


def bench_scenario(tasks: int = 100_000) -> Scenario:
    """The benchmark's M/M/10 at load 0.9 (arrivals 9/s, mean service 1 s)."""
    return Scenario(
        name="bench-mm10",
        arrival_rate=9.0,
        tasks=tasks,
        service_time=Exponential(1.0),
        workers=10,
    )


def minimal_mmc(
    tasks: int, arrival_rate: float, mean_service: float, servers: int, seed: int = 0
) -> float:
    """The smallest honest simpy M/M/c: a Resource, one process per customer. Returns mean wait."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / arrival_rate, tasks).tolist()
    service = rng.exponential(mean_service, tasks).tolist()
    env = simpy.Environment()
    desk = simpy.Resource(env, capacity=servers)
    waits = [0.0] * tasks

    def customer(i: int) -> Generator[simpy.Event, object, None]:
        arrived = env.now
        with desk.request() as turn:
            yield turn
            waits[i] = env.now - arrived
            yield env.timeout(service[i])

    def source() -> Generator[simpy.Event, object, None]:
        for i in range(tasks):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    env.process(source())
    env.run()
    return float(np.mean(waits))


def _timed(fn: Callable[[], float]) -> tuple[float, float, float]:
    """CPU seconds of this process (robust to other programs' load), wall seconds, value."""
    cpu, wall = time.process_time(), time.perf_counter()
    value = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, value


def _loadavg() -> str:
    """The 1-minute load average (a shared machine's CPU time per task still drifts with it)."""
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[0]
    except OSError:
        return "n/a"


def run(tasks: int = 100_000, repeat: int = 5) -> dict[str, dict[str, float]]:
    """Interleaved rounds: each contender once per round; medians and ranges over the rounds.

    Per contender: median, min and max tasks per CPU second, median CPU and
    wall seconds and the mean wait; `ratio*` is simulate's rate over the
    minimal model's in the same round (median, min, max), which cancels slow
    drifts of the machine's speed.
    """
    sc = bench_scenario(tasks)
    contenders: dict[str, Callable[[], float]] = {
        MINIMAL: lambda: minimal_mmc(tasks, 9.0, 1.0, 10),
        "simulate(ideal)": lambda: _mean_wait(simulate(sc, "ideal", seed=0)),
        "simulate(ideal, record_ops=False)": lambda: _mean_wait(
            simulate(sc, "ideal", seed=0, record_ops=False)
        ),
    }
    rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            rounds[name].append(_timed(fn))
    out: dict[str, dict[str, float]] = {}
    base = [tasks / cpu for cpu, _, _ in rounds[MINIMAL]]
    for name, runs in rounds.items():
        rates = [tasks / cpu for cpu, _, _ in runs]
        ratios = [r / b for r, b in zip(rates, base, strict=True)]
        out[name] = {
            "tasks_per_s": float(np.median(rates)),
            "min": min(rates),
            "max": max(rates),
            "cpu_s": float(np.median([c for c, _, _ in runs])),
            "wall_s": float(np.median([w for _, w, _ in runs])),
            "mean_wait": runs[0][2],
            "ratio": float(np.median(ratios)),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return out


def _mean_wait(result: object) -> float:
    tasks = result.tasks  # type: ignore[attr-defined]
    return float((tasks["started_at"] - tasks["enqueued_at"]).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    load_before = _loadavg()
    results = run(args.tasks, args.repeat)
    theory = mmc_mean_wait(9.0, 1.0, 10)
    print(f"ideal M/M/10, load 0.9, {args.tasks:,} tasks, {args.repeat} interleaved rounds")
    print(f"{'model':<36}{'tasks/s':>9}{'range':>17}{'cpu s':>7}{'wall s':>7}{'x minimal':>17}")
    for name, row in results.items():
        span = f"{row['min']:,.0f}-{row['max']:,.0f}"
        versus = f"{row['ratio']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        print(
            f"{name:<36}{row['tasks_per_s']:>9,.0f}{span:>17}{row['cpu_s']:>7.2f}"
            f"{row['wall_s']:>7.2f}{versus:>17}"
        )
    waits = ", ".join(f"{name} {row['mean_wait']:.4f}" for name, row in results.items())
    print(f"mean wait: {waits}; Erlang C {theory:.4f}")
    print("(medians; tasks/s = tasks per CPU second of this process; x minimal = per-round ratio)")
    print(f"load average (1 min) before {load_before}, after {_loadavg()}")
    ratio = results["simulate(ideal)"]["ratio"]
    verdict = "met" if ratio >= TARGET else f"NOT met (short by {1 - ratio / TARGET:.0%})"
    print(f"simulate / minimal = {ratio:.2f} (target >= {TARGET:.1f}): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
