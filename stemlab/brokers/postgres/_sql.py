"""The adapter's named statements: one `<name>.sql` file each, next to this module.

Loaded by the shared loader (`stemlab.brokers.sqlfiles`), like the SQLite adapter's.
"""

from __future__ import annotations

from functools import cache

from stemlab.brokers.sqlfiles import statements

__all__ = ["query", "text"]


@cache
def text(name: str) -> str:
    """The statement of `<name>.sql`, read once per process."""
    return statements(__package__, f"{name}.sql")[name]


@cache
def query(name: str) -> bytes:
    """`<name>.sql` as bytes, ready for `cursor.execute` (psycopg prepares it by identity)."""
    return text(name).encode("utf-8")
