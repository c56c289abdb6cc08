"""Dagster assets around the engine: one step per asset, looping over its partitions inside one run.

Computed partitions get their own materialization event (cache miss, reason, fingerprint, cost,
data version = output hash). In a run over a range, skipped ones get no event: Dagster's bookkeeping
costs about 50 ms per event, which would make a no-op run of 365 partitions cost 18 s; they are
counted in the step's log and in the cost ledger instead (with the dollars they avoided). A run of a
single partition always records its verdict, hit or miss, as the step's result, and so does every
partition of a run launched by a backfill (the UI's, or the daemon's), which would otherwise count
the skipped partitions as failed.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.definitions.utils import NoValueSentinel

from skipwise.adapters.dagster import processes
from skipwise.core import metakeys as mk
from skipwise.core.errors import ConfigError, InputError, SkipwiseError
from skipwise.core.spec import Asset
from skipwise.core.units import format_usd, significant, total_usd
from skipwise.engine import progress
from skipwise.engine.loading import load_project
from skipwise.engine.project import Outcome, Project

BACKFILL_TAG = "dagster/backfill"
FINGERPRINT_SHOWN = 16


class OnePartitionContext:
    """Dagster's context as a body sees it for one partition of a run over many: `partition_key`,
    `partition_keys`, `partition_time_window` and `partition_key_range` are that partition's;
    everything else (log, resources, run, instance) is Dagster's own."""

    def __init__(self, context: Any, key: str, partitions_def: Any) -> None:
        self._context = context
        self._key = key
        self._pdef = partitions_def

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    @property
    def partition_key(self) -> str:
        if isinstance(self._pdef, dg.MultiPartitionsDefinition):
            try:
                return self._pdef.get_partition_key_from_str(self._key)
            except Exception:  # noqa: BLE001 - the plain string still names the partition
                return self._key
        return self._key

    @property
    def partition_keys(self) -> list[str]:
        return [self.partition_key]

    @property
    def has_partition_key(self) -> bool:
        return self._pdef is not None

    @property
    def partition_key_range(self) -> dg.PartitionKeyRange:
        return dg.PartitionKeyRange(self._key, self._key)

    @property
    def partition_time_window(self) -> Any:
        return self._pdef.time_window_for_partition_key(self._key)

    def asset_partition_key_for_output(self, output_name: str = "result") -> str:
        return self.partition_key


def outcome_metadata(outcome: Outcome) -> dict[str, Any]:
    """The metadata of a partition's materialization event: cache verdict, reason, fingerprint
    and cost (numbers stay numbers, plotted by Dagster; long strings are text values, shown whole)."""
    m = outcome.manifest
    md: dict[str, Any] = {
        mk.CACHE: outcome.cache,
        mk.REASON: outcome.decision.reason,
        # A prefix, as git shows a commit: the whole one (in the manifest, and the output's file
        # name) is too wide for the asset page's metadata table, which then clips every value.
        mk.FINGERPRINT: outcome.decision.fingerprint[:FINGERPRINT_SHOWN],
        mk.OUTPUT_BYTES: m.output_size if m else None,
    }
    if outcome.cost is not None:
        md.update(outcome.cost.to_metadata())
    md.update(outcome.metadata)
    return {k: (dg.MetadataValue.text(v) if isinstance(v, str) else v) for k, v in md.items() if v is not None}


def run_metadata(run: Any) -> dict[str, Any]:
    """The step process's own figures from its run record (`run/*`), for a single-partition event:
    what the process used since its previous run record (its start, for a step's own process),
    the part its partitions recorded, and the overhead (the rest) with its dollars; `run/summary`
    says it in one line."""
    if run is None:
        return {}
    c = run.cost
    md = {
        "run/cpu_seconds": c.process_cpu_seconds,
        "run/wall_seconds": c.process_wall_seconds,
        "run/partition_cpu_seconds": c.partition_cpu_seconds,
        "run/overhead_cpu_seconds": c.cpu_seconds,
        "run/overhead_start_cpu_seconds": c.overhead_start_cpu_seconds,
        "run/overhead_usd": c.usd,
        "run/peak_rss_bytes": c.process_peak_rss_bytes,
    }
    out: dict[str, Any] = {
        k: (significant(v, 6) if isinstance(v, float) else v) for k, v in md.items() if v is not None
    }
    tail = run_summary(run)
    if tail:
        out["run/summary"] = dg.MetadataValue.text(tail.removeprefix("; this process: "))
    return out


