"""The asset bodies: thin calls from a partition's inputs to the pure feature and model functions."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from assets.features.flights import build_flight_features
from assets.features.training import as_of_join
from assets.features.weather import build_weather_features
from assets.graph import LOOKBACK_DAYS
from skipwise.core.spec import Result


def flight_features(ctx, raw_flights: pl.DataFrame) -> pl.DataFrame:
    """Features of the flights of ctx.day, from that day and the LOOKBACK_DAYS before it."""
    return build_flight_features(raw_flights, ctx.day, LOOKBACK_DAYS, float(ctx.params["delay_threshold_minutes"]))


def weather_features(ctx, raw_weather: pl.DataFrame) -> pl.DataFrame:
    """Weather features of ctx.day (the previous day feeds the rolling window)."""
    return build_weather_features(raw_weather, ctx.day, int(ctx.params.get("window_hours", 3)))


def training_set(ctx, flight_features: pl.DataFrame, weather_features: pl.DataFrame) -> pl.DataFrame:
    """Every flight with the weather known `weather_lead_minutes` before its departure."""
    lead = timedelta(minutes=ctx.params["weather_lead_minutes"])
    return as_of_join(flight_features, weather_features, lead)


def delay_model(ctx, training_set: pl.DataFrame) -> Result:
    """Train the delay model; the artifact is the output, the metrics go to metadata."""
    from assets.models.delay import train_delay_model

    artifact, metrics = train_delay_model(training_set, dict(ctx.params))
    return Result(artifact, {f"metrics/{k}": v for k, v in metrics.items()})


def delay_predictions(ctx, flight_features: pl.DataFrame, weather_features: pl.DataFrame, delay_model: bytes) -> pl.DataFrame:
    """Delay probability for each flight of ctx.day."""
    from assets.models.delay import score_flights

    lead = timedelta(minutes=ctx.params["weather_lead_minutes"])
    return score_flights(delay_model, as_of_join(flight_features, weather_features, lead))
