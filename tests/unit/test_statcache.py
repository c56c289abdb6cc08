"""The stat cache: files hashed at once on every core give what hashing them one by one gives; a
file changed moments before its hash is never recorded."""

from __future__ import annotations

import hashlib
import os

from skipwise.store import statcache
from skipwise.store.statcache import StatCache


def _files(tmp_path, n: int, size: int) -> list:
    out = []
    for i in range(n):
        p = tmp_path / "raw" / f"{i:03d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(os.urandom(64) * (size // 64))
        out.append(p)
    return out


def test_files_hashed_at_once_are_recorded_as_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setattr(statcache, "RACY_NS", 0)  # files written just now count as settled
    monkeypatch.setattr(statcache, "_THREADED_BYTES", 0)
    monkeypatch.setattr(statcache, "_THREADED_FILE_BYTES", 0)
    monkeypatch.setattr(statcache, "_cpus", lambda: 4)  # threads, whatever this machine has
    paths = _files(tmp_path, 6, 1 << 20)
    cache = StatCache(tmp_path / "stat.db", base=tmp_path)
    cache.digest_all([(str(p), os.lstat(p)) for p in paths], "md5")
    assert cache.hashed_bytes == 6 << 20
    for p in paths:  # now known: `digest` reads nothing more, and answers the file's md5
        assert cache.known(p, "md5", os.stat(p)) == hashlib.md5(p.read_bytes()).hexdigest()
        assert cache.digest(p, "md5") == hashlib.md5(p.read_bytes()).hexdigest()
    assert cache.hashed_bytes == 6 << 20
    # ... and another process's cache reads them from the file
    assert StatCache(tmp_path / "stat.db", base=tmp_path).known(paths[0], "md5", os.stat(paths[0])) is not None


def test_a_file_that_moved_since_its_stat_is_not_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(statcache, "RACY_NS", 0)  # files written just now count as settled
    monkeypatch.setattr(statcache, "_THREADED_BYTES", 0)
    monkeypatch.setattr(statcache, "_THREADED_FILE_BYTES", 0)
    monkeypatch.setattr(statcache, "_cpus", lambda: 4)  # threads, whatever this machine has
    a, b = _files(tmp_path, 2, 1 << 16)
    stale = os.lstat(a)
    a.write_bytes(b"edited after the stat was taken")  # size (and mtime, ctime) move
    cache = StatCache(tmp_path / "stat.db", base=tmp_path)
    cache.digest_all([(str(a), stale), (str(b), os.lstat(b))], "md5")
    assert cache.recorded(a, "md5") is None  # left to `digest`, which hashes what is there now
    assert cache.digest(a, "md5") == hashlib.md5(b"edited after the stat was taken").hexdigest()
    assert cache.recorded(b, "md5") is not None


def test_small_batches_are_left_to_digest(tmp_path):
    paths = _files(tmp_path, 3, 1 << 10)  # 3 KB in all: below the threaded thresholds
    cache = StatCache(tmp_path / "stat.db", base=tmp_path)
    cache.digest_all([(str(p), os.lstat(p)) for p in paths], "md5")
    assert cache.hashed_bytes == 0 and all(cache.recorded(p, "md5") is None for p in paths)


def test_a_file_changed_moments_before_its_hash_is_used_but_not_recorded(tmp_path, monkeypatch):
    """Where the kernel stamps files from a coarse clock, a second same-size write in the same tick
    keeps the stamp: a digest taken less than `RACY_NS` after the file's change must not vouch for
    it later. It is still the answer now, and recorded once the file is older."""
    monkeypatch.setattr(statcache, "_THREADED_BYTES", 0)
    monkeypatch.setattr(statcache, "_THREADED_FILE_BYTES", 0)
    monkeypatch.setattr(statcache, "_cpus", lambda: 4)
    paths = _files(tmp_path, 2, 1 << 16)
    md5 = [hashlib.md5(p.read_bytes()).hexdigest() for p in paths]
    first, last = sorted(os.stat(p).st_ctime_ns for p in paths)
    cache = StatCache(tmp_path / "stat.db", base=tmp_path)
    monkeypatch.setattr(statcache.time, "time_ns", lambda: first + statcache.RACY_NS - 1)
    cache.digest_all([(str(p), os.lstat(p)) for p in paths], "md5")
    assert cache.hashed_bytes == 2 << 16 and all(cache.recorded(p, "md5") is None for p in paths)
    assert [cache.digest(p, "md5") for p in paths] == md5
    assert cache.hashed_bytes == 4 << 16 and all(cache.recorded(p, "md5") is None for p in paths)
    monkeypatch.setattr(statcache.time, "time_ns", lambda: last + statcache.RACY_NS)
    assert [cache.digest(p, "md5") for p in paths] == md5
    assert all(cache.recorded(p, "md5") is not None for p in paths)
    assert [cache.digest(p, "md5") for p in paths] == md5 and cache.hashed_bytes == 6 << 16
