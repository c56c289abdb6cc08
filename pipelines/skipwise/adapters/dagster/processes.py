"""The run records of Dagster's own processes: every process that loads skipwise definitions to
run them records what it used, so the ledger adds up to what the machine did on every path.

Who records what (each process its own CPU; no record counts another's):

- **A Dagster step process** (the multiprocess executor's child, one per step): its engine call
  writes its run record, and its exit the stretch after it (`skipwise.adapters.dagster.step`).
- **The process that coordinates the run**: `dagster asset materialize` / `dagster job execute`
  (it loads the definitions, launches the steps, writes the run's events), `dagster api
  execute_run` (a run worker started by a run launcher), and the run worker `dagster dev`'s code
  server starts for a launch from the UI or a sensor (a child process of the code server).
  Its exit writes a run record for its whole life, its own CPU only: its step processes keep
  their own records. It is the run's: the step processes say which run they belong to (a line in a
  file this process names in `REPORT_ENV`, which they inherit), else the run its own engine calls
  recorded last (a step it executed itself), else, for a command, a record of its own naming
  the command (`PROCESS_TAG`), with no run.
- **`skipwise materialize`** records itself (`skipwise.adapters.dagster.run`); its exit adds what it
  did after its last record. `dagster api execute_step` (a step launched on its own) likewise.
- **Long-lived processes** record nothing at exit: `dagster dev`'s webserver and code server, the
  daemon, a Celery worker's main process, a test session or notebook that imports the
  definitions. A whole-life record there would hold hours of serving (or a test suite) that
  belong to no run, and a record per sensor evaluation would outnumber the partitions. What they
  launch is recorded by the processes above; steps a long-lived process executes itself (a Celery
  worker's pool process) are recorded by each engine call, the time since the previous one
  included.

A process killed by SIGKILL (or by the out-of-memory killer) runs no exit handler: its last stretch
is lost, as for the step processes; what its engine calls committed is kept.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import uuid
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

from skipwise.core.cost import IOCounter
from skipwise.core.pricing import load_config
from skipwise.engine.accounting import Accounts, latest_accounts
from skipwise.engine.processmeter import process_meter
from skipwise.project.root import run_root
from skipwise.store.backends import open_ledger

#: The file a run-coordinating process reads at exit: its step processes add a line each (JSON:
#: run id, tags, project root). Each such process sets it for its children, having kept its parent's.
REPORT_ENV = "SKIPWISE_RUN_REPORTS"
#: The tag naming the process of a record written at exit: its command line and pid.
PROCESS_TAG = "skipwise/process"

#: Commands that exist to run (or coordinate) a Dagster run: they record their whole life.
COMMANDS = frozenset(
    {
        ("dagster", "asset", "materialize"),
        ("dagster", "job", "execute"),
        ("dagster", "api", "execute_run"),
        ("dagster", "api", "execute_step"),
        ("skipwise", "materialize"),
    }
)


class Role(Enum):
    """What a process that loaded skipwise definitions is to its account."""

    #: a command that runs or coordinates runs: records its whole life at exit, run or not
    COMMAND = "command"
    #: a child process (a step, or a run worker of a code server): records at exit when it knows its run
    CHILD = "child"
    #: anything else (servers, daemons, test sessions): no record at exit
    OTHER = "other"


def command_of(argv: Sequence[str]) -> tuple[str, ...]:
    """The program and its first two words, options left out: ``("dagster", "asset",
    "materialize")`` for ``dagster asset materialize -m x`` or ``python -m dagster asset ...``."""
    if not argv:
        return ()
    first = Path(argv[0])
    program = first.parent.name if first.name == "__main__.py" else first.name.removesuffix(".py")
    return (program, *[a for a in argv[1:] if not a.startswith("-")][:2])


def role_of(argv: Sequence[str], is_child: bool) -> Role:
    """The role of a process run as `argv` (`is_child`: started by ``multiprocessing``, whose spawned
    children keep their parent's ``sys.argv``)."""
    if is_child:
        return Role.CHILD
    words = command_of(argv)
    return Role.COMMAND if any(words[: len(c)] == c for c in COMMANDS) else Role.OTHER


_state: dict[str, Any] = {"pid": None, "parent_reports": None, "reports": None}


def arm(found_root: Path) -> None:
    """Arm this process's exit record, once per process (called as skipwise definitions load;
    `found_root` is the project the definitions were found in)."""
    pid = os.getpid()
    if _state["pid"] == pid:
        return
    _state.update(pid=pid, parent_reports=os.environ.get(REPORT_ENV), reports=None)
    role = role_of(sys.argv, multiprocessing.parent_process() is not None)
    if role is Role.OTHER:
        # Its children report to no one: this process writes no record they could belong to.
        os.environ.pop(REPORT_ENV, None)
        return
    reports = Path(tempfile.gettempdir()) / f"skipwise-runs-{pid}-{uuid.uuid4().hex[:12]}"
    _state["reports"] = reports
    os.environ[REPORT_ENV] = str(reports)
    pm = process_meter()
    pm.keep_children_apart()
    if role is Role.COMMAND and command_of(sys.argv)[:1] == ("dagster",):
        pm.touch()  # `start` ends with the definitions loaded; Dagster's run coordination is `other`
    pm.at_exit(lambda: _write(role, found_root, reports), freeze_gc=True, fallback=True)


def report_run(run_id: str, tags: Mapping[str, str], root: Path) -> None:
    """Tell the process that launched this one (a run's coordinator) which run this step was of, and
    where its ledger is, so its exit record goes with the run. Nothing when no such process listens."""
    path = _state["parent_reports"] if _state["pid"] == os.getpid() else os.environ.get(REPORT_ENV)
    if not path:
        return
    line = json.dumps({"run_id": run_id, "tags": {str(k): str(v) for k, v in tags.items()}, "root": str(root)})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())  # one small write with O_APPEND: lines never interleave
        finally:
            os.close(fd)
    except OSError:
        pass  # the coordinator's record then has no run: never fail a step over it


def _reported(path: Path) -> list[dict[str, Any]]:
    """The runs this process's children reported (the file removed), first report first."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    path.unlink(missing_ok=True)
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _process_tag() -> str:
    words = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]
    line = " ".join(words)
    return f"{line[:300]}{'...' if len(line) > 300 else ''} (pid {os.getpid()})"


def _write(role: Role, found_root: Path, reports: Path) -> None:
    """At exit: this process's run record for what no other record holds (see the module doc)."""
    reported = _reported(reports)
    accounts = latest_accounts()
    run_id, tags, root = "", {}, run_root(found_root)
    if reported:
        run_id, tags, root = reported[0]["run_id"], dict(reported[0]["tags"]), Path(reported[0]["root"])
    elif accounts is not None and accounts.last_run is not None:
        run_id, tags = accounts.last_run.run_id, dict(accounts.last_run.tags)
    elif role is not Role.COMMAND:
        return  # a child that ran no skipwise step: not this library's to record
    if process_meter().cpu_since_take() < 0.001:
        return
    runs = sorted({r["run_id"] for r in reported} - {run_id})
    tags[PROCESS_TAG] = _process_tag()
    if runs:
        tags["skipwise/other_runs"] = ",".join(runs)
    if accounts is None:
        ledger = open_ledger(root)
        if not ledger.exists():
            return
        accounts = Accounts(ledger, load_config(root / "skipwise.toml"), IOCounter())
    accounts.record_run(run_id, tags)
