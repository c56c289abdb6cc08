"""`lstat_all`, the stat pass of a remembered plan: the same answer as `os.lstat` of each path,
whatever the paths (absolute or relative, under links, missing, interleaved folders), and whether
the list is shared with helper processes or not, a helper failing or never answering included."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path

import pytest
from skipwise.store import stats
from skipwise.store.stats import MISSING as _MISSING
from skipwise.store.stats import lstat_all


def _lstat(path: str) -> tuple[int, ...]:
    try:
        st = os.lstat(path)
    except OSError:
        return _MISSING
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _project(tmp_path: Path) -> tuple[Path, list[str]]:
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
    return base, rels


def test_lstat_all_says_what_lstat_says(tmp_path: Path, monkeypatch) -> None:
    base, rels = _project(tmp_path)
    expected = array("q", [v for rel in rels for v in _lstat(os.path.join(base, rel))])
    absolute = [os.path.join(base, rel) for rel in rels]
    assert lstat_all(absolute) == expected
    assert expected[3 * 4 : 4 * 4].tolist() == list(_MISSING) and expected[4 * 4] != -1
    assert lstat_all(rels, str(base)) == expected  # relative to a root
    assert lstat_all(rels, str(base / "nowhere")) == array("q", list(_MISSING) * len(rels))
    monkeypatch.chdir(base)
    assert lstat_all(rels) == expected  # relative to the working folder


def _shared(monkeypatch, processes: int) -> None:
    """Share even a short list between `processes` processes, whatever this machine's CPU count."""
    monkeypatch.setattr(stats, "PARALLEL_FROM", 2)
    monkeypatch.setattr(stats.os, "sched_getaffinity", lambda pid: set(range(processes)))


def test_a_list_shared_with_helpers_gives_the_same_answer(tmp_path: Path, monkeypatch) -> None:
    base, rels = _project(tmp_path)
    paths = [os.path.join(base, rel) for rel in rels] * 7  # 77 paths: uneven shares
    expected = array("q", [v for p in paths for v in _lstat(p)])
    assert stats._processes(len(paths)) == 1  # short lists stay in this process
    for n in (2, 3, 4):
        _shared(monkeypatch, n)
        assert stats._processes(len(paths)) == n
        assert lstat_all(paths) == expected
        with stats.StatPass(paths) as taking:  # the real helpers' own answers, all of them
            deadline = time.monotonic() + 30
            while any(s.answered() < s.end - s.start for s in taking.shares) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [s.answered() >= s.end - s.start for s in taking.shares] == [True] * (n - 1)
            assert taking.result() == expected
        with stats.StatPass(rels * 7, str(base)) as taking:  # relative to a root, in the helpers too
            deadline = time.monotonic() + 30
            while any(s.answered() < s.end - s.start for s in taking.shares) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert taking.result() == expected


def _fake_helper(code: str) -> stats._Helper:
    """A helper process running `code` instead of the real one, its answers in a temporary file."""
    answers = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=answers)
    return stats._Helper(process, answers)


def test_a_failed_helper_leaves_its_share_here(tmp_path: Path, monkeypatch) -> None:
    base, rels = _project(tmp_path)
    paths = [os.path.join(base, rel) for rel in rels] * 3
    expected = array("q", [v for p in paths for v in _lstat(p)])
    _shared(monkeypatch, 3)

    # a helper that dies after a partial answer (part of one path's record)
    code = "import sys; sys.stdout.buffer.write(bytes(8)); sys.exit(3)"
    monkeypatch.setattr(stats, "_start", lambda chunk, root: _fake_helper(code))
    assert lstat_all(paths) == expected
    monkeypatch.setattr(stats, "_start", lambda chunk, root: None)  # no helper could start
    assert lstat_all(paths) == expected
    monkeypatch.setattr(stats.sys, "executable", "")  # no interpreter to start one with
    assert stats._processes(10**6) == 1


def test_nothing_waits_for_a_slow_helper(tmp_path: Path, monkeypatch) -> None:
    """A helper that never answers: its share is taken here, and it is stopped when the pass ends."""
    base, rels = _project(tmp_path)
    paths = [os.path.join(base, rel) for rel in rels] * 300
    expected = array("q", [v for p in paths for v in _lstat(p)])
    _shared(monkeypatch, 2)
    started: list[stats._Helper] = []

    def asleep(chunk: list[str], root: str | None) -> stats._Helper:
        started.append(_fake_helper("import time; time.sleep(60)"))
        return started[-1]

    monkeypatch.setattr(stats, "_start", asleep)
    t = time.monotonic()
    assert lstat_all(paths) == expected
    assert time.monotonic() - t < 30
    assert len(started) == 1 and started[0].process.returncode is not None  # stopped, not left running
    assert stats._running == [0]


def test_what_a_helper_answered_is_used_and_the_rest_taken_here(tmp_path: Path, monkeypatch) -> None:
    """A helper that answered the first half of its share, with the real answers, then stopped:
    the pass keeps those and takes the rest; meanwhile this process did other work."""
    base, rels = _project(tmp_path)
    paths = [os.path.join(base, rel) for rel in rels] * 200
    expected = array("q", [v for p in paths for v in _lstat(p)])
    _shared(monkeypatch, 2)
    half = tmp_path / "half.bin"  # in a file: as an argument it could pass the kernel's 128 KiB limit
    half.write_bytes(expected[: len(expected) // 2].tobytes())
    code = f"import sys; sys.stdout.buffer.write(open({str(half)!r}, 'rb').read())"
    monkeypatch.setattr(stats, "_start", lambda chunk, root: _fake_helper(code))
    with stats.StatPass(paths) as taking:
        time.sleep(0.5)  # the helper answers meanwhile
        assert taking.shares[0].answered() == len(paths) // 2
        assert taking.result() == expected
    assert stats._running == [0]


def test_a_pass_left_early_stops_its_helpers(tmp_path: Path, monkeypatch) -> None:
    base, rels = _project(tmp_path)
    paths = [os.path.join(base, rel) for rel in rels] * 10
    _shared(monkeypatch, 3)
    with pytest.raises(KeyError), stats.StatPass(paths) as taking:
        helpers = [s.helper for s in taking.shares]
        assert len(helpers) == 2 and all(h is not None for h in helpers) and stats._running == [2]
        raise KeyError("something else failed")
    assert all(h.process.returncode is not None for h in helpers if h is not None) and stats._running == [0]


def test_helpers_share_the_list_beside_other_threads(tmp_path: Path, monkeypatch) -> None:
    """Helpers are started without fork: a thread of this process (Dagster runs some) changes nothing."""
    base, rels = _project(tmp_path)
    paths = [os.path.join(base, rel) for rel in rels] * 5
    expected = array("q", [v for p in paths for v in _lstat(p)])
    _shared(monkeypatch, 2)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert stats._processes(len(paths)) == 2
        assert lstat_all(paths) == expected
    finally:
        stop.set()
        other.join()


def test_stat_all_follows_links(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    paths = [str(tmp_path / n) for n in ("file", "link", "dangling")]
    got = stats.stat_all(paths)
    assert got[0:4] == got[4:8] and got[0] == os.stat(paths[0]).st_ino  # the link as its target
    assert got[8:12].tolist() == list(_MISSING) and lstat_all(paths)[4:8] != got[4:8]
