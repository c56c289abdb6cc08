"""The incremental engine's project: the root folder, its asset graph, its params and its stores,
and the versions of what partitions read. What to do about each partition is its `planner`
(`skipwise.engine.planner`); what runs the stale ones, its `execution` (`skipwise.engine.execution`).

Knows nothing of Dagster: the Dagster adapter (and the CLI) drive it.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from skipwise.adapters.dvc.config import dvc_cache_dirs
from skipwise.adapters.dvc.manifest import read_yaml
from skipwise.adapters.git import head_commit
from skipwise.core.codeversion import CodeIndex
from skipwise.core.cost import IOCounter
from skipwise.core.errors import ConfigError
from skipwise.core.hashing import digest
from skipwise.core.manifest import Manifest
from skipwise.core.partitions import UNPARTITIONED, keys_of
from skipwise.core.plan import Decision
from skipwise.core.pricing import load_config
from skipwise.core.spec import Asset, Graph, Plain, Source, check_params, plain_params
from skipwise.engine.accounting import Accounts
from skipwise.engine.versions import CodeVersions
from skipwise.engine.observations import Observations
from skipwise.engine.settled import Settled
from skipwise.engine.execution import Execution
from skipwise.engine.inputs import Inputs
from skipwise.engine.outcomes import Outcome
from skipwise.engine.planner import Planner
from skipwise.sources.locality import Locality
from skipwise.store.backends import open_store
from skipwise.store.partitions import LocalPartitionStore
from skipwise.store.paths import ensure_inside
from skipwise.store.statcache import StatCache
from skipwise.store.suspects import Suspects

log = logging.getLogger("skipwise")


def load_params(root: Path) -> dict[str, Any]:
    """params.yaml (the DVC convention): a mapping of asset name -> its params.

    Read as YAML 1.2 reads numbers (``1e-05``, what `dvc exp run -S` writes, is a float) and with
    dates and datetimes turned into ISO strings, so ``2013-11-01`` and ``"2013-11-01"`` are the
    same param. Checked against the graph's declarations by `check_params` (see `params_of`).
    """
    path = Path(root) / "params.yaml"
    if not path.exists():
        return {}
    data = read_yaml(
        path,
        "params.yaml",
        ConfigError,
        hint="fix the YAML syntax (one section per asset, e.g. `my_asset: {threshold: 15}`)",
    )
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of asset name -> params, got {type(data).__name__}",
            location="params.yaml",
            hint="write one section per asset, e.g. `my_asset: {threshold: 15}`",
        )
    return plain_params(data)


class Project:
    """A skipwise project: `root` holds data/, params.yaml, .dvc/ and the code the graph points at."""

    def __init__(
        self, root: Path, graph: Graph, params: Mapping[str, Any] | None = None, definitions: str = ""
    ) -> None:
        self.root = Path(root).resolve()
        self.graph = graph
        self.definitions = definitions  # the module of the project's dg.Definitions (how a process finds the graph)
        self.params = dict(load_params(self.root) if params is None else params)
        self._effective_params: dict[str, dict[str, Any]] | None = None  # checked on first use
        self.data_root = self.root / "data"
        for own in ("ledger", ".skipwise"):  # skipwise writes there: never through a link that leaves data/
            ensure_inside(self.data_root / own, os.path.realpath(self.data_root), f"{Path('data', own)}")
        self.io = IOCounter()
        self.statcache = StatCache(self.data_root / ".skipwise" / "stat.db", base=self.root)
        # Partitions `skipwise verify` found to differ from a fresh computation: planned to run.
        self.suspects = Suspects(self.data_root / ".skipwise" / "suspects.json", warn=self.warn)
        # Raw files may be links into DVC's cache (cache.type symlink/hardlink): reads may go there too.
        local = LocalPartitionStore(
            self.data_root, self.statcache, self.io, read_roots=(self.root, *dvc_cache_dirs(self.root))
        )

        # The code each asset reaches, as it is on disk and as it ran.
        self.code = CodeVersions(
            self.root, CodeIndex(self.root, cache=self.data_root / ".skipwise" / "code.json"), self.warn
        )
        self.config = load_config(self.root / "skipwise.toml")
        self.warnings: list[str] = []
        # data/ on local disk, or an object store ($SKIPWISE_STORE, [store] url): partitions and ledger.
        self.store, self.ledger = open_store(
            self.config, local, self.data_root / ".skipwise" / "objects", warn=self.warn
        )
        # What processes and partitions cost, recorded in the ledger; budgets.
        self.accounts = Accounts(
            self.ledger, self.config, self.io, lambda: self._locality and self._locality.take_outside()
        )
        # Assets a full plan found up to date, and what that depended on (`skipwise.engine.settled`).
        self.settled = Settled(self)
        # What the code reads (files, folders, variables), as keyed digests: re-checked when planning.
        self.observations = Observations(self.root, self.statcache, self.store.digest_key, self._managed_dirs)
        self._raw_versions: dict[tuple[str, str], str] = {}
        self._params_digests: dict[str, str] = {}
        self._manifests: dict[tuple[str, str], Manifest | None] | None = None  # only while planning
        # What the last plan's settled records say each partition's manifest recorded it cost, by
        # asset: (keys, the record's decisions, dollars, indices decided afresh), for `Execution.hits`.
        self.remembered_usd: dict[str, Any] = {}
        # What bodies read: upstream partitions decoded once per run, charged to their partition.
        self.inputs = Inputs(self)
        # What each partition would be computed from now, and what to do about it (`skipwise.engine.planner`).
        self.planner = Planner(self)
        # What runs the stale partitions (`skipwise.engine.execution`).
        self.execution = Execution(self)
        self._locality: Any = None

    @property
    def git_commit(self) -> str | None:
        """The commit checked out at the root when this Project was made (None outside git): kept
        in each computed partition's metadata, so `skipwise gc` keeps what a branch or tag computed."""
        if not hasattr(self, "_git_commit"):
            self._git_commit = head_commit(self.root)
        return self._git_commit

    @property
    def locality(self) -> Any:
        """Where inputs are and reading them from DVC remotes (`skipwise.sources.locality.Locality`)."""
        if self._locality is None:
            self._locality = Locality(self)
        return self._locality

    # -- versions of things ---------------------------------------------------------------------

    def _managed_dirs(self) -> list[Path]:
        """The folders skipwise manages: data/, DVC's caches, the sources' folders (never observed)."""
        return [self.data_root, *dvc_cache_dirs(self.root), *(self.root / s.path for s in self.graph.sources if s.path)]

    def params_digest(self, asset: Asset) -> str:
        if asset.name not in self._params_digests:
            self._params_digests[asset.name] = digest(self.params_of(asset))
        return self._params_digests[asset.name]

    def with_run_config(self, asset: Asset, config: Mapping[str, Any] | None) -> None:
        """Run config given for `asset` in this run (Dagster's launchpad, `--config`): its values
        override params.yaml's and count in the fingerprint like them. Checked like params.yaml."""
        if not config:
            return

        base = self.params_of(asset)
        # Checked against the asset's own declaration, alone: its deps are not in this one-asset
        # graph, and a graph checks that every dep it names is declared.
        merged = check_params(
            Graph((), (replace(asset, deps=()),)),
            {asset.name: {**base, **plain_params(dict(config))}},
            location=f"run config of {asset.name}",
        )
        self._effective_params = {**(self._effective_params or {}), asset.name: merged[asset.name]}
        self._params_digests.pop(asset.name, None)

    def params_of(self, asset: Asset) -> dict[str, Any]:
        """The params `asset` runs with: its declared defaults merged with its params.yaml section.

        The whole of params.yaml is checked against the graph on first use (`load_project` does it
        when the project loads): ConfigError naming the key if anything is wrong.
        """
        if self._effective_params is None:
            self._effective_params = check_params(self.graph, plain_params(self.params), location="params.yaml")
        return dict(self._effective_params.get(asset.name, {}))

    def raw_version(self, source: Source, key: str) -> str:
        """A raw partition's version: its DVC md5 (checked against the workspace), an object-store
        source's ETag (from one listing of its prefix), or "absent" (`skipwise.sources.base`)."""
        cache_key = (source.name, key)
        if cache_key not in self._raw_versions:
            self._raw_versions[cache_key] = self.locality.sources_of(source).version(source, key)
        return self._raw_versions[cache_key]

    def raw_versions(self, source: Source, keys: list[str]) -> list[str]:
        """`raw_version` of each of `keys`, in order (in one pass where the kind of source has one)."""
        known = self._raw_versions
        todo = [k for k in keys if (source.name, k) not in known]
        if todo:
            for k, v in zip(todo, self.locality.sources_of(source).versions(source, todo)):
                known[(source.name, k)] = v
        return [known[(source.name, k)] for k in keys]

    def manifest(self, asset: Asset | Plain, key: str) -> Manifest | None:
        """The committed manifest of a partition; an unreadable one counts as absent (and warns).

        While planning, each manifest is read once; while materializing, always afresh (another
        process may commit at any time).
        """
        if self._manifests is not None and (asset.name, key) in self._manifests:
            return self._manifests[(asset.name, key)]
        try:
            m = self.store.read_manifest(asset.layer, asset.name, key)
        except ValueError as exc:
            self.warn(f"ignoring unreadable manifest: {exc}")
            m = None
        if self._manifests is not None:
            self._manifests[(asset.name, key)] = m
        return m

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning(message)

    def materialized_keys(self, asset: Asset | Plain) -> list[str]:
        """Keys of the partitions of `asset` that have a manifest."""
        return self.in_order(asset, self.store.materialized_keys(asset.layer, asset.name))

    def keys_for(self, asset: Asset, keys: list[str] | None) -> list[str]:
        """The requested keys (validated), or all keys of the asset."""
        if keys is None:
            return keys_of(asset.partitions)
        if asset.partitions is None:
            return [UNPARTITIONED]
        for k in keys:
            asset.partitions.parse(k)
        return list(keys)

    def partitions_between(self, asset: Asset, keys: list[str]) -> list[str]:
        """Every key of `asset` from the first to the last of `keys` (the span a range run covers)."""
        if not keys or asset.partitions is None:
            return list(keys)
        ordered = self.in_order(asset, keys)
        return asset.partitions.key_range(ordered[0], ordered[-1])

    def in_order(self, asset: Asset | Plain, keys: Any) -> list[str]:
        """`keys` of `asset` in its partitioning's order (time order for time windows); keys the
        partitioning no longer holds (folders left from an older one) go last."""
        keys = sorted(keys)
        if asset.partitions is None:
            return keys
        # DailyPartitions keys are ISO dates: their sorted order is their time order.
        position = getattr(asset.partitions, "_index", None)
        if position is None:
            return keys
        return sorted(keys, key=lambda k: position.get(k, len(position)))

    # -- plans ---------------------------------------------------------------------------------

    def plan(
        self, selection: list[str] | None = None, keys: list[str] | None = None, partition: str | None = None
    ) -> list[Decision]:
        """Decisions for the selected assets (all by default), upstream first, reading no data
        (`skipwise.engine.planner.Planner.plan`)."""
        return self.planner.plan(selection, keys, partition)

    def decide(self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None) -> Decision:
        """RUN, SKIP or BLOCKED for one partition, with the reason (`Planner.decide`)."""
        return self.planner.decide(asset, key, pending)

    @contextmanager
    def reading_once(self) -> Iterator[None]:
        """While a plan is made: each manifest and each observed dependency is read once (afresh
        in the next plan; while materializing, always afresh: another process may commit)."""
        self._manifests = {}
        self.observations.memo = {}
        try:
            yield
        finally:
            self._manifests = None
            self.observations.memo = None

    # -- execution ------------------------------------------------------------------------------

    def materialize(
        self,
        asset_name: str,
        keys: list[str] | None = None,
        run_id: str = "",
        tags: Mapping[str, str] | None = None,
        call: Callable[[str, Mapping[str, Mapping[str, Any]], Mapping[str, Any]], Any] | None = None,
    ) -> Iterator[Outcome]:
        """Compute the partitions of `asset_name` whose fingerprint changed; skip the rest; record
        every outcome and this process's run record (see `Execution.materialize`)."""
        return self.execution.materialize(asset_name, keys, run_id, tags, call)
