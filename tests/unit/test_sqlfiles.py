"""Every adapter SQL file follows the one convention and loads through the one loader."""

from __future__ import annotations

from pathlib import Path

import pytest

import stemlab.brokers
from stemlab.brokers.sqlfiles import statements

ROOT = Path(stemlab.brokers.__file__).parent
FILES = sorted(ROOT.glob("*/*.sql"))


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_sql_file_names_its_tables_and_statements(path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith("-- tables: ")
    found = statements(f"stemlab.brokers.{path.parent.name}", path.name)
    assert found and all(found.values()), found
    lines = [line for text in found.values() for line in text.splitlines()]
    assert not any(line.lstrip().startswith("--") for line in lines)


def test_both_sql_adapters_are_covered() -> None:
    assert {p.parent.name for p in FILES} == {"sqlite", "postgres"}
