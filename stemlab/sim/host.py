"""The shared host in simulated time: cores, the client's interpreter lock and the broker's
serialisation point, which every broker call of a run competes for.

A profile with a `host` section (`stemlab.model.host.HostModel`) makes each
call cost, besides its drawn latency, its measured share of three resources:

* the client lock (capacity 1): the live harness's producer and worker slots
  are threads of one Python process, so their CPU work runs one at a time;
* the broker's serialisation point (capacity 1): SQLite's writer, Redis's
  command thread; a call holds it for `serial[op]` seconds;
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

    def __init__(self, env: simpy.Environment, model: HostModel, idle: Callable[[], int]) -> None:
        self.env = env
        self.model = model
        self.idle = idle  # how many consumers are idle now (publish law interpolation)
        self.cores = [0.0] * model.cores  # a heap of the instants each core is next free
        self.client_free = 0.0
        self.serial_free = 0.0
        self.busy = dict.fromkeys(("client", "server", "serial"), 0.0)  # seconds held in total

    def queue(self, op: str) -> float:
        """Reserve `op`'s resources from now on; the seconds it waits for them in all."""
        client, server, hold = self.model.cost(op)
        now = self.env.now
        cores = self.cores
        t = now
        waited = 0.0
        if client > 0:
            start = max(t, self.client_free, cores[0])
            end = start + client
            heapq.heapreplace(cores, end)
            self.client_free = end
            self.busy["client"] += client
            waited += start - t
            t = end
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

    def wrap(self, op: str, draw: Draw, unwatched: Draw | None = None) -> Draw:
        """`draw` plus the time `op` queues for the host; publish mixes the two laws."""
        queue = self.queue
        if op == "publish" and unwatched is not None:
            idle, listeners = self.idle, self.model.listeners

            def publish() -> float:
                share = min(idle(), listeners) / listeners
                watched, alone = draw(), unwatched()
                return share * watched + (1.0 - share) * alone + queue("publish")

            return publish

        def call() -> float:
            return draw() + queue(op)

        return call

    def wrap_all(self, draws: dict[str, Draw], unwatched: Draw | None) -> dict[str, Draw]:
        """Every op's wrapped draw (ops the host model does not know keep theirs)."""
        return {
            op: self.wrap(op, draw, unwatched) if op in HOST_OPS else draw
            for op, draw in draws.items()
        }
