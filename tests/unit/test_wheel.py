"""A built wheel works on its own: installed into a fresh venv outside the checkout, the
command line and the simulator find the shipped profiles and scenarios.

The venv gets the wheel without its dependencies; a `.pth` file then appends this
environment's site-packages (numpy, pandas, simpy, matplotlib), so nothing is
downloaded. `.pth` files of appended folders are not run, so this environment's
editable install of stemlab does not leak in: the stemlab imported is the wheel's.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

import stemlab

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("STEMLAB_PROFILES", None)
    env.pop("STEMLAB_SCENARIOS", None)
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from this checkout installed in it."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy: an in-tree build would leave build/ in the checkout, and a
    # stale build/lib can smuggle deleted modules into later wheels.
    source = tmp / "src"
    junk = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*cache", "stemlab-out"
    )
    shutil.copytree(ROOT, source, ignore=junk)
    dist = tmp / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist)]
    _run([*pip_wheel, str(source)], tmp)
    (wheel,) = dist.glob("stemlab-*.whl")
    assert wheel.name.startswith(f"stemlab-{stemlab.__version__}-")
    env_dir = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(env_dir)], tmp)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], tmp)
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp
    )
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib.strip()) / "zz_host_deps.pth").write_text("\n".join(deps) + "\n")
    return env_dir


def test_wheel_carries_the_data_and_the_cli_runs(venv: Path, tmp_path: Path) -> None:
    out = _run(
        [str(venv / "bin" / "stemlab"), "compare", "-s", "light-mmc", "--tasks", "300", "-o", "o"],
        tmp_path,
    )
    assert "redis" in out and "postgres" in out, out
    assert (tmp_path / "o" / "compare-light-mmc.png").is_file()


def test_wheel_simulates_from_its_own_install(venv: Path, tmp_path: Path) -> None:
    code = (
        "import stemlab\n"
        "from stemlab import Scenario, simulate\n"
        "from stemlab.model.shipped import shipped_dir, shipped_names\n"
        "sc = Scenario(tasks=300)\n"
        "r = simulate(sc, 'redis')\n"
        "assert r.summary()['acked'] == 300, r\n"
        "assert 'redis' in shipped_names('profiles')\n"
        "print(stemlab.__file__)\n"
        "print(shipped_dir('profiles'))\n"
        "print(stemlab.__version__)\n"
    )
    out = _run([str(venv / "bin" / "python"), "-c", code], tmp_path)
    *paths, version = out.split()
    for where in map(Path, paths):
        assert where.resolve().is_relative_to(venv.resolve()), where
        assert not where.resolve().is_relative_to(ROOT), where
    assert version == stemlab.__version__
