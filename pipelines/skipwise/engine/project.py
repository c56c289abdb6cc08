"""The incremental engine: resolve input versions, fingerprint, plan, execute only what changed.

Knows nothing of Dagster: the Dagster adapter (and the CLI) drive it. One `Project` is the root
folder, its asset graph, its params and its storage.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from skipwise import formats
from skipwise.adapters.dvc.config import dvc_cache_dirs
from skipwise.adapters.dvc.manifest import read_yaml
from skipwise.adapters.git import head_commit
from skipwise.core import metakeys as mk
from skipwise.core.budget import check_budgets, project_run_cost
from skipwise.core.codeversion import CodeIndex, CodeVersion
from skipwise.core.cost import (
    BUDGET_OVERRIDE_TAG,
    EGRESS_CLASSES,
    CostVector,
    IOCounter,
    IOSnapshot,
    LedgerRecord,
    utc_now_iso,
)
from skipwise.core.errors import ConfigError, InputError, PartitionKeyError
from skipwise.core.hashing import digest
from skipwise.core.manifest import Manifest, fingerprint
from skipwise.core.partitions import (
    UNPARTITIONED,
    key_folder,
    keys_in_range,
    keys_of,
    parse_range,
    upstream_keys,
    validate_key,
)
from skipwise.core.plan import (
    BLOCKED,
    CHANGES,
    NOT_RESTORABLE,
    RESTORE,
    RUN,
    SKIP,
    Current,
    Decision,
    decide,
    restorable,
)
from skipwise.core.pricing import load_config
from skipwise.core.retention import GIT_COMMIT
from skipwise.core.spec import Asset, Graph, Plain, Result, Source, check_params, plain_params
from skipwise.engine.bodies import REGISTRY, PartitionContext, body_of
from skipwise.engine.computing import computing
from skipwise.engine.metering import Meter, Share, measure, process_meter
from skipwise.engine.observations import Observations
from skipwise.project import observing
from skipwise.project import recorder as loaded
from skipwise.sources.locality import Locality
from skipwise.store.backends import open_store
from skipwise.store.ledger import recent_days
from skipwise.store.partitions import LocalPartitionStore
from skipwise.store.paths import ensure_inside
from skipwise.store.statcache import StatCache
from skipwise.store.suspects import Suspects

log = logging.getLogger("skipwise")


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

    @property
    def restored(self) -> bool:
        """A kept version made current again: the contents changed, nothing was computed."""
        return self.decision.action == RESTORE

    @property
    def cache(self) -> str:
        """The ledger's and the event's verdict: miss (computed), restore or hit."""
        return "miss" if self.computed else "restore" if self.restored else "hit"


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
        self._last_run: LedgerRecord | None = None  # the run record written last in this process
        self.data_root = self.root / "data"
        for own in ("ledger", ".skipwise"):  # skipwise writes there: never through a link that leaves data/
            ensure_inside(self.data_root / own, os.path.realpath(self.data_root), f"{Path('data', own)}")
        self.io = IOCounter()
        # The store's bytes and requests outside any partition (planning's LISTs, commits, leases,
        # ledger writes) go to the run record: (what the counter moved) - (what partitions recorded).
        self._io_taken = self.io.snapshot()
        self._io_in_partitions = self._io_taken
        self.statcache = StatCache(self.data_root / ".skipwise" / "stat.db", base=self.root)
        # Partitions `skipwise verify` found to differ from a fresh computation: planned to run.
        self.suspects = Suspects(self.data_root / ".skipwise" / "suspects.json", warn=self.warn)
        # Raw files may be links into DVC's cache (cache.type symlink/hardlink): reads may go there too.
        local = LocalPartitionStore(
            self.data_root, self.statcache, self.io, read_roots=(self.root, *dvc_cache_dirs(self.root))
        )

        self.code = CodeIndex(self.root, cache=self.data_root / ".skipwise" / "code.json")
        self.config = load_config(self.root / "skipwise.toml")
        self.warnings: list[str] = []
        # data/ on local disk, or an object store ($SKIPWISE_STORE, [store] url): partitions and ledger.
        self.store, self.ledger = open_store(
            self.config, local, self.data_root / ".skipwise" / "objects", warn=self.warn
        )
        # What the code reads (files, folders, variables), as keyed digests: re-checked when planning.
        self.observations = Observations(self.root, self.statcache, self.store.digest_key, self._managed_dirs)
        self._raw_versions: dict[tuple[str, str], str] = {}
        self._code_versions: dict[str, CodeVersion] = {}
        self._ran: dict[tuple[str, str, int], str] = {}  # (asset, planned version, imports seen) -> version that ran
        self._params_digests: dict[str, str] = {}
        self._manifests: dict[tuple[str, str], Manifest | None] | None = None  # only while planning
        # Decoded inputs by (name, key, content version): a 7-day window reads each day once, not 8 times.
        # (input, key, version) -> [decoded value, what reading it cost, charged to a partition yet]
        self._decoded: dict[tuple[str, str, str | None], list[Any]] = {}
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

    def code_version(self, asset: Asset) -> str:
        return self.code_of(asset).digest

    def code_of(self, asset: Asset) -> CodeVersion:
        """The code version of `asset` as its source files are on disk now (what would run)."""
        if asset.name not in self._code_versions:
            self._code_versions[asset.name] = self.code.version(asset.fn)
        return self._code_versions[asset.name]

    def code_that_ran(self, asset: Asset, planned: str) -> str:
        """The code version of what this process executed for `asset`, given the `planned` one.

        Modules imported since skipwise was are versioned by the exact bytes they were compiled
        from (`skipwise.project.recorder`); a file that changed after its module was imported therefore
        yields the version of the old code, never the new one. A module imported before skipwise
        could record it is trusted only if its file has not changed since this process started.
        """
        cv = self.code_of(asset)
        memo = (asset.name, planned, loaded.generation())
        if memo in self._ran:
            return self._ran[memo]
        changed: list[str] = []
        start: float | None = None
        for rel, sha in cv.files:
            path = self.root / rel
            src = loaded.source_of(path)
            if src is not None:
                if src.sha256 != sha:
                    changed.append(rel)
                continue
            if not loaded.is_imported(path):
                continue  # never imported, so it did not run
            start = start or loaded.process_start()
            try:
                ctime = os.stat(path).st_ctime
            except OSError:
                ctime = None
            if start is None or ctime is None or ctime >= start - 0.1:  # start is known to ~10 ms
                raise InputError(
                    f"{rel} was imported before skipwise and may have changed since, so the code that computed "
                    f"{asset.name} is unknown: nothing was committed",
                    hint="import skipwise (or your Dagster code location) before your own modules, then run again",
                )
        ran = planned
        if changed:
            ran = CodeIndex(self.root, read_source=loaded.read_as_imported).version(asset.fn).digest
        if ran != planned:
            self.warn(
                f"{', '.join(changed) or 'its code'} changed after {asset.name}'s code was imported: the partitions "
                "computed now ran the old code and are recorded under its version, so they show as stale; "
                "run again to compute them with the new code"
            )
        self._ran[memo] = ran
        return ran

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
        return self.in_order(asset, self.store.materialized_keys(asset.layer, asset.name))

    # -- provenance and plans ---------------------------------------------------------------------

    def current(
        self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None, manifest: Manifest | None = None
    ) -> Current:
        """What partition `key` of `asset` would be computed from right now (no data read).

        An input partition in `pending` (planned to run first) has no version yet: None. The files
        and variables `manifest` (the committed one) records as read, and those the asset declares,
        count as they are now: a change there changes the fingerprint.
        """
        inputs: dict[str, dict[str, str | None]] = {}
        for dep in asset.deps:
            up = self.graph.node(dep.name)
            keys = upstream_keys(dep.mapping, key, up.partitions)
            if keys is None:  # all of them: every materialized one (assets) or every key (sources)
                keys = self.materialized_keys(up) if not isinstance(up, Source) else keys_of(up.partitions)
                if isinstance(up, Asset) and pending:
                    keys = sorted(set(keys) | {k for (n, k) in pending if n == up.name})
            versions: dict[str, str | None] = {}
            for k in keys:
                if isinstance(up, Source):
                    versions[k] = self.raw_version(up, k)
                elif isinstance(up, Plain) and not up.stored:
                    versions[k] = self._unversioned(up)
                elif pending and (up.name, k) in pending:
                    versions[k] = None
                else:
                    m = self.manifest(up, k)
                    versions[k] = f"sha256:{m.output_hash}" if m else None
            inputs[dep.name] = versions
        code = self.code_version(asset)
        params = self.params_digest(asset)
        deps = [*self.observations.declared(asset), *(manifest.observed if manifest is not None else ())]
        observed = self.observations.now(deps)
        complete = all(v is not None for vs in inputs.values() for v in vs.values())
        fp = fingerprint(code, params, inputs, key, observed=observed) if complete else ""
        return Current(code, params, inputs, fp, observed)

    def _unversioned(self, up: Plain) -> str:
        """A plain asset stored by another IO manager has no version skipwise can check: a token
        new in every process, so its dependents always run (recompute when unsure), with a warning."""
        token = self.__dict__.setdefault("_unversioned_token", f"unversioned:{os.getpid()}:{utc_now_iso()}")
        self.warn(
            f"{up.name} is a plain Dagster asset not stored by sw.IOManager: skipwise cannot tell whether it "
            'changed, so its dependents always run (give it io_manager_key="skipwise" to version it by content)'
        )
        return token

    def decide(self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None) -> Decision:
        """RUN, SKIP or BLOCKED for one partition, with the reason."""
        return self._decide(asset, key, pending)[0]

    def _decide(self, asset: Asset, key: str, pending: set[tuple[str, str]] | None = None) -> tuple[Decision, Current]:
        # The provenance is returned too: a partition that runs is committed with exactly what was decided on.
        validate_key(key)
        m = self.manifest(asset, key)
        cur = self.current(asset, key, pending, m)
        if pending and any(v is None and (d, k) in pending for d, vs in cur.inputs.items() for k, v in vs.items()):
            first = next(
                f"{d}[{k}]"
                for d, vs in sorted(cur.inputs.items())
                for k, v in sorted(vs.items())
                if v is None and (d, k) in pending
            )
            return Decision(asset.name, key, RUN, f"input {first} runs first (may cut off early)", ""), cur
        state = self.store.output_state(asset.layer, asset.name, key, m) if m else "missing"
        decision = decide(asset.name, key, cur, m, state)
        kept = None
        if decision.action == RUN and decision.fingerprint:
            kept = self.store.read_version(asset.layer, asset.name, key, decision.fingerprint)
            if kept is not None:
                decision = restorable(decision, kept, self.store.output_state(asset.layer, asset.name, key, kept))
        # An output `skipwise verify` could not reproduce is neither kept (SKIP) nor brought back (RESTORE).
        return self.suspects.vet(decision, kept if decision.action == RESTORE else m), cur

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

    def in_order(self, asset: Asset, keys: Any) -> list[str]:
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

    def plan(
        self, selection: list[str] | None = None, keys: list[str] | None = None, partition: str | None = None
    ) -> list[Decision]:
        """Decisions for the selected assets (all by default), upstream first, reading no data.

        `keys` (for every partitioned asset) or `partition` (a key or first...last, applied to
        each partitioned asset whose partitioning holds it; the others are left out) narrow it;
        a `partition` that no selected asset holds is a PartitionKeyError.

        A partition downstream of one that will run is planned to run too ("may cut off early"):
        whether its input really changes is known only once the upstream has run.
        """
        names = set(selection) if selection else {a.name for a in self.graph.assets}
        for n in names:
            self.graph.asset(n)
        if partition is not None:
            first, last = parse_range(partition)
            held = [
                a
                for a in self.graph.assets
                if a.name in names and (a.partitions is None or keys_in_range(a.partitions, partition))
            ]
            if not any(a.partitions is not None for a in held) and any(
                a.partitions is not None for a in self.graph.assets if a.name in names
            ):
                example = next(a for a in self.graph.assets if a.name in names and a.partitions is not None)
                example.partitions.parse(first)
                example.partitions.parse(last)
                raise PartitionKeyError(f"no selected asset has partitions {first}...{last}", hint="check the range")
            names = {a.name for a in held}
        pending: set[tuple[str, str]] = set()
        out: list[Decision] = []
        self._manifests = {}
        self.observations.memo = {}  # each dependency is checked once per plan, afresh in the next
        try:
            for asset in self.graph.order():
                if asset.name not in names:
                    continue
                wanted = keys_in_range(asset.partitions, partition) if partition is not None else keys
                for key in self.keys_for(asset, wanted if asset.partitions is not None else None):
                    d = self.decide(asset, key, pending)
                    if d.action in CHANGES:
                        pending.add((asset.name, key))
                    out.append(d)
        finally:
            self._manifests = None
            self.observations.memo = None
        return out

    # -- execution ------------------------------------------------------------------------------

    def materialize(
        self,
        asset_name: str,
        keys: list[str] | None = None,
        run_id: str = "",
        tags: Mapping[str, str] | None = None,
        call: Callable[[str, Mapping[str, Mapping[str, Any]], Mapping[str, Any]], Any] | None = None,
    ) -> Iterator[Outcome]:
        """Compute the partitions of `asset_name` whose fingerprint changed; skip the rest.

        Before any work, the cost of the partitions to run is projected from the asset's history
        and checked against the budgets (BudgetExceeded stops the run). Each partition is decided
        again under its lock (a concurrent process may have just done it), written atomically under
        its fingerprint, and committed by writing its manifest last. Every outcome, hit or miss,
        goes to the cost ledger, and the call ends with this process's run record: what the
        process used since its previous one outside the partitions just recorded (its overhead).

        `call(key, inputs, params)` computes one partition from its inputs (upstream name ->
        key -> decoded value); the Dagster adapter passes one that hands the body Dagster's
        context. Without it, the registered body is called with a plain `PartitionContext`.
        """
        pm = process_meter()  # this process's account: its run record closes every call
        asset = self.graph.asset(asset_name)
        tags = {**asset.tags, **(tags or {})}
        with pm.phase("plan"):
            keys = self.keys_for(asset, keys)
            to_run = [k for k in keys if self.decide(asset, k).action == RUN]
            self.check_budget(asset, to_run, tags, run_id=run_id)
            self.locality.check_egress([(asset.name, k) for k in to_run], tags)
        fn = None
        hits: list[Outcome] = []
        with self.ledger.journal(run_id) as journal:
            try:
                for key in keys:
                    if self.store.remote:
                        # A hit needs no lease: the listing shows the manifest with this
                        # fingerprint and its output as committed (no request per partition).
                        with pm.phase("plan"):
                            decision, cur = self._decide(asset, key)
                            outcome = self.hit(asset, key, decision) if decision.action == SKIP else None
                        if outcome is not None:
                            hits.append(outcome)
                            yield outcome
                            continue
                    with self.store.lock(asset.layer, asset.name, key):
                        with pm.phase("plan"):
                            decision, cur = self._decide(asset, key)
                        if decision.action == SKIP:
                            with pm.phase("plan"):
                                outcome = self.hit(asset, key, decision)
                            hits.append(outcome)
                        elif decision.action == RESTORE:
                            with pm.phase("ledger"):
                                outcome = self._restore(asset, key, decision)
                                journal.write(self._records([*hits, outcome], run_id, tags))
                                hits = []
                                self.store.commit(asset.layer, asset.name, outcome.manifest, keep=False)
                        elif decision.action == BLOCKED:
                            raise InputError(
                                f"{asset.name}[{key}] cannot run: {decision.reason}",
                                hint="materialize its upstream assets first (or select them in the same run)",
                            )
                        else:
                            if fn is None:
                                with pm.phase("load"):
                                    fn = call or _default_call(asset, self.definitions)
                            outcome = self._compute(asset, key, decision, cur, fn, run_id)
                            with pm.phase("ledger"):
                                # The record goes first: a run killed after the commit keeps its cost.
                                journal.write(self._records([*hits, outcome], run_id, tags))
                                pm.add_partition(outcome.cost)
                                self._io_in_partitions += _io_of(outcome.cost)
                                hits = []
                                self.store.commit(asset.layer, asset.name, outcome.manifest)
                    yield outcome
            finally:
                with pm.phase("ledger"):
                    records = self._records(hits, run_id, tags)
                    try:  # accounting must never cost the hits their records, nor hide an error
                        self._last_run = self._run_record(asset.name, run_id, tags)
                        records.append(self._last_run)
                    except Exception as exc:  # noqa: BLE001
                        self.warn(f"no run record for {asset.name}: {type(exc).__name__}: {exc}")
                    journal.write(records)

    def check_budget(self, asset: Asset, to_run: list[str], tags: Mapping[str, str], run_id: str = "") -> None:
        """Stop before any work if the projected cost of `to_run` (keys of `asset`) breaks a budget."""
        self.check_budgets({asset.name: len(to_run)}, tags, run_id)

    def projection(self, to_run: Mapping[str, int]) -> Any:
        """What running `to_run` (asset -> partitions) is projected to cost, from each asset's history."""
        return project_run_cost(
            {a: self.ledger.history_usd_per_partition(a) for a, n in to_run.items() if n},
            {a: n for a, n in to_run.items() if n},
            self.config.default_partition_usd_estimate,
        )

    def check_budgets(self, to_run: Mapping[str, int], tags: Mapping[str, str], run_id: str = "") -> None:
        """Stop before any work if running `to_run` (asset -> partitions) breaks a budget in skipwise.toml.

        With `run_id`, what that run already spent (its ledger records: earlier steps of the same
        Dagster run) counts towards the per-run and per-asset budgets, so a run of many steps is
        held to `per_run_usd` as a whole, not step by step.
        """
        b = self.config.budgets
        if not any(to_run.values()) or (
            b.per_run_usd is None and b.per_day_usd is None and not set(to_run) & set(b.assets)
        ):
            return

        spent = self.ledger.spent_usd(utc_now_iso()[:10])
        by_asset: dict[str, float] = {}
        if run_id:  # a run's records are in the day folders since it started
            by_asset = self.ledger.spent_by_asset(str(run_id), since=recent_days(7))
        override = str(tags.get(BUDGET_OVERRIDE_TAG, "")).lower() == "true"
        decision = check_budgets(
            self.projection(to_run),
            b,
            spent,
            override,
            spent_this_run_usd=sum(by_asset.values()),
            spent_this_run_by_asset=by_asset,
        )
        decision.raise_if_over(self.config.source)

    def record(self, outcomes: list[Outcome], run_id: str, tags: Mapping[str, str]) -> None:
        """Append one immutable ledger file with a record per outcome, and this process's run record
        (what it used since its previous one: planning these outcomes, and whatever came before)."""
        if outcomes:
            with process_meter().phase("ledger"):
                computed = [o for o in outcomes if o.computed]
                records = self._records(outcomes, run_id, tags)
                for o in computed:
                    process_meter().add_partition(o.cost)
                self._last_run = self._run_record("", run_id, tags)
                self.ledger.append([*records, self._last_run])

    def record_run(self, run_id: str, tags: Mapping[str, str], asset: str = "") -> LedgerRecord:
        """Append this process's run record alone: what it used since its previous one (an
        orchestrator calls it when it is done, so the work after its last step is counted too)."""
        with process_meter().phase("ledger"):
            self._last_run = self._run_record(asset, run_id, tags)
            self.ledger.append([self._last_run])
        return self._last_run

    def finish_at_exit(self, run_id: str, tags: Mapping[str, str], asset: str = "", *, freeze_gc: bool = True) -> None:
        """When this process exits, write its run record for the stretch since its previous one
        (what it did after its last step: the orchestrator's bookkeeping), then freeze the GC so the
        interpreter's teardown does not spend CPU no record can show (`ProcessMeter.at_exit`).

        For processes that exist to run skipwise (a Dagster step worker): anything a longer-lived
        process did after its last step would be recorded as its overhead.
        """

        def write() -> None:
            if self.ledger.exists() and process_meter().cpu_since_take() >= 0.001:
                self.record_run(run_id, tags, asset)

        process_meter().at_exit(write, freeze_gc=freeze_gc)

    def last_run_record(self) -> LedgerRecord | None:
        """The run record this project wrote last in this process (None before any)."""
        return self._last_run

    def _run_record(self, asset: str, run_id: str, tags: Mapping[str, str]) -> LedgerRecord:
        """This process's run record since its previous one (`ProcessMeter.take`), priced like a
        partition: CPU, wall and memory outside its metered partitions."""
        return LedgerRecord(
            ts=utc_now_iso(),
            run_id=run_id,
            asset=asset,
            partition=None,
            cache="run",
            reason="process overhead: CPU, wall and memory outside its metered partitions",
            fingerprint="",
            tags={str(k): str(v) for k, v in tags.items() if not str(k).startswith("dagster/")},
            cost=self.config.price(
                _plus(
                    _plus(process_meter().take(), self._take_io_outside()),
                    self._locality and self._locality.take_outside(),
                )
            ),
        )

    def _take_io_outside(self) -> CostVector | None:
        """The store's I/O since the previous run record that no partition's record holds (None if none).
        The write of the record itself is the one request it cannot hold: the next record counts it."""
        now = self.io.snapshot()
        outside = now - self._io_taken - self._io_in_partitions
        self._io_taken, self._io_in_partitions = now, now - now
        if not (outside.requests or outside.bytes_read or outside.bytes_written):
            return None
        return CostVector.from_io(
            outside, "io outside partitions: planning's listings, commits, leases and ledger writes"
        )

    def _records(self, outcomes: list[Outcome], run_id: str, tags: Mapping[str, str]) -> list[LedgerRecord]:
        return [
            LedgerRecord(
                ts=utc_now_iso(),
                run_id=run_id,
                asset=o.decision.asset,
                partition=o.decision.partition,
                cache=o.cache,
                reason=o.decision.reason,
                fingerprint=o.decision.fingerprint,
                tags={str(k): str(v) for k, v in tags.items() if not str(k).startswith("dagster/")},
                cost=o.cost or CostVector(),
            )
            for o in outcomes
        ]

    def hit(self, asset: Asset, key: str, decision: Decision) -> Outcome:
        """The outcome of a skipped partition, with the dollars it avoided."""
        # A hit avoided what the same fingerprint last cost: the manifest recorded it.
        m = self.manifest(asset, key)
        usd = (m.cost or {}).get("usd") if m else None
        cost = CostVector(usd_avoided=usd, method="hit: usd_avoided from the manifest's recorded cost")
        return Outcome(decision, m, cost)

    def _restore(self, asset: Asset, key: str, decision: Decision) -> Outcome:
        """Make the kept version with the decision's fingerprint current again (the caller commits
        it, holding the partition's lock): no data is copied, and the dollars the version cost
        when it was computed are what this avoided."""
        kept = self.store.read_version(asset.layer, asset.name, key, decision.fingerprint)
        if kept is None:  # removed between the decision and now: `gc` ran meanwhile
            raise InputError(
                f"{asset.name}[{key}]: the kept version {decision.fingerprint[:12]} vanished while restoring",
                hint="run again (it will be computed)",
            )
        usd = (kept.cost or {}).get("usd")
        cost = CostVector(usd_avoided=usd, method="restore: usd_avoided from the kept version's recorded cost")
        return Outcome(decision, kept, cost, dict(kept.metadata))

    def _compute(self, asset: Asset, key: str, decision: Decision, cur: Current, fn: Callable, run_id: str) -> Outcome:

        self.store.sweep_temp(asset.layer, asset.name, key)  # leftovers of a killed run, if any
        params = self.params_of(asset)  # read once per run: not the first partition's cost
        # Inputs are read before the meter starts, each measured alone, and charged by
        # `_load_input`'s rule; polars' threads keep spinning a moment after a decode, and that
        # tail then falls in the next read's measurement, not in this partition's body.
        reads: list[Share] = []
        inputs = {
            dep.name: self._load_input(asset, dep.name, cur.inputs[dep.name], key, reads)
            for dep in asset.deps
            if dep.data
        }
        with Meter(self.io) as m:
            for share in reads:
                m.charge(share)
            with computing(self, asset, key, cur) as now, observing.recording() as seen:
                value = fn(key, inputs, params)  # library helpers the body calls see what it runs from (`now`)
            with measure(None) as check, process_meter().phase("plan"):
                ran = self.code_that_ran(asset, cur.code_version)  # after the call: lazy imports have happened
                observed = self.observations.of(asset, seen, [self.root / rel for rel, _ in self.code_of(asset).files])
            m.charge(Share(-check[0].cpu_seconds, -check[0].wall_seconds, IOSnapshot()))  # overhead, not the body's
            fp = fingerprint(ran, cur.params_digest, cur.inputs, key, observed=observed)
            if ran != cur.code_version:
                decision = replace(decision, reason=f"{decision.reason} (ran code imported before it changed)")
            if fp != cur.fingerprint:  # the code that ran, and what it read, name the output
                cur = replace(cur, code_version=ran, fingerprint=fp, observed=observed)
                decision = replace(decision, fingerprint=fp)
            metadata: Mapping[str, Any] = {}
            if isinstance(value, Result) or _is_output(value):
                value, metadata = value.value, {k: getattr(v, "value", v) for k, v in (value.metadata or {}).items()}
            fmt, data = _serialize(asset, value)
            rows = _row_count(value)
            metadata = {
                **({"dagster/row_count": rows} if rows is not None else {}),
                **metadata,
                mk.FORMAT: fmt.name,
            }
            if now.outside:
                metadata[NOT_RESTORABLE] = "depends on " + "; ".join(now.outside)
            if self.git_commit:
                metadata[GIT_COMMIT] = self.git_commit
            name, sha, size = self.store.write_output(asset.layer, asset.name, key, cur.fingerprint, fmt.ext, data)
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
            observed=dict(cur.observed),
            run_id=run_id,
            created_at=utc_now_iso(),
            reason=decision.reason,
            metadata=_jsonable(metadata),
            cost=cost.to_record(),
        )
        return Outcome(decision, manifest, cost, metadata)  # the caller records, then commits

    def _load_input(
        self,
        asset: Asset,
        dep_name: str,
        versions: Mapping[str, str | None],
        key: str | None = None,
        charge: list[Any] | None = None,
    ) -> dict[str, Any]:
        """The decoded upstream partitions `asset` reads from `dep_name` for its partition `key`:
        input key -> value, in order. Polars frames of one input must share a schema (schema
        drift names the odd file).

        Each input partition is decoded once per run and charged once (its measured read goes
        to `charge`, the partition's list) to the partition it belongs to: its home, the
        partition of `asset` with the same key. A look-back day read for another partition is
        charged to its home when the home reads it, so a partition costs the same alone and
        inside a range; read for a partition whose home is not in the run, it stays the
        process's overhead (phase ``reads``). An input key that `asset` has no partition of (a
        daily source of a monthly or unpartitioned asset) is charged to the partition that reads
        it first: its only reader in the usual shapes.
        """
        up = self.graph.node(dep_name)
        values: list[Any] = []
        own_key = next(reversed(versions)) if versions else None  # windows end on the partition's own key
        for k, v in versions.items():
            if isinstance(up, Source) and v == "absent":
                if k == own_key:
                    what, fix = up.missing(k)
                    raise InputError(f"{up.name}[{k}] has {what}", hint=fix)
                continue  # a look-back day before the data starts
            entry = self._decoded.get((up.name, k, v))
            has_home = charge is not None and asset.partitions is not None and k in asset.partitions
            if entry is None:
                with measure(self.io) as share:
                    value = self._read_input(asset, up, k, v)
                entry = self._decoded[(up.name, k, v)] = [value, share[0], not has_home or k == key]
                if entry[2] and charge is not None:
                    charge.append(share[0])
                elif not entry[2]:  # a look-back day: its home pays for it
                    process_meter().add_reads(share[0].cpu_seconds)
                while len(self._decoded) > 64:  # a window's worth of days, a few inputs wide
                    self._decoded.pop(next(iter(self._decoded)))
            elif has_home and k == key and not entry[2]:  # read earlier for another partition: ours
                charge.append(entry[1])
                process_meter().add_reads(-entry[1].cpu_seconds)
                entry[2] = True
            values.append((k, entry[0]))
        if not all(type(f).__module__.startswith("polars") and type(f).__name__ == "DataFrame" for _, f in values):
            return dict(values)
        # The usual schema is the one seen most often in every frame this project decoded for `up`
        # (a run over many partitions knows it), not the partition's own day, which may be the odd one.
        seen = self.__dict__.setdefault("_schemas_seen", {}).setdefault(up.name, {})
        for k, frame in values:
            seen[k] = tuple(frame.columns)
        if len({tuple(f.columns) for _, f in values}) > 1:
            from collections import Counter

            fix = (
                f"fix or re-ingest the odd file, then `dvc add {up.path}` again"
                if isinstance(up, Source)
                else "fix the odd partition's code or data and materialize it again"
            )
            ranked = Counter(seen.values()).most_common()
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:  # a tie: the files alone cannot tell
                firsts: dict[tuple, str] = {}
                for k, f in values:
                    firsts.setdefault(tuple(f.columns), k)
                (a, ka), (b, kb) = list(firsts.items())[:2]
                fa, fb = self._describe(up, ka), self._describe(up, kb)
                if set(a) == set(b):
                    diff = f"the same columns in another order: {fa} has {list(a)}, {fb} has {list(b)}"
                else:
                    diff = f"columns only in {fa}: {sorted(set(a) - set(b))}; only in {fb}: {sorted(set(b) - set(a))}"
                raise InputError(
                    f"schema drift in {up.name}: {fa} and {fb} differ and no other file tells which is usual: {diff}",
                    hint=f"check both files; {fix}",
                )
            usual, count = ranked[0]
            odd = [k for k, f in values if tuple(f.columns) != usual]
            k = odd[0]
            cols = seen[k]
            missing, extra = sorted(set(usual) - set(cols)), sorted(set(cols) - set(usual))
            drift = (
                f"missing columns {missing}, unexpected {extra}"
                if missing or extra
                else f"columns in another order: {list(cols)}"
            )
            example = next((kk for kk, f in values if tuple(f.columns) == usual), None) or next(
                kk for kk, c in seen.items() if c == usual
            )
            also = (
                f"; also odd: {', '.join(self._describe(up, o) for o in odd[1:4])}{' ...' if len(odd) > 4 else ''}"
                if len(odd) > 1
                else ""
            )
            raise InputError(
                f"schema drift in {self._describe(up, k)}: {drift} (the usual schema of {up.name}, seen in {count} of "
                f"{len(seen)} partitions read, e.g. {self._describe(up, example)}){also}",
                hint=fix,
            )
        return dict(values)

    def _read_input(self, asset: Asset, up: Asset | Source | Plain, key: str, version: str | None) -> Any:
        """Read (and decode) one input partition; versions are content hashes, so the result is cacheable."""
        if isinstance(up, Source):
            data = self.locality.read_source(up, key, version)  # the workspace, the input cache or the DVC remote
            fmt = formats.get("polars")
        else:
            m = self.manifest(up, key)
            if m is None or f"sha256:{m.output_hash}" != version:
                if isinstance(up, Plain) and not up.stored:
                    raise InputError(
                        f"{asset.name} reads {up.name}, a plain asset not stored by sw.IOManager",
                        hint=f'give {up.name} io_manager_key="skipwise", or list it in deps= instead of a parameter',
                    )
                raise InputError(f"{up.name}[{key}] changed while {asset.name} was reading it", hint="run again")
            data = self.store.read_output(up.layer, up.name, key, m)
            fmt = formats.get(str(m.metadata.get(mk.FORMAT) or _FORMAT_OF_EXT.get(Path(m.output).suffix, "bytes")))
        try:
            return fmt.decode(data)
        except Exception as exc:  # the libraries raise several types for a damaged file
            fix = (
                f"delete {up.name}[{key}]'s folder and materialize it again"
                if not isinstance(up, Source)
                else f"upload a readable file to {up.shown(key)}"
                if up.url
                else f"restore it with `dvc checkout {up.path}`"
            )
            raise InputError(
                f"{self._describe(up, key)} is not readable {fmt.ext if fmt.ext in ('parquet', 'json') else fmt.name} ({type(exc).__name__}: {exc})",
                hint=fix,
            ) from None

    def _describe(self, up: Asset | Source, key: str) -> str:
        if isinstance(up, Source):
            return up.shown(key)

        return f"{up.name}[{key}] ({Path('data', up.layer, up.name, key_folder(key))})"

    def count_partition_work(self, cost: CostVector | None) -> None:
        """Count `cost`, a partition's work recorded outside `materialize` (`skipwise verify`'s
        recomputations), as partition work: the next run record leaves it out of the overhead."""
        process_meter().add_partition(cost)
        self._io_in_partitions += _io_of(cost)


