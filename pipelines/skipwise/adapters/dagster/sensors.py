"""A sensor that requests runs for exactly the stale partitions, from skipwise's own plan.

It is level-triggered: every tick plans from the current state of the data, code and params (no
data read), so a change that lands while a run is in flight is seen by the next tick and is never
lost; Dagster's run keys (derived from the stale partitions' fingerprints) stop the same stale state
from being requested twice. Only the most upstream stale level is requested per tick: its
downstream is planned again once its outputs are known (early cutoff may make that unnecessary).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from skipwise.adapters.dagster.launch import RANGE_END, RANGE_START
from skipwise.adapters.dagster.run import run_groups
from skipwise.core import metakeys as mk
from skipwise.core.hashing import digest
from skipwise.core.plan import CHANGES
from skipwise.engine.loading import load_project
from skipwise.project.root import find_root, run_root
from skipwise.sources.locality import REGION_TAG


def stale_partitions_sensor(
    root: str | Path | None = None,
    minimum_interval_seconds: int = 60,
    name: str = "skipwise_stale_partitions",
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    exclude: list[str] | tuple[str, ...] = (),
) -> dg.SensorDefinition:
    """A sensor over every skipwise asset that requests runs for stale or missing partitions
    (raw DVC data, code, params or config changed). `root`: the project (default: found from the
    definitions' folder, or $SKIPWISE_ROOT). `exclude`: assets it never requests (a model and its
    training set that `retrain_on_feature_change` retrains only when the change is material)."""
    root = definitions_root(root)
    excluded = frozenset(exclude)

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=dg.AssetSelection.all(),
        default_status=default_status,
        description="Requests runs for the partitions skipwise finds stale (raw DVC data, code, params or config changed).",
    )
    def _sensor(context):
        return stale_run_requests(load_project(run_root(root)), excluded) or dg.SkipReason(
            "every partition is up to date"
        )

    return _sensor


def definitions_root(root: str | Path | None, depth: int = 2) -> Path:
    """`root`, or the project holding the module that called the sensor's factory (`depth`
    frames up), or the one found from the working folder / $SKIPWISE_ROOT."""
    import sys

    if root is None:
        caller = sys._getframe(depth).f_globals.get("__file__")
        root = find_root(Path(caller).resolve().parent) if caller else find_root()
    return Path(root)


def stale_run_requests(project, exclude: frozenset[str] = frozenset()) -> list[dg.RunRequest]:
    """Run requests for the most upstream level of the graph that has partitions to run (assets in
    `exclude` left out: they are not planned, so what reads them is planned from their manifests)."""
    selection = [a.name for a in project.graph.assets if a.name not in exclude] if exclude else None
    if selection == []:  # everything excluded (an empty selection would plan every asset)
        return []
    decisions = [d for d in project.plan(selection) if d.action in CHANGES]
    stale: dict[str, list] = {}
    for d in decisions:
        stale.setdefault(d.asset, []).append(d)
    # The first group is the most upstream: nothing in it waits on another stale partition.
    for group in run_groups(project.graph, set(stale))[:1]:
        keys = project.in_order(group[0], {d.partition for a in group for d in stale[a.name]})
        tags = {mk.TRIGGER: "stale-partitions"}
        region = _placement(project, [(a.name, d.partition) for a in group for d in stale[a.name]])
        if region:
            tags[REGION_TAG] = region  # a deployment can route the run to workers where its inputs are
        if group[0].partitions is not None:
            # One single-run backfill over the span: partitions inside it that are up to date are skipped cheaply.
            tags.update({RANGE_START: keys[0], RANGE_END: keys[-1]})
        run_key = digest(sorted((d.asset, d.partition, d.fingerprint, d.reason) for a in group for d in stale[a.name]))
        return [
            dg.RunRequest(run_key=run_key, asset_selection=[dg.AssetKey(a.name.split("__")) for a in group], tags=tags)
        ]
    return []


def _placement(project, runs: list[tuple[str, str]]) -> str:
    """The region holding most of the input bytes of `runs` ("" when no source is on a remote)."""
    if not any(project.locality.on_remote(s) for s in project.graph.sources):
        return ""
    return project.locality.inputs_of(runs).region
