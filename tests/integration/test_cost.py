"""Cost on every materialization, the ledger, `skipwise cost`, and budgets that stop a run first."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from skipwise.adapters.dagster.run import materialize_project
from skipwise.core.errors import BudgetExceeded
from skipwise.engine.project import Project

from tests.conftest import BIN, run

DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]


def test_cost_vector_on_every_event_in_the_dagster_log_and_in_the_ledger(project, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    summary = materialize_project(
        project, ["flight_features"], "2013-01-01...2013-01-03", {"team": "ml", "skipwise/experiment": "e1"}
    )
    assert summary.ok and summary.computed == {"flight_features": 3}
    instance = dg.DagsterInstance.get()
    events = instance.fetch_materializations(dg.AssetKey("flight_features"), limit=10).records
    assert len(events) == 3
    for e in events:
        md = {k: getattr(v, "value", v) for k, v in e.asset_materialization.metadata.items()}
        assert md["skipwise/cache"] == "miss" and md["skipwise/reason"] == "missing"
        for key in (
            "cost/wall_seconds",
            "cost/cpu_seconds",
            "cost/peak_rss_bytes",
            "cost/bytes_read",
            "cost/bytes_written",
            "cost/usd",
            "cost/usd_compute",
            "cost/method",
        ):
            assert key in md, key
        assert md["cost/bytes_written"] == md["skipwise/output_bytes"]  # what was written, exactly
        assert md["cost/bytes_read"] > 0 and md["cost/usd"] > 0
        assert "cost/gpu_seconds" not in md and "gpu: none" in md["cost/method"]  # never a made-up zero

    # A second run: hits, recorded in the ledger with the dollars they avoided.
    summary = materialize_project(
        Project(project.root, project.graph), ["flight_features"], "2013-01-01...2013-01-03", {}
    )
    assert summary.computed == {"flight_features": 0}
    out = run(
        [str(BIN / "skipwise"), "cost", "--by", "asset", "--json"],
        cwd=project.root,
        env={"PYTHONPATH": str(project.root)},
    )
    rows = json.loads(out.stdout)
    row = next(r for r in (rows["rows"] if isinstance(rows, dict) else rows) if r["asset"] == "flight_features")
    assert row["computed"] == 3 and row["skipped"] == 3 and row["usd"] > 0 and row["usd_avoided"] > 0
    by_team = run(
        [str(BIN / "skipwise"), "cost", "--by", "team"], cwd=project.root, env={"PYTHONPATH": str(project.root)}
    )
    assert "ml" in by_team.stdout
    html = tmp_path / "report.html"
    run([str(BIN / "skipwise"), "cost", "--html", str(html)], cwd=project.root, env={"PYTHONPATH": str(project.root)})
    assert html.read_text().count("<svg") >= 3


def test_budget_stops_the_run_before_any_work_and_the_tag_overrides_it(project):
    (project.root / "skipwise.toml").write_text(
        "[budgets]\nper_run_usd = 0.000000001\ndefault_partition_usd_estimate = 0.01\n"
    )
    p = Project(project.root, project.graph)
    with pytest.raises(BudgetExceeded) as e:
        list(p.materialize("flight_features", DAYS[:2]))
    msg = str(e.value)
    assert "skipwise/budget_override" in msg and "0.02" in msg  # the projection, and how to override
    assert not (project.root / "data" / "features").exists()  # nothing was computed
    done = [
        o for o in p.materialize("flight_features", DAYS[:2], tags={"skipwise/budget_override": "true"}) if o.computed
    ]
    assert len(done) == 2


def test_plan_max_usd_is_a_ci_gate(project):
    list(project.materialize("flight_features", DAYS[:2]))  # history for the projection
    env = {"PYTHONPATH": str(project.root)}
    ok = run(
        [
            str(BIN / "skipwise"),
            "plan",
            "--select",
            "flight_features",
            "--partition",
            "2013-01-03...2013-01-12",
            "--max-usd",
            "100",
        ],
        cwd=project.root,
        env=env,
    )
    assert "projected $" in ok.stdout
    gate = run(
        [
            str(BIN / "skipwise"),
            "plan",
            "--select",
            "flight_features",
            "--partition",
            "2013-01-03...2013-01-12",
            "--max-usd",
            "0",
        ],
        cwd=project.root,
        env=env,
        check=False,
    )
    assert gate.returncode == 3 and "above --max-usd" in gate.stderr


def test_backfill_runs_record_hits_so_dagster_does_not_count_them_failed(project, tmp_path, monkeypatch):
    # dagster#34219: a backfill marks a targeted partition without an event as failed.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    list(project.materialize("flight_features", DAYS[:3]))
    import skipwise as sw

    from assets.definitions import defs

    monkeypatch.setenv("SKIPWISE_ROOT", str(project.root))  # the repo's definitions over this copy's data
    assets, resources = list(defs.assets), {"skipwise": sw.IOManager(root=str(project.root))}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets,
            resources=resources,
            selection=["flight_features"],
            instance=instance,
            tags={
                "dagster/backfill": "bf1",
                "dagster/asset_partition_range_start": DAYS[0],
                "dagster/asset_partition_range_end": DAYS[2],
            },
        )
        events = result.get_asset_materialization_events()
    caches = sorted(e.step_materialization_data.materialization.metadata["skipwise/cache"].value for e in events)
    assert result.success and caches == ["hit", "hit", "hit"]
