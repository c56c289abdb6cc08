"""`materialize_project` for any graph: what the benchmark runs for a project whose graph is not the demo's.

`pipelines.adapters.dagster.run.materialize_project` builds its Dagster assets with the graph
reference "assets.graph:GRAPH" written into it, and the `skipwise` command has no option to name
another graph, so a project whose graph lives elsewhere (the generated `genassets.graph:GRAPH`)
cannot be run through them. This module is the same loop with the graph reference passed on; it
uses the adapter's own `build_asset`/`build_source`, `instance_for`, `run_groups` and range tags.

Imported by bench.systems (in-process runs) and copied into the temporary project as
`skipwise_stage.py`, the command of the `dvc repro` stage that runs skipwise:

    python skipwise_stage.py --graph genassets.graph:GRAPH --select event_features
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import dagster as dg

from pipelines.adapters.dagster.factory import build_asset, build_source
from pipelines.adapters.dagster.run import RANGE_END, RANGE_START, Summary, instance_for, run_groups
from pipelines.engine import load_project


def materialize_graph(root: Path, graph_ref: str, selection: list[str] | None, partition: str | None = None, tags: dict | None = None) -> Summary:
    """Run the selected assets of the graph `graph_ref` through Dagster, upstream first (one run per level)."""
    project = load_project(root, graph_ref)
    graph = project.graph
    names = set(selection) if selection else {a.name for a in graph.assets}
    sources = [build_source(s, project.root, graph_ref) for s in graph.sources]
    assets = [build_asset(a, graph, project.root, graph_ref) for a in graph.assets]
    instance = instance_for(project)
    summary = Summary()
    for group in run_groups(graph, names):
        run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        n_keys = 1
        if group[0].partitions is not None:
            keys = group[0].partitions.keys()
            first, _, last = (partition or f"{keys[0]}...{keys[-1]}").partition("...")
            n_keys = len(group[0].partitions.key_range(first, last or first))
            run_tags.update({RANGE_START: first, RANGE_END: last or first})
        result = dg.materialize(
            [*sources, *assets],
            selection=[a.name for a in group],
            instance=instance,
            tags=run_tags,
            raise_on_error=False,
        )
        summary.run_ids.append(result.run_id)
        summary.ok = summary.ok and result.success
        for a in group:
            summary.requested[a.name] = n_keys
            summary.computed[a.name] = sum(1 for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(a.name))
        if not result.success:
            break
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="skipwise materialize for the graph named by --graph.")
    p.add_argument("--graph", required=True, help="module:GRAPH")
    p.add_argument("--select", default=None, help="comma-separated assets (default: all)")
    p.add_argument("--partition", default=None, help="a key or a range a...b (default: all)")
    p.add_argument("--tags", default=None, help="run tags as JSON")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    selection = [s for s in args.select.split(",") if s] if args.select else None
    summary = materialize_graph(Path.cwd(), args.graph, selection, args.partition, json.loads(args.tags) if args.tags else None)
    print(summary.render(time.perf_counter() - t0))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
