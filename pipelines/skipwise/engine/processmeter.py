"""What the whole process costs around its partitions: its run records.

One `ProcessMeter` per process (`process_meter()`): the engine adds each metered partition it
records and marks its planning, code-loading and ledger phases; `take()` gives the run record, the
process's CPU, wall and memory since its previous run record minus what its partitions recorded.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from skipwise.core.cost import CostVector
from skipwise.engine.usage import (
    CPU_METHOD,
    children_cpu_seconds,
    cpu_seconds,
    own_cpu_seconds,
    process_peak_rss_bytes,
    take_window_peak,
)
from skipwise.project import recorder as loaded

PHASES: tuple[str, ...] = ("plan", "load", "ledger", "reads")
APART_CPU_METHOD = "cpu: getrusage self (us); children keep their own records, bar those its partitions waited for"


def _process_start() -> tuple[float, str]:
    """(when this process started, seconds since the epoch; how that was found)."""
    start = loaded.process_start()
    if start is not None:
        return start, "since it started (/proc/self/stat)"
    init = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(loaded.__file__))), "__init__.py")
    src = loaded.source_of(init)
    return (src.at if src is not None else time.time()), "wall since skipwise was imported (process start unknown)"


class ProcessMeter:
    """What this process used since it started, and how much of it its metered partitions recorded.

    One per process (`process_meter()`). The engine calls `add_partition` for each computed
    partition whose ledger record it has written and wraps its planning, the import of an asset's
    code and its ledger/manifest writes in `phase("plan")`, `phase("load")` and `phase("ledger")`; `take()` then gives the run record's (unpriced) cost: the
    process's CPU (getrusage self + children), wall and peak memory since the previous `take()` (the
    first one: since the process started), with the part its partitions recorded taken out. The
    records a process writes therefore add up to its whole use, never counting anything twice:

        cpu_seconds (overhead) = process_cpu_seconds - partition_cpu_seconds
                               = start + plan + load + ledger + other  (overhead_*_cpu_seconds)

    where `start` is the CPU before the engine was first used (interpreter start, imports, Dagster
    start: only in the process's first run record) and `other` the rest (the orchestrator's work
    between and after partitions, loading code, failed work). Memory held: the process's peak
    since the previous record x the wall since then, less what the partitions were charged
    (increment x wall).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._local = threading.local()
        start, self.start_method = _process_start()
        self._wall_at_mono0 = max(time.time() - start, 0.0)
        self._mono0 = time.perf_counter()
        self._first_cpu: float | None = None  # CPU at the engine's first use (end of "start")
        self._last_cpu = 0.0  # at the previous take(); getrusage counts from the process's start
        self._last_wall = 0.0
        self.records = 0
        self._exit_write: Callable[[], None] | None = None
        self._exit_freeze_gc = False
        self._exit_registered = False
        self._hwm_reset = False  # VmHWM was reset at the previous run record (see `take_window_peak`)
        self._excluded_cpu = 0.0  # children that keep their own account (`exclude_children`)
        # `keep_children_apart`: from then on only this process's own CPU counts (plus the children
        # its metered partitions waited for, which the partitions' records hold).
        self._apart = False
        self._children_before_apart = 0.0
        self._partition_children = 0.0
        self._reset_deltas()

    def _reset_deltas(self) -> None:
        self._partition_cpu = 0.0
        self._partition_wall = 0.0
        self._partition_held = 0.0
        self._partitions = 0
        self._phases = {name: 0.0 for name in PHASES}

    def _cpu(self) -> float:
        if self._apart:
            return own_cpu_seconds() + self._children_before_apart + self._partition_children
        return cpu_seconds() - self._excluded_cpu

    def exclude_children(self, cpu: float) -> None:
        """Leave out of this process's account the CPU of a child it waited for that keeps its own
        (a worker process writing its own run records): getrusage counts it as ours. (Nothing to
        do once `keep_children_apart` was called: no child counts then.)"""
        with self._lock:
            self._excluded_cpu += cpu

    def keep_children_apart(self) -> None:
        """From now on, count this process's own CPU only, and of its children only what its
        metered partitions waited for (their records hold it): for a process whose children keep
        their own run records (Dagster's step processes, skipwise's workers), which getrusage's
        children figure would otherwise count twice. The CPU counted so far stays counted."""
        with self._lock:
            if not self._apart:
                self._children_before_apart = children_cpu_seconds() - self._excluded_cpu
                self._partition_children = 0.0
                self._apart = True

    @property
    def children_apart(self) -> bool:
        """Whether this process counts its own CPU only (see `keep_children_apart`)."""
        return self._apart

    def add_partition_children(self, cpu: float) -> None:
        """Count `cpu` seconds of children a metered partition waited for (its record holds them)."""
        if cpu > 0:
            with self._lock:
                self._partition_children += cpu

    def wall_seconds(self) -> float:
        """Wall seconds since the process started (see `start_method`)."""
        return self._wall_at_mono0 + (time.perf_counter() - self._mono0)

    def touch(self) -> None:
        """Mark the engine's first use: the CPU before it is the `start` phase."""
        if self._first_cpu is None:
            self._first_cpu = self._cpu()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the CPU of the block as overhead of phase `name` (nested phases count once)."""
        if name not in self._phases:
            raise ValueError(f"unknown phase {name!r}; use one of {', '.join(PHASES)}")
        self.touch()
        depth = getattr(self._local, "depth", 0)
        if depth:
            yield
            return
        self._local.depth = 1
        c0 = self._cpu()
        try:
            yield
        finally:
            self._local.depth = 0
            used = self._cpu() - c0
            with self._lock:
                self._phases[name] += used

    def add_reads(self, cpu: float) -> None:
        """Count `cpu` seconds of input reads that no partition of this process was charged
        (negative: a partition took over a read counted here before; see `Meter.shift`)."""
        with self._lock:
            self._phases["reads"] += cpu

    def add_partition(self, cost: CostVector | None) -> None:
        """Count a recorded partition's cost as partition work (not overhead)."""
        if cost is None:
            return
        with self._lock:
            self._partition_cpu += cost.cpu_seconds or 0.0
            self._partition_wall += cost.wall_seconds or 0.0
            if cost.peak_rss_bytes is not None and cost.wall_seconds is not None:
                self._partition_held += cost.peak_rss_bytes * cost.wall_seconds
            self._partitions += 1

    def totals(self) -> dict[str, float]:
        """This process's CPU and wall since it started (not a delta)."""
        return {"cpu_seconds": self._cpu(), "wall_seconds": self.wall_seconds()}

    def cpu_since_take(self) -> float:
        """CPU seconds this process used since the previous `take()` (or its start)."""
        return max(self._cpu() - self._last_cpu, 0.0)

    def at_exit(
        self, write: Callable[[], None] | None = None, *, freeze_gc: bool = False, fallback: bool = False
    ) -> None:
        """At this process's exit (an ``atexit`` handler, registered once): call `write` (the
        latest one given, unless it is a `fallback`, given only when no other is; it records the
        last stretch since the previous run record), then, with `freeze_gc`, ``gc.freeze()``.

        Freezing matters: with Dagster loaded, the interpreter's teardown spends 0.3-0.6 s of CPU
        collecting a heap the OS is about to free, after the last moment anything can be measured;
        frozen objects are not traversed, so that CPU is not spent at all. (Objects in reference
        cycles whose finalizers would have run during that collection do not run them; files and
        logging are flushed before, by their own handlers.) Only processes that exist to run
        skipwise ask for it: `skipwise materialize`, Dagster's step worker processes, and the
        Dagster processes that coordinate runs of skipwise assets (`skipwise.adapters.dagster.processes`).
        """
        with self._lock:
            if write is not None and not (fallback and self._exit_write is not None):
                self._exit_write = write
            self._exit_freeze_gc = self._exit_freeze_gc or freeze_gc
            if not self._exit_registered:
                atexit.register(self._at_exit)
                self._exit_registered = True

    def _at_exit(self) -> None:
        if os.getpid() != self.pid:  # a forked child inherited the handler: not its account
            return
        write = self._exit_write
        if write is not None:
            try:
                write()
            except Exception as exc:  # noqa: BLE001 - never fail an exiting process over its accounting
                print(f"skipwise: no final run record ({type(exc).__name__}: {exc})", file=sys.stderr)
        if self._exit_freeze_gc:
            gc.freeze()

    def take(self) -> CostVector:
        """The run record's cost since the previous `take()`, and start a new delta."""
        self.touch()
        with self._lock:
            cpu, wall = self._cpu(), self.wall_seconds()
            d_cpu, d_wall = max(cpu - self._last_cpu, 0.0), max(wall - self._last_wall, 0.0)
            over_cpu = max(d_cpu - self._partition_cpu, 0.0)
            over_wall = max(d_wall - self._partition_wall, 0.0)
            start = min(self._first_cpu or 0.0, over_cpu) if self.records == 0 else 0.0
            plan, load, ledger = self._phases["plan"], self._phases["load"], self._phases["ledger"]
            reads = max(self._phases["reads"], 0.0)
            other = max(over_cpu - start - plan - load - ledger - reads, 0.0)
            window, reset = take_window_peak()
            held = None if window is None else max(window * d_wall - self._partition_held, 0.0)
            cost = CostVector(
                wall_seconds=over_wall,
                cpu_seconds=over_cpu,
                peak_rss_bytes=window,
                process_peak_rss_bytes=process_peak_rss_bytes(),
                rss_byte_seconds=held,
                process_cpu_seconds=d_cpu,
                process_wall_seconds=d_wall,
                partition_cpu_seconds=self._partition_cpu,
                partition_wall_seconds=self._partition_wall,
                partitions_computed=self._partitions,
                overhead_start_cpu_seconds=start,
                overhead_plan_cpu_seconds=plan,
                overhead_load_cpu_seconds=load,
                overhead_ledger_cpu_seconds=ledger,
                overhead_reads_cpu_seconds=reads,
                overhead_other_cpu_seconds=other,
                method="; ".join(
                    [
                        f"run: this process {self.start_method if self.records == 0 else 'since its previous run record'}"
                        ", less its metered partitions",
                        CPU_METHOD if not self._apart else APART_CPU_METHOD,
                        "rss: the process's peak "
                        + ("since its previous run record" if self._hwm_reset else "since it started")
                        + " (VmHWM kept across partition resets)",
                        "memory held: that peak x wall less the partitions' increment x wall",
                    ]
                ),
            )
            self._last_cpu, self._last_wall = cpu, wall
            self._hwm_reset = reset
            self.records += 1
            self._reset_deltas()
            return cost


_PROCESS_METER: ProcessMeter | None = None
_PROCESS_METER_LOCK = threading.Lock()


def process_meter() -> ProcessMeter:
    """This process's `ProcessMeter` (a new one after a fork: a child counts from its own start)."""
    global _PROCESS_METER
    with _PROCESS_METER_LOCK:
        if _PROCESS_METER is None or _PROCESS_METER.pid != os.getpid():
            _PROCESS_METER = ProcessMeter()
        return _PROCESS_METER
