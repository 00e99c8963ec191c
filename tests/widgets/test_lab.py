"""`stemlab lab`: the notebook it serves is notebooks/07-playground.ipynb, and it fails clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stemlab.cli import main
from stemlab.cli.lab import NOTEBOOK_NAME, playground_notebook

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / NOTEBOOK_NAME


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_served_notebook_is_the_tutorial_notebook() -> None:
    committed = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    generated = playground_notebook()
    assert [(c["cell_type"], "".join(c["source"])) for c in committed["cells"]] == [
        (c["cell_type"], c["source"]) for c in generated["cells"]
    ], "regenerate notebooks/07-playground.ipynb from stemlab.cli.lab.playground_notebook()"
    tagged = [c for c in committed["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and "STEMLAB_REDIS_URL" in "".join(tagged[0]["source"])


def test_the_tutorial_notebook_is_committed_with_outputs() -> None:
    committed = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in committed["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "execute it: jupyter nbconvert --execute"
    views = [
        o for c in code for o in c["outputs"] if "application/vnd.jupyter.widget-view+json" in
        o.get("data", {})
    ]  # fmt: skip
    assert len(views) == 2  # the playground and the explorer
    state = committed["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    pngs = [
        m for m in state["state"].values() if m["model_name"] == "OutputModel"
        and any("image/png" in o.get("data", {}) for o in m["state"].get("outputs", []))
    ]  # fmt: skip
    assert len(pngs) == 4  # the explorer's four figures were drawn before it was saved


def test_lab_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["lab", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--port" in out and "--no-browser" in out and "Voila" in out


def test_lab_without_voila_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['voila'] = None  # as if it were not installed\n"
        "from stemlab.cli import main; sys.exit(main(['lab', '--no-browser']))\n"
    )
    proc = _python(code)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "stemlab lab: error: stemlab lab needs voila: pip install 'stemlab[notebook]'"
    )


def test_lab_refuses_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--port", "0", "--no-browser"]) == 1
    assert "--port must be in 1..65535" in capsys.readouterr().err
