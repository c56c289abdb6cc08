"""Measure what one partition's work costs: wall, CPU, peak memory, GPU, and store I/O; and what
the whole process costs around its partitions (the run record).

    with Meter(io=store.io) as meter:
        compute_partition()
    cost = meter.result()          # an unpriced CostVector

How each figure is taken (and what it says in `CostVector.method`):

- wall: ``time.perf_counter`` (monotonic).
- cpu: user + system time of this process and of the children it waited for, from
  ``getrusage(RUSAGE_SELF)`` + ``getrusage(RUSAGE_CHILDREN)`` (microsecond clocks; Linux derives
  them from the scheduler's nanosecond runtime). Without ``resource`` (Windows):
  ``time.process_time()`` + the children's ``os.times``. Other threads of the process count too:
  run one metered partition per process (Dagster's multiprocess executor does) for figures that
  belong to one partition.
- rss: `peak_rss_bytes` is the partition's own memory: its peak above the process's resident
  memory when it started. On Linux the kernel's high-water mark ``VmHWM`` is reset at the start
  (writing ``5`` to ``/proc/self/clear_refs``), ``VmRSS`` is read just after, and the increment
  is ``VmHWM`` at the end minus that ``VmRSS``; `process_peak_rss_bytes` is ``VmHWM`` itself (the
  whole process's peak during the block; children are not included). If the reset is refused, a
  thread samples ``VmRSS`` every 10 ms instead (it can miss a spike shorter than that). Elsewhere,
  ``getrusage`` max RSS is reported as the process peak only when the block set a new high, and
  the increment is not measured (None).
- gpu: only when ``torch`` is already imported (never imported here) and CUDA is available:
  peak memory stats are reset, the device is synchronized before the clock stops, gpu_seconds is
  the wall time when the block allocated CUDA memory, gpu_peak_memory_bytes is
  ``torch.cuda.max_memory_allocated``. Otherwise both are None and method says ``gpu: none``.
- io: the difference of two `IOCounter` snapshots, when a counter is given.

`process_meter()` is this process's account (see `ProcessMeter`): the engine adds each metered
partition it records and marks its planning, code-loading and ledger phases; `take()` gives the run record, the
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
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Iterator

from skipwise.core.cost import CostVector, IOCounter, IOSnapshot
from skipwise.project import recorder as loaded

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"
_SAMPLE_INTERVAL_S = 0.01

# clear_refs resets a process-wide mark: only the outermost active Meter may reset it.
_active_lock = threading.Lock()
_active_meters = 0
# The process's own peak, kept across those resets (each reset would otherwise lose it): the
# highest VmHWM read just before a reset, or sampled; and the same since the previous run record
# (`window_kib`, see `_take_window_peak`). Reset when the process forks.
_process_peak = {"pid": os.getpid(), "kib": 0, "window_kib": 0}

if resource is not None:
    CPU_METHOD = "cpu: getrusage self+children (us)"

    def own_cpu_seconds() -> float:
        """CPU seconds (user + system) this process used so far, its children left out."""
        s = resource.getrusage(resource.RUSAGE_SELF)
        return s.ru_utime + s.ru_stime

    def children_cpu_seconds() -> float:
        """CPU seconds (user + system) of the children this process waited for, so far."""
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return c.ru_utime + c.ru_stime

else:  # pragma: no cover - Windows
    CPU_METHOD = "cpu: process_time + children times"

    def own_cpu_seconds() -> float:
        """CPU seconds (user + system) this process used so far, its children left out."""
        return time.process_time()

    def children_cpu_seconds() -> float:
        """CPU seconds (user + system) of the children this process waited for, so far."""
        t = os.times()
        return t.children_user + t.children_system


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process and its waited-for children used so far."""
    return own_cpu_seconds() + children_cpu_seconds()


