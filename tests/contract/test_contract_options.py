"""Contract: every adapter refuses a bad option with one ConfigError, before connecting."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stemlab import ConfigError
from tests.contract.conftest import ADAPTERS


@pytest.mark.parametrize(
    "options",
    [
        {"no_such_option": 1},
        {"default_visibility_timeout": 0},
        {"default_visibility_timeout": -1.0},
        {"default_visibility_timeout": "30"},
        {"default_visibility_timeout": True},
        {"default_visibility_timeout": float("nan")},
        {"namespace": "has space"},
        {"namespace": "a:b"},
        {"namespace": "x" * 101},
    ],
)
def test_bad_option_is_one_config_error(
    adapter: str, tmp_path: Path, namespace: str, options: dict[str, Any]
) -> None:
    options = dict(options)  # the parameter dict is shared between adapters
    ns = options.pop("namespace", namespace)
    with pytest.raises(ConfigError) as info:
        ADAPTERS[adapter](ns, tmp_path, **options).close()
    assert "\n" not in str(info.value)


def test_empty_namespace_is_a_config_error(adapter: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ADAPTERS[adapter]("", tmp_path).close()


def test_common_options_are_taken(adapter: str, make_broker: Any) -> None:
    broker = make_broker(default_visibility_timeout=timedelta(seconds=12))
    inner = getattr(broker, "inner", broker)
    assert inner.default_visibility_timeout == 12.0
