"""The Redis store: one server, database and namespace; its connections and named scripts.

Both the broker and its consumers call this module; neither calls the other's
private methods. The store lends pooled `Link`s for one-off commands and
scripts, makes dedicated links for consumers, and runs the fenced settle
scripts with the "maybe applied" flag that makes a retried settle safe.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from stemlab.brokers.redis.link import Arg, Link, Script, script
from stemlab.brokers.redis.settings import Settings, connection_factory, envelope_json
from stemlab.core.codec import dumps
from stemlab.core.envelope import Envelope
from stemlab.errors import BrokerUnavailable, StemlabError

__all__ = ["SCRIPTS", "Store"]

UNSURE_MAX = 10_000  # receipts remembered whose settle ended in BrokerUnavailable

SCRIPTS: dict[str, Script] = {
    name: script(name)
    for name in (
        "ack",
        "cast_settle",
        "claim",
        "counts",
        "dead_letter",
        "dead_purge",
        "dead_read",
        "dead_replay",
        "extend",
        "nack",
        "publish",
        "purge",
        "release",
        "unregister",
    )
}
SCRIPTS["ack_claim"] = script("ack_claim", "claim")  # the ack, then claim.lua's body


class Store:
    """Connections and scripts of one namespace on one Redis database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.connect, self.where = connection_factory(settings)
        self.closed = False
        self._free: deque[Link] = deque()
        self._links: list[Link] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._unsure: dict[str, None] = {}  # insertion-ordered set of receipts

    # ------------------------------------------------------------ connections
    def new_link(self) -> Link:
        """A dedicated connection (consumers own two: commands and pub/sub)."""
        if self.closed:
            raise StemlabError("this broker is closed")
        link = Link(self.connect, self.settings.retry_timeout, self.where)
        with self._lock:
            self._links.append(link)
        return link

    def drop_link(self, link: Link) -> None:
        link.disconnect()
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    def _acquire(self) -> Link:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours
            self._free, self._links, self._pid = deque(), [], os.getpid()
        try:
            return self._free.pop()
        except IndexError:
            return self.new_link()

    def close(self) -> None:
        self.closed = True
        with self._lock:
            links, self._links = self._links, []
        self._free.clear()
        for link in links:
            link.disconnect()

    # ------------------------------------------------------------------ calls
    def eval(self, name: str, args: Sequence[Arg], retry_flag_at: int | None = None) -> Any:
        """Run a named script on a pooled link."""
        link = self._acquire()
        try:
            return link.eval(SCRIPTS[name], args, retry_flag_at)
        finally:
            self._free.append(link)

    def eval_many(self, name: str, calls: Sequence[Sequence[Arg]]) -> list[Any]:
        """Run a named script once per argument list, pipelined."""
        link = self._acquire()
        try:
            return link.eval_many(SCRIPTS[name], calls)
        finally:
            self._free.append(link)

    def execute(self, *args: Arg) -> Any:
        """Run one plain command on a pooled link."""
        link = self._acquire()
        try:
            return link.execute(*args)
        finally:
            self._free.append(link)

    # --------------------------------------------------------------- settling
    def fenced(self, name: str, receipt: str, rest: list[Arg], link: Link | None = None) -> Any:
        """Run a settle script; its ARGV[2] says whether an earlier try may have been applied.

        That is so on a retry inside one call, and for a later call with a receipt whose
        previous settle ended in BrokerUnavailable (the reply was lost, not necessarily
        the write): the script then reports success for a message that is already gone.
        `link`: a consumer's own link (ack_claim.lua), else a pooled one.
        """
        maybe_applied = "1" if receipt in self._unsure else "0"
        args = [self.prefix, maybe_applied, *rest]
        try:
            if link is None:
                result = self.eval(name, args, retry_flag_at=1)
            else:
                result = link.eval(SCRIPTS[name], args, retry_flag_at=1)
        except BrokerUnavailable:
            with self._lock:
                self._unsure[receipt] = None
                while len(self._unsure) > UNSURE_MAX:
                    self._unsure.pop(next(iter(self._unsure)))
            raise
        if maybe_applied == "1":
            with self._lock:
                self._unsure.pop(receipt, None)
        return result

    def dead_letter(
        self,
        receipt: str,
        queue: str,
        mid: str,
        token: str,
        reason: str | None,
        meta: dict[str, Any],
        envelope_id: str,
        replacement: Envelope | None = None,
    ) -> bool:
        """Move a leased message to its queue's dead letters (storing `replacement` if given)."""
        stored = envelope_json(replacement) if replacement is not None else ""
        args: list[Arg] = [queue, mid, token, dumps(reason), dumps(meta), stored, envelope_id]
        return bool(self.fenced("dead_letter", receipt, args))

    def release(self, link: Link, leases: Sequence[tuple[str, str, str]]) -> None:
        """Put (queue, message id, token) leases back in their old place, counts restored."""
        if leases:
            args: list[Arg] = [self.prefix]
            for lease in leases:
                args.extend(lease)
            link.eval(SCRIPTS["release"], args)
