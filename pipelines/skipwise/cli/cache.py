"""``skipwise cache``: the content-addressed input cache (remote bytes kept locally by content).

    skipwise cache status [--json]          # entries, bytes, limit, where they came from, refetch cost
    skipwise cache gc [--dry-run] [--max-bytes N]   # evict to the limit, cheapest to refetch first

Neither needs the project's definitions or Dagster: only the root and skipwise.toml.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from skipwise.cli.console import add_json_flag, print_json
from skipwise.core.pricing import load_config
from skipwise.core.units import format_usd
from skipwise.project.root import find_root
from skipwise.sources.contentcache import ContentCache
from skipwise.sources.locality import cache_root


def add_cache_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cache status`` and ``cache gc`` to an argparse `subparsers`."""
    cache = subparsers.add_parser("cache", help="the input cache of remote bytes: status, gc")
    sub = cache.add_subparsers(dest="cache_command")
    status = sub.add_parser("status", help="what the input cache holds")
    add_json_flag(status)
    status.set_defaults(func=cmd_status)
    gc = sub.add_parser("gc", help="evict entries down to the size limit (cheapest to refetch first)")
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    gc.add_argument("--max-bytes", type=int, default=None, help="evict down to this size instead of [cache] max_bytes")
    gc.set_defaults(func=cmd_gc)
    cache.set_defaults(func=lambda args: cache.print_help() or 2)


def _root(args) -> Path:
    return Path(args.root).resolve() if args.root else find_root()


def _cache(args):
    root = _root(args)
    config = load_config(root / "skipwise.toml")
    return ContentCache(cache_root(root, config.cache_dir), config.cache_max_bytes)


def _copies(args) -> tuple[Path, list[Path]]:
    """The local copies of feature-store objects (manifests, ledger files, outputs sw.scan read):
    all of them can be fetched again, so gc may remove them at any time."""
    folder = _root(args) / "data" / ".skipwise" / "objects"
    return folder, sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def cmd_status(args) -> int:
    cache = _cache(args)
    folder, copies = _copies(args)
    entries = cache.entries()
    total = sum(e.size for e in entries)
    by_class = Counter()
    for e in entries:
        by_class[e.egress_class] += e.size
    out = {
        "dir": str(cache.root),
        "entries": len(entries),
        "bytes": total,
        "max_bytes": cache.max_bytes,
        "bytes_by_class": dict(by_class),
        "refetch_usd": sum(e.refetch_usd for e in entries),
        "orphans": len(cache.orphans()),
        "object_copies": {"dir": str(folder), "files": len(copies), "bytes": sum(p.stat().st_size for p in copies)},
    }
    if args.json:
        print_json(out)
        return 0
    print(
        f"input cache {out['dir']}: {len(entries)} object(s), {total:,} bytes of {cache.max_bytes:,} "
        f"({100 * total / cache.max_bytes if cache.max_bytes else 0:.1f} %)"
    )
    for cls, n in sorted(by_class.items()):
        print(f"  from {cls or 'unknown'}: {n:,} bytes")
    print(f"  fetching all of it again would cost {format_usd(out['refetch_usd'])}")
    if out["orphans"]:
        print(f"  {out['orphans']} incomplete file(s) (a killed fetch): `skipwise cache gc` removes them")
    if copies:
        print(
            f"local copies of feature-store objects {folder}: {len(copies)} file(s), "
            f"{out['object_copies']['bytes']:,} bytes (`skipwise cache gc` removes them; they are fetched again when needed)"
        )
    return 0


def cmd_gc(args) -> int:
    cache = _cache(args)
    orphans = cache.orphans()
    removed = cache.evict(dry_run=args.dry_run, max_bytes=args.max_bytes)
    if not args.dry_run:
        for p in orphans:
            p.unlink(missing_ok=True)
    verb = "would remove" if args.dry_run else "removed"
    freed = sum(e.size for e in removed)
    for e in removed:
        print(f"  {verb} {e.key} ({e.size:,} bytes, refetch {format_usd(e.refetch_usd)}, from {e.origin})")
    print(
        f"cache gc: {verb} {len(removed)} object(s), {freed:,} bytes, and {len(orphans)} incomplete file(s); "
        f"{cache.total_bytes() if not args.dry_run else cache.total_bytes() - freed:,} bytes left"
    )
    _, copies = _copies(args)
    if copies:
        size = sum(p.stat().st_size for p in copies)
        if not args.dry_run:
            for p in copies:
                p.unlink(missing_ok=True)
        print(f"cache gc: {verb} {len(copies)} local cop(ies) of feature-store objects, {size:,} bytes")
    return 0
