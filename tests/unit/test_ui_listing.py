"""The webserver's partition listing as `skipwise ui` runs it: newest-first keys counted back from
a past `end_date`, everything else as Dagster lists it."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
from dagster._core.definitions.partitions.context import PartitionLoadingContext
from dagster._core.definitions.temporal_context import TemporalContext
from skipwise.adapters.dagster.ui import fix_partition_listing

NOW = datetime(2026, 12, 1, 6, 15, tzinfo=timezone.utc)


def _keys(pdef, ascending: bool, limit: int = 120) -> list[str]:
    ctx = PartitionLoadingContext(
        temporal_context=TemporalContext(effective_dt=NOW, last_event_id=None), dynamic_partitions_store=None
    )
    return list(pdef.get_paginated_partition_keys(ctx, limit, ascending).results)


def test_newest_partitions_of_a_past_partitioning_are_its_last_ones(monkeypatch):
    from dagster._core.definitions.partitions.definition.time_window import TimeWindowPartitionsDefinition

    # Dagster's own method comes back after the test (the fix is meant for the webserver's process).
    monkeypatch.setattr(
        TimeWindowPartitionsDefinition,
        "get_paginated_partition_keys",
        TimeWindowPartitionsDefinition.get_paginated_partition_keys,
    )
    past = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")
    open_ended = dg.DailyPartitionsDefinition(start_date="2026-01-01")
    before = {"asc": _keys(past, True), "open": _keys(open_ended, False)}
    assert _keys(past, False)[0] == "2026-11-30"  # Dagster's own listing: days that are no partitions
    fix_partition_listing()
    fix_partition_listing()  # idempotent
    newest = _keys(past, False)
    assert newest[0] == "2013-12-31" and newest[-1] == "2013-09-03" and len(newest) == 120
    assert all(k in past.get_partition_keys() for k in newest)
    assert _keys(past, True) == before["asc"]  # oldest-first was right already
    assert _keys(open_ended, False) == before["open"] and before["open"][0] == "2026-11-30"
    short = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-13")
    assert _keys(short, False) == [f"2013-01-{d:02d}" for d in range(12, 0, -1)]
