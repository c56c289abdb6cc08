"""skipwise: incremental, cost-aware Dagster pipelines over DVC-versioned data."""

__version__ = "0.1.0"
