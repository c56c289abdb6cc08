"""`skipwise init` as a new user runs it: a project created by the command, its own test run by
pytest, one partition materialized by Dagster's CLI, the rest by `skipwise materialize`, then one
raw file changed; and the same project without the `dvc` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import BIN, run

pytestmark = pytest.mark.integration

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def env_for(root: Path, **extra: str) -> dict:
    # The project's folder first (as `pytest` and `dagster -m` find it there), then whatever makes
    # skipwise importable in this test process.
    paths = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {
        "PYTHONPATH": os.pathsep.join(paths),
        "DAGSTER_HOME": str(root / ".dagster"),
        "DVC_NO_ANALYTICS": "1",
        **extra,
    }


def init(dest: Path, **env: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    p = run([sys.executable, "-m", "skipwise.cli", "init", str(dest)], cwd=dest.parent, env=env_for(dest, **env))
    return p.stdout, time.perf_counter() - t0


def plan(root: Path) -> dict:
    return json.loads(run([str(BIN / "skipwise"), "plan", "--json", "--all"], cwd=root, env=env_for(root)).stdout)


def actions(p: dict) -> dict[str, str]:
    return {r["partition"]: r["action"] for r in p["partitions"] if r["asset"] == "daily_sales"}


def test_a_new_project_runs_its_own_test_then_dagster_then_skipwise(tmp_path):
    root = tmp_path / "my-shop"
    out, init_s = init(root)
    assert "created my_shop" in out and "data/raw/sales is versioned by data/raw/sales.dvc" in out, out
    assert (root / "data" / "raw" / "sales.dvc").is_file()

    t0 = time.perf_counter()
    test = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root, env=env_for(root))
    test_s = time.perf_counter() - t0
    assert "1 passed" in test.stdout, test.stdout
    assert not (root / "data" / "features").exists()  # the test ran against tmp_path, not the project
    print(f"\nskipwise init: {init_s:.1f} s; the generated test (pytest): {test_s:.1f} s")

    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "my_shop.definitions"]
        + ["--select", "daily_sales", "--partition", DAYS[0]],
        cwd=root,
        env=env_for(root),
    )
    assert actions(plan(root)) == {DAYS[0]: "skip", DAYS[1]: "run", DAYS[2]: "run"}

    done = run([str(BIN / "skipwise"), "materialize", "--json"], cwd=root, env=env_for(root))
    assert json.loads(done.stdout)["computed"] == {"daily_sales": 2}
    again = plan(root)
    assert actions(again) == dict.fromkeys(DAYS, "skip") and again["run"] == 0, again
    assert again["warnings"] == []

    # The quick start's last step: one raw day changes, one partition is computed.
    day = root / "data" / "raw" / "sales" / f"{DAYS[1]}.parquet"
    pl.read_parquet(day).with_columns(pl.col("amount") * 2).write_parquet(day)
    assert actions(plan(root)) == {DAYS[0]: "skip", DAYS[1]: "run", DAYS[2]: "skip"}
    changed = run([str(BIN / "skipwise"), "materialize", "--json"], cwd=root, env=env_for(root))
    assert json.loads(changed.stdout)["computed"] == {"daily_sales": 1}


def test_without_dvc_the_project_still_plans_and_says_how_to_install_it(tmp_path):
    root = tmp_path / "no_dvc"
    # PATH without the environment's bin folder, where this machine's `dvc` is (git stays).
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != BIN)
    if shutil.which("dvc", path=path):
        pytest.skip("a dvc command is on this machine's PATH outside the environment")
    p = subprocess.run(
        [sys.executable, "-m", "skipwise.cli", "init", str(root)],
        cwd=tmp_path,
        env={**os.environ, **env_for(root), "PATH": path},
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "dvc: not found" in p.stdout, p.stdout
    assert "pipx install dvc" in p.stdout
    assert not (root / ".dvc").exists() and not (root / "data" / "raw" / "sales.dvc").exists()
    planned = plan(root)
    assert actions(planned) == dict.fromkeys(DAYS, "run")
    assert any("not committed to DVC" in w for w in planned["warnings"])
