"""Materializing a selection in process, for tests (public as `skipwise.testing`).

`materialize` runs what `skipwise materialize` runs (planned first, only stale partitions computed,
every partition recorded in the ledger), in this process, against a project root that a test
names, usually pytest's `tmp_path`: the project's raw data, with DVC's record of it, and its
config are copied there first, so a test starts from an empty feature store and leaves the
project's own `data/` and Dagster instance alone. The result says which partitions were computed
and which were skipped, from the ledger, and reads outputs as `sw.read` does.
"""

from __future__ import annotations

import os
import shutil
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from skipwise.adapters.dagster.graph import asset_name
from skipwise.adapters.dagster.run import Summary, materialize_project
from skipwise.adapters.dvc.manifest import record_files
from skipwise.core.cost import utc_now_iso
from skipwise.core.errors import ConfigError, RunFailed, UsageError
from skipwise.core.partitions import UNPARTITIONED, parse_range
from skipwise.engine.loading import load_project
from skipwise.project.root import find_root
from skipwise.tables.reading import read_from

#: the project's files a copy needs besides its raw data (each copied when the new root lacks it)
CONFIG_FILES = ("pyproject.toml", "skipwise.toml", "params.yaml")


@dataclass(frozen=True)
class MaterializeResult:
    """What `materialize` did: by asset, the partition keys computed (`computed`), found up to
    date (`skipped`) and restored from kept versions (`restored`), each in the order they were
    recorded; an unpartitioned asset's key is "all". `success` is False only with
    `raise_on_error=False`, `error` then says what failed."""

    root: Path
    definitions: str
    success: bool
    computed: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    restored: dict[str, list[str]] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    summary: Summary | None = None

    @property
    def computed_count(self) -> int:
        """Partitions computed, all assets together (0: everything was up to date)."""
        return sum(len(keys) for keys in self.computed.values())

    def read(self, asset: str, partition: str | None = None) -> Any:
        """A committed output of this root, as `sw.read(asset, partition, root=...)` reads it."""
        return read_from(load_project(self.root, self.definitions), asset, partition)


def materialize(
    definitions: Any,
    selection: str | Iterable[Any] | None = None,
    *,
    partition_key: str | None = None,
    partition_range: str | None = None,
    root: str | os.PathLike[str] | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
) -> MaterializeResult:
    """Materialize `selection` of `definitions` in this process, computing only what is stale.

    `definitions`: the project's `dg.Definitions`, the module holding them, or its name.
    `selection`: an asset name, or a list of names or assets (default: every skipwise asset).
    `partition_key` (one key) or `partition_range` ("first...last"): the partitions (default: all).
    `root`: the folder to run against (default: the project's own root). A folder other than the
    project's gets the project's config files and the raw folders of its DVC sources (with DVC's
    record of them) copied in unless it has them already, so a test may write its own raw data
    there first; runs go to a Dagster instance of its own under `<root>/.dagster`.
    A failed run raises `RunFailed` naming the step and its error, unless `raise_on_error=False`.
    """
    if partition_key is not None and partition_range is not None:
        raise UsageError(
            "give partition_key or partition_range, not both", hint="partition_range='first...last' includes both ends"
        )
    partition = partition_key if partition_key is not None else partition_range
    if partition is not None:
        parse_range(partition)
    module = _module_of(definitions)
    home = find_root(Path(sys.modules[module].__file__ or ".").resolve().parent)
    target = Path(root).resolve() if root is not None else home
    env = {}
    if target != home:
        _prepare(home, target, module)
        env["DAGSTER_HOME"] = str(target / ".dagster")
    before = {k: os.environ.get(k) for k in (*env, "DAGSTER_HOME")}
    os.environ.update(env)
    try:
        project = load_project(target, module)
        started = utc_now_iso()
        summary = materialize_project(
            project, _names(selection), partition, dict(tags or {}), workers=1
        )  # workers=1: every step in this process, where a debugger or a breakpoint reaches it
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not summary.ok and raise_on_error:
        raise RunFailed(summary.failure_line())
    verdicts: dict[str, dict[str, list[str]]] = {"miss": {}, "hit": {}, "restore": {}}
    for row in project.ledger.rows_written_since(started):
        if (row.get("ts") or "") >= started and row.get("cache") in verdicts:
            keys = verdicts[row["cache"]].setdefault(row["asset"], [])
            keys.append(row.get("partition") or UNPARTITIONED)
    return MaterializeResult(
        root=target,
        definitions=module,
        success=summary.ok,
        computed=verdicts["miss"],
        skipped=verdicts["hit"],
        restored=verdicts["restore"],
        run_ids=list(summary.run_ids),
        warnings=list(project.warnings),
        error=summary.failure_line(),
        summary=summary,
    )


def _module_of(definitions: Any) -> str:
    """The name of the module holding `definitions` (imported: runs and code versions start from it)."""
    if isinstance(definitions, types.ModuleType):
        return definitions.__name__
    if isinstance(definitions, str):
        __import__(definitions)
        return definitions
    if isinstance(definitions, dg.Definitions):
        for name, module in list(sys.modules.items()):
            if any(v is definitions for v in list(vars(module).values())):
                return name
        raise ConfigError(
            "these dg.Definitions are not held by any imported module",
            hint="pass the module that builds them (or its name), e.g. materialize('my_project.definitions')",
        )
    raise ConfigError(
        f"materialize() takes dg.Definitions, a module or a module name, not {type(definitions).__name__}",
        hint="e.g. materialize(my_project.definitions.defs)",
    )


def _names(selection: str | Iterable[Any] | None) -> list[str] | None:
    if selection is None:
        return None
    items = [selection] if isinstance(selection, (str, dg.AssetsDefinition, dg.AssetKey)) else list(selection)
    names = []
    for item in items:
        if isinstance(item, dg.AssetsDefinition):
            names += [asset_name(k) for k in item.keys]
        elif isinstance(item, dg.AssetKey):
            names.append(asset_name(item))
        else:
            names.append(str(item))
    return names


def _prepare(home: Path, target: Path, module: str) -> None:
    """Give `target` the config files of the project at `home` and the raw folders of its DVC
    sources (with DVC's record of each), leaving alone whatever `target` has already."""
    target.mkdir(parents=True, exist_ok=True)
    for name in CONFIG_FILES:
        if (home / name).is_file() and not (target / name).exists():
            shutil.copy2(home / name, target / name)
    # The graph is read through `target` (config copied first): `home`'s data/ is never written.
    for source in load_project(target, module).graph.sources:
        if not source.path or (target / source.path).exists() or not (home / source.path).is_dir():
            continue
        shutil.copytree(home / source.path, target / source.path, symlinks=False)
        for src, rel in record_files(home, source.path):
            dest = target / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
