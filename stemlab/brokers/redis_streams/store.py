"""The Redis Streams store: the sorted-set adapter's store, running this adapter's scripts.

Connections, pooling, retries and the "maybe applied" flag of fenced settles are the
sorted-set adapter's (`stemlab.brokers.redis.store.Store`, imported, not copied); this
module only swaps the script table. Scripts are the `.lua` files next to this module with
this package's `_lib.lua` prepended; the dead-letter, publish and broadcast-settle scripts
are the sorted-set adapter's own files, which run unchanged on the same key layout
(see the top of `_lib.lua`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from stemlab.brokers.redis import store as sorted_set_store
from stemlab.brokers.redis.link import Arg, Link, Script

__all__ = ["SCRIPTS", "StreamStore", "script"]

_HERE = Path(__file__).parent
_SORTED_SET = Path(sorted_set_store.__file__).parent
OWN = (
    "ack",
    "broadcast",
    "claim",
    "counts",
    "dead_letter",
    "dead_replay",
    "extend",
    "nack",
    "publish",
    "purge",
    "release",
    "unregister",
)
SHARED = ("cast_settle", "dead_purge", "dead_read")


@cache
def script(name: str) -> Script:
    """`<name>.lua` (ours, else the sorted-set adapter's) with our `_lib.lua` prepended."""
    lib = (_HERE / "_lib.lua").read_text(encoding="utf-8")
    folder = _HERE if name in OWN else _SORTED_SET
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    source = f"{lib}\n-- ---- {name}.lua ----\n{body}"
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


SCRIPTS: dict[str, Script] = {name: script(name) for name in OWN + SHARED}


class StreamStore(sorted_set_store.Store):
    """The sorted-set adapter's store with this adapter's script table."""

    def eval(self, name: str, args: Sequence[Arg], retry_flag_at: int | None = None) -> Any:
        link = self._acquire()
        try:
            return link.eval(SCRIPTS[name], args, retry_flag_at)
        finally:
            self._free.append(link)

    def eval_many(self, name: str, calls: Sequence[Sequence[Arg]]) -> list[Any]:
        link = self._acquire()
        try:
            return link.eval_many(SCRIPTS[name], calls)
        finally:
            self._free.append(link)

    def release(self, link: Link, leases: Sequence[tuple[str, str, str]]) -> None:
        """Put (queue, "<p>/<entry id>", token) leases back in their old place."""
        if leases:
            args: list[Arg] = [self.prefix]
            for lease in leases:
                args.extend(lease)
            link.eval(SCRIPTS["release"], args)
