"""Receipts: the one opaque string format every adapter issues and reads back.

A receipt is ``kind|store|namespace|field|...``: the kind ("q" for a queue
delivery, "b" for a broadcast one), a short hash of the store's identity (the
memory store, the SQLite file, the Redis server and database, the Postgres
server, database and schema), the namespace, then the adapter's own fields
(tokens, row or message ids). Text fields are percent-quoted, so "|" only
ever separates.

The Broker base reads every receipt before an adapter hook runs: a receipt
that this broker did not issue (another namespace, another store, a forged or
mangled string, a queue receipt on a broadcast delivery or the reverse)
raises `LeaseLost` before anything is written, exactly like a stale one. A
receipt that is not a string at all is a `TypeError`. Users never parse
receipts; their format may change between versions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from stemlab.core.envelope import Delivery
from stemlab.errors import LeaseLost

__all__ = ["INT", "TEXT", "Receipts", "store_id"]

SEP = "|"
INT, TEXT = "int", "text"
QUEUE, BROADCAST = "q", "b"
_INT = re.compile(r"-?[0-9]{1,19}")
_INT_RANGE = range(-(2**63), 2**63)  # fields are 64-bit columns: anything else is forged


def store_id(*identity: str) -> str:
    """A short stable hash of a store's identity parts (e.g. adapter, path)."""
    digest = hashlib.blake2b("\0".join(identity).encode("utf-8"), digest_size=6)
    return digest.hexdigest()


@dataclass(frozen=True)
class Receipts:
    """Issues and reads the receipts of one broker: its store, namespace and field layout.

    `layout` maps a kind ("q", "b") to the types of its fields (INT or TEXT).
    """

    store: str
    namespace: str
    layout: Mapping[str, tuple[str, ...]]

    def issue(self, kind: str, *fields: int | str) -> str:
        """The receipt of one delivery of `kind` with these adapter fields."""
        parts = [kind, self.store, self.namespace]
        for value, type_ in zip(fields, self.layout[kind], strict=True):
            parts.append(str(value) if type_ == INT else quote(str(value), safe=""))
        return SEP.join(parts)

    def read(self, delivery: Delivery) -> tuple[int | str, ...]:
        """The adapter fields of a receipt this broker issued, else `LeaseLost`."""
        receipt = delivery.receipt
        if not isinstance(receipt, str):
            raise TypeError(f"a receipt is a string, got {type(receipt).__name__}")
        kind = QUEUE if delivery.channel is None else BROADCAST
        types = self.layout.get(kind, ())
        parts = receipt.split(SEP)
        if (
            len(parts) != 3 + len(types)
            or parts[0] != kind
            or parts[1] != self.store
            or parts[2] != self.namespace
        ):
            raise LeaseLost(self._foreign(receipt))
        out: list[int | str] = []
        for raw, type_ in zip(parts[3:], types, strict=True):
            if type_ == INT:
                if not _INT.fullmatch(raw) or int(raw) not in _INT_RANGE:
                    raise LeaseLost(self._foreign(receipt))
                out.append(int(raw))
            else:
                try:
                    text = unquote(raw, errors="strict")
                except UnicodeDecodeError:
                    text = ""
                if not text:
                    raise LeaseLost(self._foreign(receipt))
                out.append(text)
        return tuple(out)

    def _foreign(self, receipt: str) -> str:
        shown = receipt if len(receipt) <= 80 else receipt[:77] + "..."
        return (
            f"not a live receipt of this broker (store {self.store}, namespace "
            f"{self.namespace!r}): {shown!r}"
        )
