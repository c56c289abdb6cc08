"""A local cache of remote input bytes, keyed by their content, safe under concurrent processes.

Unlike fsspec's caching filesystems (keyed by path, not checked for remote changes by default, not
safe across processes), an entry here is named by what its bytes are:

    <root>/md5/ab/cdef...            the bytes of the object whose md5 is abcdef... (a DVC object)
    <root>/etag/12/3456...           an object-store object, by sha256 of (URL, ETag, version id)
    <root>/<algo>/ab/cdef....json    beside each: size, sha256, where it came from, what a refetch costs

Every read is verified before use (the md5 of the bytes for md5 keys, the sha256 recorded when it
was fetched for the others): a corrupt or truncated entry is removed and fetched again, never used.
Writes go to a unique temporary file then `os.replace`, and one process fetches a given key while
the others wait on its lock (``fcntl.flock`` on ``<root>/.locks/<key>``), then read what it wrote.

Beyond `max_bytes`, entries are evicted cheapest-to-refetch first (the dollars the metadata says
fetching it again would cost), least recently used among equals.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from skipwise.core.cost import IOCounter
from skipwise.core.errors import InputError
from skipwise.store.files import atomic_write

_KEY = re.compile(r"^(md5|etag):([0-9a-f]{32}|[0-9a-f]{64})(\.dir)?$")
_TMP_MAX_AGE_S = 3600  # a temporary file older than this was left by a killed writer


def md5_key(md5: str) -> str:
    """The cache key of a DVC object (``abcd...`` or a ``.dir`` manifest ``abcd....dir``)."""
    return f"md5:{md5}"


def etag_key(url: str, etag: str, version_id: str = "") -> str:
    """The cache key of an object-store object by its URL, ETag and version id."""
    return "etag:" + hashlib.sha256(f"{url}\0{etag}\0{version_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One cached object, as its metadata records it."""

    key: str
    path: Path
    size: int
    sha256: str
    origin: str  # the URL it was fetched from
    egress_class: str
    refetch_usd: float
    used_at: float  # when it was last read (seconds since the epoch)


@dataclass(frozen=True)
class Read:
    """The bytes of one object, and whether they were fetched now (False: from the cache)."""

    data: bytes
    fetched: bool


