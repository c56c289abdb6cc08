"""No false hit: copied projects, code edited during a run, restored mtimes, damaged ledgers, kills
and symlinks out of the data root. Each runs the real engine in real subprocesses over a copy of
the project (its own code, raw data and DVC repo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run
from tests.integration.test_robustness import DAYS, build, committed, slow_down, start

pytestmark = pytest.mark.integration


def cli(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(root)}
    return run([sys.executable, "-m", "skipwise.cli.main", *args], cwd=root, env=env, check=check)


def plan(root: Path, select: str) -> dict:
    p = cli(root, "plan", "--select", select, "--partition", f"{DAYS[0]}...{DAYS[-1]}", "--json", check=True)
    return json.loads(p.stdout)


def edit_weather_code(root: Path) -> None:
    path = root / "assets" / "features" / "weather.py"
    text = path.read_text()
    assert 'closed="right"' in text
    path.write_text(text.replace('closed="right"', 'closed="both"'))


def test_a_copied_project_never_trusts_the_originals_code_versions(project_dir, tmp_path):
    build(project_dir, ["weather_features"])
    assert plan(project_dir, "weather_features")["run"] == 0  # caches are warm in the original
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(project_dir), str(copy)], check=True)  # mtimes kept, like a CI cache
    edit_weather_code(copy)
    in_copy = plan(copy, "weather_features")
    assert in_copy["run"] == len(DAYS)
    assert {r["reason"] for r in in_copy["partitions"]} == {"code of weather_features changed"}
    assert plan(project_dir, "weather_features")["run"] == 0  # the original is untouched and still right


PER_STEP = (  # like Dagster: each asset's step loads the project afresh, the modules stay imported
    "from skipwise.engine.loading import load_project\n"
    "for a in ['flight_features', 'weather_features']:\n"
    "    for o in load_project('.').materialize(a, {days!r}, run_id='r'):\n"
    "        print(a, o.decision.partition, o.decision.action, flush=True)\n"
)


@pytest.mark.parametrize("per_step", [False, True], ids=["one-project", "project-per-step"])
def test_code_edited_while_a_run_is_in_flight_is_never_recorded_for_the_old_code(project_dir, per_step):
    slow_down(project_dir)  # flight_features takes 0.25 s a partition: the edit lands during the run
    if per_step:
        env = {**os.environ, "PYTHONPATH": str(project_dir)}
        p = subprocess.Popen(
            [sys.executable, "-c", PER_STEP.format(days=DAYS)],
            cwd=project_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    else:
        p = start(project_dir, ["flight_features", "weather_features"], DAYS)
    first = p.stdout.readline()  # assets.definitions (and the weather module it imports) are loaded now
    assert first.startswith("flight_features")
    edit_weather_code(project_dir)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert sum(line.startswith("weather_features") and line.endswith(" run") for line in out.splitlines()) == len(DAYS)
    if per_step:  # the step versioned the edited file but ran the module imported before the edit
        assert "changed after weather_features's code was imported" in err
    after = plan(project_dir, "weather_features")
    assert after["run"] == len(DAYS)  # what ran was the old code: stale against the new code
    assert {r["reason"] for r in after["partitions"]} == {"code of weather_features changed"}
    assert len(build(project_dir, ["weather_features"])) == len(DAYS)
    assert plan(project_dir, "weather_features")["run"] == 0


def test_a_same_size_edit_with_its_mtime_restored_is_seen(project_dir):
    build(project_dir, ["flight_features"])
    path = project_dir / "data" / "raw" / "flights" / "2013-01-05.parquet"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    got = plan(project_dir, "flight_features")
    assert [r["partition"] for r in got["partitions"]] == DAYS[4:]  # the day and the 7 that look back on it
    assert any("2013-01-05.parquet differs from what DVC recorded" in w for w in got["warnings"])


def test_a_damaged_ledger_file_is_skipped_with_a_warning_and_never_blocks_work(project_dir):
    build(project_dir, ["weather_features"], DAYS[:3])
    files = sorted((project_dir / "data" / "ledger").glob("*/*.jsonl"))
    assert files
    text = files[0].read_bytes()
    files[0].write_bytes(text[: len(text) // 2 + 7])  # torn in the middle of a line
    (files[0].parent / "garbage.jsonl").write_bytes(b'\xff\xfe not json\n{"ts": 1\n')
    p = cli(project_dir, "plan", "--select", "weather_features", "--partition", f"{DAYS[0]}...{DAYS[-1]}", "--cost")
    assert p.returncode == 0, p.stderr
    assert f"{files[0]}: skipped 1 damaged line" in p.stderr and "garbage.jsonl: skipped 2 damaged line" in p.stderr
    assert "Traceback" not in p.stderr
    c = cli(project_dir, "cost", "--by", "asset")
    assert c.returncode == 0 and "weather_features" in c.stdout, c.stderr
    assert f"{files[0]}: skipped 1 damaged line" in c.stderr and "garbage.jsonl: skipped 2 damaged line" in c.stderr
    assert len(build(project_dir, ["weather_features"], DAYS)) == len(DAYS) - 3  # materializing still works
    assert files[0].read_bytes() == text[: len(text) // 2 + 7]  # damaged files are left as they were


def test_a_killed_run_keeps_the_cost_records_of_every_partition_it_committed(project_dir):
    slow_down(project_dir)
    p = start(project_dir, ["flight_features"], DAYS)
    seen = 0
    while seen < 5:
        if p.stdout.readline():
            seen += 1
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = {k for (a, k) in committed(project_dir) if a == "flight_features"}
    assert len(done) >= 5
    records = []
    for f in (project_dir / "data" / "ledger").glob("*/*.jsonl"):
        records += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    misses = {r["partition"] for r in records if r["asset"] == "flight_features" and r["cache"] == "miss"}
    assert done <= misses
    assert all(r["cpu_seconds"] is not None for r in records if r["cache"] == "miss")


def test_a_partition_folder_linked_out_of_the_data_root_is_refused_and_nothing_outside_is_touched(
    project_dir, tmp_path
):
    build(project_dir, ["flight_features"], DAYS[:2])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".victim.parquet.tmp-1-abc").write_bytes(b"not yours")  # what the temp sweep would delete
    (outside / "keep.txt").write_text("keep")
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    link = project_dir / "data" / "features" / "flight_features" / DAYS[2]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    proc = start(project_dir, ["flight_features"], DAYS[:4])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "outside the data root" in err and str(link) in err
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before  # nothing written, nothing deleted
    p = cli(project_dir, "plan", "--select", "flight_features")
    assert p.returncode == 1 and "outside the data root" in p.stderr and "Traceback" not in p.stderr


def test_status_explain_says_where_the_code_version_counted_more(project_dir):
    defs = project_dir / "assets" / "definitions.py"
    head = "def weather_features(context: dg.AssetExecutionContext, raw_weather: pl.DataFrame, config: WeatherConfig) -> pl.DataFrame:\n"
    assert head in defs.read_text()
    defs.write_text(defs.read_text().replace(head, head + "    assert globals()\n"))
    p = cli(project_dir, "status", "--select", "weather_features", "--explain", "--json", check=True)
    code = json.loads(p.stdout)["code"]["weather_features"]
    assert "assets/features/weather.py" in code["files"] and any(v.startswith("polars==") for v in code["third_party"])
    assert any("globals()" in n and "assets.definitions" in n for n in code["notes"])
    text = cli(project_dir, "status", "--select", "weather_features", "--explain", check=True).stdout
    assert "weather_features: code version" in text and "globals()" in text


def test_a_raw_file_linked_out_of_the_project_is_refused_when_planning(project_dir, tmp_path):
    secret = tmp_path / "secret.parquet"
    raw = project_dir / "data" / "raw" / "flights" / "2013-01-04.parquet"
    secret.write_bytes(raw.read_bytes())
    raw.unlink()
    raw.symlink_to(secret)
    p = cli(project_dir, "plan", "--select", "flight_features", "--partition", f"{DAYS[0]}...{DAYS[-1]}")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"{raw} resolves to {secret}, outside the project" in p.stderr
