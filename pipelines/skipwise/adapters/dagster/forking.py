"""Worker processes forked rather than started: they begin at once, with the libraries and the
definitions this process loaded, and run the very code it imported.

`can_fork` says whether this process may fork now (no thread that a child would lack or find
holding a lock); `ForkedWorkers` forks a level's workers from it, or asks a `Zygote` to: a process
forked from this one before it ran any work, which only ever forks workers, for the levels that
come after this process has started a compute pool. Each worker keeps its own run records; their
CPU is left out of this process's account.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from skipwise.adapters.dagster.eventlog import close_open
from skipwise.adapters.dagster.instance import instance_for_root
from skipwise.adapters.dagster.launch import Launched, launch
from skipwise.engine.processmeter import process_meter
from skipwise.engine.project import Project

#: native threads that libraries start when imported and that stay idle until used: a forked child
#: does without them (jemalloc's background purging, in pyarrow and polars, which re-initializes
#: at a fork; polars' cleaner of spilled files)
IDLE_THREADS = frozenset({"jemalloc_bg_thd", "polars-ooc-clea"})


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
    """Workers forked for every span but the first, each running its span at once: from this
    process (see `can_fork`), or by `zygote`, forked from it earlier; the same interface as
    `Workers`."""

    def __init__(
        self,
        project: Any,
        defs_assets: list,
        resources: dict,
        names: list[str],
        spans: list[tuple[str, str]],
        tags: dict[str, str],
        zygote: "Zygote | None" = None,
    ) -> None:
        self.names, self.spans = list(names), [tuple(s) for s in spans]
        self.children: list[tuple[int, int]] = []  # (pid, the read end of its result pipe)
        self.zygote = zygote
        if zygote is not None:
            self.children = zygote.fork(self.names, self.spans[1:], tags)
            return
        try:
            for span in self.spans[1:]:
                read, write = os.pipe()

                def worker(span: tuple[str, str] = span, read: int = read, write: int = write) -> NoReturn:
                    os.close(read)
                    _forked_worker(project, defs_assets, resources, self.names, span, tags, write)

                try:
                    pid = _fork(worker)
                except BaseException:
                    os.close(read)
                    raise
                finally:
                    os.close(write)
                self.children.append((pid, read))
        except BaseException:
            self.kill()
            raise

    def collect(self) -> list[Launched]:
        """Each worker's result, in span order, once it has exited."""
        pm = process_meter()
        children, self.children = self.children, []
        if self.zygote is None:
            return [_collect_forked(pid, fd, span, pm) for (pid, fd), span in zip(children, self.spans[1:])]
        texts = [_read_all(fd) for _, fd in children]
        ended = self.zygote.ended(len(children))
        return [_launched(text, code, span) for text, (code, _), span in zip(texts, ended, self.spans[1:])]

    def kill(self) -> None:
        for pid, fd in self.children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            if self.zygote is None:
                with contextlib.suppress(OSError):
                    os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.children and self.zygote is not None:
            self.zygote.ended(len(self.children))  # it has waited for them
        self.children = []


