"""The only package that imports dagster: decorators, the IO manager, graph resolution, runs, sensors, schedules."""

import warnings

import dagster as dg

# skipwise relies on backfill policies and observable sources on purpose; their beta notices are noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from skipwise.adapters.dagster import graph as _graph  # noqa: E402
from skipwise.project import resolving as _resolving  # noqa: E402

# Definitions that import this adapter can be resolved into a graph (skipwise.project.resolving).
_resolving.register(_graph.resolve)

from skipwise.adapters.dagster.authoring import asset, dvc_source, object_source  # noqa: E402
from skipwise.adapters.dagster.iomanager import IOManager  # noqa: E402
from skipwise.adapters.dagster.retraining import new_raw_data, retrain_on_feature_change, weekly_retrain  # noqa: E402
from skipwise.adapters.dagster.sensors import stale_partitions_sensor  # noqa: E402
from skipwise.adapters.dagster.verification import verify_schedule  # noqa: E402

__all__ = [
    "asset",
    "dvc_source",
    "object_source",
    "IOManager",
    "stale_partitions_sensor",
    "new_raw_data",
    "retrain_on_feature_change",
    "weekly_retrain",
    "verify_schedule",
]
