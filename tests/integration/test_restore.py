"""Restore by fingerprint: a partition whose current fingerprint was computed before, and whose
kept version is whole, is made current again instead of recomputed; anything doubtful recomputes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from skipwise.core.plan import RESTORE, RUN
from skipwise.engine.project import Project
from skipwise.store.ledger import Ledger

pytestmark = pytest.mark.integration

DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]


def fresh(project: Project) -> Project:
    return Project(project.root, project.graph, definitions=project.definitions)


def outcomes(project: Project, name: str, keys=DAYS) -> dict[str, str]:
    """Materialize `name`; each partition's verdict: miss, restore or hit."""
    return {
        o.decision.partition: o.cache
        for o in fresh(project).materialize(name, keys if project.graph.asset(name).partitions else None)
    }


def manifest(root: Path, asset: str, key: str) -> dict:
    return json.loads((root / "data" / "features" / asset / key / "manifest.json").read_text())


def kept_version(root: Path, asset: str, key: str) -> tuple[Path, dict]:
    """The one kept version of a partition that is not its current one: (its file, its manifest)."""
    current = manifest(root, asset, key)["fingerprint"]
    (path,) = [p for p in (root / "data" / "features" / asset / key / "versions").glob("*.json") if p.stem != current]
    return path, json.loads(path.read_text())


def set_window(root: Path, hours: int) -> None:
    params = root / "params.yaml"
    text = params.read_text()
    for h in (3, 4, 5):
        text = text.replace(f"window_hours: {h}", f"window_hours: {hours}")
    params.write_text(text)


def test_a_reverted_change_restores_every_partition_and_computes_nothing(project):
    root = project.root
    assert set(outcomes(project, "weather_features").values()) == {"miss"}
    before = {k: manifest(root, "weather_features", k) for k in DAYS}
    first_cost = {r["partition"]: r["usd"] for r in Ledger(root / "data" / "ledger").read() if r["cache"] == "miss"}

    set_window(root, 4)
    assert set(outcomes(project, "weather_features").values()) == {"miss"}
    set_window(root, 3)  # the revert
    plan = fresh(project).plan(["weather_features"], DAYS)
    assert {d.action for d in plan} == {RESTORE} and all("has this fingerprint" in d.reason for d in plan)
    assert fresh(project).io.snapshot().bytes_read == 0
    assert set(outcomes(project, "weather_features").values()) == {"restore"}
    for k in DAYS:  # the very version computed first is current again: no data copied or recomputed
        m = manifest(root, "weather_features", k)
        assert m == before[k]
        out = root / "data" / "features" / "weather_features" / k / m["output"]
        assert out.stat().st_nlink == 1 and len(list(out.parent.glob("*.parquet"))) == 2  # both versions kept
    rows = [r for r in Ledger(root / "data" / "ledger").read() if r["cache"] == "restore"]
    assert sorted(r["partition"] for r in rows) == DAYS
    assert all(r["usd_avoided"] == pytest.approx(first_cost[r["partition"]]) for r in rows)
    assert set(outcomes(project, "weather_features").values()) == {"hit"}  # and then it is simply up to date


def test_a_revert_restores_downstream_too_and_doubtful_versions_recompute(project):
    root = project.root
    for name in ("weather_features", "flight_features", "training_set"):
        outcomes(project, name)
    set_window(root, 5)
    outcomes(project, "weather_features")
    assert set(outcomes(project, "training_set").values()) == {"miss"}
    set_window(root, 3)

    # One kept output damaged, one kept manifest edited by hand: those two recompute.
    path, doc = kept_version(root, "weather_features", DAYS[2])
    out = path.parent.parent / doc["output"]
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    path, doc = kept_version(root, "weather_features", DAYS[5])
    doc["params_digest"] = "0" * 64
    path.write_text(json.dumps(doc))

    plan = {d.partition: d.action for d in fresh(project).plan(["weather_features"], DAYS)}
    assert plan[DAYS[2]] == RUN and plan[DAYS[5]] == RUN
    assert {a for k, a in plan.items() if k not in (DAYS[2], DAYS[5])} == {RESTORE}
    verdicts = outcomes(project, "weather_features")
    assert verdicts[DAYS[2]] == "miss" and verdicts[DAYS[5]] == "miss"
    # The recomputed days come out as they were, so training_set's original inputs are back: restored.
    assert outcomes(project, "training_set") == {"all": "restore"}


def test_a_restore_through_dagster_records_an_event_with_the_restored_data_version(project, tmp_path, monkeypatch):
    from skipwise.adapters.dagster.run import materialize_project

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    root = project.root
    keys = f"{DAYS[0]}...{DAYS[3]}"
    assert materialize_project(fresh(project), ["weather_features"], keys, {}).ok
    set_window(root, 4)
    assert materialize_project(fresh(project), ["weather_features"], keys, {}).computed == {"weather_features": 4}
    set_window(root, 3)
    summary = materialize_project(fresh(project), ["weather_features"], keys, {})
    assert summary.ok and summary.computed == {"weather_features": 0} and summary.restored == {"weather_features": 4}
    assert "4 restored" in summary.render(1.0)

    import dagster as dg

    instance = dg.DagsterInstance.get()
    events = instance.fetch_materializations(dg.AssetKey("weather_features"), limit=100).records
    latest = {}
    for e in sorted(events, key=lambda r: r.storage_id):
        mat = e.asset_materialization
        latest[mat.partition] = mat
    for k in DAYS[:4]:
        mat = latest[k]
        md = {name: getattr(v, "value", v) for name, v in mat.metadata.items()}
        assert md["skipwise/cache"] == "restore"
        assert mat.tags["dagster/data_version"] == manifest(root, "weather_features", k)["output_hash"]
    assert os.environ.get("SKIPWISE_ROOT") is None


