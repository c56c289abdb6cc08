"""The `skipwise` command: init, plan, status, materialize, verify, cost, models. A thin layer over the library.

`plan` and `status` read manifests and DVC's files only: no data, no Dagster instance, no Dagster import;
neither does a `materialize` that finds nothing to run.
What every subcommand shares (exit codes, `Error:` lines, --json, the project root) is in
`skipwise.cli.console`.
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

from skipwise.cli import console
from skipwise.cli.cache import add_cache_parser
from skipwise.cli.console import EXIT_CHECK, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_json_flag, print_json
from skipwise.cli.cost import add_cost_parser
from skipwise.cli.gc import add_gc_parser
from skipwise.cli.init import add_init_parser
from skipwise.cli.server import serve
from skipwise.cli.models import add_models_parser
from skipwise.cli.verify import add_verify_parser
from skipwise.core import metakeys as mk
from skipwise.core.cost import utc_now_iso
from skipwise.core.errors import SkipwiseError, UsageError
from skipwise.core.partitions import parse_range
from skipwise.core.plan import BLOCKED, RESTORE, RUN, SKIP, Decision
from skipwise.core.spec import Graph
from skipwise.core.units import format_usd, significant, total_usd
from skipwise.engine.materialization import plan_materialization, record_up_to_date
from skipwise.engine.collector import defer_collection, end_deferral, resume_collection
from skipwise.engine.project import Project
from skipwise.project.root import definitions_of
from skipwise.reporting.tables import format_table, status_table


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `skipwise` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    # The engine logs each warning as it collects it; the command prints the collected list once
    # (without a handler, logging's last resort would print every warning a second time).
    logger = logging.getLogger("skipwise")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    # The command imports what it needs (Dagster, the definitions) as it goes: no collection until
    # it has (`skipwise.engine.collector.defer_collection`; `resume_collection()` once it has).
    deferred = defer_collection()
    try:
        return console.run_command(args.func, args)
    finally:
        end_deferral(deferred)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skipwise",
        description="Incremental, cost-aware Dagster pipelines over DVC data.",
        epilog=console.EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--root",
        default=None,
        help="project root (default: $SKIPWISE_ROOT, else the nearest folder up from "
        "here holding skipwise.toml, params.yaml, dvc.yaml or a pyproject.toml with [tool.skipwise])",
    )
    p.add_argument(
        "--defs",
        default=None,
        help="the module holding the project's dg.Definitions (default: "
        "[tool.skipwise] definitions in pyproject.toml, or skipwise.toml)",
    )
    sub = p.add_subparsers(dest="command")

    add_init_parser(sub)

    plan = sub.add_parser("plan", help="which partitions would run and why (reads no data)")
    plan.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    plan.add_argument("--partition", default=None, help="one partition key, or a range a...b")
    add_json_flag(plan)
    plan.add_argument("--all", action="store_true", help="list skipped partitions too")
    plan.add_argument(
        "--max-usd", type=float, default=None, help="exit 3 if the projected cost is above this (a CI gate)"
    )
    plan.add_argument("--cost", action="store_true", help="project the cost of the plan from the ledger's history")
    plan.set_defaults(func=cmd_plan)

    status = sub.add_parser("status", help="every partition: up to date / stale (why) / missing")
    status.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    status.add_argument("--partition", default=None, help="one partition key, or a range a...b (default: all)")
    add_json_flag(status)
    status.add_argument(
        "--check",
        action="store_true",
        help=f"exit {EXIT_CHECK} when any partition is stale, missing or blocked (a CI gate)",
    )
    status.add_argument("--limit", type=int, default=20, help="list at most this many not-up-to-date partitions")
    status.add_argument("--all", action="store_true", help="list every partition, up-to-date ones included")
    status.add_argument(
        "--explain",
        action="store_true",
        help="also say what each asset's code version is made of: code followed, counted whole, by version, "
        "observed at run, and what it does not cover",
    )
    status.set_defaults(func=cmd_status)

    mat = sub.add_parser("materialize", help="materialize assets through Dagster, computing only what changed")
    mat.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    mat.add_argument("--partition", default=None, help="one partition key, or a range a...b (default: all)")
    mat.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes per level (default: $SKIPWISE_WORKERS, else one per CPU for levels of 100+ stale "
        "partitions per process; 1: all in this process)",
    )
    mat.add_argument("--tags", default=None, help='run tags as JSON, e.g. \'{"skipwise/experiment": "e1"}\'')
    mat.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    mat.add_argument(
        "--metrics",
        default=None,
        metavar="PATH",
        help="write a JSON metrics file for `dvc metrics`: what this command cost (from the ledger) "
        "and the metrics of the unpartitioned assets it selected",
    )
    mat.set_defaults(func=cmd_materialize)

    add_cost_parser(sub)
    add_gc_parser(sub)

    add_models_parser(sub)

    add_cache_parser(sub)

    add_verify_parser(sub)

    ui = sub.add_parser(
        "ui",
        help="Dagster's webserver and daemon, with cost plotted by partition for partitions in the past",
        description="Runs dagster-webserver (and dagster-daemon) over the project's workspace. Dagster 1.13 "
        "lists an asset's newest partitions from today, not from the partitioning's end_date, so the asset "
        "page's plots by partition are empty for data that ends in the past; this webserver lists them from the end.",
    )
    ui.add_argument(
        "-w",
        "--workspace",
        default=None,
        help="workspace.yaml (default: the project's, if it has one; else [tool.dagster] in pyproject.toml)",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    ui.add_argument("-p", "--port", type=int, default=3000, help="port (default: 3000)")
    ui.add_argument(
        "--no-daemon", action="store_true", help="run the webserver alone (no sensors, schedules or backfills)"
    )
    ui.set_defaults(func=cmd_ui)

    serve = sub.add_parser(
        "serve",
        help="keep the libraries imported, so that each `skipwise` command (each `dvc repro` stage) starts at once",
        description="Imports Dagster, its storage, polars and skipwise once; while it runs, every `skipwise` "
        "command of this environment is run in a fresh fork of it (its own arguments, folder, environment and "
        "terminal), never with a project's code imported beforehand. It exits when idle, when a library file "
        "changes, or on Ctrl-C. SKIPWISE_SERVER=off makes a command run in its own process anyway.",
    )
    serve.add_argument(
        "--idle-minutes", type=float, default=30.0, help="exit after this long without a command (default: 30)"
    )
    serve.set_defaults(func=cmd_serve)
    return p


def cmd_serve(args) -> int:
    # The collector back on: the server collects and freezes what it imports itself, and each
    # command it serves defers collection in its own fork, as a command does.
    resume_collection()
    try:
        root = console.project_root(args.root)
    except SkipwiseError:
        root = None  # serving any project; its own start is then recorded nowhere

    def record_start() -> None:
        """The server's start (its imports) as one run record in the ledger of the project it
        was started in: work the machine did for the commands it will serve."""
        if root is not None:
            project = Project(root, Graph(sources=(), assets=()))
            project.accounts.record_run(f"skipwise-serve-{os.getpid()}", {"skipwise/process": "serve"})

    return serve(args.idle_minutes, main, record_start)


def cmd_ui(args) -> int:
    root = console.project_root(args.root)
    workspace = (
        Path(args.workspace).resolve()
        if args.workspace
        else (root / "workspace.yaml" if (root / "workspace.yaml").is_file() else None)
    )
    if workspace is not None and not workspace.is_file():
        raise UsageError(f"--workspace {workspace} is not a file", hint="name the workspace.yaml, or leave -w out")
    os.environ.setdefault("DAGSTER_HOME", str(root / ".dagster"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    os.chdir(root)  # the workspace's relative working_directory is the project's
    from skipwise.adapters.dagster.ui import run_ui

    return run_ui(workspace, args.host, args.port, not args.no_daemon, [])


def _select(spec: str | None) -> list[str] | None:
    return [s.strip() for s in spec.split(",") if s.strip()] if spec else None


def decision_row(d: Decision) -> dict:
    return {
        "asset": d.asset,
        "partition": d.partition,
        "action": d.action,
        "reason": d.reason,
        "fingerprint": d.fingerprint,
    }


def plan_all(project, selection: list[str] | None, partition: str | None) -> list[Decision]:
    """Decisions for the selected assets (default: all of the definitions): skipwise assets from
    their manifests, then plain Dagster assets from Dagster's own records (the Dagster instance is
    read only when the selection has plain assets)."""
    graph = project.graph
    citizens = [p.name for p in graph.citizens()]
    plain = [n for n in citizens if selection is None or n in selection]
    own = None if selection is None else [n for n in selection if n not in citizens]
    decisions = project.plan(own, partition=partition) if own is None or own else []
    if plain:
        # Dagster's instance says whether a plain asset is materialized and stale: imported only here.
        from skipwise.adapters.dagster.graph import definitions_in
        from skipwise.adapters.dagster.plain import plain_decisions

        defs = definitions_in(project.definitions or definitions_of(project.root))
        decisions += plain_decisions(project, defs, plain, partition, planned=decisions)
    return decisions


def cmd_plan(args) -> int:
    if args.max_usd is not None and not (math.isfinite(args.max_usd) and args.max_usd >= 0):
        raise UsageError(f"--max-usd {args.max_usd} is not a non-negative number of dollars", hint="e.g. --max-usd 5")
    if args.partition is not None:
        parse_range(args.partition)  # a malformed --partition is a usage error before anything loads
    project = console.load(args)
    decisions = plan_all(project, _select(args.select), args.partition)
    todo = [d for d in decisions if d.action != SKIP]
    projected = _projected_usd(project, todo) if (args.cost or args.max_usd is not None) else None
    moved = _inputs_moved(project, todo)
    if args.json:
        rows = decisions if args.all else todo
        print_json(
            {
                "run": sum(d.action == RUN for d in decisions),
                "restore": sum(d.action == RESTORE for d in decisions),
                "skip": sum(d.action == SKIP for d in decisions),
                "blocked": sum(d.action == BLOCKED for d in decisions),
                "projected_usd": projected,
                "inputs": moved.to_json() if moved is not None else None,
                "warnings": project.warnings,
                "partitions": [decision_row(d) for d in rows],
            }
        )
    else:
        for d in decisions if args.all else todo:
            print(f"{d.action.upper():8} {d.asset}[{d.partition}]  {d.reason}")
        counts = Counter(d.action for d in decisions)
        print(
            f"plan: {counts[RUN]} to run, "
            + (f"{counts[RESTORE]} to restore from kept versions, " if counts[RESTORE] else "")
            + f"{counts[SKIP]} up to date, {counts[BLOCKED]} blocked"
            + (f"; projected {format_usd(projected)}" if projected is not None else "")
        )
        if moved is not None:
            print(_movement_line(moved))
        console.print_warnings(project.warnings)
    if args.max_usd is not None and projected is not None and projected > args.max_usd:
        print(
            f"Error: the plan is projected to cost {format_usd(projected)}, above --max-usd {format_usd(args.max_usd)}",
            file=sys.stderr,
        )
        return EXIT_CHECK
    return EXIT_OK


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
    lines = [
        f"inputs: {moved.objects} file(s): {moved.local} in the workspace, {moved.cached} in the input cache, "
        f"{moved.to_fetch} to fetch" + (f" from {', '.join(moved.where)}" if moved.where else ""),
        f"  bytes moved: {classes}; egress and requests {approx}{format_usd(moved.usd)}"
        + (" (sizes not yet fetched are DVC's mean file size)" if moved.estimated else ""),
    ]
    if moved.region:
        lines.append(f"  placement: region {moved.region} holds most of the stale partitions' input bytes")
    return "\n".join(lines)


def _projected_usd(project, todo: list[Decision]) -> float:
    """Dollars the plan would cost: each asset's recent median cost per partition times its partitions."""
    return project.accounts.projection(Counter(d.asset for d in todo if d.action == RUN)).total_usd


