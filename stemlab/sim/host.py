"""The shared host in simulated time: cores, the client's interpreter lock and the broker's
serialisation point, which every broker call of a run competes for.

A profile with a `host` section (`stemlab.model.host.HostModel`) makes each
call cost, besides its drawn latency, its measured share of three resources:

* the client lock (capacity 1): the live harness's producer and worker slots
  are threads of one Python process, so their CPU work runs one at a time;
* the broker's serialisation point (capacity 1): SQLite's writer, Redis's
  command thread; a call holds it for `serial[op]` seconds, and one that
  finds it taken waits in order, or with `serial_backoff` sleeps and retries
  (SQLite's busy handler) and so may find it free only a while after it was;
* the cores (capacity `cores`): client and server CPU both need one.

A call first does its client CPU (lock + a core), then its server part (a
core for its server CPU, the serialisation point for its hold). Every
resource is first come, first served and a call knows its holding times
when it asks, so the waits are computed directly (Lindley's recursion on
each resource's next free instants) instead of through simpy request
events: the same schedule as a FIFO `simpy.Resource`, at a fraction of the
cost. The call's latency is its drawn latency plus the time it queued; on
an idle host that is exactly the drawn latency, so light-load predictions
do not move. The publish law is interpolated between the profile's (drawn
with `listeners` idle consumers) and `publish_unwatched` by the number of
consumers idle at that instant.

The live harness's own per-task work (`harness_cpu`) holds the client lock
and a core like a call's client part, and adds its whole length to the
task's path; `work_overshoot` lengthens each execution (see `SimRun.slot`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import simpy

from stemlab.model.host import HOST_OPS, HostModel

__all__ = ["SimHost"]

Draw = Callable[[], float]


class SimHost:
    """The host's resources in one simulated run, and the wrapped latency draws."""

    def __init__(
        self,
        env: simpy.Environment,
        model: HostModel,
        idle: Callable[[], int],
        backlog: Callable[[], bool] = lambda: False,
    ) -> None:
        self.env = env
        self.model = model
        self.idle = idle  # how many consumers are idle now (publish law interpolation)
        self.backlog = backlog  # whether a ready message waits now (the ack law's choice)
        self.cores = [0.0] * model.cores  # a heap of the instants each core is next free
        self.client_free = 0.0
        self.serial_free = 0.0
        self.backoff = model.serial_backoff
        self.held: list[tuple[float, float]] = []  # (from, to) of holds, with a backoff
        self.busy = dict.fromkeys(("client", "server", "serial"), 0.0)  # seconds held in total

    def queue(self, op: str, drawn: float = 0.0) -> float:
        """Reserve `op`'s resources from now on; the seconds it adds to a `drawn` latency.

        That is the time it waits for them, and with a backoff lock at least
        until its hold ends: a call does not return before it lets go of the
        lock, so one thread's calls never collide with each other.
        """
        client, server, hold = self.model.cost(op)
        backoff = hold > 0 and bool(self.backoff)
        if backoff:  # an in-process lock: held for the last `hold` of the client CPU, unlocked
            client = max(client - hold, 0.0)
        now = self.env.now
        cores = self.cores
        t = now
        waited = 0.0
        if client > 0:
            if self.client_free > t:  # it waits for the lock: a handoff
                client += self.model.handoff_cpu
            start, t = self._client(t, client)
            waited += start - now
        if backoff:  # the waits (lock sleeps included), and at least until the hold ends
            end = self._backoff(t, hold)
            return max(waited + end - hold - t, end - now - drawn)
        if server > 0 or hold > 0:
            start = max(t, self.serial_free) if hold > 0 else t
            if server > 0:
                start = max(start, cores[0])
                heapq.heapreplace(cores, start + server)
                self.busy["server"] += server
            if hold > 0:
                self.serial_free = start + hold
                self.busy["serial"] += hold
            waited += start - t
        return waited

    def _backoff(self, t: float, hold: float) -> float:
        """A lock taken by sleeping and retrying, asked for at `t`; when its hold ends.

        This is an in-process store's write lock (SQLite's): its holder runs
        the store's code with the interpreter lock released, on a core. Found
        taken, the call sleeps through the backoff until a retry finds it
        free, and others may take it meanwhile, so holds are kept as
        intervals rather than as one next-free instant.
        """
        self.held = held = [(a, b) for a, b in self.held if b > self.env.now]
        got, sleeps = t, iter(self.backoff)
        while any(a <= got < b for a, b in held):
            got += next(sleeps, self.backoff[-1])
        start = max(got, self.cores[0])
        heapq.heapreplace(self.cores, start + hold)
        held.append((start, start + hold))
        self.busy["serial"] += hold
        return start + hold

    def harness(self, side: str) -> float:
        """Reserve the harness's per-task CPU on `side`; the seconds it adds (wait + CPU)."""
        cpu = self.model.harness_cpu.get(side, 0.0)
        if cpu <= 0:
            return 0.0
        now = self.env.now
        return self._client(now, cpu)[1] - now

    def _client(self, t: float, cpu: float) -> tuple[float, float]:
        """Hold the client lock and a core for `cpu` seconds from `t` on: (start, end)."""
        start = max(t, self.client_free, self.cores[0])
        end = start + cpu
        heapq.heapreplace(self.cores, end)
        self.client_free = end
        self.busy["client"] += cpu
        return start, end

    def wrap(
        self, op: str, draw: Draw, unwatched: Draw | None = None, loaded: Draw | None = None
    ) -> Draw:
        """`draw` plus the time `op` queues for the host; publish mixes the two laws, and ack
        draws from `loaded` while a ready message waits."""
        queue = self.queue
        if op == "ack" and loaded is not None:
            backlog = self.backlog

            def ack() -> float:
                drawn = loaded() if backlog() else draw()
                return drawn + queue("ack", drawn)

            return ack
        if op == "publish" and unwatched is not None:
            idle, listeners = self.idle, self.model.listeners

            def publish() -> float:
                share = min(idle(), listeners) / listeners
                drawn = share * draw() + (1.0 - share) * unwatched()
                return drawn + queue("publish", drawn)

            return publish

        def call() -> float:
            drawn = draw()
            return drawn + queue(op, drawn)

        return call

    def wrap_all(
        self, draws: dict[str, Draw], unwatched: Draw | None, loaded: Draw | None = None
    ) -> dict[str, Draw]:
        """Every op's wrapped draw (ops the host model does not know keep theirs)."""
        return {
            op: self.wrap(op, draw, unwatched, loaded) if op in HOST_OPS else draw
            for op, draw in draws.items()
        }
