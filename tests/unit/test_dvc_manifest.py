"""Reading DVC's own files: per-file md5s without reading data, and workspace drift."""

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from skipwise.adapters.dvc.manifest import file_version, read_tracked_dir
from skipwise.core.errors import InputError
from skipwise.store import statcache
from skipwise.store.statcache import StatCache


def settle() -> None:
    """Let files just written become as old as a real input is when a plan hashes it (`dvc add`
    came between): the stat cache records no digest of a file changed moments before."""
    time.sleep(statcache.RACY_NS / 1e9)


def make_repo(root: Path, files: dict[str, bytes]) -> dict[str, str]:
    """A DVC-shaped repo: data/raw/x/<files>, x.dvc with the .dir hash, the .dir manifest in the cache."""
    d = root / "data" / "raw" / "x"
    d.mkdir(parents=True)
    md5s = {}
    for name, data in files.items():
        (d / name).write_bytes(data)
        md5s[name] = hashlib.md5(data).hexdigest()
    manifest = json.dumps([{"md5": m, "relpath": n} for n, m in sorted(md5s.items())]).encode()
    h = hashlib.md5(manifest).hexdigest()
    cache = root / ".dvc" / "cache" / "files" / "md5" / h[:2]
    cache.mkdir(parents=True)
    (cache / f"{h[2:]}.dir").write_bytes(manifest)
    (root / "data" / "raw" / "x.dvc").write_text(f"outs:\n- md5: {h}.dir\n  hash: md5\n  path: x\n")
    settle()
    return md5s


def test_versions_come_from_the_dir_manifest_and_drift_is_detected(tmp_path):
    md5s = make_repo(tmp_path, {"a.parquet": b"aaa", "b.parquet": b"bbb"})
    tracked = read_tracked_dir(tmp_path, "data/raw/x")
    assert tracked.files == md5s and tracked.source == "data/raw/x.dvc"
    cache = StatCache(tmp_path / "stat.db")
    assert file_version(tmp_path, tracked, "a.parquet", cache).version == f"md5:{md5s['a.parquet']}"
    (tmp_path / "data/raw/x/b.parquet").write_bytes(b"edited")
    v = file_version(tmp_path, tracked, "b.parquet", cache)
    assert v.version == f"md5:{hashlib.md5(b'edited').hexdigest()}" and "dvc add data/raw/x" in v.warning
    (tmp_path / "data/raw/x/new.parquet").write_bytes(b"new")
    assert "not committed to DVC" in file_version(tmp_path, tracked, "new.parquet", cache).warning
    assert file_version(tmp_path, tracked, "never.parquet", cache).version == "absent"


def test_recorded_but_missing_file_says_to_checkout(tmp_path):
    make_repo(tmp_path, {"a.parquet": b"aaa"})
    (tmp_path / "data/raw/x/a.parquet").unlink()
    with pytest.raises(InputError, match="dvc checkout data/raw/x"):
        file_version(tmp_path, read_tracked_dir(tmp_path, "data/raw/x"), "a.parquet", StatCache(tmp_path / "s.db"))


def test_unchanged_files_are_not_read_again(tmp_path):
    make_repo(tmp_path, {"a.parquet": b"a" * 10000})
    cache = StatCache(tmp_path / "stat.db")
    tracked = read_tracked_dir(tmp_path, "data/raw/x")
    file_version(tmp_path, tracked, "a.parquet", cache)
    again = StatCache(tmp_path / "stat.db")  # a new process
    file_version(tmp_path, tracked, "a.parquet", again)
    assert cache.hashed_bytes == 10000 and again.hashed_bytes == 0


def test_untracked_directory_has_no_record(tmp_path):
    assert read_tracked_dir(tmp_path, "data/raw/none").files == {}


def test_known_in_a_folder_says_what_known_says(tmp_path):
    """The stat cache's lookup by a folder and a relative path gives `known`'s answers, for plain
    names and for paths it must resolve (hidden names, `..`, `./`, doubled slashes)."""
    raw = tmp_path / "data" / "raw"
    (raw / "sub").mkdir(parents=True)
    rels = ["a.csv", "sub/b.csv", ".hidden", "sub/../a.csv", "./a.csv", "sub//b.csv", "missing.csv"]
    for rel in ("a.csv", "sub/b.csv", ".hidden"):
        (raw / rel).write_text(rel)
    settle()
    cache = StatCache(tmp_path / "stat.db", base=tmp_path)
    cache.digest(raw / "a.csv", "md5")
    cache.digest(raw / "sub" / "b.csv", "md5")
    cache.digest(raw / ".hidden", "md5")
    again = StatCache(tmp_path / "stat.db", base=tmp_path)  # a new process
    known = again.known_in(str(raw), "md5")
    for rel in rels:
        path = os.path.join(raw, rel)
        st = os.stat(path) if os.path.exists(path) else os.stat(raw / "a.csv")
        assert known(rel, st) == again.known(path, "md5", st), rel
    assert known("a.csv", os.stat(raw / "a.csv")) is not None
    (raw / "a.csv").write_text("A.csv")  # moved: not known
    assert known("a.csv", os.stat(raw / "a.csv")) is None
