"""Where a module's files are, found without importing anything: under the project folder, code
outside it that is followed (an editable install, a folder on sys.path or $PYTHONPATH), or an
installed distribution (which counts by version); and which files beside code count (configs,
lookups, queries a function may read). Standard library only.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import site
import sys
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES, PathFinder
from pathlib import Path

from skipwise.core.distributions import distribution_versions, is_editable

# -- where modules come from: the project folder ---------------------------------------------------

_SKIP_DIRS = frozenset({"__pycache__", "site-packages", "node_modules"})


def probe_module(root: str | Path, name: str, in_package: bool = False) -> tuple[str, str] | None:
    """Where Python would find module `name` under `root`: package, extension, source, namespace.
    `in_package`: `root` is a package's folder and `name` is relative to it."""
    parts = name.split(".")
    if any(not p or p in (".", "..") or "/" in p or "\\" in p for p in parts):
        return None
    base = os.path.join(root, *parts)  # plain strings: this runs for every lookup of a warm cache hit
    rel = "/".join(parts)
    if os.path.isfile(os.path.join(base, "__init__.py")):
        return ("package", f"{rel}/__init__.py")
    for suffix in EXTENSION_SUFFIXES:
        if os.path.isfile(base + suffix):
            return ("binary", rel + suffix)
    if os.path.isfile(base + ".py"):
        return ("source", rel + ".py")
    if os.path.isdir(base) and (in_package or len(parts) > 1 or not _installed_elsewhere(parts[0])):
        # a folder without __init__.py is a namespace package, unless a regular one exists elsewhere
        return ("namespace", rel)
    return None


def _installed_elsewhere(top: str) -> bool:
    return top in sys.stdlib_module_names or not distribution_versions(top)[0].endswith("==unknown")


def package_sources(root: str | Path, top: str) -> list[str]:
    """Every .py file of package `top` (or of the whole root when it is not a folder), sorted."""
    start = os.path.join(root, top)
    if not os.path.isdir(start):
        return python_files(root)
    return [f"{top}/{rel}" for rel in python_files(start)]


def python_files(folder: str | Path) -> list[str]:
    """Every .py file under `folder` (paths relative to it), outside hidden folders and virtual environments."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _skipped_dir(dirpath, d))
        rel_dir = os.path.relpath(dirpath, folder).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        out += sorted(prefix + f for f in filenames if f.endswith(".py"))
    return out


def _skipped_dir(parent: str, name: str, excluded: frozenset[str] = frozenset()) -> bool:
    path = os.path.join(parent, name)
    return (
        name.startswith(".")
        or name in _SKIP_DIRS
        or path in excluded
        or os.path.exists(os.path.join(path, "pyvenv.cfg"))
    )  # a virtual environment


# -- files beside code ------------------------------------------------------------------------------

#: Files beside code that never change what it computes: the project's own management files (params
#: count per asset on their own), documentation, logs, lock and editor files, Python sources (they
#: count as code when reached).
_NOT_RESOURCES = frozenset(
    {"dvc.yaml", "dvc.lock", "params.yaml", "skipwise.toml", "pyproject.toml", "workspace.yaml", "setup.cfg"}
)
_NOT_RESOURCE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".md", ".rst", ".dvc", ".log", ".pid", ".lock", ".tmp", ".swp")


def _is_resource(name: str) -> bool:
    return not (name.startswith((".", "LICENSE")) or name in _NOT_RESOURCES or name.endswith(_NOT_RESOURCE_SUFFIXES))


def resource_files(folder: str, recursive: bool, excluded: frozenset[str] = frozenset()) -> list[str]:
    """The files beside the code of `folder` that it may read (configs, lookups, queries): its own
    files and, when `recursive`, every file of its subfolders that hold no .py file at any depth
    (resource folders such as `queries/`). Paths relative to `folder`, sorted; folders in
    `excluded` (the data root) are never looked into."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    out = [e.name for e in entries if _is_resource(e.name) and e.is_file()]
    if not recursive:
        return out
    for entry in entries:
        if entry.is_dir() and not _skipped_dir(folder, entry.name, excluded):
            files = _tree_files(entry.path, excluded)
            if not any(f.endswith(".py") for f in files):  # a folder of code is not a resource folder
                out += [f"{entry.name}/{f}" for f in files if _is_resource(f.rpartition("/")[2])]
    return sorted(out)


