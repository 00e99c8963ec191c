"""Progress: bars in a terminal or a Jupyter kernel, silence in scripts, tests and pipes."""

from __future__ import annotations

import sys
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from stemlab.core import progress
from stemlab.core.progress import Progress, in_notebook


class ZMQInteractiveShell:
    """Stands in for ipykernel's shell: only its class name is looked at."""


def _fake_kernel(monkeypatch: pytest.MonkeyPatch, shell: object) -> None:
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setitem(sys.modules, "IPython", ipython)


def test_quiet_outside_terminals_and_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert not in_notebook()
    bar = Progress(10, "quiet")
    assert not bar.shown
    bar.advance(3)
    bar.note("x")
    bar.say("nothing printed")
    bar.close()
    assert bar.done == 3


def test_a_jupyter_kernel_gets_the_notebook_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    _fake_kernel(monkeypatch, ZMQInteractiveShell())
    assert in_notebook()
    from tqdm.notebook import tqdm as notebook_tqdm

    assert progress._tqdm() is notebook_tqdm


def test_a_kernel_shell_subclass_is_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    class Shell(ZMQInteractiveShell):  # as in hosted notebooks that extend the kernel's shell
        pass

    _fake_kernel(monkeypatch, Shell())
    assert in_notebook()


def test_a_terminal_ipython_is_not_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    class TerminalInteractiveShell:
        pass

    _fake_kernel(monkeypatch, TerminalInteractiveShell())
    assert not in_notebook()
    _fake_kernel(monkeypatch, None)
    assert not in_notebook()


def test_disabled_progress_never_looks_for_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kernel(monkeypatch, ZMQInteractiveShell())
    assert not Progress(5, "off", enabled=False).shown


def test_sweep_with_progress_gives_the_same_rows() -> None:
    from stemlab import Scenario, sweep
    from stemlab.sim import Exponential

    sc = Scenario(name="p", arrival_rate=20.0, tasks=50, service_time=Exponential(0.05), workers=2)
    grid = {"workers": [1, 2]}
    plain = sweep(sc, grid, seeds=(1, 2))
    with ThreadPoolExecutor(2) as pool:
        shown = sweep(sc, grid, pool, seeds=(1, 2), progress=True)
    assert plain.drop(columns="wall_s").equals(shown.drop(columns="wall_s"))


def test_expected_duration_of_a_live_run() -> None:
    from stemlab import Scenario
    from stemlab.live.run import expected_duration
    from stemlab.sim import Constant

    arrival_bound = Scenario(arrival_rate=100.0, tasks=400, service_time=Constant(0.01), workers=4)
    assert expected_duration(arrival_bound) == pytest.approx(4.01)
    work_bound = Scenario(arrival_rate=1000.0, tasks=400, service_time=Constant(0.1), workers=4)
    assert expected_duration(work_bound) == pytest.approx(10.1)
