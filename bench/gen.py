"""Deterministic synthetic raw data for the generated dataset: one ~10 MB parquet file of shop events per day.

Values are random (seeded by the day), so the files do not compress to nothing: about 500,000 rows
and 10.8 MB per day with zstd. Days are written by two processes (the machine has two cores).
"""

from __future__ import annotations

import io
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, timedelta, timezone
from multiprocessing import get_context
from pathlib import Path

SEED = 20240101
CATEGORIES = [f"cat_{i:02d}" for i in range(40)]
COUNTRIES = [f"C{i:02d}" for i in range(30)]


def day_frame(day: date, rows: int, seed: int = SEED):
    """The events of `day`: sorted timestamps, users, items, category, country, price, quantity, session."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng([seed, day.toordinal()])
    start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1_000_000)
    ts = np.sort(rng.integers(0, 86_400_000_000, rows)) + start
    return pl.DataFrame(
        {
            "ts": pl.Series(ts).cast(pl.Datetime("us")),
            "user_id": rng.integers(0, 200_000, rows, dtype=np.int32),
            "item_id": rng.integers(0, 50_000, rows, dtype=np.int32),
            "category": pl.Series(CATEGORIES).gather(rng.integers(0, len(CATEGORIES), rows)),
            "country": pl.Series(COUNTRIES).gather(rng.integers(0, len(COUNTRIES), rows)),
            "price": rng.lognormal(3.0, 1.0, rows),
            "quantity": rng.integers(1, 6, rows, dtype=np.int16),
            "session_s": rng.exponential(300.0, rows).astype(np.float32),
        }
    )


def write_day(out: str, day_iso: str, rows: int) -> int:
    """Write one day's file (atomically); returns its size."""
    day = date.fromisoformat(day_iso)
    buf = io.BytesIO()
    day_frame(day, rows).write_parquet(buf, compression="zstd", statistics=False)
    path = Path(out) / f"{day_iso}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return len(buf.getvalue())


def generate(out: Path, start: date, days: int, rows: int, workers: int = 2) -> int:
    """Write `days` daily files from `start` under `out`; returns the total bytes."""
    out.mkdir(parents=True, exist_ok=True)
    keys = [(start + timedelta(days=i)).isoformat() for i in range(days)]
    if workers <= 1:
        return sum(write_day(str(out), k, rows) for k in keys)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return sum(pool.map(write_day, [str(out)] * days, keys, [rows] * days))
