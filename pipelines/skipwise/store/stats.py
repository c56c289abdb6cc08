"""The stats of many files at once: (inode, size, mtime, ctime) of each path, flat, in order.

A remembered plan (engine/settled.py) is checked with one `lstat` per file it depends on: 300,000 of
them for 100,000 hourly partitions, most of the plan's time. Each call is a path lookup in the
kernel, which Python cannot run beside another one in threads (the interpreter's share of each call
holds the lock), so a long list is shared between this process and helper processes, one per spare
CPU. A helper is a bare interpreter (`python -I -S`, started without `fork`, so it is safe beside
any thread of this one, Dagster's included) that reads its paths on stdin and writes their stats on
stdout; one that fails or cannot start leaves its share to this process: the answer is the same
either way. A helper's CPU is this process's children's, which the run record counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from array import array
from collections.abc import Callable

#: a missing (or unreadable) path's stats
MISSING = (-1, -1, -1, -1)
#: below this many paths one process is faster (a helper costs tens of milliseconds to start)
PARALLEL_FROM = 20_000
#: at most this many processes share one list (the kernel's lookups contend beyond a few)
MAX_PROCESSES = 4


def lstat_all(paths: list[str]) -> "array[int]":
    """(inode, size, mtime, ctime) of each of `paths` in order, flat; a missing one as `MISSING`.
    A link's own stats."""
    parts = _processes(len(paths))
    if parts <= 1:
        return _lstat_here(paths)
    return _lstat_shared(paths, parts)


def stat_all(paths: list[str]) -> "array[int]":
    """As `lstat_all`, but of what each link points at (a dangling link as `MISSING`); one process."""
    return _lstat_here(paths, os.stat)


def _lstat_here(paths: list[str], stat: Callable[[str], os.stat_result] = os.lstat) -> "array[int]":
    values: list[int] = []
    add = values.extend
    for path in paths:
        try:
            st = stat(path)
        except OSError:
            add(MISSING)
            continue
        add((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return array("q", values)


def _processes(n: int) -> int:
    """How many processes should share `n` paths: 1 unless the list is long and there is a spare CPU."""
    if n < PARALLEL_FROM or not sys.executable:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_PROCESSES, n // (PARALLEL_FROM // 2)))


#: a helper: the stats of the NUL-separated paths on stdin, as `_lstat_here` gives them, on stdout
_HELPER = """
import os, sys
from array import array
values = []
add = values.extend
for path in sys.stdin.buffer.read().split(b"\\0"):
    try:
        st = os.lstat(path)
    except OSError:
        add((-1, -1, -1, -1))
        continue
    add((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
sys.stdout.buffer.write(array("q", values).tobytes())
"""


def _lstat_shared(paths: list[str], parts: int) -> "array[int]":
    size = -(-len(paths) // parts)
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    helpers = [_start(chunk) for chunk in chunks[1:]]  # each at work while this process takes the first share
    out = _lstat_here(chunks[0])
    for chunk, helper in zip(chunks[1:], helpers):
        got = _collect(helper, len(chunk)) if helper is not None else None
        out.extend(got if got is not None else _lstat_here(chunk))
    return out


def _start(chunk: list[str]) -> "subprocess.Popen[bytes] | None":
    """A helper given `chunk`, or None if it could not start."""
    try:
        helper = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _HELPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, ValueError):
        return None
    assert helper.stdin is not None
    try:
        helper.stdin.write(b"\0".join(map(os.fsencode, chunk)))
        helper.stdin.close()
    except OSError:  # it died before reading: its share is taken here
        helper.kill()
        _collect(helper, 0)
        return None
    return helper


def _collect(helper: "subprocess.Popen[bytes]", count: int) -> "array[int] | None":
    """A helper's stats, or None when it failed (its share is then taken here)."""
    assert helper.stdout is not None
    try:
        data = helper.stdout.read()
    except OSError:
        data = b""
    finally:
        helper.stdout.close()
        helper.wait()
    # Every stat is taken before the helper writes: a whole answer of a helper that ended well is complete.
    ok = helper.returncode == 0 and len(data) == count * len(MISSING) * 8
    return array("q", data) if ok else None
