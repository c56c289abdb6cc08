"""The systems, each run once and timed: skipwise through Dagster (in process, and as the
`dagster asset materialize` command), plain Dagster assets, `dvc repro`.

Dagster runs are single-run backfills over the whole range with a real `DagsterInstance` under the
workspace's DAGSTER_HOME; in-process ones (`dagster.materialize`) with the console logger at INFO
as skipwise's own runs use. `dagster asset materialize` and `dvc repro` run as commands, like a
user runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import dagster as dg

from bench.plain_build import (
    RawReader,
    build_partition,
    dagster_partitions,
    load_body,
    load_definitions,
    load_params,
    window_keep,
    write_partition,
)
from bench.workspace import BIN, Workspace, purge_modules

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
WARNINGS: list[str] = []  # oddities seen while measuring, for the report's notes


@dataclass(frozen=True)
class Measured:
    """One timed run: wall seconds, partitions computed, bytes of partition data read."""

    seconds: float
    computed: int
    bytes_read: int
    #: skipwise only, from its ledger: CPU seconds of its run records (the processes' overhead,
    #: `start` excluded: interpreter and imports) and of its computed partitions
    overhead_cpu: float | None = None
    partition_cpu: float | None = None
    #: skipwise only, from its ledger: dollars of its computed partitions and run records, and of
    #: the run records alone (process overhead, interpreter start and imports included)
    usd: float | None = None
    overhead_usd: float | None = None


def _prepare(ws: Workspace) -> None:
    """Fresh imports of the project's code (it may have been edited) and the workspace's Dagster home."""
    purge_modules(ws.package)
    os.environ["DAGSTER_HOME"] = str(ws.dagster_home)


def _range_tags(ws: Workspace) -> dict[str, str]:
    return {RANGE_START: ws.first, RANGE_END: ws.last}


# -- what skipwise did, from its cost ledger ---------------------------------------------------------


def ledger_files(ws: Workspace) -> set[Path]:
    return set((ws.root / "data" / "ledger").glob("*/*.jsonl"))


@dataclass(frozen=True)
class Recorded:
    """What skipwise's ledger files written since some moment say: partitions computed and
    restored, bytes read, run-record CPU (`start` excluded: interpreter and imports), partition
    CPU, dollars spent (partitions and run records) and dollars the restores avoided."""

    computed: int = 0
    bytes_read: int = 0
    overhead_cpu: float = 0.0
    partition_cpu: float = 0.0
    usd: float = 0.0
    overhead_usd: float = 0.0
    restored: int = 0
    restored_usd_avoided: float = 0.0

    def measured(self, seconds: float) -> Measured:
        return Measured(
            seconds, self.computed, self.bytes_read, self.overhead_cpu, self.partition_cpu, self.usd, self.overhead_usd
        )


def ledger_since(ws: Workspace, before: set[Path]) -> Recorded:
    """What skipwise recorded in ledger files written since `before` (see `Recorded`)."""
    n = {
        "computed": 0,
        "bytes_read": 0,
        "overhead_cpu": 0.0,
        "partition_cpu": 0.0,
        "usd": 0.0,
        "overhead_usd": 0.0,
        "restored": 0,
        "restored_usd_avoided": 0.0,
    }
    for path in ledger_files(ws) - before:
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            cache = rec.get("cache")
            if cache == "miss":
                n["computed"] += 1
                n["partition_cpu"] += float(rec.get("cpu_seconds") or 0.0)
            elif cache == "run":
                n["overhead_cpu"] += float(rec.get("cpu_seconds") or 0.0) - float(
                    rec.get("overhead_start_cpu_seconds") or 0.0
                )
            elif cache == "restore":
                n["restored"] += 1
                n["restored_usd_avoided"] += float(rec.get("usd_avoided") or 0.0)
            if cache in ("miss", "run"):
                n["usd"] += float(rec.get("usd") or 0.0)
            if cache == "run":
                n["overhead_usd"] += float(rec.get("usd") or 0.0)
            n["bytes_read"] += int(rec.get("bytes_read") or 0)
    return Recorded(**n)


# -- skipwise ---------------------------------------------------------------------------------------


def _fresh_account() -> None:
    """Start this process's next run record here. A run record counts the process's CPU since its
    previous one, children it waited for included: between two measured runs, this process waits
    for `dvc`, `dagster asset materialize` and the like and does its own bookkeeping, none of
    which belongs to the next run's overhead."""
    from skipwise.engine.processmeter import process_meter

    process_meter().take()


