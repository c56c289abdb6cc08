"""The source bytes every project module was actually executed from.

A code version computed from the files on disk describes the code that *will* run when a module is
imported, not the code that *did* run if the file changed after its module was imported (an edit
while a long run is in flight). So skipwise records, at import time, the exact bytes each module
outside the installed packages was compiled from; before a partition is committed, the engine
versions those bytes instead of trusting the disk.

`install()` puts a finder in front of `sys.meta_path` (done when `skipwise` is imported). It asks
the other finders as usual and only swaps a plain `SourceFileLoader` for one that reads the source
once, records it and compiles exactly those bytes (no `.pyc`: a cached bytecode file can belong to
other bytes than the ones just read). Installed packages keep their loaders: they are versioned by
their distribution's version.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
import stat
import sys
import sysconfig
import time
from dataclasses import dataclass

from skipwise.project import observing


@dataclass(frozen=True)
class LoadedSource:
    """The bytes a module was compiled from, their sha256, and when they were read (time.time())."""

    data: bytes
    sha256: str
    at: float


_SOURCES: dict[str, LoadedSource] = {}  # real path of a source file -> what was executed
_GENERATION = [0]


class _RecordingLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str):  # noqa: ANN201 - importlib's signature
        path = self.get_filename(fullname)
        data = self.get_data(path)
        _record(path, data)
        return self.source_to_code(data, path)

    def exec_module(self, module) -> None:  # noqa: ANN001 - importlib's signature

        with observing.importing(self.get_filename(module.__name__), module):
            super().exec_module(module)


def _record(path: str, data: bytes) -> None:
    _SOURCES[os.path.realpath(path)] = LoadedSource(data, hashlib.sha256(data).hexdigest(), time.time())
    _GENERATION[0] += 1


def _installed_prefixes() -> tuple[str, ...]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            paths.add(sysconfig.get_path(key))
        except KeyError:
            continue
    return tuple(sorted({os.path.realpath(p) + os.sep for p in paths if p}))


class _Finder:
    """A meta-path finder that defers to the others and records what their source loaders load."""

    def __init__(self) -> None:
        self.prefixes = _installed_prefixes()
        self._folders: dict[str, tuple[tuple[int, int], str]] = {}  # folder -> ((dev, inode), real path)

    def installed(self, origin: str) -> bool:
        """Whether the real path of the file `origin` lies under an installed prefix.

        A process imports over a thousand modules from a few hundred folders: each folder's real
        path is resolved once (`os.path.realpath` takes an `lstat` per component) and kept with the
        identity of the folder it names, which one `stat` re-checks (a link re-pointed since is
        resolved again); the file itself is followed only when it is a link."""
        folder, name = os.path.split(origin)
        try:
            st = os.stat(folder)
            is_link = stat.S_ISLNK(os.lstat(origin).st_mode)
        except OSError:
            return os.path.realpath(origin).startswith(self.prefixes)
        if is_link:
            return os.path.realpath(origin).startswith(self.prefixes)
        ident = (st.st_dev, st.st_ino)
        known = self._folders.get(folder)
        if known is None or known[0] != ident:
            known = self._folders[folder] = (ident, os.path.realpath(folder))
        return os.path.join(known[1], name).startswith(self.prefixes)

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 - importlib's protocol
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if name == "skipwise" or name.startswith("skipwise."):
            return spec  # the library is no project code: code versions count its parts by scheme (core/schemes.py)
        if type(loader) is importlib.machinery.SourceFileLoader and spec.origin:
            if not self.installed(spec.origin):
                spec.loader = _RecordingLoader(loader.name, loader.path)
        return spec


_FINDER: _Finder | None = None


def install(running: str | None = None) -> None:
    """Record the source of every module imported from now on (idempotent).

    `running` is the file of the module calling this (the package's `__init__`): it and this module
    were compiled an instant ago, before any finder could record them, so their bytes are read now.
    """
    global _FINDER
    if _FINDER is None:
        _FINDER = _Finder()
        sys.meta_path.insert(0, _FINDER)
        for path in (running, __file__):  # this module, too, was imported before the finder existed
            if path and os.path.realpath(path) not in _SOURCES:
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                _record(path, data)


def source_of(path: str | os.PathLike) -> LoadedSource | None:
    """What the module at `path` was executed from, if it was imported since `install()`."""
    return _SOURCES.get(os.path.realpath(path))


def process_start() -> float | None:
    """When this process started (seconds since the epoch, to ~10 ms), on Linux; None where unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 (starttime, clock ticks after boot), counted after the name
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        # /proc/stat's btime is whole seconds; now - uptime gives the boot time to 10 ms.
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def generation() -> int:
    """Grows whenever a module is (re)imported: a check made at one generation holds until the next."""
    return _GENERATION[0]


def read_as_imported(path: str | os.PathLike) -> bytes:
    """The bytes `path` was imported from, or its bytes on disk if it was never imported."""
    src = source_of(path)
    if src is not None:
        return src.data
    with open(path, "rb") as f:
        return f.read()


def is_imported(path: str | os.PathLike) -> bool:
    """True when some module in sys.modules was loaded from `path`."""
    global _BY_FILE
    if _BY_FILE is None or _BY_FILE[0] != len(sys.modules):
        files = {}
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None)
            if isinstance(f, str):
                files[os.path.normpath(f)] = mod
        _BY_FILE = (len(sys.modules), files)
    files = _BY_FILE[1]
    return os.path.normpath(os.fspath(path)) in files or os.path.realpath(path) in files


_BY_FILE: tuple[int, dict] | None = None
