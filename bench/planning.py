"""Planning costs: `skipwise plan` as a command (with a valid graph snapshot, with it invalidated, and the
bare import of the definitions beside them), a no-op `dvc status`, and `Project.plan()` at 10,000
partitions of a daily asset and of an hourly one with a 24-hour window.

The synthetic planning project is a real project in the Dagster-native style (`@sw.asset`
definitions named in its pyproject.toml), but its data is written directly, without running
anything: tiny raw files, DVC's own records of them (the `.dvc` file and the `.dir` manifest in
DVC's cache, in DVC's format), and one committed manifest per derived partition in the engine's
layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bench.report import Cell
from bench.workspace import BIN, Workspace

SYNTH_PACKAGE = "synthplan"
SYNTH_START = datetime(1990, 1, 1)
#: the hourly asset reads the 24 hours ending with its own (TimeWindowPartitionMapping(start_offset=-23))
HOURLY_WINDOW = 24

SYNTH_DEFS = '''"""The synthetic planning project: {n} daily and {n} hourly raw files (DVC), one asset on each.

Never materialized by the benchmark: its outputs and manifests are written directly, and plans read no data.
"""

import dagster as dg
import polars as pl

import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="{daily_start}", end_date="{daily_end}")
HOURLY = dg.HourlyPartitionsDefinition(start_date="{hourly_start}", end_date="{hourly_end}")

raw_days = sw.dvc_source("raw_days", "data/raw/days", partitions_def=DAILY)
raw_hours = sw.dvc_source("raw_hours", "data/raw/hours", partitions_def=HOURLY)


@sw.asset(partitions_def=DAILY, group_name="synthetic")
def days(raw_days: pl.DataFrame) -> pl.DataFrame:
    """Partition k of days is raw_days[k]."""
    return raw_days


@sw.asset(partitions_def=HOURLY, group_name="synthetic",
          ins={{"raw_hours": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-{lookback}))}})
def hours(raw_hours: pl.DataFrame) -> pl.DataFrame:
    """Each hour reads the {window} hours ending with it."""
    return raw_hours


defs = dg.Definitions(assets=[raw_days, raw_hours, days, hours], resources={{"skipwise": sw.IOManager()}})
'''


# -- the demo, as commands --------------------------------------------------------------------------


@dataclass(frozen=True)
class CliPlan:
    """`skipwise plan` timings on the demo, and what the plan said."""

    valid: Cell  # the graph snapshot valid (nothing changed since the last command)
    invalidated: Cell  # the definitions file touched before each run: the plan imports them
    bare_import: Cell  # `python -c "import <definitions>"` alone
    counts: dict[str, int]  # run / skip / blocked of the last plan
    snapshot_rebuilt: bool  # every invalidated run rewrote the snapshot (and every valid one did not)


def _timed_command(cmd: list[str], ws: Workspace, what: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ws.root, env=ws.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}): {p.stderr[-2000:]}")
    return seconds, p.stdout


def _snapshot_stamp(ws: Workspace) -> int | None:
    from skipwise.project.snapshot import path_of

    try:
        return path_of(ws.root).stat().st_mtime_ns
    except OSError:
        return None


def cli_plan(ws: Workspace, repeats: int) -> CliPlan:
    """`skipwise --root <root> plan --json` (interpreter start included) over the whole demo, nothing
    changed: with the graph snapshot valid, then with the definitions file touched before each run
    (the snapshot no longer matches: the command imports the definitions, and Dagster, and writes a
    new one); beside them `python -c "import <definitions>"`, the import alone.

    Runs are interleaved (valid, invalidated, import), so drift in machine load hits all three alike.
    """
    plan_cmd = [str(BIN / "skipwise"), "--root", str(ws.root), "plan", "--json"]
    import_cmd = [sys.executable, "-c", f"import {ws.defs}"]
    _timed_command(plan_cmd, ws, "skipwise plan")  # writes the snapshot if the last run did not
    valid, invalidated, bare = Cell(), Cell(), Cell()
    rebuilt_ok = True
    out = ""
    for _ in range(repeats):
        before = _snapshot_stamp(ws)
        seconds, out = _timed_command(plan_cmd, ws, "skipwise plan")
        valid.add(seconds)
        rebuilt_ok = rebuilt_ok and before is not None and _snapshot_stamp(ws) == before
        os.utime(ws.definitions_file)  # mtime and ctime change: the snapshot is stale
        before = _snapshot_stamp(ws)
        seconds, _ = _timed_command(plan_cmd, ws, "skipwise plan (snapshot invalidated)")
        invalidated.add(seconds)
        rebuilt_ok = rebuilt_ok and _snapshot_stamp(ws) != before
        seconds, _ = _timed_command(import_cmd, ws, f"import {ws.defs}")
        bare.add(seconds)
    data = json.loads(out)
    counts = {k: int(data[k]) for k in ("run", "skip", "blocked")}
    return CliPlan(valid, invalidated, bare, counts, rebuilt_ok)


def dvc_status(ws: Workspace, repeats: int) -> tuple[Cell, str]:
    """A no-op `dvc status` (every stage up to date) in the same repository; returns its output too."""
    cell, out = Cell(), ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = ws.dvc("status").stdout.strip()
        cell.add(time.perf_counter() - t0)
    return cell, out


# -- Project.plan() at 10,000 partitions -------------------------------------------------------------


@dataclass(frozen=True)
class NoopMaterialize:
    """What `skipwise materialize` of the asset does when its plan is up to date (no Dagster run):
    the plan, then a hit record in the cost ledger for every partition (`record_up_to_date`)."""

    seconds: float
    cpu_seconds: float
    plan_seconds: float
    hits: int
    ledger_bytes: int


@dataclass(frozen=True)
class SynthPlan:
    """`Project.plan()` of one synthetic asset: warm timings and what it read."""

    asset: str
    partitions: int
    inputs_per_partition: int
    cold_plan_seconds: float  # the first plan: it hashes each output once and fills the stat cache
    plan: Cell
    all_skipped: bool
    bytes_read: int
    hashed_bytes: int
    full_plan: Cell  # the same plan without the remembered record (engine/settled.py): every partition decided
    changed_plan: Cell  # after one raw file changed and DVC's record of it updated (as `dvc add` does)
    changed_runs: int  # partitions that plan said run (those whose inputs hold the changed file)
    noop_materialize: NoopMaterialize

    @property
    def ms_per_partition(self) -> float:
        return 1000 * self.plan.median / self.partitions

    @property
    def ms_per_partition_min(self) -> float:
        return 1000 * self.plan.min / self.partitions


@dataclass(frozen=True)
class SynthResult:
    setup_seconds: float
    daily: SynthPlan
    hourly: SynthPlan


def _write_dvc_records(root: Path, rel: str, files: dict[str, bytes]) -> None:
    """DVC's record of a tracked directory, as `dvc add` writes it: <rel>.dvc and the .dir manifest."""
    entries = [{"md5": hashlib.md5(data).hexdigest(), "relpath": name} for name, data in sorted(files.items())]
    manifest = json.dumps(entries, sort_keys=True).encode()
    h = hashlib.md5(manifest).hexdigest()
    cache = root / ".dvc" / "cache" / "files" / "md5" / h[:2] / f"{h[2:]}.dir"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(manifest)
    size = sum(len(d) for d in files.values())
    name = Path(rel).name
    (root / f"{rel}.dvc").write_text(
        f"outs:\n- md5: {h}.dir\n  size: {size}\n  nfiles: {len(files)}\n  hash: md5\n  path: {name}\n"
    )


