"""`skipwise gc`: remove kept versions no longer current when storing them costs more than
recomputing them is likely to (`skipwise.core.retention`), never the current version, never one
computed at the commit a git branch or tag points at, and never a partition another process holds
(its lock is tried, not waited for)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from skipwise.core.manifest import Manifest
from skipwise.core.partitions import folder_key
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


def _partitions(project: Any) -> Iterator[tuple[Any, str, Path]]:
    for asset in project.graph.assets:
        base = project.data_root / asset.layer / asset.name
        if not base.is_dir() or base.is_symlink():
            continue
        for folder in sorted(base.iterdir()):
            key = folder_key(folder.name)
            if key is not None and folder.is_dir() and not folder.is_symlink():
                yield asset, key, folder


def collect(project: Any, policy: Policy | None = None, dry_run: bool = True, now: datetime | None = None) -> list[Item]:
    """Judge every non-current version of every skipwise partition; unless `dry_run`, remove
    those judged not worth keeping (each partition under its lock; one that is held is left as it is)."""
    policy = policy or Policy(project.config.prices.storage_usd_per_gb_month)
    now = now or datetime.now(timezone.utc)
    used = _last_used(project)
    from skipwise.adapters.git import ref_commits

    refs = ref_commits(project.root)
    items: list[Item] = []
    for asset, key, folder in _partitions(project):
        with project.store.lock(asset.layer, asset.name, key, wait=False) as held:
            if not held:
                continue  # a materialization (or another gc) is working on it: next time
            items.extend(_partition(project, asset, key, folder, policy, used, refs, now, dry_run))
    return items


def _partition(project: Any, asset: Any, key: str, folder: Path, policy: Policy, used: dict, refs: dict[str, str],
               now: datetime, dry_run: bool) -> list[Item]:
    try:
        current = project.store.read_manifest(asset.layer, asset.name, key)
    except ValueError:
        return []  # an unreadable manifest: leave the folder alone (planning says what to do)
    keep_names = {MANIFEST, ".lock"} | ({current.output} if current else set())
    root = project.root
    out = []
    named: set[str] = set()
    for vfile in sorted((folder / VERSIONS).glob("*.json")) if (folder / VERSIONS).is_dir() else []:
        try:
            v = Manifest.from_json(vfile.read_text())
        except (OSError, ValueError, TypeError):
            continue
        named.add(v.output)
        if current is not None and v.fingerprint == current.fingerprint:
            continue
        output = folder / os.path.basename(v.output)
        files = [vfile] + ([output] if output.exists() and output.name not in keep_names else [])
        size = sum(f.stat().st_size for f in files)
        last = used.get((asset.name, key, v.fingerprint), v.created_at)
        commit = str((v.metadata or {}).get(GIT_COMMIT) or "")
        verdict = judge(policy, size, (v.cost or {}).get("usd"), _days_since(last, now), refs.get(commit, ""))
        out.append(Item(asset.name, key, v.fingerprint, tuple(str(f.relative_to(root)) for f in files), size,
                        verdict.keep, verdict.reason, verdict.storage_usd_per_month))
    for f in sorted(folder.iterdir()):  # outputs no kept manifest names: written before versions were kept
        if f.is_file() and not f.name.startswith(".") and f.name not in keep_names and f.name not in named:
            size = f.stat().st_size
            store = size / 2**30 * policy.storage_usd_per_gb_month
            out.append(Item(asset.name, key, f.stem, (str(f.relative_to(root)),), size, False,
                            "no kept manifest names it: it can never be restored", store))
    if not dry_run:
        for item in out:
            if not item.keep:
                for rel in item.files:
                    (root / rel).unlink(missing_ok=True)
    return out
