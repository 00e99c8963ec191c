"""CPU accounting from Linux's /proc: the broker server's processes, and the whole machine.

Calibration needs three CPU figures: the client's own (the calling thread's
`time.thread_time`, the process's `time.process_time`), the broker server's
(the process tree that listens on the broker URL's loopback port, found
through /proc/net/tcp and each process's open sockets), and the machine's
(busy time in /proc/stat). Where /proc is missing or a server is not on
this machine, the functions return None and calibration says so.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["ServerTree", "machine_busy", "server_tree"]

_PROC = Path("/proc")
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (_PROC / "net" / name).read_text().splitlines()[1:]:
                cols = line.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def _pids() -> list[int]:
    return [int(p.name) for p in _PROC.iterdir() if p.name.isdigit()]


def _owner(inodes: set[str]) -> int | None:
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in _pids():
        with contextlib.suppress(OSError):
            for fd in (_PROC / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        return pid
    return None


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of one process."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


class ServerTree:
    """The broker server's process and its descendants (e.g. Postgres's backends)."""

    def __init__(self, root: int) -> None:
        self.root = root

    def cpu(self) -> dict[int, float]:
        """CPU seconds used so far by each process of the tree (children found afresh)."""
        stats = {pid: s for pid in _pids() if (s := _stat(pid)) is not None}
        tree = {self.root}
        grew = True
        while grew:
            grew = False
            for pid, (parent, _) in stats.items():
                if parent in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        return {pid: stats[pid][1] for pid in tree if pid in stats}


def server_tree(url: str) -> ServerTree | None:
    """The process tree serving `url` when it listens on this machine's loopback, else None."""
    parts = urlsplit(url)
    if parts.hostname not in _LOOPBACK or parts.port is None:
        return None
    inodes = _listening_inodes(parts.port)
    pid = _owner(inodes) if inodes else None
    return ServerTree(pid) if pid is not None else None


def machine_busy() -> float | None:
    """Busy CPU seconds of all cores since boot (/proc/stat; idle and iowait excluded)."""
    try:
        first = (_PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _TICK