def write_synthetic_project(base: Path, n: int) -> Path:
    """The synthetic project's code and config (no data yet) under `base`/synthetic."""
    root = base / "synthetic"
    (root / SYNTH_PACKAGE).mkdir(parents=True)
    (root / SYNTH_PACKAGE / "__init__.py").write_text("")
    fmt_hour = "%Y-%m-%d-%H:%M"
    (root / SYNTH_PACKAGE / "definitions.py").write_text(
        SYNTH_DEFS.format(
            n=n,
            daily_start=SYNTH_START.date().isoformat(),
            daily_end=(SYNTH_START + timedelta(days=n)).date().isoformat(),
            hourly_start=SYNTH_START.strftime(fmt_hour),
            hourly_end=(SYNTH_START + timedelta(hours=n)).strftime(fmt_hour),
            lookback=HOURLY_WINDOW - 1,
            window=HOURLY_WINDOW,
        )
    )
    (root / "pyproject.toml").write_text(f'[tool.skipwise]\ndefinitions = "{SYNTH_PACKAGE}.definitions"\n')
    (root / "params.yaml").write_text("{}\n")
    return root


def _write_data(root: Path, project) -> None:
    """Raw files with DVC's records, then one up-to-date committed partition per key of each asset."""
    graph = project.graph
    for source in graph.sources:
        raw_dir = root / source.path
        raw_dir.mkdir(parents=True)
        files = {source.file_for(k): f"{source.name} {k}\n".encode() for k in source.partitions.keys()}
        for name, data in files.items():
            (raw_dir / name).write_bytes(data)
        _write_dvc_records(root, source.path, files)
    # The engine's layout (data/<layer>/<asset>/<key>/<fingerprint>.<ext> + manifest.json), written
    # without the engine's fsyncs: 40,000 fsynced files would make the set-up the slowest part.
    for asset in graph.assets:
        for key in asset.partitions.keys():
            write_partition(project, asset, key)
    settle()


def settle() -> None:
    """Let files just written be as old as a real input or output is when a plan hashes it: the
    stat cache records no digest of a file changed moments before (`statcache.RACY_NS`)."""
    from skipwise.store import statcache

    time.sleep(statcache.RACY_NS / 1e9)