def step_summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """One observation's metadata for a step over many partitions: how many were computed and
    skipped, the dollars spent and those the hits avoided, so the asset page shows what the cache
    saved without an event per hit (`skipwise/step/*`, apart from the per-partition `cost/*` plots)."""
    computed = [o for o in outcomes if o.computed]
    restored = [o for o in outcomes if o.restored]
    hits = [o for o in outcomes if not o.computed and not o.restored]
    spent = total_usd(o.cost.usd if o.cost is not None else None for o in computed)
    avoided = total_usd(o.cost.usd_avoided if o.cost is not None else None for o in (*hits, *restored))
    keys = [o.decision.partition for o in hits if o.decision.partition is not None]
    span = f" ({keys[0]}...{keys[-1]})" if len(keys) > 1 else (f" ({keys[0]})" if keys else "")
    back = f", {len(restored)} restored from kept versions" if restored else ""
    md = {
        mk.STEP_COMPUTED: len(computed),
        mk.STEP_RESTORED: len(restored),
        mk.STEP_SKIPPED: len(hits),
        mk.STEP_USD_SPENT: significant(spent, 6) if spent is not None else None,
        mk.STEP_USD_AVOIDED: significant(avoided, 6) if avoided is not None else None,
        mk.STEP_SUMMARY: dg.MetadataValue.text(
            f"{len(computed)} computed for {format_usd(spent)}{back}, {len(hits)} skipped{span}: "
            f"{format_usd(avoided)} avoided"
        ),
    }
    return {k: v for k, v in md.items() if v is not None}  # an unknown amount has no figure


def run_summary(run: Any) -> str:
    """The step's log line's tail: the process's CPU since its previous record, and its overhead."""
    if run is None or run.cost.process_cpu_seconds is None:
        return ""
    c = run.cost
    usd = f" ({format_usd(c.usd)})" if c.usd is not None else ""
    return (
        f"; this process: {c.process_cpu_seconds:.2f} s CPU, {c.partition_cpu_seconds or 0:.2f} s in partitions, "
        f"{c.cpu_seconds or 0:.2f} s overhead{usd}, of which {c.overhead_start_cpu_seconds or 0:.2f} s before the engine started"
    )


def _raw_op_config(context: Any) -> dict[str, Any]:
    """The run config given for this asset's op, as written (without Dagster's filled-in defaults):
    only values someone set override params.yaml."""
    ops = (context.run.run_config or {}).get("ops", {}) or {}
    entry = ops.get(context.op_def.name) or {}
    return dict(entry.get("config") or {}) if isinstance(entry, dict) else {}


def _downstream_in_run(context: Any) -> bool:
    """Whether an asset downstream of this one runs later in the same run (it then needs this
    step's output, or Dagster skips it)."""
    try:
        layer = context.job_def.asset_layer
        children = layer.asset_graph.get(context.asset_key).child_keys
        return bool(set(children) & set(layer.selected_asset_keys))
    except Exception:  # noqa: BLE001 - when unsure, give the output (it only costs an event per partition)
        return True


def step_failure(exc: SkipwiseError) -> dg.Failure:
    """A skipwise error as the step's one failure: its description is the `Error:` line and the
    `fix:` line the `skipwise` command prints for it (Dagster's log and UI show it as the failure's
    message); its metadata says the error's kind, message and fix apart. Configuration, keys and
    budgets do not fix themselves, so a retry policy does not retry them; an input may (a remote
    read that failed for a while)."""
    md = {mk.ERROR: type(exc).__name__, mk.ERROR_MESSAGE: dg.MetadataValue.text(exc.render().split("\n  fix:")[0])}
    if exc.hint:
        md[mk.ERROR_FIX] = dg.MetadataValue.text(exc.hint)
    return dg.Failure(description=f"Error: {exc.render()}", metadata=md, allow_retries=isinstance(exc, InputError))


def run_asset(context: Any, root: Path, body: Any, partitions_def: Any) -> Iterator[Any]:
    """The body of every `@sw.asset`: run the engine over the run's partitions of the asset."""
    project = load_project(root)
    name = "__".join(context.asset_key.path)
    keys = list(context.partition_keys) if partitions_def is not None else None
    spec = project.graph.asset(name) if any(a.name == name for a in project.graph.assets) else None
    if spec is None or (keys and spec.partitions is not None and not all(k in spec.partitions for k in keys)):
        # The snapshot predates this asset or these keys (a time window that just gained one): resolve afresh.
        project = load_project(root, refresh=True)
        spec = project.graph.asset(name)
    project.with_run_config(spec, _raw_op_config(context))
    resources = context.resources

    def call(key: str, inputs: Any, params: Any) -> Any:
        ctx = OnePartitionContext(context, key, partitions_def) if partitions_def is not None else context
        return _stored_value(name, key, body.call(ctx, inputs, params, resources))

    yield from run_partitions(context, project, spec, keys, call)


