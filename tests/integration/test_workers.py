"""A level split across processes (`skipwise materialize --workers N`): the same bytes as one
process, one record per partition, and records that add up to what the OS says of the command
and its workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from skipwise.store.ledger import Ledger

from tests.conftest import BIN, FIRST_DAYS, run

pytestmark = pytest.mark.integration

ASSETS = "flight_features,weather_features"


def _materialize(
    root: Path, home: Path, *extra: str, path: Path | None = None, ok: bool = True, select: str = ASSETS
) -> tuple[str, float]:
    """`skipwise materialize` of `select` as a child process: (its output, its CPU and its
    children's, from the kernel). `path`: a folder put first on its PYTHONPATH; `ok`: whether it
    must succeed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*([str(path)] if path else []), str(root)])}
    env["DAGSTER_HOME"] = str(home)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SKIPWISE_WORKERS", None)
    child = subprocess.Popen(
        [str(BIN / "skipwise"), "materialize", "--select", select, "--partition", FIRST_DAYS, *extra],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    assert (os.waitstatus_to_exitcode(status) == 0) == ok, out[-4000:]
    return out, usage.ru_utime + usage.ru_stime


def _outputs(root: Path) -> dict[str, bytes]:
    data = root / "data" / "features"
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*.parquet"))}


def test_two_workers_write_what_one_process_writes_and_account_for_all_of_it(project_dir, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(project_dir, single, symlinks=True)
    _materialize(single, tmp_path / "home1", "--workers", "1")

    out, os_cpu = _materialize(project_dir, tmp_path / "home2", "--workers", "2")
    assert "24 of 24 partitions computed" in out, out[-3000:]
    assert _outputs(project_dir) == _outputs(single)  # byte for byte, under the same fingerprints

    rows = Ledger(project_dir / "data" / "ledger").read()
    misses = [r for r in rows if r["cache"] == "miss"]
    assert sorted((r["asset"], r["partition"]) for r in misses) == sorted(
        {(r["asset"], r["partition"]) for r in misses}
    )  # each partition computed once, by one process
    assert len(misses) == 24
    runs = {r["run_id"] for r in misses}
    assert len(runs) == 2  # two Dagster runs, one per process, over disjoint spans
    by_run = {rid: sorted(r["partition"] for r in misses if r["run_id"] == rid) for rid in runs}
    first, second = sorted(by_run.values())
    assert first[-1] < second[0]

    # The command's records and its worker's add up to what the kernel says both used (the
    # worker is the command's child: counted once, in its own records).
    recorded = sum(r["cpu_seconds"] or 0.0 for r in rows if r["cache"] in ("miss", "run"))
    assert abs(recorded - os_cpu) <= 0.10 * os_cpu, f"records {recorded:.3f} s vs the OS {os_cpu:.3f} s"
    assert runs <= {r["run_id"] for r in rows if r["cache"] == "run"}  # each process's run records

    # Nothing left to do: a second invocation launches no run at all, whatever the worker count.
    again, _ = _materialize(project_dir, tmp_path / "home2", "--workers", "2")
    assert "0 of 24 partitions computed" in again and "nothing to do" in again


def test_the_worker_is_forked_from_the_command_and_runs_the_code_it_loaded(project_dir, tmp_path):
    # Every interpreter that starts with this PYTHONPATH says so: a fresh worker would be a second.
    starts, hook = tmp_path / "starts.txt", tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(f"open({str(starts)!r}, 'a').write('started\\n')\n")
    out, _ = _materialize(project_dir, tmp_path / "home", "--workers", "2", path=hook)
    assert "24 of 24 partitions computed" in out, out[-3000:]
    misses = [r for r in Ledger(project_dir / "data" / "ledger").read() if r["cache"] == "miss"]
    assert len({r["run_id"] for r in misses}) == 2  # two processes, one Dagster run each
    assert starts.read_text().splitlines() == ["started"]  # one interpreter start: the command's


def test_a_later_level_forks_its_worker_too_and_the_records_add_up(project_dir, tmp_path):
    """After the first level this process has run polars work and cannot fork: a later split
    level's worker comes from a zygote forked before that, not from a fresh interpreter."""
    starts, hook = tmp_path / "starts.txt", tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(f"open({str(starts)!r}, 'a').write('started\\n')\n")
    every = f"{ASSETS},training_set,delay_model,delay_predictions"
    # (Its output is read to its end: a zygote left running would hold it open.)
    out, os_cpu = _materialize(project_dir, tmp_path / "home", "--workers", "2", path=hook, select=every)
    assert "38 of 38 partitions computed" in out, out[-3000:]
    rows = Ledger(project_dir / "data" / "ledger").read()
    misses = [r for r in rows if r["cache"] == "miss"]
    predicted = {r["run_id"] for r in misses if r["asset"] == "delay_predictions"}
    assert len(predicted) == 2 and len({r["run_id"] for r in misses}) == 6  # 2 + 1 + 1 + 2 Dagster runs
    assert starts.read_text().splitlines() == ["started"]  # one interpreter start: the command's
    recorded = sum(r["cpu_seconds"] or 0.0 for r in rows if r["cache"] in ("miss", "run"))
    assert abs(recorded - os_cpu) <= 0.10 * os_cpu, f"records {recorded:.3f} s vs the OS {os_cpu:.3f} s"


def test_a_worker_that_fails_fails_the_command_and_the_other_span_stays_committed(project_dir, tmp_path):
    bad = project_dir / "data" / "raw" / "flights" / "2013-01-12.parquet"  # in the worker's span
    bad.unlink()  # (a link into DVC's cache, maybe: never write through it)
    bad.write_bytes(b"not parquet")
    out, _ = _materialize(project_dir, tmp_path / "home", "--workers", "2", ok=False)
    assert "2013-01-12.parquet" in out and "Error:" in out, out[-3000:]
    ledger = Ledger(project_dir / "data" / "ledger")
    done = {(r["asset"], r["partition"]) for r in ledger.read() if r["cache"] == "miss"}
    assert {(a, f"2013-01-{d:02d}") for a in ASSETS.split(",") for d in range(1, 7)} <= done  # the command's own span
    assert ("flight_features", "2013-01-12") not in done
    assert not list((project_dir / "data").rglob("*.tmp*"))  # nothing half-written left behind
    # With the file back as DVC has it, the next run computes exactly what is left.
    bad.unlink()
    subprocess.run([str(BIN / "dvc"), "checkout", "-q", "data/raw/flights"], cwd=project_dir, check=True)
    again, _ = _materialize(project_dir, tmp_path / "home", "--workers", "2")
    assert f"{24 - len(done)} of 24 partitions computed" in again, again[-3000:]
    assert len({(r["asset"], r["partition"]) for r in ledger.read() if r["cache"] == "miss"}) == 24


def test_workers_must_be_positive(project_dir):
    p = run([str(BIN / "skipwise"), "materialize", "--workers", "0"], cwd=project_dir, check=False)
    assert p.returncode == 2 and "--workers must be 1 or more" in p.stderr


def _group(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry))
    return out


def _forks(pid: int) -> int:
    """How many children of `pid` are forks of it (its command line, not a program it started)."""
    try:
        own = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return 0
    n = 0
    for other in _group(pid):
        try:
            ppid = int(Path(f"/proc/{other}/stat").read_text().rsplit(")", 1)[1].split()[1])
            n += ppid == pid and Path(f"/proc/{other}/cmdline").read_bytes() == own
        except OSError:
            continue
    return n


def test_ctrl_c_stops_the_command_its_zygote_and_their_workers_and_the_next_run_finishes(project_dir, tmp_path):
    every = f"{ASSETS},training_set,delay_model,delay_predictions"
    env = {**os.environ, "PYTHONPATH": str(project_dir), "DAGSTER_HOME": str(tmp_path / "home")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(BIN / "skipwise"), "materialize", "--select", every, "--partition", FIRST_DAYS, "--workers", "2"]
    child = subprocess.Popen(
        cmd, cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while _forks(child.pid) < 2 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the command has forked its zygote and a worker
    assert child.poll() is None, child.stdout.read().decode()[-3000:]
    os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    try:
        out = child.communicate(timeout=60)[0].decode()  # to its end: no process left holds it open
        # Interrupted inside Dagster's run: its step fails ("Error: ..."); before it: "interrupted" (130).
        assert child.returncode != 0 and ("Error:" in out or "interrupted" in out), out[-3000:]
        time.sleep(0.5)
        assert _group(child.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # whatever a failure left running
    assert not list((project_dir / "data").rglob("*.tmp*"))  # nothing half-written left behind
    done = {
        (r["asset"], r["partition"]) for r in Ledger(project_dir / "data" / "ledger").read() if r["cache"] == "miss"
    }
    again, _ = _materialize(project_dir, tmp_path / "home", "--workers", "2", select=every)
    assert f"{38 - len(done)} of 38 partitions computed" in again, again[-3000:]
