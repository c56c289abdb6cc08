"""Plain Dagster assets beside skipwise ones: their state as Dagster sees it, and their runs.

skipwise does not version a plain `@dg.asset`: Dagster computes it, and Dagster's own records say
whether it is materialized and whether it is stale (its data versions: a new code version, an
upstream with a new data version). `plain_decisions` turns that into the same decisions
`skipwise plan` shows for skipwise assets, so one command covers the whole definitions; it reads
the Dagster instance, which is why only a project with plain assets pays for it.

Runs follow Dagster's rule for a partition range: an asset whose backfill policy is
`BackfillPolicy.single_run()` gets one run over the range; any other partitioned asset gets one run
per partition (a plain body computes one partition, and its IO manager stores one).
"""

from __future__ import annotations

from typing import Any, Iterable

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

from skipwise.adapters.dagster.graph import asset_name
from skipwise.adapters.dagster.instance import instance_for_root
from skipwise.adapters.dagster.launch import Launched, launch
from skipwise.core.partitions import UNPARTITIONED, keys_in_range, keys_of
from skipwise.core.plan import RUN, SKIP, Decision
from skipwise.core.spec import Plain, Source

PARTITION_TAG = "dagster/partition"
RAW_TAG = "skipwise/raw_version/"
MISSING = "missing (never materialized in Dagster)"
FRESH = "up to date per Dagster (materialized; its code version and its inputs' data versions unchanged)"


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(name.split("__"))


def plain_decisions(
    project: Any, defs: dg.Definitions, names: Iterable[str], partition: str | None = None, planned: Iterable = ()
) -> list[Decision]:
    """RUN or SKIP for each partition of the plain assets `names`, from the Dagster instance.

    A partition is to run when Dagster has never materialized it, when Dagster calls it stale
    (with Dagster's causes as the reason), or when an input is planned to run first (`planned`:
    the decisions of the assets upstream, skipwise ones included); otherwise it is up to date.
    """
    wanted = set(names)
    plain = [p for p in project.graph.citizens() if p.name in wanted]
    if not plain:
        return []
    ag = defs.resolve_asset_graph()
    instance = instance_for_root(project.root)
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=ag,
    )
    resolver = CachingStaleStatusResolver(instance, ag, view)
    running: dict[str, set[str]] = {}
    for d in planned:
        if d.action != SKIP:
            running.setdefault(d.asset, set()).add(d.partition)
    out: list[Decision] = []
    for p in _in_order(plain):
        keys = keys_in_range(p.partitions, partition) if partition is not None else keys_of(p.partitions)
        keys = [UNPARTITIONED] if keys is None else keys
        for k in keys:
            d = _decide(project, instance, resolver, p, k, running)
            if d.action == RUN:
                running.setdefault(p.name, set()).add(k)
            out.append(d)
    return out


def _in_order(plain: list[Plain]) -> list[Plain]:
    """Upstream plain assets before those that read them."""
    names = {p.name for p in plain}
    done: set[str] = set()
    out: list[Plain] = []
    pending = list(plain)
    while pending:
        ready = [p for p in pending if not (set(p.deps) & names) - done] or pending[:1]
        for p in ready:
            out.append(p)
            done.add(p.name)
            pending.remove(p)
    return out


def _decide(project: Any, instance: Any, resolver: Any, p: Plain, k: str, running: dict[str, set[str]]) -> Decision:
    pk = None if p.partitions is None else k
    for dep in p.deps:
        if dep not in running:
            continue
        up = project.graph.node(dep)
        # the same partitioning maps a key onto itself; any other mapping: any upstream run counts
        if up.partitions != p.partitions or k in running[dep] or p.partitions is None:
            first = k if k in running[dep] else sorted(running[dep])[0]
            return Decision(p.name, k, RUN, f"input {dep}[{first}] runs first", "")
    status = resolver.get_status(_key(p.name), pk)
    if status == StaleStatus.MISSING:
        return Decision(p.name, k, RUN, MISSING, "")
    changed = _raw_changed(project, instance, p, k)
    if changed:
        return Decision(p.name, k, RUN, f"input {changed} changed since it was computed", "")
    if status == StaleStatus.STALE:
        causes = resolver.get_stale_root_causes(_key(p.name), pk)
        why = "; ".join(_cause(c) for c in causes[:3]) or "its inputs changed"
        return Decision(p.name, k, RUN, f"stale per Dagster: {why}", "")
    return Decision(p.name, k, SKIP, FRESH, "")


