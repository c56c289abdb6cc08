"""The generated project's feature logic (pure polars): a realistic aggregation over one day and the day before."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

KEYS = ["category", "hour"]


def hourly_aggregates(events: pl.DataFrame) -> pl.DataFrame:
    """Per category and hour: events, revenue, buyers, price and session statistics."""
    return (
        events.with_columns(
            pl.col("ts").dt.hour().cast(pl.Int8).alias("hour"),
            (pl.col("price") * pl.col("quantity")).alias("revenue"),
        )
        .group_by(KEYS)
        .agg(
            pl.len().alias("events"),
            pl.col("revenue").sum().alias("revenue"),
            pl.col("user_id").n_unique().alias("buyers"),
            pl.col("price").mean().alias("mean_price"),
            pl.col("price").max().alias("max_price"),
            pl.col("session_s").mean().alias("mean_session_s"),
        )
    )


def build_event_features(raw_events: pl.DataFrame, day: date) -> pl.DataFrame:
    """Hourly figures of `day`, each next to the same hour of the day before (growth features)."""
    ts_day = pl.col("ts").dt.date()
    today = hourly_aggregates(raw_events.filter(ts_day == day))
    before = hourly_aggregates(raw_events.filter(ts_day == day - timedelta(days=1))).select(
        *KEYS, pl.col("revenue").alias("revenue_prev_day"), pl.col("buyers").alias("buyers_prev_day")
    )
    return (
        today.join(before, on=KEYS, how="left")
        .with_columns(
            (pl.col("revenue") / pl.col("revenue_prev_day") - 1).alias("revenue_growth"),
            (pl.col("revenue") / pl.col("buyers")).alias("revenue_per_buyer"),
            pl.lit(day).alias("date"),
        )
        .sort(KEYS)
    )
