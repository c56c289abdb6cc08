"""Build the Dagster `Definitions` of a skipwise project."""

from __future__ import annotations

import importlib
from pathlib import Path

import dagster as dg

from skipwise.adapters.dagster.factory import build_asset, build_source
from skipwise.adapters.dagster.sensors import stale_partitions_sensor


def build_definitions(root: Path, graph_ref: str = "assets.graph:GRAPH", automation: bool = False) -> dg.Definitions:
    """Definitions for the graph named by `graph_ref`, with data under `root`.

    Always includes the `skipwise_stale_partitions` sensor (level-triggered on skipwise's plan: it
    sees raw DVC changes, code and params edits). With `automation=True` the assets also carry
    `AutomationCondition.eager()`, so Dagster's own automation reacts to upstream materializations.
    """
    module, _, name = graph_ref.partition(":")
    graph = getattr(importlib.import_module(module), name)
    sources = [build_source(s, root, graph_ref) for s in graph.sources]
    condition = dg.AutomationCondition.eager() if automation else None
    assets = [build_asset(a, graph, root, graph_ref, condition) for a in graph.assets]
    return dg.Definitions(assets=[*sources, *assets], sensors=[stale_partitions_sensor(root, graph_ref)])
