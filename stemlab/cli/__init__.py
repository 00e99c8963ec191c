"""The `stemlab` command line: one module per subcommand, registered here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stemlab.cli import (
    bench,
    calibrate,
    compare,
    control,
    demo,
    dlq,
    lab,
    plan,
    run,
    simulate,
    validate,
    worker,
)
from stemlab.errors import StemlabError

__all__ = ["main"]

SUBCOMMANDS = [
    compare,
    plan,
    simulate,
    run,
    bench,
    calibrate,
    validate,
    dlq,
    demo,
    lab,
    worker,
    control,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stemlab", description="Choose and understand task-queue brokers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; errors become one line on stderr and a non-zero exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (StemlabError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the driver's message
        print(f"stemlab {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stemlab {args.command}: interrupted", file=sys.stderr)
        return 130
