"""Speed benchmark: `simulate` on the ideal broker beside a minimal hand-written simpy M/M/c.

Run it as `python -m stemlab.sim.bench [--tasks 100000] [--repeat 3]`. Both
models run in the same process, interleaved; rates are tasks per CPU second
of this process and the best of `--repeat` runs counts, so load from other
programs on a shared machine distorts neither. The target is
that `simulate` (end to end, frames included) reaches at least half the
minimal model's tasks per second.
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

__all__ = ["bench_scenario", "main", "minimal_mmc"]


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


def run(tasks: int = 100_000, repeat: int = 3) -> dict[str, dict[str, float]]:
    """Best-of-`repeat` tasks/s and mean wait for the three contenders."""
    sc = bench_scenario(tasks)
    contenders: dict[str, Callable[[], float]] = {
        "minimal simpy M/M/c": lambda: minimal_mmc(tasks, 9.0, 1.0, 10),
        "simulate(ideal)": lambda: _mean_wait(simulate(sc, "ideal", seed=0)),
        "simulate(ideal, record_ops=False)": lambda: _mean_wait(
            simulate(sc, "ideal", seed=0, record_ops=False)
        ),
    }
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for name, fn in contenders.items():
            cpu, wall, wait = _timed(fn)
            rate = tasks / cpu
            if name not in best or rate > best[name]["tasks_per_s"]:
                best[name] = {"tasks_per_s": rate, "cpu_s": cpu, "wall_s": wall, "mean_wait": wait}
    return best


def _mean_wait(result: object) -> float:
    tasks = result.tasks  # type: ignore[attr-defined]
    return float((tasks["started_at"] - tasks["enqueued_at"]).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results = run(args.tasks, args.repeat)
    theory = mmc_mean_wait(9.0, 1.0, 10)
    print(f"ideal M/M/10, load 0.9, {args.tasks:,} tasks, best of {args.repeat}")
    print(f"{'model':<36}{'tasks/s':>10}{'cpu s':>8}{'wall s':>8}{'mean wait':>11}")
    for name, row in results.items():
        print(
            f"{name:<36}{row['tasks_per_s']:>10,.0f}{row['cpu_s']:>8.2f}{row['wall_s']:>8.2f}"
            f"{row['mean_wait']:>11.4f}"
        )
    print(f"{'Erlang C mean wait':<62}{theory:>11.4f}")
    print("(tasks/s = tasks per CPU second of this process, so other load on the machine cancels)")
    base = results["minimal simpy M/M/c"]["tasks_per_s"]
    ratio = results["simulate(ideal)"]["tasks_per_s"] / base
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"simulate / minimal = {ratio:.2f} (target >= 0.5): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
