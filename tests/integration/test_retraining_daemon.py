"""The retraining sensors under a real `dagster-daemon`, against a temporary Dagster instance.

A raw day is added with DVC: the new-raw-data sensor requests exactly that day's features (and the
look-back days that read it, where they have data), the runs succeed, then the retraining sensor
requests one retraining, and after it nothing more is requested.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import BIN, DVC, run

pytestmark = pytest.mark.integration
DEADLINE_S = 300

DEFS = """
import dagster as dg

import skipwise as sw
import assets.definitions as demo_module  # the module, not its Definitions: one Definitions here

RUNNING = dg.DefaultSensorStatus.RUNNING
defs = dg.Definitions(
    assets=list(demo_module.defs.assets), asset_checks=list(demo_module.defs.asset_checks), resources={"skipwise": sw.IOManager()},
    sensors=[sw.new_raw_data(minimum_interval_seconds=3, default_status=RUNNING),
             sw.retrain_on_feature_change("delay_model", training=["training_set"], minimum_interval_seconds=3,
                                          default_status=RUNNING)],
)
"""


def _runs(instance):
    """The runs sensors launched (`skipwise materialize`'s own runs before have no trigger tag)."""
    return sorted((r for r in instance.get_runs() if "skipwise/trigger" in r.tags), key=lambda r: r.run_id)


def _wait(predicate, what: str, until: float, instance):
    while time.time() < until:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    runs = [(r.tags.get("skipwise/trigger"), r.status.value, r.asset_selection) for r in _runs(instance)]
    raise AssertionError(f"timed out waiting for {what}; runs: {runs}")


def test_new_day_through_the_daemon_then_one_retraining(project_dir, tmp_path):
    import dagster as dg
    import yaml

    root = project_dir
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["delay_model"].update({"valid_from": "2013-01-10", "epochs": 10, "hidden": 8, "batch_size": 256})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    held = tmp_path / "held"
    held.mkdir()
    for kind in ("flights", "weather"):
        shutil.move(root / f"data/raw/{kind}/2013-01-12.parquet", held / f"{kind}.parquet")
    run([DVC, "add", "-q", "data/raw/flights", "data/raw/weather"], cwd=root)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"DAGSTER_HOME": str(home), "PYTHONPATH": str(root), "SKIPWISE_ROOT": str(root)}
    run([str(BIN / "skipwise"), "materialize", "--partition", "2013-01-01...2013-01-11"], cwd=root, env=env)
    (root / "daemon_defs.py").write_text(DEFS)
    (root / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: daemon_defs\n      working_directory: .\n"
    )

    until = time.time() + DEADLINE_S
    log = open(tmp_path / "daemon.log", "w")
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=root,
        env={**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        from dagster._core.instance.ref import InstanceRef

        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            # Both sensors tick with nothing to do: the baseline, then no change.
            _wait(
                lambda: len(_sensor_ticks(instance, "skipwise_new_raw_data")) >= 2,
                "the new-data sensor's first ticks",
                until,
                instance,
            )
            _wait(
                lambda: _sensor_ticks(instance, "retrain_delay_model_on_feature_change"),
                "the retraining sensor's first tick",
                until,
                instance,
            )
            assert _runs(instance) == []
            skip = _sensor_ticks(instance, "retrain_delay_model_on_feature_change")[0].skip_reason
            assert "0 of 11 partitions changed" in skip, skip

            for kind in ("flights", "weather"):
                shutil.move(held / f"{kind}.parquet", root / f"data/raw/{kind}/2013-01-12.parquet")
            run([DVC, "add", "-q", "data/raw/flights", "data/raw/weather"], cwd=root)

            def finished(trigger, n):
                done = [
                    r
                    for r in _runs(instance)
                    if r.tags.get("skipwise/trigger") == trigger and r.status.value in ("SUCCESS", "FAILURE")
                ]
                return done if len(done) >= n else None

            raw_runs = _wait(lambda: finished("new-raw-data", 2), "the two new-data runs", until, instance)
            assert all(r.status.value == "SUCCESS" for r in raw_runs), _daemon_log(tmp_path)
            asked = sorted((next(iter(r.asset_selection)).path[0], r.tags.get("dagster/partition")) for r in raw_runs)
            assert asked == [("flight_features", "2013-01-12"), ("weather_features", "2013-01-12")]

            retrain = _wait(lambda: finished("retrain-on-feature-change", 1), "the retraining run", until, instance)
            assert len(retrain) == 1 and retrain[0].status.value == "SUCCESS", _daemon_log(tmp_path)
            assert "1 new (2013-01-12)" in retrain[0].tags["skipwise/retrain_reason"]
            # After it: the sensors tick again and request nothing more.
            n = len(_sensor_ticks(instance, "retrain_delay_model_on_feature_change"))
            _wait(
                lambda: len(_sensor_ticks(instance, "retrain_delay_model_on_feature_change")) >= n + 2,
                "two more ticks",
                until,
                instance,
            )
            assert len(_runs(instance)) == 3
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
    import json

    registry = json.loads(next((root / "data").glob("*/delay_model.versions/registry.json")).read_text())
    assert [e["action"] for e in registry["events"]] == ["trained", "trained"]


def _daemon_log(tmp_path) -> str:
    return (tmp_path / "daemon.log").read_text()[-3000:]


def _sensor_ticks(instance, name: str):
    from dagster._core.scheduler.instigation import InstigatorType

    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == name]
    if not states:
        return []
    s = states[0]
    ticks = instance.get_ticks(s.instigator_origin_id, s.selector_id)
    return sorted(ticks, key=lambda t: t.timestamp)