def _read_status_kib(field_name: str) -> int | None:
    try:
        with open(_STATUS, "rb") as f:
            for line in f:
                if line.startswith(field_name.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _note_process_peak(kib: int | None) -> None:
    if kib is None:
        return
    if _process_peak["pid"] != os.getpid():
        _process_peak.update(pid=os.getpid(), kib=0, window_kib=0)
    if kib > _process_peak["kib"]:
        _process_peak["kib"] = kib
    if kib > _process_peak["window_kib"]:
        _process_peak["window_kib"] = kib


def _take_window_peak() -> tuple[int | None, bool]:
    """(the process's peak resident memory since the previous call, in bytes; whether the mark was
    reset for the next window). A long-lived process (a worker, a server, a code location) is
    charged what it held while it did this stretch's work, not a peak of hours ago: ``VmHWM`` is
    reset here when no Meter owns it. Where it cannot be (refused, a partition running in another
    thread, not Linux), the next window keeps this one's peak: an upper bound, as before."""
    hwm = _read_status_kib("VmHWM")
    if hwm is None:
        return process_peak_rss_bytes(), False
    _note_process_peak(hwm)
    window = _process_peak["window_kib"] * 1024
    with _active_lock:
        reset = _active_meters == 0 and _reset_hwm()
    if reset:
        _process_peak["window_kib"] = _read_status_kib("VmRSS") or 0
    return window, reset


def process_peak_rss_bytes() -> int | None:
    """The peak resident memory of this process since it started, kept across the Meter's resets
    of ``VmHWM`` (Linux); elsewhere getrusage's max RSS; None where neither is available."""
    hwm = _read_status_kib("VmHWM")
    if hwm is not None:
        _note_process_peak(hwm)
        return _process_peak["kib"] * 1024
    try:
        return _ru_maxrss_bytes()
    except (OSError, ValueError):
        return None


def _reset_hwm() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_bytes() -> int:
    if resource is None:
        raise OSError("getrusage is not available on this platform")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return maxrss if sys.platform == "darwin" else maxrss * 1024


class _RssSampler(threading.Thread):
    """Fallback: sample VmRSS every 10 ms and keep the maximum."""

    def __init__(self) -> None:
        super().__init__(name="skipwise-rss-sampler", daemon=True)
        self.peak_kib = _read_status_kib("VmRSS") or 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(_SAMPLE_INTERVAL_S):
            rss = _read_status_kib("VmRSS")
            if rss is not None and rss > self.peak_kib:
                self.peak_kib = rss

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        rss = _read_status_kib("VmRSS")
        return max(self.peak_kib, rss or 0)


class _RssProbe:
    """The block's own peak memory (above the RSS at its start) and the process's peak during it."""

    def __init__(self, outermost: bool) -> None:
        self.method = "rss: none"
        self._mode = "none"
        self._sampler: _RssSampler | None = None
        self._maxrss0 = 0
        self._rss0_kib: int | None = None
        if os.path.exists(_STATUS) and _read_status_kib("VmHWM") is not None:
            if not outermost:
                # An enclosing Meter owns the mark; the peak since its start bounds ours.
                self._mode = "hwm"
                self.method = "rss: peak above start (VmHWM since enclosing meter - VmRSS at start, an upper bound)"
            else:
                _note_process_peak(_read_status_kib("VmHWM"))  # the reset below forgets it
                if _reset_hwm():
                    self._mode = "hwm"
                    self.method = "rss: peak above start (VmHWM reset per partition - VmRSS at start)"
                else:
                    self._sampler = _RssSampler()
                    self._sampler.start()
                    self._mode = "sample"
                    self.method = "rss: peak above start (VmRSS sampled every 10 ms, VmHWM reset refused)"
            self._rss0_kib = _read_status_kib("VmRSS")
        else:
            try:
                self._maxrss0 = _ru_maxrss_bytes()
                self._mode = "maxrss"
                self.method = "rss: process peak from getrusage maxrss, only when a new high; increment not measured"
            except (OSError, ValueError):
                pass

    def stop(self) -> tuple[int | None, int | None]:
        """(the block's peak above its start, the process's peak during the block), in bytes."""
        peak_kib: int | None = None
        if self._mode == "hwm":
            peak_kib = _read_status_kib("VmHWM")
        elif self._mode == "sample" and self._sampler is not None:
            peak_kib = self._sampler.stop()
        elif self._mode == "maxrss":
            now = _ru_maxrss_bytes()
            return None, (now if now > self._maxrss0 else None)
        if peak_kib is None:
            return None, None
        _note_process_peak(peak_kib)
        own = None if self._rss0_kib is None else max(peak_kib - self._rss0_kib, 0) * 1024
        return own, peak_kib * 1024


class _GpuProbe:
    """GPU time and peak memory through torch.cuda, only when torch is already imported."""

    def __init__(self, outermost: bool) -> None:
        self.torch: Any = None
        self._allocs0 = 0
        torch = sys.modules.get("torch")
        if torch is None:
            return
        try:
            if not torch.cuda.is_available():
                return
            self.torch = torch
            # Before the first CUDA call the stats are zero already; resetting them would
            # create a CUDA context (slow) for work that may never touch the GPU.
            # An enclosing Meter owns the peak; ours is then the peak since its start.
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
                if outermost:
                    torch.cuda.reset_peak_memory_stats()
                self._allocs0 = self._allocations()
        except Exception:  # noqa: BLE001 - a broken GPU stack must not fail the partition
            self.torch = None

    def _allocations(self) -> int:
        return int(self.torch.cuda.memory_stats().get("allocation.all.allocated", 0))

    def synchronize(self) -> None:
        if self.torch is not None and self.torch.cuda.is_initialized():
            self.torch.cuda.synchronize()

    def stop(self, wall_seconds: float) -> tuple[float | None, int | None, str]:
        if self.torch is None:
            return None, None, "gpu: none"
        method = "gpu: torch.cuda current device, wall while allocating"
        try:
            if not self.torch.cuda.is_initialized():
                return 0.0, 0, method
            used = self._allocations() > self._allocs0
            peak = int(self.torch.cuda.max_memory_allocated())
            return (wall_seconds if used else 0.0), peak, method
        except Exception:  # noqa: BLE001
            return None, None, "gpu: none (torch.cuda failed)"


@dataclass(frozen=True)
class Share:
    """What one piece of work inside a partition cost (an input partition's read and decode):
    CPU and wall seconds, and the store I/O it did."""

    cpu_seconds: float
    wall_seconds: float
    io: IOSnapshot


@contextmanager
def measure(io: IOCounter | None) -> Iterator[list[Share]]:
    """Measure a block as a `Share` (given in the yielded list once the block ends)."""
    out: list[Share] = []
    io0 = io.snapshot() if io is not None else IOSnapshot()
    c0, w0 = cpu_seconds(), time.perf_counter()
    try:
        yield out
    finally:
        delta = (io.snapshot() - io0) if io is not None else IOSnapshot()
        out.append(Share(cpu_seconds() - c0, time.perf_counter() - w0, delta))


class Meter:
    """Context manager measuring one partition's work; `result()` gives the `CostVector`.

    `io` is the storage layer's `IOCounter`; without one, byte and request figures are None.
    The meter adds a few file reads at entry and exit (well under a millisecond) and no thread
    unless the Linux high-water-mark reset is refused. See the module docstring for how each
    figure is measured.
    """

    def __init__(self, io: IOCounter | None = None) -> None:
        self.io = io
        self._result: CostVector | None = None
        self._outermost = False
        self._shift = Share(0.0, 0.0, IOSnapshot())

    def charge(self, share: Share) -> None:
        """Add to this block's figures the work `share`, measured outside it: a partition's input
        reads, done before its block starts (see `skipwise.engine.inputs.Inputs.load`)."""
        s = self._shift
        self._shift = Share(s.cpu_seconds + share.cpu_seconds, s.wall_seconds + share.wall_seconds, s.io + share.io)

    def __enter__(self) -> Meter:
        global _active_meters
        with _active_lock:
            self._outermost = _active_meters == 0
            _active_meters += 1
        self._result = None
        process_meter().touch()  # the process's `start` phase ends at its first metered block
        self._io0: IOSnapshot | None = self.io.snapshot() if self.io is not None else None
        self._rss = _RssProbe(self._outermost)
        self._gpu = _GpuProbe(self._outermost)
        self._children0 = children_cpu_seconds()
        self._cpu0 = self._children0 + own_cpu_seconds()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _active_meters
        try:
            self._gpu.synchronize()  # queued kernels belong to this block's wall time
            wall = max(time.perf_counter() - self._wall0 + self._shift.wall_seconds, 0.0)
            children = children_cpu_seconds()
            cpu = own_cpu_seconds() + children - self._cpu0 + self._shift.cpu_seconds
            if self._outermost:
                process_meter().add_partition_children(children - self._children0)
            own_rss, process_rss = self._rss.stop()
            gpu_seconds, gpu_peak, gpu_method = self._gpu.stop(wall)
            method = "; ".join(
                [
                    "wall: monotonic",
                    CPU_METHOD,
                    self._rss.method,
                    "memory priced on the increment",
                    gpu_method,
                ]
            )
            if self.io is not None and self._io0 is not None:
                io_part = CostVector.from_io(self.io.snapshot() - self._io0 + self._shift.io)
            else:
                io_part = CostVector()
            self._result = io_part.replace(
                wall_seconds=wall,
                cpu_seconds=max(cpu, 0.0),
                peak_rss_bytes=own_rss,
                process_peak_rss_bytes=process_rss,
                gpu_seconds=gpu_seconds,
                gpu_peak_memory_bytes=gpu_peak,
                method=method,
            )
        finally:
            with _active_lock:
                _active_meters -= 1

    def result(self) -> CostVector:
        """The measured, unpriced cost of the block. Call after the `with` block has ended."""
        if self._result is None:
            raise RuntimeError("Meter.result() called before the `with Meter(...)` block ended")
        return self._result


# --- the process's own account: run records ---------------------------------------------------

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
        self._hwm_reset = False  # VmHWM was reset at the previous run record (see `_take_window_peak`)
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
            window, reset = _take_window_peak()
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


# -- the collector while a command loads ------------------------------------------------------------

_collection = {"deferred": False, "froze": False}


def defer_collection() -> bool:
    """Turn Python's cyclic garbage collector off until `resume_collection()`, for a process about
    to import its libraries and load definitions: what that makes lives as long as the process,
    so the collector's passes over it (a full one traverses every object: about 0.1 s each with
    Dagster imported, several during the imports and the first run) find nothing to free.
    Reference counting frees everything else as usual. Returns whether it was deferred here (not
    when the collector was off already: whoever turned it off keeps that choice)."""
    if _collection["deferred"] or not gc.isenabled():
        return False
    gc.disable()
    _collection.update(deferred=True, froze=False)
    return True


def resume_collection() -> None:
    """This process's long-lived objects exist (libraries imported, definitions loaded): after
    `defer_collection`, freeze them (later collections leave them out) and turn the collector
    back on. Without a deferral, nothing."""
    if _collection["deferred"]:
        # Only a process with nothing frozen before gets it back (`end_deferral`): a fork of
        # `skipwise serve` keeps the server's libraries frozen.
        _collection.update(deferred=False, froze=gc.get_freeze_count() == 0)
        gc.freeze()
        gc.enable()


def end_deferral(deferred: bool) -> None:
    """The end of what `defer_collection` was called for (its return value): the collector is on,
    and what `resume_collection` froze is collectable again (a process that goes on to other
    work, a test calling a command in process, has the collector as it was)."""
    if deferred:
        resume_collection()
        if _collection["froze"]:
            gc.unfreeze()
            _collection["froze"] = False
