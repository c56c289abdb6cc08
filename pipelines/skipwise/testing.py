"""Testing a skipwise project: materialize a selection in process against a temporary root.

    import skipwise as sw
    from my_project import definitions

    def test_daily_sales(tmp_path):
        result = sw.testing.materialize(definitions.defs, "daily_sales", root=tmp_path)
        assert result.computed == {"daily_sales": ["2024-01-01", "2024-01-02", "2024-01-03"]}
        assert result.read("daily_sales", "2024-01-01").height == 3
        assert sw.testing.materialize(definitions.defs, root=tmp_path).computed == {}

`materialize` and its `MaterializeResult` live in `skipwise.adapters.dagster.testing` (they need Dagster).
"""

from skipwise.adapters.dagster.testing import MaterializeResult, materialize
from skipwise.core.errors import RunFailed

__all__ = ["MaterializeResult", "RunFailed", "materialize"]
