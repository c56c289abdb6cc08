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

`process_meter()` (`skipwise.engine.processmeter`) is this process's account (see `ProcessMeter`): the engine adds each metered
partition it records and marks its planning, code-loading and ledger phases; `take()` gives the run record, the
process's CPU, wall and memory since its previous run record minus what its partitions recorded.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Iterator

from skipwise.core.cost import CostVector, IOCounter, IOSnapshot
from skipwise.engine.processmeter import process_meter
from skipwise.engine.usage import (
    CPU_METHOD,
    RssProbe,
    children_cpu_seconds,
    cpu_seconds,
    meter_entered,
    meter_left,
    own_cpu_seconds,
)


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
        self._outermost = meter_entered()
        self._result = None
        process_meter().touch()  # the process's `start` phase ends at its first metered block
        self._io0: IOSnapshot | None = self.io.snapshot() if self.io is not None else None
        self._rss = RssProbe(self._outermost)
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
            meter_left()

    def result(self) -> CostVector:
        """The measured, unpriced cost of the block. Call after the `with` block has ended."""
        if self._result is None:
            raise RuntimeError("Meter.result() called before the `with Meter(...)` block ended")
        return self._result
