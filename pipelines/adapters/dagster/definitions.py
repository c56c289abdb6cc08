"""Build the Dagster `Definitions` of a skipwise project."""

from __future__ import annotations

import importlib
from pathlib import Path

import dagster as dg

from pipelines.adapters.dagster.factory import build_asset, build_source


def build_definitions(root: Path, graph_ref: str = "assets.graph:GRAPH") -> dg.Definitions:
    """Definitions for the graph named by `graph_ref`, with data under `root`."""
    module, _, name = graph_ref.partition(":")
    graph = getattr(importlib.import_module(module), name)
    sources = [build_source(s, root, graph_ref) for s in graph.sources]
    assets = [build_asset(a, graph, root, graph_ref) for a in graph.assets]
    return dg.Definitions(assets=[*sources, *assets])
