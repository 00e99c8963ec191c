"""One Redis connection with bounded retries, script loading and error translation.

The adapter talks to Redis through `Link`s: a thin wrapper over one redis-py
`Connection` (no pool, no client object) because the hot path is one script
call per delivery and redis-py's client layer costs a third of a round trip.
Connection errors are retried with exponential backoff for at most
`retry_timeout` seconds, then raised as `BrokerUnavailable`; scripts run by
EVALSHA and are loaded again on NOSCRIPT (e.g. after a server restart).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from redis import exceptions as rex
from redis.connection import AbstractConnection

from stemlab.errors import BrokerUnavailable, StemlabError

_hiredis_pack: Any  # hiredis.pack_command(tuple) -> bytes, or None
try:  # part of the `redis` extra; without it redis-py packs commands itself
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover
    _hiredis_pack = None

__all__ = ["Link", "Script", "script"]

_HERE = Path(__file__).parent
_FIRST_BACKOFF = 0.02
_MAX_BACKOFF = 0.5

Arg = str | bytes | int | float


@dataclass(frozen=True)
class Script:
    """A named `.lua` file with the shared helpers (`_lib.lua`) prepended."""

    name: str
    source: str
    sha: str


@cache
def script(name: str, *then: str) -> Script:
    """Load `<name>.lua` from this package (once per process), followed by the `then` files.

    A script that ends by running another one's body (ack_claim.lua runs claim.lua's)
    names it in `then`, so that body exists once.
    """
    lib = (_HERE / "_lib.lua").read_text(encoding="utf-8")
    source = lib
    for part in (name, *then):
        body = (_HERE / f"{part}.lua").read_text(encoding="utf-8")
        source += f"\n-- ---- {part}.lua ----\n{body}"
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def _pack(conn: AbstractConnection, args: Sequence[Arg]) -> list[bytes]:
    """The wire form of one command (hiredis packs it in C; redis-py's packer loops in Python)."""
    if _hiredis_pack is not None:
        return [_hiredis_pack(tuple(args))]
    packed: list[bytes] = conn.pack_command(*args)
    return packed


class Link:
    """A single connection used by one thread at a time; see the module docstring."""

    def __init__(
        self, connect: Callable[[], AbstractConnection], retry_timeout: float, where: str
    ) -> None:
        self._connect = connect
        self.conn = connect()
        self.retry_timeout = retry_timeout
        self.where = where

    # ----------------------------------------------------------------- calls
    def execute(self, *args: Arg) -> Any:
        """Run one plain command."""

        def send(conn: AbstractConnection, retried: bool) -> Any:
            conn.send_packed_command(_pack(conn, args), check_health=False)
            return conn.read_response()

        return self.run(send)

    def eval(self, s: Script, args: Sequence[Arg], retry_flag_at: int | None = None) -> Any:
        """Run a script; on a retry after a lost connection, ARGV[retry_flag_at] becomes "1"."""

        def send(conn: AbstractConnection, retried: bool) -> Any:
            argv = list(args)
            if retried and retry_flag_at is not None:
                argv[retry_flag_at] = "1"
            command = _pack(conn, ("EVALSHA", s.sha, 0, *argv))
            try:
                conn.send_packed_command(command, check_health=False)
                return conn.read_response()
            except rex.NoScriptError:
                conn.send_packed_command(_pack(conn, ("SCRIPT", "LOAD", s.source)), False)
                conn.read_response()
                conn.send_packed_command(command, check_health=False)
                return conn.read_response()

        return self.run(send)

    def eval_many(self, s: Script, calls: Sequence[Sequence[Arg]]) -> list[Any]:
        """Run a script once per argument list, pipelined after the first (which loads it).

        A retry after a lost connection re-sends every call, so a caller may see some
        applied twice (publish is at-least-once).
        """
        first = self.eval(s, calls[0])
        rest = calls[1:]

        def send(conn: AbstractConnection, retried: bool) -> list[Any]:
            packed = [_pack(conn, ("EVALSHA", s.sha, 0, *argv)) for argv in rest]
            conn.send_packed_command([part for cmd in packed for part in cmd], False)
            out: list[Any] = []
            for _ in rest:
                try:
                    out.append(conn.read_response())
                except rex.NoScriptError as exc:  # flushed meanwhile: redone below
                    out.append(exc)
            return out

        out = self.run(send)
        for i, result in enumerate(out):
            if isinstance(result, rex.NoScriptError):
                out[i] = self.eval(s, rest[i])
        return [first, *out]

    def run(self, send: Callable[[AbstractConnection, bool], Any]) -> Any:
        """Call `send(conn, retried)`, retrying connection failures for a bounded time."""
        deadline: float | None = None
        backoff = _FIRST_BACKOFF
        retried = False
        while True:
            try:
                return send(self.conn, retried)
            except (rex.AuthenticationError, rex.AuthorizationError) as exc:
                self.disconnect()
                raise BrokerUnavailable(f"redis at {self.where} refused us: {exc}") from exc
            except (rex.ConnectionError, rex.TimeoutError) as exc:
                self.disconnect()
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.retry_timeout
                if now + backoff > deadline:
                    raise BrokerUnavailable(
                        f"redis at {self.where} unreachable after {self.retry_timeout:g}s: {exc}"
                    ) from exc
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                retried = True
            except rex.ResponseError as exc:
                raise StemlabError(f"redis at {self.where} answered with an error: {exc}") from exc
            except BaseException:
                # interrupted mid-protocol: the connection state is unknown, start afresh
                self.disconnect()
                raise

    # -------------------------------------------------------------- lifetime
    def disconnect(self) -> None:
        with contextlib.suppress(Exception):  # a dead socket may fail to close; fine
            self.conn.disconnect()
