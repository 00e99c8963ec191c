"""`import stemlab` and `connect` stay light: no pandas, numpy, matplotlib or simpy until used.

Each check runs in a fresh interpreter (`-X importtime`), so modules loaded
by this test process do not count. The measured time is printed (see it
with `pytest -s`) and attached to the test report as a user property.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pandas", "numpy", "matplotlib", "simpy")


def _import_profile(tmp_path: Path, code: str) -> tuple[set[str], dict[str, int]]:
    """Top-level modules imported by `code`, and the cumulative import time (us) of each."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    roots: set[str] = set()
    cumulative: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cum, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if not cum.isdigit():
            continue  # the header line
        roots.add(name.split(".")[0])
        cumulative[name] = int(cum)
    return roots, cumulative


def test_import_and_connect_load_no_heavy_module(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code = f"import stemlab\nb = stemlab.connect({url!r})\nb.close()\n"
    roots, cumulative = _import_profile(tmp_path, code)
    seconds = cumulative["stemlab"] / 1e6
    record_property("import_stemlab_s", seconds)
    print(f"import stemlab: {seconds * 1000:.1f} ms (cumulative, -X importtime)")
    assert not roots & set(HEAVY), f"heavy modules imported: {sorted(roots & set(HEAVY))}"


def test_heavy_names_load_on_first_use(tmp_path: Path) -> None:
    code = (
        "import sys, stemlab\n"
        "assert 'simulate' in dir(stemlab) and 'simulate' in stemlab.__all__\n"
        "assert 'simpy' not in sys.modules\n"
        "from stemlab import Scenario, simulate\n"
        "assert 'simpy' in sys.modules and stemlab.simulate is simulate\n"
    )
    roots, _ = _import_profile(tmp_path, code)
    assert {"numpy", "pandas", "simpy"} <= roots


def test_every_public_name_resolves() -> None:
    import stemlab

    for name in stemlab.__all__:
        assert getattr(stemlab, name) is not None, name
    with pytest.raises(AttributeError):
        stemlab.no_such_name  # noqa: B018
