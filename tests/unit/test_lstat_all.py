"""`lstat_all`, the stat pass of a remembered plan: the same answer as `os.lstat` of each path,
whatever the paths (absolute or relative, under links, missing, interleaved folders)."""

from __future__ import annotations

import os
from array import array
from pathlib import Path

from skipwise.engine.settled import _MISSING, lstat_all


def _lstat(path: str) -> tuple[int, ...]:
    try:
        st = os.lstat(path)
    except OSError:
        return _MISSING
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def test_lstat_all_says_what_lstat_says(tmp_path: Path, monkeypatch) -> None:
    base = tmp_path / "project"
    for rel in ("data/f/a/k1/manifest.json", "data/f/a/k1/out.parquet", "data/f/a/k2/manifest.json", "top.toml"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(rel)
    (base / "data/f/linked").symlink_to(base / "data/f/a")  # a folder reached through a link
    (base / "data/f/a/k2/dangling").symlink_to(base / "nowhere")  # a link's own stat, not its target's
    (tmp_path / "outside.txt").write_text("x")
    rels = [
        "data/f/a/k1/manifest.json",
        "data/f/a/k1/out.parquet",
        "data/f/a/k2/manifest.json",
        "data/f/a/k2/out.parquet",  # missing
        "data/f/a/k2/dangling",
        "data/g/b/k1/manifest.json",  # a folder that does not exist
        "top.toml",
        "data",
        "data/f/linked/k1/manifest.json",
        "data/f/a/k1/manifest.json",  # again, after other folders
        "../outside.txt",
    ]
    expected = array("q", [v for rel in rels for v in _lstat(os.path.join(base, rel))])
    absolute = [os.path.join(base, rel) for rel in rels]
    assert lstat_all(absolute) == expected
    assert expected[3 * 4 : 4 * 4].tolist() == list(_MISSING) and expected[4 * 4] != -1
    monkeypatch.chdir(base)
    assert lstat_all(rels) == expected  # relative to the working folder
