"""Per-flight features for one day, with carrier/origin delay history from preceding days."""

from __future__ import annotations

import datetime

import polars as pl

FLIGHT_SORT_KEYS = ["sched_dep", "carrier", "flight", "origin", "dest", "tailnum"]

FLIGHT_FEATURE_COLUMNS = [
    "date",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "sched_dep",
    "sched_dep_hour",
    "weekday",
    "distance",
    "carrier_mean_dep_delay_7d",
    "origin_mean_dep_delay_7d",
    "cancelled",
    "label",
]


def _with_local_times(flights: pl.DataFrame) -> pl.DataFrame:
    """Add `date` and naive local `sched_dep` built from the local calendar columns.

    time_hour is UTC; the local columns are used instead so flights line up with
    weather on the same America/New_York wall clock without tz conversion.
    """
    sched = pl.col("sched_dep_time").cast(pl.Int32)
    return flights.with_columns(
        pl.date("year", "month", "day").alias("date"),
        # A duration offset (not pl.datetime(hour=...)) so a 2400 hhmm rolls to the next day
        # instead of failing.
        (
            pl.datetime("year", "month", "day", time_unit="us")
            + pl.duration(hours=sched // 100, minutes=sched % 100)
        ).alias("sched_dep"),
    )


def _history_means(
    history: pl.DataFrame, key: str, name: str
) -> pl.DataFrame:
    """Mean dep_delay per `key` over the history rows; nulls (cancellations) are ignored."""
    return history.group_by(key).agg(
        pl.col("dep_delay").cast(pl.Float64).mean().alias(name)
    )


def build_flight_features(
    flights: pl.DataFrame,
    day: datetime.date,
    lookback_days: int = 7,
    delay_threshold_minutes: float = 15.0,
) -> pl.DataFrame:
    """Build one row of features (and the label) per flight scheduled on `day`.

    `flights` holds raw rows for days `day - lookback_days` .. `day`; any of them may be
    missing, and rows outside that range are ignored.

    History features (`carrier_mean_dep_delay_7d`, `origin_mean_dep_delay_7d`) are the mean
    `dep_delay` over the lookback days strictly before `day` (never `day` itself, which would
    leak same-day outcomes), nulls ignored, and null when there is no history.

    Label rule: `cancelled` is True when `dep_time` is null. `label` is True when the flight
    was cancelled, OR diverted (`arr_delay` is null but it departed), OR arrived more than
    `delay_threshold_minutes` late (strictly greater). On-time and early arrivals are False.

    Output columns (in order): date, carrier, flight, tailnum, origin, dest, sched_dep
    (naive local Datetime us), sched_dep_hour, weekday (1=Mon..7=Sun), distance,
    carrier_mean_dep_delay_7d, origin_mean_dep_delay_7d, cancelled, label; sorted by
    sched_dep, carrier, flight, origin, dest, tailnum.
    """
    frame = _with_local_times(flights)
    start = day - datetime.timedelta(days=lookback_days)
    history = frame.filter((pl.col("date") >= start) & (pl.col("date") < day))
    today = frame.filter(pl.col("date") == day)

    carrier_means = _history_means(history, "carrier", "carrier_mean_dep_delay_7d")
    origin_means = _history_means(history, "origin", "origin_mean_dep_delay_7d")

    arr_delay = pl.col("arr_delay").cast(pl.Float64)
    cancelled = pl.col("dep_time").is_null()
    out = (
        today.join(carrier_means, on="carrier", how="left")
        .join(origin_means, on="origin", how="left")
        .with_columns(
            pl.col("flight").cast(pl.Int32),
            pl.col("distance").cast(pl.Float64),
            pl.col("sched_dep").dt.hour().cast(pl.Int32).alias("sched_dep_hour"),
            pl.col("sched_dep").dt.weekday().cast(pl.Int8).alias("weekday"),
            pl.col("carrier_mean_dep_delay_7d").cast(pl.Float64),
            pl.col("origin_mean_dep_delay_7d").cast(pl.Float64),
            cancelled.alias("cancelled"),
            (
                cancelled
                | arr_delay.is_null()
                | (arr_delay > delay_threshold_minutes)
            ).alias("label"),
        )
        .select(FLIGHT_FEATURE_COLUMNS)
    )
    # maintain_order keeps exact-duplicate keys in input order, so equal input -> equal output.
    return out.sort(FLIGHT_SORT_KEYS, nulls_last=True, maintain_order=True)
