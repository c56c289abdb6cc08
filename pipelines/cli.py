"""The `skipwise` command: plan, status, materialize, cost, models. A thin layer over the library.

`plan` and `status` read manifests and DVC's files only: no data, no Dagster instance, no Dagster import.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

from skipwise.core.budget import format_usd
from skipwise.core.errors import SkipwiseError, UsageError
from skipwise.core.partitions import parse_range
from skipwise.core.plan import BLOCKED, RESTORE, RUN, SKIP, Decision

#: Warnings printed by a command; the rest are counted (all of them are in --json).
MAX_WARNINGS = 10


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `skipwise` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # The engine logs each warning as it collects it; the command prints the collected list once
    # (without a handler, logging's last resort would print every warning a second time).
    logger = logging.getLogger("skipwise")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    try:
        return int(args.func(args) or 0)
    except SkipwiseError as exc:
        print(f"Error: {exc.render()}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))


def print_warnings(warnings: list[str], limit: int = MAX_WARNINGS) -> None:
    """Each warning once, at most `limit` of them, then how many more there are."""
    for w in warnings[:limit]:
        print(f"warning: {w}", file=sys.stderr)
    if len(warnings) > limit:
        print(f"warning: ... {len(warnings) - limit} more (--json lists them all)", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skipwise", description="Incremental, cost-aware Dagster pipelines over DVC data.")
    p.add_argument("--root", default=None, help="project root (default: $SKIPWISE_ROOT or the folder holding params.yaml)")
    p.add_argument("--defs", default=None, help="the module holding the project's dg.Definitions (default: "
                   "[tool.skipwise] definitions in pyproject.toml, or skipwise.toml)")
    sub = p.add_subparsers(dest="command")

    plan = sub.add_parser("plan", help="which partitions would run and why (reads no data)")
    plan.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    plan.add_argument("--partition", default=None, help="one partition key, or a range a...b")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument("--all", action="store_true", help="list skipped partitions too")
    plan.add_argument("--max-usd", type=float, default=None, help="exit 3 if the projected cost is above this (a CI gate)")
    plan.add_argument("--cost", action="store_true", help="project the cost of the plan from the ledger's history")
    plan.set_defaults(func=cmd_plan)

    status = sub.add_parser("status", help="every partition: up to date / stale (why) / missing")
    status.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--limit", type=int, default=20, help="list at most this many not-up-to-date partitions")
    status.add_argument("--all", action="store_true", help="list every partition, up-to-date ones included")
    status.add_argument("--explain", action="store_true",
                        help="also say what each asset's code version is made of, and where the analysis included more to be safe")
    status.set_defaults(func=cmd_status)

    mat = sub.add_parser("materialize", help="materialize assets through Dagster, computing only what changed")
    mat.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    mat.add_argument("--partition", default=None, help="one partition key, or a range a...b (default: all)")
    mat.add_argument("--workers", type=int, default=None,
                     help="processes per level (default: $SKIPWISE_WORKERS, else one per CPU for levels of 100+ stale "
                          "partitions per process; 1: all in this process)")
    mat.add_argument("--tags", default=None, help='run tags as JSON, e.g. \'{"skipwise/experiment": "e1"}\'')
    mat.set_defaults(func=cmd_materialize)

    from skipwise.cost_cli import add_cost_parser
    from skipwise.gc_cli import add_gc_parser

    add_cost_parser(sub)
    add_gc_parser(sub)
    from skipwise.models_cli import add_models_parser

    add_models_parser(sub)
    from skipwise.cache_cli import add_cache_parser

    add_cache_parser(sub)
    return p


def _project(args):
    from skipwise.loading import load_project

    return load_project(Path(args.root) if args.root else None, args.defs)


def _select(spec: str | None) -> list[str] | None:
    return [s.strip() for s in spec.split(",") if s.strip()] if spec else None


def decision_row(d: Decision) -> dict:
    return {"asset": d.asset, "partition": d.partition, "action": d.action, "reason": d.reason, "fingerprint": d.fingerprint}


def cmd_plan(args) -> int:
    if args.max_usd is not None and not (math.isfinite(args.max_usd) and args.max_usd >= 0):
        raise UsageError(f"--max-usd {args.max_usd} is not a non-negative number of dollars", hint="e.g. --max-usd 5")
    if args.partition is not None:
        parse_range(args.partition)  # a malformed --partition is a usage error before anything loads
    project = _project(args)
    decisions = project.plan(_select(args.select), partition=args.partition)
    todo = [d for d in decisions if d.action != SKIP]
    projected = _projected_usd(project, todo) if (args.cost or args.max_usd is not None) else None
    moved = _inputs_moved(project, todo)
    if args.json:
        rows = decisions if args.all else todo
        print(json.dumps({
            "run": sum(d.action == RUN for d in decisions),
            "restore": sum(d.action == RESTORE for d in decisions),
            "skip": sum(d.action == SKIP for d in decisions),
            "blocked": sum(d.action == BLOCKED for d in decisions),
            "projected_usd": projected,
            "inputs": moved.to_json() if moved is not None else None,
            "warnings": project.warnings,
            "partitions": [decision_row(d) for d in rows],
        }, indent=1))
    else:
        for d in decisions if args.all else todo:
            print(f"{d.action.upper():8} {d.asset}[{d.partition}]  {d.reason}")
        counts = Counter(d.action for d in decisions)
        print(f"plan: {counts[RUN]} to run, " + (f"{counts[RESTORE]} to restore from kept versions, " if counts[RESTORE] else "")
              + f"{counts[SKIP]} up to date, {counts[BLOCKED]} blocked"
              + (f"; projected {format_usd(projected)}" if projected is not None else ""))
        if moved is not None:
            print(_movement_line(moved))
        print_warnings(project.warnings)
    if args.max_usd is not None and projected is not None and projected > args.max_usd:
        print(f"Error: the plan is projected to cost {format_usd(projected)}, above --max-usd {format_usd(args.max_usd)}",
              file=sys.stderr)
        return 3
    return 0


def _inputs_moved(project, todo: list[Decision]):
    """Where the raw inputs of the partitions that would run are, and what reading them would move
    (None when no source is on a remote: every input is on this host)."""
    if not any(project.locality.on_remote(s) for s in project.graph.sources):
        return None
    return project.locality.inputs_of((d.asset, d.partition) for d in todo if d.action == RUN)


def _movement_line(moved) -> str:
    """One paragraph: where the inputs are, bytes per class with their price, cache hits, placement."""
    approx = "~" if moved.estimated else ""
    classes = ", ".join(f"{c} {approx}{n:,} B" for c, n in moved.bytes_by_class.items()) or "nothing"
    lines = [f"inputs: {moved.objects} file(s): {moved.local} in the workspace, {moved.cached} in the input cache, "
             f"{moved.to_fetch} to fetch" + (f" from {', '.join(moved.where)}" if moved.where else ""),
             f"  bytes moved: {classes}; egress and requests {approx}{format_usd(moved.usd)}"
             + (" (sizes not yet fetched are DVC's mean file size)" if moved.estimated else "")]
    if moved.region:
        lines.append(f"  placement: region {moved.region} holds most of the stale partitions' input bytes")
    return "\n".join(lines)


def _projected_usd(project, todo: list[Decision]) -> float:
    """Dollars the plan would cost: each asset's recent median cost per partition times its partitions."""
    return project.projection(Counter(d.asset for d in todo if d.action == RUN)).total_usd


