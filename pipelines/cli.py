"""The `skipwise` command: plan, status, materialize, cost. A thin layer over the library.

`plan` and `status` read manifests and DVC's files only: no data, no Dagster instance, no Dagster import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from pipelines.core.errors import SkipwiseError
from pipelines.core.plan import BLOCKED, RUN, SKIP, Decision


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `skipwise` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SkipwiseError as exc:
        print(f"Error: {exc.render()}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skipwise", description="Incremental, cost-aware Dagster pipelines over DVC data.")
    p.add_argument("--root", default=None, help="project root (default: $SKIPWISE_ROOT or the folder holding params.yaml)")
    p.add_argument("--graph", default="assets.graph:GRAPH", help="the asset graph, as module:attribute (default: assets.graph:GRAPH)")
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
    status.set_defaults(func=cmd_status)

    mat = sub.add_parser("materialize", help="materialize assets through Dagster, computing only what changed")
    mat.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    mat.add_argument("--partition", default=None, help="one partition key, or a range a...b (default: all)")
    mat.add_argument("--tags", default=None, help='run tags as JSON, e.g. \'{"skipwise/experiment": "e1"}\'')
    mat.set_defaults(func=cmd_materialize)

    from pipelines.cost_cli import add_cost_parser

    add_cost_parser(sub)
    return p


def _project(args):
    from pipelines.engine import load_project

    return load_project(Path(args.root) if args.root else None, args.graph)


def _keys(project, spec: str | None) -> list[str] | None:
    if not spec:
        return None
    first, _, last = spec.partition("...")
    daily = next((a.partitions for a in project.graph.assets if a.partitions is not None), None)
    if daily is None:
        return [first]
    return daily.key_range(first, last or first)


def _select(spec: str | None) -> list[str] | None:
    return [s.strip() for s in spec.split(",") if s.strip()] if spec else None


def decision_row(d: Decision) -> dict:
    return {"asset": d.asset, "partition": d.partition, "action": d.action, "reason": d.reason, "fingerprint": d.fingerprint}


def cmd_plan(args) -> int:
    project = _project(args)
    decisions = project.plan(_select(args.select), _keys(project, args.partition))
    todo = [d for d in decisions if d.action != SKIP]
    projected = _projected_usd(project, todo) if (args.cost or args.max_usd is not None) else None
    if args.json:
        rows = decisions if args.all else todo
        print(json.dumps({
            "run": sum(d.action == RUN for d in decisions),
            "skip": sum(d.action == SKIP for d in decisions),
            "blocked": sum(d.action == BLOCKED for d in decisions),
            "projected_usd": projected,
            "warnings": project.warnings,
            "partitions": [decision_row(d) for d in rows],
        }, indent=1))
    else:
        for d in decisions if args.all else todo:
            print(f"{d.action.upper():8} {d.asset}[{d.partition}]  {d.reason}")
        counts = Counter(d.action for d in decisions)
        print(f"plan: {counts[RUN]} to run, {counts[SKIP]} up to date, {counts[BLOCKED]} blocked"
              + (f"; projected ${projected:.4f}" if projected is not None else ""))
        for w in project.warnings:
            print(f"warning: {w}", file=sys.stderr)
    if args.max_usd is not None and projected is not None and projected > args.max_usd:
        print(f"Error: the plan is projected to cost ${projected:.4f}, above --max-usd {args.max_usd}", file=sys.stderr)
        return 3
    return 0


def _projected_usd(project, todo: list[Decision]) -> float:
    """Dollars the plan would cost: each asset's recent median cost per partition times its partitions."""
    from pipelines.core.budget import project_run_cost

    to_run = Counter(d.asset for d in todo if d.action == RUN)
    history = {a: project.ledger.history_usd_per_partition(a) for a in to_run}
    return project_run_cost(history, dict(to_run), project.config.default_partition_usd_estimate).total_usd


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
    if args.json:
        print(json.dumps({"partitions": rows, "warnings": project.warnings}, indent=1))
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
    for w in project.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_materialize(args) -> int:
    from pipelines.adapters.dagster.run import materialize_project

    project = _project(args)
    try:
        tags = json.loads(args.tags) if args.tags else {}
    except ValueError as exc:
        raise SkipwiseError(f"--tags is not JSON: {exc}", hint='e.g. --tags \'{"team": "ml"}\'') from None
    if os.environ.get("DVC_EXP_NAME") and "skipwise/experiment" not in tags:
        tags["skipwise/experiment"] = os.environ["DVC_EXP_NAME"]  # `dvc exp run` names the experiment
    t0 = time.perf_counter()
    summary = materialize_project(project, _select(args.select), args.partition, tags)
    print(summary.render(time.perf_counter() - t0))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
