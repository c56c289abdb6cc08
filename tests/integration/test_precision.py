"""Nothing that cannot change an output recomputes it: an upstream edit that leaves its output bytes
the same stops at that asset, and a partitioning's end date moved recomputes no existing partition.
Each build is a fresh process over the project's own copy of the code."""

from __future__ import annotations

import pytest

from tests.integration.test_robustness import DAYS, build

pytestmark = pytest.mark.integration


def test_an_upstream_edit_that_changes_no_output_recomputes_only_that_asset(project_dir):
    assert len(build(project_dir)) == 2 * len(DAYS) + 1
    flights = project_dir / "assets" / "features" / "flights.py"
    text = flights.read_text()
    assert "frame = _with_local_times(flights)" in text
    flights.write_text(
        text.replace("frame = _with_local_times(flights)", "frame = _with_local_times(flights.clone())", 1)
    )
    ran = build(project_dir)
    # training_set's parameter is named like the flight_features asset: it is a parameter, not that code
    assert ran and all(line.startswith("flight_features ") for line in ran), ran
    assert len(ran) == len(DAYS)


def test_moving_the_partitionings_end_date_recomputes_no_existing_partition(project_dir):
    assert len(build(project_dir)) == 2 * len(DAYS) + 1
    calendar = project_dir / "assets" / "calendar.py"
    calendar.write_text(calendar.read_text().replace('end_date="2014-01-01"', 'end_date="2014-07-01"'))
    assert build(project_dir) == []
