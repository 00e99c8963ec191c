"""JSON codec for payloads (never pickle) and time-ordered ids."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from typing import Any

from stemlab.core.limits import MAX_DEPTH
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
    except RecursionError:
        raise EnvelopeError("not valid JSON: nested too deeply") from None


def _text_problem(value: str, path: str) -> str | None:
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{path} holds a lone surrogate (not UTF-8)"
    return None


def _faithful(value: Any, path: str, depth: int = 0) -> str | None:
    """Where `value` would not survive a JSON round trip unchanged, else None."""
    if isinstance(value, str):
        return _text_problem(value, path)
    if value is None or isinstance(value, bool | int):
        return None
    if depth >= MAX_DEPTH and isinstance(value, list | dict):
        return f"{path} nests containers more than {MAX_DEPTH} deep"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value} (not JSON)"
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = _faithful(item, f"{path}[{i}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            problem = _text_problem(key, f"{path} key") or _faithful(
                item, f"{path}[{key!r}]", depth + 1
            )
            if problem:
                return problem
        return None
    return (
        f"{path} is a {type(value).__name__} (JSON carries None, bool, int, float, str, list, dict)"
    )


def _flat_faithful(value: Any) -> bool:
    """True for a dict of plain scalars that surely round-trips (a quick pre-pass).

    Same verdict as `_faithful` for such dicts, without the recursion and path strings
    that cost a third of decoding a stored envelope; anything else (containers, str or
    int subclasses, non-ASCII text, non-finite floats) returns False for the full walk.
    """
    if type(value) is not dict:
        return False
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii():
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is not int and kind is not bool and item is not None:
            return False
    return True


def ensure_json(value: Any, what: str) -> None:
    """Refuse values that JSON cannot carry faithfully (so every adapter delivers the same)."""
    if _flat_faithful(value):
        return
    try:
        problem = _faithful(value, what)
    except RecursionError:
        problem = f"{what} nests containers too deeply"
    if problem:
        raise EnvelopeError(f"{what} must round-trip through JSON unchanged: {problem}")
