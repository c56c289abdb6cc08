"""Loading a project: its root, the graph of its definitions (`skipwise.project.resolving`), and the
`Project` the engine works on, with params.yaml checked once."""

from __future__ import annotations

import sys
from pathlib import Path

from skipwise.core import distributions
from skipwise.engine.project import Project
from skipwise.project.resolving import resolve_graph
from skipwise.project.root import definitions_of, find_root


def load_project(root: Path | None = None, definitions: str | None = None, refresh: bool = False) -> Project:
    """Load the project at `root` (default: found from the current folder) with the graph of its
    Dagster definitions (default: the module its config names); params.yaml is checked now.
    `refresh` resolves the graph from the definitions even if its snapshot is valid."""
    root = Path(root or find_root()).resolve()
    distributions.keep_providers_in(root / "data" / ".skipwise" / "providers.json")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    definitions = definitions or definitions_of(root)
    graph, _ = resolve_graph(root, definitions, refresh)
    project = Project(root, graph, definitions=definitions)
    for asset in graph.assets[:1]:
        project.params_of(asset)  # checks all of params.yaml now, not inside a step
    return project
