"""Reads that drain a queue and give it back: counts, purge and dead letters.

RabbitMQ cannot browse a queue, so these run under the namespace lock, take the
queue's messages with basic.get and give back what they keep by closing the channel
(requeued in place, order kept). Counts and purge read the queue's index (lease,
wait and hop records); dead-letter calls read the whole dead queue.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from stemlab.brokers.amqp.link import translate
from stemlab.brokers.amqp.messages import dead_entry, delay_into, early, header, stamp
from stemlab.core.clock import from_epoch, to_epoch
from stemlab.core.records import DeadLetterEntry, DeadLetterPage, ReplayResult

if TYPE_CHECKING:
    from stemlab.brokers.amqp.broker import AmqpBroker

__all__ = [
    "counts",
    "get_dead_letter",
    "list_dead_letters",
    "purge",
    "purge_dead_letters",
    "replay_dead_letters",
]


def counts(b: AmqpBroker, queue: str) -> tuple[int, int, int]:
    """(pending, inflight, delayed) of `queue`."""
    with b.lock, translate(b.where), b.link.locked():
        inflight, delayed, back = _scan_index(b, queue, purge=False)
        if back:
            delayed += _redelay_early(b, queue)
        pending = b.link.count(b.names.ready(queue)) or 0
        return pending, inflight, delayed


def purge(b: AmqpBroker, queue: str) -> int:
    """Remove the ready, delayed and leased messages of `queue`; how many."""
    with b.lock, translate(b.where), b.link.locked():
        purged = sum(_scan_index(b, queue, purge=True)[:2])
        ready = b.names.ready(queue)
        if b.link.count(ready) is not None:
            purged += int(b.link.channel("admin").queue_purge(ready).method.message_count)
        return purged


def _scan_index(b: AmqpBroker, queue: str, *, purge: bool) -> tuple[int, int, bool]:
    """(leased, delayed, back) of `queue` through its index; `purge` removes them.

    Records: `s:<slot>` a lease slot (reused), `l:<token>` a one-off lease queue (made
    by versions before slots), `w:<ms>` a wait queue, `h:<epoch>` a long delay's hop.

    `back`: a long delay's hop may have brought a message back to the ready queue
    before it is due. Records of queues that are gone are dropped, duplicates merged.
    """
    index = b.names.index(queue)
    if b.link.count(index) is None:
        return 0, 0, False
    ch = b.link.channel("scan")
    leased = delayed = 0
    back = False
    now = time.time()
    seen: set[str] = set()
    try:
        records = []
        while True:
            method, _, raw = ch.basic_get(index)
            if method is None:
                break
            records.append((method.delivery_tag, raw.decode(errors="replace")))
        # waits first, then leases: a delay or lease falling due meanwhile lands in ready
        records.sort(key=lambda r: not r[1].startswith("w:"))
        for tag, record in records:
            kind, _, key = record.partition(":")
            if kind == "h":
                when = _float(key)
                if purge or when is None or when + 1.0 < now:
                    ch.basic_ack(tag)  # that hop is back and was (or is now) seen to
                back = back or (not purge and when is not None and when <= now)
                continue
            if record in seen or kind not in ("l", "s", "w") or (kind == "w" and not key.isdigit()):
                ch.basic_ack(tag)
                continue
            seen.add(record)
            name = b.names.wait(queue, int(key)) if kind == "w" else b.names.lease(queue, key)
            found = b.link.count(name)
            if found is None or (purge and kind != "s"):
                ch.basic_ack(tag)  # a slot stays in use (and listed) after a purge
            if found is None:
                continue
            if purge:
                found = _empty(b, name, delete=kind == "l")
            if kind != "w":
                leased += found
            else:
                delayed += found
    finally:
        b.link.drop("scan")  # records not acked go back
    return leased, delayed, back


def _redelay_early(b: AmqpBroker, queue: str) -> int:
    """Delay again the messages a hop brought back to the ready queue before they are due
    (consumers do the same as they claim); how many."""
    ready = b.names.ready(queue)
    if b.link.count(ready) is None:
        return 0
    index = b.ensure(b.names.index(queue))
    ch = b.link.channel("tx")
    moved = 0
    others = []
    now = stamp()
    while True:
        method, props, raw = ch.basic_get(ready)
        if method is None:
            break
        due = early(props, now)
        if due is None:
            others.append(method.delivery_tag)
            continue
        n = int(header(props, "sl-n", "0"))
        delay_into(b.link, ch, queue, index, raw, props.priority or 0, n, due, now)
        ch.basic_ack(method.delivery_tag)
        moved += 1
    for tag in others:
        ch.basic_reject(tag, requeue=True)  # back in place at commit
    ch.tx_commit()
    return moved


def _empty(b: AmqpBroker, name: str, *, delete: bool) -> int:
    admin = b.link.channel("admin")
    count = int(admin.queue_purge(name).method.message_count)
    if delete:
        admin.queue_delete(name)
    return count


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# ------------------------------------------------------------------ dead letters
def _read_dead(b: AmqpBroker, queue: str) -> list[tuple[int, DeadLetterEntry]]:
    """Every dead letter of `queue`, oldest first, taken (unacked) on the scan channel."""
    dead = b.names.dead(queue)
    if b.link.count(dead) is None:
        return []
    ch = b.link.channel("scan")
    out = []
    while True:
        method, props, raw = ch.basic_get(dead)
        if method is None:
            break
        out.append((method.delivery_tag, dead_entry(queue, props, raw)))
    return out


def list_dead_letters(b: AmqpBroker, queue: str, limit: int, offset: int) -> DeadLetterPage:
    """A page of `queue`'s dead letters, newest first."""
    with b.lock, translate(b.where), b.link.locked():
        try:
            entries = [e for _, e in reversed(_read_dead(b, queue))]
        finally:
            b.link.drop("scan")
    more = offset + limit < len(entries)
    return DeadLetterPage(entries[offset : offset + limit], offset + limit if more else None)


