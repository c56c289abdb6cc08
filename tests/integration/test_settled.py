"""A plan of an asset found wholly up to date is remembered (`skipwise.engine.settled`): the next plan
answers from one pass of stat calls, and any change a decision depends on sends it back through the
full plan, which answers exactly as it would have without the record."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from skipwise.core.partitions import key_folder
from skipwise.core.plan import RUN, SKIP
from skipwise.engine.loading import load_project
from skipwise.engine.project import Project
from skipwise.store import stats

pytestmark = pytest.mark.integration

N = 30  # daily and hourly partitions of the synthetic planning project


@pytest.fixture(params=["one process", "shared with helpers"])
def synthetic(request, tmp_path, monkeypatch) -> Project:
    """The synthetic planning project; its stat passes taken in this process alone, or shared with
    helper processes even for its short lists (small steps: both sides answer part of each)."""
    from bench import planning

    if request.param == "shared with helpers":
        monkeypatch.setattr(stats, "PARALLEL_FROM", 2)
        monkeypatch.setattr(stats, "CHUNK", 4)
        monkeypatch.setattr(stats.os, "sched_getaffinity", lambda pid: {0, 1, 2})

    root = planning.write_synthetic_project(tmp_path, N)
    monkeypatch.syspath_prepend(str(root))
    project = load_project(root)
    planning._write_data(root, project)
    return project


def plan(project: Project, name: str, *, full: bool = True) -> dict[str, tuple[str, str]]:
    """{key: (action, reason)} of a fresh Project's plan of `name`; `full=False` fails if the
    decisions did not come from the record."""
    p = Project(project.root, project.graph, definitions=project.definitions)
    if not full:
        p.planner.decide = lambda *a, **k: pytest.fail("planned partition by partition")  # type: ignore[method-assign]
    return {d.partition: (d.action, d.reason) for d in p.plan([name])}


def record(project: Project, name: str) -> Path:
    return project.root / "data" / ".skipwise" / "settled" / project.graph.asset(name).layer / f"{name}.json"


def test_an_unchanged_asset_is_answered_from_its_record(synthetic):
    first = plan(synthetic, "hours")
    assert {a for a, _ in first.values()} == {SKIP} and record(synthetic, "hours").exists()
    assert plan(synthetic, "hours", full=False) == first


def test_a_changed_raw_file_reruns_exactly_what_reads_it(synthetic):
    plan(synthetic, "hours")
    raw = sorted((synthetic.root / "data" / "raw" / "hours").iterdir())[3]
    raw.write_bytes(raw.read_bytes() + b"more\n")
    out = plan(synthetic, "hours")
    ran = sorted(k for k, (a, _) in out.items() if a == RUN)
    assert len(ran) == 24 and all("changed" in out[k][1] for k in ran)  # the 24 hours whose window holds it


def test_a_deleted_output_or_an_edited_manifest_is_seen(synthetic):
    plan(synthetic, "days")
    folders = sorted((synthetic.root / "data" / synthetic.graph.asset("days").layer / "days").iterdir())
    next(f for f in folders[0].iterdir() if f.name != "manifest.json").unlink()
    manifest = folders[1] / "manifest.json"
    data = json.loads(manifest.read_text())
    data["fingerprint"] = "0" * 64
    manifest.write_text(json.dumps(data))
    out = plan(synthetic, "days")
    assert [k for k, (a, _) in sorted(out.items()) if a != SKIP] == sorted(
        [json.loads((folders[1] / "manifest.json").read_text())["partition"], _key(folders[0])]
    )


def test_params_code_and_environment_changes_are_seen(synthetic, monkeypatch):
    first = plan(synthetic, "days")
    (synthetic.root / "params.yaml").write_text("days: {threshold: 2}\n")
    assert {a for a, _ in plan(synthetic, "days").values()} == {RUN}
    (synthetic.root / "params.yaml").write_text("{}\n")
    assert plan(synthetic, "days", full=False) == first  # back as it was: the record holds again
    monkeypatch.setenv("SYNTH_MODE", "b")
    assert plan(synthetic, "days", full=False) == first  # a variable no partition read
    defs = synthetic.root / "synthplan" / "definitions.py"
    defs.write_text(defs.read_text().replace("return raw_days", "return raw_days.head(1)"))
    fresh = load_project(synthetic.root, refresh=True)
    assert {a for a, _ in plan(fresh, "days").values()} == {RUN}


def test_a_new_file_in_a_raw_folder_costs_a_full_plan_and_nothing_else(synthetic):
    first = plan(synthetic, "days")
    (synthetic.root / "data" / "raw" / "days" / "notes.txt").write_text("a file no partition reads\n")
    assert plan(synthetic, "days") == first
    assert plan(synthetic, "days", full=False) == first  # remembered again


def test_a_damaged_record_is_a_full_plan(synthetic):
    first = plan(synthetic, "days")
    record(synthetic, "days").write_text("{not json")
    assert plan(synthetic, "days") == first
    os.utime(record(synthetic, "days"))
    assert plan(synthetic, "days", full=False) == first


def test_a_files_list_not_of_its_record_is_a_full_plan(synthetic):
    first = plan(synthetic, "days")
    listed = record(synthetic, "days").with_suffix(".files")
    ident, _, paths = listed.read_bytes().partition(b"\n")
    for damaged in (b"another-record\n" + paths, ident + b"\n" + paths[: len(paths) // 3], b"", ident):
        listed.write_bytes(damaged)
        p = Project(synthetic.root, synthetic.graph, definitions=synthetic.definitions)
        decided = []
        decide = p.planner.decide
        p.planner.decide = lambda *a, **k: decided.append(a) or decide(*a, **k)  # type: ignore[method-assign]
        assert {d.partition: (d.action, d.reason) for d in p.plan(["days"])} == first
        assert len(decided) == N  # every partition decided afresh
    assert plan(synthetic, "days", full=False) == first  # written again whole


def _key(folder: Path) -> str:
    return json.loads((folder / "manifest.json").read_text())["partition"]


def test_bytes_changed_in_place_with_size_and_mtime_kept_are_seen(synthetic):
    plan(synthetic, "days")
    folder = sorted((synthetic.root / "data" / synthetic.graph.asset("days").layer / "days").iterdir())[2]
    output = next(f for f in folder.iterdir() if f.name != "manifest.json")
    st = output.stat()
    data = output.read_bytes()
    with open(output, "r+b") as f:  # same inode, same size
        f.write(bytes([data[0] ^ 1]))
    os.utime(output, ns=(st.st_atime_ns, st.st_mtime_ns))  # the change time cannot be set back
    out = plan(synthetic, "days")
    assert [k for k, (a, _) in out.items() if a != SKIP] == [_key(folder)]


# -- a change narrowed to the partitions it reaches ---------------------------------------------------

LATER = '''

@sw.asset(partitions_def=DAILY, group_name="synthetic",
          ins={"days": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2))})
def later(days: pl.DataFrame) -> pl.DataFrame:
    """Each day reads the 3 days of `days` ending with it."""
    return days
'''


@pytest.fixture
def layered(tmp_path, monkeypatch) -> Project:
    """The synthetic project with `later`, a daily asset over `days` (a 3-day window)."""
    from bench import planning

    root = planning.write_synthetic_project(tmp_path, N)
    defs = root / planning.SYNTH_PACKAGE / "definitions.py"
    text = defs.read_text().replace(
        "\ndefs = dg.Definitions(assets=[raw_days, raw_hours, days, hours]",
        LATER + "\ndefs = dg.Definitions(assets=[raw_days, raw_hours, days, hours, later]",
    )
    defs.write_text(text)
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m.split(".")[0] == planning.SYNTH_PACKAGE]:
        monkeypatch.delitem(sys.modules, name)  # imported by another test, from its own folder
    project = load_project(root)
    planning._write_data(root, project)
    return project


def decisions(project: Project, names: list[str], *, full: bool = False, fast: bool = False) -> tuple[list[tuple], int]:
    """A fresh Project's plan of `names` as (asset, key, action, reason, fingerprint), and how many
    partitions it decided one by one; `full`: without the records (every partition decided);
    `fast`: fails if it versions any raw input (nothing moved since the record)."""
    if full:
        for name in names:
            for path in (record(project, name), record(project, name).with_suffix(".inputs.json")):
                path.unlink(missing_ok=True)
    p = Project(project.root, project.graph, definitions=project.definitions)
    calls = []
    decide = p.planner.decide

    def counted(asset, key, pending=None):
        calls.append((asset.name, key))
        return decide(asset, key, pending)

    p.planner.decide = counted  # type: ignore[method-assign]
    if fast:
        p.raw_version = lambda *a: pytest.fail("versioned a raw input")  # type: ignore[method-assign]
    out = [(d.asset, d.partition, d.action, d.reason, d.fingerprint) for d in p.plan(names)]
    return out, len(calls)


def _rewrite_raw(project: Project, folder: str, index: int, dvc_add: bool) -> str:
    """Change the bytes of the `index`-th raw file of `folder` (and DVC's record of the folder too,
    as `dvc add` would, with `dvc_add`); its name."""
    from bench import planning

    raw = project.root / "data" / "raw" / folder
    path = sorted(raw.iterdir())[index]
    path.write_bytes(path.read_bytes() + b"changed\n")
    if dvc_add:
        planning._write_dvc_records(project.root, f"data/raw/{folder}", {p.name: p.read_bytes() for p in raw.iterdir()})
    return path.name


@pytest.mark.parametrize("dvc_add", [False, True])
def test_a_changed_raw_file_is_planned_for_exactly_its_readers(synthetic, dvc_add):
    assert decisions(synthetic, ["hours"])[1] == N  # the first plan: every partition
    assert decisions(synthetic, ["hours"])[1] == 0  # nothing moved: the record answers
    _rewrite_raw(synthetic, "hours", 3, dvc_add)
    narrowed, decided = decisions(synthetic, ["hours"])
    assert decided == min(24, N - 3)  # the hours whose 24-hour window holds it
    assert sorted(x[1] for x in narrowed if x[2] == RUN) == sorted(
        synthetic.graph.asset("hours").partitions.keys()[3:27]
    )
    assert narrowed == decisions(synthetic, ["hours"], full=True)[0]


def test_a_narrowed_plan_that_finds_everything_up_to_date_is_remembered(synthetic):
    decisions(synthetic, ["days"])
    raw = sorted((synthetic.root / "data" / "raw" / "days").iterdir())[5]
    data = raw.read_bytes()
    raw.write_bytes(data + b"x")
    assert [x[1] for x in decisions(synthetic, ["days"])[0] if x[2] == RUN] == [
        synthetic.graph.asset("days").partitions.keys()[5]
    ]
    raw.write_bytes(data)  # back as it was: new times, the same bytes, so no partition is reached
    again, decided = decisions(synthetic, ["days"])
    assert decided == 1 and {x[2] for x in again} == {SKIP}  # the one the last plan had to run, decided afresh
    assert decisions(synthetic, ["days"], fast=True) == (again, 0)  # the record was brought up to date


def test_a_changed_upstream_partition_is_planned_for_its_readers(layered):
    decisions(layered, ["days", "later"])
    days = layered.graph.asset("days")
    key = days.partitions.keys()[10]
    manifest = layered.store.partition_dir(days.layer, days.name, key) / "manifest.json"
    data = json.loads(manifest.read_text())
    data["output_hash"] = "f" * 64  # as if recomputed with other bytes (made consistent again below)
    manifest.write_text(json.dumps(data))
    narrowed, decided = decisions(layered, ["later"])
    assert decided == 3
    assert narrowed == decisions(layered, ["later"], full=True)[0]


def test_an_upstream_partition_planned_to_run_reaches_its_readers(layered):
    decisions(layered, ["days", "later"])
    name = _rewrite_raw(layered, "days", 7, dvc_add=True)
    narrowed, decided = decisions(layered, ["days", "later"])
    assert decided == 1 + 3  # days[7], then the 3 days of later that read it
    ran = [(a, k, why) for a, k, act, why, _ in narrowed if act == RUN]
    assert [a for a, _, _ in ran] == ["days", "later", "later", "later"], name
    assert narrowed == decisions(layered, ["days", "later"], full=True)[0]


def test_an_upstream_partition_added_costs_a_full_plan(layered):
    decisions(layered, ["days", "later"])
    days = layered.graph.asset("days")
    folder = layered.store.partition_dir(days.layer, days.name, days.partitions.keys()[0])
    shutil.rmtree(folder)
    narrowed, decided = decisions(layered, ["later"])
    assert decided == N
    assert narrowed == decisions(layered, ["later"], full=True)[0]


def test_a_raw_file_through_a_link_is_watched_through_it(synthetic):
    """A raw file that is a link (DVC's symlink cache type makes every one of them so): an edit of
    what it points at is seen, though the link itself did not move."""
    source = synthetic.graph.node("raw_days")
    key = source.partitions.keys()[4]
    raw = synthetic.root / source.path / source.file_for(key)
    target = synthetic.root / "kept" / raw.name
    target.parent.mkdir()
    shutil.move(raw, target)
    raw.symlink_to(target)
    first = plan(synthetic, "days")
    assert {a for a, _ in first.values()} == {SKIP}  # the same bytes, now through a link
    assert plan(synthetic, "days", full=False) == first
    st = target.stat()
    data = target.read_bytes()
    target.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, mtime put back
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = plan(synthetic, "days")
    assert [k for k, (a, _) in out.items() if a != SKIP] == [key]


def test_what_links_in_a_raw_folder_point_at_counts_and_a_loop_ends(tmp_path):
    import hashlib

    from skipwise.engine.settled import _walk

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "part.csv").write_text("a,b\n1,2\n")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "linked").symlink_to(tmp_path / "elsewhere")  # a folder reached through a link
    (raw / "loop").symlink_to(raw)  # and a loop, walked no further

    def digest() -> str:
        h = hashlib.sha256()
        _walk(str(raw), h)
        return h.hexdigest()

    before = digest()
    assert digest() == before
    (tmp_path / "elsewhere" / "part.csv").write_text("a,b\n1,3\n")  # same size, through the link only
    assert digest() != before


@pytest.mark.parametrize("change", ["raw file", "manifest", "output"])
def test_a_change_while_a_full_plan_decides_is_seen_by_the_next_plan(synthetic, change):
    """The record keeps the stats taken before the plan decided: a file that changes after its
    partition was decided (here: the first partition's, while the last is decided) is not passed
    off as what the decision saw."""
    asset = synthetic.graph.asset("days")
    source = synthetic.graph.node("raw_days")
    keys = asset.partitions.keys()
    folder = synthetic.root / "data" / asset.layer / "days" / key_folder(keys[0])
    p = Project(synthetic.root, synthetic.graph, definitions=synthetic.definitions)
    decide = p.planner.decide

    def deciding(a, key, pending):
        d = decide(a, key, pending)
        if key == keys[-1]:
            if change == "raw file":
                raw = synthetic.root / source.path / source.file_for(keys[0])
                raw.write_bytes(raw.read_bytes() + b"late\n")
            elif change == "manifest":
                data = json.loads((folder / "manifest.json").read_text())
                data["fingerprint"] = "0" * 64
                (folder / "manifest.json").write_text(json.dumps(data))
            else:
                next(f for f in folder.iterdir() if f.name != "manifest.json").unlink()
        return d

    p.planner.decide = deciding  # type: ignore[method-assign]
    assert {d.action for d in p.plan(["days"])} == {SKIP}  # each decided before the change
    out = plan(synthetic, "days")
    assert [k for k, (a, _) in out.items() if a != SKIP] == [keys[0]]


def _hit_lines(project: Project, decisions) -> tuple[dict[str, dict], int]:
    """The ledger's hit records (by partition) that `record_hits` writes for `decisions`, and the
    manifests it read to write them."""
    from skipwise.engine.materialization import record_hits

    reads, read = [0], project.store.read_manifest

    def counted(*args, **kwargs):
        reads[0] += 1
        return read(*args, **kwargs)

    project.store.read_manifest = counted  # type: ignore[method-assign]
    run_id = record_hits(project, decisions, {})
    project.store.read_manifest = read  # type: ignore[method-assign]
    rows = [r for r in project.ledger.rows() if r["run_id"] == run_id and r["cache"] == "hit"]
    return {r["partition"]: r for r in rows}, reads[0]


def test_hits_recorded_after_a_remembered_plan_avoid_what_their_manifests_say(synthetic):
    """A no-op materialize records every partition as a hit with the dollars its manifest recorded:
    from the settled record when the plan answered from it (no manifest read), from the manifest
    itself for a partition decided afresh; the same records as reading every manifest."""
    folders = sorted((synthetic.root / "data" / synthetic.graph.asset("days").layer / "days").iterdir())
    for i, folder in enumerate(folders):
        manifest = folder / "manifest.json"
        data = json.loads(manifest.read_text())
        data["cost"] = {"usd": 0.001 * (i + 1), "cpu_seconds": 1.0} if i % 3 else {}  # a third without a cost
        manifest.write_text(json.dumps(data))
    plan(synthetic, "days")  # the full plan: remembered
    expected = {}
    for folder in folders:
        data = json.loads((folder / "manifest.json").read_text())
        expected[data["partition"]] = data["cost"].get("usd")

    p = Project(synthetic.root, synthetic.graph, definitions=synthetic.definitions)
    p.planner.decide = lambda *a, **k: pytest.fail("planned partition by partition")  # type: ignore[method-assign]
    decisions = p.plan(["days"])
    hits, reads = _hit_lines(p, decisions)
    assert reads == 0
    assert {k: r["usd_avoided"] for k, r in hits.items()} == expected
    assert {r["method"] for r in hits.values()} == {"hit: usd_avoided from the manifest's recorded cost"}
    by_manifest = [p.execution.hit(p.graph.asset("days"), d.partition, d) for d in decisions]
    assert [o.cost for o in p.execution.hits(decisions)] == [o.cost for o in by_manifest]

    # One manifest rewritten with another cost (same fingerprint, so still up to date): decided
    # afresh, and its hit avoids what it says now; the others still come from the record.
    manifest = folders[4] / "manifest.json"
    data = json.loads(manifest.read_text())
    data["cost"] = {"usd": 42.0}
    manifest.write_text(json.dumps(data))
    p = Project(synthetic.root, synthetic.graph, definitions=synthetic.definitions)
    decisions = p.plan(["days"])
    assert {d.action for d in decisions} == {SKIP}
    hits, reads = _hit_lines(p, decisions)
    assert reads == 1 and hits[data["partition"]]["usd_avoided"] == 42.0
    assert {k: r["usd_avoided"] for k, r in hits.items()} == {**expected, data["partition"]: 42.0}


def test_a_plan_with_partitions_to_run_is_remembered_with_them_pending(synthetic):
    # A project where every plan has something to run (a raw file changes, and `dvc add` records
    # it, before each) keeps a record: the partitions a plan did not find up to date are decided
    # afresh by every later plan, the others come from the record, until a plan finds them up to date.
    dvc_add = True
    _rewrite_raw(synthetic, "hours", 3, dvc_add)
    full, decided = decisions(synthetic, ["hours"], full=True)  # no record: every partition
    assert decided == N
    to_run = sorted(x[1] for x in full if x[2] == RUN)
    assert len(to_run) == min(24, N - 3)
    assert record(synthetic, "hours").exists()
    again, decided = decisions(synthetic, ["hours"])  # nothing moved since
    assert again == full and decided == len(to_run)  # the pending ones, still to run (not passed off as hits)
    stamp = record(synthetic, "hours").stat().st_mtime_ns
    assert decisions(synthetic, ["hours"])[0] == full
    assert record(synthetic, "hours").stat().st_mtime_ns == stamp  # the same pending: not written again

    _rewrite_raw(synthetic, "hours", 10, dvc_add)  # another change before the first one ran
    second, decided = decisions(synthetic, ["hours"])
    assert second == decisions(synthetic, ["hours"], full=True)[0]
    assert decided < N

    from bench.planning import settle, write_partition

    p = Project(synthetic.root, synthetic.graph, definitions=synthetic.definitions)
    ran = sorted(x[1] for x in second if x[2] == RUN)
    for key in ran:  # committed as a run of them would
        write_partition(p, p.graph.asset("hours"), key)
    settle()
    after, decided = decisions(synthetic, ["hours"])
    assert {x[2] for x in after} == {SKIP} and decided == len(ran)  # what ran, decided afresh
    assert json.loads(record(synthetic, "hours").read_text())["pending"] == []
    assert decisions(synthetic, ["hours"], fast=True) == (after, 0)  # the record is up to date again


def test_a_plan_with_nothing_up_to_date_keeps_no_record(synthetic):
    (synthetic.root / "params.yaml").write_text("days: {threshold: 2}\n")
    out, decided = decisions(synthetic, ["days"], full=True)
    assert {x[2] for x in out} == {RUN} and not record(synthetic, "days").exists()
