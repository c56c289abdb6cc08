"""Other Dagster forms beside `@sw.asset`, each run through Dagster's own CLI on a small project:
a single-run range, an asset check (blocking), a plain multi-asset reading skipwise outputs, and
`dg.MaterializeResult` as a skipwise body's return value."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import BIN, run

pytestmark = pytest.mark.integration

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]

MODULE = """
from pathlib import Path

import dagster as dg
import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")


@sw.asset(partitions_def=DAILY)
def counts(context: dg.AssetExecutionContext) -> dict:
    # what the body reads counts: editing one day's file makes that day stale
    text = Path("inputs", f"{context.partition_key}.txt").read_text()
    return {"day": context.partition_key, "n": int(text)}


@sw.asset(ins={"counts": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
def total(counts: dict[str, dict]) -> dict:
    return {"n": sum(v["n"] for v in counts.values())}


@dg.asset_check(asset=total, blocking=True)
def total_under_limit() -> dg.AssetCheckResult:
    limit = int(Path("limit.txt").read_text())
    n = sw.read("total")["n"]
    return dg.AssetCheckResult(passed=n <= limit, metadata={"n": n, "limit": limit})


@dg.asset(io_manager_key="skipwise")
def report(total: dict) -> dict:
    return {"total": total["n"]}


@dg.multi_asset(
    outs={"low": dg.AssetOut(io_manager_key="skipwise"), "high": dg.AssetOut(io_manager_key="skipwise")},
    ins={"counts": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
)
def split(counts: dict[str, dict]):
    yield dg.Output(sorted(d for d, v in counts.items() if v["n"] < 3), output_name="low")
    yield dg.Output(sorted(d for d, v in counts.items() if v["n"] >= 3), output_name="high")


@sw.asset
def with_metadata() -> dg.MaterializeResult[dict]:
    return dg.MaterializeResult(value={"ok": True}, metadata={"rows_seen": 7})


@sw.asset
def writes_its_own():
    Path("own.txt").write_text("x")
    return dg.MaterializeResult(metadata={"written": 1})


defs = dg.Definitions(
    assets=[counts, total, report, split, with_metadata, writes_its_own],
    asset_checks=[total_under_limit],
    resources={"skipwise": sw.IOManager()},
)
"""


class Project:
    def __init__(self, root: Path, name: str):
        self.root, self.name = root, name
        self.env = {"DAGSTER_HOME": str(root / ".dagster"), "SKIPWISE_ROOT": str(root)}

    def dagster(self, *args: str, check: bool = True):
        p = run([str(BIN / "dagster"), "asset", "materialize", "-m", self.name, *args], self.root, self.env, check)
        return p.stdout + p.stderr

    def skipwise(self, *args: str, check: bool = True):
        return run([str(BIN / "skipwise"), *args], self.root, self.env, check)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.root / ".dagster"))

    def events(self, asset: str) -> list:
        with self.instance() as instance:
            return list(instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("forms")
    name = "forms_defs"
    (root / f"{name}.py").write_text(textwrap.dedent(MODULE))
    (root / "pyproject.toml").write_text(f'[tool.skipwise]\ndefinitions = "{name}"\n')
    (root / "inputs").mkdir()
    for i, day in enumerate(DAYS):
        (root / "inputs" / f"{day}.txt").write_text(str(i + 1))
    (root / "limit.txt").write_text("100")
    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return Project(root, name)


def _range(days: list[str]) -> str:
    return f"{days[0]}...{days[-1]}"


def test_a_single_run_range_computes_only_the_stale_partitions_with_one_event_each(project):
    log = project.dagster("--select", "counts", "--partition-range", _range(DAYS))
    assert "RUN_SUCCESS" in log
    first = project.events("counts")
    assert sorted(r.partition_key for r in first) == DAYS  # one run, one event per computed partition
    assert len({r.event_log_entry.run_id for r in first}) == 1

    (project.root / "inputs" / "2024-01-02.txt").write_text("20")
    log = project.dagster("--select", "counts", "--partition-range", _range(DAYS))
    assert "1 partition(s) computed" in log and "3 skipped" in log
    second = [r for r in project.events("counts") if r not in first]
    assert [r.partition_key for r in second] == ["2024-01-02"]
    md = second[0].asset_materialization.metadata
    assert md["skipwise/cache"].value == "miss"
    (project.root / "inputs" / "2024-01-02.txt").write_text("2")


def test_a_blocking_check_records_its_result_and_stops_the_assets_downstream(project):
    project.dagster("--select", "counts", "--partition-range", _range(DAYS))  # the days back as they were
    log = project.dagster("--select", "total,report")
    assert "RUN_SUCCESS" in log
    with project.instance() as instance:
        key = dg.AssetCheckKey(dg.AssetKey("total"), "total_under_limit")
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert evaluation.status.value == "SUCCEEDED"
    assert json.loads(_output(project.root, "report")) == {"total": 10}

    (project.root / "limit.txt").write_text("5")
    (project.root / "inputs" / "2024-01-04.txt").write_text("40")
    project.dagster("--select", "counts", "--partition", "2024-01-04")
    log = project.dagster("--select", "total,report", check=False)
    assert "total_under_limit" in log and "RUN_FAILURE" in log
    with project.instance() as instance:
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert evaluation.status.value == "FAILED"
    # skipwise committed total before the check ran: the check gates what is downstream of it
    assert _manifest(project.root, "total")["output_hash"]
    assert json.loads(_output(project.root, "report")) == {"total": 10}  # report did not run
    (project.root / "limit.txt").write_text("100")
    (project.root / "inputs" / "2024-01-04.txt").write_text("4")
    project.dagster("--select", "counts", "--partition", "2024-01-04")


def test_a_plain_multi_asset_reads_skipwise_outputs_and_skipwise_runs_it(project):
    log = project.dagster("--select", "low,high")
    assert "RUN_SUCCESS" in log
    assert json.loads(_output(project.root, "low")) == ["2024-01-01", "2024-01-02"]
    assert json.loads(_output(project.root, "high")) == ["2024-01-03", "2024-01-04"]
    plan = json.loads(project.skipwise("plan", "--json", "--select", "low,high", "--all").stdout)
    assert {(r["asset"], r["action"]) for r in plan["partitions"]} == {("low", "skip"), ("high", "skip")}
    # one day's count crosses the line: both outputs run again, through Dagster, after counts
    (project.root / "inputs" / "2024-01-01.txt").write_text("9")
    out = project.skipwise("materialize", "--select", "counts,low,high").stdout
    assert "low" in out and "high" in out
    assert json.loads(_output(project.root, "low")) == ["2024-01-02"]
    assert json.loads(_output(project.root, "high")) == ["2024-01-01", "2024-01-03", "2024-01-04"]
    (project.root / "inputs" / "2024-01-01.txt").write_text("1")


def test_a_materialize_result_with_a_value_keeps_its_metadata_and_one_without_is_refused(project):
    log = project.dagster("--select", "with_metadata")
    assert "RUN_SUCCESS" in log
    (event,) = project.events("with_metadata")
    assert event.asset_materialization.metadata["rows_seen"].value == 7
    assert json.loads(_output(project.root, "with_metadata")) == {"ok": True}

    log = project.dagster("--select", "writes_its_own", check=False)
    assert "returned a dg.MaterializeResult without a value" in log
    assert "plain @dg.asset" in log


def _manifest(root: Path, asset: str) -> dict:
    (found,) = (root / "data").glob(f"*/{asset}/all/manifest.json")
    return json.loads(found.read_text())


def _output(root: Path, asset: str) -> str:
    (found,) = (root / "data").glob(f"*/{asset}/all/manifest.json")
    return (found.parent / json.loads(found.read_text())["output"]).read_text()
