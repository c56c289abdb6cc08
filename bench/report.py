"""Numbers into markdown: medians and minimums, ratios, the results table, targets, CPU steal.

Pure functions of plain values (no timing, no I/O), so a test can render made-up numbers.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Cell:
    """Every measurement of one system in one scenario: seconds, partitions computed, bytes read."""

    seconds: list[float] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)
    bytes_read: list[int] = field(default_factory=list)
    note: str = ""

    def add(self, seconds: float, computed: int | None = None, bytes_read: int | None = None) -> None:
        self.seconds.append(seconds)
        if computed is not None:
            self.computed.append(computed)
        if bytes_read is not None:
            self.bytes_read.append(bytes_read)

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def min(self) -> float | None:
        return min(self.seconds) if self.seconds else None


@dataclass
class Row:
    """One scenario of one dataset, measured through each system."""

    dataset: str
    scenario: str
    cells: dict[str, Cell] = field(default_factory=dict)

    def cell(self, system: str) -> Cell:
        return self.cells.setdefault(system, Cell())


@dataclass
class Ref:
    """A reference measurement outside the scenario grid (an empty Dagster run, a plan, `dvc status`)."""

    dataset: str
    name: str
    cell: Cell
    detail: str = ""


@dataclass(frozen=True)
class Target:
    """A goal with its measured value: PASS or MISS."""

    name: str
    goal: str
    measured: str
    ok: bool | None  # None: not measured in this run


SYSTEMS = ("skipwise", "plain", "dvc", "dvc_skipwise", "dvc_served", "dagster_cli", "webserver")
HEADER = (
    "| dataset | scenario | skipwise (Dagster) median (min) s | plain Dagster median (min) s "
    "| dvc repro, plain stage median (min) s | dvc repro, skipwise stage median (min) s "
    "| dvc repro, skipwise stage, `skipwise serve` running median (min) s "
    "| `dagster asset materialize` median (min) s | launched through dagster-webserver median (min) s "
    "| ratio skipwise/plain | ratio skipwise/dvc "
    "| partitions computed (skipwise / plain / dvc / dvc skipwise stage / served / dagster CLI / webserver) "
    "| bytes read (skipwise / plain / dvc) | runs |"
)


def fmt_seconds(cell: Cell | None) -> str:
    """'12.34 (11.90)', or an em dash when not measured."""
    if cell is None or not cell.seconds:
        return "—"
    return f"{_num(cell.median)} ({_num(cell.min)}){cell.note}"


def _num(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}"


def ratio(a: Cell | None, b: Cell | None) -> str:
    """Median over median, e.g. '0.08×'."""
    if a is None or b is None or not a.seconds or not b.seconds or not b.median:
        return "—"
    r = a.median / b.median
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.3f}×"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    if n == 0:
        return "0"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _typical(values: list[int]) -> int | None:
    return int(statistics.median(values)) if values else None


def render_row(row: Row) -> str:
    c = row.cells
    sk, pl, dv, ds, sv, cli, ui = (c.get(s) for s in SYSTEMS)
    # skipwise against DVC: both through `dvc repro` where the skipwise stage was measured.
    vs_dvc = ratio(ds, dv) + " †" if ds is not None and ds.seconds else ratio(sk, dv)
    every = (sk, pl, dv, ds, sv, cli, ui)
    computed = " / ".join(str(v) if (v := _typical(x.computed if x else [])) is not None else "—" for x in every)
    read = " / ".join(fmt_bytes(_typical(x.bytes_read)) if x and x.bytes_read else "—" for x in (sk, pl, dv))
    runs = "/".join(str(len(x.seconds)) if x and x.seconds else "0" for x in every)
    return (
        f"| {row.dataset} | {row.scenario} | {fmt_seconds(sk)} | {fmt_seconds(pl)} | {fmt_seconds(dv)} "
        f"| {fmt_seconds(ds)} | {fmt_seconds(sv)} | {fmt_seconds(cli)} | {fmt_seconds(ui)} | {ratio(sk, pl)} | {vs_dvc} "
        f"| {computed} | {read} | {runs} |"
    )


def render_table(rows: list[Row]) -> str:
    sep = "|" + "---|" * HEADER.count(" | ") + "---|"
    return "\n".join([HEADER, sep, *(render_row(r) for r in rows)])


def render_refs(refs: list[Ref]) -> str:
    lines = ["| dataset | measurement | median (min) s | runs | detail |", "|---|---|---|---|---|"]
    for r in refs:
        lines.append(f"| {r.dataset} | {r.name} | {fmt_seconds(r.cell)} | {len(r.cell.seconds)} | {r.detail} |")
    return "\n".join(lines)


def render_targets(targets: list[Target]) -> str:
    lines = ["| target | goal | measured | result |", "|---|---|---|---|"]
    for t in targets:
        verdict = "not measured" if t.ok is None else ("PASS" if t.ok else "MISS")
        lines.append(f"| {t.name} | {t.goal} | {t.measured} | {verdict} |")
    return "\n".join(lines)


def steal_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Steal jiffies as a percentage of all jiffies between two (steal, total) readings of /proc/stat."""
    steal, total = after[0] - before[0], after[1] - before[1]
    return 100.0 * steal / total if total > 0 else 0.0


def render_report(
    title: str,
    rows: list[Row],
    refs: list[Ref],
    targets: list[Target],
    steal: float | None,
    wall_seconds: float,
    notes: list[str],
    load: tuple[float, float, int] | None = None,
) -> str:
    """The whole markdown document: scenario table, reference runs, targets, steal, notes.

    `load`: (median, max) of the 1-minute load average sampled during the run, and the CPUs."""
    out = [f"# {title}", "", render_table(rows), ""]
    if refs:
        out += ["Reference measurements:", "", render_refs(refs), ""]
    out += ["## Targets", "", render_targets(targets), ""]
    steal_txt = "not available (no /proc/stat)" if steal is None else f"{steal:.1f}% of all CPU time"
    load_txt = (
        ""
        if load is None
        else (
            f" Load average (1 min) during the run: median {load[0]:.2f}, max {load[1]:.2f}, "
            f"on {load[2]} CPUs (other processes' work, which steal does not count)."
        )
    )
    out += [
        f"CPU steal during the whole benchmark: **{steal_txt}**. Benchmark wall time: {wall_seconds / 60:.1f} min.{load_txt}",
        "",
    ]
    if notes:
        out += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(out)
