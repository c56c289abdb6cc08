"""Which ledger files can hold the records a question asks for, told from their day folders and
modification times alone, so that a question costs what it needs, not the ledger's history: the
files newest first with a bound on the records of every file after them, and the files written
since a command started.

What a file can hold follows from how the ledger is written (`skipwise.store.ledger`): a file in
day folder D holds records of day D or earlier (a file's folder is the day of its latest
record), and a record's time was taken before the write that put it in its file, so it is at or
before the file's modification time, give or take `MTIME_SLACK_NS`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterator, Sequence, TypeVar

F = TypeVar("F")

#: How far a file's modification time may lag the times written in it: file systems that keep
#: mtimes to 2 s (FAT, SMB), the kernel's coarse clock, and hosts sharing a file system whose
#: clocks disagree by a few seconds. More slack only reads a few more files.
MTIME_SLACK_NS = 10 * 10**9

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_ns(ts: str) -> int:
    """Nanoseconds since the epoch of `ts`, an ISO time (UTC unless it says otherwise; a bare day is its midnight)."""
    t = datetime.fromisoformat(ts)
    since = t - (_EPOCH if t.tzinfo else _EPOCH.replace(tzinfo=None))
    return (since.days * 86400 + since.seconds) * 10**9 + since.microseconds * 1000


def ts_bound(day: str, mtime_ns: int | None) -> str:
    """A string that every record time (ISO UTC, as `utc_now_iso` writes it) in a file of day
    folder `day` last modified at `mtime_ns` (None: unknown) sorts strictly below."""
    after_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    if mtime_ns is None:
        return after_day
    second = (mtime_ns + MTIME_SLACK_NS) // 10**9 + 1
    after_write = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    # A whole second: the first 19 characters decide the order, whether a time has fractions or not.
    return min(after_day, after_write)


def newest_first(
    days: Sequence[str], files_of: Callable[[str], Sequence[F]], modified_ns: Callable[[F], int | None]
) -> Iterator[tuple[tuple[str, int], F, str]]:
    """The files of day folders `days` from the newest day to the oldest, and within a day the
    most recently modified first, each as ((its day, its place in `files_of(day)`), the file, a
    bound every record of the files yielded after it sorts strictly below; "" after the last).

    A day's files are listed, and their mtimes read, only when the walk reaches it: a caller
    that stops early never looks at older folders.
    """
    order = sorted(days, reverse=True)
    for n, day in enumerate(order):
        older = ts_bound(order[n + 1], None) if n + 1 < len(order) else ""
        files = files_of(day)
        bounds = [ts_bound(day, modified_ns(f)) for f in files]
        # By bound, which follows the mtime (unknown ones first): the next file's is the highest left.
        walk = sorted(range(len(files)), key=bounds.__getitem__, reverse=True)
        for k, i in enumerate(walk):
            later = bounds[walk[k + 1]] if k + 1 < len(walk) else ""
            yield (day, i), files[i], max(later, older)


def written_since(files: Sequence[F], started: str, modified_ns: Callable[[F], int | None]) -> Iterator[F]:
    """The files of `files` created or modified at or after `started` (an ISO time), and those
    whose modification time is unknown: the only ones that can hold a record written since."""
    floor = epoch_ns(started) - MTIME_SLACK_NS
    for f in files:
        m = modified_ns(f)
        if m is None or m >= floor:
            yield f
