"""Load the adapter's named `.sql` files (they live next to this module)."""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["query", "text"]


@cache
def text(name: str) -> str:
    """The text of `<name>.sql`, read once per process."""
    return resources.files(__package__).joinpath(f"{name}.sql").read_text("utf-8")


@cache
def query(name: str) -> bytes:
    """`<name>.sql` as bytes, ready for `cursor.execute` (psycopg prepares it by identity)."""
    return text(name).encode("utf-8")
