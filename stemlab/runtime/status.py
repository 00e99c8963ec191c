"""Task states and the status record a result backend stores for each task id.

The record is JSON (never pickle) so any process, in any language, can read it;
it is validated here, once, before any backend stores it.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from stemlab.core.codec import dumps, ensure_json, loads
from stemlab.errors import EnvelopeError, ResultError

__all__ = ["TERMINAL", "TaskState", "TaskStatus"]


class TaskState(enum.StrEnum):
    """Where a task is in its life; `succeeded`, `failed` and `cancelled` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    CANCELLED = "cancelled"


TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})


def _state(value: object) -> TaskState:
    try:
        return TaskState(value if isinstance(value, str) else repr(value))
    except ValueError:
        known = ", ".join(s.value for s in TaskState)
        raise ResultError(f"unknown task state {value!r} (known: {known})") from None


@dataclass(frozen=True)
class TaskStatus:
    """What is known of one task: its state, the attempt, its result or error, and metadata.

    `meta` carries the task name, queue, worker and `updated_at` (epoch seconds).
    Construction validates everything, so an invalid status can never be stored.
    """

    id: str
    state: TaskState
    attempt: int = 0
    result: Any = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ResultError("a task id must be a non-empty string")
        object.__setattr__(self, "state", _state(self.state))
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 0:
            raise ResultError(f"attempt must be an int >= 0, got {self.attempt!r}")
        if self.error is not None and not isinstance(self.error, str):
            raise ResultError("error must be a string or None")
        if not isinstance(self.meta, dict):
            raise ResultError("meta must be a dict")
        try:
            ensure_json(self.result, "result")
            ensure_json(self.meta, "meta")
        except EnvelopeError as exc:
            raise ResultError(str(exc)) from exc

    @property
    def done(self) -> bool:
        """True once the task succeeded, failed for good or was cancelled."""
        return self.state in TERMINAL

    def to_json(self) -> str:
        meta = {**self.meta, "updated_at": time.time()}  # when this record was written
        return dumps(
            {
                "id": self.id,
                "state": self.state.value,
                "attempt": self.attempt,
                "result": self.result,
                "error": self.error,
                "meta": meta,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskStatus:
        """Rebuild a stored status; anything malformed raises `ResultError`."""
        try:
            data = loads(text)
        except EnvelopeError as exc:
            raise ResultError(f"stored status is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ResultError("a stored status must be a JSON object")
        try:
            return cls(
                id=data["id"],
                state=data["state"],
                attempt=data.get("attempt", 0),
                result=data.get("result"),
                error=data.get("error"),
                meta=data.get("meta") or {},
            )
        except KeyError as exc:
            raise ResultError(f"stored status has no {exc.args[0]!r}") from exc
