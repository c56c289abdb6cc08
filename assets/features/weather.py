"""Hourly weather features per airport for one day, with short rolling means."""

from __future__ import annotations

import datetime

import polars as pl

WEATHER_VALUE_COLUMNS = ["temp", "wind_speed", "visib", "precip"]

# Names are fixed (not derived from window_hours) so downstream feature lists stay stable.
WEATHER_MEAN_COLUMNS = [f"{c}_mean_3h" for c in WEATHER_VALUE_COLUMNS]


def build_weather_features(
    weather: pl.DataFrame, day: datetime.date, window_hours: int = 3
) -> pl.DataFrame:
    """Build hourly weather features per origin for the observations of `day`.

    `weather` holds raw rows of `day - 1` and `day`; the previous day only serves as
    history for the rolling window. `obs_time` is the naive America/New_York wall-clock
    time built from the local year/month/day/hour columns (not the UTC `time_hour`).

    Duplicate (origin, obs_time) rows (e.g. the repeated 01:00 at the autumn DST change)
    are collapsed to the first one in input order (stable sort).

    Each `<col>_mean_3h` is the time-based mean per origin over (obs_time - window_hours,
    obs_time]: with the default window the current hour and the two before it, when present
    (missing hours just shrink the window), nulls ignored; null when all values are null.
    The column names keep the `_3h` suffix whatever `window_hours` is.

    Output columns: origin, obs_time, temp, wind_speed, visib, precip, temp_mean_3h,
    wind_speed_mean_3h, visib_mean_3h, precip_mean_3h; sorted by origin, obs_time.
    """
    frame = (
        weather.with_columns(
            (
                pl.datetime("year", "month", "day", time_unit="us")
                + pl.duration(hours=pl.col("hour").cast(pl.Int32))
            ).alias("obs_time"),
            *[pl.col(c).cast(pl.Float64) for c in WEATHER_VALUE_COLUMNS],
        )
        .select("origin", "obs_time", *WEATHER_VALUE_COLUMNS)
        .sort("origin", "obs_time", maintain_order=True)
        .unique(subset=["origin", "obs_time"], keep="first", maintain_order=True)
    )

    # group_by rolling + agg mean (rather than rolling_mean_by) so nulls are skipped
    # instead of poisoning or shrinking the window in version-dependent ways.
    means = frame.rolling(
        index_column="obs_time",
        period=f"{window_hours}h",
        closed="right",
        group_by="origin",
    ).agg(
        pl.col(c).mean().alias(m)
        for c, m in zip(WEATHER_VALUE_COLUMNS, WEATHER_MEAN_COLUMNS)
    )

    return (
        frame.join(means, on=["origin", "obs_time"], how="left")
        .filter(pl.col("obs_time").dt.date() == day)
        .select("origin", "obs_time", *WEATHER_VALUE_COLUMNS, *WEATHER_MEAN_COLUMNS)
        .sort("origin", "obs_time")
    )
