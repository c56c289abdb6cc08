"""The resolved graph, kept on disk so `skipwise plan` and `status` answer without importing Dagster.

Resolving a project's `dg.Definitions` means importing the user's code, Dagster and whatever it
pulls in (seconds). The result is plain values (`skipwise.core.spec.Graph`), written here to
`data/.skipwise/graph.json` with what it came from: every project file imported while the
definitions loaded and the folders holding them (a new module file changes its folder), the
config naming the definitions, and the library's version. It is used while all of that is
unchanged (inode, mtime, ctime, size) and its time has not run out (time-window partitions that
end "now" gain keys as time passes); anything else rebuilds it. Dynamic partitions are never
cached: their keys live in the Dagster instance.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from skipwise.core import partitions as P
from skipwise.core import spec as S
from skipwise.store.files import atomic_write

#: Bump when the snapshot's layout or the resolution rules change.
SNAPSHOT_VERSION = 2

_TYPES = {
    cls.__name__: cls
    for cls in (
        P.DailyPartitions,
        P.KeySet,
        P.Identity,
        P.Window,
        P.AllOf,
        P.Offsets,
        P.Table,
        S.Dep,
        S.Source,
        S.Asset,
        S.Plain,
    )
}


def path_of(root: Path) -> Path:
    return Path(root) / "data" / ".skipwise" / "graph.json"


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"$": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.name.startswith("_"):
                continue
            out[f.name] = _encode(getattr(value, f.name))
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict) or hasattr(value, "items"):
        return {"$map": [[k, _encode(v)] for k, v in value.items()]}
    if hasattr(value, "isoformat"):
        return {"$date": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        if "$date" in value:
            from datetime import date

            return date.fromisoformat(value["$date"])
        if "$map" in value:
            return {k: _decode(v) for k, v in value["$map"]}
        cls = _TYPES[value["$"]]
        kwargs = {k: _decode(v) for k, v in value.items() if k != "$"}
        return cls(**kwargs)
    return value


def graph_to_json(graph: S.Graph) -> dict:
    return {"sources": _encode(graph.sources), "assets": _encode(graph.assets), "plain": _encode(graph.plain)}


def graph_from_json(data: dict) -> S.Graph:
    return S.Graph(sources=_decode(data["sources"]), assets=_decode(data["assets"]), plain=_decode(data["plain"]))


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size]


def watched_files(root: Path, modules: dict[str, Any], config_files: list[str]) -> dict[str, list[int] | None]:
    """Stamps of the project files the definitions came from: imported modules under `root`,
    their folders, and the config files."""
    real = os.path.realpath(root) + os.sep
    paths: set[str] = set()
    for mod in list(modules.values()):
        f = getattr(mod, "__file__", None)
        if not f:
            continue
        f = os.path.realpath(f)
        if f.startswith(real):
            paths.add(f)
            paths.add(os.path.dirname(f))
    for c in config_files:
        paths.add(os.path.realpath(os.path.join(root, c)))
    return {os.path.relpath(p, real): _stamp(p) for p in sorted(paths)}


def save(
    root: Path,
    definitions: str,
    graph: S.Graph,
    files: dict[str, list[int] | None],
    valid_until: float | None,
    library: str,
) -> None:
    """Write the snapshot (atomically; a failure to write only costs the next command the import)."""
    data = {
        "version": SNAPSHOT_VERSION,
        "definitions": definitions,
        "library": library,
        "valid_until": valid_until,
        "files": files,
        "graph": graph_to_json(graph),
    }
    try:
        path_of(root).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path_of(root), json.dumps(data, separators=(",", ":")).encode())
    except OSError:
        pass  # a read-only data folder: the next command resolves the graph again, nothing is wrong


def load(root: Path, definitions: str, library: str) -> tuple[S.Graph | None, str]:
    """(the snapshot's graph, "") while it is valid, else (None, why it is not)."""
    path = path_of(root)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, "no snapshot yet"
    except (OSError, ValueError):
        return None, "the snapshot is unreadable"
    if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
        return None, "the snapshot is of another version"
    if data.get("definitions") != definitions or data.get("library") != library:
        return None, "the definitions or the library changed"
    until = data.get("valid_until")
    if until is not None and time.time() >= until:
        return None, "time-window partitions gained keys since"
    real = os.path.realpath(root)
    for rel, stamp in (data.get("files") or {}).items():
        if _stamp(os.path.join(real, rel)) != stamp:
            return None, f"{rel} changed"
    try:
        return graph_from_json(data["graph"]), ""
    except Exception as exc:  # noqa: BLE001 - a damaged snapshot is rebuilt, never trusted
        return None, f"the snapshot is damaged ({type(exc).__name__})"
