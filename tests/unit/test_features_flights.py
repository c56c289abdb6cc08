"""Unit tests for assets.features.flights.build_flight_features (hand-computed answers)."""

import datetime as dt
import random

import polars as pl
import pytest

from assets.features.flights import build_flight_features

RAW_SCHEMA = {
    "year": pl.Int32,
    "month": pl.Int32,
    "day": pl.Int32,
    "dep_time": pl.Int32,
    "sched_dep_time": pl.Int32,
    "dep_delay": pl.Float64,
    "arr_time": pl.Int32,
    "sched_arr_time": pl.Int32,
    "arr_delay": pl.Float64,
    "carrier": pl.String,
    "flight": pl.Int32,
    "tailnum": pl.String,
    "origin": pl.String,
    "dest": pl.String,
    "air_time": pl.Float64,
    "distance": pl.Float64,
    "hour": pl.Int32,
    "minute": pl.Int32,
    "time_hour": pl.Datetime("us", "UTC"),
}

DAY = dt.date(2013, 1, 8)  # a Tuesday


def raw(
    date: dt.date,
    sched: int,
    carrier: str = "AA",
    flight: int = 1,
    origin: str = "JFK",
    dep_delay: float | None = 0.0,
    arr_delay: float | None = 0.0,
    cancelled: bool = False,
    dest: str = "MIA",
    tailnum: str | None = "N1",
    distance: float = 1089.0,
) -> dict:
    """One raw flights row; only the fields the features use matter."""
    return {
        "year": date.year,
        "month": date.month,
        "day": date.day,
        "dep_time": None if cancelled else sched,
        "sched_dep_time": sched,
        "dep_delay": None if cancelled else dep_delay,
        "arr_time": None if cancelled else sched + 300,
        "sched_arr_time": sched + 300,
        "arr_delay": None if cancelled else arr_delay,
        "carrier": carrier,
        "flight": flight,
        "tailnum": tailnum,
        "origin": origin,
        "dest": dest,
        "air_time": None if cancelled else 150.0,
        "distance": distance,
        "hour": sched // 100,
        "minute": sched % 100,
        # UTC instant is deliberately inconsistent: features must use the local columns.
        "time_hour": dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RAW_SCHEMA, orient="row")


def test_output_has_only_the_day_and_exact_columns_and_types():
    rows = [
        raw(DAY - dt.timedelta(days=1), 900, flight=1),
        raw(DAY, 905, flight=2),
        raw(DAY + dt.timedelta(days=1), 910, flight=3),
    ]
    out = build_flight_features(frame(rows), DAY)
    assert out.schema == pl.Schema(
        {
            "date": pl.Date,
            "carrier": pl.String,
            "flight": pl.Int32,
            "tailnum": pl.String,
            "origin": pl.String,
            "dest": pl.String,
            "sched_dep": pl.Datetime("us"),
            "sched_dep_hour": pl.Int32,
            "weekday": pl.Int8,
            "distance": pl.Float64,
            "carrier_mean_dep_delay_7d": pl.Float64,
            "origin_mean_dep_delay_7d": pl.Float64,
            "cancelled": pl.Boolean,
            "label": pl.Boolean,
        }
    )
    assert out["flight"].to_list() == [2]
    assert out["date"].to_list() == [DAY]


def test_schedule_time_features_use_local_wall_clock():
    out = build_flight_features(frame([raw(DAY, 1745), raw(DAY, 5, flight=2)]), DAY)
    assert out["sched_dep"].to_list() == [
        dt.datetime(2013, 1, 8, 0, 5),
        dt.datetime(2013, 1, 8, 17, 45),
    ]
    assert out["sched_dep_hour"].to_list() == [0, 17]
    assert out["weekday"].to_list() == [2, 2]  # Tuesday
    assert out["sched_dep"].dtype.time_zone is None


