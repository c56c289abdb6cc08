"""Sources in DVC-tracked folders: a raw partition's version is its DVC md5 (from the folder's
`.dir` manifest, checked against the workspace through the stat cache), and its bytes come from the
workspace when they match, else from the input cache or the DVC remote (`skipwise.sources.locality`).

A partition's files are where the source's form says (`skipwise.core.spec.Source`): the legacy
``filename`` inside the tracked folder, a path template (one file, or a glob's several), or a
function's list. A partition of several files has one version: a hash of each file's md5 by path
(`skipwise.core.layouts.combined_version`)."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skipwise.adapters.dvc.manifest import FileVersion, TrackedDir, file_version, read_tracked_dir, tracked_target
from skipwise.core.errors import InputError
from skipwise.core.layouts import combined_version, static_dir
from skipwise.core.spec import Source
from skipwise.store.statcache import StatCache

if TYPE_CHECKING:
    from skipwise.store.base import PartitionStore

#: the version of a partition made of several files
MANY_PREFIX = "md5s:"


class DvcSources:
    """The DVC-tracked sources of the project at `root` (one `.dir` manifest read per source)."""

    def __init__(
        self,
        root: Path,
        store: PartitionStore,
        statcache: StatCache,
        locality: Any,  # sources.locality.Locality, which builds this: remotes, fetches, the input cache
        warn: Callable[[str], None],
    ) -> None:
        self.root = Path(root)
        self.store = store
        self.statcache = statcache
        self.locality = locality
        self.warn = warn
        self._tracked: dict[str, TrackedDir] = {}
        self._folders: dict[str, dict[str, set[str]]] = {}

    def tracked(self, source: Source) -> TrackedDir | None:
        """The source's `.dir` manifest when it has been read (planning reads it once)."""
        return self._tracked.get(source.name)

    def _tracked_of(self, source: Source) -> TrackedDir:
        tracked = self._tracked.get(source.name)
        if tracked is None:
            if source.layout is None and not source.paths:  # the legacy form: `path` is the tracked folder
                self.store.check_readable(self.root / source.path)  # the folder itself, once
                tracked = read_tracked_dir(self.root, source.path, self.locality.manifest_fetcher(source))
            else:
                target = tracked_target(self.root, source.path) or source.path
                if os.path.lexists(self.root / target):
                    self.store.check_readable(self.root / target)
                tracked = read_tracked_dir(self.root, target, self.locality.manifest_fetcher(source), file=True)
            self._tracked[source.name] = tracked
        return tracked

    def add_hint(self, source: Source) -> str:
        """What `dvc add` takes to version the source's files: the folder (or file) DVC tracks."""
        tracked = self._tracked_of(source)
        return tracked.path if tracked.source != "not tracked by DVC" else source.path

    def version(self, source: Source, key: str) -> str:
        """``md5:<hex>`` of the partition's file as DVC recorded it (checked against the workspace),
        ``md5s:<sha256>`` of a partition of several files, or "absent"."""
        if not source.many:  # one file: its version, without the path `parts` also gives
            tracked = self._tracked_of(source)
            return self._file_version(source, tracked, source.file_for(key), self.locality.on_remote(source)).version
        parts = self.parts(source, key)
        if not parts:
            return "absent"
        return combined_version(parts, MANY_PREFIX)

    def versions(self, source: Source, keys: Sequence[str]) -> list[str]:
        """`version` of each of `keys`, in order, with the same answers and warnings.

        For a source of one file per partition, the common case is answered in one loop: a plain
        file whose stats are those the stat cache recorded its md5 with, and that md5 is what DVC
        recorded. Anything else (a link, a missing file, one that moved, one that differs from
        DVC's record) goes through `version`, which says why."""
        if source.many:
            return [self.version(source, key) for key in keys]
        tracked = self._tracked_of(source)
        recorded = tracked.files
        base = os.path.join(self.root, source.path)
        inside = self._in_tracked(source, tracked, "")  # the source's folder in the tracked one
        known, lstat, is_link = self.statcache.known_in(base, "md5"), os.lstat, stat.S_ISLNK
        rels = [source.file_for(key) for key in keys]
        stats: list[os.stat_result | None] = []
        for rel in rels:
            try:
                stats.append(lstat(os.path.join(base, rel) if rel else base))
            except OSError:
                stats.append(None)
        # Files seen for the first time (a new day, a first plan) are hashed at once, on every
        # core; links are left to `version`, which checks where they point before reading.
        new = {
            rel: st
            for rel, st in zip(rels, stats)
            if rel and st is not None and stat.S_ISREG(st.st_mode) and known(rel, st) is None
        }
        self.statcache.digest_all([(os.path.join(base, rel), st) for rel, st in new.items()])
        out: list[str] = []
        for key, rel, st in zip(keys, rels, stats):
            md5 = None if st is None or is_link(st.st_mode) or not rel else known(rel, st)
            name = (posixpath.join(inside, rel) if inside else rel) if rel else inside
            if md5 is not None and md5 == recorded.get(name):
                out.append(f"md5:{md5}")
            else:
                out.append(self.version(source, key))
        return out

    def parts(self, source: Source, key: str) -> list[tuple[str, str]]:
        """(path relative to the root, ``md5:<hex>``) of each file of partition `key`, by path."""
        tracked = self._tracked_of(source)
        remote = self.locality.on_remote(source)
        out = []
        for rel in self._candidates(source, key, tracked):
            fv = self._file_version(source, tracked, rel, remote)
            if fv.version != "absent":
                out.append((str(Path(source.path, rel)) if rel else source.path, fv.version))
            elif source.paths:  # a function's list is what the partition is: all of it, or it is missing
                return []
        return sorted(out)

    def _file_version(self, source: Source, tracked: TrackedDir, rel: str, remote: bool) -> FileVersion:
        """The version of one file of the source (`rel`: relative to its path; "" for the path
        itself), its warning said."""
        base = os.path.join(self.root, source.path)
        path = os.path.join(base, rel) if rel else base
        try:
            st: os.stat_result | None = os.lstat(path)
        except OSError:
            st = None  # missing: file_version says what that means
        if st is not None and stat.S_ISLNK(st.st_mode):  # a plain file in a checked folder needs no realpath
            self.store.check_readable(path)  # never hash (or later read) what a link outside points at
            st = None  # the digest follows the link
        fv = file_version(
            self.root, tracked, self._in_tracked(source, tracked, rel), self.statcache, remote=remote, st=st
        )
        if fv.warning:
            self.warn(fv.warning)
        return fv

    def _in_tracked(self, source: Source, tracked: TrackedDir, rel: str) -> str:
        """`rel` (relative to the source's path) relative to the tracked folder."""
        if tracked.path == source.path:
            return rel
        return (
            posixpath.join(posixpath.relpath(source.path, tracked.path), rel)
            if rel
            else posixpath.relpath(source.path, tracked.path)
        )

    def _candidates(self, source: Source, key: str, tracked: TrackedDir) -> list[str]:
        """The files of partition `key`, relative to the source's path (before asking whether
        they exist): one for a plain template, a function's list, or a glob's matches among what
        DVC recorded and what the workspace holds."""
        if source.paths:
            return list(source.files_for(key))
        if not source.many:
            return [source.file_for(key)]
        template = source.template
        assert template is not None
        rendered = template.render(key, source.dims)
        pattern = template.pattern(key, source.dims)
        folder = static_dir(rendered)
        if "**" in rendered:
            names = {f for fs in self._folders_of(source, tracked).values() for f in fs}
            names |= self._walk(source, folder)
        else:
            names = set(self._folders_of(source, tracked).get(folder, ()))
            names |= self._listdir(source, folder)
        return sorted(n for n in names if pattern.fullmatch(n))

    def _folders_of(self, source: Source, tracked: TrackedDir) -> dict[str, set[str]]:
        """What DVC recorded under the source's path, by folder (relative to the source's path)."""
        folders = self._folders.get(source.name)
        if folders is None:
            folders = {}
            inner = "" if tracked.path == source.path else posixpath.relpath(source.path, tracked.path) + "/"
            for rel in tracked.files:
                if inner and not rel.startswith(inner):
                    continue
                rel = rel[len(inner) :]
                folders.setdefault(posixpath.dirname(rel), set()).add(rel)
            self._folders[source.name] = folders
        return folders

    def _listdir(self, source: Source, folder: str) -> set[str]:
        base = self.root / source.path / folder
        try:
            with os.scandir(base) as it:
                return {posixpath.join(folder, e.name) if folder else e.name for e in it if not e.is_dir()}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def _walk(self, source: Source, folder: str) -> set[str]:
        base = self.root / source.path
        out = set()
        for dirpath, _, files in os.walk(base / folder):
            rel = os.path.relpath(dirpath, base)
            out |= {f if rel == "." else posixpath.join(Path(rel).as_posix(), f) for f in files}
        return out

    def read(self, source: Source, key: str, version: str | None) -> bytes:
        """The workspace file when it has that content, else (for a source on a remote) the input
        cache or the remote."""
        if source.layout is None and not source.paths:
            return self._read_file(source, self.root / source.path / source.file_for(key), version)
        files = self.read_files(source, key, version)
        if len(files) != 1:
            raise InputError(f"{source.name}[{key}] has {len(files)} files, not one", hint="read it with read_files")
        return files[0]

    def read_files(self, source: Source, key: str, version: str | None) -> list[bytes]:
        """The bytes of each file of partition `key` at `version`, in path order; an error saying
        to run again when the files changed since `version` was planned."""
        parts = self.parts(source, key)
        now = "absent" if not parts else combined_version(parts, MANY_PREFIX) if source.many else parts[0][1]
        if version and now != version:
            raise InputError(
                f"{source.name}[{key}] changed since it was planned ({source.shown(key)})",
                hint="run again: the plan takes the files as they are now",
            )
        return [self._read_file(source, self.root / rel, v) for rel, v in parts]

    def _read_file(self, source: Source, path: Path, version: str | None) -> bytes:
        if not version or not version.startswith("md5:") or not self.locality.on_remote(source):
            return self.store.read_file(path)
        md5 = version[len("md5:") :]
        if os.path.lexists(path):
            self.store.check_readable(path)
            if self.statcache.digest(path, "md5") == md5:
                return self.store.read_file(path)
        return self.locality.fetch_object(source, md5)
