"""One Dagster run of a level's assets over a span of partitions, here or in worker processes.

`launch` runs one (in this process). `launch_split` cuts a level's stale partitions into
contiguous chunks and runs them at once: one chunk here, each other one in a worker process.
Chunks never overlap, so no partition is written by two processes; each process keeps its own
account (its run records), and this process leaves its workers' CPU out of its own (they are its
children, which getrusage would otherwise count here a second time).

A worker is forked from this process when that is safe (`can_fork`): it starts at once, with the
libraries and definitions already loaded here, and runs the very code this process imported. It is
not safe once this process has started a compute library's thread pool (polars' or DuckDB's, by
running work here: a child would wait forever on threads it does not have) or any Python thread;
the worker is then a fresh interpreter (`python -m skipwise.adapters.dagster.worker`), which pays
an interpreter start and Dagster's import (about 1.5-2.5 s of CPU) before any work. So the split
only pays for large levels: by default two or more processes (one per CPU, at most `MAX_WORKERS`)
when a level has at least `MIN_PER_WORKER` stale partitions per process. `workers` (the CLI's
`--workers`, or $SKIPWISE_WORKERS) sets the count; 1 runs everything here.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, NoReturn, Sequence

from skipwise.adapters.dagster.eventlog import close_open
from skipwise.adapters.dagster.instance import instance_for_root
from skipwise.core import metakeys as mk
from skipwise.core.errors import ConfigError
from skipwise.engine.processmeter import process_meter
from skipwise.engine.project import Project

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
MAX_WORKERS = 4
MIN_PER_WORKER = 100  # stale partitions per process before a worker's start (~2.5 s CPU) pays off
RESULT_PREFIX = "skipwise-launch-result: "
#: native threads that libraries start when imported and that stay idle until used: a forked child
#: does without them (jemalloc's background purging, in pyarrow and polars, which re-initializes
#: at a fork; polars' cleaner of spilled files)
IDLE_THREADS = frozenset({"jemalloc_bg_thd", "polars-ooc-clea"})


@dataclass(frozen=True)
class Launched:
    """What one Dagster run did: its id, whether it succeeded, computed partitions per asset, and on
    failure the failed step with the first line of its error and its `fix:` line."""

    run_id: str
    ok: bool
    computed: dict[str, int] = field(default_factory=dict)
    restored: dict[str, int] = field(default_factory=dict)
    failed_step: str = ""
    error: str = ""
    fix: str = ""


def worker_count(stale: int, requested: int | None = None) -> int:
    """How many processes a level with `stale` stale partitions (keys x assets) runs in."""
    if requested is None:
        env = os.environ.get("SKIPWISE_WORKERS", "").strip()
        if env:
            if not env.isdigit() or int(env) < 1:
                raise ConfigError(
                    f"SKIPWISE_WORKERS={env!r} is not a number of processes",
                    hint="set it to 1 or more (1: everything in one process), or unset it",
                )
            requested = int(env)
    if requested is not None:
        return max(1, min(requested, stale))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS, stale // MIN_PER_WORKER))


def chunks(keys: Sequence[str], n: int) -> list[list[str]]:
    """`keys` (in partition order) cut into `n` contiguous chunks of near-equal size, none empty."""
    n = max(1, min(n, len(keys)))
    size, extra = divmod(len(keys), n)
    out, i = [], 0
    for c in range(n):
        j = i + size + (1 if c < extra else 0)
        out.append(list(keys[i:j]))
        i = j
    return out


def launch(
    defs_assets: list,
    resources: dict,
    names: list[str],
    span: tuple[str, str] | None,
    instance: Any,
    tags: dict[str, str],
) -> Launched:
    """One Dagster run of the assets `names` over the partition span (first, last) (None: unpartitioned)."""
    import dagster as dg

    run_tags = dict(tags)
    if span is not None:
        run_tags.update({RANGE_START: span[0], RANGE_END: span[1]})
    result = dg.materialize(
        defs_assets,
        resources=resources,
        selection=[dg.AssetKey(n.split("__")) for n in names],
        instance=instance,
        tags=run_tags,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    return launched(result, names)


def launched(result: Any, names: list[str]) -> Launched:
    """What a finished Dagster run of `names` did, from its result: partitions computed and restored
    per asset (its materializations' cache verdicts) and, on failure, the failed step."""
    computed, restored = {n: 0 for n in names}, {n: 0 for n in names}
    for e in result.get_asset_materialization_events():
        name, cache = "__".join(e.asset_key.path), _cache_of(e)
        if name in computed and cache in ("miss", "restore"):
            (computed if cache == "miss" else restored)[name] += 1
    step, error, fix = failure_of(result) if not result.success else ("", "", "")
    return Launched(result.run_id, bool(result.success), computed, restored, step, error, fix)


def failure_of(result) -> tuple[str, str, str]:
    """(step, first line of its error, its `fix:` line or "") of a Dagster run's first failed step."""
    try:
        events = result.get_step_failure_events()
    except Exception:  # noqa: BLE001 - a result without step events: say what we can
        events = []
    for event in events:
        step = event.step_key or ""
        data = getattr(event, "step_failure_data", None) or getattr(event, "event_specific_data", None)
        described = _skipwise_failure(getattr(data, "user_failure_data", None))
        if described is not None:
            return (step, *described)
        err = getattr(data, "error", None)
        while (
            err is not None
            and getattr(err, "cause", None) is not None
            and "DagsterExecutionStepExecutionError" in (err.cls_name or "")
        ):
            err = err.cause  # Dagster wraps the user's error; the cause is what was raised
        return (step, *_first_line(err))
    return "", "", ""


def _skipwise_failure(user_failure) -> tuple[str, str] | None:
    """(kind: message, `fix: ...` or "") of a step's failure that is a skipwise error
    (`step_failure`), from its metadata; None for any other failure."""
    md = getattr(user_failure, "metadata", None) or {}
    if mk.ERROR not in md:
        return None

    def text(key: str) -> str:
        value = md.get(key)
        return str(getattr(value, "value", value) or "")

    fix = text(mk.ERROR_FIX)
    message = (text(mk.ERROR_MESSAGE).splitlines() or [""])[0]
    return f"{text(mk.ERROR)}: {message}", (f"fix: {fix}" if fix else "")


def _first_line(err) -> tuple[str, str]:
    if err is None:
        return "", ""
    text = (getattr(err, "message", "") or "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    cls = getattr(err, "cls_name", "") or ""
    if not lines:
        return cls, ""
    first = lines[0]
    if cls and ": " in first and first.split(": ", 1)[0].endswith(cls):
        first = f"{cls}: {first.split(': ', 1)[1]}"  # skipwise.core.errors.InputError: x -> InputError: x
    fix = next((line.strip() for line in lines[1:] if line.strip().startswith("fix:")), "")
    return first, fix


def _cache_of(event) -> str:
    value = event.step_materialization_data.materialization.metadata.get(mk.CACHE)
    return getattr(value, "value", value)


class Workers:
    """Worker processes started for every span but the first, each running its span at once
    (`collect` waits for their results; `kill` stops them after an error)."""

    def __init__(self, project: Any, names: list[str], spans: list[tuple[str, str]], tags: dict[str, str]) -> None:
        self.names, self.spans = list(names), [tuple(s) for s in spans]
        job = {
            "root": str(project.root),
            "definitions": project.definitions,
            "names": self.names,
            "tags": tags,
            "sys_path": [p for p in sys.path if p],
        }
        self.procs: list[subprocess.Popen] = []
        try:
            for span in self.spans[1:]:
                p = subprocess.Popen(
                    [sys.executable, "-m", "skipwise.adapters.dagster.worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=os.environ.copy(),
                )
                self.procs.append(p)
                p.stdin.write(json.dumps({**job, "span": list(span)}))
                p.stdin.close()
        except BaseException:
            self.kill()
            raise

    def collect(self) -> list[Launched]:
        """Each worker's result, in span order, once it has exited."""
        out = [_collect(p, span, process_meter()) for span, p in zip(self.spans[1:], self.procs)]
        self.procs = []
        return out

    def kill(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []


def can_fork() -> bool:
    """Whether a worker may be forked from this process: on Linux, with no thread but this one
    other than `IDLE_THREADS` (a thread pool a child would lack, or a lock another thread holds
    at the fork, would hang the child)."""
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
        for tid in tasks:
            if tid != os.getpid():
                with open(f"/proc/self/task/{tid}/comm", encoding="utf-8", errors="replace") as f:
                    if f.read().strip() not in IDLE_THREADS:
                        return False
    except (OSError, ValueError):
        return False  # not Linux, or a thread that ended meanwhile: not sure, so not safe
    return True


class ForkedWorkers:
    """Workers forked from this process for every span but the first (see `can_fork`), each
    running its span at once; the same interface as `Workers`."""

    def __init__(
        self,
        project: Any,
        defs_assets: list,
        resources: dict,
        names: list[str],
        spans: list[tuple[str, str]],
        tags: dict[str, str],
    ) -> None:
        self.names, self.spans = list(names), [tuple(s) for s in spans]
        self.children: list[tuple[int, int]] = []  # (pid, the read end of its result pipe)
        self.pid = os.getpid()
        sys.stdout.flush()  # what is buffered here is printed here, not a second time by a child
        sys.stderr.flush()
        # The child's collections then leave the inherited heap alone (no copy of its pages).
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        try:
            for span in self.spans[1:]:
                read, write = os.pipe()
                try:
                    pid = os.fork()
                except BaseException:
                    os.close(read)
                    raise
                finally:
                    if os.getpid() == self.pid:
                        os.close(write)
                if pid == 0:
                    os.close(read)
                    _forked_worker(project, defs_assets, resources, self.names, span, tags, write)
                self.children.append((pid, read))
        except BaseException:
            self.kill()
            raise
        finally:
            if freeze:
                gc.unfreeze()

    def collect(self) -> list[Launched]:
        """Each worker's result, in span order, once it has exited."""
        pm = process_meter()
        out = [_collect_forked(pid, fd, span, pm) for (pid, fd), span in zip(self.children, self.spans[1:])]
        self.children = []
        return out

    def kill(self) -> None:
        for pid, fd in self.children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
            os.close(fd)
        self.children = []


def _forked_worker(
    project: Any, defs_assets: list, resources: dict, names: list[str], span: tuple[str, str], tags: dict, fd: int
) -> NoReturn:
    """A forked worker's whole life: its span's run, its run record, its result on `fd`; then its
    exit, without this process's exit handlers (they belong to the parent)."""
    code = 1
    try:
        out = launch(defs_assets, resources, names, span, instance_for_root(project.root), tags)
        mine = Project(project.root, project.graph, definitions=project.definitions)
        mine.accounts.record_run(out.run_id, tags)  # the run's end, after its last step's record
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(out.__dict__))
        code = 0
    except BaseException:  # noqa: BLE001 - the parent reports a worker that did not report
        traceback.print_exc()
    finally:
        close_open()  # its event logs' connections, checkpointed as a worker's exit would
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _collect_forked(pid: int, fd: int, span: tuple[str, str], pm: Any) -> Launched:
    """A forked worker's result, once it has exited; its CPU is left out of ours (see `_collect`)."""
    with os.fdopen(fd, encoding="utf-8") as f:
        text = f.read()
    _, status, usage = os.wait4(pid, 0)
    pm.exclude_children(usage.ru_utime + usage.ru_stime)
    if text:
        return Launched(**json.loads(text))
    return Launched(
        "",
        False,
        {},
        {},
        "",
        f"the worker for {span[0]}...{span[1]} exited with code {os.waitstatus_to_exitcode(status)} "
        "before reporting (see the Dagster log above)",
        "",
    )


def launch_split(
    project: Any,
    defs_assets: list,
    resources: dict,
    names: list[str],
    spans: list[tuple[str, str]],
    instance: Any,
    tags: dict[str, str],
    workers: Workers | ForkedWorkers | None = None,
) -> list[Launched]:
    """Run `names` over each span at once: the first span here, the others in worker processes
    (`workers`, when they were started earlier for exactly these spans; else forked now when
    `can_fork`, or started now). Returns one `Launched` per span, in order (a worker that died
    says so in its `error`)."""
    if workers is None or workers.spans != [tuple(s) for s in spans] or workers.names != list(names):
        if workers is not None:
            workers.kill()
        if can_fork():
            workers = ForkedWorkers(project, defs_assets, resources, names, spans, tags)
        else:
            workers = Workers(project, names, spans, tags)
    try:
        mine = launch(defs_assets, resources, names, spans[0], instance, tags)
        return [mine, *workers.collect()]
    finally:
        workers.kill()  # only after an error here (collected workers are gone): none left running


def _collect(p: subprocess.Popen, span: tuple[str, str], pm: Any) -> Launched:
    """A worker's result, once it has exited; its CPU (its own run records hold it) is left out of ours."""
    text = p.stdout.read() if p.stdout else ""
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    pm.exclude_children(usage.ru_utime + usage.ru_stime)
    for line in reversed(text.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Launched(**json.loads(line[len(RESULT_PREFIX) :]))
    return Launched(
        "",
        False,
        {},
        {},
        "",
        f"the worker for {span[0]}...{span[1]} exited with code {p.returncode} "
        "before reporting (see the Dagster log above)",
        "",
    )
