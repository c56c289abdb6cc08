"""DVC's configuration, from .dvc/config and .dvc/config.local (read as text, no dvc import):
where its cache is, and its remotes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from skipwise.core.errors import ConfigError


def _sections(root: Path) -> dict[str, dict[str, str]]:
    """Every section of .dvc/config then .dvc/config.local (the local file wins, as in DVC):
    section name (``core``, ``cache``, ``remote "storage"``) -> key -> value."""
    dvc = Path(root) / ".dvc"
    out: dict[str, dict[str, str]] = {}
    for name in ("config", "config.local"):
        try:
            text = (dvc / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                # DVC writes ['remote "storage"']: outer quotes around the whole name.
                section = line[1:-1].strip().strip("'").strip()
            elif section and "=" in line and not line.startswith(("#", ";")):
                key, _, value = line.partition("=")
                out.setdefault(section, {})[key.strip()] = value.strip().strip("'\"")
    return out


def dvc_cache_dirs(root: Path) -> tuple[Path, ...]:
    """DVC's cache folders for the project at `root`: `.dvc/cache` plus a `[cache] dir` set in config.

    Workspace files may be links into the cache (cache.type = symlink / hardlink), so reads that
    resolve there are legitimate. A relative `dir` is relative to the config file's folder, as in DVC.
    """
    dvc = Path(root) / ".dvc"
    out = [dvc / "cache"]
    value = os.path.expanduser(_sections(root).get("cache", {}).get("dir", ""))
    if value:
        out.append(Path(value) if os.path.isabs(value) else dvc / value)
    return tuple(out)


@dataclass(frozen=True)
class DvcRemote:
    """One DVC remote: its name, URL, and the S3 settings DVC keeps for it (never credentials)."""

    name: str
    url: str
    endpointurl: str = ""
    region: str = ""

    def object_url(self, md5: str) -> str:
        """Where DVC 3 keeps the object with this md5 (``abcd...`` or ``abcd....dir``):
        ``<url>/files/md5/ab/cd...``."""
        return f"{self.url.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"


def dvc_remote(root: Path, name: str | None = None) -> DvcRemote:
    """The DVC remote `name` of the project at `root` (default: ``core.remote``).

    ConfigError naming .dvc/config and the fix when there is no such remote.
    """
    sections = _sections(root)
    wanted = name or sections.get("core", {}).get("remote", "")
    if not wanted:
        raise ConfigError(
            "no default DVC remote (core.remote) is set",
            location=".dvc/config",
            hint='run `dvc remote add -d <name> s3://bucket/path`, or pass remote="<name>" to sw.dvc_source',
        )
    section = sections.get(f'remote "{wanted}"')
    if section is None or not section.get("url"):
        known = sorted(s[len('remote "') : -1] for s in sections if s.startswith('remote "'))
        raise ConfigError(
            f"no DVC remote named {wanted!r} (known: {', '.join(known) or 'none'})",
            location=".dvc/config",
            hint=f"run `dvc remote add {wanted} s3://bucket/path`, or name one of the known remotes",
        )
    url = section["url"]
    if not os.path.isabs(url) and "://" not in url:  # a local remote relative to .dvc/, as in DVC
        url = str((Path(root) / ".dvc" / url).resolve())
    return DvcRemote(wanted, url, section.get("endpointurl", ""), section.get("region", ""))