def test_history_means_use_only_previous_days_within_lookback_and_ignore_nulls():
    rows = [
        raw(dt.date(2012, 12, 31), 800, "AA", 10, "JFK", dep_delay=1000.0),  # 8 days back: outside
        raw(dt.date(2013, 1, 1), 800, "AA", 11, "JFK", dep_delay=10.0),  # exactly 7 days back
        raw(dt.date(2013, 1, 7), 800, "AA", 12, "LGA", dep_delay=20.0),
        raw(dt.date(2013, 1, 7), 900, "AA", 13, "JFK", cancelled=True),  # null delay ignored
        raw(DAY, 700, "AA", 1, "JFK", dep_delay=500.0),  # same day: must not leak
        raw(DAY, 710, "UA", 2, "LGA"),
        raw(DAY, 720, "B6", 3, "EWR"),
    ]
    out = build_flight_features(frame(rows), DAY, lookback_days=7)
    got = {
        r["carrier"]: (r["carrier_mean_dep_delay_7d"], r["origin_mean_dep_delay_7d"]) for r in out.iter_rows(named=True)
    }
    assert got == {
        "AA": (15.0, 10.0),  # carrier (10+20)/2; JFK only 10
        "UA": (None, 20.0),  # no UA history; LGA 20
        "B6": (None, None),  # neither B6 nor EWR seen before
    }


def test_shorter_lookback_drops_older_history():
    rows = [
        raw(dt.date(2013, 1, 5), 800, dep_delay=30.0, flight=9),
        raw(dt.date(2013, 1, 7), 800, dep_delay=10.0, flight=8),
        raw(DAY, 900),
    ]
    out = build_flight_features(frame(rows), DAY, lookback_days=1)
    assert out["carrier_mean_dep_delay_7d"].to_list() == [10.0]


def test_label_rule_cancelled_diverted_and_threshold():
    rows = [
        raw(DAY, 600, flight=1, cancelled=True),
        raw(DAY, 601, flight=2, arr_delay=None),  # departed, no arrival delay: diverted
        raw(DAY, 602, flight=3, arr_delay=15.0),  # at threshold: not delayed
        raw(DAY, 603, flight=4, arr_delay=15.5),
        raw(DAY, 604, flight=5, arr_delay=-7.0),
        raw(DAY, 605, flight=6, dep_delay=90.0, arr_delay=14.0),  # made up time in the air
    ]
    out = build_flight_features(frame(rows), DAY)
    assert out["flight"].to_list() == [1, 2, 3, 4, 5, 6]
    assert out["cancelled"].to_list() == [True, False, False, False, False, False]
    assert out["label"].to_list() == [True, True, False, True, False, False]

    stricter = build_flight_features(frame(rows), DAY, delay_threshold_minutes=10.0)
    assert stricter["label"].to_list() == [True, True, True, True, False, True]


def test_sorted_and_independent_of_input_order():
    rows = [
        raw(DAY, 900, "UA", 5, tailnum="N9"),
        raw(DAY, 900, "AA", 7, tailnum=None),
        raw(DAY, 900, "AA", 7, dest="BOS", tailnum="N3"),
        raw(DAY, 830, "UA", 1),
        raw(DAY, 900, "AA", 2),
        raw(DAY - dt.timedelta(days=2), 800, "AA", 3, dep_delay=4.0),
    ]
    expected = build_flight_features(frame(rows), DAY)
    assert [(r["carrier"], r["flight"], r["dest"]) for r in expected.iter_rows(named=True)] == [
        ("UA", 1, "MIA"),
        ("AA", 2, "MIA"),
        ("AA", 7, "BOS"),
        ("AA", 7, "MIA"),
        ("UA", 5, "MIA"),
    ]
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert build_flight_features(frame(shuffled), DAY).equals(expected)


@pytest.mark.parametrize("rows", [[], [raw(DAY - dt.timedelta(days=1), 900)]])
def test_day_without_flights_gives_empty_frame_with_schema(rows):
    out = build_flight_features(frame(rows), DAY)
    assert out.height == 0
    assert out.columns[0] == "date" and out.columns[-1] == "label"
    assert out.schema["sched_dep"] == pl.Datetime("us")
