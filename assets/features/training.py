"""Point-in-time join of flight features with the weather known before departure."""

from __future__ import annotations

import datetime

import polars as pl

import skipwise as sw

from assets.features.flights import FLIGHT_SORT_KEYS

_ROW_ID = "__row_id"


def as_of_join(
    flights: pl.DataFrame,
    weather: pl.DataFrame,
    lead: datetime.timedelta = datetime.timedelta(hours=1),
) -> pl.DataFrame:
    """Attach to each flight its origin's latest weather observed at or before sched_dep - lead.

    `flights` is build_flight_features output (any number of days, any order), `weather` is
    build_weather_features output (any number of days, any order, unique per origin and
    obs_time). A weather row is eligible only when `obs_time <= sched_dep - lead`, so
    nothing observed after that instant can leak into the features. The chosen row's
    `obs_time` becomes `weather_obs_time`; other weather columns keep their names and are
    null (as is `weather_obs_time`) when the origin has no eligible observation.

    Output: all flight columns, then weather_obs_time and the weather value columns; sorted
    by sched_dep, carrier, flight, origin, dest, tailnum (ties keep input order).
    """
    joined = sw.as_of_join(flights, weather, left_on="sched_dep", right_on="obs_time", by="origin", lead=lead,
                           right_on_as="weather_obs_time")
    return joined.with_row_index(_ROW_ID).sort([*FLIGHT_SORT_KEYS, _ROW_ID], nulls_last=True).drop(_ROW_ID)
