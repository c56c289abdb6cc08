"""Nothing lost: SIGKILL at any moment, concurrent writers, and random edit sequences.

These run the engine in real subprocesses over a copy of the project (its own code, so code edits
in the copy are what runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DVC, run

DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]
ASSETS = ["flight_features", "weather_features", "training_set"]


def engine_cmd(assets: list[str], days: list[str]) -> list[str]:
    code = (
        "import sys; from skipwise.engine.loading import load_project\n"
        "p = load_project('.')\n"
        f"for a in {assets!r}:\n"
        f"    keys = {days!r} if p.graph.asset(a).partitions else None\n"
        "    for o in p.materialize(a, keys, run_id='r'):\n"
        "        print(a, o.decision.partition, o.decision.action, flush=True)\n"
    )
    return [sys.executable, "-c", code]


def start(root: Path, assets: list[str], days: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen(
        engine_cmd(assets, days), cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def build(root: Path, assets=ASSETS, days=DAYS) -> list[str]:
    p = start(root, assets, days)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    return [line for line in out.splitlines() if line.endswith(" run")]


def committed(root: Path) -> dict[tuple[str, str], str]:
    """Every committed partition -> output hash, checking each manifest points at intact bytes."""
    out = {}
    for mpath in (root / "data").glob("*/*/*/manifest.json"):
        m = json.loads(mpath.read_text())  # a torn manifest would fail here
        data = (mpath.parent / m["output"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m["output_hash"], f"{mpath}: output does not match"
        out[(m["asset"], m["partition"])] = m["output_hash"]
    return out


def slow_down(root: Path) -> None:
    # The copy's flight_features takes 0.25 s a partition, so kills land inside the work.
    defs = root / "assets" / "definitions.py"
    text = defs.read_text()
    line = "    return build_flight_features(raw_flights, _day(context)"
    assert line in text
    defs.write_text(text.replace(line, '    __import__("time").sleep(0.25)\n' + line))


def copy_without_outputs(src: Path, dst: Path) -> None:
    """Copy a project with its code, raw data and DVC state, but none of skipwise's outputs or caches."""
    data = (src / "data").resolve()

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n != "raw"] if Path(folder).resolve() == data else []

    shutil.copytree(src, dst, ignore=ignore)


@pytest.fixture
def reference(project_dir, tmp_path) -> dict:
    """Output hashes of a clean build of the 12 days (same code and data as each test's copy)."""
    ref = tmp_path / "ref"
    copy_without_outputs(project_dir, ref)
    build(ref)
    return committed(ref)


@pytest.mark.parametrize("kill_after", [0, 2, 5, 9])
def test_sigkill_at_any_point_leaves_old_or_new_and_the_next_run_finishes(project_dir, reference, kill_after):
    slow_down(project_dir)
    p = start(project_dir, ["flight_features"], DAYS)
    seen = 0
    t0 = time.monotonic()
    while seen < kill_after and time.monotonic() - t0 < 120:
        if p.stdout.readline():
            seen += 1
    time.sleep(0.1 * (kill_after % 3))  # vary where inside the next partition the kill lands
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = committed(project_dir)  # no torn manifest, no manifest pointing at a partial file
    assert all(reference[k] == v for k, v in before.items())
    ran = build(project_dir)
    after = committed(project_dir)
    assert after == reference
    assert not list((project_dir / "data").glob("features/*/*/.*.tmp-*"))  # leftovers swept
    assert len([r for r in ran if r.startswith("flight_features")]) == 12 - len(before)  # only what was missing


def test_two_processes_on_overlapping_partitions_never_corrupt_and_never_duplicate_work(project_dir, reference):
    slow_down(project_dir)
    a = start(project_dir, ["flight_features"], DAYS[:8])
    b = start(project_dir, ["flight_features"], DAYS[4:])
    outs = [a.communicate(timeout=300), b.communicate(timeout=300)]
    assert a.returncode == 0 and b.returncode == 0, [o[1][-2000:] for o in outs]
    ran = [line for o in outs for line in o[0].splitlines() if line.endswith(" run")]
    assert sorted(ran) == sorted(f"flight_features {d} run" for d in DAYS)  # each partition computed once
    got = committed(project_dir)
    assert got == {k: v for k, v in reference.items() if k[0] == "flight_features"}


# -- property: random edits then incremental runs == a from-scratch build of the same state -------


def op_raw(root: Path, kind: str, day: str) -> None:
    path = root / "data" / "raw" / kind / f"{day}.parquet"
    df = pl.read_parquet(path)
    df = df.head(max(df.height - 3, 0)) if kind == "flights" else df.with_columns(pl.col("temp") + 0.5)
    df.write_parquet(path, compression="zstd", statistics=False)
    run([DVC, "add", "-q", f"data/raw/{kind}"], cwd=root)


def op_code(root: Path) -> None:
    defs = root / "assets" / "definitions.py"
    text = defs.read_text()
    old = "config.window_hours)"
    assert old in text
    new = "(config.window_hours % 5 + 1))"
    defs.write_text(text.replace(old, new) if new not in text else text.replace("% 5 + 1", "% 4 + 1"))


def op_params(root: Path) -> None:
    params = root / "params.yaml"
    text = params.read_text()
    params.write_text(
        text.replace("delay_threshold_minutes: 15", "delay_threshold_minutes: 20")
        if "minutes: 15" in text
        else text.replace("delay_threshold_minutes: 20", "delay_threshold_minutes: 15")
    )


def op_delete(root: Path, day: str) -> None:
    d = root / "data" / "features" / "flight_features" / day
    m = json.loads((d / "manifest.json").read_text())
    (d / m["output"]).unlink(missing_ok=True)


OPS = st.one_of(
    st.tuples(st.just("raw"), st.sampled_from(["flights", "weather"]), st.sampled_from(DAYS)),
    st.tuples(st.just("code")),
    st.tuples(st.just("params")),
    st.tuples(st.just("delete"), st.sampled_from(DAYS)),
)


@pytest.fixture
def built(project_dir) -> Path:
    build(project_dir)
    return project_dir


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(ops=st.lists(OPS, min_size=1, max_size=3))
def test_random_edits_then_incremental_runs_equal_a_scratch_build(built, tmp_path_factory, ops):
    work = tmp_path_factory.mktemp("work") / "p"
    shutil.copytree(built, work)
    for op in ops:
        {
            "raw": lambda: op_raw(work, op[1], op[2]),
            "code": lambda: op_code(work),
            "params": lambda: op_params(work),
            "delete": lambda: op_delete(work, op[1]),
        }[op[0]]()
        build(work)
    scratch = tmp_path_factory.mktemp("scratch") / "p"
    copy_without_outputs(work, scratch)
    build(scratch)
    assert committed(work) == committed(scratch)