NO_VALUE_HINT = (
    "return the data itself (or dg.MaterializeResult(value=data, metadata={...}) / dg.Output(data, metadata={...})); "
    "an asset that writes its own data is a plain @dg.asset: skipwise stores, versions and skips only what a body returns"
)


def _stored_value(name: str, key: str, value: Any) -> Any:
    """A body's return value as the engine stores it: a `dg.MaterializeResult` with a value is that
    value with its metadata (as `dg.Output`); one without a value has nothing to store or cache."""
    if not isinstance(value, dg.MaterializeResult):
        return value
    if value.value is None or value.value is NoValueSentinel:
        raise ConfigError(
            f"asset {name}[{key}] returned a dg.MaterializeResult without a value: skipwise has nothing to store",
            hint=NO_VALUE_HINT,
        )
    return dg.Output(value.value, metadata=dict(value.metadata or {}))


def run_partitions(
    context: Any, project: Project, asset: Asset, keys: list[str] | None, call: Any = None
) -> Iterator[Any]:
    """Run the engine and turn partitions into Dagster events.

    A run over one partition (or an unpartitioned asset) ends with a `MaterializeResult`, hit or
    miss, so downstream steps of the same run proceed. A run over a range yields one
    `AssetMaterialization` per computed partition and none for skipped ones (see module doc).
    When an asset downstream of this one runs later in the same run (the UI's "Materialize
    all"), the step also gives its output, which Dagster needs to run that step; Dagster then
    records an event per partition, so each partition gets its own event after it, hit or miss,
    and that one (with its own metadata and data version) is the partition's latest.
    """
    single = keys is None or len(keys) == 1
    # A backfill counts a targeted partition without an event as failed (dagster#34219): in a
    # backfill's run, hits get an event too (same data version, so nothing downstream turns stale).
    in_backfill = BACKFILL_TAG in context.run.tags
    give_output = not single and _downstream_in_run(context)
    outcomes: list[Outcome] = []
    for outcome in project.materialize(
        asset.name, keys, run_id=context.run.run_id, tags=dict(context.run.tags), call=call
    ):
        outcomes.append(outcome)
        if outcome.computed:
            progress.advance(1, asset.name)
        m = outcome.manifest
        if single or give_output:
            continue  # yielded once the engine is done
        elif outcome.computed or outcome.restored or (in_backfill and m is not None):
            yield dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=outcome.decision.partition,
                metadata=outcome_metadata(outcome),
                tags={DATA_VERSION_TAG: m.output_hash},
            )
    if multiprocessing.parent_process() is not None:
        # A step worker process (Dagster's multiprocess executor) lives for this step: its exit
        # records what it did after the engine (Dagster's step bookkeeping) and skips the GC teardown.
        project.accounts.finish_at_exit(context.run.run_id, dict(context.run.tags), asset.name)
        # ... and the process that launched it (the run's coordinator) records its own use for this run.
        processes.report_run(context.run.run_id, dict(context.run.tags), project.root)
    run = project.accounts.last_run
    if give_output:
        yield dg.Output(None)
        for outcome in outcomes:
            if outcome.manifest is not None:
                yield dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    partition=outcome.decision.partition,
                    metadata=outcome_metadata(outcome),
                    tags={DATA_VERSION_TAG: outcome.manifest.output_hash},
                )
    if single and outcomes:
        outcome = outcomes[-1]
        m = outcome.manifest
        yield dg.MaterializeResult(
            metadata={**outcome_metadata(outcome), **run_metadata(run)},
            data_version=dg.DataVersion(m.output_hash) if m else None,
        )
    computed, restored = sum(o.computed for o in outcomes), sum(o.restored for o in outcomes)
    if not single and computed + restored < len(outcomes):
        # The hits of a range run have no event of their own (see the module doc): one observation says what they saved.
        yield dg.AssetObservation(asset_key=context.asset_key, metadata=step_summary(outcomes))
    context.log.info(
        f"skipwise: {asset.name}: {computed} partition(s) computed, "
        + (f"{restored} restored from kept versions, " if restored else "")
        + f"{len(outcomes) - computed - restored} skipped (up to date)"
        + run_summary(run)
    )
    for w in project.warnings:
        context.log.warning(w)
