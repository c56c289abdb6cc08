"""``skipwise cost``: what the pipelines cost, from the ledger, without the Dagster instance.

    skipwise cost                          # by asset, all time
    skipwise cost --by day --since 2026-01-01
    skipwise cost --by model --json
    skipwise cost --html cost.html
    skipwise cost --avoided raw            # count every cache hit's avoided cost, not once a day

Processes' overhead (their CPU, wall and memory outside partitions: the run records) is a row of
its own by asset, and part of every other grouping, so the total is what the machines did.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skipwise.cli.console import add_json_flag, print_json, print_warnings, project_root
from skipwise.core.units import format_usd
from skipwise.reporting.tables import (
    AVOIDED_BASELINES,
    GROUPINGS,
    avoided_total,
    cost_table,
    format_table,
    overhead_line,
    render_html,
    totals,
)
from skipwise.store.backends import open_ledger
from skipwise.store.ledger import Ledger

DEFAULT_LEDGER = "data/ledger"


def add_cost_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``cost`` subcommand to an argparse `subparsers`; its ``func`` is `run_cost`."""
    parser = subparsers.add_parser(
        "cost",
        help="report what computed partitions cost and what cache hits saved",
        description="Group the cost ledger by asset, partition, run, model, experiment, team "
        "or day. Model and experiment come from the run tags skipwise/model and "
        "skipwise/experiment, team from the run tag team. Each process's overhead (what it "
        "used outside partitions: start, planning, ledger, orchestration) is included, as an "
        "(overhead) row by asset or partition and an overhead_usd column otherwise.",
    )
    parser.add_argument("--by", choices=GROUPINGS, default="asset", help="how to group (default: asset)")
    parser.add_argument("--since", metavar="YYYY-MM-DD", help="only records from this UTC day on")
    add_json_flag(parser)
    parser.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report with charts")
    parser.add_argument(
        "--avoided",
        choices=tuple(AVOIDED_BASELINES),
        default="daily",
        help="baseline of dollars avoided: daily (default) counts a hit once per "
        "asset, partition and fingerprint per UTC day, what a plain orchestrator "
        "would recompute for the same requests once a day; raw counts every request",
    )
    parser.add_argument(
        "--ledger",
        metavar="DIR",
        default=None,
        help=f"ledger directory (default: the project's, {DEFAULT_LEDGER} or the object store's)",
    )
    parser.set_defaults(func=run_cost)
    return parser


def run_cost(args: argparse.Namespace) -> int:
    """Run ``skipwise cost``; returns the exit status. Errors propagate to
    `skipwise.cli.console.run_command` (one ``Error:`` line, the exit code of their kind)."""
    # Damaged ledger files are said once each, below, as `skipwise status` says them.
    quiet = lambda message: None  # noqa: E731
    if args.ledger:
        ledger = Ledger(Path(args.ledger), warn=quiet)
    else:  # the project's: data/ledger, or the object store's ($SKIPWISE_STORE, [store] url)
        ledger = open_ledger(project_root(getattr(args, "root", None)), warn=quiet)
    where = getattr(ledger, "url", ledger.root)
    rows = ledger.read(since=args.since)
    print_warnings(ledger.warnings)
    avoided = getattr(args, "avoided", "daily")
    table = cost_table(rows, args.by, avoided)
    baseline = f"avoided ({avoided}): {AVOIDED_BASELINES[avoided]}"
    if args.json:
        print_json(table)
        if rows:
            print(baseline, file=sys.stderr)
    elif not rows:
        since = f" since {args.since}" if args.since else ""
        print(f"no cost records in {where}{since}; they are written when skipwise assets materialize")
    else:
        print(format_table(table))
        total = totals(table)
        overhead = (
            f" ({format_usd(total['overhead_usd'])} of it process overhead)"
            if total.get("overhead_usd") is not None
            else ""
        )
        print(
            f"\ntotal: {format_usd(total['usd'] or 0)} spent{overhead}, "
            f"{format_usd(avoided_total(total))} avoided by "
            f"{total['skipped'] or 0} cache hit(s)"
        )
        line = overhead_line(rows)
        if line:
            print(line)
        print(baseline + ("; --avoided raw counts every request" if avoided == "daily" else ""))
    if args.html:
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(rows, by=args.by, avoided=avoided), encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return 0
