"""Containment: the store reads and writes only inside its root, whatever symlinks say.

A partition folder (or a layer, or an asset folder) that is a symlink to somewhere else would make
outputs, manifests, locks and the temporary-file sweep act outside the project. Every path the
store touches is resolved first (`os.path.realpath` follows every link, also of parts that do not
exist yet) and refused unless it stays under the resolved root. A root that is itself a link (a
`data/` folder on a bigger disk) is fine: the root is resolved too.
"""

from __future__ import annotations

import os
from pathlib import Path

from skipwise.core.errors import InputError


def is_inside(path: str | Path, roots: tuple[str, ...]) -> bool:
    """True when `path`, with every symlink resolved, is one of `roots` or below one (roots resolved)."""
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def ensure_inside(path: str | Path, root: str, what: str = "") -> Path:
    """`path` if it resolves inside `root` (already resolved); else an InputError naming the link."""
    if is_inside(path, (root,)):
        return Path(path)
    raise InputError(
        f"{what or path} resolves to {os.path.realpath(path)}, outside the data root {root}: "
        "skipwise never writes, reads or deletes through a symlink that leaves it",
        location=str(_first_link(Path(path)) or path),
        hint="replace the symlink with a real folder (to put data elsewhere, link the whole data/ folder)",
    )


def _first_link(path: Path) -> Path | None:
    for p in reversed((path, *path.parents)):
        if p.is_symlink():
            return p
    return None