def skipwise_dagster(ws: Workspace) -> Measured:
    """skipwise's `materialize_project` over the whole range (what `skipwise materialize` runs)."""
    from skipwise.adapters.dagster.run import materialize_project
    from skipwise.engine.loading import load_project

    _prepare(ws)
    _fresh_account()
    before = ledger_files(ws)
    t0 = time.perf_counter()
    summary = materialize_project(load_project(ws.root, ws.defs), ws.selection, ws.partition_range, {})
    seconds = time.perf_counter() - t0
    if not summary.ok:
        raise RuntimeError(f"skipwise run failed in {ws.root} (runs {summary.run_ids}); see the benchmark log")
    rec = ledger_since(ws, before)
    if rec.computed != sum(summary.computed.values()):
        WARNINGS.append(
            f"{ws.name}: skipwise's ledger says {rec.computed} partitions computed, its summary {summary.computed}"
        )
    return rec.measured(seconds)


def skipwise_range_run(ws: Workspace) -> Measured:
    """What `dagster asset materialize --partition-range first...last` does with the skipwise assets
    (in-process, no CLI start): one Dagster run over the whole range, whatever is up to date."""
    from skipwise.adapters.dagster.iomanager import IOManager

    _prepare(ws)
    defs, _ = load_definitions(ws.defs)
    resources = dict(defs.resources or {})
    resources.setdefault("skipwise", IOManager(root=str(ws.root)))
    _fresh_account()
    before = ledger_files(ws)
    os.environ["SKIPWISE_ROOT"] = str(ws.root)
    try:
        t0 = time.perf_counter()
        result = dg.materialize(
            list(defs.assets or ()),
            resources=resources,
            selection=[dg.AssetKey(n) for n in ws.selection],
            instance=dg.DagsterInstance.get(),
            tags=_range_tags(ws),
            run_config=RUN_CONFIG,
            raise_on_error=False,
        )
        seconds = time.perf_counter() - t0
    finally:
        os.environ.pop("SKIPWISE_ROOT", None)
    if not result.success:
        raise RuntimeError(f"skipwise range run {result.run_id} failed; see the benchmark log")
    rec = ledger_since(ws, before)
    return rec.measured(seconds)


@dataclass(frozen=True)
class EngineNoop:
    """The engine alone (no Dagster) on an up-to-date project: plan and materialize every partition."""

    plan_seconds: float
    materialize_seconds: float
    decisions: int
    skipped: int
    computed: int
    bytes_read: int
    hashed_bytes: int


def engine_noop(ws: Workspace) -> EngineNoop:
    """Plan, then run `Project.materialize` in-process, counting what was read: all should be skipped."""
    _prepare(ws)
    from skipwise.core.plan import SKIP
    from skipwise.engine.loading import load_project

    project = load_project(ws.root, ws.defs)
    keys = project.graph.asset(ws.selection[0]).partitions.key_range(ws.first, ws.last)
    t0 = time.perf_counter()
    decisions = project.plan(ws.selection, keys)
    t1 = time.perf_counter()
    outcomes = [o for name in ws.selection for o in project.materialize(name, keys, run_id="bench-engine-noop")]
    t2 = time.perf_counter()
    return EngineNoop(
        plan_seconds=t1 - t0,
        materialize_seconds=t2 - t1,
        decisions=len(decisions),
        skipped=sum(d.action == SKIP for d in decisions),
        computed=sum(o.computed for o in outcomes),
        bytes_read=project.io.snapshot().bytes_read,
        hashed_bytes=project.statcache.hashed_bytes,
    )


def dagster_cli(ws: Workspace) -> Measured:
    """`dagster asset materialize -m <definitions> --select <assets> --partition-range first...last`
    as a command in the project, as a user types it: the command loads the definitions in its own
    process and runs each step in a child process (Dagster's multiprocess executor). What skipwise
    did comes from its ledger, written by those children."""
    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", ws.defs]
    cmd += ["--select", ",".join(ws.selection), "--partition-range", ws.partition_range]
    before = ledger_files(ws)
    t0 = time.perf_counter()
    ws.run(cmd)
    seconds = time.perf_counter() - t0
    rec = ledger_since(ws, before)
    return rec.measured(seconds)


# -- plain Dagster ------------------------------------------------------------------------------------


def _plain_asset(ws: Workspace, defs, graph, asset, out: Path, stats: dict) -> object:
    """The same function as a plain partitioned Dagster asset (the project's own partitions): every
    requested partition is recomputed."""
    pdef = dagster_partitions(defs, asset.name)

    @dg.asset(
        name=asset.name,
        key_prefix=["plain"],
        partitions_def=pdef,
        backfill_policy=dg.BackfillPolicy.single_run(),
        output_required=False,
        group_name="plain",
    )
    def _build(context):
        reader = RawReader(window_keep(graph, [asset]))
        body, params = load_body(asset), load_params(ws.root)
        for key in context.partition_keys:
            frame = build_partition(ws.root, graph, asset, key, reader, body, params)
            size = write_partition(frame, out, asset.name, key)
            stats["computed"] += 1
            yield dg.AssetMaterialization(
                asset_key=context.asset_key, partition=key, metadata={"dagster/row_count": frame.height, "bytes": size}
            )
        stats["bytes_read"] += reader.bytes_read

    return _build


