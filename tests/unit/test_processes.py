"""Which processes record themselves at exit (`skipwise.adapters.dagster.processes`)."""

from __future__ import annotations

import pytest
from skipwise.adapters.dagster.processes import Role, command_of, role_of
from skipwise.engine.processmeter import ProcessMeter


@pytest.mark.parametrize(
    ("argv", "child", "role"),
    [
        (["/venv/bin/dagster", "asset", "materialize", "-m", "defs", "--select", "a"], False, Role.COMMAND),
        (["/lib/dagster/__main__.py", "asset", "materialize", "-m", "defs"], False, Role.COMMAND),
        (["/venv/bin/dagster", "api", "execute_run", "{...}"], False, Role.COMMAND),
        (["/venv/bin/skipwise", "materialize", "--partition", "2013-01-01"], False, Role.COMMAND),
        # a step process, or a run worker started by the code server (spawn keeps the parent's argv)
        (["/venv/bin/dagster", "api", "grpc", "--port", "4000"], True, Role.CHILD),
        # long-lived: the code server, dagster dev, the daemon, a test session, skipwise plan
        (["/venv/bin/dagster", "api", "grpc", "--port", "4000"], False, Role.OTHER),
        (["/venv/bin/dagster", "dev"], False, Role.OTHER),
        (["/venv/bin/dagster-daemon", "run"], False, Role.OTHER),
        (["/venv/bin/pytest", "tests"], False, Role.OTHER),
        (["/venv/bin/skipwise", "plan"], False, Role.OTHER),
    ],
)
def test_roles(argv, child, role):
    assert role_of(argv, child) is role


def test_command_of_leaves_options_out():
    assert command_of(["/venv/bin/dagster", "-v", "asset", "materialize", "-m"]) == ("dagster", "asset", "materialize")
    assert command_of([]) == ()


def test_a_process_keeping_children_apart_counts_its_own_cpu_from_then_on():
    import subprocess
    import sys

    pm = ProcessMeter()
    pm.keep_children_apart()
    before = pm.totals()["cpu_seconds"]
    subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True)  # a child with its own account
    assert pm.totals()["cpu_seconds"] - before < 0.05


def test_an_exit_write_given_as_fallback_never_replaces_another():
    pm = ProcessMeter()
    pm._exit_registered = True  # no real atexit handler in a test
    first, second = (lambda: None), (lambda: None)
    pm.at_exit(first)
    pm.at_exit(second, fallback=True)
    assert pm._exit_write is first
