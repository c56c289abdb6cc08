"""What the OS says this process used: its CPU clocks (its own and its children's) and its resident
memory (the peak of a block, the process's peak, the peak since the previous run record).

`skipwise.engine.metering` measures a partition with these, `skipwise.engine.processmeter` the
whole process; the module docstring of the first says how each figure is taken.
"""

from __future__ import annotations

import os
import sys
import threading
import time

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


def meter_entered() -> bool:
    """Count a Meter's block as started; whether it is the outermost (no other block is active)."""
    global _active_meters
    with _active_lock:
        _active_meters += 1
        return _active_meters == 1


def meter_left() -> None:
    """Count a Meter's block as ended."""
    global _active_meters
    with _active_lock:
        _active_meters -= 1


# The process's own peak, kept across those resets (each reset would otherwise lose it): the
# highest VmHWM read just before a reset, or sampled; and the same since the previous run record
# (`window_kib`, see `take_window_peak`). Reset when the process forks.
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


def read_status_kib(field_name: str) -> int | None:
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


def take_window_peak() -> tuple[int | None, bool]:
    """(the process's peak resident memory since the previous call, in bytes; whether the mark was
    reset for the next window). A long-lived process (a worker, a server, a code location) is
    charged what it held while it did this stretch's work, not a peak of hours ago: ``VmHWM`` is
    reset here when no Meter owns it. Where it cannot be (refused, a partition running in another
    thread, not Linux), the next window keeps this one's peak: an upper bound, as before."""
    hwm = read_status_kib("VmHWM")
    if hwm is None:
        return process_peak_rss_bytes(), False
    _note_process_peak(hwm)
    window = _process_peak["window_kib"] * 1024
    with _active_lock:
        reset = _active_meters == 0 and _reset_hwm()
    if reset:
        _process_peak["window_kib"] = read_status_kib("VmRSS") or 0
    return window, reset


def process_peak_rss_bytes() -> int | None:
    """The peak resident memory of this process since it started, kept across the Meter's resets
    of ``VmHWM`` (Linux); elsewhere getrusage's max RSS; None where neither is available."""
    hwm = read_status_kib("VmHWM")
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
        self.peak_kib = read_status_kib("VmRSS") or 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(_SAMPLE_INTERVAL_S):
            rss = read_status_kib("VmRSS")
            if rss is not None and rss > self.peak_kib:
                self.peak_kib = rss

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        rss = read_status_kib("VmRSS")
        return max(self.peak_kib, rss or 0)


class RssProbe:
    """The block's own peak memory (above the RSS at its start) and the process's peak during it."""

    def __init__(self, outermost: bool) -> None:
        self.method = "rss: none"
        self._mode = "none"
        self._sampler: _RssSampler | None = None
        self._maxrss0 = 0
        self._rss0_kib: int | None = None
        if os.path.exists(_STATUS) and read_status_kib("VmHWM") is not None:
            if not outermost:
                # An enclosing Meter owns the mark; the peak since its start bounds ours.
                self._mode = "hwm"
                self.method = "rss: peak above start (VmHWM since enclosing meter - VmRSS at start, an upper bound)"
            else:
                _note_process_peak(read_status_kib("VmHWM"))  # the reset below forgets it
                if _reset_hwm():
                    self._mode = "hwm"
                    self.method = "rss: peak above start (VmHWM reset per partition - VmRSS at start)"
                else:
                    self._sampler = _RssSampler()
                    self._sampler.start()
                    self._mode = "sample"
                    self.method = "rss: peak above start (VmRSS sampled every 10 ms, VmHWM reset refused)"
            self._rss0_kib = read_status_kib("VmRSS")
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
            peak_kib = read_status_kib("VmHWM")
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
