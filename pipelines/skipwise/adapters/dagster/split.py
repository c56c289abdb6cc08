"""A level cut across processes: `launch_split` cuts a level's stale partitions into contiguous
chunks and runs them at once, one chunk here, each other one in a worker process. Chunks never
overlap, so no partition is written by two processes; each process keeps its own account (its run
records), and this process leaves its workers' CPU out of its own (they are its children, which
getrusage would otherwise count here a second time).

A worker is forked from this process when that is safe (`can_fork`, in `forking.py`): it starts
at once, with the libraries and definitions already loaded here, and runs the very code this
process imported. It is not safe once this process has started a compute library's thread pool
(polars' or DuckDB's, by running work here: a child would wait forever on threads it does not
have) or any Python thread; the worker is then forked by a `Zygote` (forked from this process
before it ran any work, when a later level may be split), or else it is a fresh interpreter
(`python -m skipwise.adapters.dagster.worker`), which pays an interpreter start and Dagster's
import (about 1.5-2.5 s of CPU) before any work. So the split only pays for large levels: by
default two or more processes (one per CPU, at most `MAX_WORKERS`) when a level has at least
`MIN_PER_WORKER` stale partitions per process. `workers` (the CLI's `--workers`, or
$SKIPWISE_WORKERS) sets the count; 1 runs everything here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Sequence

from skipwise.adapters.dagster.forking import ForkedWorkers, Zygote, can_fork
from skipwise.adapters.dagster.launch import RESULT_PREFIX, Launched, launch
from skipwise.core.errors import ConfigError
from skipwise.engine.processmeter import process_meter

MAX_WORKERS = 4
MIN_PER_WORKER = 100  # stale partitions per process before a worker's start (~2.5 s CPU) pays off


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


def launch_split(
    project: Any,
    defs_assets: list,
    resources: dict,
    names: list[str],
    spans: list[tuple[str, str]],
    instance: Any,
    tags: dict[str, str],
    workers: Workers | ForkedWorkers | None = None,
    zygote: Zygote | None = None,
) -> list[Launched]:
    """Run `names` over each span at once: the first span here, the others in worker processes
    (`workers`, when they were started earlier for exactly these spans; else forked now when
    `can_fork`, or by `zygote`, or started now). Returns one `Launched` per span, in order (a
    worker that died says so in its `error`)."""
    if workers is None or workers.spans != [tuple(s) for s in spans] or workers.names != list(names):
        if workers is not None:
            workers.kill()
        if can_fork():
            workers = ForkedWorkers(project, defs_assets, resources, names, spans, tags)
        elif zygote is not None and zygote.pid is not None:
            try:
                workers = ForkedWorkers(project, defs_assets, resources, names, spans, tags, zygote)
            except OSError:  # the zygote is gone: fresh interpreters, as without one
                zygote.close()
                workers = Workers(project, names, spans, tags)
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
