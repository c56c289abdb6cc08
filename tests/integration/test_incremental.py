"""The incremental engine on real data and a real DVC repo: exactly what changed is recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from skipwise.core.errors import InputError, PartitionKeyError
from skipwise.core.plan import RESTORE, RUN, SKIP
from skipwise.engine.project import Project

from tests.conftest import DVC, run

DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]
FEATURES = ["flight_features", "weather_features"]


def build(project: Project, names=FEATURES, keys=DAYS) -> dict[str, set[str]]:
    """Materialize `names`; return the partitions actually computed, per asset."""
    done: dict[str, set[str]] = {}
    for n in names:
        done[n] = {
            o.decision.partition
            for o in project.materialize(n, keys if project.graph.asset(n).partitions else None)
            if o.computed
        }
    return done


def fresh(project: Project) -> Project:
    """A new Project over the same folder (as the next command would load it)."""
    return Project(project.root, project.graph)


def edit_raw(root: Path, kind: str, day: str, fn) -> None:
    path = root / "data" / "raw" / kind / f"{day}.parquet"
    fn(pl.read_parquet(path)).write_parquet(path, compression="zstd", statistics=False)


def running(project: Project, names=FEATURES, keys=DAYS) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in project.plan(names, keys):
        if d.action == RUN:
            out.setdefault(d.asset, []).append(d.partition)
    return out


def test_one_changed_raw_day_reruns_exactly_the_days_that_look_back_on_it(project):
    assert build(project) == {n: set(DAYS) for n in FEATURES}
    assert build(fresh(project)) == {n: set() for n in FEATURES}  # second run: nothing

    edit_raw(project.root, "flights", "2013-01-05", lambda df: df.head(df.height - 1))
    run([DVC, "add", "-q", "data/raw/flights"], cwd=project.root)
    p = fresh(project)
    plan = {d.partition: d for d in p.plan(["flight_features"], DAYS)}
    assert [k for k, d in plan.items() if d.action == RUN] == DAYS[4:]  # 01-05 .. 01-12 (7-day look-back)
    assert plan["2013-01-05"].reason == "input raw_flights[2013-01-05] changed"
    assert plan["2013-01-04"].action == SKIP
    assert p.io.snapshot().bytes_read == 0  # planning read no partition data
    assert p.warnings == []  # our md5 of every raw file agrees with what real DVC recorded
    assert build(p) == {"flight_features": set(DAYS[4:]), "weather_features": set()}


def test_uncommitted_raw_edit_is_noticed_used_and_warned(project):
    build(project)
    edit_raw(project.root, "weather", "2013-01-03", lambda df: df.with_columns(pl.col("temp") + 1))
    p = fresh(project)
    assert running(p) == {"weather_features": ["2013-01-03", "2013-01-04"]}
    assert any("differs from what DVC recorded" in w and "dvc add data/raw/weather" in w for w in p.warnings)


def test_helper_edit_reruns_only_the_assets_that_use_it(project):
    build(project)
    src = project.root / "assets" / "features" / "weather.py"
    text = src.read_text()
    src.write_text(text.replace('"""', '"""Reworded docstring. ', 1) + "\n# a trailing comment\n")
    assert running(fresh(project)) == {}  # comments and docstrings do not count
    src.write_text(
        text.replace("def build_weather_features(", "_UNUSED = 1\n\n\ndef build_weather_features(", 1).replace(
            "    return ", "    _ = _UNUSED\n    return ", 1
        )
    )
    plan = fresh(project).plan(FEATURES, DAYS)
    assert {d.asset for d in plan if d.action == RUN} == {"weather_features"}
    assert all(d.reason == "code of weather_features changed" for d in plan if d.action == RUN)


def test_params_rerun_only_their_asset(project):
    build(project)
    params = project.root / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 6", "epochs: 7"))
    assert running(fresh(project)) == {}  # a model param: no feature partition reruns
    params.write_text(params.read_text().replace("window_hours: 3", "window_hours: 4"))
    plan = running(fresh(project))
    assert plan == {"weather_features": DAYS}
    assert {d.reason for d in fresh(project).plan(["weather_features"], DAYS)} == {"params changed"}


def test_identical_recomputed_output_stops_the_cascade(project):
    names = [*FEATURES, "training_set"]
    build(project, names)
    # air_time is not a feature: the raw file changes, flight_features recomputes to the same bytes.
    edit_raw(project.root, "flights", "2013-01-12", lambda df: df.with_columns(pl.col("air_time") + 1))
    run([DVC, "add", "-q", "data/raw/flights"], cwd=project.root)
    p = fresh(project)
    assert [d.reason for d in p.plan(["training_set"]) if d.action == RUN] == []  # not yet: plan sees inputs only
    assert build(p, names) == {"flight_features": {"2013-01-12"}, "weather_features": set(), "training_set": set()}


def test_deleted_or_edited_output_is_detected_and_recomputed(project):
    build(project)
    d = project.root / "data" / "features" / "flight_features"
    m3 = json.loads((d / "2013-01-03" / "manifest.json").read_text())
    (d / "2013-01-03" / m3["output"]).unlink()
    m4 = json.loads((d / "2013-01-04" / "manifest.json").read_text())
    out4 = d / "2013-01-04" / m4["output"]
    data = bytearray(out4.read_bytes())
    data[-20] ^= 0xFF  # same size, different bytes
    out4.write_bytes(bytes(data))
    (d / "2013-01-06" / "manifest.json").write_text("{not json")
    decisions = fresh(project).plan(["flight_features"], DAYS)
    plan = {x.partition: x.reason for x in decisions if x.action == RUN}
    assert plan == {"2013-01-03": "output file missing", "2013-01-04": "output file changed"}
    # The unreadable manifest's kept copy (versions/) and its output are intact: restored, not recomputed.
    (restore,) = [x for x in decisions if x.action == RESTORE]
    assert restore.partition == "2013-01-06" and restore.reason.startswith("missing; a kept version")
    assert build(fresh(project)) == {"flight_features": {"2013-01-03", "2013-01-04"}, "weather_features": set()}
    (kept,) = (d / "2013-01-06" / "versions").glob("*.json")
    assert json.loads((d / "2013-01-06" / "manifest.json").read_text()) == json.loads(kept.read_text())


@pytest.mark.parametrize("key", ["../x", "/etc", "", "2013-01-01/../../x"])
def test_hostile_partition_keys_are_refused_before_any_write(project, key):
    with pytest.raises(PartitionKeyError):
        list(project.materialize("flight_features", [key]))
    assert not (project.root / "data" / "features").exists()
    out = run(
        ["skipwise", "plan", "--partition", key or "''", "--select", "flight_features"],
        cwd=project.root,
        check=False,
        env={"PYTHONPATH": str(project.root)},
    )
    assert out.returncode != 0 and "Error:" in out.stderr and "partition key" in out.stderr


def test_missing_raw_file_names_the_file_and_the_fix(project):
    (project.root / "data" / "raw" / "flights" / "2013-01-02.parquet").unlink()
    with pytest.raises(InputError) as e:
        list(project.materialize("flight_features", ["2013-01-02"]))
    assert "data/raw/flights/2013-01-02.parquet" in str(e.value) and "dvc checkout" in str(e.value)


def test_corrupt_raw_file_is_named_with_the_fix_and_good_data_is_untouched(project):
    build(project, ["flight_features"], DAYS[:3])
    before = sorted((project.root / "data/features/flight_features").glob("*/*"))
    (project.root / "data/raw/flights/2013-01-02.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError) as e:
        list(fresh(project).materialize("flight_features", ["2013-01-02"]))
    assert "data/raw/flights/2013-01-02.parquet is not readable parquet" in str(e.value)
    assert "dvc checkout data/raw/flights" in str(e.value)
    assert sorted((project.root / "data/features/flight_features").glob("*/*")) == before


def test_schema_drift_in_a_look_back_day_is_named(project):
    edit_raw(project.root, "flights", "2013-01-03", lambda df: df.drop("dep_delay"))
    with pytest.raises(InputError) as e:
        list(project.materialize("flight_features", ["2013-01-05"]))
    assert "schema drift in data/raw/flights/2013-01-03.parquet" in str(e.value) and "dep_delay" in str(e.value)
