"""pyproject.toml's package list matches the tree, data/ is the package `stemlab._data`,
and the version is written in one place."""

from __future__ import annotations

import tomllib
from pathlib import Path

import stemlab
from stemlab._version import __version__
from stemlab.model.shipped import shipped_dir, shipped_names

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:  # type: ignore[type-arg]
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def test_listed_packages_are_the_package_tree() -> None:
    tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "stemlab").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    setuptools = _pyproject()["tool"]["setuptools"]
    assert set(setuptools["packages"]) == tree | {"stemlab._data"}, "update [tool.setuptools]"
    assert setuptools["package-dir"] == {"stemlab._data": "data"}


def test_version_has_one_source() -> None:
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "stemlab._version.__version__"}
    assert stemlab.__version__ == __version__


def test_shipped_data_is_the_repository_data_folder() -> None:
    for kind in ("profiles", "scenarios"):
        on_disk = sorted(p.stem for p in (ROOT / "data" / kind).glob("*.json"))
        assert shipped_names(kind) == on_disk
        assert on_disk
    assert Path(str(shipped_dir("profiles"))).resolve() == (ROOT / "data" / "profiles")
