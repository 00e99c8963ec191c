"""Prefetch bookkeeping of this process: which lease tokens each consumer name holds.

A settle made through any broker of this process frees the holder's slot at once;
settles elsewhere and expiries are found by the consumer probing its held leases.
A lease that ran out while held is remembered with its holder, so a late
`extend_lease` re-leases only into a free slot of the consumer it was leased to.
"""

from __future__ import annotations

import threading

__all__ = ["Holding", "held_by", "hold", "holder_of", "release_hold"]

# token -> the holder's {token: queue} map.
_holders: dict[str, Holding] = {}
# token -> the holder, for leases that ran out while held here (bounded, oldest dropped).
_lapsed: dict[str, Holding] = {}
_MAX_LAPSED = 100_000
_lock = threading.Lock()
_by_name: dict[tuple[str, str, str], Holding] = {}


class Holding(dict[str, str]):
    """token -> queue of the leases held by consumers of one name; `cap` is their prefetch."""

    cap: int = 1


def held_by(store: str, namespace: str, name: str) -> Holding:
    """The leases held by consumers of this name (shared by them in this process)."""
    with _lock:
        return _by_name.setdefault((store, namespace, name), Holding())


def hold(token: str, queue: str, held: Holding) -> None:
    """`held` now holds the lease `token` on a message of `queue`."""
    with _lock:
        held[token] = queue
        _holders[token] = held
        _lapsed.pop(token, None)


def release_hold(token: str, *, expired: bool = False) -> None:
    """The lease `token` no longer takes a slot; `expired`: it ran out (a late extend may
    take a free slot of the same holder again)."""
    with _lock:
        held = _holders.pop(token, None)
        if held is not None:
            held.pop(token, None)
            if expired:
                _lapsed[token] = held
                if len(_lapsed) > _MAX_LAPSED:
                    _lapsed.pop(next(iter(_lapsed)))
        else:
            _lapsed.pop(token, None)


def holder_of(token: str) -> Holding | None:
    """The holder of `token` in this process (holding it now, or when it ran out)."""
    with _lock:
        return _holders.get(token) or _lapsed.get(token)
