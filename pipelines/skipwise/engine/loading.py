"""Finding a project and its graph: the root, the definitions it names, the resolved graph
(from its snapshot when valid), and the loaded `Project`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

from skipwise.core.errors import ConfigError
from skipwise.core.spec import Graph
from skipwise.engine.project import Project

_LIBRARY_DIGESTS: dict[str, str] = {}


def _library_digest(root: Path) -> str:
    """A digest of this library's files when its source lives under `root` (the repository it is
    developed in), else "": then an edit of the graph resolution code rebuilds the snapshot."""
    here = Path(__file__).resolve().parent
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


def _has_marker(d: Path) -> bool:
    if (d / "skipwise.toml").exists() or (d / "params.yaml").exists() or (d / "dvc.yaml").exists():
        return True
    py = d / "pyproject.toml"
    try:
        return py.is_file() and "[tool.skipwise]" in py.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def find_root(start: Path | None = None) -> Path:
    """The project root: $SKIPWISE_ROOT, else the nearest folder upward from `start` (default: the
    current folder) holding skipwise.toml, a pyproject.toml with [tool.skipwise], params.yaml or dvc.yaml."""
    env = os.environ.get("SKIPWISE_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if _has_marker(d):
            return d
    return here


def run_root(found: Path) -> Path:
    """The project a run works on: $SKIPWISE_ROOT when set (the same code over another copy of
    the data, as `skipwise materialize` sets for its runs), else `found` (from the definitions' folder)."""
    env = os.environ.get("SKIPWISE_ROOT")
    return Path(env).resolve() if env else found


def definitions_of(root: Path) -> str:
    """The module holding the project's `dg.Definitions`, said once: `definitions` under
    [tool.skipwise] in pyproject.toml, or at the top of skipwise.toml, else Dagster's own
    [tool.dagster] module_name."""
    import tomllib

    root = Path(root)
    found: list[tuple[str, Any]] = []
    for name, section in (
        ("pyproject.toml", ("tool", "skipwise")),
        ("skipwise.toml", ()),
        ("pyproject.toml", ("tool", "dagster")),
    ):
        path = root / name
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot parse {name}: {exc}", location=name, hint="fix the TOML syntax") from None
        for part in section:
            data = data.get(part, {}) if isinstance(data, dict) else {}
        value = (
            data.get("module_name" if section == ("tool", "dagster") else "definitions")
            if isinstance(data, dict)
            else None
        )
        if value is not None:
            found.append((name, value))
            break
    if not found:
        raise ConfigError(
            f"{root} does not say where its Dagster definitions are",
            hint='add `[tool.skipwise]\ndefinitions = "my_package.definitions"` to pyproject.toml '
            "(the module that holds `defs = dg.Definitions(...)`)",
        )
    where, value = found[0]
    if not isinstance(value, str) or not value or not all(p.isidentifier() for p in value.split(".")):
        raise ConfigError(
            f"definitions = {value!r} is not a module name",
            location=where,
            hint='write the module, e.g. definitions = "my_package.definitions"',
        )
    return value


def _library_stamp(root: Path) -> str:
    """The library's version and fingerprint scheme, and its files' digest when its source lives
    in the project (then an edit of the resolution code rebuilds the snapshot too)."""
    from skipwise import __version__
    from skipwise.core.manifest import SCHEME_VERSION

    return f"{__version__}/{SCHEME_VERSION}/{_library_digest(root)}"


def resolve_graph(root: Path, definitions: str, refresh: bool = False) -> tuple[Graph, str]:
    """The project's graph: from the snapshot while it is valid (unless `refresh`), else by
    importing the definitions (and then saving a new snapshot). Returns (graph, "" or why the
    snapshot was rebuilt)."""
    from skipwise.project import snapshot

    graph, why = snapshot.load(root, definitions, _library_stamp(root)) if not refresh else (None, "refresh asked")
    if graph is not None:
        return graph, ""
    from skipwise.adapters.dagster.graph import definitions_in, graph_of

    def instance():  # dynamic partitions list their keys from the Dagster instance
        from skipwise.adapters.dagster.run import instance_for_root

        return instance_for_root(root)

    defs = definitions_in(definitions)
    graph, until, cacheable = graph_of(defs, instance_factory=instance)
    files = snapshot.watched_files(root, dict(sys.modules), ["pyproject.toml", "skipwise.toml"])
    from_root = any(rel.endswith(".py") for rel in files)
    # Definitions imported from elsewhere cannot be watched, and a graph resolved from modules
    # whose files changed since they were imported would be saved as the graph of the new files.
    if cacheable and from_root and _imported_as_on_disk(root, files):
        snapshot.save(root, definitions, graph, files, until, _library_stamp(root))
    return graph, why


def _imported_as_on_disk(root: Path, files: Mapping[str, Any]) -> bool:
    """Whether every watched module file holds the bytes its module was imported from."""
    from skipwise.project import recorder as loaded
    from skipwise.core.hashing import sha256_bytes

    start = None
    for rel in files:
        if not rel.endswith(".py"):
            continue
        path = Path(root) / rel
        src = loaded.source_of(path)
        try:
            if src is not None:
                if sha256_bytes(path.read_bytes()) != src.sha256:
                    return False
                continue
            start = start or loaded.process_start()
            if start is None or os.stat(path).st_ctime >= start - 0.1:
                return False  # imported before skipwise could record it, and maybe changed since
        except OSError:
            return False
    return True


def load_project(root: Path | None = None, definitions: str | None = None, refresh: bool = False) -> Project:
    """Load the project at `root` (default: found from the current folder) with the graph of its
    Dagster definitions (default: the module its config names); params.yaml is checked now.
    `refresh` resolves the graph from the definitions even if its snapshot is valid."""
    root = Path(root or find_root()).resolve()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    definitions = definitions or definitions_of(root)
    graph, _ = resolve_graph(root, definitions, refresh)
    project = Project(root, graph, definitions=definitions)
    for asset in graph.assets[:1]:
        project.params_of(asset)  # checks all of params.yaml now, not inside a step
    return project
