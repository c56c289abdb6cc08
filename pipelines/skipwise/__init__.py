"""skipwise: incremental, cost-aware Dagster pipelines over DVC-versioned data.

    import dagster as dg
    import skipwise as sw

    raw = sw.dvc_source("raw_sales", "data/raw/sales", partitions_def=DAILY)

    @sw.asset(partitions_def=DAILY)
    def sales(context: dg.AssetExecutionContext, raw_sales: pl.DataFrame) -> pl.DataFrame: ...

    defs = dg.Definitions(assets=[raw, sales], resources={"skipwise": sw.IOManager()})

`asset`, `dvc_source`, `object_source`, `IOManager`, the sensors `stale_partitions_sensor`, `new_raw_data` and
`retrain_on_feature_change`, the schedules `weekly_retrain` and `verify_schedule` (they import Dagster on
first use), for model assets `train_or_restore` and `model_registry`, `read`, `scan` and `relation`
(committed partitions, from outside a pipeline), `as_of_join` (a point-in-time join) and `testing`
(`sw.testing.materialize`: a selection in process against a temporary root, for tests) are the
public API; everything else may change.
"""

from skipwise.project import observing as _observing
from skipwise.project import recorder as _recorder

# First thing: from here on, the bytes each project module runs from are recorded, so a partition
# is never committed under the version of a file that changed after its module was imported.
_recorder.install(__file__)
# And what project code reads (files, environment variables) is observed while bodies run and modules import.
_observing.install()

from skipwise.core.version import __version__  # noqa: E402,F401 - `skipwise.__version__`

_PUBLIC = {
    "asset",
    "dvc_source",
    "object_source",
    "IOManager",
    "stale_partitions_sensor",
    "new_raw_data",
    "retrain_on_feature_change",
    "weekly_retrain",
    "verify_schedule",
}
_MODELS = {"train_or_restore", "model_registry"}  # no Dagster needed
_READING = {"read", "scan", "relation"}
__all__ = sorted(_PUBLIC | _MODELS | _READING | {"as_of_join"})


def __getattr__(name: str):  # noqa: ANN202
    # The public namespace resolves lazily: `import skipwise` (the CLI's fast path) imports neither Dagster
    # nor the engine, and each name costs its own imports on first use.
    if name in _PUBLIC:
        from skipwise.adapters import dagster as _dagster

        return getattr(_dagster, name)
    if name in _MODELS:
        from skipwise.models import registry

        return getattr(registry, name)
    if name in _READING:
        from skipwise.tables import reading

        return getattr(reading, name)
    if name == "testing":
        import importlib

        return importlib.import_module("skipwise.testing")
    if name == "as_of_join":
        from skipwise.tables.joins import as_of_join

        return as_of_join
    raise AttributeError(f"module 'skipwise' has no attribute {name!r}")
