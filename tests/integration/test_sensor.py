"""The stale-partitions sensor: requests exactly what is stale, and never loses a change."""

from __future__ import annotations

import dagster as dg
import polars as pl
from skipwise.adapters.dagster.launch import RANGE_END, RANGE_START
from skipwise.adapters.dagster.sensors import stale_run_requests
from skipwise.engine.project import Project

from tests.conftest import DVC, run

DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]


def test_sensor_requests_stale_levels_and_sees_changes_landing_mid_run(project):
    for a in ("flight_features", "weather_features"):
        list(project.materialize(a, DAYS))
    # The days outside the 12 ingested ones have no raw file: blocked, never requested. The features are
    # up to date, so what is stale is the level above them.
    reqs = stale_run_requests(Project(project.root, project.graph))
    assert len(reqs) == 1
    first = reqs[0]
    assert {k.path[0] for k in first.asset_selection} == {"training_set"}

    # A change lands "while that run is in flight": the next tick asks again, with a new run key.
    path = project.root / "data/raw/flights/2013-01-03.parquet"
    pl.read_parquet(path).head(10).write_parquet(path)
    run([DVC, "add", "-q", "data/raw/flights"], cwd=project.root)
    again = stale_run_requests(Project(project.root, project.graph))
    assert again[0].run_key != first.run_key
    assert {k.path[0] for k in again[0].asset_selection} == {"flight_features"}
    assert again[0].tags[RANGE_START] == "2013-01-03"


def test_sensor_definition_evaluates_against_a_real_instance(project_dir, monkeypatch):
    import skipwise as sw

    from assets.definitions import defs as demo

    monkeypatch.setenv("SKIPWISE_ROOT", str(project_dir))
    defs = dg.Definitions(
        assets=list(demo.assets),
        resources={"skipwise": sw.IOManager(root=str(project_dir))},
        sensors=[sw.stale_partitions_sensor(project_dir)],
    )
    sensor = defs.get_sensor_def("skipwise_stale_partitions")
    with dg.instance_for_test() as instance:
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    # the 12 days with raw files; the rest of the year is blocked until its files exist
    assert result.run_requests and result.run_requests[0].tags[RANGE_END] == "2013-01-12"


def test_demo_assets_carry_skipwise_code_versions():
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    versions = {
        name: graph.get(dg.AssetKey(name)).code_version
        for name in ("flight_features", "weather_features", "training_set", "delay_model", "delay_predictions")
    }
    assert all(v and len(v) == 16 for v in versions.values())
    assert len(set(versions.values())) == 5  # each asset's own code, not the module's
