"""The Dagster code location of the demo (workspace.yaml and `-m assets.definitions` load it)."""

from pathlib import Path

from skipwise.adapters.dagster import build_definitions

defs = build_definitions(Path(__file__).resolve().parent.parent)
