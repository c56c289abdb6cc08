"""Model versions, promotion and the retraining sensors on a small real copy of the demo (12 days, DVC)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from contextlib import redirect_stdout

import dagster as dg
import polars as pl
import pytest
import yaml
from skipwise.adapters.dagster.retraining import raw_data_evaluation, retrain_evaluation, schedule_evaluation
from skipwise.core.plan import RUN, SKIP
from skipwise.engine.project import Project
from skipwise.models.registry import registry_for

from tests.conftest import DVC, run

DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]
TRAINING = ["training_set"]


def _set_params(root, **model):
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["delay_model"].update({"valid_from": "2013-01-10", "epochs": 10, "hidden": 8, "batch_size": 256, **model})
    path.write_text(yaml.safe_dump(params))


def _fresh(project) -> Project:
    return Project(project.root, project.graph, definitions="assets.definitions")


def _build(p: Project, days=DAYS) -> None:
    for a in ("flight_features", "weather_features"):
        list(p.materialize(a, days))
    list(p.materialize("training_set", None))


def _train(p: Project):
    (outcome,) = list(p.materialize("delay_model", None))
    return outcome


def _models(root) -> dict:
    from skipwise.cli.main import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--root", str(root), "--defs", "assets.definitions", "models", "--json"]) == 0
    (model,) = json.loads(out.getvalue())["models"]
    return model


@pytest.fixture
def trained(project_dir, project):
    _set_params(project_dir)
    p = _fresh(project)
    _build(p)
    first = _train(p)
    return project_dir, project, first


def test_versions_promotion_restore_and_predictions(trained):
    root, project, first = trained
    assert first.metadata["model/promoted"] is True and first.metadata["model/restored"] is False
    v1 = first.metadata["model/version"]
    model = _models(root)
    assert model["promoted"] == v1 and [v["version"] for v in model["versions"]] == [v1]
    rec = model["versions"][0]
    assert rec["metric"] == "auc" and rec["metric_value"] > 0.55
    assert rec["cost"]["wall_seconds"] > 0 and rec["torch_version"] and rec["device"] in ("cpu", "cuda")
    # The training data it was trained on, partition by partition with row counts (for the sensor).
    assert set(rec["trained_on"]["flight_features"]) == set(DAYS)
    assert all(r > 0 for _, r in rec["trained_on"]["flight_features"].values())

    p = _fresh(project)
    (pred,) = list(p.materialize("delay_predictions", ["2013-01-11"]))
    assert pred.metadata["model/version"] == v1
    scored = pl.read_parquet(root / "data/predictions/delay_predictions/2013-01-11" / pred.manifest.output)
    assert scored.get_column("model_version").unique().to_list() == [v1]

    # A worse model (no training at all) is trained and kept, not promoted; predictions keep the old model.
    _set_params(root, epochs=0)
    p = _fresh(project)
    worse = _train(p)
    v2 = worse.metadata["model/version"]
    assert v2 != v1 and worse.metadata["model/promoted"] is False
    assert worse.metadata["model/promoted_version"] == v1
    assert "kept, not promoted" in worse.metadata["model/promotion"]
    model = _models(root)
    assert model["promoted"] == v1 and {v["version"] for v in model["versions"]} == {v1, v2}
    assert "kept, not promoted" in next(v for v in model["versions"] if v["version"] == v2)["promotion"]
    assert _fresh(project).decide(project.graph.asset("delay_predictions"), "2013-01-11").action == SKIP
    from skipwise.cli.main import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--root", str(root), "--defs", "assets.definitions", "models"]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"delay_model: 2 version(s), promoted {v1}")
    assert any(line.startswith(f" * {v1}") for line in lines)
    assert any(line.startswith(f"   {v2}") and "kept, not promoted" in line for line in lines)

    # Back to the first hyperparameters: restored by fingerprint (hash checked), not trained; dollars avoided.
    _set_params(root)
    p = _fresh(project)
    back = _train(p)
    assert back.metadata["model/restored"] is True and back.metadata["model/version"] == v1
    assert back.metadata["model/usd_avoided"] > 0
    assert [e["action"] for e in _models(root)["events"]] == ["trained", "trained", "restored"]


def test_a_damaged_stored_version_is_trained_again_not_restored(trained):
    root, project, first = trained
    v1 = first.metadata["model/version"]
    _set_params(root, epochs=3)
    _train(_fresh(project))
    reg = registry_for(_fresh(project), "delay_model")
    artifact = reg.folder / f"{v1}.bin"
    data = artifact.read_bytes()
    artifact.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])  # same size, one byte flipped
    _set_params(root)
    p = _fresh(project)
    again = _train(p)
    assert again.metadata["model/restored"] is False and again.metadata["model/version"] == v1
    assert any("not the bytes recorded" in w for w in p.warnings)
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == reg.versions()[v1].artifact_sha256


def test_promoting_a_new_version_recomputes_the_predictions(trained):
    root, project, first = trained
    list(_fresh(project).materialize("delay_predictions", ["2013-01-11"]))
    _set_params(root, epochs=12, promote_tolerance=1.0)  # any version passes: it is promoted
    better = _train(_fresh(project))
    assert better.metadata["model/promoted"] is True
    d = _fresh(project).decide(project.graph.asset("delay_predictions"), "2013-01-11")
    assert d.action == RUN and "delay_model" in d.reason


def test_retraining_sensor_threshold_cooldown_and_new_days(project_dir, project):
    _set_params(project_dir)
    # Day 12 arrives later: hold it back.
    held = project_dir.parent / "held"
    held.mkdir()
    for kind in ("flights", "weather"):
        shutil.move(project_dir / f"data/raw/{kind}/2013-01-12.parquet", held / f"{kind}.parquet")
    run([DVC, "add", "-q", "data/raw/flights", "data/raw/weather"], cwd=project_dir)
    p = _fresh(project)
    _build(p, DAYS[:11])
    r = retrain_evaluation(_fresh(project), "delay_model", None, 1000.0, TRAINING)
    assert r.run_requests and "no trained version" in r.run_requests[0].tags["skipwise/retrain_reason"]
    _train(_fresh(project))

    # Nothing changed: no request, and the reason says so.
    r = retrain_evaluation(_fresh(project), "delay_model", None, 1000.0, TRAINING)
    assert not r.run_requests and "0 of 11 partitions changed" in r.skip_reason.skip_message
    assert isinstance(schedule_evaluation(_fresh(project), "delay_model"), dg.SkipReason)

    # One weather row changed: two weather days change, a small share of the rows: below the threshold.
    path = project_dir / "data/raw/weather/2013-01-05.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.col("temp") + 10).otherwise(pl.col("temp")).alias("temp")
    ).write_parquet(path)
    run([DVC, "add", "-q", "data/raw/weather"], cwd=project_dir)
    list(_fresh(project).materialize("weather_features", DAYS[:11]))
    r = retrain_evaluation(_fresh(project), "delay_model", None, 1000.0, TRAINING)
    assert not r.run_requests
    assert "of 11 partitions changed" in r.skip_reason.skip_message and "below 5 %" in r.skip_reason.skip_message
    assert isinstance(schedule_evaluation(_fresh(project), "delay_model"), dg.RunRequest)  # the schedule: any change

    # A new day arrives through DVC: the new-data sensor requests exactly it and what reads it.
    baseline = raw_data_evaluation(_fresh(project), None)
    assert not baseline.run_requests and "first tick" in baseline.skip_reason.skip_message
    again = raw_data_evaluation(_fresh(project), baseline.cursor)
    assert not again.run_requests and "no raw partition" in again.skip_reason.skip_message
    for kind in ("flights", "weather"):
        shutil.move(held / f"{kind}.parquet", project_dir / f"data/raw/{kind}/2013-01-12.parquet")
    run([DVC, "add", "-q", "data/raw/flights", "data/raw/weather"], cwd=project_dir)
    new = raw_data_evaluation(_fresh(project), again.cursor)
    asked = {(tuple(k.path[0] for k in r.asset_selection), r.partition_key) for r in new.run_requests}
    assert asked == {(("flight_features",), "2013-01-12"), (("weather_features",), "2013-01-12")}
    for a in ("flight_features", "weather_features"):
        list(_fresh(project).materialize(a, ["2013-01-12"]))
    assert not raw_data_evaluation(_fresh(project), new.cursor).run_requests
    # The stale-partitions sensor leaves the model and its training set to the retraining sensor.
    from skipwise.adapters.dagster.sensors import stale_run_requests

    assert _fresh(project).decide(project.graph.asset("training_set"), "all").action == RUN
    others = frozenset(["flight_features", "weather_features", "delay_predictions"])  # (days 13.. have no data)
    asked = {k.path[0] for r in stale_run_requests(_fresh(project), others) for k in r.asset_selection}
    assert asked == {"training_set"}
    assert stale_run_requests(_fresh(project), others | {"training_set", "delay_model"}) == []

    # The training set now has a new day: the retraining sensor fires once, then the cooldown holds.
    r = retrain_evaluation(_fresh(project), "delay_model", None, 1000.0, TRAINING)
    (req,) = r.run_requests
    assert "1 new (2013-01-12)" in req.tags["skipwise/retrain_reason"]
    assert {k.path[0] for k in req.asset_selection} == {"training_set", "delay_model"}
    same = retrain_evaluation(_fresh(project), "delay_model", r.cursor, 1010.0, TRAINING)
    assert not same.run_requests and "already requested" in same.skip_reason.skip_message
    path = project_dir / "data/raw/flights/2013-01-03.parquet"
    pl.read_parquet(path).head(-5).write_parquet(path)
    run([DVC, "add", "-q", "data/raw/flights"], cwd=project_dir)
    list(_fresh(project).materialize("flight_features", DAYS))
    burst = retrain_evaluation(_fresh(project), "delay_model", r.cursor, 1020.0, TRAINING)
    assert not burst.run_requests and "cooldown" in burst.skip_reason.skip_message
    later = retrain_evaluation(_fresh(project), "delay_model", r.cursor, 1000.0 + 3601, TRAINING)
    assert len(later.run_requests) == 1
    # Retrained: the baseline moves, nothing more to do.
    p = _fresh(project)
    list(p.materialize("training_set", None))
    _train(p)
    assert not retrain_evaluation(_fresh(project), "delay_model", later.cursor, 99999.0, TRAINING).run_requests


def test_dagster_sensors_schedule_and_asset_checks_on_the_demo_definitions(trained, monkeypatch):
    import skipwise as sw

    from assets.definitions import defs

    root, project, first = trained
    monkeypatch.setenv("SKIPWISE_ROOT", str(root))
    with dg.instance_for_test() as instance:
        tick = defs.get_sensor_def("retrain_delay_model_on_feature_change").evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs)
        )
        assert not tick.run_requests and "0 of 12 partitions changed" in tick.skip_message
        raw = defs.get_sensor_def("skipwise_new_raw_data").evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs)
        )
        assert not raw.run_requests and "first tick" in raw.skip_message and raw.cursor
        weekly = defs.get_schedule_def("weekly_retrain_delay_model").evaluate_tick(
            dg.build_schedule_context(instance=instance)
        )
        assert not weekly.run_requests and "nothing changed" in weekly.skip_message

        # The model and the predictions through a real Dagster run, their checks with them.
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            instance=instance,
            resources={"skipwise": sw.IOManager(root=str(root))},
            selection=dg.AssetSelection.assets("training_set", "delay_model"),
        )
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert checks["training_set_is_sound"].passed
        assert checks["training_set_is_sound"].metadata["weather_after_cutoff"].value == 0
        assert checks["delay_model_auc_above_floor"].metadata["version"].value == first.metadata["model/version"]
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            instance=instance,
            partition_key="2013-01-11",
            resources={"skipwise": sw.IOManager(root=str(root))},
            selection=dg.AssetSelection.assets("delay_predictions"),
        )
        (check,) = result.get_asset_check_evaluations()
        assert check.passed and check.metadata["duplicate_flights"].value == 0 and check.metadata["rows"].value > 500
