"""`skipwise gc`: remove kept versions no longer current when storing them costs more than
recomputing them is likely to (`skipwise.core.retention`), never the current version, never one
computed at the commit a git branch or tag points at, and never a partition another process holds
(its lock is tried, not waited for)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from skipwise.adapters.git import ref_commits
from skipwise.core.manifest import Manifest
from skipwise.core.retention import GIT_COMMIT, Policy, judge
from skipwise.store.partitions import MANIFEST, VERSIONS


@dataclass(frozen=True)
class Item:
    """One non-current version (or an output file no kept manifest names): what `gc` does with it."""

    asset: str
    partition: str
    fingerprint: str
    files: tuple[str, ...]  # relative to the project root
    bytes: int
    keep: bool
    reason: str
    storage_usd_per_month: float


def _days_since(ts: str, now: datetime) -> float:
    try:
        then = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return 0.0  # unknown: as if just used
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return (now - then).total_seconds() / 86400


def _last_used(project: Any) -> dict[tuple[str, str, str], str]:
    """(asset, partition, fingerprint) -> the latest ledger time it was computed, restored or hit."""
    out: dict[tuple[str, str, str], str] = {}
    for r in project.ledger.rows():
        if r["cache"] in ("miss", "hit", "restore") and r["fingerprint"]:
            k = (str(r["asset"]), str(r["partition"]), str(r["fingerprint"]))
            if (r["ts"] or "") > out.get(k, ""):
                out[k] = r["ts"] or ""
    return out


def collect(
    project: Any, policy: Policy | None = None, dry_run: bool = True, now: datetime | None = None
) -> list[Item]:
    """Judge every non-current version of every skipwise partition; unless `dry_run`, remove
    those judged not worth keeping (each partition under its lock; one that is held is left as it is)."""
    policy = policy or Policy(project.config.prices.storage_usd_per_gb_month)
    now = now or datetime.now(timezone.utc)
    used = _last_used(project)

    refs = ref_commits(project.root)
    items: list[Item] = []
    store = project.store
    for asset in project.graph.assets:
        for key, names in store.files_of(asset.layer, asset.name).items():
            with store.lock(asset.layer, asset.name, key, wait=False) as held:
                if not held:
                    continue  # a materialization (or another gc) is working on it: next time
                items.extend(_partition(project, asset, key, names, policy, used, refs, now, dry_run))
    return items


def _partition(
    project: Any,
    asset: Any,
    key: str,
    names: dict[str, int],
    policy: Policy,
    used: dict,
    refs: dict[str, str],
    now: datetime,
    dry_run: bool,
) -> list[Item]:
    store = project.store
    try:
        current = store.read_manifest(asset.layer, asset.name, key)
    except ValueError:
        return []  # an unreadable manifest: leave the partition alone (planning says what to do)
    keep_names = {MANIFEST} | ({current.output} if current else set())
    out: list[tuple[Item, list[str]]] = []
    named: set[str] = set()
    for vname in sorted(n for n in names if n.startswith(f"{VERSIONS}/") and n.endswith(".json")):
        data = store.read_named(asset.layer, asset.name, key, vname)
        try:
            v = Manifest.from_json(data.decode("utf-8")) if data is not None else None
        except (ValueError, TypeError, UnicodeDecodeError):
            v = None
        if v is None:
            continue
        named.add(os.path.basename(v.output))
        if current is not None and v.fingerprint == current.fingerprint:
            continue
        output = os.path.basename(v.output)
        files = [vname] + ([output] if output in names and output not in keep_names else [])
        size = sum(names[f] for f in files)
        last = used.get((asset.name, key, v.fingerprint), v.created_at)
        commit = str((v.metadata or {}).get(GIT_COMMIT) or "")
        verdict = judge(policy, size, v.usd, _days_since(last, now), refs.get(commit, ""))
        out.append(
            (
                Item(
                    asset.name,
                    key,
                    v.fingerprint,
                    tuple(store.where(asset.layer, asset.name, key, f) for f in files),
                    size,
                    verdict.keep,
                    verdict.reason,
                    verdict.storage_usd_per_month,
                ),
                files,
            )
        )
    # Outputs no kept manifest names: written before versions were kept, or by a writer killed
    # before its commit (the lease held now means none is being written).
    for name in sorted(names):
        if "/" not in name and name not in keep_names and name not in named:
            size = names[name]
            cost = size / 2**30 * policy.storage_usd_per_gb_month
            out.append(
                (
                    Item(
                        asset.name,
                        key,
                        name.split(".")[0],
                        (store.where(asset.layer, asset.name, key, name),),
                        size,
                        False,
                        "no kept manifest names it: it can never be restored",
                        cost,
                    ),
                    [name],
                )
            )
    if not dry_run:
        store.remove(asset.layer, asset.name, key, [f for item, files in out if not item.keep for f in files])
    return [item for item, _ in out]
