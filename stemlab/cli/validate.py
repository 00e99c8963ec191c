"""`stemlab validate URL --scenario FILE`: predicted vs measured, and the fidelity table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import stemlab
from stemlab.cli._common import load_scenario, out_dir
from stemlab.experiments import ValidationReport, fidelity_table

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "validate",
        help="run scenarios live and simulated; report the prediction error",
        description="Calibrate each broker (unless --profile is given), run each scenario live "
        "and simulated on the profile, and print the errors and the fidelity table (Markdown).",
    )
    parser.add_argument("urls", nargs="+", metavar="URL", help="broker URL(s)")
    parser.add_argument(
        "--scenario",
        "-s",
        action="append",
        required=True,
        help="scenario JSON file or shipped name; repeat for several",
    )
    parser.add_argument("--replications", "-r", type=int, default=3, help="runs per scenario")
    parser.add_argument("--tasks", type=int, help="override the scenarios' number of tasks")
    parser.add_argument("--profile", "-p", help="use this profile instead of calibrating (one URL)")
    parser.add_argument("--quick", action="store_true", help="quick calibration")
    parser.add_argument(
        "--force",
        action="store_true",
        help="keep a calibration measured while other programs loaded the machine",
    )
    parser.add_argument(
        "--namespace", default="stemlab-validate", help="broker namespace (default: %(default)s)"
    )
    parser.add_argument("--out", "-o", help="folder for figures, reports (JSON) and profiles")
    parser.add_argument(
        "--strict", action="store_true", help="exit with 2 when a fidelity target is missed"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.profile and len(args.urls) > 1:
        raise ValueError("--profile applies to one URL; give one URL or let each be calibrated")
    if args.replications < 1:
        raise ValueError(f"--replications must be >= 1, got {args.replications}")
    scenarios = [load_scenario(s, args.tasks) for s in args.scenario]
    profile = stemlab.load_profile(args.profile) if args.profile else None
    folder = out_dir(args.out)
    reports: list[ValidationReport] = []
    for url in args.urls:
        with stemlab.connect(url, namespace=args.namespace) as broker:
            chosen = profile or stemlab.calibrate(
                broker, quick=args.quick, progress=True, force=args.force
            )
            if folder is not None and profile is None:
                chosen.save(folder / f"profile-{chosen.name}.json")
            for scenario in scenarios:
                report = stemlab.validate(
                    scenario, broker, replications=args.replications, profile=chosen, progress=True
                )
                reports.append(report)
                print(report.table(), end="\n\n", flush=True)
                if folder is not None:
                    _save(report, folder)
    print(fidelity_table(reports))
    if folder is not None:
        (folder / "fidelity.md").write_text(fidelity_table(reports) + "\n")
        print(f"\nwrote figures, reports and fidelity.md to {folder}")
    missed = any(not r.ok for r in reports)
    return 2 if args.strict and missed else 0


def _save(report: ValidationReport, folder: Path) -> None:
    stem = f"validate-{report.broker}-{report.scenario.name}"
    report.figure().savefig(folder / f"{stem}.png", dpi=120)
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False, default=str)
    (folder / f"{stem}.json").write_text(text + "\n")
