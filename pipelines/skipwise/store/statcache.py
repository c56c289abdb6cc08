"""A stat cache: (inode, mtime, ctime, size) -> content digest, so unchanged files are never re-read.

Kept in a small SQLite file; it is derived state and may be deleted at any time. Files are keyed by
their path relative to `base` (the project root), so a moved or copied project never trusts another
folder's entries: a copy has other inodes and change times, and is hashed again once. The inode
change time is part of the key because it cannot be set back from user space: an in-place edit
that keeps the size and restores the mtime (`os.utime`) still counts as a change.

A file changed moments before it was hashed is not recorded (`RACY_NS`): where the kernel stamps
files from a coarse clock (one tick, up to 10 ms, on Linux before fine-grained change times), a
second same-size write in the same tick would keep its stamp, and the recorded digest would vouch
for bytes no longer there. Such a file is hashed again next time, once it is older.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

# A new table name per key scheme: a cache written by an older version is simply a cold cache.
_TABLE = "stat_v2"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} "
    "(path TEXT, algo TEXT, ino INT, mtime INT, ctime INT, size INT, digest TEXT, PRIMARY KEY (path, algo))"
)

from skipwise.core.hashing import file_stamp as stamp

_Stamp = tuple[int, int, int, int]  # (st_ino, st_mtime_ns, st_ctime_ns, st_size)

#: a file whose change time is less than this before its hash was taken is not recorded (5 ticks of
#: the coarsest Linux file clock: a later write then always gets a later change time)
RACY_NS = 50_000_000


def _settled(st: os.stat_result) -> bool:
    """Whether a write after now must change `st`'s change time (see `RACY_NS`)."""
    return time.time_ns() - st.st_ctime_ns >= RACY_NS


