"""The result backend stores: memory, SQLite, Redis and PostgreSQL (drivers loaded on use)."""

__all__: list[str] = []
