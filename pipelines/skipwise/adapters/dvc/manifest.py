"""Per-file md5s of a DVC-tracked directory, from DVC's own manifests, checked against the workspace.

`dvc add data/raw/flights` writes data/raw/flights.dvc with the directory's `<md5>.dir` hash; the
per-file list lives in .dvc/cache/files/md5/<2 hex>/<rest>.dir as JSON [{"md5", "relpath"}]. Reading
it costs milliseconds and no data. The workspace may differ (a file edited but not `dvc add`-ed);
we notice through the stat cache and use the real content's md5, with a warning. When the `.dir`
manifest itself is not in the cache (a fresh clone before `dvc fetch`), files are versioned by their
content (the same md5 DVC uses) and one warning per directory says so.

A `.dvc` file or dvc.lock that is not what DVC writes is an InputError naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from skipwise.adapters.dvc.config import dvc_cache_dirs
from skipwise.core.errors import InputError, SkipwiseError
from skipwise.store.statcache import StatCache

_MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
_YAML_LOADER: Any = None


def _loader() -> Any:
    """PyYAML's safe loader, resolving floats as YAML 1.2 (and DVC, through ruamel) does: PyYAML
    alone reads ``1e-05`` (what DVC writes for 0.00001) as a string."""
    global _YAML_LOADER
    if _YAML_LOADER is None:
        import yaml  # DVC's files are YAML; the import stays off the pure core

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float",
            re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$""", re.X),
            list("-+0123456789"),
        )
        _YAML_LOADER = Loader
    return _YAML_LOADER


