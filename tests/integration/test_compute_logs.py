"""A run's captured stdout and stderr (Dagster's compute logs, which the UI shows) on the instance
skipwise opens: the same files Dagster writes, still copied to the terminal, and no process started
for it (Dagster's own starts a `tail` and a Python watcher per stream, per run)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys
    from pathlib import Path
    import dagster as dg
    from skipwise.adapters.dagster.instance import instance_for_root

    started = []
    real = subprocess.Popen.__init__
    def recorded(self, args, *a, **k):
        started.append(args)
        real(self, args, *a, **k)
    subprocess.Popen.__init__ = recorded

    @dg.asset
    def talkative() -> None:
        print("from python's stdout")
        os.write(2, b"straight to descriptor 2\\n")  # as a native library writes

    instance = instance_for_root(Path(sys.argv[1]))
    result = dg.materialize([talkative], instance=instance)
    assert result.success
    (event,) = [e for e in instance.all_logs(result.run_id) if e.dagster_event and e.dagster_event.event_type_value == "LOGS_CAPTURED"]
    manager = instance.compute_log_manager
    key = manager.build_log_key_for_run(result.run_id, event.dagster_event.logs_captured_data.file_key)
    data = manager.get_log_data(key)
    print("CAPTURED", repr(data.stdout.decode()), repr(data.stderr.decode()), type(instance.compute_log_manager).__module__)
    print("STARTED", started)
    """
)


def test_a_runs_output_is_captured_and_reaches_the_terminal_with_no_process_started(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "DAGSTER_HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    captured = next(line for line in out.stdout.splitlines() if line.startswith("CAPTURED"))
    assert "from python's stdout" in captured and "straight to descriptor 2" in captured
    assert captured.endswith("skipwise.adapters.dagster.computelogs")
    assert out.stdout.splitlines()[-1] == "STARTED []"
    # the terminal still gets both, as Dagster's `tail` gave them
    assert "from python's stdout" in out.stdout.split("CAPTURED")[0]
    assert "straight to descriptor 2" in out.stderr
