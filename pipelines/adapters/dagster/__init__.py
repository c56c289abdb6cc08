"""The only package that imports dagster: turns a skipwise graph into Dagster definitions."""

from pipelines.adapters.dagster.definitions import build_definitions

__all__ = ["build_definitions"]
