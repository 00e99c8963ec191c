"""Prefetch bookkeeping of this process: the lease slots each consumer name holds.

Consumers of one name in one process share a `Holding`: `cap` lease slots per
queue (`ns.l.q.<hid>.<i>`, RabbitMQ queues made once and reused), and the tokens of
the leases in them. A settle made through any broker of this process frees its slot
at once; settles elsewhere and expiries are found by the consumer probing its held
slots when it is at its cap. A lease that ran out while held is remembered with its
holder, so a late `extend_lease` puts it back only into its own slot, if still free.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

__all__ = ["Holding", "held_by", "hold", "holder_of", "release_hold"]

# token -> the holding that holds it now.
_holders: dict[str, Holding] = {}
# token -> its holding, for leases that ran out while held here (bounded, oldest dropped).
_lapsed: dict[str, Holding] = {}
_MAX_LAPSED = 100_000
_lock = threading.Lock()
_by_name: dict[tuple[str, str, str], Holding] = {}


@dataclass(eq=False)
class Holding:
    """The leases of the consumers of one name: token -> (queue, slot); `cap` is prefetch.

    `hid` names its slots; `live` counts its open consumers.
    """

    cap: int = 1
    hid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    live: int = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def busy(self, queue: str, *, but: str = "") -> set[str]:
        """The slots of `queue` holding a lease of ours (other than `but`)."""
        with _lock:
            return {s for t, (q, s) in self.tokens.items() if q == queue and t != but}

    def assign(self, queue: str, token: str) -> str | None:
        """Take the first free slot of `queue` for `token`; None at the cap."""
        with _lock:
            if len(self.tokens) >= self.cap:
                return None
            used = {s for q, s in self.tokens.values() if q == queue}
            names = (f"{self.hid}.{i}" for i in range(self.cap + 1))
            slot = next(name for name in names if name not in used)
            self.tokens[token] = (queue, slot)
            _holders[token] = self
            _lapsed.pop(token, None)
            return slot

    def held(self) -> list[tuple[str, str, str]]:
        """(token, queue, slot) of the leases held now."""
        with _lock:
            return [(t, q, s) for t, (q, s) in self.tokens.items()]


def held_by(store: str, namespace: str, name: str) -> Holding:
    """The leases held by consumers of this name (shared by them in this process)."""
    with _lock:
        return _by_name.setdefault((store, namespace, name), Holding())


def hold(token: str, queue: str, slot: str, held: Holding) -> None:
    """`held` holds the lease `token` again (a late extend put it back into `slot`)."""
    with _lock:
        held.tokens[token] = (queue, slot)
        _holders[token] = held
        _lapsed.pop(token, None)


def release_hold(token: str, *, expired: bool = False) -> None:
    """The lease `token` no longer takes a slot; `expired`: it ran out (a late extend may
    take its slot again)."""
    with _lock:
        held = _holders.pop(token, None)
        if held is not None:
            held.tokens.pop(token, None)
            if expired:
                _lapsed[token] = held
                if len(_lapsed) > _MAX_LAPSED:
                    _lapsed.pop(next(iter(_lapsed)))
        else:
            _lapsed.pop(token, None)


def holder_of(token: str) -> Holding | None:
    """The holding of `token` in this process (holding it now, or when it ran out)."""
    with _lock:
        held = _holders.get(token)
        return held if held is not None else _lapsed.get(token)
