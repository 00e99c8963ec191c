"""Shared test helpers: service URLs, and skip-or-fail when a service is absent."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("STEMLAB_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("STEMLAB_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("STEMLAB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REQUIRE_SERVICES = os.environ.get("STEMLAB_REQUIRE_SERVICES") == "1"


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


def require_service(name: str, url: str) -> str:
    """Return `url` if its server answers; else skip (or fail under STEMLAB_REQUIRE_SERVICES=1)."""
    if _reachable(url):
        return url
    message = f"{name} is not reachable at {url} (set STEMLAB_{name.upper()}_URL or start it)"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; STEMLAB_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(message)
    return url  # unreachable; keeps type checkers calm
