"""`skipwise materialize` for a project whose graph is not the demo's (the generated dataset's).

Equivalent to `skipwise --graph genassets.graph:GRAPH materialize ...`, importable in-process.

Imported by bench.systems (in-process runs) and copied into the temporary project as
`skipwise_stage.py`, the command of the `dvc repro` stage that runs skipwise:

    python skipwise_stage.py --graph genassets.graph:GRAPH --select event_features --partition a...b
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

def materialize_graph(root: Path, graph_ref: str, selection: list[str] | None, partition: str | None = None, tags: dict | None = None):
    """skipwise's `materialize_project` on the graph `graph_ref` of the project at `root`."""
    from pipelines.adapters.dagster.run import materialize_project
    from pipelines.engine import load_project

    return materialize_project(load_project(root, graph_ref), selection, partition, dict(tags or {}))


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
