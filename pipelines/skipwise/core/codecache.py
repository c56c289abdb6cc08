"""The cache file of code versions (`data/.skipwise/code.json`): a version is reused while
everything it was computed from is unchanged.

Each entry keeps, beside the version's fields, the checks `CodeFiles` gathered while computing it:
every file read (by inode, mtime, ctime and size, or by content when its stat could not be
trusted), every module lookup (a new file that would change how a name resolves invalidates
the entry), every package listed, every folder of resource files, the versions of the
distributions reached, and the fingerprint of the installed environment. Derived data: a lost,
torn or older-scheme file is an empty cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from skipwise.core import distributions
from skipwise.core.codefiles import CodeFiles, stat_key
from skipwise.core.hashing import sha256_bytes

_CACHE_SCHEME = 4

#: The fields of a cached version, as `CodeVersion` has them.
FIELDS = ("digest", "parts", "notes", "files", "resources")


class VersionCache:
    """Code versions of a root kept in `path`, validated through `files` (the index's own)."""

    def __init__(self, path: Path, files: CodeFiles) -> None:
        self.path = path
        self.files = files
        self._entries: dict[str, Any] | None = None  # the file's entries, read once
        self._unchanged: dict[str, bool] = {}

    def get(self, ref: str) -> dict[str, Any] | None:
        """The fields (`FIELDS`) of `ref`'s version, as `CodeVersion` takes them, when its entry is
        still valid; None when there is none, it is stale, or it is malformed."""
        if self._entries is None:
            self._entries = _read_cache(self.path)
        entry = self._entries.get(ref)
        if entry is None:
            return None
        try:
            if not self._still_valid(entry["check"]):
                return None
            return {
                "digest": entry["digest"],
                "parts": tuple((k, v) for k, v in entry["parts"]),
                "notes": tuple(entry["notes"]),
                "files": tuple((p, s) for p, s in entry["files"]),
                "resources": tuple((p, s) for p, s in entry["resources"]),
            }
        except (KeyError, TypeError, ValueError):
            return None

    def _still_valid(self, check: dict[str, Any]) -> bool:
        if check["env"] != distributions.environment():
            return False
        for top, (value, fast) in check["dists"].items():
            # cheap: only the fast path is asked again; what came from the metadata (yaml from
            # PyYAML) is covered by the environment's fingerprint
            if (
                (distributions.fast_distribution(top) != value)
                if fast
                else (distributions.fast_distribution(top) is not None)
            ):
                return False
        for name, found in check["probes"].items():
            now = self.files.find(name)
            if (list(now) if now else None) != found:
                return False
        if any(not self._file_unchanged(rel, expected) for rel, expected in check["files"].items()):
            return False
        if any(self.files.package_sources(top) != listing for top, listing in check["walks"].items()):
            return False
        # a file added beside reached code (or removed) counts
        return all(
            self.files.list_resources(folder, recursive) == listing for folder, recursive, listing in check["folders"]
        )

    def _file_unchanged(self, rel: str, expected: list[int] | str) -> bool:
        if rel not in self._unchanged:
            path = self.files.root / rel
            try:
                if isinstance(expected, str):  # racy when stored: compare contents
                    self._unchanged[rel] = sha256_bytes(path.read_bytes()) == expected
                else:
                    self._unchanged[rel] = stat_key(os.stat(path)) == expected
            except OSError:
                self._unchanged[rel] = False
        return self._unchanged[rel]

    def put(self, ref: str, fields: dict[str, Any], dists: dict[str, list[str | bool]]) -> None:
        """Store `ref`'s version (`FIELDS`), with the checks of everything `files` found and read so
        far and `dists` (import name -> [recorded version, from the fast path])."""
        check = {
            "env": distributions.environment(),
            # every lookup the index made (a superset of this version's): a new file that would
            # change how a name resolves invalidates the entry
            "probes": {name: list(found) if found else None for name, found in self.files.found.items()},
            "files": dict(self.files.checks),
            "walks": dict(self.files.walks),
            "folders": list(self.files.listings.values()),
            "dists": dict(dists),
        }
        entries = _read_cache(self.path)  # other processes may have added entries meanwhile
        entries[ref] = {**{k: fields[k] for k in FIELDS}, "check": check}
        _write_cache(self.path, entries)
        self._entries = entries


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        entries = data.get("entries") if isinstance(data, dict) and data.get("scheme") == _CACHE_SCHEME else None
        if isinstance(entries, dict):
            return entries
    except (OSError, ValueError):
        return {}  # unreadable or torn: an empty cache
    return {}


def _write_cache(path: Path, entries: dict[str, Any]) -> None:
    # Derived data: a lost or torn write only costs a recomputation (a torn file reads as empty).
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"scheme": _CACHE_SCHEME, "entries": entries}))
        os.replace(tmp, path)
    except OSError:
        return  # an unwritable cache only means the next plan recomputes code versions
