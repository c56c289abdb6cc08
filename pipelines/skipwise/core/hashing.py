"""Canonical hashing: one way to turn a value into a stable digest."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def canonical_json(value: Any) -> str:
    """Serialize `value` so that equal values always give the same text (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_reject)


def _reject(value: Any) -> Any:
    raise TypeError(f"cannot hash a value of type {type(value).__name__}: {value!r}")


def digest(value: Any) -> str:
    """sha256 hex digest of the canonical JSON form of `value`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def sha256_bytes(data: bytes) -> str:
    """sha256 hex digest of raw bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Any, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """(inode, mtime, inode change time, size): what must stay equal for a file to be trusted
    unchanged. The change time cannot be set back from user space, so a restored mtime still shows."""
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