def _raw_inputs(project: Any, p: Plain, k: str) -> list[tuple[Source, str]]:
    """The raw partitions plain partition `k` reads one to one: (source, key) of its DVC or
    object-store sources partitioned like it, or unpartitioned."""
    out = []
    for dep in p.deps:
        up = project.graph.node(dep)
        if isinstance(up, Source) and (up.partitions is None or up.partitions == p.partitions):
            out.append((up, UNPARTITIONED if up.partitions is None else k))
    return out


def _raw_changed(project: Any, instance: Any, p: Plain, k: str) -> str:
    """The raw input (`name[key]`) whose version differs from the one the run that last computed
    partition `k` was tagged with (`raw_tags`); "" if none. Dagster itself cannot tell: it gives
    every partition of an observable source the same input version (dagster#33988), and nothing
    observes a file that changes under DVC. A run without the tags (launched by Dagster itself,
    or over a range) tells nothing either: its partitions count as changed."""
    raw = _raw_inputs(project, p, k)
    if not raw:
        return ""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=_key(p.name), asset_partitions=None if p.partitions is None else [k]),
        limit=1,
        ascending=False,
    ).records
    run = instance.get_run_by_id(records[0].event_log_entry.run_id) if records else None
    tags = run.tags if run is not None else {}
    for source, key in raw:
        if tags.get(RAW_TAG + source.name) != project.raw_version(source, key):
            return f"{source.name}[{key}]"
    return ""


def raw_tags(project: Any, group: list[Plain], k: str) -> dict[str, str]:
    """Run tags with the versions of the raw partitions a run of partition `k` of the plain
    assets `group` reads (`_raw_changed` compares them with the versions now)."""
    return {
        RAW_TAG + source.name: project.raw_version(source, key)
        for p in group
        for source, key in _raw_inputs(project, p, k)
    }


def _cause(c: Any) -> str:
    key = c.dependency or c.key
    where = asset_name(key.asset_key) + (f"[{key.partition_key}]" if key.partition_key else "")
    return f"{where} {c.reason}"


def launch_plain(
    project: Any,
    defs: dg.Definitions,
    resources: dict,
    group: list[Plain],
    stale: list[str],
    instance: Any,
    tags: dict[str, str],
) -> list[Launched]:
    """The Dagster runs of a level of plain assets over their stale keys (in partition order):
    one run for an unpartitioned level; for a partitioned one, one run per contiguous span when
    every asset of the level has `BackfillPolicy.single_run()`, else one run per partition."""
    assets = list(defs.assets or ())
    names = _selection(defs, [p.name for p in group])
    if group[0].partitions is None:
        one = {**tags, **raw_tags(project, group, UNPARTITIONED)}
        return [_counted(launch(assets, resources, names, None, instance, one), group, 1)]
    if all(p.single_run for p in group):
        spans = _spans(group[0], stale)
    else:
        spans = [(k, k) for k in stale]
    results = []
    for first, last in spans:
        # A run of one partition names it (a range of one would make Dagster record the range's
        # hash, not the raw partition's version, as the input's data version).
        one = {**tags, PARTITION_TAG: first, **raw_tags(project, group, first)}
        r = launch(assets, resources, names, None, instance, one) if first == last else None
        r = r or launch(assets, resources, names, (first, last), instance, tags)
        results.append(_counted(r, group, len(group[0].partitions.key_range(first, last))))
        if not r.ok:
            break
    return results


def _spans(p: Plain, stale: list[str]) -> list[tuple[str, str]]:
    """Contiguous runs of `stale` in `p`'s partitioning, as (first, last)."""
    order = {k: i for i, k in enumerate(p.partitions.keys())}
    spans: list[list[str]] = []
    for k in stale:
        if spans and order[k] == order[spans[-1][-1]] + 1:
            spans[-1].append(k)
        else:
            spans.append([k])
    return [(s[0], s[-1]) for s in spans]


def _selection(defs: dg.Definitions, names: list[str]) -> list[str]:
    """`names`, with the other outputs of a multi-asset that cannot run a subset of its outputs."""
    ag = defs.resolve_asset_graph()
    out = list(names)
    for n in names:
        node = ag.get(_key(n))
        ad = getattr(node, "assets_def", None)
        if ad is not None and not ad.can_subset:
            out += [asset_name(k) for k in ad.keys if asset_name(k) not in out]
    return out


def _counted(r: Launched, group: list[Plain], n: int) -> Launched:
    """A plain run computes every partition it targets (Dagster never skips one)."""
    if not r.ok:
        return r
    return Launched(r.run_id, r.ok, {p.name: n for p in group}, r.restored, r.failed_step, r.error, r.fix)
