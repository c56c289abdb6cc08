"""Metering overhead: the Meter around one real partition's work versus the same work unmetered."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from bench.report import Cell


def meter_overhead(root: Path, repeats: int = 20) -> tuple[Cell, Cell]:
    """Seconds of flight_features for one real day (its 8 raw files read), bare and inside a Meter."""
    import polars as pl
    from skipwise.core.cost import IOCounter
    from skipwise.engine.metering import Meter

    from assets.features.flights import build_flight_features

    day = date(2013, 3, 14)
    files = [root / "data/raw/flights" / f"2013-03-{d:02d}.parquet" for d in range(7, 15)]
    files = [f for f in files if f.exists()]

    def work() -> None:
        build_flight_features(pl.concat([pl.read_parquet(f) for f in files]), day)

    bare, metered = Cell(), Cell()
    work()  # warm caches and imports
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        t0 = time.perf_counter()
        work()
        bare.add(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with Meter(IOCounter()) as m:
            work()
        m.result()
        metered.add(time.perf_counter() - t0)
    return bare, metered


def meter_fixed_cost(batches: int = 7, per_batch: int = 500) -> Cell:
    """CPU seconds one `Meter` adds around any block (entry and exit, its /proc reads and RSS
    reset, the I/O snapshot), from batches of empty metered blocks: a fixed cost measured over
    enough repetitions to mean something, unlike a difference of two noisy timings."""
    from skipwise.core.cost import IOCounter
    from skipwise.engine.metering import Meter

    io, cell = IOCounter(), Cell()
    for _ in range(batches):
        c0 = time.process_time()
        for _ in range(per_batch):
            with Meter(io) as m:
                pass  # an empty block: what is measured is the Meter's own entry and exit
            m.result()
        cell.add((time.process_time() - c0) / per_batch)
    return cell
