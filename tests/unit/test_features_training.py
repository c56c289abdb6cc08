"""Unit tests for assets.features.training.as_of_join (point-in-time correctness)."""

import datetime as dt
import random

import polars as pl

from assets.features.training import as_of_join

FLIGHT_SCHEMA = {
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

WEATHER_SCHEMA = {
    "origin": pl.String,
    "obs_time": pl.Datetime("us"),
    "temp": pl.Float64,
    "wind_speed": pl.Float64,
    "visib": pl.Float64,
    "precip": pl.Float64,
    "temp_mean_3h": pl.Float64,
    "wind_speed_mean_3h": pl.Float64,
    "visib_mean_3h": pl.Float64,
    "precip_mean_3h": pl.Float64,
}

FUTURE_TEMP = 999.0  # marks weather that must never reach a flight


def flight(sched_dep: dt.datetime, flight_no: int, origin: str = "EWR", carrier: str = "UA") -> dict:
    return {
        "date": sched_dep.date(),
        "carrier": carrier,
        "flight": flight_no,
        "tailnum": f"N{flight_no}",
        "origin": origin,
        "dest": "ORD",
        "sched_dep": sched_dep,
        "sched_dep_hour": sched_dep.hour,
        "weekday": sched_dep.isoweekday(),
        "distance": 719.0,
        "carrier_mean_dep_delay_7d": 3.0,
        "origin_mean_dep_delay_7d": 4.0,
        "cancelled": False,
        "label": False,
    }


def obs(origin: str, obs_time: dt.datetime, temp: float) -> dict:
    # temp doubles as a row id; the other values are derived so every column is checked.
    return {
        "origin": origin,
        "obs_time": obs_time,
        "temp": temp,
        "wind_speed": temp + 1,
        "visib": temp + 2,
        "precip": temp + 3,
        "temp_mean_3h": temp + 4,
        "wind_speed_mean_3h": temp + 5,
        "visib_mean_3h": temp + 6,
        "precip_mean_3h": temp + 7,
    }


def flights_frame(rows):
    return pl.DataFrame(rows, schema=FLIGHT_SCHEMA, orient="row")


def weather_frame(rows):
    return pl.DataFrame(rows, schema=WEATHER_SCHEMA, orient="row")


def t(hour: int, minute: int = 0, day: int = 5) -> dt.datetime:
    return dt.datetime(2013, 6, day, hour, minute)


def test_point_in_time_weather_is_never_later_than_sched_dep_minus_one_hour():
    flights = flights_frame(
        [
            flight(t(10, 0), 1),  # cutoff 09:00 -> the 09:00 row (exactly 60 min before) is used
            flight(t(9, 59), 2),  # cutoff 08:59 -> 09:00 is 59 min before: must fall back to 08:00
            flight(t(10, 30), 3),  # cutoff 09:30 -> 09:00
        ]
    )
    weather = weather_frame(
        [
            obs("EWR", t(8), 8.0),
            obs("EWR", t(9), 9.0),
            obs("EWR", t(9, 31), FUTURE_TEMP),  # 59 min before flight 3
            obs("EWR", t(10), FUTURE_TEMP),
            obs("EWR", t(11), FUTURE_TEMP),
        ]
    )
    out = as_of_join(flights, weather)
    assert out["flight"].to_list() == [2, 1, 3]
    assert out["weather_obs_time"].to_list() == [t(8), t(9), t(9)]
    assert out["temp"].to_list() == [8.0, 9.0, 9.0]
    assert FUTURE_TEMP not in out["temp"].to_list()
    assert (out["weather_obs_time"] <= out["sched_dep"] - dt.timedelta(hours=1)).all()


def test_all_weather_columns_come_from_the_chosen_row():
    out = as_of_join(flights_frame([flight(t(12), 1)]), weather_frame([obs("EWR", t(10), 10.0)]))
    row = out.row(0, named=True)
    assert [row[c] for c in WEATHER_SCHEMA if c not in ("origin", "obs_time")] == [
        10.0,
        11.0,
        12.0,
        13.0,
        14.0,
        15.0,
        16.0,
        17.0,
    ]
    assert out.columns == [*FLIGHT_SCHEMA, "weather_obs_time", *list(WEATHER_SCHEMA)[2:]]


def test_weather_is_matched_by_origin_and_missing_weather_gives_nulls():
    flights = flights_frame(
        [
            flight(t(12), 1, origin="EWR"),
            flight(t(12), 2, origin="JFK"),
            flight(t(12), 3, origin="LGA"),  # no LGA weather at all
            flight(t(6), 4, origin="JFK"),  # JFK weather only starts at 07:00
        ]
    )
    weather = weather_frame(
        [
            obs("EWR", t(10), 1.0),
            obs("JFK", t(7), 2.0),
            obs("JFK", t(11), 3.0),
            obs("EWR", t(11), 4.0),
        ]
    )
    out = as_of_join(flights, weather)
    got = {r["flight"]: (r["weather_obs_time"], r["temp"], r["visib_mean_3h"]) for r in out.iter_rows(named=True)}
    assert got == {
        1: (t(11), 4.0, 10.0),
        2: (t(11), 3.0, 9.0),
        3: (None, None, None),
        4: (None, None, None),
    }


def test_weather_from_the_previous_day_serves_early_flights():
    flights = flights_frame([flight(t(0, 30, day=6), 1)])
    weather = weather_frame([obs("EWR", t(22, day=5), 1.0), obs("EWR", t(23, day=5), 2.0)])
    out = as_of_join(flights, weather)
    assert out["weather_obs_time"].to_list() == [t(23, day=5)]


def test_unsorted_inputs_give_the_sorted_result_and_keep_every_flight_once():
    flight_rows = [
        flight(t(h, m, day=d), 100 * d + h, origin=o, carrier=c)
        for d in (5, 6)
        for h, m in ((7, 15), (9, 0), (18, 45))
        for o, c in (("EWR", "UA"), ("JFK", "B6"), ("LGA", "AA"))
    ]
    weather_rows = [
        obs(o, t(h, day=d), float(10 * d + h)) for d in (5, 6) for h in range(0, 24, 2) for o in ("EWR", "JFK", "LGA")
    ]
    expected = as_of_join(flights_frame(flight_rows), weather_frame(weather_rows))
    assert expected.height == len(flight_rows)
    assert expected.select("sched_dep", "carrier").rows() == sorted((r["sched_dep"], r["carrier"]) for r in flight_rows)
    rng = random.Random(7)
    for _ in range(3):
        rng.shuffle(flight_rows)
        rng.shuffle(weather_rows)
        got = as_of_join(flights_frame(flight_rows), weather_frame(weather_rows))
        assert got.equals(expected)
    # 18:45 on day 6 -> cutoff 17:45 -> latest even hour is 16:00
    late = expected.filter(pl.col("sched_dep") == t(18, 45, day=6))
    assert late["temp"].to_list() == [76.0, 76.0, 76.0]


def test_custom_lead():
    flights = flights_frame([flight(t(10), 1)])
    weather = weather_frame([obs("EWR", t(8), 8.0), obs("EWR", t(9), 9.0), obs("EWR", t(10), 10.0)])
    assert as_of_join(flights, weather, lead=dt.timedelta(0))["temp"].to_list() == [10.0]
    assert as_of_join(flights, weather, lead=dt.timedelta(hours=2))["temp"].to_list() == [8.0]
