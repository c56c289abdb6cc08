"""`sw.testing.materialize` on a small project: the ways to name definitions and a selection, the
copy into a root of the test's own, what it leaves alone, and a failing step."""

from __future__ import annotations

import importlib

import polars as pl
import pytest

import skipwise as sw
from skipwise.core.errors import UsageError
from tests.conftest import definitions_module

pytestmark = pytest.mark.integration

SOURCE = """
import dagster as dg
import polars as pl
import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-03")
raw = sw.dvc_source("raw", "data/raw/events", partitions_def=DAILY)


class Cfg(dg.Config):
    fail_on: str = ""


@sw.asset(partitions_def=DAILY)
def doubled(context: dg.AssetExecutionContext, raw: pl.DataFrame, config: Cfg) -> pl.DataFrame:
    if context.partition_key == config.fail_on:
        raise ValueError(f"refusing {context.partition_key}")
    return raw.with_columns(pl.col("x") * 2)


defs = dg.Definitions(assets=[raw, doubled], resources={"skipwise": sw.IOManager()})
"""
DAYS = ["2024-01-01", "2024-01-02"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    for i, day in enumerate(DAYS):
        (home / "data" / "raw" / "events").mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"x": [i, i + 1]}).write_parquet(home / "data" / "raw" / "events" / f"{day}.parquet")
    name = definitions_module(home, monkeypatch, SOURCE, "helper_defs")
    monkeypatch.delenv("SKIPWISE_ROOT", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return home, importlib.import_module(name)


def test_a_root_of_its_own_gets_a_copy_and_the_project_is_left_alone(project, tmp_path):
    home, module = project
    root = tmp_path / "run"
    first = sw.testing.materialize(module.defs, root=root)
    assert first.success and first.computed == {"doubled": DAYS} and first.computed_count == 2
    assert first.read("doubled", "2024-01-02")["x"].to_list() == [2, 4]
    assert (root / "data" / "raw" / "events" / "2024-01-01.parquet").is_file()
    assert (root / ".dagster").is_dir() and not (home / ".dagster").exists()
    assert not (home / "data" / "default").exists() and not (home / "data" / "ledger").exists()

    # by module name, by asset, one partition: up to date
    again = sw.testing.materialize(module.__name__, module.doubled, partition_key=DAYS[0], root=root)
    assert again.computed == {} and again.skipped == {"doubled": [DAYS[0]]}

    # a raw file the test writes itself counts
    pl.DataFrame({"x": [10]}).write_parquet(root / "data" / "raw" / "events" / f"{DAYS[1]}.parquet")
    changed = sw.testing.materialize(module, ["doubled"], partition_range=f"{DAYS[0]}...{DAYS[1]}", root=root)
    assert changed.computed == {"doubled": [DAYS[1]]} and changed.skipped == {"doubled": [DAYS[0]]}
    assert sw.read("doubled", DAYS[1], root=root)["x"].to_list() == [20]


def test_a_failing_step_raises_unless_asked_not_to(project, tmp_path):
    home, module = project
    root = tmp_path / "run"
    root.mkdir()
    (root / "params.yaml").write_text(f"doubled:\n  fail_on: '{DAYS[1]}'\n")  # the test's own params win
    with pytest.raises(sw.testing.RunFailed, match=f"refusing {DAYS[1]}"):
        sw.testing.materialize(module.defs, root=root)
    result = sw.testing.materialize(module.defs, root=root, raise_on_error=False)
    assert not result.success and "refusing" in result.error


def test_partition_key_and_range_together_are_refused(project):
    _, module = project
    with pytest.raises(UsageError, match="not both"):
        sw.testing.materialize(module.defs, partition_key=DAYS[0], partition_range=f"{DAYS[0]}...{DAYS[1]}")