class StatCache:
    """Digests of files, re-computed only when a file's (inode, mtime_ns, ctime_ns, size) moved."""

    def __init__(self, db_path: Path, base: Path | None = None) -> None:
        self.db_path = Path(db_path)
        self.base = os.path.realpath(base if base is not None else self.db_path.parent)
        self._rows: dict[str, dict[str, tuple[_Stamp, str]]] = {}  # algo -> path -> (stamp, digest), loaded per algo
        self._con: sqlite3.Connection | None = None
        self.hashed_bytes = 0  # bytes read to hash files (zero on a warm no-op)

    def _key(self, path: Path | str) -> str:
        full = os.path.abspath(path)
        prefix = self.base + os.sep
        if full.startswith(prefix):  # the usual case, without relpath's cost (planning is hot)
            return full[len(prefix) :]
        rel = os.path.relpath(full, self.base)
        return full if rel.startswith("..") else rel

    def _load(self, algo: str) -> dict[str, tuple[_Stamp, str]]:
        rows = self._rows.get(algo)
        if rows is None:
            rows = self._rows[algo] = {}
            if self.db_path.exists():
                try:
                    con = self._connection()
                    for p, ino, mt, ct, sz, d in con.execute(
                        f"SELECT path, ino, mtime, ctime, size, digest FROM {_TABLE} WHERE algo = ?", (algo,)
                    ):
                        rows[p] = ((ino, mt, ct, sz), d)
                except sqlite3.DatabaseError:
                    rows.clear()  # a damaged cache is just a cold cache
        return rows

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.db_path, timeout=30)
            con.execute("PRAGMA synchronous=OFF")  # derived data: losing the tail costs a re-hash, not correctness
            con.execute(_SCHEMA)
            self._con = con
        return self._con

    def recorded(self, path: Path | str, algo: str) -> tuple[_Stamp, str] | None:
        """The (stamp, digest) recorded for `path`, if any: the digest of its bytes when its stats
        were the stamp (inode, mtime, ctime, size)."""
        return self._load(algo).get(self._key(path))

    def known(self, path: Path | str, algo: str, st: os.stat_result) -> str | None:
        """The `algo` digest recorded for `path` when `st` (its stat, just taken) is the one it was
        recorded with; None when it is not known (`digest` would read the file)."""
        hit = self._load(algo).get(self._key(path))
        return hit[1] if hit and hit[0] == stamp(st) else None

    def known_in(self, folder: str, algo: str) -> Callable[[str, os.stat_result], str | None]:
        """`known` for files under `folder`, by their path relative to it: the same answers, without
        resolving each path (a plan asks for every raw file of a source at once)."""
        rows = self._load(algo)
        prefix = self._key(os.path.join(folder, "x"))[:-1]
        plain = os.path.isabs(folder) and not prefix.startswith(os.sep)  # entries relative to `base` there

        def known(rel: str, st: os.stat_result) -> str | None:
            if plain and rel and rel[0] not in "./" and "/." not in rel and "//" not in rel and not rel.endswith("/"):
                hit = rows.get(prefix + rel)
                return hit[1] if hit and hit[0] == stamp(st) else None
            return self.known(os.path.join(folder, rel), algo, st)

        return known

    def digest(self, path: Path | str, algo: str = "sha256", st: os.stat_result | None = None) -> str:
        """The `algo` digest of `path`'s bytes; FileNotFoundError if it does not exist. `st`: its
        stat, when the caller has just taken it."""
        if st is None:
            st = os.stat(path)
        hit = self._load(algo).get(self._key(path))
        if hit and hit[0] == stamp(st):
            return hit[1]
        h = hashlib.new(algo)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                self.hashed_bytes += len(chunk)
            after = os.fstat(f.fileno())
        value = h.hexdigest()
        if stamp(after) == stamp(st) and _settled(st):  # not written to while we read it, nor too lately
            self._store(path, algo, stamp(st), value)
        return value

    def digest_all(self, files: list[tuple[str, os.stat_result]], algo: str = "md5") -> None:
        """Digest `files` ((path, its stat just taken), each a regular file not known yet) on up to
        one thread per CPU and record them, as `digest` would one by one: what it costs in CPU is
        the same, the wall it takes on a machine of N cores about 1/N (hashlib and file reads let
        other threads run). A file that moved while it was read, or cannot be read, is left to
        `digest` (which says why)."""
        workers = min(len(files), _cpus())
        total = sum(st.st_size for _, st in files)
        if workers < 2 or total < _THREADED_BYTES or total < _THREADED_FILE_BYTES * len(files):
            return  # not worth threads: `digest` reads them as they are asked for
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="skipwise-hash") as pool:
            # The store (a SQLite connection of this thread) is written here, as results come.
            for (path, st), got in zip(files, pool.map(lambda f: _hash_unchanged(f[0], algo, f[1]), files)):
                if got is not None:
                    self.hashed_bytes += got[1]
                    if _settled(st):  # else `digest` reads it again when asked (see `RACY_NS`)
                        self._store(Path(path), algo, stamp(st), got[0])

    def remember(self, path: Path, algo: str, value: str) -> None:
        """Record that `path`, as it is on disk now, has digest `value` (e.g. just after writing it).
        Recorded however recent: the caller wrote those bytes itself, under a name of its own until
        the rename, and vouches for them."""
        self._store(path, algo, stamp(os.stat(path)), value)

    def _store(self, path: Path, algo: str, st: _Stamp, value: str) -> None:
        key = self._key(path)
        self._load(algo)[key] = (st, value)
        try:
            con = self._connection()
            with con:
                con.execute(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?,?,?,?,?,?,?)", (key, algo, *st, value))
        except sqlite3.DatabaseError:
            pass  # the cache is an optimization; losing an entry costs one re-hash


#: Below this many bytes in all, or in files this small on average, files are hashed one by one: a
#: thread pool's start would cost more, and small files are mostly Python's work, one thread at a time.
_THREADED_BYTES = 8 << 20
_THREADED_FILE_BYTES = 256 << 10


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _hash_unchanged(path: str, algo: str, st: os.stat_result) -> tuple[str, int] | None:
    """(the digest of `path`'s bytes, bytes read) when it is still the file `st` describes from
    before the read to after it; None when it moved or cannot be read."""
    h = hashlib.new(algo)
    n = 0
    try:
        with open(path, "rb") as f:
            if stamp(os.fstat(f.fileno())) != stamp(st):
                return None
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                n += len(chunk)
            if stamp(os.fstat(f.fileno())) != stamp(st):
                return None
    except OSError:
        return None
    return h.hexdigest(), n
