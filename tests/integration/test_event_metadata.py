"""What the Dagster UI shows of a partition's cost: readable figures beside the plotted numbers, no
flat zero charts for costs the work cannot incur, and one observation per range step saying what
the cache saved."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from skipwise.adapters.dagster.run import materialize_project
from skipwise.engine.project import Project

from tests.conftest import DVC, run

pytestmark = pytest.mark.integration


def _values(metadata) -> dict:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def test_metadata_is_readable_and_hits_are_summed_in_one_observation(project, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    first = materialize_project(project, ["flight_features"], "2013-01-02...2013-01-04", {})
    assert first.ok and first.computed == {"flight_features": 3}
    instance = dg.DagsterInstance.get()
    records = instance.fetch_materializations(dg.AssetKey("flight_features"), limit=10).records
    assert len(records) == 3
    for r in records:
        raw = r.asset_materialization.metadata
        md = _values(raw)
        assert isinstance(raw["skipwise/fingerprint"], dg.TextMetadataValue) and len(md["skipwise/fingerprint"]) == 16
        assert isinstance(raw["cost/method"], dg.TextMetadataValue)
        assert isinstance(raw["cost/usd"], dg.FloatMetadataValue)  # still a number: Dagster plots it
        summary = md["cost/summary"]
        assert summary.startswith("$") and " s wall" in summary and " s CPU" in summary and "B peak" in summary
        assert "e-" not in summary  # no scientific notation in what a person reads
        for key, value in md.items():
            if key.startswith("cost/") and isinstance(value, float):
                assert len(f"{value:.15g}".lstrip("-0.").replace(".", "").split("e")[0]) <= 6, (key, value)
        # Local disk, CPU only: no GPU, no egress off the host, no egress fee: no flat zero charts.
        for absent in (
            "cost/gpu_seconds",
            "cost/egress_bytes",
            "cost/egress_internet_bytes",
            "cost/egress_cross_region_bytes",
            "cost/usd_egress",
            "cost/list_requests",
        ):
            assert absent not in md, absent
        assert md["cost/bytes_read"] > 0 and md.get("cost/requests", 0) == 0  # local disk: no request fees
        assert "cost/get_requests" not in md and "cost/egress_same_host_bytes" not in md  # the ledger has them

    # 01-01 and 01-05 are stale, 02..04 up to date in between: one run over the span, three hits in it.
    second = materialize_project(
        Project(project.root, project.graph), ["flight_features"], "2013-01-01...2013-01-05", {}
    )
    assert second.ok and second.computed == {"flight_features": 2}
    observations = instance.fetch_observations(dg.AssetKey("flight_features"), limit=10).records
    assert len(observations) == 1  # one for the step, not one per hit
    md = _values(observations[0].asset_observation.metadata)
    assert md["skipwise/step/computed"] == 2 and md["skipwise/step/skipped"] == 3
    avoided = sum(_values(r.asset_materialization.metadata)["cost/usd"] for r in records)
    assert md["skipwise/step/usd_avoided"] == pytest.approx(avoided, rel=1e-4)
    assert md["skipwise/step/usd_spent"] > 0
    assert (
        "2 computed for $" in md["skipwise/step/summary"]
        and "3 skipped (2013-01-02...2013-01-04)" in md["skipwise/step/summary"]
    )
    assert len(instance.fetch_materializations(dg.AssetKey("flight_features"), limit=20).records) == 5


def test_a_single_partition_event_says_what_its_process_used(project, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert materialize_project(project, ["weather_features"], "2013-01-03", {}).ok
    instance = dg.DagsterInstance.get()
    (record,) = instance.fetch_materializations(dg.AssetKey("weather_features"), limit=5).records
    md = _values(record.asset_materialization.metadata)
    assert "s CPU" in md["run/summary"] and "overhead" in md["run/summary"]
    assert md["run/cpu_seconds"] >= md["run/partition_cpu_seconds"] > 0


def test_an_asset_of_the_level_with_nothing_to_run_gets_no_step_and_its_partitions_are_hits(
    project, tmp_path, monkeypatch
):
    # flight_features and weather_features share a level and a partitioning: one Dagster run each
    # time. After a change that reaches flight_features only, the run has no weather_features step
    # (no planned event, no observation, no log): its partitions are hits, recorded from the plan.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    both, days = ["flight_features", "weather_features"], "2013-01-02...2013-01-04"
    assert materialize_project(project, both, days, {}).ok
    path = project.root / "data" / "raw" / "flights" / "2013-01-03.parquet"
    df = pl.read_parquet(path)
    df.head(df.height - 1).write_parquet(path, compression="zstd", statistics=False)
    run([DVC, "add", "-q", "data/raw/flights"], cwd=project.root)

    again = Project(project.root, project.graph)
    summary = materialize_project(again, both, days, {})
    assert summary.ok and summary.computed == {"flight_features": 2, "weather_features": 0}
    assert summary.launched == ["flight_features"]
    (run_id,) = summary.run_ids
    instance = dg.DagsterInstance.get()
    steps = {e.step_key for e in instance.all_logs(run_id) if e.is_dagster_event and e.step_key}
    assert steps == {"flight_features"}
    planned = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    assert {e.dagster_event.asset_key.path[-1] for e in planned} == {"flight_features"}
    assert not instance.fetch_observations(dg.AssetKey("weather_features"), limit=5).records
    rows = [r for r in again.ledger.read() if r["run_id"] not in (run_id,) and r.get("cache") == "hit"]
    hits = {(r["asset"], r["partition"]) for r in rows}
    assert {("weather_features", k) for k in ("2013-01-02", "2013-01-03", "2013-01-04")} <= hits
    assert ("flight_features", "2013-01-02") in hits  # outside the stale span, as before
