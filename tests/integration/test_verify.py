"""`skipwise verify` on a small generated project with real DVC data: honest partitions match and
nothing committed is touched; a dependency skipwise cannot observe (a subprocess's read) is caught,
marked stale and recomputed by the next run; nondeterminism is reported once; the cost is in the
ledger; the sample is reproducible and sized as asked; the schedule's job fails on a mismatch."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from skipwise.cli.main import main
from skipwise.store.suspects import REASON

from tests.conftest import DVC, definitions_module, run

pytestmark = pytest.mark.integration

DAYS = [(date(2024, 1, 1) + timedelta(days=i)).isoformat() for i in range(6)]

MODULE = """
import random
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl

import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-07")
#: Read through a subprocess: a dependency skipwise cannot observe (and no file beside the code).
FACTOR = Path(__file__).resolve().parent / "knobs" / "factor.txt"

raw_values = sw.dvc_source("raw_values", "data/raw/values", partitions_def=DAILY)


@sw.asset(partitions_def=DAILY)
def doubled(raw_values: pl.DataFrame) -> pl.DataFrame:
    return raw_values.with_columns(pl.col("v") * 2)


@sw.asset
def total(doubled: pl.DataFrame) -> dict:
    return {"sum": float(doubled["v"].sum())}


@sw.asset(partitions_def=DAILY)
def scaled(raw_values: pl.DataFrame) -> pl.DataFrame:
    factor = float(subprocess.run(["cat", str(FACTOR)], capture_output=True, text=True, check=True).stdout)
    return raw_values.with_columns(pl.col("v") * factor)


@sw.asset(partitions_def=DAILY)
def noisy(raw_values: pl.DataFrame) -> pl.DataFrame:
    return raw_values.with_columns(pl.lit(random.random()).alias("noise"))


@sw.asset(partitions_def=DAILY, nondeterministic=True)
def noisy_declared(raw_values: pl.DataFrame) -> pl.DataFrame:
    return raw_values.with_columns(pl.lit(random.random()).alias("noise"))


defs = dg.Definitions(
    assets=[raw_values, doubled, total, scaled, noisy, noisy_declared],
    resources={"skipwise": sw.IOManager()},
    schedules=[sw.verify_schedule(select=["scaled"], fraction=1.0)],
)
"""


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    """The generated project: six days of raw values under DVC, the factor file at 2."""
    name = definitions_module(tmp_path, monkeypatch, MODULE, "verified")
    raw = tmp_path / "data" / "raw" / "values"
    raw.mkdir(parents=True)
    for i, day in enumerate(DAYS):
        pl.DataFrame({"id": [1, 2, 3], "v": [float(i), i + 0.5, i * 3.0]}).write_parquet(raw / f"{day}.parquet")
    set_factor(tmp_path, 2)
    run(["git", "init", "-q"], cwd=tmp_path)
    run([DVC, "init", "-q"], cwd=tmp_path)
    run([DVC, "config", "core.analytics", "false"], cwd=tmp_path)
    run([DVC, "add", "-q", "data/raw/values"], cwd=tmp_path)
    monkeypatch.setenv("SKIPWISE_ROOT", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / ".dagster"))
    import skipwise  # noqa: F401 - first, as a code location does: the module's bytes are then recorded

    importlib.import_module(name)
    yield tmp_path
    sys.modules.pop(name, None)


def set_factor(root: Path, value: int) -> None:
    (root / "knobs").mkdir(exist_ok=True)
    (root / "knobs" / "factor.txt").write_text(f"{value}\n")


def build(root: Path, *names: str) -> dict[str, list[str]]:
    """Materialize `names` in this process; the partitions computed, per asset."""
    from skipwise.engine.loading import load_project

    project = load_project(root)
    return {n: [o.decision.partition for o in project.materialize(n) if o.computed] for n in names}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def verify_json(capsys, *args: str) -> tuple[int, dict]:
    code, out, err = cli(capsys, "verify", "--json", *args)
    return code, json.loads(out)


def committed_files(root: Path) -> dict[str, bytes]:
    """Every file under data/ but skipwise's own bookkeeping (the ledger, .skipwise), by path."""
    data = root / "data"
    return {
        str(p.relative_to(data)): p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file() and p.relative_to(data).parts[0] not in ("ledger", ".skipwise")
    }


