"""skipwise: incremental, cost-aware Dagster pipelines over DVC-versioned data."""

from skipwise import loaded as _loaded

# First thing: from here on, the bytes each project module runs from are recorded, so a partition
# is never committed under the version of a file that changed after its module was imported.
_loaded.install(__file__)

__version__ = "0.1.0"
