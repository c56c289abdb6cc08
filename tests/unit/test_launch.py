"""How a level is cut across processes: contiguous, disjoint, near-equal chunks; how many processes."""

from __future__ import annotations

import pytest
from skipwise.adapters.dagster import split
from skipwise.core.errors import ConfigError


@pytest.mark.parametrize("n_keys,n", [(1, 1), (1, 4), (7, 2), (365, 2), (365, 3), (10, 10), (3, 8)])
def test_chunks_are_contiguous_disjoint_and_cover_every_key_once(n_keys, n):
    keys = [f"k{i:04d}" for i in range(n_keys)]
    parts = split.chunks(keys, n)
    assert [k for part in parts for k in part] == keys
    assert len(parts) == min(n, n_keys) and all(parts)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_worker_count_asks_for_enough_work_per_process(monkeypatch):
    monkeypatch.delenv("SKIPWISE_WORKERS", raising=False)
    monkeypatch.setattr(split.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert split.worker_count(8) == 1  # one changed day: not worth a second interpreter
    assert split.worker_count(split.MIN_PER_WORKER * 2 - 1) == 1
    assert split.worker_count(730) == 2  # capped by the CPUs this process may use
    monkeypatch.setattr(split.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert split.worker_count(100_000) == split.MAX_WORKERS


def test_worker_count_follows_the_flag_then_the_environment(monkeypatch):
    monkeypatch.setenv("SKIPWISE_WORKERS", "3")
    assert split.worker_count(730) == 3
    assert split.worker_count(2) == 2  # never more processes than partitions
    assert split.worker_count(730, requested=1) == 1
    for bad in ("zero", "0", "-1"):
        monkeypatch.setenv("SKIPWISE_WORKERS", bad)
        with pytest.raises(ConfigError, match="SKIPWISE_WORKERS"):
            split.worker_count(730)


def _can_fork_after(script: str) -> str:
    """`can_fork()` in a fresh interpreter, after `script` ran there."""
    import subprocess
    import sys

    code = f"{script}\nfrom skipwise.adapters.dagster.forking import can_fork\nprint(can_fork())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_a_process_that_only_imported_its_libraries_may_fork_its_workers():
    assert _can_fork_after("import dagster, polars") == "True"  # polars' allocator and spill threads idle


def test_threads_that_cannot_be_told_apart_from_a_compute_pool_keep_workers_fresh_interpreters():
    # numpy's BLAS pool (numpy comes with pyarrow) has unnamed threads, like DuckDB's pool
    assert _can_fork_after("import dagster, polars, pyarrow") == "False"


def test_a_process_whose_compute_pools_or_threads_run_may_not():
    # polars' thread pool starts with its first parallel work; a child would lack its threads
    started = "import polars as pl\npl.DataFrame({'a': list(range(10000))}).group_by('a').len()"
    assert _can_fork_after(started) == "False"
    a_thread = "import threading\nthreading.Thread(target=threading.Event().wait, daemon=True).start()"
    assert _can_fork_after(a_thread) == "False"


def test_a_zygote_ends_with_its_socket_and_one_that_is_gone_says_so():
    import os
    import signal

    from skipwise.adapters.dagster.forking import Zygote

    z = Zygote(None, [], {})  # asked for nothing, it only waits on its socket
    pid = z.pid
    z.close()
    assert z.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # it exited and was collected

    gone = Zygote(None, [], {})
    os.kill(gone.pid, signal.SIGKILL)
    with pytest.raises(OSError):
        gone.fork(["a"], [("2013-01-01", "2013-01-02")], {})
    assert gone.ended(2) == [(-1, 0.0), (-1, 0.0)]  # nothing to say: each worker counts as failed
    gone.close()


def test_a_level_whose_zygote_is_gone_runs_its_workers_as_fresh_interpreters(monkeypatch):
    import os
    import signal

    from skipwise.adapters.dagster.forking import Zygote
    from skipwise.adapters.dagster.launch import Launched

    started: list[list] = []

    class Fresh:
        def __init__(self, project, names, spans, tags):
            self.names, self.spans = list(names), [tuple(s) for s in spans]
            started.append(self.spans[1:])

        def collect(self):
            return [Launched(f"worker {s[0]}", True) for s in self.spans[1:]]

        def kill(self):
            """Nothing to stop: no process was started."""

    monkeypatch.setattr(split, "can_fork", lambda: False)  # this process has run work
    monkeypatch.setattr(split, "Workers", Fresh)
    monkeypatch.setattr(split, "launch", lambda *a: Launched("here", True))
    gone = Zygote(None, [], {})
    os.kill(gone.pid, signal.SIGKILL)
    spans = [("2013-01-01", "2013-01-06"), ("2013-01-07", "2013-01-12")]
    out = split.launch_split(None, [], {}, ["a"], spans, None, {}, zygote=gone)
    assert [r.run_id for r in out] == ["here", "worker 2013-01-07"]
    assert started == [[("2013-01-07", "2013-01-12")]] and gone.pid is None  # collected
