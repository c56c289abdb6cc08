"""`skipwise serve`: commands run in forks of a warm process, with the client's arguments, folder,
environment and terminal; the project's code is imported afresh by each (an edit counts at once);
a library that changed makes the server stop serving, and the command runs in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, run

pytestmark = pytest.mark.integration

RANGE = "2013-01-02...2013-01-03"


def env_for(root: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SKIPWISE_SERVER")}
    return {**env, "PYTHONPATH": str(root), "DAGSTER_HOME": str(root / ".dagster"), **extra}


@pytest.fixture
def server(project_dir: Path):
    """A `skipwise serve` for this project's environment; yields (root, its log file)."""
    log = project_dir / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "skipwise"), "serve", "--idle-minutes", "5"],
            cwd=project_dir,
            env=env_for(project_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while "ready" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)
    yield project_dir, log
    proc.terminate()
    proc.wait(timeout=30)


def sw(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "skipwise"), *args], cwd=root, env=env_for(root, **env), check=False)


def served(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if ": process " in line]


def test_commands_run_in_the_server_with_their_own_output_and_exit_code(server):
    root, log = server
    p = sw(root, "materialize", "--select", "flight_features", "--partition", RANGE, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["computed"] == {"flight_features": 2} and out["ok"] is True
    assert "flight_features" in p.stderr  # Dagster's log reaches the client's stderr
    bad = sw(root, "materialize", "--select", "no_such_asset")
    assert bad.returncode == 2 and bad.stderr.startswith("Error:") and "no_such_asset" in bad.stderr
    assert len(served(log)) == 2
    # The server's own start is in the project's ledger: the imports it saves every command.
    rows = [json.loads(line) for f in (root / "data").rglob("ledger/*/*.jsonl") for line in f.open()]
    start = [r for r in rows if str(r.get("run_id", "")).startswith("skipwise-serve-")]
    assert len(start) == 1 and start[0]["cpu_seconds"] > 0.5


def test_an_edit_to_the_project_code_counts_at_once(server):
    root, log = server
    assert sw(root, "materialize", "--select", "flight_features", "--partition", RANGE).returncode == 0
    code = root / "assets" / "features" / "flights.py"
    head = '    """Build one row of features (and the label) per flight scheduled on `day`.'
    text = code.read_text()
    assert text.count(head) == 1
    end = text.index('"""', text.index(head) + len(head)) + 3
    code.write_text(text[:end] + "\n    day = day + datetime.timedelta(days=0)" + text[end:])  # same output
    p = sw(root, "materialize", "--select", "flight_features", "--partition", RANGE, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["computed"] == {"flight_features": 2}  # the new code ran
    assert len(served(log)) == 2


def test_off_or_a_changed_library_runs_the_command_in_its_own_process(server):
    root, log = server
    assert sw(root, "plan", SKIPWISE_SERVER="off").returncode == 0
    assert served(log) == []
    import skipwise.core.version as version

    path = Path(version.__file__)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same times, a new change time
    p = sw(root, "plan")
    assert p.returncode == 0 and "plan:" in p.stdout
    assert served(log) == [] and "changed since it started" in log.read_text()


def test_the_command_is_found_after_the_global_options():
    from skipwise.cli.server import command_of

    assert command_of(["--root", ".", "serve"]) == "serve"
    assert command_of(["--root=.", "--defs", "pkg.defs", "ui", "-p", "3001"]) == "ui"
    assert command_of(["materialize", "--select", "a"]) == "materialize"
    assert command_of(["--root", "."]) is None and command_of([]) is None


PRELOADED = """
import os, sys
from skipwise.cli.server import PRELOAD
for name in PRELOAD:
    __import__(name)
before = set(sys.modules)
from skipwise.cli.main import main
rc = main(["materialize", "--select", "flight_features,weather_features", "--partition", sys.argv[1]])
root = os.path.realpath(os.getcwd())
print("NEW", rc, sorted(
    m for m in set(sys.modules) - before
    if not os.path.realpath(getattr(sys.modules[m], "__file__", None) or root).startswith(root)
))
"""


def test_a_served_command_imports_only_the_projects_own_code(project_dir: Path):
    # What a command imports after the server's fork is paid by every served command: the
    # libraries a run reaches (Dagster's executor and factories, the compute logs, the IO
    # manager's paths) are imported by the server once, and only the project's code is left.
    env = env_for(project_dir, SKIPWISE_SERVER="off")
    # The Dagster instance made first (its creation imports its migrations, once per instance).
    run(
        [str(BIN / "skipwise"), "materialize", "--select", "weather_features", "--partition", "2013-01-01"],
        project_dir,
        env,
    )
    out = run([str(BIN / "python"), "-c", PRELOADED, RANGE], cwd=project_dir, env=env)
    line = next(x for x in out.stdout.splitlines() if x.startswith("NEW"))
    assert line == "NEW 0 []", line
