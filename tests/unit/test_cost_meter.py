"""The Meter measures physical facts: sleeping costs wall but not CPU, spinning costs CPU,
touching memory raises the peak, a child's CPU counts, store bytes are counted exactly.

Only generous physical bounds are asserted: the machine is small and shared.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from skipwise.core.cost import CostVector, IOCounter
from skipwise.engine.metering import Meter
from skipwise.engine.usage import read_status_kib

MB = 10**6


def _spin_cpu(seconds: float) -> None:
    # Spin until this process has used `seconds` of CPU, however busy the machine is.
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def _rss_bytes() -> int:
    kib = read_status_kib("VmRSS")
    if kib is None:
        pytest.skip("needs /proc/self/status (Linux)")
    return kib * 1024


def test_sleep_costs_wall_not_cpu():
    with Meter() as m:
        time.sleep(0.3)
    cost = m.result()
    assert cost.wall_seconds >= 0.3 - 1e-3
    assert cost.cpu_seconds < 0.1


def test_busy_loop_costs_cpu():
    with Meter() as m:
        _spin_cpu(0.3)
    cost = m.result()
    assert cost.cpu_seconds >= 0.2
    assert cost.wall_seconds >= cost.cpu_seconds * 0.9  # one thread cannot beat the clock


def test_touching_memory_raises_peak_rss_and_the_next_block_starts_fresh():
    before = _rss_bytes()
    with Meter() as big:
        data = b"\x01" * (200 * MB)  # written byte by byte: resident, not just reserved
        del data
    with Meter() as small:
        sum(range(1000))
    big_peak, small_peak = big.result().peak_rss_bytes, small.result().peak_rss_bytes
    assert big_peak is not None and small_peak is not None
    assert big_peak >= 150 * MB  # the block's own peak above its start
    assert big.result().process_peak_rss_bytes - before >= 150 * MB  # the process's, kept apart
    assert small_peak <= big_peak - 150 * MB, "the peak must be reset per block"
    assert small.result().process_peak_rss_bytes <= big.result().process_peak_rss_bytes - 150 * MB
    assert "rss:" in big.result().method


def test_memory_held_before_the_block_is_not_the_blocks():
    # The framework's baseline (here 200 MB kept alive) belongs to the process, not the partition.
    _rss_bytes()
    kept = b"\x01" * (200 * MB)
    with Meter() as m:
        small = b"\x02" * (5 * MB)
        del small
    cost = m.result()
    assert len(kept) == 200 * MB  # still alive during the block
    assert cost.peak_rss_bytes is not None and cost.peak_rss_bytes < 30 * MB, cost.peak_rss_bytes
    assert cost.process_peak_rss_bytes >= 200 * MB  # the process's peak still says it
    assert "peak above start" in cost.method and "priced on the increment" in cost.method


def test_memory_is_priced_on_the_increment():
    from skipwise.core.pricing import load_prices

    prices = load_prices({}, "t")
    v = CostVector(wall_seconds=3600.0, cpu_seconds=0.0, peak_rss_bytes=2**30, process_peak_rss_bytes=10 * 2**30)
    assert prices.price(v, "aws-m7i").usd_compute == pytest.approx(0.0039375)  # 1 GiB-hour, not 10


def test_nested_meter_does_not_hide_the_outer_peak():
    before = _rss_bytes()
    with Meter() as outer:
        data = b"\x01" * (200 * MB)
        del data
        with Meter():
            pass
    assert outer.result().peak_rss_bytes >= 150 * MB
    assert outer.result().process_peak_rss_bytes - before >= 150 * MB


def test_short_blocks_have_microsecond_cpu():
    # os.times moves in 10 ms steps: a 2 ms partition would record 0 CPU. getrusage does not.
    for _ in range(20):
        with Meter() as m:
            _spin_cpu(0.002)
        cost = m.result()
        assert cost.cpu_seconds >= 0.0015, cost.cpu_seconds
    assert "getrusage" in cost.method


def test_child_process_cpu_is_counted():
    child = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    with Meter() as m:
        subprocess.run([sys.executable, "-c", child], check=True)
    assert m.result().cpu_seconds >= 0.3


def test_io_counter_bytes_inside_the_block_only():
    io = IOCounter()
    io.add_write(1_000)  # before the block: not ours
    with Meter(io=io) as m:
        io.add_write(12_345)
        io.add_read(678, egress_class="cross_region")
        io.add_list()
    io.add_read(5_000)  # after the block: not ours
    cost = m.result()
    assert cost.bytes_written == 12_345
    assert cost.bytes_read == 678
    assert (cost.put_requests, cost.get_requests, cost.list_requests, cost.requests) == (1, 1, 1, 3)
    assert cost.egress_cross_region_bytes == 678
    assert cost.egress_same_host_bytes == 12_345
    assert cost.egress_bytes == 678  # only what left the host


def test_without_io_counter_byte_figures_are_unmeasured():
    with Meter() as m:
        pass
    meta = m.result().to_metadata()
    assert "cost/bytes_read" not in meta and "cost/requests" not in meta
    assert "cost/wall_seconds" in meta and "cost/method" in meta


def test_no_gpu_means_gpu_fields_absent():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with Meter() as m:
        pass
    cost = m.result()
    assert cost.gpu_seconds is None and cost.gpu_peak_memory_bytes is None
    assert "gpu: none" in cost.method
    assert not any(k.startswith("cost/gpu") for k in cost.to_metadata())


def test_result_before_the_block_ends_is_an_error():
    m = Meter()
    with pytest.raises(RuntimeError, match="before"):
        m.result()


def test_metering_overhead_is_under_two_percent_of_200ms_of_work():
    io = IOCounter()

    def work() -> float:
        t0 = time.perf_counter()
        _spin_cpu(0.2)
        return time.perf_counter() - t0

    def empty_meter() -> float:
        t0 = time.perf_counter()
        with Meter(io=io) as m:
            pass
        m.result()
        return time.perf_counter() - t0

    work_s = min(work() for _ in range(5))
    overhead_s = min(empty_meter() for _ in range(5))
    assert overhead_s < 0.02 * work_s, f"meter overhead {overhead_s * 1e3:.2f} ms"


def test_falls_back_to_sampling_when_the_peak_cannot_be_reset(monkeypatch):
    import skipwise.engine.usage as usage

    before = _rss_bytes()
    monkeypatch.setattr(usage, "_reset_hwm", lambda: False)
    with Meter() as m:
        data = b"\x01" * (200 * MB)
        time.sleep(0.1)  # held for ten sampling periods
        del data
    cost = m.result()
    assert "sampled" in cost.method
    assert cost.peak_rss_bytes >= 150 * MB
    assert cost.process_peak_rss_bytes - before >= 150 * MB


class _FakeCuda:
    """Just enough of torch.cuda for the Meter: a block that allocates 3 MB on the GPU."""

    def __init__(self) -> None:
        self.allocations, self.peak, self.resets, self.syncs = 0, 0, 0, 0

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def synchronize(self) -> None:
        self.syncs += 1

    def reset_peak_memory_stats(self) -> None:
        self.resets += 1
        self.peak = 0

    def memory_stats(self) -> dict[str, int]:
        return {"allocation.all.allocated": self.allocations}

    def max_memory_allocated(self) -> int:
        return self.peak

    def allocate(self, n: int) -> None:
        self.allocations += 1
        self.peak = max(self.peak, n)


def test_gpu_figures_when_torch_is_imported_and_cuda_available(monkeypatch):
    import types

    cuda = _FakeCuda()
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    with Meter() as m:
        cuda.allocate(3 * MB)
        time.sleep(0.05)
    cost = m.result()
    assert cost.gpu_peak_memory_bytes == 3 * MB
    assert cost.gpu_seconds == cost.wall_seconds >= 0.05
    assert cuda.resets == 1 and cuda.syncs == 2  # synchronized before the clock stopped
    assert "gpu: torch.cuda" in cost.method

    with Meter() as idle:  # CUDA ready but unused in this block: no GPU time
        pass
    assert idle.result().gpu_seconds == 0.0
