"""`postgresql://` / `postgres://` broker (needs the `postgres` extra: psycopg 3 + psycopg-pool)."""

from __future__ import annotations

from stemlab.brokers.postgres.broker import PostgresBroker

__all__ = ["PostgresBroker"]
