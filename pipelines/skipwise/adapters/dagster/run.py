"""Materialize a whole project through real Dagster runs (what `skipwise materialize` and `dvc repro` call).

Assets are run in dependency order, one Dagster run per level of the graph (assets of a level do not
depend on each other) and partitioning; partitioned groups run as a single-run backfill over the
requested range, so the per-run overhead is paid once, not once per partition. Levels run in
separate runs because Dagster skips a downstream step in the same run when its upstream step
emitted per-partition events instead of an output.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from skipwise.adapters.dagster import plain, services
from skipwise.adapters.dagster.graph import definitions_in
from skipwise.adapters.dagster.instance import instance_for_root
from skipwise.adapters.dagster.iomanager import IOManager
from skipwise.adapters.dagster.forking import Zygote, can_fork
from skipwise.adapters.dagster.launch import launch
from skipwise.adapters.dagster.split import Workers, chunks, launch_split, worker_count
from skipwise.core.partitions import keys_in_range
from skipwise.core.plan import RUN, SKIP, Decision
from skipwise.core.spec import Asset, Plain
from skipwise.engine import progress
from skipwise.engine.materialization import (
    Planned,
    Summary,
    plan_materialization,
    record_hits,
    run_groups,
    write_metrics,
)
from skipwise.engine.processmeter import process_meter
from skipwise.engine.project import Project
from skipwise.project.root import definitions_of


#: Dagster's own setting: a run over a partition range records one "planned" event per asset (with
#: the range) instead of one per partition (about 9 ms each on SQLite). Dagster's trade-off: if the
#: run fails, its partitions are not marked failed; skipwise's plan still shows them as to run.
PLANNED_EVENTS_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def instance_for(project: Project) -> dg.DagsterInstance:
    """The Dagster instance of $DAGSTER_HOME, defaulting to <root>/.dagster (created if needed)."""
    return instance_for_root(project.root)


def materialize_project(
    project: Project,
    selection: list[str] | None,
    partition: str | None,
    tags: dict,
    workers: int | None = None,
    planned: Planned | None = None,
) -> Summary:
    """Run the selected assets (all by default) through Dagster, upstream first, on `project`'s
    data: its root is the runs' $SKIPWISE_ROOT, whatever folder the definitions were imported from.
    A level with many stale partitions runs in `workers` processes at once (default: see
    `skipwise.adapters.dagster.split`). Unless set already, its runs record one planned event per
    asset (`PLANNED_EVENTS_ENV`). `planned`: the plan of the same selection, range and tags, made
    just before (`plan_materialization`); made here when absent."""
    env = {"SKIPWISE_ROOT": str(project.root)}
    if PLANNED_EVENTS_ENV not in os.environ:
        env[PLANNED_EVENTS_ENV] = "true"
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return _materialize_project(project, selection, partition, tags, workers, planned)
    finally:
        progress.finish()
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _materialize_project(
    project: Project,
    selection: list[str] | None,
    partition: str | None,
    tags: dict,
    workers: int | None,
    plan: Planned | None,
) -> Summary:
    """Run the selected assets (all by default) through Dagster, upstream first.

    Each level is planned first (no data read) and a Dagster run is launched only over the span of
    its stale partitions (a Dagster run costs about 0.5 s before any work), so an up-to-date level
    costs no run at all. Partitions left out of the
    run are recorded in the cost ledger as hits, like those the engine skips inside a run.
    """
    graph = project.graph
    plan = plan or plan_materialization(project, selection, partition, tags)
    names, plain_names = set(plan.names), set(plan.plain)
    everything = names | plain_names
    planned = list(plan.decisions)
    # Plain Dagster assets the selection reads that were never stored (unpartitioned ones): run
    # them first, as Dagster would in one run of everything (Dagster itself never skips them).
    needed = {d.name for a in graph.assets if a.name in names for d in a.deps}
    missing = [
        p
        for p in graph.plain
        if p.name in needed
        and p.name not in plain_names
        and p.stored
        and p.partitions is None
        and not project.materialized_keys(p)
    ]
    groups = run_groups(graph, everything)
    early: dict[int, Workers] = {}
    try:
        if not missing and not services.active() and not can_fork():
            # Workers that cannot be forked later start now, so that their interpreter start and
            # imports overlap this process's loading of the definitions.
            for i, group in enumerate(groups):
                if isinstance(group[0], Plain):
                    break  # a level of plain assets runs first: nothing to start early
                keys = keys_in_range(group[0].partitions, partition)
                running, stale, parts = _level_parts(
                    project, group, [d for d in planned if d.asset in {a.name for a in group}], keys, workers
                )
                if stale:
                    if len(parts) > 1:
                        instance_for(project)  # $DAGSTER_HOME, which the workers inherit
                        early[i] = Workers(
                            project,
                            [a.name for a in running],
                            [(c[0], c[-1]) for c in parts],
                            {str(k): str(v) for k, v in tags.items()},
                        )
                    break
        return _run_levels(project, graph, partition, tags, workers, planned, missing, groups, early)
    finally:
        for w in early.values():
            w.kill()


def _level_parts(
    project: Project, group: list[Asset], decisions: list, keys: list[str] | None, workers: int | None
) -> tuple[list[Asset], list[str], list[list[str]]]:
    """A level's assets that have a partition to run, its stale keys in order, and the contiguous
    chunks they run in (one per process; under the services profile, one per Dagster run on the
    Celery workers). An asset of the level with nothing to run is left out of its Dagster run: a
    step of its own would cost Dagster's step events and the engine's decisions again, to record
    hits the plan already holds."""
    to_run = [d for d in decisions if d.action != SKIP]
    running = [a for a in group if any(d.asset == a.name for d in to_run)]
    stale = project.in_order(group[0], {d.partition for d in to_run})
    if not stale or keys is None:
        return running, stale, [stale]
    if services.active():
        return running, stale, chunks(stale, services.chunk_count(len(stale), workers))
    return running, stale, chunks(stale, worker_count(len(stale) * len(running), workers))


def _run_levels(
    project: Project,
    graph: Any,
    partition: str | None,
    tags: dict,
    workers: int | None,
    planned: list,
    missing: list,
    groups: list[list[Asset]],
    early: dict[int, Workers],
) -> Summary:
    """The runs of `_materialize_project`, level by level (`early`: worker processes already
    started for a level, by its index)."""
    pm = process_meter()
    progress.start(sum(d.action == RUN for d in planned), "materialize")  # drawn on a terminal only
    with pm.phase("load"):
        defs = definitions_in(project.definitions or definitions_of(project.root))
        levels = _Levels(project, graph, defs, partition, tags, workers, planned, early)
    if missing and not levels.run_missing(missing):
        return levels.summary
    levels.run(groups)
    summary = levels.summary
    summary.metrics = write_metrics(project)
    if levels.last_id:
        # What this process did after its last record (the Dagster run's end, the metrics): its
        # run records then add up to all it used, bar printing the summary and exiting.
        project.accounts.record_run(levels.last_id, levels.tags)
    # This process exists to run skipwise: let its exit skip the teardown's heap collection (0.3-0.6 s
    # of CPU with Dagster loaded, after any record could measure it).
    pm.at_exit(freeze_gc=True)
    return summary


class _Levels:
    """The levels of one materialization, run one after the other: what their runs share (the
    definitions, the Dagster instance, the zygote) and what they add up to (`summary`)."""

    def __init__(
        self,
        project: Project,
        graph: Any,
        defs: Any,
        partition: str | None,
        tags: dict,
        workers: int | None,
        planned: list,
        early: dict[int, Workers],
    ) -> None:
        self.project, self.graph, self.defs = project, graph, defs
        self.partition, self.workers, self.planned, self.early = partition, workers, planned, early
        self.tags = {str(k): str(v) for k, v in tags.items()}
        self.defs_assets = list(defs.assets or ())
        self.resources = dict(defs.resources or {})
        self.resources.setdefault("skipwise", _io_manager(project))
        self.on_services = services.active()
        self.summary = Summary()
        self.instance: Any = None  # made when the first run is launched
        self.last_id = ""  # the run the orchestrator's own work since its last record belongs to
        # Partitions whose output this invocation changed: plain assets downstream of them run even
        # where Dagster's staleness cannot see it (an unpartitioned asset over a partitioned one).
        self.changed: list[Decision] = []
        # Forked before this process runs any work, when a later level may be split across
        # processes: by then this process can no longer fork that level's workers itself (see `Zygote`).
        self.zygote: Zygote | None = None

    def _instance(self) -> Any:
        if self.instance is None:
            self.instance = instance_for(self.project)
        return self.instance

    def _ok(self, result: Any) -> bool:
        """Whether `result` (a run's, or None: no run) succeeded; a failure goes in the summary."""
        if result is None or result.ok:
            return True
        s = self.summary
        s.ok = False
        s.failed_step, s.error, s.fix = result.failed_step, result.error, result.fix
        return False

    def run_missing(self, missing: list[Plain]) -> bool:
        """Run the plain assets the selection reads that were never stored; whether they succeeded."""
        names = [p.name for p in missing]
        instance = self._instance()
        result = (
            services.launch(self.project, names, None, instance, self.tags)
            if self.on_services
            else launch(self.defs_assets, self.resources, names, None, instance, self.tags)
        )
        self.summary.run_ids.append(result.run_id)
        return self._ok(result)

    def run(self, groups: list[list[Any]]) -> None:
        """Each level in turn, until one fails (the levels after it then listed as not run)."""
        try:
            for i, group in enumerate(groups):
                keys = keys_in_range(group[0].partitions, self.partition)
                if keys == []:
                    continue  # this partitioning has no such keys
                if isinstance(group[0], Plain):
                    ok = self._plain_level(group, keys)
                else:
                    ok = self._asset_level(i, group, keys, groups[i + 1 :])
                if not ok:
                    self.summary.not_run = [a.name for g in groups[i + 1 :] for a in g]
                    break
        finally:
            if self.zygote is not None:
                self.zygote.close()  # before the last record: the kernel counts its workers here from then on

    def _plain_level(self, group: list[Plain], keys: list[str] | None) -> bool:
        """Run a level of plain Dagster assets over the partitions Dagster calls missing or stale
        (as `skipwise plan` says, asked again now that the levels upstream have run)."""
        project, summary = self.project, self.summary
        instance = self._instance()
        decisions = plain.plain_decisions(
            project, self.defs, [p.name for p in group], self.partition, planned=self.changed
        )
        for p in group:
            summary.requested[p.name] = len(keys) if keys is not None else 1
            summary.computed[p.name] = 0
        stale = project.in_order(group[0], {d.partition for d in decisions if d.action == RUN})
        if not stale:
            return True
        summary.launched.extend(p.name for p in group)
        self.changed += [Decision(p.name, k, RUN, "computed in this run", "") for p in group for k in stale]
        results = plain.launch_plain(project, self.defs, self.resources, group, stale, instance, self.tags)
        for r in results:
            summary.run_ids.append(r.run_id)
            for name, c in r.computed.items():
                summary.computed[name] += c
        last = next((r for r in results if not r.ok), results[-1])
        if last.ok and last.run_id:
            self.last_id = last.run_id
        return self._ok(last)

    def _asset_level(self, i: int, group: list[Asset], keys: list[str] | None, later: list[list[Any]]) -> bool:
        """Run the stale partitions of a level of skipwise assets (the level at `i`, `later` the
        levels after it), recording the rest as hits."""
        project, summary = self.project, self.summary
        in_group = {a.name for a in group}
        if self.instance is None:
            # Nothing has run yet: the plan made up front still holds for this level.
            fresh, decisions = project, [d for d in self.planned if d.asset in in_group]
        else:
            with process_meter().phase("plan"):
                fresh = Project(project.root, self.graph, definitions=project.definitions)  # sees what ran
                decisions = fresh.plan([a.name for a in group], keys)
            for w in fresh.warnings:
                project.warn(w)
        running, stale, parts = _level_parts(fresh, group, decisions, keys, self.workers)
        before = _outputs(project, running, stale)
        for a in group:
            summary.requested[a.name] = len(keys) if keys is not None else 1
            summary.computed[a.name] = 0
        # A level with many stale partitions is cut into contiguous chunks, one process each; the
        # partitions between chunks, like those outside every chunk and those of an asset with
        # nothing to run, are recorded here as hits.
        span = set(stale) if keys is None else {k for c in parts for k in fresh.partitions_between(group[0], c)}
        names = [a.name for a in running]
        hits = [d for d in decisions if d.partition not in span or d.asset not in names]
        self.last_id = record_hits(fresh, hits, self.tags) or self.last_id
        if not stale:
            return True
        self._instance()
        if self.zygote is None and not self.on_services and keys is not None and can_fork():
            if _split_later(later, self.planned, self.workers):
                self.zygote = Zygote(fresh, self.defs_assets, self.resources)
        summary.launched.extend(names)
        results = self._launch(i, fresh, names, keys, stale, parts)
        for r in results:
            if r.run_id:
                summary.run_ids.append(r.run_id)
                self.last_id = r.run_id
            for name, c in r.computed.items():
                summary.computed[name] += c
            for name, c in r.restored.items():
                summary.restored[name] = summary.restored.get(name, 0) + c
        progress.reach(sum(summary.computed.values()))  # partitions computed by worker processes
        self.changed += [
            Decision(n, k, RUN, "its output changed in this run", "")
            for (n, k), h in _outputs(project, running, stale).items()
            if h != before.get((n, k))
        ]
        return self._ok(next((r for r in results if not r.ok), None))

    def _launch(
        self, i: int, fresh: Project, names: list[str], keys: list[str] | None, stale: list[str], parts: list[list[str]]
    ) -> list[Any]:
        """The Dagster runs of a level's stale partitions: on the Celery workers, one run, or one
        run per chunk in processes of their own."""
        instance, tags = self.instance, self.tags
        if self.on_services:
            # Every chunk is its own Dagster run, all at once; their steps go to the Celery workers.
            spans = [None] if keys is None else [(c[0], c[-1]) for c in parts]
            return services.launch_split(fresh, names, spans, instance, tags)
        if keys is None:
            return [launch(self.defs_assets, self.resources, names, None, instance, tags)]
        if len(parts) > 1:
            return launch_split(
                fresh,
                self.defs_assets,
                self.resources,
                names,
                [(c[0], c[-1]) for c in parts],
                instance,
                tags,
                workers=self.early.pop(i, None),
                zygote=self.zygote,
            )
        return [launch(self.defs_assets, self.resources, names, (stale[0], stale[-1]), instance, tags)]


def _split_later(groups: list[list[Any]], planned: list, workers: int | None) -> bool:
    """Whether a level of `groups` (those after the level about to run) may be cut across
    processes, as far as the plan made up front says (its partitions planned to run)."""
    for group in groups:
        if isinstance(group[0], Plain):
            continue
        names = {a.name for a in group}
        if worker_count(sum(d.action != SKIP and d.asset in names for d in planned), workers) > 1:
            return True
    return False


def _outputs(project: Project, group: list[Asset], keys: list[str]) -> dict[tuple[str, str], str]:
    """The committed output hash of each of `keys` of the assets of `group` (absent: not committed)."""
    out = {}
    for a in group:
        for k in keys or ():
            m = project.store.read_manifest(a.layer, a.name, k)
            if m is not None:
                out[(a.name, k)] = m.output_hash
    return out


def _io_manager(project: Project):
    return IOManager(root=str(project.root))