STATES = ("up to date", "stale", "missing", "blocked")


def _state(d: Decision) -> str:
    if d.action == SKIP:
        return "up to date"
    if d.reason.startswith("missing"):
        return "missing"
    return "blocked" if d.action == BLOCKED else "stale"


def cmd_status(args) -> int:
    if args.partition is not None:
        parse_range(args.partition)
    project = console.load(args)
    selected = _select(args.select)
    decisions = plan_all(project, selected, args.partition)
    rows = [{**decision_row(d), "state": _state(d)} for d in decisions]
    explained = None
    if args.explain:
        assets = [a for a in project.graph.order() if not selected or a.name in selected]
        explained = explain_code(project, assets, observed={a.name: _observed_by(project, a) for a in assets})

    table = status_table(rows, project.ledger.rows())
    not_current = [r for r in rows if r["state"] != "up to date"]
    if args.json:
        out = {"up_to_date": not not_current, "assets": table, "partitions": rows, "warnings": project.warnings}
        if explained is not None:
            out["code"] = explained
        print_json(out)
    else:
        _print_status(args, table, rows, not_current, explained)
        console.print_warnings(project.warnings)
    if args.check and not_current:
        if not args.json:
            print(f"Error: {len(not_current)} partition(s) not up to date (status --check)", file=sys.stderr)
        return EXIT_CHECK
    return EXIT_OK


