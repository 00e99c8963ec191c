"""Every ```python block of README.md and docs/*.md runs, so the documentation stays true.

The blocks of one file run in order in one namespace, in a temporary working
directory (files such as `jobs.db` land there). A file whose blocks mention a
Redis or PostgreSQL URL on 127.0.0.1 needs that service: the URL is replaced by
the test suite's own (`REDIS_URL`, `POSTGRES_URL` from tests/conftest.py) and the
test skips, or fails under STEMLAB_REQUIRE_SERVICES=1, when the server is absent.

Only ```python fences run (```sh, ```console, ```text, ```sql ... are shown, not
run). Blocks import public names only (`stemlab`, `stemlab.sim`, `stemlab.viz`),
so they do not depend on where the package keeps its modules.
"""

from __future__ import annotations

import ast
import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import stemlab
from tests.conftest import POSTGRES_URL, REDIS_URL, require_service

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = {"stemlab", "stemlab.sim", "stemlab.viz"}
REDIS_IN_DOCS = re.compile(r"redis://(?:[^@/\s\"']*@)?(?:127\.0\.0\.1|localhost)(?::6379)?/\d+")
POSTGRES_IN_DOCS = re.compile(
    r"postgres(?:ql)?://[^@/\s\"']*@(?:127\.0\.0\.1|localhost)(?::5432)?/[A-Za-z0-9_]+"
)
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def fenced_blocks(path: Path) -> list[Block]:
    """All fenced code blocks of a Markdown file, in order (an unclosed fence is an error)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m["fence"], m["info"].lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: code fence never closed")
        blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n"))
        i += 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    return [b for b in fenced_blocks(path) if b.lang in ("python", "py")]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


DOC_FILES = [p for p in markdown_files() if python_blocks(p)]


def test_every_markdown_file_parses() -> None:
    for path in markdown_files():
        fenced_blocks(path)  # raises on an unclosed fence
    assert DOC_FILES, "no ```python block found in README.md or docs/*.md"


@pytest.mark.parametrize("path", DOC_FILES, ids=_rel)
def test_blocks_import_public_names_only(path: Path) -> None:
    for block in python_blocks(path):
        tree = ast.parse(block.code, filename=f"{_rel(path)}:{block.line}")
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "stemlab":
                    assert name in PUBLIC_MODULES, (
                        f"{_rel(path)}:{block.line}: imports {name}; docs use only "
                        f"{sorted(PUBLIC_MODULES)}"
                    )


@pytest.mark.parametrize("path", DOC_FILES, ids=_rel)
def test_python_blocks_run(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = python_blocks(path)
    text = "".join(b.code for b in blocks)
    if REDIS_IN_DOCS.search(text):
        require_service("redis", REDIS_URL)
    if POSTGRES_IN_DOCS.search(text):
        require_service("postgres", POSTGRES_URL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    started = time.perf_counter()
    try:
        for block in blocks:
            code = REDIS_IN_DOCS.sub(REDIS_URL, block.code)
            code = POSTGRES_IN_DOCS.sub(POSTGRES_URL, code)
            compiled = compile(code, f"{_rel(path)}:{block.line}", "exec")
            try:
                exec(compiled, namespace)
            except Exception as exc:
                raise AssertionError(
                    f"the ```python block at {_rel(path)}:{block.line} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    finally:
        for value in list(namespace.values()):
            if isinstance(value, stemlab.Broker):
                with contextlib.suppress(Exception):
                    value.close()
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        n = len(blocks)
        print(f"\n{_rel(path)}: {n} python block{'s' * (n != 1)} ran in {elapsed:.1f} s", end="")
