"""A plan of an asset found wholly up to date is remembered (`skipwise.engine.settled`): the next plan
answers from one pass of stat calls, and any change a decision depends on sends it back through the
full plan, which answers exactly as it would have without the record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skipwise.core.plan import RUN, SKIP
from skipwise.engine.loading import load_project
from skipwise.engine.project import Project

pytestmark = pytest.mark.integration

N = 30  # daily and hourly partitions of the synthetic planning project


@pytest.fixture
def synthetic(tmp_path, monkeypatch) -> Project:
    from bench import planning

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
        p.decide = lambda *a, **k: pytest.fail("planned partition by partition")  # type: ignore[method-assign]
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
