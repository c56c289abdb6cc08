"""The stats of many files at once: (inode, size, mtime, ctime) of each path, flat, in order.

A remembered plan (engine/settled.py) is checked with one `lstat` per file it depends on: 300,000 of
them for 100,000 hourly partitions, most of the plan's time. Each call is a path lookup in the
kernel, which Python cannot run beside another one in threads (the interpreter's share of each call
holds the lock), so a long list is split between this process and forked children, one per spare
CPU. A child only calls `lstat` and writes its numbers to a pipe; it is forked only where that is
safe (Linux, and no other thread in this process that could hold a lock the child would need),
and a child that fails or is not there leaves its share to this process: the answer is the same
either way.
"""

from __future__ import annotations

import os
import sys
import threading
from array import array

#: a missing (or unreadable) path's stats
MISSING = (-1, -1, -1, -1)
#: below this many paths one process is faster than forking (a fork costs milliseconds in a large process)
PARALLEL_FROM = 20_000
#: at most this many processes share one list (the kernel's lookups contend beyond a few)
MAX_PROCESSES = 4


def lstat_all(paths: list[str]) -> "array[int]":
    """(inode, size, mtime, ctime) of each of `paths` in order, flat; a missing one as `MISSING`."""
    parts = _processes(len(paths))
    if parts <= 1:
        return _lstat_here(paths)
    return _lstat_forked(paths, parts)


def _lstat_here(paths: list[str]) -> "array[int]":
    values: list[int] = []
    add = values.extend
    stat = os.lstat
    for path in paths:
        try:
            st = stat(path)
        except OSError:
            add(MISSING)
            continue
        add((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return array("q", values)


def _processes(n: int) -> int:
    """How many processes should share `n` paths: 1 unless the list is long, there is a spare CPU and
    forking is safe here."""
    if n < PARALLEL_FROM or sys.platform != "linux" or threading.active_count() != 1:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        return 1
    return max(1, min(cpus, MAX_PROCESSES, n // (PARALLEL_FROM // 2)))


def _lstat_forked(paths: list[str], parts: int) -> "array[int]":
    size = -(-len(paths) // parts)
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    children: list[tuple[int, int] | None] = []  # (pid, read end) per chunk after the first
    for chunk in chunks[1:]:
        children.append(_fork(chunk))
    out = _lstat_here(chunks[0])
    for chunk, child in zip(chunks[1:], children):
        got = _collect(child, len(chunk)) if child else None
        out.extend(got if got is not None else _lstat_here(chunk))
    return out


def _fork(chunk: list[str]) -> tuple[int, int] | None:
    """A child that writes the stats of `chunk` to a pipe and exits; None if it could not start."""
    try:
        read, write = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return None
    if pid == 0:  # the child: no cleanup of the parent's state, no buffered output, whatever happens
        code = 1
        try:
            os.close(read)
            data = memoryview(_lstat_here(chunk).tobytes())
            while data:
                data = data[os.write(write, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


def _collect(child: tuple[int, int], count: int) -> "array[int] | None":
    """A child's stats, or None when it failed (its share is then taken here)."""
    pid, read = child
    want = count * len(MISSING) * 8
    pieces: list[bytes] = []
    got = 0
    try:
        while True:
            piece = os.read(read, 1 << 20)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
    finally:
        os.close(read)
        _reap(pid)
    # The child writes only once every stat is taken, so a whole answer is a complete one.
    return array("q", b"".join(pieces)) if got == want else None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # already reaped (SIGCHLD ignored in this process)
        return