class ContentCache:
    """Remote bytes kept locally by content; see the module docstring.

    `io` counts cache reads as local (``same_host``, no request); what a fetch moves is counted by
    whoever fetches (the remote reader knows the distance).
    """

    def __init__(self, root: Path, max_bytes: int, io: IOCounter | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.io = io or IOCounter()
        self.warnings: list[str] = []
        self._total: int | None = None  # bytes held, as of this process's last listing plus its own fetches

    def path_of(self, key: str) -> Path:
        """Where the bytes of `key` live (ValueError for a malformed key)."""
        m = _KEY.match(key)
        if not m:
            raise ValueError(f"not a content-cache key: {key!r}")
        algo, hexdigest, suffix = m.group(1), m.group(2), m.group(3) or ""
        return self.root / algo / hexdigest[:2] / f"{hexdigest[2:]}{suffix}"

    def has(self, key: str) -> bool:
        """Whether an entry is present (not verified: a plan's cheap check, one stat)."""
        return self.path_of(key).is_file()

    def size_of(self, key: str) -> int | None:
        """The recorded size of a present entry, or None."""
        meta = self._meta(self.path_of(key))
        return None if meta is None else int(meta.get("size", 0))

    def get(
        self,
        key: str,
        fetch: Callable[[], bytes],
        *,
        origin: str,
        egress_class: str,
        refetch_usd: float,
        expect_sha256: str = "",
    ) -> Read:
        """The verified bytes of `key`: from the cache, or `fetch()`-ed (once across processes),
        checked, written atomically and recorded.

        An md5 key is checked against the md5 of the bytes, another key against `expect_sha256`
        when given. Fetched bytes that fail the check raise InputError naming `origin`: the remote
        object itself is damaged, and nothing is cached.
        """
        path = self.path_of(key)
        data = self._verified(key, path)
        if data is not None:
            return Read(data, False)
        with self._lock(key):
            data = self._verified(key, path)  # another process may have fetched it meanwhile
            if data is not None:
                return Read(data, False)
            data = fetch()
            problem = self._problem(key, data, expect_sha256)
            if problem:
                raise InputError(
                    f"{origin} is corrupt: {problem}; it was not used or cached",
                    hint="the remote copy is damaged: from a machine whose DVC cache has the good file, delete the "
                    "remote object and run `dvc push` again (or `dvc add` the file again and push)",
                )
            atomic_write(path, data)
            meta = {
                "key": key,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "origin": origin,
                "egress_class": egress_class,
                "refetch_usd": refetch_usd,
                "fetched_at": time.time(),
            }
            atomic_write(_meta_path(path), json.dumps(meta, sort_keys=True).encode())
        # Listing every entry after each fetch would make a first run quadratic: keep a running
        # total (from one listing) and look again only when it says the limit may be passed.
        if self._total is None:
            self._total = self.total_bytes()
        else:
            self._total += len(data)
        if self._total > self.max_bytes:
            self.evict(keep={key})
            self._total = None
        return Read(data, True)

    def _verified(self, key: str, path: Path) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        meta = self._meta(path)
        sha256 = str(meta.get("sha256", "")) if meta else ""
        problem = self._problem(key, data, sha256)
        if not problem and not sha256 and not key.startswith("md5:"):
            # Only an md5 key checks itself: an entry of any other kind is trusted through the
            # sha256 recorded when it was fetched, and without one nothing says its bytes are right.
            problem = "no recorded sha256 to check it against"
        if problem:
            self._warn(f"input cache entry {path} is damaged ({problem}): removed, fetching it again")
            self._remove(path)
            return None
        self.io.add_read(len(data), "same_host", requests=0)  # local disk: no request is billed
        try:
            os.utime(_meta_path(path))  # the entry's last use, for eviction
        except OSError:
            pass  # a read-only cache still serves the verified bytes; only the eviction order is older
        return data

    @staticmethod
    def _problem(key: str, data: bytes, sha256: str) -> str:
        """Why `data` is not the content of `key` ("" when it is)."""
        m = _KEY.match(key)
        assert m is not None
        if m.group(1) == "md5":
            got = hashlib.md5(data).hexdigest()
            return "" if got == m.group(2) else f"its md5 is {got}, expected {m.group(2)} ({len(data):,} bytes)"
        if sha256:
            got = hashlib.sha256(data).hexdigest()
            return "" if got == sha256 else f"its sha256 is {got}, expected {sha256} ({len(data):,} bytes)"
        return ""

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(locks / key.replace(":", "-"), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _meta(self, path: Path) -> dict | None:
        try:
            meta = json.loads(_meta_path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _meta_path(path).unlink(missing_ok=True)

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # -- what is there, and making room --------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry with readable metadata (bytes without metadata are listed by `orphans`)."""
        out = []
        for meta_path in self.root.glob("*/??/*.json"):
            path = meta_path.with_suffix("")
            meta = self._meta(path)
            if meta is None or not path.is_file():
                continue
            try:
                used = meta_path.stat().st_mtime
            except OSError:
                continue
            out.append(
                Entry(
                    str(meta.get("key", "")),
                    path,
                    int(meta.get("size", 0)),
                    str(meta.get("sha256", "")),
                    str(meta.get("origin", "")),
                    str(meta.get("egress_class", "")),
                    float(meta.get("refetch_usd", 0.0)),
                    used,
                )
            )
        return out

    def orphans(self) -> list[Path]:
        """Files that are not a complete entry: bytes without metadata, metadata without bytes,
        temporary files a killed writer left (older than an hour)."""
        out = []
        now = time.time()
        for p in self.root.glob("*/??/*"):
            name = p.name
            if ".tmp-" in name:
                try:
                    if now - p.stat().st_mtime > _TMP_MAX_AGE_S:
                        out.append(p)
                except OSError:
                    pass  # removed meanwhile (its writer renamed it, or another gc did)
            elif name.endswith(".json"):
                if not p.with_suffix("").is_file():
                    out.append(p)
            elif not _meta_path(p).is_file():
                out.append(p)
        return out

    def total_bytes(self) -> int:
        """Bytes held by complete entries."""
        return sum(e.size for e in self.entries())

    def eviction_order(self) -> list[Entry]:
        """Entries in the order they are evicted: cheapest to fetch again first, then least recently used."""
        return sorted(self.entries(), key=lambda e: (e.refetch_usd, e.used_at, e.path.name))

    def evict(self, keep: set[str] = frozenset(), dry_run: bool = False, max_bytes: int | None = None) -> list[Entry]:
        """Remove entries (never those in `keep`) until the cache holds at most `max_bytes`
        (default: its limit); returns what was (or, with `dry_run`, would be) removed."""
        limit = self.max_bytes if max_bytes is None else int(max_bytes)
        entries = self.eviction_order()
        total = sum(e.size for e in entries)
        removed: list[Entry] = []
        for e in entries:
            if total <= limit:
                break
            if e.key in keep:
                continue
            if not dry_run:
                self._remove(e.path)
            removed.append(e)
            total -= e.size
        return removed


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")
