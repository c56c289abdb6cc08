"""A project's graph: from its snapshot while the snapshot is valid, else from its definitions.

Resolving definitions means importing the user's module and reading its `dg.Definitions`, which only
the Dagster adapter can do. The adapter registers its resolver (`register`) when it is imported, and a
definitions module imports it through `import skipwise as sw` (`sw.asset`, `sw.IOManager`...): so this
layer, and everything below the adapter, never imports Dagster, and `skipwise plan` over a valid
snapshot never loads it at all.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Mapping

from skipwise.core.errors import ConfigError
from skipwise.core.hashing import sha256_bytes
from skipwise.core.manifest import SCHEME_VERSION
from skipwise.core.spec import Graph
from skipwise.core.version import __version__
from skipwise.project import recorder, snapshot

#: (definitions module, root) -> (graph, until when its keys hold (None: always), may it be cached)
Resolver = Callable[[str, Path], tuple[Graph, "float | None", bool]]
_RESOLVERS: list[Resolver] = []

_LIBRARY_DIGESTS: dict[str, str] = {}


def _library_digest(root: Path) -> str:
    """A digest of this library's files when its source lives under `root` (the repository it is
    developed in), else "": then an edit of the graph resolution code rebuilds the snapshot."""
    here = Path(__file__).resolve().parents[1]  # the skipwise package
    key = str(Path(root).resolve())
    if key not in _LIBRARY_DIGESTS:
        try:
            here.relative_to(Path(root).resolve())
        except ValueError:
            _LIBRARY_DIGESTS[key] = ""
        else:
            import hashlib

            h = hashlib.sha256()
            for path in sorted(here.rglob("*.py")):
                h.update(path.relative_to(here).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
            _LIBRARY_DIGESTS[key] = h.hexdigest()[:32]
    return _LIBRARY_DIGESTS[key]


def register(resolver: Resolver) -> None:
    """Make `resolver` the way definitions become a graph (the Dagster adapter calls this on import)."""
    _RESOLVERS[:] = [resolver]


def _resolver(definitions: str) -> Resolver:
    if not _RESOLVERS:
        import_definitions(definitions)  # a project's definitions import skipwise's Dagster adapter
    if not _RESOLVERS:
        raise ConfigError(
            f"{definitions} declares no skipwise asset or IO manager",
            hint="declare assets with `import skipwise as sw` and `@sw.asset` (or add `sw.IOManager()` to its resources)",
        )
    return _RESOLVERS[0]


def import_definitions(module_name: str) -> Any:
    """Import the module holding the project's definitions, with a fix when it is not there."""
    hint = 'set [tool.skipwise] definitions = "package.module" in pyproject.toml (a module holding `defs = dg.Definitions(...)`)'
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"definitions module {module_name!r} not found ({exc})", hint=hint) from None
        raise


def _library_stamp(root: Path) -> str:
    """The library's version and fingerprint scheme, and its files' digest when its source lives
    in the project (then an edit of the resolution code rebuilds the snapshot too)."""
    return f"{__version__}/{SCHEME_VERSION}/{_library_digest(root)}"


def resolve_graph(root: Path, definitions: str, refresh: bool = False) -> tuple[Graph, str]:
    """The project's graph: from the snapshot while it is valid (unless `refresh`), else by
    importing the definitions (and then saving a new snapshot). Returns (graph, "" or why the
    snapshot was rebuilt)."""
    graph, why = snapshot.load(root, definitions, _library_stamp(root)) if not refresh else (None, "refresh asked")
    if graph is not None:
        return graph, ""
    graph, until, cacheable = _resolver(definitions)(definitions, Path(root))
    files = snapshot.watched_files(root, dict(sys.modules), ["pyproject.toml", "skipwise.toml"])
    from_root = any(rel.endswith(".py") for rel in files)
    # Definitions imported from elsewhere cannot be watched, and a graph resolved from modules
    # whose files changed since they were imported would be saved as the graph of the new files.
    if cacheable and from_root and _imported_as_on_disk(root, files):
        snapshot.save(root, definitions, graph, files, until, _library_stamp(root))
    return graph, why


def _imported_as_on_disk(root: Path, files: Mapping[str, Any]) -> bool:
    """Whether every watched module file holds the bytes its module was imported from."""
    start = None
    for rel in files:
        if not rel.endswith(".py"):
            continue
        path = Path(root) / rel
        src = recorder.source_of(path)
        try:
            if src is not None:
                if sha256_bytes(path.read_bytes()) != src.sha256:
                    return False
                continue
            start = start or recorder.process_start()
            if start is None or os.stat(path).st_ctime >= start - 0.1:
                return False  # imported before skipwise could record it, and maybe changed since
        except OSError:
            return False
    return True