def read_yaml(path: Path, name: str, error: type[SkipwiseError] = InputError, hint: str = "") -> Any:
    """Parse the YAML file `path` (named `name` in messages); `error` with one line if it is
    unreadable or not YAML (the problem and its line, never PyYAML's multi-line report)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error("not a text file (not UTF-8)", location=name, hint=hint) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", location=name, hint=hint) from None
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"not valid YAML: {problem}", location=where, hint=hint) from None


@dataclass(frozen=True)
class TrackedDir:
    """What DVC recorded for one directory: relpath -> md5 (empty if DVC has no record)."""

    path: str  # relative to the project root
    files: dict[str, str]
    source: str  # where the record came from, for messages
    #: the `.dir` hash DVC recorded when its manifest is not in the cache ("" otherwise)
    missing_manifest: str = ""
    #: what the `.dvc` file says of the whole directory (0 when it does not say): total bytes, files
    size: int = 0
    nfiles: int = 0

    @property
    def mean_file_size(self) -> int:
        """The mean size of one file (0 when unknown): an estimate for bytes not yet fetched."""
        return self.size // self.nfiles if self.size and self.nfiles else 0

    @property
    def missing_warning(self) -> str:
        """The one warning for a directory whose `.dir` manifest is not in the cache."""
        if not self.missing_manifest:
            return ""
        return (
            f"{self.source} records {self.path} as {self.missing_manifest}, but that .dir manifest is not in "
            f"the DVC cache: its files are versioned by their content; fix: run `dvc fetch` (or `dvc pull`), "
            f"or `dvc add {self.path}` again"
        )


def tracked_target(root: Path, rel_path: str) -> str | None:
    """What DVC tracks that holds `rel_path`: `rel_path` itself or the nearest folder above it with
    a `.dvc` file or a dvc.lock output (None: nothing DVC tracks holds it)."""
    root = Path(root)
    outs: set[str] | None = None
    path = Path(rel_path)
    for cand in (path, *path.parents):
        if str(cand) in ("", "."):
            break
        if (root / f"{cand}.dvc").exists():
            return cand.as_posix()
        if outs is None:
            outs = _lock_outs(root)
        if cand.as_posix() in outs:
            return cand.as_posix()
    return None


def _lock_outs(root: Path) -> set[str]:
    """The output paths dvc.lock records (empty when there is none, or it is not what DVC writes:
    reading the source then reports it)."""
    lock = root / "dvc.lock"
    if not lock.exists():
        return set()
    try:
        data = read_yaml(lock, "dvc.lock")
    except InputError:
        return set()
    stages = data.get("stages") if isinstance(data, dict) else None
    out: set[str] = set()
    for stage in (stages or {}).values() if isinstance(stages, dict) else ():
        for o in (stage.get("outs") or []) if isinstance(stage, dict) else ():
            if isinstance(o, dict) and isinstance(o.get("path"), str):
                out.add(Path(o["path"]).as_posix())
    return out


def read_tracked_dir(
    root: Path, rel_path: str, fetch_manifest: Callable[[str], bytes] | None = None, file: bool = False
) -> TrackedDir:
    """DVC's per-file record of `rel_path`, from `<rel_path>.dvc` or dvc.lock, and the .dir manifest.

    `fetch_manifest(dir_hash)`, when given, returns the `.dir` manifest's bytes from elsewhere (a
    DVC remote, verified by its md5) when DVC's local cache does not have it. With `file`, a
    tracked single file is accepted too: its record is the one entry "" (the path itself).
    """
    root = Path(root)
    dir_hash, source, sizes = _dir_hash(root, rel_path)
    if dir_hash is None:
        return TrackedDir(rel_path, {}, "not tracked by DVC")
    if file and not dir_hash.endswith(".dir"):
        return TrackedDir(rel_path, {"": dir_hash}, source, **sizes)
    if not dir_hash.endswith(".dir"):
        raise InputError(
            f"records {rel_path} with the file hash {dir_hash}, but {rel_path} is a directory of partition files",
            location=source,
            hint=f"run `dvc add {rel_path}` (the directory) again",
        )
    manifest = _cache_path(root, dir_hash)
    if manifest is None and fetch_manifest is None:
        return TrackedDir(rel_path, {}, source, missing_manifest=dir_hash, **sizes)
    shown = _shown(root, manifest) if manifest is not None else f"the DVC remote's {dir_hash}"
    fix = f"run `dvc fetch` to restore it (or `dvc add {rel_path}` again)"
    try:
        text = (
            manifest.read_text(encoding="utf-8") if manifest is not None else fetch_manifest(dir_hash).decode("utf-8")
        )  # type: ignore[misc]
        entries = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"DVC's .dir manifest {dir_hash} (from {source}) is unreadable: {exc}", location=shown, hint=fix
        ) from None
    if not isinstance(entries, list):
        raise InputError(
            f"DVC's .dir manifest {dir_hash} (from {source}) is not a list of files", location=shown, hint=fix
        )
    files: dict[str, str] = {}
    for e in entries:
        if not (isinstance(e, dict) and isinstance(e.get("relpath"), str) and isinstance(e.get("md5"), str)):
            raise InputError(
                f"DVC's .dir manifest {dir_hash} (from {source}) has an entry without relpath/md5: {str(e)[:60]}",
                location=shown,
                hint=fix,
            )
        files[e["relpath"]] = e["md5"]
    return TrackedDir(rel_path, files, source, **sizes)


def _shown(root: Path, path: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _outs(data: Any, name: str, where: str, hint: str) -> list[dict]:
    """The `outs` list of a .dvc file or a dvc.lock stage, checked to be what DVC writes."""
    if "outs" not in data:
        return []
    outs = data["outs"]
    if not isinstance(outs, list):
        raise InputError(f"{where}`outs` is {_kind(outs)}, not a list", location=name, hint=hint)
    for i, out in enumerate(outs):
        if not isinstance(out, dict):
            raise InputError(
                f"{where}outs[{i}] is {_kind(out)}, not a mapping with path and md5", location=name, hint=hint
            )
    return outs


def _md5_of(out: dict, i: int, name: str, where: str, hint: str) -> str:
    md5 = out.get("md5")
    if md5 is None:
        raise InputError(f"{where}outs[{i}] ({out.get('path')}) has no md5", location=name, hint=hint)
    if not isinstance(md5, str) or not _MD5.match(md5):
        raise InputError(
            f"{where}outs[{i}] ({out.get('path')}) md5 is {_kind(md5)} {repr(md5)[:40]}, not an md5 hash",
            location=name,
            hint=hint,
        )
    return md5


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "empty",
    }.get(type(value), type(value).__name__)


def _sizes(out: dict) -> dict[str, int]:
    """`size` and `nfiles` of a .dvc/dvc.lock output, when DVC wrote them as numbers."""
    return {k: out[k] for k in ("size", "nfiles") if isinstance(out.get(k), int) and not isinstance(out.get(k), bool)}


def _dir_hash(root: Path, rel_path: str) -> tuple[str | None, str, dict[str, int]]:
    dvc_file = root / f"{rel_path}.dvc"
    name = f"{rel_path}.dvc"
    if dvc_file.exists():
        hint = f"restore it from git (`git checkout -- {name}`) or run `dvc add {rel_path}` again"
        data = read_yaml(dvc_file, name, InputError, hint)
        if not isinstance(data, dict):
            raise InputError(
                f"expected a mapping with `outs` (what `dvc add` writes), got {_kind(data)}", location=name, hint=hint
            )
        target = (root / rel_path).resolve()
        for i, out in enumerate(_outs(data, name, "", hint)):
            path = out.get("path")
            if not isinstance(path, str) or not path:
                raise InputError(f"outs[{i}] has no path", location=name, hint=hint)
            if Path(dvc_file.parent, path).resolve() == target:
                return _md5_of(out, i, name, "", hint), name, _sizes(out)
        raise InputError(f"records no output for {rel_path}", location=name, hint=hint)
    lock = root / "dvc.lock"
    if lock.exists():
        hint = "restore it from git (`git checkout -- dvc.lock`) or run `dvc commit` (or `dvc repro`) to rewrite it"
        data = read_yaml(lock, "dvc.lock", InputError, hint)
        if data is None:
            return None, "", {}
        if not isinstance(data, dict):
            raise InputError(
                f"expected a mapping with `stages` (what DVC writes), got {_kind(data)}", location="dvc.lock", hint=hint
            )
        stages = data.get("stages") or {}
        if not isinstance(stages, dict):
            raise InputError(f"`stages` is {_kind(stages)}, not a mapping", location="dvc.lock", hint=hint)
        for stage_name, stage in stages.items():
            where = f"stages.{stage_name}."
            if not isinstance(stage, dict):
                raise InputError(
                    f"stages.{stage_name} is {_kind(stage)}, not a mapping", location="dvc.lock", hint=hint
                )
            for i, out in enumerate(_outs(stage, "dvc.lock", where, hint)):
                if isinstance(out.get("path"), str) and Path(out["path"]) == Path(rel_path):
                    return _md5_of(out, i, "dvc.lock", where, hint), "dvc.lock", _sizes(out)
    return None, "", {}


def _cache_path(root: Path, dir_hash: str) -> Path | None:
    h = dir_hash[: -len(".dir")]
    for cache in dvc_cache_dirs(root):
        for base in (cache / "files" / "md5", cache):
            p = base / h[:2] / f"{h[2:]}.dir"
            if p.exists():
                return p
    return None


def record_files(root: Path, rel_path: str) -> list[tuple[Path, str]]:
    """DVC's own files that record the directory `rel_path` through its `.dvc` file, as (file,
    where it goes relative to a project root): the `.dvc` file and, when the cache has it, the
    `.dir` manifest. Copied beside a copy of the directory, they make the copy read as DVC-tracked
    without DVC (a directory recorded by dvc.lock, or by no one, has none: [])."""
    root = Path(root)
    dvc_file = root / f"{rel_path}.dvc"
    if not dvc_file.exists():
        return []
    dir_hash, name, _ = _dir_hash(root, rel_path)
    manifest = _cache_path(root, dir_hash) if dir_hash and dir_hash.endswith(".dir") else None
    if manifest is None:
        return []  # a record whose manifest is missing would only turn into a warning in the copy
    h = dir_hash[: -len(".dir")]
    return [(dvc_file, name), (manifest, f".dvc/cache/files/md5/{h[:2]}/{h[2:]}.dir")]


@dataclass(frozen=True)
class FileVersion:
    """The version of one raw file: "md5:<hex>", or "absent" when neither DVC nor the disk has it."""

    version: str
    warning: str = ""


def file_version(
    root: Path,
    tracked: TrackedDir,
    relpath: str,
    statcache: StatCache,
    remote: bool = False,
    st: os.stat_result | None = None,
) -> FileVersion:
    """Version of one file of a tracked dir: DVC's md5, unless the workspace content differs.

    With `remote` (the source's bytes are on a DVC remote), a file missing from the workspace is
    versioned by DVC's record alone: no request is made, the remote is read only if it runs.
    `st`: the file's stat, when the caller has just taken it (not of a link).
    """
    shown = os.path.join(tracked.path, relpath) if relpath else tracked.path
    path = os.path.join(root, shown)
    recorded = tracked.files.get(relpath)
    try:
        actual = statcache.digest(path, "md5", st=st)
    except FileNotFoundError:
        if recorded is None:
            return FileVersion("absent")
        if remote:
            return FileVersion(f"md5:{recorded}")
        raise InputError(
            f"{shown} is recorded by DVC ({tracked.source}) but missing from the workspace",
            hint=f"run `dvc checkout {tracked.path}` (or `dvc pull {tracked.path}` if the cache is empty)",
        ) from None
    if actual == recorded:
        return FileVersion(f"md5:{recorded}")
    where = Path(path).relative_to(root)
    if recorded is None:
        if tracked.missing_manifest:  # DVC has a record we cannot read: one warning for the directory
            return FileVersion(f"md5:{actual}", tracked.missing_warning)
        return FileVersion(f"md5:{actual}", f"{where} is not committed to DVC: run `dvc add {tracked.path}`")
    return FileVersion(
        f"md5:{actual}",
        f"{where} differs from what DVC recorded ({tracked.source}): using its real content; "
        f"run `dvc add {tracked.path}` (or `dvc commit`) to version it",
    )
