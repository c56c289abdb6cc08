"""Asset checks of the demo: the training set, the promoted model and the predictions.

They read the committed partitions through the skipwise IO manager and their thresholds from
params.yaml (the delay_model section), so `dvc exp run -S delay_model.auc_floor=0.7` moves them.
"""

from __future__ import annotations

import datetime
import os
import warnings
from pathlib import Path

import dagster as dg
import polars as pl

import skipwise as sw
from assets.calendar import DAILY

ROOT = Path(__file__).resolve().parent.parent
#: The training set has at most this many rows (the flights of a year are 336,776), at least one.
MAX_TRAINING_ROWS = 400_000


def _params(section: str) -> dict:
    import yaml

    path = _root() / "params.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    return dict((data or {}).get(section) or {})


@dg.asset_check(asset="training_set", description="No null label, no weather observed after its cut-off, a sane row count.")
def training_set_is_sound(training_set: pl.DataFrame) -> dg.AssetCheckResult:
    lead = datetime.timedelta(minutes=int(_params("training_set").get("weather_lead_minutes", 60)))
    null_labels = training_set.get_column("label").null_count()
    leaks = training_set.filter(pl.col("weather_obs_time") > pl.col("sched_dep") - pl.lit(lead)).height
    rows = training_set.height
    return dg.AssetCheckResult(
        passed=null_labels == 0 and leaks == 0 and 0 < rows <= MAX_TRAINING_ROWS,
        metadata={"null_labels": null_labels, "weather_after_cutoff": leaks, "rows": rows, "max_rows": MAX_TRAINING_ROWS},
    )


@dg.asset_check(asset="delay_model", description="The promoted model's validation AUC is at least auc_floor (params.yaml).")
def delay_model_auc_above_floor(delay_model: bytes) -> dg.AssetCheckResult:
    floor = float(_params("delay_model").get("auc_floor", 0.6))
    version = sw.model_registry("delay_model", root=_root()).version_of(delay_model)
    auc = version.metric_value if version is not None else None
    return dg.AssetCheckResult(
        passed=auc is not None and auc >= floor,
        metadata={"auc": auc if auc is not None else float("nan"), "floor": floor,
                  "version": version.version if version else "unregistered"},
    )


def _root() -> Path:
    """The project the run works on: $SKIPWISE_ROOT when set (`skipwise materialize` sets it), else this repository."""
    return Path(os.environ.get("SKIPWISE_ROOT") or ROOT).resolve()


def delay_predictions_are_probabilities(delay_predictions: pl.DataFrame) -> dg.AssetCheckResult:
    p = pl.col("delay_probability")
    outside = delay_predictions.filter(p.is_null() | (p < 0) | (p > 1)).height
    keys = ["date", "carrier", "flight", "origin", "dest", "sched_dep"]
    duplicates = delay_predictions.height - delay_predictions.select(keys).unique().height
    return dg.AssetCheckResult(passed=outside == 0 and duplicates == 0,
                               metadata={"outside_0_1": outside, "duplicate_flights": duplicates, "rows": delay_predictions.height})


with warnings.catch_warnings():  # per-partition checks are a Dagster preview; the demo uses them on purpose
    warnings.simplefilter("ignore", dg.PreviewWarning)
    predictions_check = dg.asset_check(asset="delay_predictions", partitions_def=DAILY,
                                       description="Probabilities in [0, 1], exactly one per flight.")(delay_predictions_are_probabilities)

CHECKS = [training_set_is_sound, delay_model_auc_above_floor, predictions_check]
