"""Measure what one partition's work costs: wall, CPU, peak memory, GPU, and store I/O.

    with Meter(io=store.io) as meter:
        compute_partition()
    cost = meter.result()          # an unpriced CostVector

How each figure is taken (and what it says in `CostVector.method`):

- wall: ``time.perf_counter`` (monotonic).
- cpu: user + system time of this process and of the children it waited for (``os.times``).
  Other threads of the process count too: run one metered partition per process (Dagster's
  multiprocess executor does) for figures that belong to one partition.
- rss: on Linux, the kernel's high-water mark ``VmHWM`` is reset at the start (writing ``5`` to
  ``/proc/self/clear_refs``) and read at the end, so it is the peak resident memory of this process
  during the block (children are not included). If the reset is refused, a thread samples
  ``VmRSS`` every 10 ms instead (it can miss a spike shorter than that). Elsewhere,
  ``getrusage`` max RSS is reported only when the block set a new high, since it cannot be reset;
  otherwise None.
- gpu: only when ``torch`` is already imported (never imported here) and CUDA is available:
  peak memory stats are reset, the device is synchronized before the clock stops, gpu_seconds is
  the wall time when the block allocated CUDA memory, gpu_peak_memory_bytes is
  ``torch.cuda.max_memory_allocated``. Otherwise both are None and method says ``gpu: none``.
- io: the difference of two `IOCounter` snapshots, when a counter is given.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import Any

from pipelines.core.cost import CostVector, IOCounter, IOSnapshot

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


def _read_status_kib(field_name: str) -> int | None:
    try:
        with open(_STATUS, "rb") as f:
            for line in f:
                if line.startswith(field_name.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
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
    """Peak resident memory of this process during the block, by the best means available."""

    def __init__(self, outermost: bool) -> None:
        self.method = "rss: none"
        self._mode = "none"
        self._sampler: _RssSampler | None = None
        self._maxrss0 = 0
        if os.path.exists(_STATUS) and _read_status_kib("VmHWM") is not None:
            if not outermost:
                # An enclosing Meter owns the mark; the peak since its start bounds ours.
                self._mode, self.method = "hwm", "rss: VmHWM since enclosing meter"
            elif _reset_hwm():
                self._mode, self.method = "hwm", "rss: VmHWM reset per partition"
            else:
                self._sampler = _RssSampler()
                self._sampler.start()
                self._mode = "sample"
                self.method = "rss: VmRSS sampled every 10 ms (VmHWM reset refused)"
        else:
            try:
                self._maxrss0 = _ru_maxrss_bytes()
                self._mode, self.method = "maxrss", "rss: getrusage maxrss, only when a new high"
            except (OSError, ValueError):
                pass

    def stop(self) -> int | None:
        if self._mode == "hwm":
            kib = _read_status_kib("VmHWM")
            return kib * 1024 if kib is not None else None
        if self._mode == "sample" and self._sampler is not None:
            return self._sampler.stop() * 1024
        if self._mode == "maxrss":
            now = _ru_maxrss_bytes()
            return now if now > self._maxrss0 else None
        return None


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

    def __enter__(self) -> Meter:
        global _active_meters
        with _active_lock:
            self._outermost = _active_meters == 0
            _active_meters += 1
        self._result = None
        self._io0: IOSnapshot | None = self.io.snapshot() if self.io is not None else None
        self._rss = _RssProbe(self._outermost)
        self._gpu = _GpuProbe(self._outermost)
        self._times0 = os.times()
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
            wall = time.perf_counter() - self._wall0
            t1 = os.times()
            t0 = self._times0
            cpu = (
                (t1.user - t0.user)
                + (t1.system - t0.system)
                + (t1.children_user - t0.children_user)
                + (t1.children_system - t0.children_system)
            )
            peak_rss = self._rss.stop()
            gpu_seconds, gpu_peak, gpu_method = self._gpu.stop(wall)
            method = "; ".join(
                [
                    "wall: monotonic",
                    "cpu: process+children times",
                    self._rss.method,
                    gpu_method,
                ]
            )
            if self.io is not None and self._io0 is not None:
                io_part = CostVector.from_io(self.io.snapshot() - self._io0)
            else:
                io_part = CostVector()
            self._result = io_part.replace(
                wall_seconds=wall,
                cpu_seconds=max(cpu, 0.0),
                peak_rss_bytes=peak_rss,
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