def _plus(cost: CostVector, extra: CostVector | None) -> CostVector:
    return cost if extra is None else cost + extra


def _io_of(cost: CostVector | None) -> Any:
    """The store I/O a partition's cost vector recorded, as an IOSnapshot."""
    if cost is None:
        return IOSnapshot()
    return IOSnapshot(
        bytes_read=cost.bytes_read or 0,
        bytes_written=cost.bytes_written or 0,
        get_requests=cost.get_requests or 0,
        put_requests=cost.put_requests or 0,
        list_requests=cost.list_requests or 0,
        **{f"egress_{c}_bytes": getattr(cost, f"egress_{c}_bytes") or 0 for c in EGRESS_CLASSES},
    )


_FORMAT_OF_EXT = {".parquet": "polars", ".json": "json", ".bin": "bytes", ".pt": "torch"}


def _serialize(asset: Asset, value: Any) -> tuple[Any, bytes]:
    """(format, bytes) of a body's return value: the declared format, else the value's own."""
    fmt = formats.get(asset.fmt) if asset.fmt else formats.for_value(value)
    try:
        return fmt, fmt.encode(value)
    except TypeError as exc:
        raise TypeError(
            f"{asset.fn} returned {type(value).__name__}, which cannot be stored as {fmt.name}: {exc}"
        ) from None


def _is_output(value: Any) -> bool:
    """A `dg.Output` (or anything shaped like one: a value with metadata), without importing dagster."""
    return type(value).__name__ == "Output" and hasattr(value, "value") and hasattr(value, "metadata")


def _row_count(value: Any) -> int | None:
    mod = type(value).__module__.split(".")[0]
    if mod == "polars" and type(value).__name__ == "DataFrame":
        return value.height
    if mod in ("pandas", "pyarrow") and hasattr(value, "shape"):
        return int(value.shape[0])
    return None


def _default_call(
    asset: Asset, definitions: str = ""
) -> Callable[[str, Mapping[str, Mapping[str, Any]], Mapping[str, Any]], Any]:
    """Call the registered body of `asset` outside Dagster, with a plain `PartitionContext`
    (importing the project's definitions first if the graph came from the snapshot)."""
    if asset.fn not in REGISTRY:
        for module in (definitions, asset.fn.partition(":")[0]):
            if module:
                importlib.import_module(module)
    body = body_of(asset.fn)
    return lambda key, inputs, params: body.call(PartitionContext(asset.name, key), inputs, params)


def _jsonable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in metadata.items()}
