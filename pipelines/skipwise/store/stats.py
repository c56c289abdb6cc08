"""The stats of many files at once: (inode, size, mtime, ctime) of each path, flat, in order.

A remembered plan (engine/settled.py) is checked with one `lstat` per file it depends on: 300,000 of
them for 100,000 hourly partitions, most of the plan's time. Each call is a path lookup in the
kernel, which Python cannot run beside another one in threads (the interpreter's share of each call
holds the lock), so a long list is shared between this process and helper processes, one per spare
CPU. A helper is a bare interpreter (`python -I -S`, started without `fork`, so it is safe beside
any thread of this one, Dagster's included) that reads its paths on stdin and writes their stats on
stdout as it goes, from the front of its share. A `StatPass` starts the helpers when it is made and
lets this process do other work meanwhile; `result()` then takes each share from its back, a chunk
at a time, until it meets what the helper has answered: nothing waits for a slow helper, and one
that fails or cannot start leaves its share to this process; the answer is the same either way. A
helper's CPU is this process's children's, which the run record counts.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO

#: a missing (or unreadable) path's stats
MISSING = (-1, -1, -1, -1)
#: below this many paths one process is faster (a helper costs tens of milliseconds to start)
PARALLEL_FROM = 20_000
#: at most this many processes share one list (the kernel's lookups contend beyond a few)
MAX_PROCESSES = 4
#: paths this process takes from the back of a share between two looks at its helper's answers
CHUNK = 1024
_WIDTH = len(MISSING)  # numbers in one path's answer
_RECORD = _WIDTH * 8  # its bytes

#: helpers now running in this process's passes (a pass started inside another one takes fewer)
_running = [0]


def lstat_all(paths: list[str], root: str | None = None) -> "array[int]":
    """(inode, size, mtime, ctime) of each of `paths` in order, flat; a missing one as `MISSING`.
    A link's own stats. `root`: the folder relative paths start from (else the working folder);
    a lookup from a folder near the files walks fewer names than one from `/`."""
    with StatPass(paths, root) as taking:
        return taking.result()


def stat_all(paths: list[str]) -> "array[int]":
    """As `lstat_all`, but of what each link points at (a dangling link as `MISSING`); one process."""
    return _lstat_here(paths, os.stat)


@contextlib.contextmanager
def _lstat_from(root: str | None) -> Iterator[Callable[[str], os.stat_result]]:
    """`os.lstat` of paths relative to `root` (a missing root: every path missing)."""
    if root is None:
        yield os.lstat
        return
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield _missing
        return
    try:
        yield functools.partial(os.lstat, dir_fd=fd)
    finally:
        os.close(fd)


def _missing(path: str) -> os.stat_result:
    raise FileNotFoundError(path)


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
    """How many processes should share `n` paths: 1 unless the list is long and a CPU is spare
    (not taken by this process or a helper already running)."""
    if n < PARALLEL_FROM or not sys.executable:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        cpus = os.cpu_count() or 1
    return max(1, min(cpus - _running[0], MAX_PROCESSES, n // (PARALLEL_FROM // 2)))


@dataclass
class _Helper:
    """A helper process and the file it writes its answers to."""

    process: "subprocess.Popen[bytes]"
    answers: IO[bytes]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.answers.close()


@dataclass
class _Share:
    """One helper's share of the list: `start` up to `end`, which falls as this process takes
    paths from the back; `got`, the helper's answers so far, for paths from `start` on."""

    helper: _Helper | None
    start: int
    end: int
    got: bytearray = field(default_factory=bytearray)

    def answered(self) -> int:
        """How many paths from `start` on the helper has answered (reading what it wrote since)."""
        if self.helper is not None:
            fd = self.helper.answers.fileno()
            while data := os.pread(fd, 1 << 20, len(self.got)):
                self.got += data
        return len(self.got) // _RECORD


class StatPass:
    """The lstats of `paths` (as `lstat_all`, relative ones from `root`), being taken: helpers
    start on their shares when this is made; `result()` takes the rest here. Use it as a context
    manager, so that helpers are stopped whatever happens between the two."""

    def __init__(self, paths: list[str], root: str | None = None) -> None:
        self.paths = paths
        self.root = root
        self.shares: list[_Share] = []
        helpers = _processes(len(paths)) - 1
        if helpers:
            # The helpers share the whole list; `result()` takes what they have not answered yet,
            # from the back, after whatever else this process did meanwhile.
            size = -(-len(paths) // helpers)
            for start in range(0, len(paths), size):
                helper = _start(paths[start : start + size], root)
                _running[0] += helper is not None
                self.shares.append(_Share(helper, start, min(start + size, len(paths))))

    def result(self) -> "array[int]":
        """The stats of every path, in order."""
        with _lstat_from(self.root) as lstat:
            return self._result(lstat)

    def _result(self, lstat: Callable[[str], os.stat_result]) -> "array[int]":
        if not self.shares:
            return _lstat_here(self.paths, lstat)
        out = array("q", bytes(_RECORD * len(self.paths)))
        while True:
            # The share with the most left, from its back, until every helper's answers meet ours.
            left = [s.end - s.start - s.answered() for s in self.shares]
            most = max(left)
            if most <= 0:
                break
            share = self.shares[left.index(most)]
            low = share.end - min(CHUNK, most)
            out[_WIDTH * low : _WIDTH * share.end] = _lstat_here(self.paths[low : share.end], lstat)
            share.end = low
        for share in self.shares:
            done = share.end - share.start
            out[_WIDTH * share.start : _WIDTH * share.end] = array("q", bytes(share.got[: done * _RECORD]))
        self.close()
        return out

    def close(self) -> None:
        """Stop the helpers (one may be working on paths already taken here)."""
        for share in self.shares:
            if share.helper is not None:
                share.helper.stop()
                share.helper = None
                _running[0] -= 1

    def __enter__(self) -> "StatPass":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


#: a helper: the stats of the NUL-separated paths on stdin, as `_lstat_here` gives them, on stdout,
#: a chunk (of argv[1] paths) at a time as they are taken
_HELPER = """
import os, sys
from array import array
out = sys.stdout.buffer
values = []
add = values.extend
for path in sys.stdin.buffer.read().split(b"\\0"):
    try:
        st = os.lstat(path)
    except OSError:
        add((-1, -1, -1, -1))
    else:
        add((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    if len(values) >= 4 * int(sys.argv[1]):
        out.write(array("q", values).tobytes())
        out.flush()
        values.clear()
out.write(array("q", values).tobytes())
"""


def _start(chunk: list[str], root: str | None) -> "_Helper | None":
    """A helper given `chunk` (relative paths from `root`), or None if it could not start. Its
    paths and its answers go through unnamed temporary files (its stdin and stdout): neither side
    ever waits for the other."""
    answers = None
    try:
        answers = tempfile.TemporaryFile()
        with tempfile.TemporaryFile() as paths:
            paths.write(os.fsencode("\0".join(chunk)))
            paths.seek(0)
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER, str(CHUNK)],
                stdin=paths,
                stdout=answers,
                cwd=root,
                stderr=subprocess.DEVNULL,
            )
    except (OSError, ValueError):
        if answers is not None:
            answers.close()
        return None
    return _Helper(process, answers)
