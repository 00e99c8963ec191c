"""One convention for the adapters' SQL files, and their one loader.

A `.sql` file lives next to the adapter that runs it. It opens with a
`-- tables:` comment naming the tables (and sequences) it touches, then says in
comments what it does; each statement follows a `-- name: <key>` line and is
looked up by that key. Comment lines are dropped from the statements. A file
may hold one statement (Postgres: one file per statement, named like the
file) or several (SQLite: one file per table group).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["statements"]


@cache
def statements(package: str, filename: str) -> dict[str, str]:
    """The `-- name: key` statements of `filename` in `package`, read once per process."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    if not text.startswith("-- tables:"):
        raise ValueError(f"{package}/{filename} must open with a '-- tables:' comment")
    found: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in [*text.splitlines(), "-- name: <end>"]:
        if line.startswith("-- name:"):
            if name is not None:
                found[name] = "\n".join(lines).strip()
            name, lines = line.split(":", 1)[1].strip(), []
        elif name is not None and not line.lstrip().startswith("--"):
            lines.append(line)
    return found
