"""The flat record of one broker call, the recorder that collects them, and per-op statistics.

The hot path costs two clock reads, one tuple of plain values and one list
append (atomic under the GIL, so threads need no lock). The tuple keeps the
end reading, not the duration: the subtraction (and the int it makes) is left
to the reader, like epoch times, consumer names and the DataFrame, which are
worked out only when asked; pandas and numpy are imported then too, so
wrapping a broker stays light.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, overload

from stemlab.core.envelope import Delivery, Envelope

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OP_COLUMNS",
    "OpRecord",
    "RawRow",
    "RawRows",
    "Recorder",
    "Row",
    "Stored",
    "fields_of",
    "op_stats",
    "ops_to_frame",
]

OP_COLUMNS = [
    "ts",
    "op",
    "queue",
    "task_id",
    "priority",
    "duration_s",
    "ok",
    "error",
    "consumer",
    "delivery_count",
]


class OpRecord(NamedTuple):
    """One broker call: when it began (epoch s), what it was, how long it took, how it ended."""

    ts: float
    op: str
    queue: str | None
    task_id: str | None
    priority: int | None
    duration_s: float
    ok: bool
    error: str | None
    consumer: str | None
    delivery_count: int | None


# An expanded record, in OP_COLUMNS order (what OpRecord holds).
Row = tuple[
    float, str, str | None, str | None, int | None, float, bool, str | None, str | None, int | None
]
# One raw record, as `Recorder.rows` gives it: atomic values only
# (perf_counter_ns at start, op, queue, task_id, priority, duration_ns, error,
#  consumer, delivery_count, receipt). Settling calls leave `consumer` None and
# keep the receipt; the consumer is looked up from the `get` that handed the
# receipt out when records are expanded. `stemlab.calibration` reads these raw
# rows directly (cheaper than a DataFrame): keep the layout stable. The hot path
# stores the same ten values with the end reading (perf_counter_ns) in place of
# the duration, which is worked out on read (see `RawRows`).
RawRow = tuple[
    int,
    str,
    str | None,
    str | None,
    int | None,
    int,
    str | None,
    str | None,
    int | None,
    str | None,
]


# What the hot path appends: a RawRow with the end reading in place of the duration.
Stored = tuple[Any, ...]


def _raw_rows(stored: list[Stored]) -> list[RawRow]:
    """Stored records as RawRow tuples (the duration worked out from the end reading)."""
    return [
        (t, op, q, task, prio, end - t, err, cons, count, receipt)
        for t, op, q, task, prio, end, err, cons, count, receipt in stored
    ]


class RawRows(Sequence[RawRow]):
    """The records as RawRow tuples, built when read from the recorder's store.

    A read-only sequence: `len(rows)` counts records and `rows[start:]` gives a
    list of them, as the plain list of RawRows this replaces did.
    """

    def __init__(self, stored: list[Stored]) -> None:
        self._stored = stored

    def __len__(self) -> int:
        return len(self._stored)

    @overload
    def __getitem__(self, index: int) -> RawRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[RawRow]: ...

    def __getitem__(self, index: int | slice) -> RawRow | list[RawRow]:
        if isinstance(index, slice):
            return _raw_rows(self._stored[index])  # slicing a list is atomic under the GIL
        return _raw_rows([self._stored[index]])[0]

    def __iter__(self) -> Iterator[RawRow]:
        return iter(self[:])


def fields_of(subject: Any) -> tuple[str | None, str | None, int | None, int | None, str | None]:
    """(queue, task_id, priority, delivery_count, receipt) of what a call was about.

    The subject is a Delivery, an Envelope, a queue name, a (queue, task_id,
    priority) tuple, or anything else (then every field is None).
    """
    if isinstance(subject, Delivery):
        env = subject.envelope
        return subject.queue, env.id, env.priority, subject.delivery_count, subject.receipt
    if isinstance(subject, Envelope):
        return subject.queue, subject.id, subject.priority, None, None
    if isinstance(subject, str):
        return subject, None, None, None, None
    if isinstance(subject, tuple) and len(subject) == 3:
        return subject[0], subject[1], subject[2], None, None
    return None, None, None, None, None


class Recorder:
    """Collects call records cheaply; counts the calls that would flood them (empty gets).

    Timestamps are taken with `time.perf_counter_ns` (cheap, monotonic) and
    turned into epoch seconds through an offset measured when the recorder was
    made (so a wall-clock step during a run does not bend the record).
    """

    def __init__(self) -> None:
        self.stored: list[Stored] = []  # appended to by the hot path (see `Stored`)
        self.rows = RawRows(self.stored)
        self.epoch_offset = time.time() - time.perf_counter_ns() / 1e9
        self._lock = threading.Lock()
        self._empty_done = 0  # empty gets of consumers already closed
        self._empty_live: dict[int, list[int]] = {}  # id(consumer) -> [count]

    def empty_counter(self, key: int) -> list[int]:
        """A one-item list a consumer bumps on each empty get (no lock on the hot path)."""
        with self._lock:
            return self._empty_live.setdefault(key, [0])

    def retire_counter(self, key: int) -> None:
        with self._lock:
            counter = self._empty_live.pop(key, None)
            if counter is not None:
                self._empty_done += counter[0]

    @property
    def empty_gets(self) -> int:
        with self._lock:
            return self._empty_done + sum(c[0] for c in self._empty_live.values())

    def clear(self) -> None:
        """Forget every record and counter."""
        with self._lock:
            del self.stored[:]  # in place: the broker and its consumers hold this list
            self._empty_done = 0
            for counter in self._empty_live.values():
                counter[0] = 0

    def expand(self, start: int = 0) -> list[Row]:
        """Records from index `start` on, as full rows in OP_COLUMNS order (ts in epoch s)."""
        rows = self.rows[:]
        owners = {r[9]: r[7] for r in rows if r[1] == "get" and r[9] is not None}
        offset = self.epoch_offset
        out: list[Row] = []
        for t, op, queue, task_id, prio, dur, error, consumer, count, receipt in rows[start:]:
            if consumer is None and receipt is not None:
                consumer = owners.get(receipt)
            ts = t / 1e9 + offset
            out.append(
                (ts, op, queue, task_id, prio, dur / 1e9, error is None, error, consumer, count)
            )
        return out

    def records(self, start: int = 0) -> list[OpRecord]:
        return [OpRecord(*row) for row in self.expand(start)]

    def frame(self, start: int = 0, *, origin: float = 0.0) -> pd.DataFrame:
        return ops_to_frame(self.expand(start), origin=origin)

    def __len__(self) -> int:
        return len(self.stored)


def ops_to_frame(rows: list[Row] | list[OpRecord], *, origin: float = 0.0) -> pd.DataFrame:
    """Records as a DataFrame with OP_COLUMNS; `ts` is shifted so that `origin` becomes 0."""
    import pandas as pd  # the frame is built on demand: instrumenting a broker needs no pandas

    frame = pd.DataFrame.from_records(list(rows), columns=OP_COLUMNS)
    frame["ts"] = frame["ts"].astype(float) - origin
    frame["duration_s"] = frame["duration_s"].astype(float)
    frame["ok"] = frame["ok"].astype(bool)
    for col in ("priority", "delivery_count"):
        frame[col] = frame[col].astype("Int64")
    for col in ("op", "queue", "task_id", "error", "consumer"):
        frame[col] = frame[col].astype(object)
    return frame


def op_stats(ops: pd.DataFrame) -> pd.DataFrame:
    """Per op: calls, errors, and latency mean/p50/p95/p99/max in seconds.

    `get` latency includes the time a consumer waited for a message, so it
    measures delivery, not the broker's round trip alone.
    """
    import numpy as np  # on demand, as in ops_to_frame
    import pandas as pd

    columns = ["calls", "errors", "mean_s", "p50_s", "p95_s", "p99_s", "max_s"]
    if ops.empty:
        return pd.DataFrame(columns=columns).rename_axis("op")
    rows: dict[str, dict[str, Any]] = {}
    for op, group in ops.groupby("op", sort=True):
        d = group["duration_s"].to_numpy(dtype=float)
        p50, p95, p99 = np.percentile(d, [50, 95, 99])
        rows[str(op)] = {
            "calls": len(group),
            "errors": int((~group["ok"].astype(bool)).sum()),
            "mean_s": float(d.mean()),
            "p50_s": float(p50),
            "p95_s": float(p95),
            "p99_s": float(p99),
            "max_s": float(d.max()),
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("op")
