"""The Envelope (a task message) and the Delivery handed to consumers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from stemlab.core.clock import require_aware, utcnow
from stemlab.core.codec import dumps, ensure_json, loads, new_id
from stemlab.core.limits import (
    check_delay,
    check_identifier,
    check_instant,
    check_lease,
    check_text,
)
from stemlab.errors import EnvelopeError

__all__ = [
    "QUEUE_NAME_RE",
    "Delivery",
    "Envelope",
    "detached",
    "snapshot",
    "undecodable_envelope",
    "validate_priority",
    "validate_queue_name",
]

QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def validate_queue_name(name: object, what: str = "queue") -> str:
    """Queue and channel names: 1-200 of ``[A-Za-z0-9_.:-]``."""
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
        raise ValueError(f"{what} name must match [A-Za-z0-9_.:-]{{1,200}}, got {name!r}")
    return name


def validate_priority(priority: object) -> int:
    """Priorities are ints 0..9; higher is dispatched first."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ValueError(f"priority must be an int in 0..9, got {priority!r}")
    return priority


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_dt(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EnvelopeError(f"{what} must be an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise EnvelopeError(f"{what} is not an ISO-8601 instant: {value!r}") from exc
    if parsed.tzinfo is None:
        raise EnvelopeError(f"{what} has no timezone: {value!r}")
    return parsed


@dataclass(frozen=True, eq=True)
class Envelope:
    """One task message; validated at construction so nothing invalid is ever stored."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    queue: str = "default"
    priority: int = 0
    not_before: datetime | None = None
    visibility_timeout: float | None = None
    attempt: int = 0
    max_retries: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    enqueued_at: datetime = field(default_factory=utcnow)

    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        try:
            self._validate()
        except EnvelopeError:
            raise
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(str(exc)) from exc
        except RecursionError:
            raise EnvelopeError("envelope data nests too deeply") from None

    def _validate(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise EnvelopeError("name must be a non-empty string")
        check_text(self.name, "name", nul_ok=True)
        if not isinstance(self.id, str) or not self.id:
            raise EnvelopeError("id must be a non-empty string")
        check_identifier(self.id, "id")
        if not isinstance(self.args, dict):
            raise EnvelopeError(f"args must be a dict, got {type(self.args).__name__}")
        ensure_json(self.args, "args")
        if not isinstance(self.meta, dict):
            raise EnvelopeError(f"meta must be a dict, got {type(self.meta).__name__}")
        ensure_json(self.meta, "meta")
        if not isinstance(self.headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise EnvelopeError("headers must be a dict of str to str")
        for key, value in self.headers.items():
            check_text(key, "a header name", nul_ok=True)
            check_text(value, "a header value", nul_ok=True)
        validate_queue_name(self.queue)
        validate_priority(self.priority)
        if self.not_before is not None:
            check_instant(self.not_before, "not_before")
        require_aware(self.enqueued_at, "enqueued_at")
        self._check_ints()
        if self.visibility_timeout is not None:
            vt = check_lease(self.visibility_timeout, "visibility_timeout")
            object.__setattr__(self, "visibility_timeout", vt)

    def _check_ints(self) -> None:
        for name in ("attempt", "max_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (instants as ISO-8601 strings).

        Shallow on purpose: a validated envelope's dicts are JSON data already,
        and `dataclasses.asdict`'s deep copy would triple the cost of every publish.
        """
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["not_before"] = _iso(self.not_before)
        data["enqueued_at"] = _iso(self.enqueued_at)
        return data

    def to_json(self) -> str:
        """The envelope as JSON (a `snapshot` carries the text it was encoded to)."""
        text: str | None = self.__dict__.get("_json")
        return text if text is not None else dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Rebuild an envelope; anything malformed raises `EnvelopeError`."""
        if not isinstance(data, dict):
            raise EnvelopeError("an envelope must be a JSON object")
        unknown = data.keys() - _FIELD_SET
        if unknown:
            raise EnvelopeError(f"unknown envelope fields: {sorted(unknown)}")
        kwargs = dict(data)
        kwargs["not_before"] = _parse_dt(data.get("not_before"), "not_before")
        if "enqueued_at" in data:
            kwargs["enqueued_at"] = _parse_dt(data["enqueued_at"], "enqueued_at")
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise EnvelopeError(f"invalid envelope: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        return cls.from_dict(loads(text))


_FIELD_NAMES = tuple(f.name for f in fields(Envelope))
_FIELD_SET = frozenset(_FIELD_NAMES)


def undecodable_envelope(
    raw: object, queue: str, *, priority: object = 0, error: str = ""
) -> Envelope:
    """The best envelope that can be rebuilt around stored bytes that do not decode.

    Adapters dead-letter it with reason "undecodable" so nothing is silently lost
    and consumption goes on; the raw text (and the decoding error) stay in `args`.
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes | bytearray) else str(raw)
    args: dict[str, Any] = {"raw": _utf8(text)}
    if error:
        args["error"] = _utf8(error)
    prio = priority if isinstance(priority, int) and 0 <= priority <= 9 else 0
    try:
        validate_queue_name(queue)
    except ValueError:
        queue = "default"
    return Envelope(name="<undecodable>", args=args, queue=queue, priority=prio)


def _utf8(text: str) -> str:
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class Delivery:
    """One hand-over of an envelope to a consumer; the receipt settles it."""

    envelope: Envelope
    receipt: str
    queue: str
    lease_expires_at: datetime | None
    delivery_count: int
    channel: str | None = None

    __hash__ = None  # type: ignore[assignment]


def duration(value: float | timedelta | None, what: str) -> float | None:
    """Normalise an optional delay argument to float seconds (0..one year, see limits)."""
    return None if value is None else check_delay(value, what)


def snapshot(envelope: Envelope) -> Envelope:
    """A copy of `envelope` that carries its JSON text, encoded now.

    The Broker base takes one of every envelope before it writes anything, so an
    envelope whose dicts the caller changed after construction into something JSON
    cannot carry (or UTF-8 cannot encode) is refused up front, and adapters that
    store the text store what the envelope held at publish time (encoded once).
    """
    if not isinstance(envelope, Envelope):
        raise TypeError(f"expected an Envelope, got {type(envelope).__name__}")
    ensure_json(envelope.args, "args")  # the dicts may have changed since construction
    ensure_json(envelope.meta, "meta")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in envelope.headers.items()):
        raise EnvelopeError("headers must be a dict of str to str")
    try:
        text = dumps(envelope.to_dict())
        if not text.isascii():
            text.encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"envelope {envelope.id!r} no longer encodes: {exc}") from exc
    except RecursionError:
        raise EnvelopeError(f"envelope {envelope.id!r} nests too deeply to encode") from None
    copy = object.__new__(Envelope)
    copy.__dict__.update(envelope.__dict__)
    copy.__dict__["_json"] = text
    return copy


def detached(envelope: Envelope) -> Envelope:
    """A snapshot whose dicts are decoded from its JSON: it shares nothing with the caller.

    For adapters that keep Envelope objects rather than their text (memory). `envelope`
    is a snapshot already: validated, its scalar fields frozen since construction.
    """
    text = envelope.to_json()
    data = loads(text)
    copy = object.__new__(Envelope)
    copy.__dict__.update(envelope.__dict__)
    copy.__dict__.update(args=data["args"], meta=data["meta"], headers=data["headers"])
    copy.__dict__.pop("_json", None)  # its dicts are handed out: no text to go stale
    return copy
