"""The benchmark's branch-switch scenario, small: a real git repository, three real builds through
Dagster, and the switch back restores every partition (the numbers it reports are checked, not its
timings)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_switching_back_to_a_built_branch_restores_every_partition(tmp_path, monkeypatch):
    from bench.branch_switch import branch_switch

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))  # each build sets the workspace's own
    result = branch_switch(tmp_path, days=3, rows=2_000)
    assert (result.partitions, result.scratch.computed, result.on_b.computed) == (3, 3, 3)
    assert (result.back.computed, result.restored) == (0, 3)
    target = result.target()
    assert target.ok and "0 computed, 3 restored" in target.measured
    assert [r.dataset for r in result.refs()] == ["branches"] * 3
