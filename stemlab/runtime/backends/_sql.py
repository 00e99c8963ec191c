"""Named statements read from the `.sql` files beside the backends (``-- name: x`` sections)."""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["load_script", "load_sql"]


@functools.cache
def load_sql(filename: str) -> dict[str, str]:
    """Each ``-- name: x`` section of `filename` (in this package), by name."""
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    out: dict[str, str] = {}
    name: str | None = None
    for line in text.splitlines():
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return {k: v.strip() for k, v in out.items()}


@functools.cache
def load_script(filename: str) -> str:
    """The whole text of a script file (a Lua script) in this package."""
    return resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
