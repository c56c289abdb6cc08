"""Sources laid out as real raw data is, in a real DVC repo, run through `skipwise`: hourly files
``events/2024/05/01/10.parquet``, hive-style daily folders of several files each
(``dt=2024-05-01/part-0.parquet``), one file for an unpartitioned source, and the legacy folder of
``{partition_key}.parquet`` files next to them, whose versions must not change."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import polars as pl
import pytest
from skipwise.core.plan import BLOCKED, RUN, SKIP
from skipwise.engine.loading import load_project

from tests.conftest import BIN, DVC, run

pytestmark = pytest.mark.integration

HOURS = [f"2024-05-01-{h:02d}:00" for h in range(6)]
DAYS = ["2024-05-01", "2024-05-02"]

DEFINITIONS = """
import dagster as dg
import polars as pl

import skipwise as sw

HOURLY = dg.HourlyPartitionsDefinition(start_date="2024-05-01-00:00", end_date="2024-05-01-06:00")
DAILY = dg.DailyPartitionsDefinition(start_date="2024-05-01", end_date="2024-05-03")

events = sw.dvc_source("events", "data/raw/events/{date:%Y/%m/%d}/{hour:%H}.parquet", partitions_def=HOURLY)
clicks = sw.dvc_source("clicks", "data/raw/clicks/dt={date:%Y-%m-%d}/*.parquet", partitions_def=DAILY)
lookup = sw.dvc_source("lookup", "data/raw/lookup.parquet")
legacy = sw.dvc_source("legacy", "data/raw/legacy", partitions_def=HOURLY)


@sw.asset(partitions_def=HOURLY)
def hourly_totals(context: dg.AssetExecutionContext, events: pl.DataFrame, lookup: pl.DataFrame) -> pl.DataFrame:
    return events.join(lookup, on="store").group_by("region").agg(pl.col("amount").sum()).sort("region")


@sw.asset(partitions_def=DAILY)
def daily_clicks(context: dg.AssetExecutionContext, clicks: pl.DataFrame) -> pl.DataFrame:
    return clicks.select(pl.len().alias("rows"), pl.col("amount").sum())


@sw.asset(partitions_def=HOURLY)
def legacy_rows(context: dg.AssetExecutionContext, legacy: pl.DataFrame) -> pl.DataFrame:
    return legacy.select(pl.len().alias("rows"))


