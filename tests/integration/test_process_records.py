"""Every process that runs skipwise definitions is in the ledger: through `dagster asset
materialize` (the command's own process and its step processes), `skipwise materialize`, and a run
worker started by a long-lived process (as `dagster dev`'s code server starts one), the records add
up to the CPU the OS counted for the command, within 5 %.

The absolute slack (0.1 s) is what runs after the last exit handler can measure anything: the
interpreter's own shutdown (multiprocessing's and logging's exit handlers, freeing modules with the
garbage collector frozen) in each of the command's processes, 0.02-0.05 s each on these machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from skipwise.adapters.dagster.processes import PROCESS_TAG
from skipwise.store.ledger import Ledger

from tests.conftest import BIN

pytestmark = pytest.mark.integration

DAY = "2013-01-05"
SLACK_S = 0.1


def _env(project_dir: Path, home: Path) -> dict[str, str]:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    # The copy's own skipwise (this checkout's), whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join([str(project_dir), str(project_dir / "pipelines")])
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SKIPWISE_RUN_REPORTS", None)
    home.mkdir(exist_ok=True)
    return env


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run `cmd` under /usr/bin/time; the user + system CPU it counted (the command and the
    children it waited for)."""
    p = subprocess.run(["/usr/bin/time", "-f", "TIME %U %S", *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    line = next(x for x in reversed(p.stderr.splitlines()) if x.startswith("TIME "))
    user, system = map(float, line.split()[1:])
    return user + system


def _recorded(rows: list[dict]) -> float:
    """What the ledger says the processes used: computed partitions plus every run record."""
    return sum(r["cpu_seconds"] or 0.0 for r in rows if r["cache"] in ("miss", "run"))


def _assert_adds_up(rows: list[dict], os_cpu: float) -> None:
    recorded = _recorded(rows)
    assert abs(recorded - os_cpu) <= 0.05 * os_cpu + SLACK_S, f"records {recorded:.3f} s vs the OS {os_cpu:.3f} s"


def test_dagster_asset_materialize_records_its_own_process_and_its_steps(project_dir, tmp_path):
    if not Path("/usr/bin/time").exists():
        pytest.skip("needs /usr/bin/time")
    env = _env(project_dir, tmp_path / "home")
    cmd = ["dagster", "asset", "materialize", "-m", "assets.definitions", "--select", "flight_features"]
    os_cpu = _timed([*cmd, "--partition", DAY], project_dir, env)
    rows = Ledger(project_dir / "data" / "ledger").read()
    _assert_adds_up(rows, os_cpu)

    (miss,) = [r for r in rows if r["cache"] == "miss"]
    (command,) = [r for r in rows if r["cache"] == "run" and PROCESS_TAG in r["tags"]]
    steps = [r for r in rows if r["cache"] == "run" and PROCESS_TAG not in r["tags"]]
    # The command's record is the run's (its step told it which), holds no partition, and is its
    # own CPU only: about half of the command's, the step process's being the rest.
    assert command["run_id"] == miss["run_id"] and all(r["run_id"] == miss["run_id"] for r in steps)
    assert "dagster asset materialize" in command["tags"][PROCESS_TAG]
    assert command["partition_cpu_seconds"] == 0 and command["partitions_computed"] == 0
    assert command["overhead_start_cpu_seconds"] > 0.3 and command["overhead_other_cpu_seconds"] > 0
    assert "getrusage self (us)" in command["method"]
    assert 0.2 * os_cpu < command["process_cpu_seconds"] < 0.8 * os_cpu


def test_skipwise_materialize_adds_up_to_what_the_os_counted(project_dir, tmp_path):
    if not Path("/usr/bin/time").exists():
        pytest.skip("needs /usr/bin/time")
    env = _env(project_dir, tmp_path / "home")
    os_cpu = _timed(
        [str(BIN / "skipwise"), "materialize", "--select", "flight_features", "--partition", DAY], project_dir, env
    )
    rows = Ledger(project_dir / "data" / "ledger").read()
    _assert_adds_up(rows, os_cpu)
    # Its exit adds what it did after its last record (the summary, the exit) to the same run.
    runs = [r for r in rows if r["cache"] == "run"]
    assert len({r["run_id"] for r in rows}) <= 2 and any(PROCESS_TAG in r["tags"] for r in runs)


# A long-lived process (here a plain Python process, as `dagster dev`'s code server is) starts a run
# worker with multiprocessing, which runs the run and starts the step processes. The host records
# nothing; the run worker and the steps are the run's.
HOST = """
import json, multiprocessing, os, resource, sys

def worker(argv):
    from dagster._cli import main
    sys.argv = ["dagster", *argv]
    try:
        main()
    except SystemExit as e:
        assert not e.code, e.code

if __name__ == "__main__":
    import assets.definitions  # the host loads the definitions too, as a code server does
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = multiprocessing.get_context("spawn").Process(target=worker, args=(json.loads(sys.argv[1]),))
    p.start()
    p.join()
    assert p.exitcode == 0, p.exitcode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"worker_cpu": used, "host_pid": os.getpid()}))
"""


def test_a_run_worker_started_by_a_long_lived_process_is_the_runs_and_the_host_records_nothing(project_dir, tmp_path):
    env = _env(project_dir, tmp_path / "home")
    argv = ["asset", "materialize", "-m", "assets.definitions", "--select", "flight_features", "--partition", DAY]
    host = tmp_path / "host.py"  # a file: spawn re-imports the target's module in the child
    host.write_text(HOST)
    p = subprocess.run(
        [sys.executable, str(host), json.dumps(argv)], cwd=project_dir, env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    out = json.loads(p.stdout.strip().splitlines()[-1])
    worker_cpu = out["worker_cpu"]
    rows = Ledger(project_dir / "data" / "ledger").read()
    _assert_adds_up(rows, worker_cpu)
    (miss,) = [r for r in rows if r["cache"] == "miss"]
    tagged = [r for r in rows if r["cache"] == "run" and PROCESS_TAG in r["tags"]]
    assert len(tagged) == 1 and tagged[0]["run_id"] == miss["run_id"]  # the run worker's; none of the host's
    assert not tagged[0]["tags"][PROCESS_TAG].endswith(f"(pid {out['host_pid']})")
