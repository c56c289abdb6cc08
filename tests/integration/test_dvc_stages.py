"""The project's dvc.yaml through the real `dvc` command: one stage per level, a no-op second
repro, only the stages a changed raw day reaches (and inside them only its partitions), and metrics
files holding the model's scores beside each stage's cost."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import DVC, run

pytestmark = pytest.mark.integration
RANGE = "2013-01-01...2013-01-12"
STAGES = ("features", "training_set", "model", "predictions")
GIT = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]


def small(root: Path) -> None:
    text = (root / "params.yaml").read_text().replace('valid_from: "2013-11-01"', 'valid_from: "2013-01-10"')
    (root / "params.yaml").write_text(text.replace("epochs: 6", "epochs: 2"))
    dvc = (root / "dvc.yaml").read_text()
    assert dvc.count("cmd: skipwise materialize --select") == len(STAGES)
    (root / "dvc.yaml").write_text(
        dvc.replace("cmd: skipwise materialize", f"cmd: skipwise materialize --partition {RANGE}")
    )


def ran(out: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in out]


def cost(root: Path, stage: str) -> dict:
    return json.loads((root / "data" / "reports" / f"{stage}.json").read_text())


def test_dvc_repro_runs_each_level_as_its_own_stage(project_dir, tmp_path):
    root = project_dir
    small(root)
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(root)}
    dag = run([DVC, "dag", "--dot"], cwd=root, env=env).stdout
    for a, b in (
        ("features", "training_set"),
        ("training_set", "model"),
        ("model", "predictions"),
        ("features", "predictions"),
    ):
        assert f'"{a}" -> "{b}"' in dag, dag

    first = run([DVC, "repro"], cwd=root, env=env)
    assert ran(first.stdout) == list(STAGES), first.stdout
    assert cost(root, "features")["cost"]["computed"] == 24 and cost(root, "predictions")["cost"]["computed"] == 12
    model = cost(root, "model")
    assert 0.0 <= model["auc"] <= 1.0 and model["cost"]["computed"] == 1 and model["cost"]["usd"] > 0
    assert model["cost"]["micro_usd"] == pytest.approx(model["cost"]["usd"] * 1e6, rel=1e-3)

    shown = json.loads(run([DVC, "metrics", "show", "--json"], cwd=root, env=env).stdout)
    metrics = next(iter(shown.values()))["data"]
    assert metrics["data/reports/model.json"]["data"]["auc"] == model["auc"]
    assert metrics["data/reports/model.json"]["data"]["cost"]["usd"] == model["cost"]["usd"]
    assert all(metrics[f"data/reports/{s}.json"]["data"]["cost"]["usd"] > 0 for s in STAGES)

    ledger = sorted((root / "data" / "ledger").rglob("*.jsonl"))
    second = run([DVC, "repro"], cwd=root, env=env)
    assert ran(second.stdout) == [] and "Data and pipelines are up to date" in second.stdout, second.stdout
    assert sorted((root / "data" / "ledger").rglob("*.jsonl")) == ledger  # no skipwise run at all

    run(["git", "add", "-A"], cwd=root)
    run([*GIT, "commit", "-qm", "baseline"], cwd=root)
    # One raw weather day changes: the stages it reaches run, and inside them only what it reaches.
    day = root / "data" / "raw" / "weather" / "2013-01-07.parquet"
    pl.read_parquet(day).head(-1).write_parquet(day)
    third = run([DVC, "repro"], cwd=root, env=env)
    assert ran(third.stdout) == list(STAGES), third.stdout
    features = cost(root, "features")["cost"]
    assert features["computed"] == 2 and features["skipped"] == 22  # weather 01-07 and the 3-hour window into 01-08
    assert cost(root, "predictions")["cost"]["computed"] < 12
    assert cost(root, "model")["cost"]["computed"] in (0, 1)

    diff = run([DVC, "metrics", "diff", "--md"], cwd=root, env=env).stdout
    assert "cost.computed" in diff and "data/reports/features.json" in diff
    table = run([DVC, "exp", "show", "--md", "--no-pager"], cwd=root, env=env).stdout
    header = next(line for line in table.splitlines() if "auc" in line)
    assert "cost.usd" in header and "cost.micro_usd" in header, table
