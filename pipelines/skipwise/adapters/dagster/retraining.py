"""Retraining on change: a sensor and a schedule that retrain only when the training data changed,
and a sensor that turns new or changed raw DVC partitions into runs of exactly what reads them.

All three decide from manifests, DVC's own records and row counts: a tick reads no data.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg

from skipwise.adapters.dagster.launch import RANGE_END, RANGE_START
from skipwise.adapters.dagster.sensors import definitions_root
from skipwise.adapters.dvc.manifest import read_tracked_dir
from skipwise.core import metakeys as mk
from skipwise.core.hashing import digest
from skipwise.core.partitions import keys_of, upstream_keys
from skipwise.engine.loading import load_project
from skipwise.models.retraining import training_change
from skipwise.project.root import run_root

#: params.yaml keys of the model's section read by the retraining sensor (with their defaults).
THRESHOLD_PARAM, COOLDOWN_PARAM = "retrain_min_changed_fraction", "retrain_cooldown_minutes"
DEFAULT_THRESHOLD, DEFAULT_COOLDOWN_MINUTES = 0.02, 60.0


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(name.split("__"))


def _project(root: Path):
    return load_project(run_root(root))


def _retrain_keys(model: str, training: list[str] | None) -> list[dg.AssetKey]:
    """What a retraining runs: the training set (when named), then the model; the sensor's or
    schedule's target is the same, so Dagster accepts every request."""
    return [_key(n) for n in [*(training or []), model]]


