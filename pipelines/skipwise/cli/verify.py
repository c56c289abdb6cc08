"""``skipwise verify``: recompute a sample of up-to-date partitions and compare with what is committed.

    skipwise verify                          # 5 % of the up-to-date partitions
    skipwise verify --sample 20 --seed 7     # 20 of them, the same 20 each time
    skipwise verify --select flight_features --partition 2013-01-01...2013-01-31 --fraction 1
    skipwise verify --dry-run                # which partitions would be recomputed

Exits 0 when every fresh output matches its committed one; 3 (a gate said no) on a mismatch (the
partition is then marked stale) or an asset that disagrees with itself.
"""

from __future__ import annotations

import argparse
import math

from skipwise.cli import console
from skipwise.cli.console import EXIT_CHECK, EXIT_OK, add_json_flag, print_json
from skipwise.core.errors import UsageError
from skipwise.core.partitions import parse_range
from skipwise.engine.loading import load_project
from skipwise.engine.collector import resume_collection
from skipwise.engine.verifying import Sample, Verified, choose, share, verify

DEFAULT_FRACTION = 0.05


def add_verify_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``verify`` subcommand to an argparse `subparsers`; its ``func`` is `run_verify`."""
    parser = subparsers.add_parser(
        "verify",
        help="recompute a sample of up-to-date partitions and compare them with what is committed",
        description="Recomputes a random sample of up-to-date partitions in memory (nothing committed is "
        "touched) and compares each output's sha256 with its manifest's. A mismatch is marked stale (the next "
        "run recomputes it) and fails the command, as does an asset whose two computations differ. What "
        'verifying cost goes to the cost ledger (cache "verify").',
    )
    parser.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    parser.add_argument("--partition", default=None, help="one partition key, or a range a...b (default: all)")
    parser.add_argument(
        "--fraction",
        type=float,
        default=None,
        help=f"share of the up-to-date partitions to recompute (default: {DEFAULT_FRACTION})",
    )
    parser.add_argument(
        "--sample", type=int, default=None, metavar="N", help="recompute N partitions instead of a share"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the random draw: the same seed draws the same partitions (default: a new one, printed)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the partitions that would be recomputed, compute nothing"
    )
    add_json_flag(parser)
    parser.set_defaults(func=run_verify)
    return parser


def check_args(args: argparse.Namespace) -> float | None:
    """The fraction to draw (None with --sample); UsageError before anything loads."""
    if args.sample is not None and args.fraction is not None:
        raise UsageError("--sample and --fraction both say how many partitions to verify", hint="give one of them")
    if args.sample is not None and args.sample < 1:
        raise UsageError(f"--sample must be 1 or more, got {args.sample}", hint="e.g. --sample 20, or --fraction 0.05")
    fraction = None if args.sample is not None else (DEFAULT_FRACTION if args.fraction is None else args.fraction)
    if fraction is not None and not (math.isfinite(fraction) and 0 < fraction <= 1):
        raise UsageError(
            f"--fraction {args.fraction} is not a share of the up-to-date partitions",
            hint="give a number above 0 and at most 1, e.g. --fraction 0.05 (1: all of them)",
        )
    if args.partition is not None:
        parse_range(args.partition)
    return fraction


def run_verify(args: argparse.Namespace) -> int:
    """Run ``skipwise verify``; returns the exit status."""
    fraction = check_args(args)
    project = load_project(console.project_root(args.root), args.defs)
    select = [s.strip() for s in args.select.split(",") if s.strip()] if args.select else None
    sample = choose(project, select, args.partition, fraction, args.sample, args.seed)
    if args.dry_run:
        _print_dry_run(args, sample)
        return EXIT_OK
    resume_collection()  # recomputing runs the bodies: with the collector on, whatever they make
    report = verify(project, sample, on_result=None if args.json else _print_problem)
    if args.json:
        print_json({**report.to_json(), "warnings": project.warnings})
    else:
        for line in report.skipped_lines():
            print(line)
        print(report.summary())
        console.print_warnings(project.warnings)
    if not report.ok:
        if not args.json:
            console.error(report.failure())
        return EXIT_CHECK
    return EXIT_OK


def _print_problem(result: Verified) -> None:
    if result.verdict.is_problem:
        print(result.line(), flush=True)


def _print_dry_run(args: argparse.Namespace, sample: Sample) -> None:
    if args.json:
        print_json(
            {
                "dry_run": True,
                "up_to_date": sample.up_to_date,
                "seed": sample.seed,
                "partitions": [{"asset": p.asset.name, "partition": p.key} for p in sample.picked],
            }
        )
        return
    for p in sample.picked:
        print(f"would verify  {p.asset.name}[{p.key}]")
    print(
        f"would verify {len(sample.picked)} of {sample.up_to_date} up-to-date partitions "
        f"({share(len(sample.picked), sample.up_to_date)}; seed {sample.seed}); nothing computed"
    )
