"""Resolving Dagster definitions into skipwise's plain graph, and the graph's snapshot on disk."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from skipwise.adapters.dagster.graph import graph_of
from skipwise.core.partitions import AllOf, Identity, Offsets, Table
from skipwise.project import snapshot

from tests.conftest import definitions_module

MODULE = """
import dagster as dg
import polars as pl
import skipwise as sw

HOURLY = dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00", end_date="2024-01-03-00:00")
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-03")
STORES = dg.DynamicPartitionsDefinition(name="stores")
raw = sw.dvc_source("raw", "data/raw/x", partitions_def=HOURLY)

@sw.asset(partitions_def=HOURLY, ins={"raw": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-23))})
def rolling(raw: pl.DataFrame) -> pl.DataFrame:
    return raw

@sw.asset(partitions_def=DAILY)
def daily(rolling: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(list(rolling.values()))

@sw.asset
def everything(daily: pl.DataFrame) -> pl.DataFrame:
    return daily

@sw.asset(partitions_def=STORES)
def per_store(context) -> dict:
    return {"store": context.partition_key}

defs = dg.Definitions(assets=[raw, rolling, daily, everything, per_store], resources={"skipwise": sw.IOManager()})
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch):
    name = definitions_module(tmp_path, monkeypatch, MODULE, "graph")
    monkeypatch.delenv("SKIPWISE_ROOT", raising=False)
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def test_mappings_resolve_to_plain_key_lists(module):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("stores", ["s1", "s2 north"])
        graph, until, cacheable = graph_of(module.defs, instance)
    rolling, daily, everything, per_store = (graph.asset(n) for n in ("rolling", "daily", "everything", "per_store"))
    assert rolling.deps[0].mapping == Offsets(-23, 0) and len(rolling.partitions.keys()) == 48
    assert isinstance(daily.deps[0].mapping, Table)  # hourly -> daily: Dagster's own mapping, key by key
    assert daily.deps[0].mapping.upstream("2024-01-02") == [f"2024-01-02-{h:02d}:00" for h in range(24)]
    assert everything.deps[0].mapping == AllOf() and everything.partitions is None
    assert per_store.partitions.keys() == ["s1", "s2 north"]
    assert not cacheable and until is None  # dynamic keys live in the instance: never cached
    assert rolling.fmt == "polars" and per_store.fmt == "json"


def test_the_snapshot_round_trips_and_is_invalidated_by_an_edit(module, tmp_path):
    with dg.instance_for_test() as instance:
        graph, _, _ = graph_of(module.defs, instance)
    files = snapshot.watched_files(tmp_path, dict(sys.modules), ["pyproject.toml"])
    assert any(rel.endswith(".py") for rel in files)
    snapshot.save(tmp_path, "m", graph, files, None, "lib")
    again, why = snapshot.load(tmp_path, "m", "lib")
    assert why == "" and again == graph
    assert again.asset("daily").deps[0].mapping.upstream("2024-01-01") == graph.asset("daily").deps[0].mapping.upstream(
        "2024-01-01"
    )
    assert snapshot.load(tmp_path, "m", "other-lib")[0] is None
    path = Path(module.__file__)
    path.write_text(path.read_text() + "\n# edited\n")
    gone, why = snapshot.load(tmp_path, "m", "lib")
    assert gone is None and "changed" in why


def test_identity_between_equal_partitionings(module):
    defs = dg.Definitions(assets=[module.raw, module.rolling], resources={"skipwise": module.sw.IOManager()})
    graph, _, cacheable = graph_of(defs)
    assert cacheable and graph.asset("rolling").deps[0].mapping == Offsets(-23, 0)
    assert Identity() != Offsets(0, 0)  # an explicit identity stays Identity; a zero window is Offsets(0, 0)


def test_no_snapshot_is_saved_from_modules_edited_after_their_import(tmp_path):
    # A long-lived process (dagster dev) imported the old code; the file has changed since: the
    # graph it resolves is the old code's and must not be saved as the graph of the new file.
    import subprocess

    (tmp_path / "pyproject.toml").write_text('[tool.skipwise]\ndefinitions = "shopdefs"\n')
    (tmp_path / "shopdefs.py").write_text(
        textwrap.dedent(MODULE)
        .replace('STORES = dg.DynamicPartitionsDefinition(name="stores")', "")
        .replace("@sw.asset(partitions_def=STORES)", "@sw.asset")
        .replace(", per_store]", "]")
    )
    code = (
        "import importlib, pathlib\n"
        "import shopdefs\n"
        "p = pathlib.Path('shopdefs.py'); p.write_text(p.read_text().replace('start_offset=-23', 'start_offset=-5'))\n"
        "from skipwise.project.resolving import resolve_graph\n"
        "g, _ = resolve_graph(pathlib.Path('.'), 'shopdefs')\n"
        "print(g.asset('rolling').deps[0].mapping)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert "Offsets(start=-23" in out.stdout  # the process ran the old code...
    assert not snapshot.path_of(tmp_path).exists()  # ...and did not save its graph for the new file
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pathlib; from skipwise.project.resolving import resolve_graph; "
            "print(resolve_graph(pathlib.Path('.'), 'shopdefs')[0].asset('rolling').deps[0].mapping)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert "Offsets(start=-5" in fresh.stdout and snapshot.path_of(tmp_path).exists()