def write_partition(project, asset, key: str) -> None:
    """Commit `asset`[`key`] as up to date now (its current fingerprint, a small output), in the
    engine's layout, as a run of it would leave it."""
    from skipwise import formats
    from skipwise.core.manifest import Manifest

    ext = formats.get(asset.fmt).ext if asset.fmt else "parquet"
    cur = project.planner.current(asset, key)
    data = f"out {key}\n".encode()
    folder = project.store.partition_dir(asset.layer, asset.name, key)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{cur.fingerprint}.{ext}"
    (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text(
        Manifest(
            asset=asset.name,
            partition=key,
            fingerprint=cur.fingerprint,
            code_version=cur.code_version,
            params_digest=cur.params_digest,
            inputs=cur.inputs,
            output=name,
            output_hash=hashlib.sha256(data).hexdigest(),
            output_size=len(data),
            run_id="bench-synthetic",
            reason="written by bench.planning",
        ).to_json()
    )


def _changed_plan(root: Path, source, plan, repeats: int) -> tuple[Cell, int]:
    """Plans after one raw file of `source` (in the middle) changed and DVC's record of the folder was
    rewritten as `dvc add` would; the file and the record are put back afterwards, and one more plan
    brings the remembered record up to date again."""
    from skipwise.core.plan import RUN

    folder = root / source.path
    names = sorted(p.name for p in folder.iterdir())
    path = folder / names[len(names) // 2]
    original = path.read_bytes()
    cell, runs = Cell(), 0
    try:
        path.write_bytes(original + b"changed\n")
        _write_dvc_records(root, source.path, {n: (folder / n).read_bytes() for n in names})
        for _ in range(repeats):
            seconds, _, decisions = plan()
            cell.add(seconds)
            runs = sum(d.action == RUN for d in decisions)
    finally:
        path.write_bytes(original)
        _write_dvc_records(root, source.path, {n: (folder / n).read_bytes() for n in names})
        plan()
    return cell, runs


def _noop_materialize(root: Path, graph, defs: str, name: str) -> NoopMaterialize:
    """Time what `skipwise materialize --select <name>` does in process when nothing changed: plan,
    then record every partition as a hit (no Dagster run); once, on a fresh Project."""
    from skipwise.engine.materialization import plan_materialization, record_up_to_date
    from skipwise.engine.project import Project

    ledger = root / "data" / "ledger"
    before = {p: p.stat().st_size for p in ledger.rglob("*.jsonl")}
    cpu, t = time.process_time(), time.perf_counter()
    project = Project(root, graph, definitions=defs)
    planned = plan_materialization(project, [name], None, {})
    planned_at = time.perf_counter()
    if not planned.up_to_date:
        raise RuntimeError(f"synthetic {name}: the no-op materialize found work to do")
    record_up_to_date(project, planned, None, {})
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    written = sum(p.stat().st_size - before.get(p, 0) for p in ledger.rglob("*.jsonl"))
    return NoopMaterialize(seconds, cpu, planned_at - t, len(planned.decisions), written)


def synthetic_plan(base: Path, n: int, repeats: int) -> SynthResult:
    """Time `Project.plan()` (fresh Project, warm caches) over n up-to-date partitions of the daily
    asset (one raw file each) and of the hourly asset (24 raw files each), one asset per plan."""
    from skipwise.core.plan import SKIP
    from skipwise.engine.loading import load_project
    from skipwise.engine.project import Project

    t0 = time.perf_counter()
    root = write_synthetic_project(base, n)
    project = load_project(root)  # imports the definitions once (Dagster resolves the keys) and saves the snapshot
    _write_data(root, project)
    setup = time.perf_counter() - t0
    graph, defs = project.graph, project.definitions

    def one_plan(name: str) -> tuple[float, Project, list]:
        p = Project(root, graph, definitions=defs)
        t = time.perf_counter()
        decisions = p.plan([name])
        return time.perf_counter() - t, p, decisions

    results = {}
    for name in ("days", "hours"):
        asset = graph.asset(name)
        keys = len(asset.partitions.keys())
        cold, _, _ = one_plan(name)  # the first plan of these outputs: each is hashed once into the stat cache
        # The full plan, warm: without the record a plan of an up-to-date asset leaves (engine/settled.py).
        record = root / "data" / ".skipwise" / "settled" / asset.layer / f"{name}.json"
        full = Cell()
        for _ in range(max(1, repeats // 3)):
            record.unlink(missing_ok=True)
            full.add(one_plan(name)[0])
        cell = Cell()
        ok, read, hashed = True, 0, 0
        for _ in range(repeats):
            seconds, p, decisions = one_plan(name)
            cell.add(seconds)
            ok = ok and len(decisions) == keys and all(d.action == SKIP for d in decisions)
            read, hashed = max(read, p.io.snapshot().bytes_read), max(hashed, p.statcache.hashed_bytes)
        noop = _noop_materialize(root, graph, defs, name)
        changed, runs = _changed_plan(root, graph.node(asset.deps[0].name), lambda: one_plan(name), repeats)
        width = sum(len(v) for v in project.planner.current(asset, asset.partitions.keys()[-1]).inputs.values())
        results[name] = SynthPlan(name, keys, width, cold, cell, ok, read, hashed, full, changed, runs, noop)
    return SynthResult(setup, results["days"], results["hours"])