def retrain_on_feature_change(
    model: str,
    training: list[str] | None = None,
    root: str | Path | None = None,
    minimum_interval_seconds: int = 60,
    name: str | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor that retrains `model` (and rebuilds its training set, `training`: the unpartitioned
    assets it is trained from) when the training data changed materially since the latest version:
    new partitions, or more than `retrain_min_changed_fraction` of the rows (params.yaml, the
    model's section; default 2 %). After a request it waits `retrain_cooldown_minutes` (default
    60) before the next one, so a burst of changes retrains once. Its skip reason says why not."""
    root = definitions_root(root)

    @dg.sensor(
        name=name or f"retrain_{model}_on_feature_change",
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=dg.AssetSelection.assets(*_retrain_keys(model, training)),
        default_status=default_status,
        description=f"Retrains {model} when its training data changed materially (new partitions, or rows above a threshold).",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        return retrain_evaluation(_project(root), model, context.cursor, time.time(), training)

    return _sensor


def retrain_evaluation(
    project, model: str, cursor: str | None, now: float, training: list[str] | None = None
) -> dg.SensorResult:
    """One tick of the retraining sensor: a run request, or a skip reason, and the next cursor."""
    params = project.params_of(project.graph.asset(model))
    threshold = float(params.get(THRESHOLD_PARAM, DEFAULT_THRESHOLD))
    cooldown = float(params.get(COOLDOWN_PARAM, DEFAULT_COOLDOWN_MINUTES)) * 60.0
    change = training_change(project, model)
    state = json.loads(cursor) if cursor else {}
    why = change.describe(threshold)
    if not change.material(threshold):
        return dg.SensorResult(skip_reason=f"not retraining {model}: {why}", cursor=cursor)
    if state.get("state") == change.state:
        return dg.SensorResult(
            skip_reason=f"retraining of {model} for this training data was already requested ({why})", cursor=cursor
        )
    since = now - float(state.get("requested_at", now))
    if "requested_at" in state and since < cooldown:
        return dg.SensorResult(
            skip_reason=f"not retraining {model} yet: cooldown, the last retraining was requested "
            f"{since / 60:.1f} min ago (< {cooldown / 60:g} min); {why}",
            cursor=cursor,
        )
    request = dg.RunRequest(
        run_key=f"retrain-{model}-{change.state[:16]}",
        asset_selection=_retrain_keys(model, training),
        tags={mk.TRIGGER: "retrain-on-feature-change", mk.RETRAIN_REASON: why[:200]},
    )
    return dg.SensorResult(run_requests=[request], cursor=json.dumps({"state": change.state, "requested_at": now}))


def weekly_retrain(
    model: str,
    training: list[str] | None = None,
    root: str | Path | None = None,
    cron_schedule: str = "0 6 * * 1",
    name: str | None = None,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A weekly schedule (Mondays 06:00 by default) that retrains `model` only if its training data
    changed at all since the latest version; otherwise it skips, saying so."""
    root = definitions_root(root)

    @dg.schedule(
        cron_schedule=cron_schedule,
        name=name or f"weekly_retrain_{model}",
        target=dg.AssetSelection.assets(*_retrain_keys(model, training)),
        default_status=default_status,
        description=f"Retrains {model} weekly, only if its training data changed.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        return schedule_evaluation(_project(root), model, training)

    return _schedule


def schedule_evaluation(project, model: str, training: list[str] | None = None) -> dg.RunRequest | dg.SkipReason:
    change = training_change(project, model)
    if not change.any:
        return dg.SkipReason(f"not retraining {model}: nothing changed since version {change.baseline}")
    return dg.RunRequest(
        run_key=f"weekly-{model}-{change.state[:16]}",
        asset_selection=_retrain_keys(model, training),
        tags={mk.TRIGGER: "weekly-retrain", mk.RETRAIN_REASON: change.describe()[:200]},
    )


def new_raw_data(
    root: str | Path | None = None,
    minimum_interval_seconds: int = 30,
    name: str = "skipwise_new_raw_data",
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor that, when DVC records new or changed raw partitions (a `dvc add` of new days),
    requests exactly the partitions of the assets that read them directly (the features, look-back
    windows included); retraining is then the retraining sensor's decision. Its cursor holds the
    DVC md5 of every raw partition; its first tick records them (what changed before it started is
    the stale-partitions sensor's)."""
    root = definitions_root(root)

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=dg.AssetSelection.all(),
        default_status=default_status,
        description="Requests the partitions that read raw DVC partitions added or changed since the last tick.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        return raw_data_evaluation(_project(root), context.cursor)

    return _sensor


def raw_versions(project) -> dict[str, dict[str, str]]:
    """source -> partition key -> the md5 DVC recorded for its file (DVC's records only, no data
    read), or for an object-store source its object's ETag version."""
    out: dict[str, dict[str, str]] = {}
    for node in project.graph.sources:
        if (
            node.url or node.layout is not None or node.paths
        ):  # an object-store prefix, a template: as planning sees them
            versions = {k: project.raw_version(node, k) for k in keys_of(node.partitions)}
            out[node.name] = {k: v for k, v in versions.items() if v != "absent"}
            continue
        tracked = read_tracked_dir(project.root, node.path)
        files = tracked.files
        out[node.name] = {k: files[node.file_for(k)] for k in keys_of(node.partitions) if node.file_for(k) in files}
    return out


def raw_data_evaluation(project, cursor: str | None) -> dg.SensorResult:
    """One tick of the new-raw-data sensor."""
    now = raw_versions(project)
    before = json.loads(cursor)["raw"] if cursor else None
    next_cursor = json.dumps({"raw": now}, sort_keys=True, separators=(",", ":"))
    if before is None:
        n = sum(len(v) for v in now.values())
        return dg.SensorResult(
            skip_reason=f"first tick: recorded the DVC versions of {n} raw partitions", cursor=next_cursor
        )
    changed = {s: {k: v for k, v in sorted(keys.items()) if before.get(s, {}).get(k) != v} for s, keys in now.items()}
    requests = downstream_requests(project, {s: ks for s, ks in changed.items() if ks}, now)
    if not requests:
        return dg.SensorResult(
            skip_reason="no raw partition added or changed in DVC since the last tick", cursor=next_cursor
        )
    return dg.SensorResult(run_requests=requests, cursor=next_cursor)


def downstream_keys(
    project, changed: dict[str, dict[str, str]], present: dict[str, dict[str, str]]
) -> dict[str, list[str]]:
    """asset -> its partitions that read one of the `changed` raw partitions directly, in order;
    a partition whose own raw file DVC does not have (`present`: source -> key -> md5) is left
    out (a look-back window reaching past the last day of data has nothing to compute yet)."""
    out: dict[str, list[str]] = {}
    for asset in project.graph.order():
        if asset.partitions is None:
            continue
        sources = [d.name for d in asset.deps if d.name in present]
        for dep in asset.deps:
            hit = set(changed.get(dep.name, ()))
            if not hit:
                continue
            up = project.graph.node(dep.name)
            keys = [
                k
                for k in keys_of(asset.partitions)
                if hit & set(upstream_keys(dep.mapping, k, up.partitions) or ())
                and all(k in present[s] for s in sources)
            ]
            out[asset.name] = project.in_order(asset, set(out.get(asset.name, [])) | set(keys))
    return {k: v for k, v in out.items() if v}


def downstream_requests(
    project, changed: dict[str, dict[str, str]], present: dict[str, dict[str, str]]
) -> list[dg.RunRequest]:
    """One run request per asset and contiguous span of the partitions that read `changed` (raw
    partition -> its new md5: the run key names the versions, so a second change of the same day
    is a new request, never deduplicated away)."""
    requests = []
    for name, keys in downstream_keys(project, changed, present).items():
        asset = project.graph.asset(name)
        for span in _spans(project.partitions_between(asset, keys), set(keys)):
            tags = {mk.TRIGGER: "new-raw-data"}
            if len(span) > 1:
                tags.update({RANGE_START: span[0], RANGE_END: span[-1]})
            requests.append(
                dg.RunRequest(
                    run_key=f"raw-{name}-{digest([span, changed])[:16]}",
                    asset_selection=[_key(name)],
                    partition_key=span[0] if len(span) == 1 else None,
                    tags=tags,
                )
            )
    return requests


def _spans(ordered: list[str], wanted: set[str]) -> list[list[str]]:
    """Runs of consecutive `ordered` keys that are all in `wanted`."""
    spans: list[list[str]] = []
    current: list[str] = []
    for k in ordered:
        if k in wanted:
            current.append(k)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return spans