def planned(capsys, select: str) -> dict[str, dict]:
    code, out, _ = cli(capsys, "plan", "--select", select, "--all", "--json")
    assert code == 0
    return {f"{r['asset']}[{r['partition']}]": r for r in json.loads(out)["partitions"]}


def test_an_honest_project_matches_and_nothing_committed_is_touched(root, capsys):
    build(root, "doubled", "total", "scaled")
    before = committed_files(root)
    code, report = verify_json(capsys, "--select", "doubled,total,scaled", "--fraction", "1")
    assert code == 0 and report["ok"]
    assert report["counts"]["match"] == len(DAYS) * 2 + 1 == len(report["results"])
    assert report["up_to_date"] == len(DAYS) * 2 + 1
    assert committed_files(root) == before  # byte for byte, and no file added or removed
    assert not (root / "data" / ".skipwise" / "suspects.json").exists()
    code, out, _ = cli(capsys, "verify", "--select", "doubled", "--sample", "2", "--seed", "1")
    assert code == 0
    assert out.splitlines()[-1].startswith(
        "verified 2 of 6 up-to-date partitions (33%): 2 match, 0 mismatch; recomputed in "
    )


def test_an_unobserved_dependency_is_caught_marked_stale_and_recomputed(root, capsys):
    build(root, "scaled")
    set_factor(root, 3)  # read by `cat`: skipwise sees no change
    assert all(r["action"] == "skip" for r in planned(capsys, "scaled").values())
    before = committed_files(root)
    code, out, err = cli(capsys, "verify", "--select", "scaled", "--sample", "2", "--seed", "3")
    assert code == 3, err
    mismatches = [line for line in out.splitlines() if line.startswith("MISMATCH")]
    assert len(mismatches) == 2
    assert all(
        "nothing skipwise records changed: an unobserved dependency" in line
        and "@sw.asset(files=[...], env=[...])" in line
        for line in mismatches
    )
    assert "2 mismatch" in out.splitlines()[-1]
    assert "Error: skipwise verify: 2 partition(s) differ from a fresh computation" in err
    assert committed_files(root) == before

    caught = {line.split()[1].rstrip(":") for line in mismatches}
    plan = planned(capsys, "scaled")
    assert {k for k, r in plan.items() if r["action"] == "run"} == caught
    assert {r["reason"] for r in plan.values() if r["action"] == "run"} == {REASON}
    code, out, _ = cli(capsys, "status", "--select", "scaled")
    assert REASON in out

    assert sorted(f"scaled[{k}]" for k in build(root, "scaled")["scaled"]) == sorted(caught)  # exactly those
    assert all(r["action"] == "skip" for r in planned(capsys, "scaled").values())
    code, report = verify_json(capsys, "--select", "scaled", "--fraction", "1")
    assert code == 3
    verdicts = {f"{r['asset']}[{r['partition']}]": r["verdict"] for r in report["results"]}
    assert {k for k, v in verdicts.items() if v == "match"} == caught  # recomputed with the new factor
    assert {k for k, v in verdicts.items() if v == "mismatch"} == set(plan) - caught


def test_nondeterminism_is_reported_once_and_a_declared_asset_is_skipped(root, capsys):
    build(root, "noisy", "noisy_declared")
    code, out, err = cli(capsys, "verify", "--select", "noisy,noisy_declared", "--fraction", "1")
    assert code == 3
    odd = [line for line in out.splitlines() if line.startswith("NONDETERMINISTIC")]
    assert len(odd) == 1 and odd[0].startswith("NONDETERMINISTIC  noisy: two computations of noisy[")
    assert "seed its randomness, sort before writing, or declare @sw.asset(nondeterministic=True)" in odd[0]
    assert f"skipped  noisy_declared: declared nondeterministic ({len(DAYS)} sampled partition(s) not compared)" in out
    assert "1 asset(s) are nondeterministic" in err
    assert all(r["action"] == "skip" for r in planned(capsys, "noisy").values())  # nothing marked stale

    code, report = verify_json(capsys, "--select", "noisy_declared", "--fraction", "1")
    assert code == 0
    assert [r["verdict"] for r in report["results"]] == ["skipped: declared nondeterministic"] * len(DAYS)
    assert all(r["fresh_hash"] is None for r in report["results"])  # not computed