def get_dead_letter(b: AmqpBroker, queue: str, id: str) -> DeadLetterEntry | None:
    """The newest dead letter of `queue` whose envelope has this id."""
    with b.lock, translate(b.where), b.link.locked():
        try:
            entries = [e for _, e in _read_dead(b, queue)]
        finally:
            b.link.drop("scan")
    return next((e for e in reversed(entries) if e.envelope.id == id), None)


def _pick_dead(
    b: AmqpBroker, queue: str, since: float | None, limit: int | None
) -> list[tuple[int, DeadLetterEntry]]:
    picked = [
        (tag, e) for tag, e in _read_dead(b, queue) if since is None or to_epoch(e.dead_at) >= since
    ]
    return picked if limit is None else picked[:limit]


def replay_dead_letters(
    b: AmqpBroker, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
) -> ReplayResult:
    """Republish dead letters oldest first (see the contract); `dry_run` changes nothing."""
    with b.lock, translate(b.where), b.link.locked():
        try:
            picked = _pick_dead(b, queue, since, limit)
            if not dry_run:
                now = time.time()
                not_before = from_epoch(now + delay) if delay else None
                for _, entry in picked:
                    b.put(replace(entry.envelope, not_before=not_before), 0, stamp())
                scan = b.link.channel("scan")
                for tag, _ in picked:
                    scan.basic_ack(tag)
        finally:
            b.link.drop("scan")
    return ReplayResult([e for _, e in picked], dry_run)


def purge_dead_letters(b: AmqpBroker, queue: str, since: float | None, limit: int | None) -> int:
    """Delete dead letters oldest first (dead at or after `since`, at most `limit`)."""
    with b.lock, translate(b.where), b.link.locked():
        try:
            picked = _pick_dead(b, queue, since, limit)
            scan = b.link.channel("scan")
            for tag, _ in picked:
                scan.basic_ack(tag)
        finally:
            b.link.drop("scan")
    return len(picked)