def _print_status(args, table: list[dict], rows: list[dict], not_current: list[dict], explained: dict | None) -> None:
    todo = rows if args.all else not_current
    limit = len(todo) if args.all else args.limit
    for r in todo[:limit]:
        print(f"  {r['state']:10} {r['asset']}[{r['partition']}]  {r['reason']}")
    if len(todo) > limit:
        print(f"  ... and {len(todo) - limit} more (--limit N, --all, or --json)")
    if todo:
        print()
    print(format_table(table))
    print("(computed, skipped, usd, usd_avoided: all runs in the cost ledger; `skipwise cost` for more)")
    for name, e in (explained or {}).items():
        print(
            f"{name}: code version {e['code_version'][:12]} from {len(e['files'])} source file(s), {len(e['parts'])} part(s)"
        )
        for key, label in _CODE_SECTIONS:
            for entry in e[key]:
                print(f"    {label:15} {entry}")
        if e["orchestration"]:
            print(f"    {'orchestration':15} {', '.join(e['orchestration'])} (counts nothing)")


#: The sections of an asset's code explanation, in the order they are printed.
_CODE_SECTIONS = (
    ("followed", "followed"),
    ("counted_whole", "counted whole"),
    ("by_version", "by version"),
    ("observed_at_run", "observed at run"),
    ("not_covered", "not covered"),
)

