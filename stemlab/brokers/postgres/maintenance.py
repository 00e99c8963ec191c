"""Operator helpers for the Postgres broker: drop a namespace's rows, inspect table health."""

from __future__ import annotations

from typing import Any

from stemlab.brokers.postgres import _sql
from stemlab.brokers.postgres._connection import Settings, connect, translated

__all__ = ["delete_namespaces", "table_stats"]


def delete_namespaces(url: str, namespaces: list[str], *, schema: str = "stemlab") -> int:
    """Delete every row of these namespaces (messages, dead letters, broadcasts); returns rows."""
    settings = Settings.from_url(url, schema=schema)
    removed = 0
    with translated("delete namespaces"), connect(settings, "maintenance") as conn:
        if conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", [schema]).fetchone()[0]:
            for ns in namespaces:
                removed += int(
                    conn.execute(_sql.query("delete_namespace"), {"ns": ns}).fetchone()[0]
                )
    return removed


def table_stats(url: str, *, schema: str = "stemlab") -> dict[str, dict[str, Any]]:
    """Per table: total size in bytes, live and dead tuples, last (auto)vacuum."""
    settings = Settings.from_url(url, schema=schema)
    with translated("table stats"), connect(settings, "maintenance") as conn:
        rows = conn.execute(_sql.query("table_stats")).fetchall()
    keys = ("total_bytes", "live_tuples", "dead_tuples", "last_autovacuum", "last_vacuum")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}
