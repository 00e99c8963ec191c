"""The SQLite adapter: `sqlite:///relative/file.db` or `sqlite:////absolute/file.db`."""

from stemlab.brokers.sqlite.broker import SQLiteBroker

__all__ = ["SQLiteBroker"]