def test_gc_removes_only_versions_worth_less_than_their_storage_and_never_a_held_or_current_one(project):
    import subprocess
    import sys
    from datetime import datetime, timedelta, timezone

    from skipwise.store.gc import collect

    from tests.conftest import BIN, run

    root = project.root
    outcomes(project, "weather_features")
    set_window(root, 4)
    outcomes(project, "weather_features")  # every partition now has one kept version besides the current one
    current = {k: manifest(root, "weather_features", k) for k in DAYS}

    # Used minutes ago and weighed against a few hours of storage: worth keeping. (A demo partition
    # costs about as much to recompute as to store for a month, so the default month is a coin toss.)
    from skipwise.core.retention import Policy

    brief = Policy(fresh(project).config.prices.storage_usd_per_gb_month, half_life_days=7, months=0.01)
    soon = collect(fresh(project), brief, dry_run=True)
    assert len(soon) == len(DAYS) and all(i.keep for i in soon)
    later = datetime.now(timezone.utc) + timedelta(days=60)
    planned = collect(fresh(project), dry_run=True, now=later)
    assert len(planned) == len(DAYS) and not any(i.keep for i in planned)
    assert all((root / f).exists() for i in planned for f in i.files)  # a dry run removes nothing

    # A partition a materialization holds is left alone.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT); "
                "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
            ),
            str(root / "data/features/weather_features" / DAYS[0] / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        removed = collect(fresh(project), dry_run=False, now=later)
    finally:
        holder.kill()
        holder.wait()
    assert {i.partition for i in removed} == set(DAYS[1:])
    for k in DAYS:
        folder = root / "data/features/weather_features" / k
        assert manifest(root, "weather_features", k) == current[k]
        assert (folder / current[k]["output"]).exists()  # the current version stays
        assert len(list(folder.glob("*.parquet"))) == (2 if k == DAYS[0] else 1)
    # What was removed can no longer be restored: the revert recomputes those days.
    set_window(root, 3)
    verdicts = outcomes(project, "weather_features")
    assert verdicts[DAYS[0]] == "restore" and {verdicts[k] for k in DAYS[1:]} == {"miss"}

    out = run(
        [str(BIN / "skipwise"), "gc", "--dry-run", "--months", "0.01"], cwd=root, env={"PYTHONPATH": str(root)}
    ).stdout
    assert "gc: would remove 0 version(s)" in out and "kept 12 not current" in out


def test_switching_git_branches_restores_what_each_branch_computed(project):
    """Two branches of the code: after building both, switching between them computes nothing."""
    from tests.conftest import DVC, run

    root = project.root
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]

    def outcomes(project: Project, name: str) -> dict[str, str]:
        # A process of the checkout's own: each branch's code is what runs (not this process's modules).
        from tests.integration.test_robustness import start

        p = start(root, [name], DAYS)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        cache = {"run": "miss", "skip": "hit", "restore": "restore"}
        return {line.split()[1]: cache[line.split()[2]] for line in out.splitlines()}

    run([*git, "add", "-A"], cwd=root)
    run([*git, "commit", "-q", "-m", "main state"], cwd=root)
    run([*git, "branch", "-M", "main"], cwd=root)
    names = ("weather_features", "flight_features", "training_set")
    for name in names:
        outcomes(project, name)
    run([*git, "checkout", "-q", "-b", "wider"], cwd=root)
    helper = root / "assets" / "features" / "weather.py"
    text = helper.read_text()
    assert 'closed="right"' in text
    helper.write_text(text.replace('closed="right"', 'closed="both"', 1))
    run([*git, "commit", "-q", "-am", "a wider weather window"], cwd=root)
    assert set(outcomes(project, "weather_features").values()) == {"miss"}
    assert outcomes(project, "training_set") == {"all": "miss"}

    for branch, expect in (("main", "restore"), ("wider", "restore"), ("wider", "hit")):
        if expect != "hit":
            run([*git, "checkout", "-q", branch], cwd=root)
            run([DVC, "checkout", "-q"], cwd=root)
        verdicts = {name: set(outcomes(project, name).values()) for name in names}
        assert verdicts["flight_features"] == {"hit"}  # untouched by the branch
        assert verdicts["weather_features"] == {expect} and verdicts["training_set"] == {expect}, (branch, verdicts)
    # Long unused, each branch's versions stay: the commit a branch points at computed them.
    from datetime import datetime, timedelta, timezone

    from skipwise.store.gc import collect

    items = collect(fresh(project), dry_run=True, now=datetime.now(timezone.utc) + timedelta(days=365))
    assert items and all(i.keep and i.reason.startswith("computed at main") for i in items), items[:2]
