"""The broker profiles and scenarios that ship with stemlab, read with `importlib.resources`.

In the repository they stay in the top-level `data/` folder, where people look
for them. pyproject.toml maps that folder into the package as `stemlab._data`
(`package-dir`), so a wheel carries them as `stemlab/_data/{profiles,scenarios}`
and an editable install (`pip install -e .`) resolves `stemlab._data` to
`data/` itself, so an edited profile is seen at once. This was chosen over
`data-files` (installed outside the package, where `importlib.resources`
cannot find them), a symlink (lost on Windows checkouts) and a build-time copy
(absent from editable installs). `data/__init__.py` makes the folder a regular
package: setuptools' editable finder cannot map a namespace sub-package.

`$STEMLAB_PROFILES` and `$STEMLAB_SCENARIOS` replace the shipped folders.
"""

from __future__ import annotations

import os
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

__all__ = ["DATA_PACKAGE", "Kind", "shipped_dir", "shipped_file", "shipped_names"]

DATA_PACKAGE = "stemlab._data"
Kind = Literal["profiles", "scenarios"]
_ENV: dict[str, str] = {"profiles": "STEMLAB_PROFILES", "scenarios": "STEMLAB_SCENARIOS"}


def shipped_dir(kind: Kind) -> Traversable:
    """The folder of shipped `kind`: `$STEMLAB_<KIND>` when set, else the package data."""
    env = os.environ.get(_ENV[kind])
    if env:
        return Path(env)
    return files(DATA_PACKAGE) / kind


def shipped_names(kind: Kind) -> list[str]:
    """Names of the shipped `kind` (JSON file stems), sorted."""
    folder = shipped_dir(kind)
    if not folder.is_dir():
        return []
    return sorted(
        entry.name[: -len(".json")]
        for entry in folder.iterdir()
        if entry.name.endswith(".json") and entry.is_file()
    )


def shipped_file(kind: Kind, name: str) -> Traversable | None:
    """The shipped `<name>.json` of `kind`, or None when there is none."""
    candidate = shipped_dir(kind) / f"{name}.json"
    return candidate if candidate.is_file() else None
