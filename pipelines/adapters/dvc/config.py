"""Where DVC keeps its cache, from .dvc/config and .dvc/config.local (read as text, no dvc import)."""

from __future__ import annotations

import os
from pathlib import Path


def dvc_cache_dirs(root: Path) -> tuple[Path, ...]:
    """DVC's cache folders for the project at `root`: `.dvc/cache` plus a `[cache] dir` set in config.

    Workspace files may be links into the cache (cache.type = symlink / hardlink), so reads that
    resolve there are legitimate. A relative `dir` is relative to the config file's folder, as in DVC.
    """
    dvc = Path(root) / ".dvc"
    out = [dvc / "cache"]
    for name in ("config", "config.local"):
        try:
            text = (dvc / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip().strip("'\"").strip()
            elif section == "cache" and "=" in line:
                key, _, value = line.partition("=")
                value = os.path.expanduser(value.strip().strip("'\""))
                if key.strip() == "dir" and value:
                    out.append(Path(value) if os.path.isabs(value) else dvc / value)
    return tuple(out)