def plain_dagster(ws: Workspace) -> Measured:
    """Plain Dagster assets (no skipping) over the whole range as one single-run backfill.

    The clock includes importing the project's definitions (the functions live there), as a
    plain Dagster run includes loading its code location."""
    _prepare(ws)
    t0 = time.perf_counter()
    defs, graph = load_definitions(ws.defs)
    stats = {"computed": 0, "bytes_read": 0}
    out = ws.root / "data" / "plain"
    assets = [_plain_asset(ws, defs, graph, graph.asset(n), out, stats) for n in ws.selection]
    result = dg.materialize(
        assets, instance=dg.DagsterInstance.get(), tags=_range_tags(ws), run_config=RUN_CONFIG, raise_on_error=False
    )
    seconds = time.perf_counter() - t0
    if not result.success:
        raise RuntimeError(f"plain Dagster run {result.run_id} failed; see the benchmark log")
    events = len(result.get_asset_materialization_events())
    if events != stats["computed"]:
        raise RuntimeError(f"plain Dagster: {events} events for {stats['computed']} partitions")
    return Measured(seconds, stats["computed"], stats["bytes_read"])


def _noop_partitioned(name: str, pdef) -> object:
    @dg.asset(
        name=name,
        partitions_def=pdef,
        backfill_policy=dg.BackfillPolicy.single_run(),
        output_required=False,
        group_name="trivial",
    )
    def _nothing(context):
        return
        yield  # a generator that yields nothing

    return _nothing


def dagster_empty(ws: Workspace, partitioned: bool) -> Measured:
    """Dagster's own cost: a run of trivial assets that do nothing.

    Unpartitioned: one asset, the cost of any run. Partitioned: one trivial asset per selected asset,
    same partitions, over the same range as a single-run backfill: the floor of a range run.
    """
    _prepare(ws)
    instance = dg.DagsterInstance.get()
    if partitioned:
        defs, _ = load_definitions(ws.defs)
        assets = [_noop_partitioned(f"trivial_{n}", dagster_partitions(defs, n)) for n in ws.selection]
        tags = _range_tags(ws)
    else:

        @dg.asset(name="trivial_empty", group_name="trivial")
        def _empty():
            return dg.MaterializeResult()

        assets, tags = [_empty], {}
    t0 = time.perf_counter()
    result = dg.materialize(assets, instance=instance, tags=tags, run_config=RUN_CONFIG, raise_on_error=False)
    seconds = time.perf_counter() - t0
    if not result.success:
        raise RuntimeError(f"trivial Dagster run {result.run_id} failed")
    return Measured(seconds, 0, 0)


# -- dvc repro ------------------------------------------------------------------------------------------


def dvc_repro(ws: Workspace, stage: str, force: bool = False, served: bool = False) -> Measured:
    """`dvc repro <stage>` as a command. The plain stage reports what it did in bench_stats/plain.json.
    `served`: the stage's `skipwise` command may go to a running `skipwise serve` (`Served`)."""
    stats = ws.root / "bench_stats" / "plain.json"
    stats.unlink(missing_ok=True)
    before = ledger_files(ws)
    t0 = time.perf_counter()
    ws.dvc("repro", *(["-f"] if force else []), stage, served=served)
    seconds = time.perf_counter() - t0
    if stage == "plain":
        data = json.loads(stats.read_text()) if stats.exists() else {"computed": 0, "bytes_read": 0}
        return Measured(seconds, data["computed"], data["bytes_read"])
    rec = ledger_since(ws, before)
    return rec.measured(seconds)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Served:
    """A `skipwise serve` for the workspace's commands (same interpreter, library copy and sys.path
    as `dvc repro`'s skipwise stage), started and waited for until ready; `stop()` ends it."""

    def __init__(self, ws: Workspace, log: Path) -> None:
        env = ws.env()
        env.pop("SKIPWISE_SERVER")
        self.log = log.with_name("serve.log")
        out = self.log.open("w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skipwise.cli", "--root", ".", "serve", "--idle-minutes", "60"],
            cwd=ws.root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        while "ready" not in self.log.read_text():
            if self.proc.poll() is not None or time.perf_counter() - t0 > 120:
                self.stop()
                raise RuntimeError(f"skipwise serve did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        self.start_seconds = time.perf_counter() - t0

    def served(self) -> int:
        """Commands it ran so far."""
        return sum(": process " in line for line in self.log.read_text().splitlines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
