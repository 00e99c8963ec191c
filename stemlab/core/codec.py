"""JSON codec for payloads (never pickle) and time-ordered ids."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

from stemlab.errors import EnvelopeError

__all__ = ["dumps", "ensure_json", "loads", "new_id"]

_id_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id() -> str:
    """A UUIDv7 string: sorts by creation time, unique across processes."""
    global _last_ms, _seq
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _seq = (_seq + 1) & 0xFFF
            if _seq == 0:
                ms += 1
        else:
            _seq = int.from_bytes(os.urandom(2), "big") & 0x7FF
        _last_ms = ms
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    return str(uuid.UUID(int=value))


def dumps(value: Any) -> str:
    """Compact, strict JSON (no NaN), the one wire format of stemlab."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """Parse JSON, raising `EnvelopeError` on anything that is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError(f"not valid JSON: {exc}") from exc


def ensure_json(value: Any, what: str) -> None:
    """Refuse values that JSON cannot carry faithfully."""
    try:
        dumps(value)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"{what} must be JSON-serialisable: {exc}") from exc
