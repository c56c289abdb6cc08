"""`skipwise models`: every version of each model asset, which one is promoted and why."""

from __future__ import annotations

import argparse
from pathlib import Path

from skipwise.cli.console import add_json_flag, print_json
from skipwise.core.units import format_usd
from skipwise.engine.loading import load_project
from skipwise.models.registry import list_models


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="model versions: metrics, training cost, which one is promoted and why")
    p.add_argument("--select", default=None, help="comma-separated model assets (default: every one with versions)")
    add_json_flag(p)
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    project = load_project(Path(args.root) if args.root else None, args.defs)
    wanted = {s.strip() for s in args.select.split(",")} if args.select else None
    models = [m for m in list_models(project) if wanted is None or m["asset"] in wanted]
    if args.json:
        print_json({"models": models})
        return 0
    if not models:
        print("no model versions yet (a model asset keeps them when its body calls sw.train_or_restore)")
        return 0
    for m in models:
        restores = [e for e in m["events"] if e["action"] == "restored"]
        avoided = sum(e.get("usd_avoided") or 0.0 for e in restores)
        print(
            f"{m['asset']}: {len(m['versions'])} version(s), promoted {m['promoted']}; "
            f"{len(restores)} restore(s) avoided {format_usd(avoided)} ({m['registry']})"
        )
        for v in m["versions"]:
            mark = "*" if v["version"] == m["promoted"] else " "
            value = v["metric_value"]
            shown = f"{value:.4f}" if value is not None else "n/a"
            usd = (v.get("cost") or {}).get("usd")
            rows = sum(r or 0 for parts in v.get("trained_on", {}).values() for _, r in parts.values())
            print(
                f" {mark} {v['version']}  {v['created_at'][:19]}  {v['metric']} {shown}  "
                f"train {format_usd(usd) if usd is not None else 'n/a'} on {v.get('device') or '?'}  "
                f"{rows} training rows  {v.get('promotion', '')}"
            )
    return 0
