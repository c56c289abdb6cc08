"""The real thing on a small copy: ingest, DVC, Dagster's CLI, `skipwise` and `dvc repro`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BIN, DVC, run

pytestmark = pytest.mark.integration
RANGE = "2013-01-01...2013-01-12"


def small_params(root: Path) -> None:
    text = (root / "params.yaml").read_text().replace('valid_from: "2013-11-01"', 'valid_from: "2013-01-10"')
    (root / "params.yaml").write_text(text.replace("epochs: 6", "epochs: 2"))
    dvc = (
        (root / "dvc.yaml")
        .read_text()
        .replace("cmd: skipwise materialize", f"cmd: skipwise materialize --partition {RANGE}")
    )
    (root / "dvc.yaml").write_text(dvc)


def manifest(root: Path, layer: str, asset: str, key: str) -> dict:
    return json.loads((root / "data" / layer / asset / key / "manifest.json").read_text())


def test_dagster_cli_dvc_repro_and_skipwise_end_to_end(project_dir, tmp_path):
    root = project_dir
    small_params(root)
    env = {"DAGSTER_HOME": str(tmp_path / "dagster_home"), "PYTHONPATH": str(root)}
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    # 1. One partition through Dagster's own CLI: a real run, one materialization event, files on disk.
    out = run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "assets.definitions",
            "--select",
            "flight_features",
            "--partition",
            "2013-01-09",
        ],
        cwd=root,
        env=env,
    )
    assert "RUN_SUCCESS" in out.stdout + out.stderr
    m = manifest(root, "features", "flight_features", "2013-01-09")
    assert (root / "data/features/flight_features/2013-01-09" / m["output"]).stat().st_size == m["output_size"]
    assert sorted(m["inputs"]["raw_flights"]) == [f"2013-01-{d:02d}" for d in range(2, 10)]  # 7-day look-back
    import polars as pl

    df = pl.read_parquet(root / "data/features/flight_features/2013-01-09" / m["output"])
    assert df.height > 500 and df["date"].unique().to_list() == [__import__("datetime").date(2013, 1, 9)]

    # 2. dvc repro runs the whole graph through skipwise; the model is trained and scored.
    out = run([DVC, "repro"], cwd=root, env=env)
    assert "1 computed" in out.stdout or "computed" in out.stdout
    metrics = json.loads((root / "data/reports/metrics.json").read_text())
    assert metrics["n_valid"] > 0 and 0.0 <= metrics["auc"] <= 1.0
    pred = manifest(root, "predictions", "delay_predictions", "2013-01-12")
    scores = pl.read_parquet(root / "data/predictions/delay_predictions/2013-01-12" / pred["output"])
    assert scores["delay_probability"].is_between(0, 1).all()
    # flight_features[2013-01-09] was already done by the first run: the engine skipped it.
    assert manifest(root, "features", "flight_features", "2013-01-09")["run_id"] == m["run_id"]

    # 3. A second materialization computes nothing.
    out = run([str(BIN / "skipwise"), "materialize", "--partition", RANGE], cwd=root, env=env)
    assert "nothing to do" in out.stdout, out.stdout

    # 4. skipwise plan/status agree without a Dagster instance.
    status = json.loads(
        run([str(BIN / "skipwise"), "status", "--json", "--select", "flight_features"], cwd=root, env=env).stdout
    )
    states = {r["partition"]: r["state"] for r in status["partitions"]}
    assert all(states[f"2013-01-{d:02d}"] == "up to date" for d in range(1, 13))
    assert states["2013-01-13"] == "blocked"  # no raw file for that day: it cannot be computed, and says which file
