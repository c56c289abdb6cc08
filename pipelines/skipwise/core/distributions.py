"""Installed distributions: which are on sys.path (from their metadata folders' names), which
distributions provide an import name, and their versions: what an installed module's code version
is made of (codepaths.locate says which modules are installed files). Standard library only.

The import-name -> distributions map costs about 0.3 s to read from every distribution's metadata,
so a process can keep it in a file (`keep_providers_in`), valid while sys.path's metadata folders
are as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping

from skipwise.core.hashing import digest

_INSTALLED: dict[str, tuple[str, str, str]] | None = None  # normalized name -> (name, version, folder)
_ENVIRONMENT: str | None = None
_VERSIONS: dict[str, tuple[str, str]] = {}
_PROVIDERS: Mapping[str, list[str]] | None = None


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def installed() -> dict[str, tuple[str, str, str]]:
    """Every distribution on sys.path, from its metadata folder's name (one listdir per entry)."""
    global _INSTALLED, _ENVIRONMENT
    if _INSTALLED is None:
        found: dict[str, tuple[str, str, str]] = {}
        folders = set()
        # sys.path[0] is the script's folder or the working directory: it differs between entry
        # points (CLI, pytest, python -c), so it stays out of the fingerprint (the versions each
        # cache entry used are checked one by one as well)
        volatile = sys.path[0] if sys.path and not sys.flags.safe_path else None
        for i, entry in enumerate(sys.path):
            try:
                names = os.listdir(entry or ".")
            except OSError:
                continue
            if i == 0 and entry == volatile:
                # metadata in the working folder (a project's own *.egg-info) is not what is
                # installed: counting it would make versions depend on where a command runs
                continue
            for n in names:
                if n.endswith((".dist-info", ".egg-info")):
                    folders.add(n)
                    dist, _, rest = n.rsplit(".", 1)[0].partition("-")
                    folder = os.path.join(entry or ".", n)
                    version = rest.split("-")[0] or _metadata_file_version(folder)
                    found.setdefault(_norm(dist), (dist, version, folder))
        _INSTALLED = found
        _ENVIRONMENT = digest([list(sys.version_info[:3]), sorted(folders)])
    return _INSTALLED


def _metadata_file_version(folder: str) -> str:
    """The Version: line of a metadata folder whose name carries none (a bare `x.egg-info`)."""
    for name in ("PKG-INFO", "METADATA"):
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip() or "unknown"
                    if not line.strip():
                        break
        except OSError:
            continue
    return "unknown"


def environment() -> str:
    """A digest of the Python version and the installed distributions (names and versions)."""
    installed()
    assert _ENVIRONMENT is not None  # set with _INSTALLED
    return _ENVIRONMENT


def fast_distribution(top: str) -> str | None:
    """ "dist==version" when import name `top` is itself an installed distribution's name, else None."""
    found = installed().get(_norm(top))
    return f"{found[0]}=={found[1]}" if found else None


def distribution_versions(top: str) -> tuple[str, str]:
    """("dist==version,..." of every distribution providing import name `top`, a note or "").

    Only for modules found among installed files (`locate`): an editable install is followed as
    source instead, so its version number never stands for its code."""
    if top not in _VERSIONS:
        known = installed()
        if _norm(top) in known:  # fast path: the import name is the distribution's name
            providers = [known[_norm(top)]]
        else:  # PyYAML provides yaml: ask the metadata (slow, so only then, and once per process)
            names = sorted(set(_providers().get(top, ())))
            providers = [known.get(_norm(n)) or (n, _metadata_version(n), "") for n in names]
        if not providers:
            _VERSIONS[top] = (f"{top}==unknown", f"{top}: not installed by any distribution — it counts as unknown")
        else:
            _VERSIONS[top] = (",".join(sorted(f"{name}=={version}" for name, version, _ in providers)), "")
    return _VERSIONS[top]


#: where `_providers` keeps its answer between processes (`keep_providers_in`); None: not kept
_PROVIDERS_FILE: str | None = None


def keep_providers_in(path: str | os.PathLike[str]) -> None:
    """Keep the import-name -> distributions map in the file at `path`, valid while every entry of
    sys.path is as it was (reading every distribution's metadata for it costs about 0.3 s a process)."""
    global _PROVIDERS_FILE
    _PROVIDERS_FILE = os.fspath(path)


def _providers() -> Mapping[str, list[str]]:
    global _PROVIDERS
    if _PROVIDERS is None:
        key = _path_key()
        _PROVIDERS = _kept_providers(key)
        if _PROVIDERS is None:
            from importlib import metadata

            _PROVIDERS = metadata.packages_distributions()
            _keep_providers(key, _PROVIDERS)
    return _PROVIDERS


def _path_key() -> str:
    """What the map depends on: the interpreter and, in each sys.path entry, the name, inode and
    modification time of every distribution's metadata folder (installing, upgrading or removing a
    distribution adds or replaces one)."""
    parts: list[object] = [sys.executable, sys.version]
    for entry in sys.path:
        folder = entry or "."
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith((".dist-info", ".egg-info")))
        except OSError:
            parts.append([entry, None])
            continue
        found: list[object] = [entry]
        for name in names:
            try:
                st = os.stat(os.path.join(folder, name))
                found.append([name, st.st_ino, st.st_mtime_ns])
            except OSError:
                found.append([name, None])
        parts.append(found)
    return digest(parts)


def _kept_providers(key: str) -> dict[str, list[str]] | None:
    if _PROVIDERS_FILE is None:
        return None
    try:
        with open(_PROVIDERS_FILE, encoding="utf-8") as fh:
            kept = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("key") != key or not isinstance(kept.get("providers"), dict):
        return None
    return {str(k): [str(d) for d in v] for k, v in kept["providers"].items() if isinstance(v, list)}


def _keep_providers(key: str, providers: Mapping[str, list[str]]) -> None:
    if _PROVIDERS_FILE is None:
        return
    tmp = f"{_PROVIDERS_FILE}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(_PROVIDERS_FILE) or ".", exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"key": key, "providers": {k: list(v) for k, v in providers.items()}}, fh)
        os.replace(tmp, _PROVIDERS_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a cache: the next process asks the metadata again


def _metadata_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def is_editable(folder: str) -> bool:
    """Whether a metadata folder is an editable install's (PEP 610 `direct_url.json`)."""
    try:
        with open(os.path.join(folder, "direct_url.json"), encoding="utf-8") as fh:
            return bool(json.load(fh).get("dir_info", {}).get("editable"))
    except (OSError, ValueError, AttributeError):
        return False
