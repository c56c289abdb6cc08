"""`skipwise gc [--dry-run]`: what kept versions cost to store, and which ones go (see `skipwise.store.gc`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from skipwise.cli import console
from skipwise.cli.console import add_json_flag, print_json
from skipwise.core.errors import UsageError
from skipwise.core.retention import Policy
from skipwise.core.units import format_usd
from skipwise.store.gc import collect


def add_gc_parser(sub) -> None:
    gc = sub.add_parser("gc", help="remove kept versions that cost more to store than recomputing them is worth")
    gc.add_argument(
        "--dry-run", action="store_true", help="list what would go and the dollars per month saved; remove nothing"
    )
    gc.add_argument(
        "--half-life-days",
        type=float,
        default=7.0,
        help="how fast an unused version's chance of coming back halves (default 7 days)",
    )
    gc.add_argument(
        "--months", type=float, default=1.0, help="storage months weighed against one recompute (default 1)"
    )
    add_json_flag(gc)
    gc.set_defaults(func=cmd_gc)


def cmd_gc(args: argparse.Namespace) -> int:
    if args.half_life_days < 0 or args.months < 0:
        raise UsageError(
            "--half-life-days and --months must not be negative", hint="e.g. --half-life-days 7 --months 1"
        )
    project = console.load(args)
    policy = Policy(project.config.prices.storage_usd_per_gb_month, args.half_life_days, args.months)
    items = collect(project, policy, dry_run=args.dry_run)
    gone = [i for i in items if not i.keep]
    saved_bytes = sum(i.bytes for i in gone)
    saved_usd = sum(i.storage_usd_per_month for i in gone)
    if args.json:
        print_json(
            {
                "dry_run": args.dry_run,
                "removed": [asdict(i) for i in gone],
                "kept": [asdict(i) for i in items if i.keep],
                "bytes": saved_bytes,
                "usd_per_month": saved_usd,
            }
        )
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for i in gone:
        print(f"{verb:12} {i.asset}[{i.partition}] {i.fingerprint[:12]}  {i.bytes:,} B  ({i.reason})")
    kept = len(items) - len(gone)
    print(
        f"gc: {verb} {len(gone)} version(s), {saved_bytes:,} bytes, {format_usd(saved_usd)} a month of storage; "
        f"kept {kept} not current (worth more than they cost to store); current versions are never removed"
    )
    return 0
