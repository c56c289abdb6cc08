"""A stat cache: (inode, mtime, size) -> content digest, so unchanged files are never re-read.

Kept in a small SQLite file; it is derived state and may be deleted at any time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

_SCHEMA = "CREATE TABLE IF NOT EXISTS stat (path TEXT, algo TEXT, ino INT, mtime INT, size INT, digest TEXT, PRIMARY KEY (path, algo))"


class StatCache:
    """Digests of files, re-computed only when a file's (inode, mtime_ns, size) moved."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self._rows: dict[tuple[str, str], tuple[int, int, int, str]] | None = None
        self._con: sqlite3.Connection | None = None
        self.hashed_bytes = 0  # bytes read to hash files (zero on a warm no-op)

    def _load(self) -> dict[tuple[str, str], tuple[int, int, int, str]]:
        if self._rows is None:
            self._rows = {}
            if self.db_path.exists():
                try:
                    with self._connect() as con:
                        for p, a, ino, mt, sz, d in con.execute("SELECT path, algo, ino, mtime, size, digest FROM stat"):
                            self._rows[(p, a)] = (ino, mt, sz, d)
                except sqlite3.DatabaseError:
                    self._rows = {}  # a damaged cache is just a cold cache
        return self._rows

    def _connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.db_path, timeout=30)
        con.execute("PRAGMA synchronous=OFF")  # derived data: losing the tail costs a re-hash, not correctness
        con.execute(_SCHEMA)
        return con

    def digest(self, path: Path, algo: str = "sha256") -> str:
        """The `algo` digest of `path`'s bytes; FileNotFoundError if it does not exist."""
        st = os.stat(path)
        key = (os.path.abspath(path), algo)
        hit = self._load().get(key)
        if hit and hit[:3] == (st.st_ino, st.st_mtime_ns, st.st_size):
            return hit[3]
        h = hashlib.new(algo)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                self.hashed_bytes += len(chunk)
        value = h.hexdigest()
        self.remember(path, algo, value)
        return value

    def remember(self, path: Path, algo: str, value: str) -> None:
        """Record that `path`, as it is on disk now, has digest `value` (e.g. just after writing it)."""
        st = os.stat(path)
        key = (os.path.abspath(path), algo)
        self._load()[key] = (st.st_ino, st.st_mtime_ns, st.st_size, value)
        try:
            if self._con is None:
                self._con = self._connect()
            with self._con:
                self._con.execute("INSERT OR REPLACE INTO stat VALUES (?,?,?,?,?,?)", (*key, st.st_ino, st.st_mtime_ns, st.st_size, value))
        except sqlite3.DatabaseError:
            pass  # the cache is an optimization; losing an entry costs one re-hash
