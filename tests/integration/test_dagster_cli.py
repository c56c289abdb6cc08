"""A small project driven through Dagster's own command, `dagster asset materialize`, as a team
runs it in its own repository: run config overrides a param (and counts in the fingerprint), and
a skipwise error is one short Dagster failure with its `Error:` and `fix:` lines."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import BIN, DVC, run

pytestmark = pytest.mark.integration

DEFS = """
import dagster as dg
import polars as pl
import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-04")
raw_events = sw.dvc_source("raw_events", "data/raw/events", partitions_def=DAILY)


class StatsConfig(dg.Config):
    factor: int = 1


@sw.asset(partitions_def=DAILY)
def hourly_stats(raw_events: pl.DataFrame, config: StatsConfig) -> dict:
    return {"total": int(raw_events["n"].sum()) * config.factor}


defs = dg.Definitions(assets=[raw_events, hourly_stats], resources={"skipwise": sw.IOManager()})
"""
DAY = "2024-01-02"  # its raw rows sum to 5
FACTOR_3 = json.dumps({"ops": {"hourly_stats": {"config": {"factor": 3}}}})
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")  # a Dagster log line starts with its time
MAX_FAILURE_LINES = 25


@pytest.fixture
def events(tmp_path: Path) -> Path:
    """A project of its own: one DVC-tracked daily source and one `@sw.asset` with a param."""
    root = tmp_path / "events"
    raw = root / "data" / "raw" / "events"
    raw.mkdir(parents=True)
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        pl.DataFrame({"n": [1, 2, int(day[-1])]}).write_parquet(raw / f"{day}.parquet")
    (root / "defs.py").write_text(DEFS)
    (root / "pyproject.toml").write_text('[tool.skipwise]\ndefinitions = "defs"\n')
    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    run(["git", "init", "-q"], cwd=root)
    run([DVC, "init", "-q"], cwd=root)
    run([DVC, "config", "core.analytics", "false"], cwd=root)
    run([DVC, "add", "-q", "data/raw/events"], cwd=root)
    return root


def dagster(root: Path, *args: str, env: dict | None = None, check: bool = True):
    paths = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    full = {"DAGSTER_HOME": str(root / ".dagster"), "PYTHONPATH": os.pathsep.join(paths), **(env or {})}
    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "defs", "--select", "hourly_stats", *args]
    p = run(cmd, cwd=root, env=full, check=check)
    return p, p.stdout + p.stderr


def partition(root: Path) -> tuple[dict, dict]:
    """(manifest, output) of the day's committed partition."""
    folder = root / "data" / "default" / "hourly_stats" / DAY
    manifest = json.loads((folder / "manifest.json").read_text())
    return manifest, json.loads((folder / manifest["output"]).read_text())


def failure_blocks(log: str) -> list[list[str]]:
    """The text Dagster prints under each STEP_FAILURE and RUN_FAILURE line, up to its next log line."""
    blocks: list[list[str]] = []
    inside = False
    for line in log.splitlines():
        if LOG_LINE.match(line) or line.startswith("Error: Materialization failed"):
            inside = " - STEP_FAILURE - " in line or " - RUN_FAILURE - " in line
            if inside:
                blocks.append([])
        elif inside:
            blocks[-1].append(line)
    return blocks


def test_run_config_overrides_a_param_and_counts_in_the_fingerprint(events):
    _, log = dagster(events, "--partition", DAY)
    first, out = partition(events)
    assert out == {"total": 5}

    _, log = dagster(events, "--partition", DAY, "--config-json", FACTOR_3)
    assert "depends on unknown" not in log
    assert "hourly_stats: 1 partition(s) computed" in log
    changed, out = partition(events)
    assert out == {"total": 15}
    assert "params changed" in changed["reason"]
    assert changed["fingerprint"] != first["fingerprint"] and changed["params_digest"] != first["params_digest"]

    _, log = dagster(events, "--partition", DAY, "--config-json", FACTOR_3)
    assert "hourly_stats: 0 partition(s) computed, 1 skipped (up to date)" in log
    assert partition(events)[0]["fingerprint"] == changed["fingerprint"]

    _, log = dagster(events, "--partition", DAY)  # without it: the default's output, kept, comes back
    assert "hourly_stats: 0 partition(s) computed, 1 restored from kept versions" in log
    back, out = partition(events)
    assert out == {"total": 5} and back["fingerprint"] == first["fingerprint"]


def test_a_skipwise_error_is_one_short_dagster_failure_with_its_fix(events):
    (events / "data" / "raw" / "events" / f"{DAY}.parquet").write_bytes(b"not parquet")
    p, log = dagster(events, "--partition", DAY, check=False)
    assert p.returncode != 0
    assert f"Error: data/raw/events/{DAY}.parquet is not readable parquet" in log, log
    assert "\n  fix: restore it with `dvc checkout data/raw/events`" in log
    blocks = failure_blocks(log)
    assert len(blocks) == 2, log  # the step's failure and the run's, which repeats it
    for block in blocks:
        assert len(block) <= MAX_FAILURE_LINES, "\n".join(block)
        text = "\n".join(block)
        assert "Failure: Error: " in text and "fix: " in text
    # Neither skipwise's own frames nor the error chained as a cause: that is what SKIPWISE_DEBUG is for.
    assert "Traceback" not in log and "caused by" not in log
    assert "skipwise/engine/" not in log and "skipwise/store/" not in log
    assert not (events / "data" / "default" / "hourly_stats" / DAY).exists()  # nothing left behind

    p, log = dagster(events, "--partition", DAY, env={"SKIPWISE_DEBUG": "1"}, check=False)
    assert p.returncode != 0
    assert f"Error: data/raw/events/{DAY}.parquet is not readable parquet" in log
    assert "The above exception was caused by the following exception" in log
    assert "skipwise/engine/inputs.py" in log  # the whole traceback, down to where it was raised
