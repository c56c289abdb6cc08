"""The only package that imports dagster: turns a skipwise graph into Dagster definitions."""

import warnings

import dagster as dg

# skipwise relies on backfill policies and observable sources on purpose; their beta notices are noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from skipwise.adapters.dagster.definitions import build_definitions  # noqa: E402

__all__ = ["build_definitions"]