def cmd_status(args) -> int:
    project = _project(args)
    decisions = project.plan(_select(args.select))
    rows = []
    for d in decisions:
        if d.action == SKIP:
            state = "up to date"
        elif d.reason == "missing":
            state = "missing"
        elif d.action == BLOCKED:
            state = "blocked"
        else:
            state = "stale"
        rows.append({**decision_row(d), "state": state})
    explained = explain_code(project, [a for a in project.graph.order() if not args.select or a.name in _select(args.select)]) if args.explain else None
    if args.json:
        out = {"partitions": rows, "warnings": project.warnings}
        if explained is not None:
            out["code"] = explained
        print(json.dumps(out, indent=1))
        return 0
    by_asset: dict[str, Counter] = {}
    for r in rows:
        by_asset.setdefault(r["asset"], Counter())[r["state"]] += 1
    for asset, c in by_asset.items():
        print(f"{asset:20} " + ", ".join(f"{n} {s}" for s, n in sorted(c.items())))
    todo = rows if args.all else [r for r in rows if r["state"] != "up to date"]
    limit = len(todo) if args.all else args.limit
    for r in todo[:limit]:
        print(f"  {r['state']:10} {r['asset']}[{r['partition']}]  {r['reason']}")
    if len(todo) > limit:
        print(f"  ... and {len(todo) - limit} more (--limit N, --all, or --json)")
    for name, e in (explained or {}).items():
        print(f"{name}: code version {e['code_version'][:12]} from {len(e['files'])} source file(s), "
              f"{len(e['parts'])} part(s); third-party: {', '.join(e['third_party']) or 'none'}")
        for f in e["files"]:
            print(f"    file  {f}")
        for note in e["notes"]:
            print(f"    safe  {note}")
    print_warnings(project.warnings)
    return 0


def explain_code(project, assets) -> dict:
    """What each asset's code version is made of: files, third-party versions, and every place the
    analysis could not be precise and so counted more (a change there recomputes; never the reverse)."""
    out = {}
    for a in assets:
        cv = project.code_of(a)
        third = sorted({v for _, v in cv.parts if "==" in v})
        out[a.name] = {
            "code_version": cv.digest,
            "files": [rel for rel, _ in cv.files],
            "third_party": third,
            "notes": list(cv.notes),
            "parts": [k for k, _ in cv.parts],
        }
    return out


def cmd_materialize(args) -> int:
    tag_hint = 'e.g. --tags \'{"team": "ml"}\''
    try:
        tags = json.loads(args.tags) if args.tags else {}
    except ValueError as exc:
        raise UsageError(f"--tags is not JSON: {exc}", hint=tag_hint) from None
    if not isinstance(tags, dict):
        raise UsageError(f"--tags must be a JSON object of tag -> value, got {type(tags).__name__}", hint=tag_hint)
    if args.partition is not None:
        parse_range(args.partition)  # before anything loads (Dagster included)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be 1 or more, got {args.workers}", hint="--workers 1 runs everything in this process")
    project = _project(args)  # params, config and graph are checked here, before Dagster loads
    from skipwise.adapters.dagster.run import materialize_project

    if os.environ.get("DVC_EXP_NAME") and "skipwise/experiment" not in tags:
        tags["skipwise/experiment"] = os.environ["DVC_EXP_NAME"]  # `dvc exp run` names the experiment
    t0 = time.perf_counter()
    try:
        summary = materialize_project(project, _select(args.select), args.partition, tags, workers=args.workers)
    finally:
        print_warnings(project.warnings)
    print(summary.render(time.perf_counter() - t0))
    if not summary.ok:
        print(f"Error: {summary.failure_line()}", file=sys.stderr)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
