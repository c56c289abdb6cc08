"""The generated benchmark project's Dagster definitions: raw_events (DVC, daily) -> event_features
(daily, reads the day and the day before).

`bench.workspace.setup_gen` rewrites START/END when it copies this package into a temporary project.
"""

from __future__ import annotations

import datetime

import dagster as dg
import polars as pl

import skipwise as sw
from genassets.features import build_event_features

START = "2024-01-01"
END = "2024-07-19"

DAILY = dg.DailyPartitionsDefinition(start_date=START, end_date=END)

raw_events = sw.dvc_source("raw_events", "data/raw/events", partitions_def=DAILY,
                           description="Synthetic shop events of one day, tracked by DVC.")


@sw.asset(partitions_def=DAILY, group_name="features",
          ins={"raw_events": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1))})
def event_features(context: dg.AssetExecutionContext, raw_events: pl.DataFrame) -> pl.DataFrame:
    """Hourly revenue, buyers and session figures per category, with the same hour of the day before."""
    return build_event_features(raw_events, datetime.date.fromisoformat(context.partition_key))


defs = dg.Definitions(assets=[raw_events, event_features], resources={"skipwise": sw.IOManager()})
