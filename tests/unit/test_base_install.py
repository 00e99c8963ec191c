"""`import stemlab` needs only the base dependencies; missing drivers give a ConfigError."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    OPTIONAL = {
        "redis", "hiredis", "psycopg", "psycopg_pool", "pika", "tqdm", "ipywidgets", "IPython"
    }
    OPTIONAL |= {"boto3", "botocore"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in OPTIONAL:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_without_optional_drivers() -> None:
    proc = _run(
        """
        import stemlab, stemlab.sim, stemlab.experiments
        b = stemlab.connect("memory://", namespace="base-install")
        b.publish(stemlab.Envelope(name="x"))
        assert b.pending_count("default") == 1
        print("ok", sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok []"


def test_missing_driver_names_the_extra() -> None:
    proc = _run(
        """
        import stemlab
        from stemlab.brokers import SCHEMES
        for scheme, (_, _, extra) in SCHEMES.items():
            if extra is None:
                continue
            try:
                stemlab.connect(f"{scheme}://127.0.0.1/0")
            except stemlab.ConfigError as exc:
                assert f"stemlab[{extra}]" in str(exc), exc
            else:
                raise AssertionError(f"{scheme}:// connected without its driver")
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
