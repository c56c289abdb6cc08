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

from skipwise.core.partitions import AllOf, DailyPartitions, Identity, Mapping, Window
from skipwise.core.spec import Asset, Graph, Source
from skipwise.engine import Outcome, Project, load_project

_PARTITIONS: dict[DailyPartitions, dg.DailyPartitionsDefinition] = {}
BACKFILL_TAG = "dagster/backfill"


def partitions_def(p: DailyPartitions | None) -> dg.DailyPartitionsDefinition | None:
    """The Dagster partitions definition of a skipwise partition set (shared per set)."""
    if p is None:
        return None
    if p not in _PARTITIONS:
        _PARTITIONS[p] = dg.DailyPartitionsDefinition(start_date=p.start.isoformat(), end_date=p.end.isoformat())
    return _PARTITIONS[p]


def partition_mapping(mapping: Mapping, upstream_partitioned: bool, downstream_partitioned: bool) -> Any:
    """The Dagster partition mapping of a skipwise one."""
    if not upstream_partitioned or not downstream_partitioned:
        return None
    if isinstance(mapping, Window):
        return dg.TimeWindowPartitionMapping(start_offset=-mapping.lookback, end_offset=0)
    if isinstance(mapping, AllOf):
        return dg.AllPartitionMapping()
    assert isinstance(mapping, Identity)
    return None


def outcome_metadata(outcome: Outcome) -> dict[str, Any]:
    """The metadata of a partition's materialization event: cache verdict, reason, fingerprint, cost."""
    m = outcome.manifest
    md: dict[str, Any] = {
        "skipwise/cache": "miss" if outcome.computed else "hit",
        "skipwise/reason": outcome.decision.reason,
        "skipwise/fingerprint": outcome.decision.fingerprint,
        "skipwise/output_bytes": m.output_size if m else None,
    }
    if outcome.cost is not None:
        md.update(outcome.cost.to_metadata())
    md.update(outcome.metadata)
    return {k: v for k, v in md.items() if v is not None}


def run_metadata(run: Any) -> dict[str, Any]:
    """The step process's own figures from its run record (`run/*`), for a single-partition event:
    what the process used since its previous run record (its start, for a step's own process),
    the part its partitions recorded, and the overhead (the rest) with its dollars."""
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
    return {k: v for k, v in md.items() if v is not None}


def run_summary(run: Any) -> str:
    """The step's log line's tail: the process's CPU since its previous record, and its overhead."""
    if run is None or run.cost.process_cpu_seconds is None:
        return ""
    c = run.cost
    usd = f" (${c.usd:.3g})" if c.usd is not None else ""
    return (f"; this process: {c.process_cpu_seconds:.2f} s CPU, {c.partition_cpu_seconds or 0:.2f} s in partitions, "
            f"{c.cpu_seconds or 0:.2f} s overhead{usd}, of which {c.overhead_start_cpu_seconds or 0:.2f} s before the engine started")


def build_source(source: Source, root: Path, graph_ref: str) -> dg.AssetsDefinition:
    """An observable source asset whose partition versions are the files' DVC md5s."""

    @dg.observable_source_asset(
        name=source.name,
        partitions_def=partitions_def(source.partitions),
        description=source.description,
        group_name="raw",
        metadata={"skipwise/path": source.path},
    )
    def _observe(context) -> dg.DataVersionsByPartition:
        project = load_project(root, graph_ref)
        keys = list(context.partition_keys) if getattr(context, "has_partition_key", False) else source.partitions.keys()
        versions = {k: project.raw_version(source, k) for k in keys}
        return dg.DataVersionsByPartition({k: v for k, v in versions.items() if v != "absent"})

    return _observe


def build_asset(asset: Asset, graph: Graph, root: Path, graph_ref: str, automation_condition: Any = None) -> dg.AssetsDefinition:
    """A Dagster asset whose body runs the skipwise engine over the requested partitions."""
    pdef = partitions_def(asset.partitions)
    deps = []
    for d in asset.deps:
        up = graph.node(d.name)
        deps.append(dg.AssetDep(d.name, partition_mapping=partition_mapping(d.mapping, up.partitions is not None, pdef is not None)))

    @dg.asset(
        name=asset.name,
        deps=deps,
        partitions_def=pdef,
        backfill_policy=dg.BackfillPolicy.single_run() if pdef else None,
        group_name=asset.layer,
        description=asset.description,
        output_required=False,
        kinds={"polars"} if asset.fmt == "parquet" else {"torch"},
        metadata={"skipwise/fn": asset.fn},
        tags=dict(asset.tags),
        automation_condition=automation_condition,
    )
    def _materialize(context) -> Iterator[dg.AssetMaterialization]:
        project = load_project(root, graph_ref)
        keys = list(context.partition_keys) if pdef else None
        yield from run_partitions(context, project, asset, keys)

    return _materialize


def run_partitions(context: Any, project: Project, asset: Asset, keys: list[str] | None) -> Iterator[Any]:
    """Run the engine and turn partitions into Dagster events.

    A run over one partition (or an unpartitioned asset) ends with a `MaterializeResult`, hit or
    miss, so downstream steps of the same run proceed. A run over a range yields one
    `AssetMaterialization` per computed partition and none for skipped ones (see module doc).
    """
    single = keys is None or len(keys) == 1
    # A backfill counts a targeted partition without an event as failed (dagster#34219): in a
    # backfill's run, hits get an event too (same data version, so nothing downstream turns stale).
    in_backfill = BACKFILL_TAG in context.run.tags
    outcomes: list[Outcome] = []
    for outcome in project.materialize(asset.name, keys, run_id=context.run_id, tags=dict(context.run.tags)):
        outcomes.append(outcome)
        m = outcome.manifest
        if single:
            continue  # yielded once the engine is done, with the step process's own figures
        elif outcome.computed or (in_backfill and m is not None):
            yield dg.AssetMaterialization(
                asset_key=asset.name,
                partition=outcome.decision.partition,
                metadata=outcome_metadata(outcome),
                tags={DATA_VERSION_TAG: m.output_hash},
            )
    if multiprocessing.parent_process() is not None:
        # A step worker process (Dagster's multiprocess executor) lives for this step: its exit
        # records what it did after the engine (Dagster's step bookkeeping) and skips the GC teardown.
        project.finish_at_exit(context.run_id, dict(context.run.tags), asset.name)
    run = project.last_run_record()
    if single and outcomes:
        outcome = outcomes[-1]
        m = outcome.manifest
        yield dg.MaterializeResult(
            metadata={**outcome_metadata(outcome), **run_metadata(run)},
            data_version=dg.DataVersion(m.output_hash) if m else None,
        )
    computed = sum(o.computed for o in outcomes)
    context.log.info(
        f"skipwise: {asset.name}: {computed} partition(s) computed, {len(outcomes) - computed} skipped (up to date)"
        + run_summary(run)
    )
    for w in project.warnings:
        context.log.warning(w)
