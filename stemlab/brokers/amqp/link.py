"""RabbitMQ plumbing: options, object names, one pika connection, error translation.

Everything a namespace owns on the server is named `<namespace>.<kind>.<queue>[.<extra>]`
(see `Names`), so two namespaces on one vhost never meet. Every name this process
declares is also remembered per namespace (`declared`), which lets a test fixture
delete exactly what a test namespace created without the management plugin.

pika is imported here, and this module is imported only when an `amqp://` URL is
opened. Connection failures are retried for `connect_timeout` seconds, then raised
as one `BrokerUnavailable` line; other driver errors become `StemlabError`s
(`raise ... from exc`).
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn
from urllib.parse import unquote

import pika
from pika import exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel

from stemlab.core.options import BrokerOptions, fixed, option, seconds, split_url
from stemlab.errors import BrokerUnavailable, ConfigError, LeaseLost, StemlabError

__all__ = [
    "AmqpOptions",
    "Link",
    "Names",
    "declared",
    "parse_url",
    "translate",
]

NOT_FOUND, RESOURCE_LOCKED = 404, 405
_MAX_NAME = 255  # AMQP short string
_LEASE_QUEUE_TTL_MS = 7 * 24 * 3600 * 1000  # a lease slot unused this long goes away
_WAIT_QUEUE_GRACE_MS = 60_000

_declared: dict[str, set[tuple[str, str]]] = {}
_declared_lock = threading.Lock()


def declared(namespace: str) -> set[tuple[str, str]]:
    """("queue" | "exchange", name) pairs this process declared in `namespace`."""
    with _declared_lock:
        return set(_declared.get(namespace, ()))


def _remember(namespace: str, kind: str, name: str) -> None:
    with _declared_lock:
        _declared.setdefault(namespace, set()).add((kind, name))


@dataclass(frozen=True)
class AmqpOptions(BrokerOptions):
    """`amqp://` options: the common ones plus polling and connect timing."""

    scheme: ClassVar[str] = "amqp"
    poll_interval: float = option(0.02, seconds())
    connect_timeout: float = option(5.0, seconds())
    host: str = fixed("127.0.0.1")
    port: int = fixed(5672)
    vhost: str = fixed("/")
    user: str = fixed("guest")
    password: str = fixed("guest")
    tls: bool = fixed(False)


def parse_url(url: str, options: dict[str, Any]) -> AmqpOptions:
    """`amqp[s]://user:pass@host:port/vhost?option=value`, checked before connecting."""
    parts, query = split_url(url, ("amqp", "amqps"), "amqp://user:pass@host:5672/vhost")
    tls = parts.scheme.lower() == "amqps"
    try:
        port = parts.port or (5671 if tls else 5672)
    except ValueError as exc:
        raise ConfigError(f"malformed URL {url!r}: {exc}") from None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    return AmqpOptions.build(
        options,
        query,
        host=parts.hostname or "127.0.0.1",
        port=port,
        vhost=vhost,
        user=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        tls=tls,
    )


@dataclass(frozen=True)
class Names:
    """The server-side names of one namespace (queue names are hashed when too long)."""

    namespace: str

    def _name(self, kind: str, queue: str, extra: str = "") -> str:
        name = f"{self.namespace}.{kind}.{queue}" + (f".{extra}" if extra else "")
        if len(name.encode()) > _MAX_NAME:
            digest = hashlib.blake2b(queue.encode(), digest_size=12).hexdigest()
            name = f"{self.namespace}.{kind}.#{digest}" + (f".{extra}" if extra else "")
        return name

    def ready(self, queue: str) -> str:
        return self._name("r", queue)

    def wait(self, queue: str, ms: int) -> str:
        return self._name("w", queue, str(ms))

    def lease(self, queue: str, token: str) -> str:
        return self._name("l", queue, token)

    def dead(self, queue: str) -> str:
        return self._name("d", queue)

    def index(self, queue: str) -> str:
        return self._name("i", queue)

    def exchange(self, channel: str) -> str:
        return self._name("x", channel)

    def subscriber(self) -> str:
        return f"{self.namespace}.s.{uuid.uuid4().hex}"

    @property
    def lock(self) -> str:
        return f"{self.namespace}.lock"


@contextlib.contextmanager
def translate(where: str) -> Iterator[None]:
    """Driver errors as stemlab errors: lost connections are `BrokerUnavailable`."""
    try:
        yield
    except (pex.AMQPConnectionError, pex.StreamLostError, pex.ConnectionWrongStateError) as exc:
        raise BrokerUnavailable(f"RabbitMQ at {where} is unreachable: {exc!r}") from exc
    except pex.AMQPError as exc:
        raise StemlabError(f"RabbitMQ at {where}: {exc!r}") from exc


class Link:
    """One pika BlockingConnection (one thread at a time) and its named channels.

    `pub` is in confirm mode (a publish returns once the server has it), `tx` is
    transactional (a settle's publish and ack commit together); other channels are
    opened on demand and reopened after the server closes one (e.g. a 404).
    """

    def __init__(self, opts: AmqpOptions, role: str) -> None:
        self.opts = opts
        self.names = Names(opts.namespace)
        self.where = f"{opts.host}:{opts.port}{'' if opts.vhost == '/' else '/' + opts.vhost}"
        self.connection_name = f"stemlab.{opts.namespace}.{role}.{uuid.uuid4().hex[:8]}"
        self._channels: dict[str, BlockingChannel] = {}
        self.conn = self._connect()

    def _params(self) -> pika.ConnectionParameters:
        opts = self.opts
        ssl_options = None
        if opts.tls:
            ssl_options = pika.SSLOptions(ssl.create_default_context(), opts.host)
        return pika.ConnectionParameters(
            host=opts.host,
            port=opts.port,
            virtual_host=opts.vhost,
            credentials=pika.PlainCredentials(opts.user, opts.password),
            ssl_options=ssl_options,
            heartbeat=0,
            blocked_connection_timeout=opts.connect_timeout,
            socket_timeout=opts.connect_timeout,
            connection_attempts=1,
            client_properties={"connection_name": self.connection_name},
        )

    def _connect(self) -> pika.BlockingConnection:
        deadline = time.monotonic() + self.opts.connect_timeout
        delay = 0.05
        while True:
            try:
                return pika.BlockingConnection(self._params())
            except pex.ProbableAuthenticationError as exc:
                raise BrokerUnavailable(
                    f"RabbitMQ at {self.where} refused the credentials of {self.opts.user!r}"
                ) from exc
            except (pex.AMQPConnectionError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise BrokerUnavailable(
                        f"RabbitMQ at {self.where} is unreachable after "
                        f"{self.opts.connect_timeout:g}s: {type(exc).__name__}"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def reconnect(self) -> None:
        """Drop the connection (if any is left) and open a new one."""
        self.close()
        self.conn = self._connect()

    def channel(self, role: str) -> BlockingChannel:
        """The channel for `role` ("pub", "tx" or any other), opened on first use."""
        ch = self._channels.get(role)
        if ch is None or not ch.is_open:
            with translate(self.where):
                if self.conn.is_closed:
                    self.conn = self._connect()
                ch = self.conn.channel()
                if role == "pub":
                    ch.confirm_delivery()
                elif role == "tx":
                    ch.tx_select()
            self._channels[role] = ch
        return ch

    def drop(self, role: str) -> None:
        """Close one channel (unacked messages it got return to their queues)."""
        ch = self._channels.pop(role, None)
        if ch is not None and ch.is_open:
            with contextlib.suppress(pex.AMQPError):
                ch.close()

    # --------------------------------------------------------------- declares
    def declare(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        ch = self.channel("admin")
        _remember(self.opts.namespace, "queue", name)
        with translate(self.where):
            ch.queue_declare(name, durable=True, arguments=arguments)

    def declare_ready(self, name: str) -> None:
        self.declare(name, {"x-max-priority": 10})

    def declare_lease(self, name: str, ready: str, on: BlockingChannel | None = None) -> None:
        """Declare a lease queue; with `on`, without waiting, ahead of `on`'s next frames.

        The server handles one channel's frames in order, so a lease declared on the
        channel that then publishes into it exists before the publish arrives.
        """
        arguments = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": ready,
            "x-expires": _LEASE_QUEUE_TTL_MS,
        }
        if on is None:
            self.declare(name, arguments)
            return
        _remember(self.opts.namespace, "queue", name)
        with translate(self.where):
            on._impl.queue_declare(name, durable=True, arguments=arguments)  # nowait

    def declare_wait(self, name: str, ready: str, ms: int) -> None:
        self.declare(
            name,
            {
                "x-message-ttl": ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": ready,
                "x-expires": ms + _WAIT_QUEUE_GRACE_MS,
            },
        )

    def declare_exchange(self, name: str) -> None:
        _remember(self.opts.namespace, "exchange", name)
        with translate(self.where):
            self.channel("admin").exchange_declare(name, "fanout", durable=False)

    def count(self, name: str) -> int | None:
        """The ready message count of queue `name`, or None when it does not exist."""
        ch = self.channel("probe")
        try:
            with translate(self.where):
                return int(ch.queue_declare(name, passive=True).method.message_count)
        except StemlabError as exc:
            cause = exc.__cause__
            if isinstance(cause, pex.ChannelClosedByBroker) and cause.reply_code == NOT_FOUND:
                return None
            raise

    def delete(self, name: str, *, wait: bool = True) -> None:
        """Delete a queue (a missing one is fine); `wait=False` sends it and goes on."""
        with translate(self.where):
            ch = self.channel("admin")
            if wait:
                ch.queue_delete(name)
            else:
                ch._impl.queue_delete(name)  # nowait: no reply to wait for
                self.conn.process_data_events(time_limit=0)  # flush it out

    # ------------------------------------------------------------------ lock
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The namespace lock: an exclusive queue only one connection can hold.

        A crashed holder's connection closes and the server drops the queue, so the
        lock cannot be left behind.
        """
        deadline = time.monotonic() + max(30.0, self.opts.connect_timeout)
        while True:
            ch = self.channel("lock")
            try:
                with translate(self.where):
                    ch.queue_declare(self.names.lock, exclusive=True, auto_delete=True)
                break
            except StemlabError as exc:
                cause = exc.__cause__
                locked = isinstance(cause, pex.ChannelClosedByBroker)
                if not locked or cause.reply_code != RESOURCE_LOCKED:  # type: ignore[union-attr]
                    raise
                if time.monotonic() > deadline:
                    raise StemlabError(f"namespace lock {self.names.lock!r} held too long") from exc
                time.sleep(0.005)
        try:
            yield
        finally:
            with contextlib.suppress(StemlabError), translate(self.where):
                ch.queue_delete(self.names.lock)

    def close(self) -> None:
        self._channels.clear()
        with contextlib.suppress(Exception):
            if self.conn.is_open:
                self.conn.close()


def lease_lost(exc: StemlabError) -> bool:
    """Whether a call failed because its queue is gone (404, e.g. a deleted lease slot)."""
    cause = exc.__cause__
    return isinstance(cause, pex.ChannelClosedByBroker) and cause.reply_code == NOT_FOUND


def raise_lease_lost(queue: str) -> NoReturn:
    raise LeaseLost(f"the lease on a message of {queue!r} was settled or handed to another")
