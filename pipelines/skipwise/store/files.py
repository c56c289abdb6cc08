"""Atomic file writes: a reader sees the old file or the new one, never a partial one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write(path: Path, data: bytes, sync_dir: bool = True, sync: bool = True) -> None:
    """Write `data` to `path` via a unique temporary file in the same directory, fsync, then rename.

    `sync_dir=False` leaves the directory's fsync (which makes the rename durable) to a later
    atomic write into the same directory: a partition's output is followed by its manifest there.
    `sync=False` skips the file's fsync too, for derived files that a crash may lose or leave
    unreadable without harm (an index that is checked before use).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir and sync:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
