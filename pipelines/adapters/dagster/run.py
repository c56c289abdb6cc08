"""Materialize a whole project through real Dagster runs (what `skipwise materialize` and `dvc repro` call).

Assets are run in dependency order, one Dagster run per level of the graph (assets of a level do not
depend on each other) and partitioning; partitioned groups run as a single-run backfill over the
requested range, so the per-run overhead is paid once, not once per partition. Levels run in
separate runs because Dagster skips a downstream step in the same run when its upstream step
emitted per-partition events instead of an output.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from pipelines.adapters.dagster.factory import build_asset, build_source
from pipelines.core.spec import Asset
from pipelines.core.plan import SKIP
from pipelines.engine import Project

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@dataclass
class Summary:
    """What a materialization did, per asset: partitions requested and computed."""

    requested: dict[str, int] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    ok: bool = True

    def render(self, seconds: float) -> str:
        lines = ["skipwise materialize:"]
        for name, n in self.requested.items():
            c = self.computed.get(name, 0)
            lines.append(f"  {name:20} {c:4} computed, {n - c:4} skipped")
        total, done = sum(self.requested.values()), sum(self.computed.values())
        lines.append(f"  {done} of {total} partitions computed ({total - done} up to date) in {seconds:.1f} s"
                     + ("; nothing to do" if done == 0 else ""))
        if self.metrics:
            lines.append("  delay_model: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.metrics.items()))
        return "\n".join(lines)


def instance_for(project: Project) -> dg.DagsterInstance:
    """The Dagster instance of $DAGSTER_HOME, defaulting to <root>/.dagster (created if needed)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(project.root / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


def materialize_project(project: Project, selection: list[str] | None, partition: str | None, tags: dict) -> Summary:
    """Run the selected assets (all by default) through Dagster, upstream first.

    Each level is planned first (no data read) and a Dagster run is launched only over the span of
    its stale partitions: Dagster records a "planned" event for every partition a run targets
    (about 28 ms each here), so an up-to-date level costs no run at all. Partitions left out of the
    run are recorded in the cost ledger as hits, like those the engine skips inside a run.
    """
    graph = project.graph
    names = set(selection) if selection else {a.name for a in graph.assets}
    for n in names:
        graph.asset(n)
    defs_sources = [build_source(s, project.root, project.graph_ref) for s in graph.sources]
    defs_assets = {a.name: build_asset(a, graph, project.root, project.graph_ref) for a in graph.assets}
    summary = Summary()
    instance = None
    for group in run_groups(graph, names):
        run_tags = {str(k): str(v) for k, v in tags.items()}
        keys = None
        if group[0].partitions is not None:
            all_keys = group[0].partitions.keys()
            first, _, last = (partition or f"{all_keys[0]}...{all_keys[-1]}").partition("...")
            keys = group[0].partitions.key_range(first, last or first)
        fresh = Project(project.root, graph, graph_ref=project.graph_ref)  # sees what the previous level committed
        decisions = fresh.plan([a.name for a in group], keys)
        stale = sorted({d.partition for d in decisions if d.action != SKIP})
        for a in group:
            summary.requested[a.name] = len(keys) if keys is not None else 1
            summary.computed[a.name] = 0
        span = set(stale if keys is None else fresh.partitions_between(group[0], stale))
        skipped = [d for d in decisions if d.partition not in span]
        if skipped:
            fresh.record([fresh.hit(graph.asset(d.asset), d.partition, d) for d in skipped], f"skipwise-{uuid.uuid4()}", run_tags)
        if not stale:
            continue
        if keys is not None:
            run_tags.update({RANGE_START: stale[0], RANGE_END: stale[-1]})
        instance = instance or instance_for(project)
        result = dg.materialize(
            [*defs_sources, *defs_assets.values()],
            selection=[a.name for a in group],
            instance=instance,
            tags=run_tags,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
        summary.run_ids.append(result.run_id)
        summary.ok = summary.ok and result.success
        for a in group:
            summary.computed[a.name] = sum(
                1
                for e in result.get_asset_materialization_events()
                if e.asset_key == dg.AssetKey(a.name) and _cache_of(e) == "miss"
            )
        if not result.success:
            break
    summary.metrics = write_metrics(project)
    return summary


def _cache_of(event) -> str:
    value = event.step_materialization_data.materialization.metadata.get("skipwise/cache")
    return getattr(value, "value", value)


def run_groups(graph, names: set[str]) -> list[list[Asset]]:
    """The selected assets grouped by (graph level, partitioned), upstream levels first."""
    level: dict[str, int] = {s.name: 0 for s in graph.sources}
    for a in graph.order():
        level[a.name] = 1 + max((level[d.name] for d in a.deps), default=0)
    groups: dict[tuple[int, bool], list[Asset]] = {}
    for a in graph.order():
        if a.name in names:
            groups.setdefault((level[a.name], a.partitions is None), []).append(a)
    return [groups[k] for k in sorted(groups)]


def write_metrics(project: Project) -> dict[str, float]:
    """The model's metrics from its manifest, also written to data/reports/metrics.json for `dvc metrics`."""
    metrics: dict[str, float] = {}
    for a in project.graph.assets:
        if a.fmt != "bytes":
            continue
        m = project.manifest(a, "all")
        if m:
            metrics.update({k.split("/", 1)[1]: v for k, v in m.metadata.items() if k.startswith("metrics/")})
    if metrics:
        out = project.data_root / "reports" / "metrics.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    return metrics
