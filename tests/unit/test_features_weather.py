"""Unit tests for assets.features.weather.build_weather_features (hand-computed answers)."""

import datetime as dt
import random

import polars as pl
import pytest

from assets.features.weather import build_weather_features

RAW_SCHEMA = {
    "origin": pl.String,
    "year": pl.Int32,
    "month": pl.Int32,
    "day": pl.Int32,
    "hour": pl.Int32,
    "temp": pl.Float64,
    "dewp": pl.Float64,
    "humid": pl.Float64,
    "wind_dir": pl.Float64,
    "wind_speed": pl.Float64,
    "wind_gust": pl.Float64,
    "precip": pl.Float64,
    "pressure": pl.Float64,
    "visib": pl.Float64,
    "time_hour": pl.Datetime("us", "UTC"),
}

DAY = dt.date(2013, 3, 5)
PREV = DAY - dt.timedelta(days=1)


def raw(
    origin: str,
    date: dt.date,
    hour: int,
    temp: float | None = 50.0,
    wind_speed: float | None = 5.0,
    visib: float | None = 10.0,
    precip: float | None = 0.0,
) -> dict:
    """One raw weather row; unused columns get filler values."""
    return {
        "origin": origin,
        "year": date.year,
        "month": date.month,
        "day": date.day,
        "hour": hour,
        "temp": temp,
        "dewp": 30.0,
        "humid": 50.0,
        "wind_dir": 180.0,
        "wind_speed": wind_speed,
        "wind_gust": None,
        "precip": precip,
        "pressure": 1012.0,
        "visib": visib,
        # Deliberately wrong UTC instant: obs_time must come from the local columns.
        "time_hour": dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RAW_SCHEMA, orient="row")


def at(hour: int, date: dt.date = DAY) -> dt.datetime:
    return dt.datetime(date.year, date.month, date.day) + dt.timedelta(hours=hour)


def test_columns_types_and_only_rows_of_day():
    out = build_weather_features(frame([raw("EWR", PREV, 23), raw("EWR", DAY, 0)]), DAY)
    assert out.columns == [
        "origin",
        "obs_time",
        "temp",
        "wind_speed",
        "visib",
        "precip",
        "temp_mean_3h",
        "wind_speed_mean_3h",
        "visib_mean_3h",
        "precip_mean_3h",
    ]
    assert out.schema["obs_time"] == pl.Datetime("us")  # naive local wall clock
    assert out["obs_time"].to_list() == [at(0)]


def test_rolling_mean_window_is_left_open_uses_previous_day_and_skips_nulls_and_gaps():
    rows = [
        raw("EWR", PREV, 21, temp=1000.0),  # exactly 3h before 00:00: outside every window
        raw("EWR", PREV, 23, temp=10.0),
        raw("EWR", DAY, 0, temp=20.0),
        raw("EWR", DAY, 1, temp=None),
        raw("EWR", DAY, 2, temp=40.0),
        # 03:00 missing
        raw("EWR", DAY, 4, temp=50.0),
        raw("EWR", DAY, 8, temp=None),  # nothing else within 3h: all-null window
    ]
    out = build_weather_features(frame(rows), DAY)
    assert out["obs_time"].to_list() == [at(0), at(1), at(2), at(4), at(8)]
    assert out["temp"].to_list() == [20.0, None, 40.0, 50.0, None]
    assert out["temp_mean_3h"].to_list() == [
        15.0,  # (21:00 prev, 00:00]: 10, 20 -- the 21:00 row sits on the open edge
        15.0,  # 23:00 prev, 00:00, 01:00(null)
        30.0,  # 00:00, 01:00(null), 02:00
        45.0,  # 02:00, 04:00 (03:00 missing; 01:00 is exactly 3h back)
        None,
    ]


def test_all_value_columns_are_averaged_per_origin():
    rows = [
        raw("EWR", DAY, 0, temp=10.0, wind_speed=2.0, visib=10.0, precip=0.0),
        raw("EWR", DAY, 1, temp=20.0, wind_speed=4.0, visib=4.0, precip=0.5),
        raw("JFK", DAY, 1, temp=90.0, wind_speed=30.0, visib=1.0, precip=2.0),
    ]
    out = build_weather_features(frame(rows), DAY)
    ewr1 = out.filter((pl.col("origin") == "EWR") & (pl.col("obs_time") == at(1)))
    ewr1 = ewr1.row(0, named=True)
    assert ewr1["temp_mean_3h"] == 15.0
    assert ewr1["wind_speed_mean_3h"] == 3.0
    assert ewr1["visib_mean_3h"] == 7.0
    assert ewr1["precip_mean_3h"] == 0.25
    jfk1 = out.filter(pl.col("origin") == "JFK").row(0, named=True)
    assert jfk1["temp_mean_3h"] == 90.0  # EWR values never leak into JFK


def test_duplicate_hour_keeps_first_row_in_input_order():
    # Same local hour twice, as at the autumn DST change (01:00 EDT then 01:00 EST).
    rows = [
        raw("LGA", DAY, 0, temp=40.0),
        raw("LGA", DAY, 1, temp=51.98),
        raw("LGA", DAY, 1, temp=50.0),
        raw("LGA", DAY, 2, temp=49.0),
    ]
    out = build_weather_features(frame(rows), DAY)
    assert out["obs_time"].to_list() == [at(0), at(1), at(2)]
    assert out["temp"].to_list() == [40.0, 51.98, 49.0]
    assert out["temp_mean_3h"].to_list() == pytest.approx([40.0, 45.99, (40.0 + 51.98 + 49.0) / 3])


def test_window_hours_parameter_changes_the_window():
    rows = [raw("EWR", DAY, h, temp=float(10 * h)) for h in range(4)]
    out = build_weather_features(frame(rows), DAY, window_hours=1)
    assert out["temp_mean_3h"].to_list() == [0.0, 10.0, 20.0, 30.0]
    out = build_weather_features(frame(rows), DAY, window_hours=2)
    assert out["temp_mean_3h"].to_list() == [0.0, 5.0, 15.0, 25.0]


def test_sorted_by_origin_then_time_regardless_of_input_order():
    rows = [raw(o, d, h, temp=float(h)) for o in ("LGA", "EWR", "JFK") for d in (PREV, DAY) for h in (22, 3, 0)]
    expected = build_weather_features(frame(rows), DAY)
    assert expected.select("origin", "obs_time").rows() == [
        (o, at(h)) for o in ("EWR", "JFK", "LGA") for h in (0, 3, 22)
    ]
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert build_weather_features(frame(shuffled), DAY).equals(expected)


def test_day_without_observations_gives_empty_frame():
    out = build_weather_features(frame([raw("EWR", PREV, 5)]), DAY)
    assert out.height == 0
    assert out.schema["temp_mean_3h"] == pl.Float64