def test_the_ledger_holds_what_verifying_cost_and_cost_and_status_read_it(root, capsys):
    build(root, "doubled")
    code, report = verify_json(capsys, "--select", "doubled", "--sample", "4", "--seed", "5")
    assert code == 0
    from skipwise.engine.loading import load_project

    rows = [r for r in load_project(root).ledger.rows() if r["run_id"] == report["run_id"]]
    verified = sorted(r["partition"] for r in rows if r["cache"] == "verify")
    assert verified == sorted(r["partition"] for r in report["results"]) and len(verified) == 4
    assert all(r["usd"] is not None and r["usd"] > 0 and r["fingerprint"] for r in rows if r["cache"] == "verify")
    runs = [r for r in rows if r["cache"] == "run"]
    assert len(runs) == 1 and runs[0]["partitions_computed"] == 4  # the recomputations are not its overhead
    assert report["usd"] == pytest.approx(sum(r["usd"] for r in rows if r["cache"] == "verify"))

    code, out, err = cli(capsys, "cost", "--json")
    assert code == 0, err
    by_asset = {r["asset"]: r for r in json.loads(out)}
    assert by_asset["(verify)"]["usd"] == pytest.approx(report["usd"])
    assert by_asset["doubled"]["computed"] == len(DAYS)
    code, out, err = cli(capsys, "status", "--json")
    assert code == 0, err
    assert "(verify)" in {r["asset"] for r in json.loads(out)["assets"]}


def test_the_sample_is_reproducible_and_sized_as_asked(root, capsys):
    build(root, "doubled", "scaled")
    ledger = sorted((root / "data" / "ledger").rglob("*.jsonl"))
    first = verify_json(capsys, "--dry-run", "--sample", "3", "--seed", "7")[1]
    again = verify_json(capsys, "--dry-run", "--sample", "3", "--seed", "7")[1]
    assert first["partitions"] == again["partitions"] and len(first["partitions"]) == 3
    assert first["up_to_date"] == 2 * len(DAYS)
    assert len(verify_json(capsys, "--dry-run", "--fraction", "0.5")[1]["partitions"]) == len(DAYS)
    assert len(verify_json(capsys, "--dry-run", "--sample", "100")[1]["partitions"]) == 2 * len(DAYS)
    assert len(verify_json(capsys, "--dry-run", "--partition", DAYS[0], "--fraction", "1")[1]["partitions"]) == 2
    assert sorted((root / "data" / "ledger").rglob("*.jsonl")) == ledger  # a dry run computes and records nothing
    code, report = verify_json(capsys, "--sample", "3", "--seed", "7")
    assert (
        code == 0
        and [{"asset": r["asset"], "partition": r["partition"]} for r in report["results"]] == first["partitions"]
    )

    code, out, err = cli(capsys, "verify", "--fraction", "0")
    assert code == 2 and "Error: --fraction 0.0 is not a share of the up-to-date partitions" in err and "fix:" in err
    code, out, err = cli(capsys, "verify", "--sample", "2", "--fraction", "0.5")
    assert code == 2 and "give one of them" in err


def test_the_verify_schedules_job_fails_on_a_mismatch(root, capsys):
    build(root, "scaled")
    module = sys.modules[next(n for n in sys.modules if n.startswith("verified_"))]
    job = module.defs.resolve_job_def("skipwise_verify")
    assert module.defs.resolve_schedule_def("skipwise_verify_schedule").cron_schedule == "0 4 * * *"
    assert job.execute_in_process(raise_on_error=False).success
    set_factor(root, 5)
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert f"{len(DAYS)} partition(s) differ from a fresh computation" in str(failure.step_failure_data.error)
    assert all(r["action"] == "run" for r in planned(capsys, "scaled").values())
