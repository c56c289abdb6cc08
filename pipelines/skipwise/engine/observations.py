"""What a project's partitions read, as keyed digests: turning what `skipwise.project.observing` saw while a
body ran (and while its modules were imported) into the manifest's `observed` mapping, and checking
those dependencies again as they are now when planning.

Dependencies are named as `skipwise.core.observed` says ("file:tables/lookup.csv", "dir:inbox",
"env:FEATURE_MODE"); files are hashed through the stat cache, so an unchanged file is not read again.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from skipwise.core.observed import DIR, ENV, FILE, keyed_digest, listing_bytes, split
from skipwise.core.observed import dep as dep_id
from skipwise.core.spec import Asset
from skipwise.project import observing
from skipwise.store.statcache import StatCache


class Observations:
    """Keyed digests of what code read under `root`.

    `store_key()` gives the store's shared key (read once, when first needed: a project whose code
    reads nothing never asks); `managed()` the folders skipwise manages itself (data/, DVC sources
    and cache), whose files are never dependencies of their own. `memo`, set by the planner for the
    length of one plan, checks each dependency once per plan.
    """

    def __init__(
        self, root: Path, statcache: StatCache, store_key: Callable[[], bytes], managed: Callable[[], Iterable[Any]]
    ) -> None:
        self.root = Path(root)
        self.statcache = statcache
        self._store_key = store_key
        self._managed_of = managed
        self._managed: list[str] | None = None
        self._key: bytes | None = None
        self.memo: dict[str, str] | None = None

    @property
    def key(self) -> bytes:
        """$SKIPWISE_DIGEST_KEY, else the store's own (every host writing to the same store shares
        it, so two workers agree about every partition)."""
        if self._key is None:
            env = os.environ.get("SKIPWISE_DIGEST_KEY")
            self._key = env.encode() if env else self._store_key()
        return self._key

    def declared(self, asset: Asset) -> list[str]:
        """The dependencies `asset` declares (files=, env=), a glob as its matches and its folder."""
        out = [dep_id(ENV, name) for name in asset.env]
        for pattern in asset.files:
            if not any(c in pattern for c in "*?["):
                out.append(dep_id(FILE, pattern))
                continue
            base = pattern[: min(pattern.find(c) for c in "*?[" if c in pattern)].rpartition("/")[0]
            out.append(dep_id(DIR, base or "."))
            matches = glob.glob(str(self.root / pattern), recursive=True)
            out += [dep_id(FILE, os.path.relpath(m, self.root)) for m in sorted(matches) if os.path.isfile(m)]
        return out

    def now(self, deps: Iterable[str]) -> dict[str, str]:
        """The keyed digest of each dependency as it is now."""
        memo = self.memo if self.memo is not None else {}
        out = {}
        for name in deps:
            if name not in memo:
                memo[name] = keyed_digest(self.key, name, self._value_now(name))
            out[name] = memo[name]
        return out

    def of(self, asset: Asset, reads: observing.Reads, sources: Iterable[Path]) -> dict[str, str]:
        """The keyed digests of what one computation of `asset` read: its body's `reads`, what the
        modules its code ran from (`sources`) read when imported, and what it declares."""
        every = observing.Reads()
        every.merge(reads)
        for path in sources:
            imported = observing.imported_reads(str(path))
            if imported is not None:
                every.merge(imported)
        out = self.now(self.declared(asset))
        for path, stamp in every.files.items():
            name = self._name(FILE, path)
            if name is not None:
                out[name] = keyed_digest(self.key, name, self._file_value(path, stamp))
        for path, names in every.dirs.items():
            name = self._name(DIR, path)
            if name is not None:
                out[name] = keyed_digest(self.key, name, None if names is None else listing_bytes(list(names)))
        for var, value in every.env.items():
            name = dep_id(ENV, var)
            out[name] = keyed_digest(
                self.key, name, None if value is None else value.encode("utf-8", "surrogateescape")
            )
        return dict(sorted(out.items()))

    # -- values ------------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return name if os.path.isabs(name) else os.path.join(self.root, name)

    def _value_now(self, name: str) -> bytes | None:
        kind, what = split(name)
        if kind == ENV:
            value = os.environ.get(what)
            return None if value is None else value.encode("utf-8", "surrogateescape")
        try:
            if kind == DIR:
                return listing_bytes(os.listdir(self._path(what)))
            return self.statcache.digest(Path(self._path(what))).encode()
        except OSError:
            return None

    def _file_value(self, path: str, stamp: Any) -> bytes | None:
        """What a file read during a computation counts by: its sha256 (None: it did not exist); a
        file that changed since it was read counts by a value that never matches (what was read is
        unknown, so the next plan recomputes)."""
        if observing.file_stamp(path) != stamp:
            return b"changed while running " + os.urandom(16)
        if stamp is None:
            return None
        try:
            return self.statcache.digest(Path(path)).encode()
        except OSError:
            return None

    def _name(self, kind: str, path: str) -> str | None:
        """ "file:<path relative to the root>" (absolute outside it) for a path the code read, or None
        for what skipwise manages itself (data/: outputs, the ledger, DVC sources; DVC's cache;
        DAGSTER_HOME; the root's hidden folders: .git, .dvc, .dagster, virtual environments)."""
        real = os.path.realpath(path)
        if self._managed is None:
            home = os.environ.get("DAGSTER_HOME")
            self._managed = [os.path.realpath(p) for p in (*self._managed_of(), *([home] if home else []))]
        if any(real == m or real.startswith(m + os.sep) for m in self._managed):
            return None
        root = str(self.root)
        if real.startswith(root + os.sep):
            rel = real[len(root) + 1 :]
            return None if rel.startswith(".") else dep_id(kind, rel)
        return None if real == root else dep_id(kind, real)
