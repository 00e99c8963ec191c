"""`stemlab dlq list|show|replay|purge URL --queue Q`: inspect and repair dead letters."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

import stemlab
from stemlab import DeadLetterEntry

__all__ = ["register"]


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 instant: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone (add +00:00 or Z)")
    return value


def register(sub: Any) -> None:
    parser = sub.add_parser("dlq", help="list, show, replay or purge dead letters")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in [
        ("list", "dead letters, newest first"),
        ("show", "one dead letter, whole"),
        ("replay", "republish dead letters, oldest first"),
        ("purge", "delete dead letters, oldest first"),
    ]:
        p = actions.add_parser(name, help=help_text)
        p.add_argument("url", help="broker URL, e.g. redis://127.0.0.1:6379/0")
        p.add_argument("--queue", "-q", required=True, help="queue name")
        p.add_argument("--namespace", default="stem", help="broker namespace (default: stem)")
        p.add_argument("--json", action="store_true", help="print JSON lines")
        if name == "show":
            p.add_argument("id", help="envelope id")
        if name in ("list", "replay", "purge"):
            p.add_argument("--limit", type=int, default=None, help="at most this many")
        if name == "list":
            p.add_argument("--offset", type=int, default=0)
        if name in ("replay", "purge"):
            p.add_argument("--since", type=_instant, help="only those dead at or after (ISO-8601)")
        if name == "replay":
            p.add_argument("--delay", type=float, help="seconds before they become due")
            p.add_argument("--dry-run", action="store_true", help="show what would be replayed")
        p.set_defaults(func=run)


def _row(entry: DeadLetterEntry) -> dict[str, Any]:
    env = entry.envelope
    return {
        "id": env.id,
        "name": env.name,
        "queue": env.queue,
        "attempt": env.attempt,
        "reason": entry.reason,
        "dead_at": entry.dead_at.isoformat(),
        "meta": entry.meta,
    }


def _print(entries: list[DeadLetterEntry], as_json: bool) -> None:
    for entry in entries:
        row = _row(entry)
        if as_json:
            print(json.dumps(row))
        else:
            print(f"{row['dead_at']}  {row['id']}  {row['name']:<24} {row['reason']}")


def run(args: argparse.Namespace) -> int:
    with stemlab.connect(args.url, namespace=args.namespace) as broker:
        if args.action == "list":
            page = broker.list_dead_letters(args.queue, limit=args.limit or 50, offset=args.offset)
            _print(page.entries, args.json)
            if page.next_offset is not None and not args.json:
                print(f"(more: --offset {page.next_offset})")
        elif args.action == "show":
            entry = broker.get_dead_letter(args.queue, args.id)
            if entry is None:
                raise stemlab.StemlabError(f"no dead letter {args.id} in queue {args.queue!r}")
            print(json.dumps({**_row(entry), "envelope": entry.envelope.to_dict()}, indent=2))
        elif args.action == "replay":
            result = broker.replay_dead_letters(
                args.queue,
                limit=args.limit or 50,
                since=args.since,
                delay=args.delay,
                dry_run=args.dry_run,
            )
            _print(result.entries, args.json)
            verb = "would replay" if result.dry_run else "replayed"
            print(f"{verb} {result.count}")
        else:
            count = broker.purge_dead_letters(args.queue, since=args.since, limit=args.limit)
            print(f"purged {count}")
    return 0
