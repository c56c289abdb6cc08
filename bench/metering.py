"""Metering overhead: the Meter around one real partition's work versus the same work unmetered."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from bench.report import Cell


def meter_overhead(root: Path, repeats: int = 20) -> tuple[Cell, Cell]:
    """Seconds of flight_features for one real day (its 8 raw files read), bare and inside a Meter."""
    import polars as pl

    from assets.features.flights import build_flight_features
    from skipwise.core.cost import IOCounter
    from skipwise.metering import Meter

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
