"""Where a project's modules are, and the files beside its code, as code versions see them.

`CodeFiles` answers which file a module name is (inside the project root, or code outside it
that is followed: an editable install, a folder on sys.path), reads each file once, and keeps
what tells later that what it read is unchanged: a file's stat when read (or its sha256 when the
stat cannot be trusted), every module lookup made, every package listed and every folder whose
resource files were listed. The cache of code versions (`skipwise.core.codecache`) stores those
checks with each version and asks the same questions again before reusing it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from skipwise.core import codeclosure as cc
from skipwise.core import codepaths
from skipwise.core import schemes
from skipwise.core.hashing import file_stamp, sha256_bytes, sha256_file

#: A file whose ctime is this recent when read may change again within one timestamp tick.
_RACY_NS = 2_000_000_000


class CodeFiles:
    """The files of the code under `root` (and the code outside it that is followed), each found
    and read once. `read_source(path) -> bytes` replaces reading project files from disk."""

    def __init__(self, root: Path, read_source: Callable[[Path], bytes] | None = None) -> None:
        self.root = Path(root)
        self._read_source = read_source
        self._tops: dict[str, tuple[str, ...] | None] = {}  # top-level name -> where its code is followed
        self.found: dict[str, tuple[str, str] | None] = {}  # module name -> (kind, rel path) or None
        self.listings: dict[str, list[Any]] = {}  # key -> [folder of reached code, recursive, its resource files]
        self._resource_shas: dict[str, str] = {}
        self.checks: dict[str, list[int] | str] = {}  # rel path -> stat when read, or sha when racy
        self.walks: dict[str, list[str]] = {}  # package -> its module files (dynamic imports)

    # -- modules ----------------------------------------------------------------------------------

    def find(self, name: str) -> tuple[str, str] | None:
        """Where module `name` is when its code is followed: (kind, path), the path relative to the
        root inside it, absolute outside it (an editable install, a folder on sys.path); None for
        the standard library, orchestration, installed distributions and what cannot be found."""
        if name not in self.found:
            self.found[name] = self._probe(name) if name else None
        return self.found[name]

    def _probe(self, name: str) -> tuple[str, str] | None:
        top, _, rest = name.partition(".")
        where = self._top(top)
        if where is None:
            return None
        if where[0] == "root":
            return codepaths.probe_module(self.root, name)
        _, kind, path = where
        if not rest:
            return kind, self._rel(path)
        if kind not in ("package", "namespace"):
            return None
        folder = os.path.dirname(path) if kind == "package" else path
        found = codepaths.probe_module(folder, rest, in_package=True)
        return None if found is None else (found[0], self._rel(os.path.join(folder, found[1])))

    def _top(self, top: str) -> tuple[str, ...] | None:
        """("root",) when top-level module `top` is a module of the project folder, ("found", kind,
        path) when the import system finds it elsewhere as code to follow (an editable install, a
        folder on sys.path), None when it is not followed."""
        if top not in self._tops:
            self._tops[top] = self._where(top)
        return self._tops[top]

    def _where(self, top: str) -> tuple[str, ...] | None:
        if top == schemes.LIBRARY:
            return None  # counted by its scheme numbers, wherever its source is
        in_root = codepaths.probe_module(self.root, top)
        if in_root is not None and in_root[0] != "namespace":
            return ("root",)
        if in_root is None and (top in sys.stdlib_module_names or schemes.is_orchestration(top)):
            return None
        found = codepaths.locate(top)
        source = found if found is not None and found[0] == "source" else None
        if in_root is not None and not (source and source[1] != "namespace" and self._outside(source[2])):
            return ("root",)  # a namespace folder of the project, unless a regular package elsewhere wins
        return ("found", source[1], source[2]) if source else None

    def _outside(self, path: str) -> bool:
        rel = os.path.relpath(path, self.root)
        return rel == ".." or rel.startswith("../")

    def _rel(self, path: str) -> str:
        """How a file is named in versions and the cache: relative to the root inside it (a copy of
        the project must not trust the original's files), absolute outside it."""
        return os.path.abspath(path) if self._outside(path) else os.path.relpath(path, self.root).replace(os.sep, "/")

    def package_modules(self, top: str) -> list[str]:
        """Every module of package `top` followed (of the whole root when `top` is a single file in it)."""
        if top not in self.walks:
            self.walks[top] = self.package_sources(top)
        out = []
        for rel in self.walks[top]:
            name = rel[: -len(".py")].replace("/", ".")
            out.append(name.removesuffix(".__init__"))
        return out

    def package_sources(self, top: str) -> list[str]:
        """The .py files of package `top`, as "top/..." paths (every file of the root for a single file in it)."""
        where = self._top(top)
        if where is None:
            return []
        if where[0] == "root":
            return codepaths.package_sources(self.root, top)
        _, kind, path = where
        if kind not in ("package", "namespace"):
            return [f"{top}.py"]
        return [f"{top}/{rel}" for rel in codepaths.python_files(os.path.dirname(path) if kind == "package" else path)]

    def read(self, rel: str) -> bytes:
        """The bytes of a project file; without `read_source`, also what validates a cache entry."""
        path = self.root / rel
        if self._read_source is not None:
            return self._read_source(path)
        before = os.stat(path)
        data = path.read_bytes()
        self._check(rel, before, sha256_bytes(data))
        return data

    def _check(self, rel: str, before: os.stat_result, sha: str) -> None:
        """Keep what tells later that file `rel`, stat'ed as `before` and then read, is unchanged."""
        after = os.stat(self.root / rel)
        racy = stat_key(before) != stat_key(after) or time.time_ns() - before.st_ctime_ns < _RACY_NS
        # A file changed within the timestamp granularity of its last stat could change again
        # unseen by stat: such files are checked by content instead.
        self.checks[rel] = sha if racy else stat_key(before)

    # -- files beside code --------------------------------------------------------------------------

    def resources(self, mods: list[cc.ModuleInfo]) -> tuple[tuple[str, str], ...]:
        """(path, sha256) of the files beside the code of `mods` that count (`codepaths.resource_files`).
        A top-level module file's folder is the root or a sys.path entry: only its own files count."""
        folders: dict[str, bool] = {}
        for mod in mods:
            folder = mod.rel.rpartition("/")[0]
            recursive = bool(folder) and (mod.is_package or "." in mod.name)
            folders[folder] = folders.get(folder, False) or recursive
        out = []
        for folder, recursive in sorted(folders.items()):
            for name in self._listing(folder, recursive):
                rel = f"{folder}/{name}" if folder else name
                out.append((rel, self._resource_sha(rel)))
        return tuple(out)

    def _listing(self, folder: str, recursive: bool) -> list[str]:
        key = f"{int(recursive)}:{folder}"
        if key not in self.listings:
            self.listings[key] = [folder, recursive, self.list_resources(folder, recursive)]
        files: list[str] = self.listings[key][2]
        return files

    def list_resources(self, folder: str, recursive: bool) -> list[str]:
        """The resource files (`codepaths.resource_files`) of `folder`, relative to the root."""
        data_root = os.path.join(self.root, "data")  # partitions and caches are data, not code
        return codepaths.resource_files(os.path.join(self.root, folder), recursive, frozenset({data_root}))

    def _resource_sha(self, rel: str) -> str:
        if rel not in self._resource_shas:
            try:
                before = os.stat(self.root / rel)
                sha = sha256_file(self.root / rel)  # in chunks: a resource may be large
                self._check(rel, before, sha)
            except OSError:  # unreadable, or gone since it was listed: checked again next time
                sha = self.checks[rel] = "unreadable"
            self._resource_shas[rel] = sha
        return self._resource_shas[rel]


def stat_key(st: os.stat_result) -> list[int]:
    """A file's (inode, mtime, ctime, size) as the cache holds it (a list: JSON)."""
    return list(file_stamp(st))
