"""The incremental engine: resolve input versions, fingerprint, plan, execute only what changed.

Knows nothing of Dagster: the Dagster adapter (and the CLI) drive it. One `Project` is the root
folder, its asset graph, its params and its storage.
"""

from __future__ import annotations

import importlib
import io as _io
import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from pipelines.adapters.dvc.manifest import TrackedDir, file_version, read_tracked_dir
from pipelines.core.codeversion import CodeIndex
from pipelines.core.cost import BUDGET_OVERRIDE_TAG, CostVector, IOCounter, LedgerRecord, utc_now_iso
from pipelines.core.errors import ConfigError, InputError
from pipelines.core.hashing import digest
from pipelines.core.manifest import Manifest, fingerprint
from pipelines.core.partitions import UNPARTITIONED, AllOf, keys_of, upstream_keys, validate_key
from pipelines.core.plan import BLOCKED, RUN, SKIP, Current, Decision, decide
from pipelines.core.spec import Asset, Graph, Result, Source
from pipelines.core.pricing import load_config
from pipelines.store.ledger import Ledger
from pipelines.store.partitions import PartitionStore
from pipelines.store.statcache import StatCache

log = logging.getLogger("skipwise")


@dataclass(frozen=True)
class PartitionContext:
    """What an asset function gets besides its inputs."""

    asset: str
    partition_key: str
    params: Mapping[str, Any]
    log: Any = log

    @property
    def day(self) -> date:
        """The partition's date (daily assets)."""
        return date.fromisoformat(self.partition_key)


@dataclass(frozen=True)
class Outcome:
    """What happened to one partition: skipped, or computed with its manifest and cost."""

    decision: Decision
    manifest: Manifest | None = None
    cost: CostVector | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def computed(self) -> bool:
        return self.decision.action == RUN


def load_params(root: Path) -> dict[str, Any]:
    """params.yaml (the DVC convention): a mapping of asset name -> its params."""
    path = Path(root) / "params.yaml"
    if not path.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"params.yaml is not valid YAML: {exc}", location=str(path), hint="fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise ConfigError("params.yaml must be a mapping of asset name -> params", location=str(path))
    return data


