"""Local copies of small objects (manifests, kept versions, ledger files) keyed by URL and ETag.

A listing gives every object's ETag for one LIST per 1,000 keys; an object whose (URL, ETag) was
read before is taken from here instead of a GET. An object rewritten in place gets a new ETag, so
a stale copy is never used: it is simply not found. Copies are derived data (written without
fsync; a damaged one fails to parse and is fetched again by the caller).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from skipwise.store.files import atomic_write


class EtagCache:
    """Bytes by (url, etag) under `folder`, in memory and on disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._memory: dict[tuple[str, str], bytes] = {}

    def path(self, url: str, etag: str) -> Path:
        """Where the copy of (url, etag) lives (whether or not it is there)."""
        return self._path(url, etag)

    def _path(self, url: str, etag: str) -> Path:
        h = hashlib.sha256(f"{url}\0{etag}".encode()).hexdigest()
        return self.folder / h[:2] / h[2:]

    def get(self, url: str, etag: str) -> bytes | None:
        if not etag:
            return None
        hit = self._memory.get((url, etag))
        if hit is not None:
            return hit
        try:
            with open(self._path(url, etag), "rb") as f:
                data = f.read()
        except OSError:
            return None
        self._memory[(url, etag)] = data
        return data

    def put(self, url: str, etag: str, data: bytes) -> None:
        if not etag:
            return
        self._memory[(url, etag)] = data
        try:
            atomic_write(self._path(url, etag), data, sync=False)
        except OSError:
            pass  # a copy is an optimization: without it the object is fetched again

    def forget(self, url: str, etag: str) -> None:
        """Drop a copy found damaged."""
        self._memory.pop((url, etag), None)
        try:
            os.unlink(self._path(url, etag))
        except OSError:
            pass  # already gone