def _tree_files(folder: str, excluded: frozenset[str]) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not _skipped_dir(dirpath, d, excluded)]
        rel_dir = os.path.relpath(dirpath, folder).replace(os.sep, "/")
        out += [f if rel_dir == "." else f"{rel_dir}/{f}" for f in filenames]
    return out


# -- where modules come from: outside the project folder -------------------------------------------


def locate(top: str) -> tuple[str, str, str] | None:
    """Where top-level module `top` would be imported from, found without importing anything:
    (how, kind, path). `how` is "installed" for a distribution's files (site-packages, or beside
    the distribution's metadata): they count by version; or "source" for code to follow like the
    project's: an editable install, a module on sys.path or $PYTHONPATH. `kind` is probe_module's
    and `path` the module's file (a package's __init__.py, a namespace package's folder).
    None when no finder knows `top`."""
    found = _spec_path(top)
    if found is None:
        return None
    kind, path = found
    folder = os.path.dirname(path) if kind != "package" else os.path.dirname(os.path.dirname(path))
    if _is_site(path) or _provided_beside(top, folder):
        return ("installed", kind, path)
    return ("source", kind, path)


def _spec_path(top: str) -> tuple[str, str] | None:
    """(kind, path) of `top` from the import system's finders: sys.path first, then the meta path
    finders editable installs add (asked for a top-level name, they import nothing)."""
    try:
        spec = PathFinder.find_spec(top) or importlib.util.find_spec(top)
    except (ImportError, ValueError, AttributeError):  # a module in sys.modules without __spec__
        return None
    if spec is None:
        return None
    origin = spec.origin if spec.has_location else None
    if origin is None:
        locations = [p for p in spec.submodule_search_locations or () if os.path.isdir(p)]
        return ("namespace", locations[0]) if locations else None
    if not os.path.isfile(origin):
        return None  # in a zip archive: no file to follow (it counts like an installed module)
    if origin.endswith(tuple(EXTENSION_SUFFIXES)) or not origin.endswith(".py"):
        return ("binary", origin)  # compiled, or bytecode without source: its bytes count
    return ("package" if spec.submodule_search_locations is not None else "source", origin)


@functools.cache
def _site_folders() -> tuple[str, ...]:
    """The folders installers write distributions to (and the standard library's)."""
    paths = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    with contextlib.suppress(AttributeError):  # an embedded interpreter's trimmed site module has neither
        paths.update(site.getsitepackages())
        paths.add(site.getusersitepackages())
    return tuple(sorted({os.path.realpath(p) + os.sep for p in paths if p}))


def _is_site(path: str) -> bool:
    """Whether `path` is an installed file: under the interpreter's site folders or any other
    site-packages (a system one). A package linked into site-packages (flit --symlink) is not."""
    real = os.path.realpath(path)
    return real.startswith(_site_folders()) or not {"site-packages", "dist-packages"}.isdisjoint(real.split(os.sep))


def _provided_beside(top: str, folder: str) -> bool:
    """Whether a distribution installed `top` into `folder` (`pip install --target`): its
    .dist-info is there, lists `top`, and is not an editable install (PEP 610)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        if not name.endswith(".dist-info"):
            continue  # a bare .egg-info beside sources is `setup.py develop`: editable
        meta = os.path.join(folder, name)
        if not is_editable(meta) and _lists(meta, top):
            return True
    return False


def _lists(meta: str, top: str) -> bool:
    """Whether a .dist-info folder's RECORD holds files of top-level module `top`."""
    try:
        with open(os.path.join(meta, "RECORD"), encoding="utf-8", errors="replace") as f:
            return any(line.startswith((f"{top}/", f"{top}.")) for line in f)
    except OSError:
        return False