class Project:
    """A skipwise project: `root` holds data/, params.yaml, .dvc/ and the code the graph points at."""

    def __init__(self, root: Path, graph: Graph, params: Mapping[str, Any] | None = None, graph_ref: str = "assets.graph:GRAPH") -> None:
        self.root = Path(root).resolve()
        self.graph = graph
        self.graph_ref = graph_ref  # how a worker process (a Dagster step) finds the same graph
        self.params = dict(load_params(self.root) if params is None else params)
        self.data_root = self.root / "data"
        self.io = IOCounter()
        self.statcache = StatCache(self.data_root / ".skipwise" / "stat.db")
        self.store = PartitionStore(self.data_root, self.statcache, self.io)
        self.code = CodeIndex(self.root, cache=self.data_root / ".skipwise" / "code.json")
        self.config = load_config(self.root / "skipwise.toml")
        self.ledger = Ledger(self.data_root / "ledger")
        self.warnings: list[str] = []
        self._tracked: dict[str, TrackedDir] = {}
        self._raw_versions: dict[tuple[str, str], str] = {}
        self._code_versions: dict[str, str] = {}
        self._params_digests: dict[str, str] = {}
        self._manifests: dict[tuple[str, str], Manifest | None] | None = None  # only while planning
        # Decoded inputs by (name, key, content version): a 7-day window reads each day once, not 8 times.
        self._decoded: dict[tuple[str, str, str | None], Any] = {}

    # -- versions of things ---------------------------------------------------------------------

    def code_version(self, asset: Asset) -> str:
        if asset.name not in self._code_versions:
            self._code_versions[asset.name] = self.code.version(asset.fn).digest
        return self._code_versions[asset.name]

    def params_digest(self, asset: Asset) -> str:
        if asset.name not in self._params_digests:
            self._params_digests[asset.name] = digest(self.params_of(asset))
        return self._params_digests[asset.name]

    def params_of(self, asset: Asset) -> dict[str, Any]:
        value = self.params.get(asset.name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"params for {asset.name} must be a mapping", location=str(self.root / "params.yaml"))
        return value

    def raw_version(self, source: Source, key: str) -> str:
        """A raw partition's version: its DVC md5 (checked against the workspace), or "absent"."""
        cache_key = (source.name, key)
        if cache_key not in self._raw_versions:
            tracked = self._tracked.get(source.name)
            if tracked is None:
                tracked = self._tracked[source.name] = read_tracked_dir(self.root, source.path)
            fv = file_version(self.root, tracked, source.file_for(validate_key(key)), self.statcache)
            if fv.warning:
                self.warn(fv.warning)
            self._raw_versions[cache_key] = fv.version
        return self._raw_versions[cache_key]

    def manifest(self, asset: Asset, key: str) -> Manifest | None:
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

    def materialized_keys(self, asset: Asset) -> list[str]:
        """Keys of the partitions of `asset` that have a manifest."""
        base = self.data_root / asset.layer / asset.name
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "manifest.json").is_file())

    # -- provenance and plans ---------------------------------------------------------------------

    def current(self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None) -> Current:
        """What partition `key` of `asset` would be computed from right now (no data read).

        An input partition in `pending` (planned to run first) has no version yet: None.
        """
        inputs: dict[str, dict[str, str | None]] = {}
        for dep in asset.deps:
            up = self.graph.node(dep.name)
            keys = upstream_keys(dep.mapping, key, up.partitions)
            if keys is None:  # all of them: every materialized one (assets) or every key (sources)
                keys = self.materialized_keys(up) if isinstance(up, Asset) else keys_of(up.partitions)
                if isinstance(up, Asset) and pending:
                    keys = sorted(set(keys) | {k for (n, k) in pending if n == up.name})
            versions: dict[str, str | None] = {}
            for k in keys:
                if isinstance(up, Source):
                    versions[k] = self.raw_version(up, k)
                elif pending and (up.name, k) in pending:
                    versions[k] = None
                else:
                    m = self.manifest(up, k)
                    versions[k] = f"sha256:{m.output_hash}" if m else None
            inputs[dep.name] = versions
        code = self.code_version(asset)
        params = self.params_digest(asset)
        fp = fingerprint(code, params, inputs) if all(v is not None for vs in inputs.values() for v in vs.values()) else ""
        return Current(code, params, inputs, fp)

    def decide(self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None) -> Decision:
        """RUN, SKIP or BLOCKED for one partition, with the reason."""
        return self._decide(asset, key, pending)[0]

    def _decide(self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None) -> tuple[Decision, Current]:
        # The provenance is returned too: a partition that runs is committed with exactly what was decided on.
        validate_key(key)
        cur = self.current(asset, key, pending)
        if pending and any(v is None and (d, k) in pending for d, vs in cur.inputs.items() for k, v in vs.items()):
            first = next(f"{d}[{k}]" for d, vs in sorted(cur.inputs.items()) for k, v in sorted(vs.items()) if v is None and (d, k) in pending)
            return Decision(asset.name, key, RUN, f"input {first} runs first (may cut off early)", ""), cur
        m = self.manifest(asset, key)
        state = self.store.output_state(asset.layer, asset.name, key, m) if m else "missing"
        return decide(asset.name, key, cur, m, state), cur

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
        return asset.partitions.key_range(min(keys), max(keys))

    def plan(self, selection: list[str] | None = None, keys: list[str] | None = None) -> list[Decision]:
        """Decisions for the selected assets (all by default), upstream first, reading no data.

        A partition downstream of one that will run is planned to run too ("may cut off early"):
        whether its input really changes is known only once the upstream has run.
        """
        names = set(selection) if selection else {a.name for a in self.graph.assets}
        for n in names:
            self.graph.asset(n)
        pending: set[tuple[str, str]] = set()
        out: list[Decision] = []
        self._manifests = {}
        try:
            for asset in self.graph.order():
                if asset.name not in names:
                    continue
                for key in self.keys_for(asset, keys if asset.partitions is not None else None):
                    d = self.decide(asset, key, pending)
                    if d.action == RUN:
                        pending.add((asset.name, key))
                    out.append(d)
        finally:
            self._manifests = None
        return out

    # -- execution ------------------------------------------------------------------------------

    def materialize(
        self,
        asset_name: str,
        keys: list[str] | None = None,
        run_id: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> Iterator[Outcome]:
        """Compute the partitions of `asset_name` whose fingerprint changed; skip the rest.

        Before any work, the cost of the partitions to run is projected from the asset's history
        and checked against the budgets (BudgetExceeded stops the run). Each partition is decided
        again under its lock (a concurrent process may have just done it), written atomically under
        its fingerprint, and committed by writing its manifest last. Every outcome, hit or miss,
        goes to the cost ledger.
        """
        asset = self.graph.asset(asset_name)
        tags = {**asset.tags, **(tags or {})}
        keys = self.keys_for(asset, keys)
        self.check_budget(asset, [k for k in keys if self.decide(asset, k).action == RUN], tags)
        fn = None
        outcomes: list[Outcome] = []
        try:
            for key in keys:
                with self.store.lock(asset.layer, asset.name, key):
                    decision, cur = self._decide(asset, key)
                    if decision.action == SKIP:
                        outcome = self.hit(asset, key, decision)
                    elif decision.action == BLOCKED:
                        raise InputError(
                            f"{asset.name}[{key}] cannot run: {decision.reason}",
                            hint="materialize its upstream assets first (or select them in the same run)",
                        )
                    else:
                        fn = fn or _load_function(asset.fn)
                        outcome = self._compute(asset, key, decision, cur, fn, run_id)
                outcomes.append(outcome)
                yield outcome
        finally:
            self.record(outcomes, run_id, tags)

    def check_budget(self, asset: Asset, to_run: list[str], tags: Mapping[str, str]) -> None:
        """Stop before any work if the projected cost of `to_run` breaks a budget in skipwise.toml."""
        b = self.config.budgets
        if not to_run or (b.per_run_usd is None and b.per_day_usd is None and asset.name not in b.assets):
            return
        from pipelines.core.budget import project_run_cost, check_budgets

        projection = project_run_cost(
            {asset.name: self.ledger.history_usd_per_partition(asset.name)},
            {asset.name: len(to_run)},
            self.config.default_partition_usd_estimate,
        )
        spent = self.ledger.spent_usd(utc_now_iso()[:10])
        override = str(tags.get(BUDGET_OVERRIDE_TAG, "")).lower() == "true"
        check_budgets(projection, b, spent, override).raise_if_over(self.config.source)

    def record(self, outcomes: list[Outcome], run_id: str, tags: Mapping[str, str]) -> None:
        """Append one immutable ledger file with a record per outcome."""
        if not outcomes:
            return
        self.ledger.append(
            LedgerRecord(
                ts=utc_now_iso(),
                run_id=run_id,
                asset=o.decision.asset,
                partition=o.decision.partition,
                cache="miss" if o.computed else "hit",
                reason=o.decision.reason,
                fingerprint=o.decision.fingerprint,
                tags={str(k): str(v) for k, v in tags.items() if not str(k).startswith("dagster/")},
                cost=o.cost or CostVector(),
            )
            for o in outcomes
        )

    def hit(self, asset: Asset, key: str, decision: Decision) -> Outcome:
        """The outcome of a skipped partition, with the dollars it avoided."""
        # A hit avoided what the same fingerprint last cost: the manifest recorded it.
        m = self.manifest(asset, key)
        usd = (m.cost or {}).get("usd") if m else None
        cost = CostVector(usd_avoided=usd, method="hit: usd_avoided from the manifest's recorded cost")
        return Outcome(decision, m, cost)

    def _compute(self, asset: Asset, key: str, decision: Decision, cur: Current, fn: Callable, run_id: str) -> Outcome:
        from pipelines.metering import Meter

        self.store.sweep_temp(asset.layer, asset.name, key)  # leftovers of a killed run, if any
        with Meter(self.io) as m:
            inputs = {dep.name: self._load_input(asset, dep.name, cur.inputs[dep.name], dep.mapping) for dep in asset.deps}
            ctx = PartitionContext(asset.name, key, self.params_of(asset))
            value = fn(ctx, **inputs)
            metadata: Mapping[str, Any] = {}
            if isinstance(value, Result):
                value, metadata = value.value, value.metadata
            data = _serialize(asset, value)
            if hasattr(value, "height"):
                metadata = {"dagster/row_count": value.height, **metadata}
            name, sha, size = self.store.write_output(asset.layer, asset.name, key, cur.fingerprint, asset.ext, data)
        cost = self.config.price(m.result())
        rows = metadata.get("dagster/row_count")
        if asset.cost_unit and rows and cost.usd is not None:
            metadata = {**metadata, f"cost/usd_per_1k_{asset.cost_unit}": cost.usd / rows * 1000}
        manifest = Manifest(
            asset=asset.name,
            partition=key,
            fingerprint=cur.fingerprint,
            code_version=cur.code_version,
            params_digest=cur.params_digest,
            inputs=cur.inputs,
            output=name,
            output_hash=sha,
            output_size=size,
            run_id=run_id,
            created_at=utc_now_iso(),
            reason=decision.reason,
            metadata=_jsonable(metadata),
            cost=cost.to_record(),
        )
        self.store.commit(asset.layer, asset.name, manifest)
        return Outcome(decision, manifest, cost, metadata)

    def _load_input(self, asset: Asset, dep_name: str, versions: Mapping[str, str | None], mapping: Any) -> Any:
        up = self.graph.node(dep_name)
        fmt = up.fmt if isinstance(up, Asset) else "parquet"
        values: list[Any] = []
        own_key = next(reversed(versions)) if versions else None  # windows end on the partition's own key
        for k, v in versions.items():
            if isinstance(up, Source) and v == "absent":
                if k == own_key:
                    raise InputError(
                        f"{up.name}[{k}] has no file: {Path(up.path, up.file_for(k))}",
                        hint=f"add the file and run `dvc add {up.path}`, or pick a partition that has data",
                    )
                continue  # a look-back day before the data starts
            cached = self._decoded.get((up.name, k, v))
            if cached is None:
                cached = self._read_input(asset, up, k, v, fmt)
                self._decoded[(up.name, k, v)] = cached
                while len(self._decoded) > 64:  # a window's worth of days, a few inputs wide
                    self._decoded.pop(next(iter(self._decoded)))
            values.append((k, cached))
        if fmt == "bytes":
            blobs = [v for _, v in values]
            return blobs[0] if len(blobs) == 1 and not isinstance(mapping, AllOf) else blobs
        import polars as pl

        if not values:
            return pl.DataFrame()
        expected = values[-1][1].columns  # the partition's own day defines the schema
        for k, frame in values:
            if frame.columns != expected:
                missing, extra = sorted(set(expected) - set(frame.columns)), sorted(set(frame.columns) - set(expected))
                raise InputError(
                    f"schema drift in {self._describe(up, k)}: missing columns {missing}, unexpected {extra} "
                    f"(compared with {up.name}[{values[-1][0]}])",
                    hint="fix or re-ingest that file, then `dvc add` it again",
                )
        try:
            return pl.concat([f for _, f in values], how="vertical_relaxed")
        except Exception as exc:  # column types that cannot be reconciled
            raise InputError(f"{up.name}: input partitions {[k for k, _ in values]} do not share a schema: {exc}",
                             hint="fix or re-ingest the odd file, then `dvc add` it again") from None

    def _read_input(self, asset: Asset, up: Asset | Source, key: str, version: str | None, fmt: str) -> Any:
        """Read (and decode) one input partition; versions are content hashes, so the result is cacheable."""
        if isinstance(up, Source):
            data = self.store.read_file(self.root / up.path / up.file_for(key))
        else:
            m = self.manifest(up, key)
            if m is None or f"sha256:{m.output_hash}" != version:
                raise InputError(f"{up.name}[{key}] changed while {asset.name} was reading it", hint="run again")
            data = self.store.read_output(up.layer, up.name, key, m)
        if fmt == "bytes":
            return data
        import polars as pl

        try:
            return pl.read_parquet(_io.BytesIO(data))
        except Exception as exc:  # polars raises several types for a damaged file
            fix = f"restore it with `dvc checkout {up.path}`" if isinstance(up, Source) else f"delete {up.name}[{key}]'s folder and materialize it again"
            raise InputError(f"{self._describe(up, key)} is not readable parquet ({type(exc).__name__}: {exc})", hint=fix) from None

    def _describe(self, up: Asset | Source, key: str) -> str:
        if isinstance(up, Source):
            return str(Path(up.path, up.file_for(key)))
        return f"{up.name}[{key}] ({Path('data', up.layer, up.name, key)})"


def _serialize(asset: Asset, value: Any) -> bytes:
    if asset.fmt == "bytes":
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{asset.fn} must return bytes (fmt='bytes'), got {type(value).__name__}")
        return bytes(value)
    import polars as pl

    if not isinstance(value, pl.DataFrame):
        raise TypeError(f"{asset.fn} must return a polars DataFrame (fmt='parquet'), got {type(value).__name__}")
    buf = _io.BytesIO()
    # Fixed writer settings: the same frame must give the same bytes, or early cutoff never fires.
    value.write_parquet(buf, compression="zstd", statistics=False)
    return buf.getvalue()


def _jsonable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in metadata.items()}


def _load_function(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def find_root(start: Path | None = None) -> Path:
    """The project root: $SKIPWISE_ROOT, else the nearest folder upward holding params.yaml or dvc.yaml."""
    env = os.environ.get("SKIPWISE_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "params.yaml").exists() or (d / "dvc.yaml").exists():
            return d
    return here


def load_project(root: Path | None = None, graph_ref: str = "assets.graph:GRAPH") -> Project:
    """Load the project at `root` with the graph named by `graph_ref` (importable from root)."""
    root = Path(root or find_root()).resolve()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module, _, name = graph_ref.partition(":")
    graph = getattr(importlib.import_module(module), name)
    return Project(root, graph, graph_ref=graph_ref)
