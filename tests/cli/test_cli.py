"""The `stemlab` command, run for real in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import stemlab
from stemlab import Envelope


def stemlab_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "stemlab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_help_lists_subcommands() -> None:
    proc = stemlab_cmd("--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout and "dlq" in proc.stdout


def test_demo_round_trip_on_embedded_sqlite(tmp_path: Path) -> None:
    proc = stemlab_cmd("demo", "--db", str(tmp_path / "demo.db"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sqlite:///" in out
    assert "report.build" in out and "priority=8" in out
    assert "delivery_count=2" in out
    assert "LeaseLost" in out
    assert "'nack'" in out
    assert "pending=0 inflight=0 delayed=0" in out
    assert "dead letters: 1" in out


def test_bad_url_is_one_line_and_nonzero() -> None:
    proc = stemlab_cmd("dlq", "list", "nosuch://x", "--queue", "q")
    assert proc.returncode != 0
    assert "unknown URL scheme" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _dead_letters(url: str, n: int) -> list[str]:
    ids = []
    with stemlab.connect(url, namespace="cli") as broker:
        broker.publish_many([Envelope(name=f"job{i}", queue="q") for i in range(n)])
        with broker.consume("q", prefetch=n) as consumer:
            for _ in range(n):
                d = consumer.get(timeout=5)
                assert d is not None
                broker.dead_letter(d, reason="boom")
                ids.append(d.envelope.id)
    return ids


def test_dlq_list_show_replay_purge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dlq.db'}"
    ids = _dead_letters(url, 3)
    common = [url, "--queue", "q", "--namespace", "cli"]
    listed = stemlab_cmd("dlq", "list", *common)
    assert listed.returncode == 0, listed.stderr
    assert all(i in listed.stdout for i in ids) and "boom" in listed.stdout
    shown = stemlab_cmd("dlq", "show", *common, ids[0])
    assert shown.returncode == 0 and '"job0"' in shown.stdout
    dry = stemlab_cmd("dlq", "replay", *common, "--limit", "1", "--dry-run")
    assert dry.returncode == 0 and "would replay 1" in dry.stdout and ids[0] in dry.stdout
    replayed = stemlab_cmd("dlq", "replay", *common, "--limit", "1")
    assert "replayed 1" in replayed.stdout
    purged = stemlab_cmd("dlq", "purge", *common)
    assert "purged 2" in purged.stdout
    with stemlab.connect(url, namespace="cli") as broker:
        assert broker.pending_count("q") == 1
        assert broker.list_dead_letters("q").entries == []
    missing = stemlab_cmd("dlq", "show", *common, "nope")
    assert missing.returncode == 1 and "no dead letter" in missing.stderr
