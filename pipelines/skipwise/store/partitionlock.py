"""A partition's lock on the local filesystem: an exclusive `flock` on ``<partition>/.lock``.

Other processes on this host that want the same partition wait (or are told at once, without
waiting). A first compute that fails leaves no empty folder behind: the partition's folder, and the
asset's and layer's folders its lock made, are removed again when the lock is let go and nothing
else was put there. Object stores lease partitions instead (`skipwise.store.leases`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from skipwise.core.errors import InputError


@contextmanager
def hold(d: Path, data_root: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on the partition folder `d` under `data_root` (other processes on
    this host wait). With `wait=False`, yields False at once instead of waiting when another
    process holds it.

    A partition that has nothing but its lock when the lock is let go (a first compute that
    failed) loses its folder again, and so do the asset's and layer's folders the lock made: a
    failed run leaves no empty folder behind. A folder holding anything else (a manifest, an
    output, a kept version) stays. Whoever waited on a lock file removed meanwhile takes the
    lock again, on the new one (see `_take`)."""
    fd, made = _take(d, data_root, wait)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        try:
            if made:
                _remove_if_only_locked(d, made)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _missing_folders(d: Path, data_root: Path) -> list[Path]:
    """The folders from `d` up to (not including) the data root that do not exist yet."""
    missing = []
    for folder in (d, *d.parents):
        if folder == data_root or folder.exists():
            break
        missing.append(folder)
    return missing


def _take(d: Path, data_root: Path, wait: bool) -> tuple[int | None, list[Path]]:
    """An open descriptor holding the flock of `d`'s lock file, or None (`wait=False`, held),
    and the folders that had to be made for the lock file that was got.

    The file locked must still be the one at that path once the lock is got: a holder before
    us may have removed it with its empty folder (`_remove_if_only_locked`), and a lock on the
    removed file would exclude no one. Then try again, on the new file."""
    lock = d / ".lock"
    while True:
        made = _missing_folders(d, data_root)
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        except FileNotFoundError:
            continue  # a parent folder was removed by a holder letting go of an empty partition
        except OSError as exc:
            raise InputError(
                f"{lock}: cannot open the partition lock ({exc.strerror})",
                hint="remove that file (a lock is never a symlink)",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None, []
        with contextlib.suppress(FileNotFoundError):  # gone: a holder let go of an empty partition
            if os.stat(lock, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd, made
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _remove_if_only_locked(d: Path, made: list[Path]) -> None:
    """Remove partition folder `d` if its lock is all it holds, then the folders in `made`
    (`d`'s parents this lock created) that are left empty; called holding the lock."""
    try:
        if {e.name for e in os.scandir(d)} != {".lock"}:
            return
        os.unlink(d / ".lock")
        for folder in made:
            os.rmdir(folder)  # stops at the first one something else was put in meanwhile
    except OSError:
        pass  # left as it is: an empty folder is untidy, never wrong