defs = dg.Definitions(
    assets=[events, clicks, lookup, legacy, hourly_totals, daily_clicks, legacy_rows],
    resources={"skipwise": sw.IOManager()},
)
"""


def frame(seed: int, rows: int = 5) -> pl.DataFrame:
    return pl.DataFrame(
        {"store": [f"s{(seed + i) % 3}" for i in range(rows)], "amount": [seed * 10 + i for i in range(rows)]}
    )


def write(path: Path, df: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path)


class Repo:
    def __init__(self, root: Path):
        self.root = root
        self.env = {"DAGSTER_HOME": str(root / ".dagster"), "SKIPWISE_ROOT": str(root)}

    def sh(self, *cmd: str, check: bool = True):
        return run(list(cmd), cwd=self.root, env=self.env, check=check)

    def dvc_add(self, *paths: str) -> None:
        self.sh(DVC, "add", "-q", *paths)

    def skipwise(self, *args: str, check: bool = True):
        return self.sh(str(BIN / "skipwise"), *args, check=check)

    def plan(self) -> dict[tuple[str, str], object]:
        return {(d.asset, d.partition): d for d in load_project(self.root).plan()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    root = tmp_path_factory.mktemp("layouts")
    name = f"layouts_{hashlib.md5(str(root).encode()).hexdigest()[:8]}"
    (root / f"{name}.py").write_text(textwrap.dedent(DEFINITIONS))
    (root / "pyproject.toml").write_text(f'[tool.skipwise]\ndefinitions = "{name}"\n')
    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    raw = root / "data" / "raw"
    for i, _ in enumerate(HOURS):
        write(raw / "events" / "2024" / "05" / "01" / f"{i:02d}.parquet", frame(i))
        write(raw / "legacy" / f"2024-05-01-{i:02d}~3a00.parquet", frame(i, rows=i + 1))
    for d, day in enumerate(DAYS):
        for part in range(2):
            write(raw / "clicks" / f"dt={day}" / f"part-{part}.parquet", frame(10 * d + part, rows=3 + part))
    write(raw / "lookup.parquet", pl.DataFrame({"store": ["s0", "s1", "s2"], "region": ["north", "south", "north"]}))
    r = Repo(root)
    r.sh("git", "init", "-q")
    r.sh(DVC, "init", "-q")
    r.sh(DVC, "config", "core.analytics", "false")
    r.dvc_add("data/raw/events", "data/raw/clicks", "data/raw/lookup.parquet", "data/raw/legacy")
    r.skipwise("materialize")
    return r


def test_every_layout_is_materialized_from_its_files(repo):
    out = repo.root / "data" / "default"
    assert sorted(p.name for p in (out / "hourly_totals").iterdir() if p.is_dir()) == sorted(
        h.replace(":", "~3a") for h in HOURS
    )  # skipwise's own folders stay escaped
    project = load_project(repo.root)
    clicks = project.graph.node("clicks")
    assert clicks.many and project.raw_version(clicks, DAYS[0]).startswith("md5s:")
    day = next((out / "daily_clicks" / DAYS[0]).glob("*.parquet"))
    assert pl.read_parquet(day)["rows"].to_list() == [3 + 4]  # both files of the day, concatenated
    assert all(d.action == SKIP for d in project.plan()), [d for d in project.plan() if d.action != SKIP]


def test_the_legacy_form_keeps_its_files_and_versions(repo):
    """An existing project's source: the same files (the key escaped) and the same versions, DVC's md5s."""
    project = load_project(repo.root)
    legacy = project.graph.node("legacy")
    assert legacy.layout is None
    for i, key in enumerate(HOURS):
        data = (repo.root / "data" / "raw" / "legacy" / f"2024-05-01-{i:02d}~3a00.parquet").read_bytes()
        assert project.raw_version(legacy, key) == f"md5:{hashlib.md5(data).hexdigest()}"
    assert project.raw_version(project.graph.node("events"), HOURS[1]) == (
        f"md5:{hashlib.md5((repo.root / 'data/raw/events/2024/05/01/01.parquet').read_bytes()).hexdigest()}"
    )


def test_a_changed_file_reruns_exactly_the_partitions_that_read_it(repo):
    write(repo.root / "data" / "raw" / "events" / "2024" / "05" / "01" / "03.parquet", frame(99))
    write(repo.root / "data" / "raw" / "clicks" / "dt=2024-05-02" / "part-2.parquet", frame(7, rows=2))
    repo.dvc_add("data/raw/events", "data/raw/clicks")
    plan = repo.plan()
    running = sorted(k for k, d in plan.items() if d.action == RUN)
    assert running == [("daily_clicks", "2024-05-02"), ("hourly_totals", "2024-05-01-03:00")]
    assert plan[("hourly_totals", "2024-05-01-03:00")].reason == "input events[2024-05-01-03:00] changed"
    repo.skipwise("materialize")
    folder = repo.root / "data" / "default" / "daily_clicks" / "2024-05-02"
    day = folder / json.loads((folder / "manifest.json").read_text())["output"]  # the kept old output is there too
    assert pl.read_parquet(day)["rows"].to_list() == [3 + 4 + 2]
    assert all(d.action == SKIP for d in repo.plan().values())


def test_a_missing_raw_file_blocks_its_partition_naming_the_file_and_the_fix(repo):
    (repo.root / "data" / "raw" / "events" / "2024" / "05" / "01" / "05.parquet").unlink()
    repo.dvc_add("data/raw/events")
    reason = (
        "data/raw/events/2024/05/01/05.parquet does not exist: add it and `dvc add data/raw/events`, "
        "or narrow the partition range"
    )
    d = repo.plan()[("hourly_totals", "2024-05-01-05:00")]
    assert (d.action, d.reason) == (BLOCKED, reason)
    p = repo.skipwise("plan", check=False)
    assert "data/raw/events/2024/05/01/05.parquet does not exist" in p.stdout + p.stderr, p.stdout
    p = repo.skipwise("materialize", "--select", "hourly_totals", "--partition", "2024-05-01-05:00", check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "hourly_totals[2024-05-01-05:00] cannot run: data/raw/events/2024/05/01/05.parquet does not exist" in out
    assert "fix: add it and `dvc add data/raw/events`, or narrow the partition range" in out
    assert "Traceback" not in out


def _versions_each_way(root: Path) -> list[tuple[list[str], list[str]]]:
    """For each source, (versions, warnings) from one pass over all its keys, then one key at a time
    (each on a fresh project: nothing shared but the stat cache on disk)."""
    out = []
    for batch in (True, False):
        project = load_project(root)
        for source in project.graph.sources:
            keys = source.partitions.keys() if source.partitions is not None else ["all"]
            dvc = project.locality.sources_of(source)
            got = dvc.versions(source, keys) if batch else [dvc.version(source, k) for k in keys]
            out.append((got, list(project.warnings)))
    half = len(out) // 2
    return [(a[0], b[0]) for a, b in zip(out[:half], out[half:])] + [(out[half - 1][1], out[-1][1])]


def test_versions_in_one_pass_are_what_one_key_at_a_time_says(repo):
    """`DvcSources.versions` answers the common case in one loop; whatever the files are (as DVC
    recorded them, edited since, behind a link, in a glob) it says what `version` says, warnings too."""
    raw = repo.root / "data" / "raw"
    edited = raw / "events" / "2024" / "05" / "01" / "02.parquet"
    linked = raw / "legacy" / "2024-05-01-01~3a00.parquet"
    kept = {p: p.read_bytes() for p in (edited, linked)}
    try:
        for a, b in _versions_each_way(repo.root):
            assert a == b
        write(edited, frame(42))  # differs from DVC's record: its content counts, with a warning
        target = repo.root / "kept" / linked.name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(kept[linked])
        linked.unlink()
        linked.symlink_to(target)  # a link inside the project: read through it
        pairs = _versions_each_way(repo.root)
        for a, b in pairs:
            assert a == b
        assert any("02.parquet differs from what DVC recorded" in w for w in pairs[-1][0])
    finally:
        for p, data in kept.items():
            p.unlink()
            p.write_bytes(data)
