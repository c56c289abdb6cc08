"""Planning costs: `skipwise plan` as a command, a no-op `dvc status`, and `Project.plan()` at 10,000 partitions.

The synthetic 10,000-partition project is written directly, without running anything: tiny raw
files, DVC's own records of them (the `.dvc` file and the `.dir` manifest in DVC's cache, in DVC's
format), and one committed manifest per derived partition in the engine's layout.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bench.report import Cell
from bench.workspace import BIN, DVC, Workspace

SYNTH_BODY = '''"""The synthetic planning project's body: never called by the benchmark (plans read no data)."""


def passthrough(ctx, raw_ticks):
    """Partition k of ticks is raw_ticks[k]."""
    return raw_ticks
'''


def cli_plan(ws: Workspace, repeats: int) -> Cell:
    """`skipwise --root <root> plan --json > /dev/null`, interpreter start included."""
    cell = Cell()
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.run([str(BIN / "skipwise"), "--root", str(ws.root), "plan", "--json"], cwd=ws.root, env=ws.env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cell.add(time.perf_counter() - t0)
        if p.returncode != 0:
            raise RuntimeError(f"skipwise plan failed: {p.stderr[-2000:]}")
    return cell


def dvc_status(ws: Workspace, repeats: int) -> tuple[Cell, str]:
    """A no-op `dvc status` (every stage up to date) in the same repository; returns its output too."""
    cell, out = Cell(), ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = ws.dvc("status").stdout.strip()
        cell.add(time.perf_counter() - t0)
    return cell, out


@dataclass(frozen=True)
class SynthResult:
    partitions: int
    setup_seconds: float
    cold_plan_seconds: float
    plan: Cell
    all_skipped: bool
    bytes_read: int
    hashed_bytes: int


def _synth_graph(n: int):
    from skipwise.core.partitions import DailyPartitions, Identity
    from skipwise.core.spec import Asset, Dep, Graph, Source

    days = DailyPartitions(date(1990, 1, 1), date(1990, 1, 1) + timedelta(days=n))
    raw = Source("raw_ticks", "data/raw/ticks", days)
    ticks = Asset("ticks", "synthbody.bodies:passthrough", days, deps=(Dep("raw_ticks", Identity()),))
    return Graph(sources=(raw,), assets=(ticks,))


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
    (root / f"{rel}.dvc").write_text(f"outs:\n- md5: {h}.dir\n  size: {size}\n  nfiles: {len(files)}\n  hash: md5\n  path: {name}\n")


def synthetic_plan(base: Path, n: int, repeats: int) -> SynthResult:
    """Time `Project.plan()` (fresh Project, warm caches) over n derived partitions that are all up to date."""
    from skipwise.core.manifest import Manifest
    from skipwise.core.plan import SKIP
    from skipwise.engine import Project

    root = base / "synthetic"
    (root / "synthbody").mkdir(parents=True)
    (root / "synthbody" / "__init__.py").write_text("")
    (root / "synthbody" / "bodies.py").write_text(SYNTH_BODY)
    (root / "params.yaml").write_text("ticks: {}\n")
    graph = _synth_graph(n)
    source, asset = graph.sources[0], graph.assets[0]

    t0 = time.perf_counter()
    raw_dir = root / source.path
    raw_dir.mkdir(parents=True)
    files = {source.file_for(k): f"tick {k}\n".encode() for k in source.partitions.keys()}
    for name, data in files.items():
        (raw_dir / name).write_bytes(data)
    _write_dvc_records(root, source.path, files)
    project = Project(root, graph)
    # The engine's layout (data/<layer>/<asset>/<key>/<fingerprint>.<ext> + manifest.json), written
    # without the engine's fsyncs: 20,000 fsynced files would make the set-up the slowest part.
    for key in asset.partitions.keys():
        cur = project.current(asset, key)
        data = f"out {key}\n".encode()
        folder = project.store.partition_dir(asset.layer, asset.name, key)
        folder.mkdir(parents=True)
        name = f"{cur.fingerprint}.{asset.ext}"
        (folder / name).write_bytes(data)
        (folder / "manifest.json").write_text(Manifest(
            asset=asset.name, partition=key, fingerprint=cur.fingerprint, code_version=cur.code_version,
            params_digest=cur.params_digest, inputs=cur.inputs, output=name, output_hash=hashlib.sha256(data).hexdigest(),
            output_size=len(data), run_id="bench-synthetic", reason="written by bench.planning",
        ).to_json())
    setup = time.perf_counter() - t0

    def one_plan() -> tuple[float, Project, list]:
        p = Project(root, graph)
        t = time.perf_counter()
        decisions = p.plan()
        return time.perf_counter() - t, p, decisions

    cold, _, _ = one_plan()  # first plan: the engine hashes each output once and fills its stat cache
    cell = Cell()
    ok, read, hashed = True, 0, 0
    for _ in range(repeats):
        seconds, p, decisions = one_plan()
        cell.add(seconds)
        ok = ok and len(decisions) == n and all(d.action == SKIP for d in decisions)
        read, hashed = max(read, p.io.snapshot().bytes_read), max(hashed, p.statcache.hashed_bytes)
    return SynthResult(n, setup, cold, cell, ok, read, hashed)
