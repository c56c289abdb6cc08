"""Sources in DVC-tracked folders: a raw partition's version is its DVC md5 (from the folder's
`.dir` manifest, checked against the workspace through the stat cache), and its bytes come from the
workspace when they match, else from the input cache or the DVC remote (`skipwise.sources.locality`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from skipwise.adapters.dvc.manifest import TrackedDir, file_version, read_tracked_dir
from skipwise.core.spec import Source
from skipwise.store.statcache import StatCache

if TYPE_CHECKING:
    from skipwise.sources.locality import Locality
    from skipwise.store.base import PartitionStore


class DvcSources:
    """The DVC-tracked sources of the project at `root` (one `.dir` manifest read per source)."""

    def __init__(
        self,
        root: Path,
        store: PartitionStore,
        statcache: StatCache,
        locality: Locality,
        warn: Callable[[str], None],
    ) -> None:
        self.root = Path(root)
        self.store = store
        self.statcache = statcache
        self.locality = locality
        self.warn = warn
        self._tracked: dict[str, TrackedDir] = {}

    def tracked(self, source: Source) -> TrackedDir | None:
        """The source's `.dir` manifest when it has been read (planning reads it once)."""
        return self._tracked.get(source.name)

    def version(self, source: Source, key: str) -> str:
        """``md5:<hex>`` of the partition's file as DVC recorded it (checked against the workspace), or "absent"."""
        tracked = self._tracked.get(source.name)
        if tracked is None:
            self.store.check_readable(self.root / source.path)  # the folder itself, once
            tracked = self._tracked[source.name] = read_tracked_dir(
                self.root, source.path, self.locality.manifest_fetcher(source)
            )
        rel = source.file_for(key)
        path = self.root / source.path / rel
        if os.path.islink(path):  # a plain file in a checked folder needs no realpath
            self.store.check_readable(path)  # never hash (or later read) what a link outside points at
        fv = file_version(self.root, tracked, rel, self.statcache, remote=self.locality.on_remote(source))
        if fv.warning:
            self.warn(fv.warning)
        return fv.version

    def read(self, source: Source, key: str, version: str | None) -> bytes:
        """The workspace file when it has that content, else (for a source on a remote) the input
        cache or the remote."""
        path = self.root / source.path / source.file_for(key)
        if not version or not version.startswith("md5:") or not self.locality.on_remote(source):
            return self.store.read_file(path)
        md5 = version[len("md5:") :]
        if os.path.lexists(path):
            self.store.check_readable(path)
            if self.statcache.digest(path, "md5") == md5:
                return self.store.read_file(path)
        return self.locality.fetch_object(source, md5)
