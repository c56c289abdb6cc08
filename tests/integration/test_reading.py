"""sw.read / sw.scan / sw.relation: committed current partitions only, each checked against its
manifest, never an older kept version or a half-written file."""

from __future__ import annotations

import json
import threading

import polars as pl
import pytest
import skipwise as sw
from skipwise.core.errors import InputError
from skipwise.engine.project import Project

pytestmark = pytest.mark.integration

DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]


def fresh(project: Project) -> Project:
    return Project(project.root, project.graph, definitions=project.definitions)


def test_read_scan_and_relation_see_the_current_versions_only(project, monkeypatch):
    root = project.root
    monkeypatch.chdir(root / "assets")  # the project is found from a subfolder
    with pytest.raises(InputError, match="has not been materialized"):
        sw.read("weather_features", partition=DAYS[0])
    list(fresh(project).materialize("weather_features", DAYS))
    one = sw.read("weather_features", partition=DAYS[0])
    assert isinstance(one, pl.DataFrame) and one.height > 0
    total = sw.scan("weather_features").collect()
    # A second version of every partition (another param value) is kept beside the first.
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("window_hours: 3", "window_hours: 4"))
    list(fresh(project).materialize("weather_features", DAYS))
    assert all(len(list((root / "data/features/weather_features" / d).glob("*.parquet"))) == 2 for d in DAYS)
    again = sw.scan("weather_features").collect()
    assert again.height == total.height  # not doubled by the kept versions
    assert sw.scan("weather_features", partitions=f"{DAYS[0]}...{DAYS[2]}").collect().height == sum(
        sw.read("weather_features", partition=d).height for d in DAYS[:3]
    )
    rel = sw.relation("weather_features", partitions=f"{DAYS[0]}...{DAYS[2]}")
    assert rel.aggregate("count(*)").fetchall()[0][0] == sum(
        sw.read("weather_features", partition=d).height for d in DAYS[:3]
    )

    # A damaged current output is refused with the fix, never returned.
    m = json.loads((root / "data/features/weather_features" / DAYS[1] / "manifest.json").read_text())
    out = root / "data/features/weather_features" / DAYS[1] / m["output"]
    out.write_bytes(out.read_bytes()[:-10])
    with pytest.raises(InputError, match="no longer matches its manifest"):
        sw.read("weather_features", partition=DAYS[1])
    with pytest.raises(InputError, match="no longer matches its manifest"):
        sw.scan("weather_features")
    with pytest.raises(InputError, match="no skipwise asset named"):
        sw.read("nope", partition=DAYS[0])


def test_a_reader_during_materialization_sees_each_partition_whole(project):
    list(fresh(project).materialize("weather_features", DAYS))
    params = project.root / "params.yaml"
    seen: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                df = sw.read("weather_features", partition=DAYS[5], root=project.root)
                seen.append((df.height, str(df.schema)))
            except InputError as exc:  # replaced between check and read: refused, never half-read
                if "changed while it was being read" not in str(exc) and "no longer matches" not in str(exc):
                    errors.append(exc)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for hours in (4, 5, 3, 4):
            text = params.read_text()
            for h in (3, 4, 5):
                text = text.replace(f"window_hours: {h}", f"window_hours: {hours}")
            params.write_text(text)
            list(fresh(project).materialize("weather_features", DAYS))
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:3]
    assert seen and len({s for _, s in seen}) == 1
