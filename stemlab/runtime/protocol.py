"""The worker control protocol: channel names, command and reply messages, their validation.

Why a module of its own: the requester (`stemlab.runtime.control`) and the
worker side (`stemlab.runtime.responder`) must agree on every field, and a
worker must be able to refuse a malformed command without raising.

- Commands go to the broadcast channel `CONTROL_CHANNEL` of the broker's
  namespace (the namespace isolates it). The envelope's name is the command;
  its args are ``{"v": 1, "command", "args", "request_id", "reply_to",
  "workers", "deadline"}`` (`workers`: the worker ids it is meant for, or
  None for all; `deadline`: epoch seconds after which nobody listens).
- Replies go to ``reply_to`` (``stemlab.reply.<request_id>``), a channel the
  requester subscribed to before it sent the command. Args: ``{"v": 1,
  "request_id", "worker", "command", "ok", "reply", "error"}``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from stemlab.core.codec import new_id
from stemlab.core.envelope import Envelope, validate_queue_name

__all__ = [
    "COMMANDS",
    "CONTROL_CHANNEL",
    "CONTROL_QUEUE",
    "Command",
    "Reply",
    "check_task_id",
    "check_timeout",
    "command_envelope",
    "parse_command",
    "parse_reply",
    "reply_envelope",
]

VERSION = 1
CONTROL_CHANNEL = "stemlab.control"
CONTROL_QUEUE = "stemlab.control"  # the envelopes' queue: where a dead-lettered copy would go
REPLY_PREFIX = "stemlab.reply."
REPLY_NAME = "stemlab.reply"
# command -> the argument it takes (None: none)
COMMANDS: dict[str, str | None] = {
    "ping": None,
    "stats": None,
    "shutdown": None,
    "revoke": "task_id",
    "pause": "queue",
    "resume": "queue",
}
TASK_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,190}")


def check_timeout(timeout: object) -> float:
    """A reply deadline in seconds: a finite number > 0 (ValueError otherwise)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if not 0 < float(timeout) < 3600:
        raise ValueError(f"timeout must be > 0 and < 3600 seconds, got {timeout!r}")
    return float(timeout)


def check_task_id(task_id: object) -> str:
    """A task id to revoke: 1-190 of ``[A-Za-z0-9_.:-]`` (what `enqueue` returns)."""
    if not isinstance(task_id, str) or not TASK_ID_RE.fullmatch(task_id):
        raise ValueError(f"malformed task id {task_id!r}: expected 1-190 of [A-Za-z0-9_.:-]")
    return task_id


def _check_args(command: str, args: dict[str, Any]) -> dict[str, Any]:
    if command not in COMMANDS:
        known = ", ".join(COMMANDS)
        raise ValueError(f"unknown control command {command!r} (known: {known})")
    wanted = COMMANDS[command]
    if wanted is None:
        if args:
            raise ValueError(f"{command} takes no argument, got {sorted(args)}")
        return {}
    if set(args) != {wanted}:
        raise ValueError(f"{command} takes exactly one argument, {wanted!r}; got {sorted(args)}")
    value = args[wanted]
    if wanted == "task_id":
        check_task_id(value)
    else:
        validate_queue_name(value)
    return {wanted: value}


@dataclass(frozen=True)
class Command:
    """One command as a worker receives it."""

    command: str
    args: dict[str, Any]
    request_id: str
    reply_to: str
    workers: tuple[str, ...] | None
    deadline: float

    def meant_for(self, worker_id: str) -> bool:
        return self.workers is None or worker_id in self.workers


@dataclass(frozen=True)
class Reply:
    """One worker's answer to one command."""

    request_id: str
    worker: str
    command: str
    ok: bool
    reply: dict[str, Any]
    error: str | None


def command_envelope(
    command: str, args: dict[str, Any], workers: tuple[str, ...] | None, timeout: float
) -> tuple[Command, Envelope]:
    """Validate a command and build its envelope (ValueError for bad input)."""
    clean = _check_args(command, dict(args))
    request_id = new_id()
    cmd = Command(
        command, clean, request_id, REPLY_PREFIX + request_id, workers, time.time() + timeout
    )
    body = {
        "v": VERSION,
        "command": command,
        "args": clean,
        "request_id": request_id,
        "reply_to": cmd.reply_to,
        "workers": None if workers is None else list(workers),
        "deadline": cmd.deadline,
    }
    return cmd, Envelope(name=command, args=body, queue=CONTROL_QUEUE)


def parse_command(env: Envelope) -> Command:
    """The command an envelope carries; ValueError naming what is wrong otherwise."""
    body = env.args
    if body.get("v") != VERSION:
        raise ValueError(f"unsupported control protocol version {body.get('v')!r}")
    command = body.get("command")
    args = body.get("args")
    if not isinstance(command, str) or not isinstance(args, dict):
        raise ValueError("a command needs a string 'command' and a dict 'args'")
    clean = _check_args(command, args)
    request_id, reply_to = body.get("request_id"), body.get("reply_to")
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("a command needs a request_id")
    validate_queue_name(reply_to, "reply channel")
    workers = body.get("workers")
    if workers is not None and (
        not isinstance(workers, list) or not all(isinstance(w, str) for w in workers)
    ):
        raise ValueError("'workers' must be a list of worker ids or null")
    deadline = body.get("deadline")
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise ValueError("a command needs a numeric deadline")
    return Command(
        command,
        clean,
        request_id,
        str(reply_to),
        None if workers is None else tuple(workers),
        float(deadline),
    )


def reply_envelope(
    cmd: Command, worker: str, reply: dict[str, Any], error: str | None = None
) -> Envelope:
    body = {
        "v": VERSION,
        "request_id": cmd.request_id,
        "worker": worker,
        "command": cmd.command,
        "ok": error is None,
        "reply": reply,
        "error": error,
    }
    return Envelope(name=REPLY_NAME, args=body, queue=CONTROL_QUEUE)


def parse_reply(env: Envelope) -> Reply | None:
    """The reply an envelope carries, or None if it is not a well-formed reply."""
    body = env.args
    if env.name != REPLY_NAME or body.get("v") != VERSION:
        return None
    worker, reply = body.get("worker"), body.get("reply")
    if not isinstance(worker, str) or not isinstance(reply, dict):
        return None
    error = body.get("error")
    return Reply(
        str(body.get("request_id")),
        worker,
        str(body.get("command")),
        bool(body.get("ok")),
        reply,
        error if isinstance(error, str) else None,
    )