#: What code versions cannot see, by what code refers to (a trailing * matches a family of
#: functions): what a subprocess reads, and what comes over the network.
_UNSEEN = (
    ("subprocess", "a subprocess"),
    ("os.system", "a subprocess"),
    ("os.popen", "a subprocess"),
    ("os.spawn*", "a subprocess"),
    ("os.exec*", "a subprocess"),
    ("multiprocessing", "another process"),
    ("socket", "the network"),
    ("urllib.request", "the network"),
    ("http.client", "the network"),
    ("requests", "the network"),
    ("httpx", "the network"),
    ("urllib3", "the network"),
    ("aiohttp", "the network"),
)


def _observed_by(project, asset) -> dict[str, str]:
    """What the committed partitions of `asset` read at run (files, folders, variables), by how
    many partitions read each: "file:tables/lookup.csv" -> "365 partitions"."""
    from collections import Counter

    counts: Counter = Counter()
    for key in project.materialized_keys(asset):
        m = project.manifest(asset, key)
        counts.update((m.observed or {}).keys() if m is not None else ())
    return {name: f"read by {n} partition{'s' if n != 1 else ''}" for name, n in sorted(counts.items())}


def explain_code(project, assets, observed=None) -> dict:
    """What each asset's code version is made of, sorted: source followed (by file), what counts
    whole (dynamic lookups, compiled modules, files beside code), what counts by version (installed
    distributions, skipwise's parts by scheme number), what the last run observed (`observed`:
    asset -> {dependency: digest}, when the caller has it) and what the analysis cannot see."""
    out = {}
    for a in assets:
        cv = project.code.of(a)
        versions = sorted({v for _, value in cv.parts for v in value.split(",") if "==" in v})
        schemes = sorted(
            {v.removeprefix("scheme:") for _, value in cv.parts for v in value.split(",") if v.startswith("scheme:")}
        )
        out[a.name] = {
            "code_version": cv.digest,
            "files": [rel for rel, _ in cv.files],
            "third_party": versions,
            "notes": list(cv.notes),
            "parts": [k for k, _ in cv.parts],
            "resources": [rel for rel, _ in cv.resources],
            "followed": [rel for rel, _ in cv.files if rel.endswith(".py")],
            "counted_whole": [
                *cv.notes,
                *(f"{rel}: a file beside the code — its bytes count" for rel, _ in cv.resources),
            ],
            "by_version": [v for v in versions if not v.endswith("==unknown")]
            + [f"skipwise {name}: scheme {number}" for name, _, number in (s.partition("/") for s in schemes)],
            "observed_at_run": [
                f"{dep} ({what})" for dep, what in sorted(((observed or {}).get(a.name) or {}).items())
            ],
            "not_covered": _not_covered(cv.parts),
            "orchestration": sorted({k.partition(":")[0].split(".")[0] for k, v in cv.parts if v == "orchestration"}),
        }
    return out


