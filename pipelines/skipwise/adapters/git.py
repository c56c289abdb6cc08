"""The project's git state, read from `.git` as files (no subprocess on the hot path): the commit
checked out, and, for `skipwise gc`, the commits that branches and tags point at."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{40}$")


def _git_dir(root: Path) -> Path | None:
    git = Path(root) / ".git"
    if git.is_dir():
        return git
    if git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = git.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            d = Path(text.split(":", 1)[1].strip())
            return d if d.is_absolute() else (Path(root) / d).resolve()
    return None


def head_commit(root: Path) -> str | None:
    """The commit checked out at `root` (None outside git, or before the first commit)."""
    git = _git_dir(root)
    if git is None:
        return None
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if _SHA.match(head):
        return head  # detached
    if not head.startswith("ref: "):
        return None
    ref = head[5:].strip()
    common = git
    if (git / "commondir").is_file():  # a linked worktree keeps its refs in the main repository
        common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for base in (git, common):
        try:
            sha = (base / ref).read_text(encoding="utf-8").strip()
            if _SHA.match(sha):
                return sha
        except OSError:
            pass  # not a loose ref here: the next place, then packed-refs
    try:
        for line in (common / "packed-refs").read_text(encoding="utf-8").splitlines():
            parts = line.split(" ", 1)
            if len(parts) == 2 and parts[1].strip() == ref and _SHA.match(parts[0]):
                return parts[0]
    except OSError:
        pass  # no packed refs: the branch has no commit yet
    return None


def ref_commits(root: Path) -> dict[str, str]:
    """commit -> the first branch or tag name that points at it (`git for-each-ref`); {} outside git."""
    try:
        out = subprocess.run(
            [
                "git",
                "for-each-ref",
                "--format=%(objectname) %(*objectname) %(refname:short)",
                "refs/heads",
                "refs/tags",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, str] = {}
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        parts = line.split(" ")
        if len(parts) == 3:
            obj, peeled, name = parts  # an annotated tag points at the commit `peeled`
            found.setdefault(peeled or obj, name)
        elif len(parts) == 2:
            found.setdefault(parts[0], parts[1])
    return found
