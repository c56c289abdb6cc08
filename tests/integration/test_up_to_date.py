"""`skipwise materialize` with nothing to run answers without Dagster and without importing the
project's definitions (what each `dvc repro` stage with nothing stale pays), and records the same
hits in the cost ledger as a run through Dagster does; anything to run still goes through Dagster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, run

pytestmark = pytest.mark.integration

RANGE = "2013-01-02...2013-01-03"

#: Runs the command in this interpreter, then says which of the heavy modules it imported.
PROBE = """
import json, sys
from skipwise.cli.main import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "dagster": "dagster" in sys.modules,
                  "definitions": sorted(m for m in sys.modules if m == "assets" or m.startswith("assets."))}))
"""


def env_for(root: Path) -> dict:
    return {"PYTHONPATH": str(root), "DAGSTER_HOME": str(root / ".dagster")}


def materialize(root: Path, *extra: str) -> tuple[dict, dict]:
    """(the command's --json, what it imported) of `skipwise materialize` run in a fresh interpreter."""
    args = ["materialize", "--select", "flight_features", "--partition", RANGE, "--json", *extra]
    p = run([sys.executable, "-c", PROBE, *args], cwd=root, env=env_for(root), check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    *out, probe = p.stdout.strip().splitlines()
    return json.loads("\n".join(out)), json.loads(probe)


def hits(root: Path) -> list[dict]:
    rows = [json.loads(line) for f in sorted((root / "data").rglob("ledger/*/*.jsonl")) for line in f.open()]
    return [r for r in rows if r.get("cache") == "hit"]


def test_nothing_to_run_imports_neither_dagster_nor_the_definitions(project_dir: Path):
    first, imported = materialize(project_dir)
    assert first["computed"] == {"flight_features": 2} and imported["dagster"] is True

    again, imported = materialize(project_dir)
    assert again["ok"] is True and again["computed"] == {"flight_features": 0}
    assert again["requested"] == {"flight_features": 2} and again["run_ids"] == []
    assert imported == {"rc": 0, "dagster": False, "definitions": []}
    # The hits are in the ledger with what they avoided, as a run through Dagster records them.
    recorded = hits(project_dir)
    assert sorted(r["partition"] for r in recorded) == ["2013-01-02", "2013-01-03"]
    assert all(r["usd_avoided"] and r["usd_avoided"] > 0 for r in recorded)
    assert again["cost"]["skipped"] == 2 and again["cost"]["computed"] == 0


def test_a_stale_partition_still_runs_through_dagster(project_dir: Path):
    materialize(project_dir)
    raw = project_dir / "data" / "raw" / "flights" / "2013-01-03.parquet"
    import polars as pl

    frame = pl.read_parquet(raw)
    frame.head(frame.height - 1).write_parquet(raw)
    run([str(BIN / "dvc"), "add", "-q", "data/raw/flights"], cwd=project_dir)
    out, imported = materialize(project_dir)
    assert out["computed"] == {"flight_features": 1} and len(out["run_ids"]) == 1
    assert imported["dagster"] is True and "assets.definitions" in imported["definitions"]


def test_a_budget_still_stops_what_would_run(project_dir: Path):
    toml = project_dir / "skipwise.toml"
    toml.write_text(toml.read_text().replace("per_run_usd = 50.0", "per_run_usd = 0.0000001"))
    args = ["materialize", "--select", "flight_features", "--partition", RANGE]
    p = run([sys.executable, "-c", PROBE, *args], cwd=project_dir, env=env_for(project_dir), check=False)
    probe = json.loads(p.stdout.strip().splitlines()[-1])
    assert probe["rc"] == 3 and "over budget, nothing was computed" in p.stderr
    assert not list((project_dir / "data").rglob("flight_features/*/manifest.json"))


def test_a_first_plan_hashes_every_new_raw_file_at_once_and_decides_as_one_by_one(project_dir: Path, monkeypatch):
    """A first plan (nothing in the stat cache) versions each raw input once, every new file of a
    source in one batch on every core: the same versions and decisions as file by file."""
    import shutil as sh

    from skipwise.engine.project import Project
    from skipwise.store import statcache
    from tests.conftest import _graph_from

    graph = _graph_from(project_dir)
    sequential = [(d.asset, d.partition, d.action, d.fingerprint) for d in Project(project_dir, graph).plan()]
    sh.rmtree(project_dir / "data" / ".skipwise")
    monkeypatch.setattr(statcache, "_THREADED_BYTES", 0)
    monkeypatch.setattr(statcache, "_THREADED_FILE_BYTES", 0)  # the demo's days are small: thread them anyway
    monkeypatch.setattr(statcache, "_cpus", lambda: 4)
    batches: list[int] = []
    digest_all = statcache.StatCache.digest_all
    monkeypatch.setattr(
        statcache.StatCache,
        "digest_all",
        lambda self, files, algo="md5": batches.append(len(files)) or digest_all(self, files, algo),
    )
    project = Project(project_dir, graph)
    threaded = [(d.asset, d.partition, d.action, d.fingerprint) for d in project.plan()]
    assert threaded == sequential
    assert sorted(b for b in batches if b) == [12, 12]  # flights and weather: 12 new days each, once
    assert project.statcache.hashed_bytes == sum(
        p.stat().st_size for p in (project_dir / "data" / "raw").rglob("*.parquet")
    )