def _not_covered(parts) -> list[str]:
    """What code reaches that its version cannot see: modules no file or distribution provides,
    subprocesses and the network (what they read is declared with `files=` / `env=`)."""
    out = set()
    for key, value in parts:
        module, _, name = key.partition(":")
        if any(v.endswith("==unknown") for v in value.split(",")):
            out.add(f"{module}: no installed distribution or source file provides it — edits of it are not seen")
        if name.startswith(("<", "__module__")):
            continue  # imported, not called
        dotted = f"{module}.{name}"
        for pattern, what in _UNSEEN:
            if dotted.startswith(pattern[:-1]) if pattern.endswith("*") else (dotted + ".").startswith(pattern + "."):
                out.add(
                    f"{dotted}: what {what} reads is not seen — declare it (files=, env=) or check with `skipwise verify`"
                )
                break
    return sorted(out)


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
        raise UsageError(
            f"--workers must be 1 or more, got {args.workers}", hint="--workers 1 runs everything in this process"
        )
    project = console.load(args)  # params, config and graph are checked here, before Dagster loads
    if os.environ.get("DVC_EXP_NAME") and mk.EXPERIMENT not in tags:
        tags[mk.EXPERIMENT] = os.environ["DVC_EXP_NAME"]  # `dvc exp run` names the experiment
    t0 = time.perf_counter()
    started = utc_now_iso()
    try:
        planned = plan_materialization(project, _select(args.select), args.partition, tags)
        if planned.up_to_date:
            # Nothing to run: neither Dagster nor the definitions are imported (a `dvc repro` stage
            # with nothing stale ends in about an interpreter's start).
            summary = record_up_to_date(project, planned, args.partition, tags)
        else:
            from skipwise.adapters.dagster.run import materialize_project

            summary = materialize_project(
                project, _select(args.select), args.partition, tags, workers=args.workers, planned=planned
            )
    finally:
        console.print_warnings(project.warnings)
    seconds = time.perf_counter() - t0
    rows = project.ledger.rows_written_since(started)  # the files written since it started, not the whole day's
    spent = stage_cost(rows, started)
    # What the hits avoided, as printed: unknown ("-") when none of them had a measured cost.
    avoided = total_usd(
        r.get("usd_avoided") for r in rows if r.get("cache") == "hit" and (r.get("ts") or "") >= started
    )
    if args.metrics:
        write_stage_metrics(Path(args.metrics), spent, summary.metrics, _select(args.select))
    if args.json:
        print_json(
            {
                "ok": summary.ok,
                "seconds": seconds,
                "requested": summary.requested,
                "computed": summary.computed,
                "cost": spent,
                "metrics": summary.metrics,
                "run_ids": summary.run_ids,
                "error": summary.failure_line() or None,
                "warnings": project.warnings,
            }
        )
    else:
        print(summary.render(seconds))
        print(
            f"  spent {format_usd(spent['usd'])}, avoided {format_usd(avoided)} "
            f"({spent['skipped']} partition(s) skipped)"
        )
    if not summary.ok:
        print(f"Error: {summary.failure_line()}", file=sys.stderr)
    return EXIT_OK if summary.ok else EXIT_FAILURE


def stage_cost(rows: list[dict], since_ts: str) -> dict:
    """What one command cost: the ledger records written since `since_ts` (an ISO UTC time), its
    partitions computed and skipped, dollars spent (overhead included) and avoided, CPU seconds."""
    mine = [r for r in rows if (r.get("ts") or "") >= since_ts]

    def total(field: str, cache: tuple[str, ...] = ("hit", "miss", "run")) -> float:
        return sum(r.get(field) or 0.0 for r in mine if r.get("cache") in cache)

    usd, avoided = total("usd"), total("usd_avoided", ("hit",))
    # Micro-dollars too: `dvc metrics show` prints 5 decimals, so a stage's $0.0000412 reads 4e-05.
    return {
        "computed": sum(r.get("cache") == "miss" for r in mine),
        "skipped": sum(r.get("cache") == "hit" for r in mine),
        "usd": usd,
        "usd_avoided": avoided,
        "micro_usd": significant(usd * 1e6, 4),
        "micro_usd_avoided": significant(avoided * 1e6, 4),
        "overhead_usd": total("usd", ("run",)),
        "cpu_seconds": total("cpu_seconds"),
    }


def write_stage_metrics(path: Path, cost: dict, metrics: dict[str, dict], selected: list[str] | None) -> None:
    """The metrics file of a `dvc.yaml` stage: `cost` (this command's, see `stage_cost`) beside the
    metrics of the unpartitioned assets it selected (flat when one asset has them), so `dvc metrics
    show` and `dvc exp show` list the model's scores and the dollars side by side."""
    mine = {a: m for a, m in metrics.items() if not selected or a in selected}
    out: dict = dict(next(iter(mine.values()))) if len(mine) == 1 else dict(mine)
    out["cost"] = {k: (round(v, 9) if isinstance(v, float) else v) for k, v in cost.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