class Zygote:
    """A process forked from this one while that is safe (see `can_fork`), that does nothing but
    fork a later level's workers when asked (`ForkedWorkers`). By a later level this process has
    usually run polars work, and can no longer fork them itself: without a zygote they would be
    fresh interpreters, importing Dagster, polars and the definitions again (about 2.5 s of CPU each
    here). The zygote runs nothing else, so it stays safe to fork. Its workers' CPU, which their run
    records hold, is left out of this process's account when the zygote is collected (`close`: the
    kernel counts it here only then); the zygote's own CPU counts as this process's."""

    def __init__(self, project: Any, defs_assets: list, resources: dict) -> None:
        self.workers_cpu = 0.0
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

        def zygote() -> NoReturn:
            ours.close()
            _zygote(theirs, project, defs_assets, resources)

        try:
            pid = _fork(zygote)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid: int | None = pid
        self.sock = ours

    def fork(self, names: list[str], spans: list[tuple[str, str]], tags: dict[str, str]) -> list[tuple[int, int]]:
        """Ask for one worker per span; (its pid, the read end of its result pipe) of each."""
        pipes = [os.pipe() for _ in spans]
        try:
            request = json.dumps({"names": names, "spans": [list(s) for s in spans], "tags": tags})
            socket.send_fds(self.sock, [request.encode()], [w for _, w in pipes])
        finally:
            for _, w in pipes:
                os.close(w)
        pids = self._answer("forked")
        if not isinstance(pids, list) or len(pids) != len(spans):
            for r, _ in pipes:
                os.close(r)
            raise OSError("the zygote did not fork the workers")
        return [(int(pid), r) for pid, (r, _) in zip(pids, pipes)]

    def ended(self, count: int) -> list[tuple[int, float]]:
        """(exit code, CPU seconds) of each of the `count` workers of the last `fork`, once they
        have exited (-1 each when the zygote cannot say)."""
        got = self._answer("ended")
        if not isinstance(got, list) or len(got) != count:
            return [(-1, 0.0)] * count
        self.workers_cpu += sum(float(cpu) for _, cpu in got)
        return [(int(code), float(cpu)) for code, cpu in got]

    def _answer(self, kind: str) -> Any:
        """The zygote's next answer of `kind` (None when it is gone)."""
        with contextlib.suppress(OSError, ValueError):
            while data := self.sock.recv(1 << 16):
                message = json.loads(data)
                if isinstance(message, dict) and kind in message:
                    return message[kind]
        return None

    def close(self) -> None:
        """Let the zygote go (it exits when its socket closes) and collect it."""
        if self.pid is None:
            return
        self.sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.pid = None
        process_meter().exclude_children(self.workers_cpu)


def _fork(child: Callable[[], NoReturn]) -> int:
    """Fork: the child runs `child` (its whole life), this process gets its pid. What is buffered
    here is printed first (not a second time by the child), and the heap is frozen across the fork
    (the child's collections then leave the inherited pages alone: no copy of them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    parent = os.getpid()
    try:
        pid = os.fork()
    finally:
        if os.getpid() == parent and freeze:
            gc.unfreeze()
    if pid == 0:
        try:
            child()
        finally:
            os._exit(1)  # never back into this process's code, whatever `child` did
    return pid


def _zygote(sock: socket.socket, project: Any, defs_assets: list, resources: dict) -> NoReturn:
    """A zygote's whole life: for each request, fork its workers, say their pids, wait for them and
    say how each ended; exit when the socket closes (the parent is done, or gone)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command stops its workers itself
        while True:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 64)
            if not data:
                break
            request = json.loads(data)
            pids = []
            for i, (span, fd) in enumerate(zip(request["spans"], fds)):

                def worker(i: int = i, span: list[str] = span, fd: int = fd) -> NoReturn:
                    sock.close()
                    for other in fds[i + 1 :]:  # those before are closed already
                        os.close(other)
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    _forked_worker(project, defs_assets, resources, request["names"], tuple(span), request["tags"], fd)

                try:
                    pids.append(_fork(worker))
                finally:
                    os.close(fd)
            sock.send(json.dumps({"forked": pids}).encode())
            ended = []
            for pid in pids:
                _, status, usage = os.wait4(pid, 0)
                ended.append([os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime])
            sock.send(json.dumps({"ended": ended}).encode())
    except (BrokenPipeError, ConnectionResetError):
        code = 1  # the parent is gone, or stopped listening after an error of its own
    except BaseException:  # noqa: BLE001 - the parent reports workers that did not report
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


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
    text = _read_all(fd)
    _, status, usage = os.wait4(pid, 0)
    pm.exclude_children(usage.ru_utime + usage.ru_stime)
    return _launched(text, os.waitstatus_to_exitcode(status), span)


def _read_all(fd: int) -> str:
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read()


def _launched(text: str, code: int, span: tuple[str, str]) -> Launched:
    """A forked worker's result from what it wrote (nothing: it died first, with exit `code`)."""
    if text:
        return Launched(**json.loads(text))
    return Launched(
        "",
        False,
        {},
        {},
        "",
        f"the worker for {span[0]}...{span[1]} exited with code {code} before reporting (see the Dagster log above)",
        "",
    )
