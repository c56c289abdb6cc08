"""The generated benchmark graph: raw_events (DVC) -> event_features (daily, reads the day and the day before).

`bench.gen` rewrites START/END when it copies this package into a temporary project.
"""

from __future__ import annotations

from datetime import date

from skipwise.core.partitions import DailyPartitions, Window
from skipwise.core.spec import Asset, Dep, Graph, Source

START = date(2024, 1, 1)
END = date(2024, 7, 19)

DAILY = DailyPartitions(START, END)

raw_events = Source("raw_events", "data/raw/events", DAILY, description="Synthetic shop events of one day, tracked by DVC.")

event_features = Asset(
    "event_features",
    "genassets.bodies:event_features",
    DAILY,
    deps=(Dep("raw_events", Window(1)),),
    description="Hourly revenue, buyers and session figures per category and country, with the day before.",
)

GRAPH = Graph(sources=(raw_events,), assets=(event_features,))
