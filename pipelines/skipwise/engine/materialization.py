"""A materialization of a project before any Dagster run: what it did (`Summary`), the levels it
runs in, its plan with the budgets checked, and the whole of it when nothing is stale.

An up-to-date materialization needs neither Dagster nor the project's definitions: the plan comes
from the manifests, DVC's records and the remembered plans (`engine/settled.py`), the hits are
recorded in the cost ledger as any skipped partition is, and the command is done in about the time
its interpreter takes to start. Anything else (a partition to compute, restore or report as
blocked; a plain Dagster asset selected or read) goes through Dagster
(`skipwise.adapters.dagster.run`), which takes the plan made here.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from skipwise.core.partitions import keys_in_range, parse_range
from skipwise.core.plan import RUN, SKIP, Decision
from skipwise.core.spec import Plain
from skipwise.engine.processmeter import process_meter
from skipwise.engine.project import Project


@dataclass
class Summary:
    """What a materialization did, per asset: partitions requested and computed."""

    requested: dict[str, int] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    restored: dict[str, int] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    ok: bool = True
    #: on failure: the step (asset) that failed, and the first line of its error
    failed_step: str = ""
    error: str = ""
    fix: str = ""
    #: assets of the levels launched, and of those a failure kept from running
    launched: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)

    def failure_line(self) -> str:
        """What failed, in one line (plus the error's own `fix:` line, if it has one); "" if nothing did."""
        if self.ok:
            return ""
        done, total = sum(self.computed.values()), sum(self.requested.values())
        what = f"step {self.failed_step}" if self.failed_step else "the Dagster run"
        line = (
            f"{what} failed after {done} of {total} partitions were computed: "
            f"{self.error or 'see the Dagster log above'}"
        )
        return line + (f"\n  {self.fix}" if self.fix else "")

    def render(self, seconds: float) -> str:
        if not self.ok:
            return self._render_failure(seconds)
        lines = ["skipwise materialize:"]
        for name, n in self.requested.items():
            c, r = self.computed.get(name, 0), self.restored.get(name, 0)
            lines.append(
                f"  {name:20} {c:4} computed, {n - c - r:4} skipped"
                + (f", {r} restored from kept versions" if r else "")
            )
        total, done, back = sum(self.requested.values()), sum(self.computed.values()), sum(self.restored.values())
        lines.append(
            f"  {done} of {total} partitions computed"
            + (f", {back} restored" if back else "")
            + f" ({total - done - back} up to date) in {seconds:.1f} s"
            + ("; nothing to do" if done + back == 0 else "")
        )
        for asset, metrics in self.metrics.items():
            lines.append(
                f"  {asset}: "
                + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
            )
        return "\n".join(lines)

    def _render_failure(self, seconds: float) -> str:
        lines = ["skipwise materialize: FAILED"]
        for name, n in self.requested.items():
            c = self.computed.get(name, 0)
            if name == self.failed_step:
                state = f"{c:4} computed, then failed"
            elif name in self.launched:
                state = f"{c:4} computed"
            else:
                state = f"{c:4} computed, none stale"
            lines.append(f"  {name:20} {state}")
        for name in self.not_run:
            lines.append(f"  {name:20}    - not run (an earlier step failed)")
        total, done = sum(self.requested.values()), sum(self.computed.values())
        lines.append(f"  {done} of {total} partitions computed before the failure, in {seconds:.1f} s")
        lines.append(f"  failed: {self.failed_step or 'the Dagster run'}: {self.error or 'see the Dagster log above'}")
        if self.fix:
            lines.append(f"  {self.fix}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Planned:
    """A materialization's selection and plan, made before anything runs.

    `names`: the skipwise assets selected; `plain`: the plain Dagster assets selected; `decisions`:
    the plan of `names` (empty when none); `up_to_date`: nothing to run, and nothing that needs
    Dagster to say so (no plain asset selected or read by a selected asset)."""

    names: frozenset[str]
    plain: frozenset[str]
    decisions: tuple[Decision, ...]
    up_to_date: bool


def plan_materialization(
    project: Project, selection: list[str] | None, partition: str | None, tags: Mapping[str, Any]
) -> Planned:
    """Plan the selected assets (all by default) and stop before anything runs if that breaks a
    budget or an egress limit. Unknown asset names and malformed ranges are errors here."""
    graph = project.graph
    everything = set(selection) if selection else {a.name for a in graph.assets} | {p.name for p in graph.citizens()}
    plain_names = {p.name for p in graph.citizens()} & everything
    names = everything - plain_names
    for n in names:
        graph.asset(n)
    if partition is not None:
        parse_range(partition)  # an empty --partition (or half of one) is an error, never "everything"
    with process_meter().phase("plan"):
        decisions = check_plan_budget(project, names, partition, tags) if names else []
    reads_plain = {p.name for p in graph.plain} & {d.name for a in graph.assets if a.name in names for d in a.deps}
    return Planned(
        frozenset(names),
        frozenset(plain_names),
        tuple(decisions),
        up_to_date=not plain_names and not reads_plain and all(d.action == SKIP for d in decisions),
    )


def check_plan_budget(
    project: Project, names: set[str], partition: str | None, tags: Mapping[str, Any]
) -> list[Decision]:
    """Stop before launching anything when the whole invocation is projected over a budget.

    Projects every level at once (downstream of a stale partition counts as running, as the plan
    says) from each asset's cost history: `per_run_usd` holds for the invocation as a whole, not
    per step. The run tag skipwise/budget_override=true lets it through (the steps report it).
    Returns the plan's decisions (reused for the levels that run before anything has been committed).
    """
    decisions = project.plan(sorted(names), partition=partition)
    project.accounts.check_budgets(Counter(d.asset for d in decisions if d.action == RUN), dict(tags))
    project.locality.check_egress(
        [(d.asset, d.partition) for d in decisions if d.action == RUN], dict(tags)
    )  # before any read
    return decisions


def record_up_to_date(project: Project, planned: Planned, partition: str | None, tags: Mapping[str, Any]) -> Summary:
    """The whole of a materialization that `planned` found up to date: every partition recorded
    as a hit in the cost ledger (one record id per level, as the levels of a run through Dagster
    get), the unpartitioned assets' metrics written, and this process's own use recorded."""
    if not planned.up_to_date:
        raise ValueError("record_up_to_date takes an up-to-date plan only")
    graph = project.graph
    run_tags = {str(k): str(v) for k, v in tags.items()}
    summary, last_id = Summary(), ""
    for group in run_groups(graph, set(planned.names)):
        keys = keys_in_range(group[0].partitions, partition)
        if keys == []:
            continue  # this partitioning has no such keys
        in_group = {a.name for a in group}
        for a in group:
            summary.requested[a.name] = len(keys) if keys is not None else 1
            summary.computed[a.name] = 0
        last_id = record_hits(project, [d for d in planned.decisions if d.asset in in_group], run_tags) or last_id
    summary.metrics = write_metrics(project)
    if last_id:
        project.accounts.record_run(last_id, run_tags)
    process_meter().at_exit(freeze_gc=True)  # see `skipwise.adapters.dagster.run`
    return summary


def record_hits(project: Project, skipped: list[Decision], tags: Mapping[str, str]) -> str:
    """Record the partitions of `skipped` as hits in the cost ledger under a new record id, which
    it returns ("" when there are none)."""
    if not skipped:
        return ""
    run_id = f"skipwise-{uuid.uuid4()}"
    project.accounts.record(project.execution.hits(skipped), run_id, tags)
    return run_id


def run_groups(graph: Any, names: set[str]) -> list[list[Any]]:
    """The selected assets (skipwise and plain) grouped by (graph level, partitioning, kind),
    upstream levels first. A plain asset that is not selected counts as there already."""
    deps: dict[str, list[str]] = {a.name: [d.name for d in a.deps] for a in graph.assets}
    deps.update({p.name: list(p.deps) for p in graph.citizens() if p.name in names})
    level: dict[str, int] = {}

    def level_of(name: str, seen: tuple[str, ...] = ()) -> int:
        if name not in level:
            ups = [d for d in deps.get(name, ()) if d in deps and d not in seen]
            level[name] = 1 + max((level_of(d, (*seen, name)) for d in ups), default=0) if name in deps else 0
        return level[name]

    groups: dict[tuple[int, Any, bool], list[Any]] = {}
    for node in (*graph.citizens(), *graph.order()):
        if node.name in names:
            groups.setdefault((level_of(node.name), node.partitions, isinstance(node, Plain)), []).append(node)
    # Upstream levels first; within a level, one group (one Dagster run) per partitioning and kind.
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1] is None, k[2]))]


def write_metrics(project: Project) -> dict[str, dict[str, float]]:
    """Metrics (metadata `metrics/<name>`) of the unpartitioned assets, by asset, from their
    manifests; also written to data/reports/metrics.json for `dvc metrics` (flat when one asset has them)."""
    metrics: dict[str, dict[str, float]] = {}
    for a in project.graph.assets:
        if a.partitions is not None:
            continue
        m = project.manifest(a, "all")
        found = {k.split("/", 1)[1]: v for k, v in (m.metadata.items() if m else ()) if k.startswith("metrics/")}
        if found:
            metrics[a.name] = found
    if metrics:
        out = project.data_root / "reports" / "metrics.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        flat = next(iter(metrics.values())) if len(metrics) == 1 else metrics
        out.write_text(json.dumps(flat, indent=1, sort_keys=True) + "\n")
    return metrics
