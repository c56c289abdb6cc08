"""Per-file md5s of a DVC-tracked directory, from DVC's own manifests, checked against the workspace.

`dvc add data/raw/flights` writes data/raw/flights.dvc with the directory's `<md5>.dir` hash; the
per-file list lives in .dvc/cache/files/md5/<2 hex>/<rest>.dir as JSON [{"md5", "relpath"}]. Reading
it costs milliseconds and no data. The workspace may differ (a file edited but not `dvc add`-ed);
we notice through the stat cache and use the real content's md5, with a warning.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.errors import InputError
from pipelines.store.statcache import StatCache


@dataclass(frozen=True)
class TrackedDir:
    """What DVC recorded for one directory: relpath -> md5 (empty if DVC has no record)."""

    path: str  # relative to the project root
    files: dict[str, str]
    source: str  # where the record came from, for messages


def read_tracked_dir(root: Path, rel_path: str) -> TrackedDir:
    """DVC's per-file record of `rel_path`, from `<rel_path>.dvc` or dvc.lock, and the .dir manifest."""
    root = Path(root)
    dir_hash, source = _dir_hash(root, rel_path)
    if dir_hash is None:
        return TrackedDir(rel_path, {}, "not tracked by DVC")
    manifest = _cache_path(root, dir_hash)
    if manifest is None:
        return TrackedDir(rel_path, {}, f"{source} (its .dir manifest {dir_hash} is not in the DVC cache)")
    try:
        entries = json.loads(manifest.read_text())
        files = {e["relpath"]: e["md5"] for e in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"DVC manifest {manifest} is unreadable: {exc}", hint="run `dvc fetch` or `dvc add` again") from None
    return TrackedDir(rel_path, files, source)


def _dir_hash(root: Path, rel_path: str) -> tuple[str | None, str]:
    import yaml  # DVC's files are YAML; the import stays off the pure core

    dvc_file = root / f"{rel_path}.dvc"
    if dvc_file.exists():
        data = yaml.safe_load(dvc_file.read_text()) or {}
        for out in data.get("outs", []):
            if Path(dvc_file.parent, out.get("path", "")).resolve() == (root / rel_path).resolve():
                return out.get("md5"), str(dvc_file.relative_to(root))
    lock = root / "dvc.lock"
    if lock.exists():
        data = yaml.safe_load(lock.read_text()) or {}
        for stage in (data.get("stages") or {}).values():
            for out in stage.get("outs", []):
                if Path(out.get("path", "")) == Path(rel_path):
                    return out.get("md5"), "dvc.lock"
    return None, ""


def _cache_path(root: Path, dir_hash: str) -> Path | None:
    if not dir_hash.endswith(".dir"):
        return None
    h = dir_hash[: -len(".dir")]
    for base in (root / ".dvc" / "cache" / "files" / "md5", root / ".dvc" / "cache"):
        p = base / h[:2] / f"{h[2:]}.dir"
        if p.exists():
            return p
    return None


@dataclass(frozen=True)
class FileVersion:
    """The version of one raw file: "md5:<hex>", or "absent" when neither DVC nor the disk has it."""

    version: str
    warning: str = ""


def file_version(root: Path, tracked: TrackedDir, relpath: str, statcache: StatCache) -> FileVersion:
    """Version of one file of a tracked dir: DVC's md5, unless the workspace content differs."""
    path = os.path.join(root, tracked.path, relpath)
    recorded = tracked.files.get(relpath)
    try:
        actual = statcache.digest(path, "md5")
    except FileNotFoundError:
        if recorded is None:
            return FileVersion("absent")
        raise InputError(
            f"{os.path.join(tracked.path, relpath)} is recorded by DVC ({tracked.source}) but missing from the workspace",
            hint=f"run `dvc checkout {tracked.path}` (or `dvc pull {tracked.path}` if the cache is empty)",
        ) from None
    path = Path(path)
    if recorded is None:
        return FileVersion(f"md5:{actual}", f"{path.relative_to(root)} is not committed to DVC: run `dvc add {tracked.path}`")
    if actual != recorded:
        return FileVersion(
            f"md5:{actual}",
            f"{path.relative_to(root)} differs from what DVC recorded ({tracked.source}): using its real content; "
            f"run `dvc add {tracked.path}` (or `dvc commit`) to version it",
        )
    return FileVersion(f"md5:{recorded}")
