"""The store's own safety: a stat cache that a restored mtime or a copied project cannot fool, a
ledger that survives damaged files and keeps a killed run's records, and no symlink out of the root."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from skipwise.core.cost import CostVector, LedgerRecord
from skipwise.core.errors import InputError
from skipwise.core.manifest import Manifest
from skipwise.store.ledger import Ledger
from skipwise.store.partitions import LocalPartitionStore
from skipwise.store.statcache import StatCache


def _record(i: int, run: str = "r1") -> LedgerRecord:
    return LedgerRecord(
        ts="2026-03-01T10:00:00.000000Z",
        run_id=run,
        asset="a",
        partition=f"k{i}",
        cache="miss",
        reason="missing",
        fingerprint=f"fp{i}",
        tags={},
        cost=CostVector(cpu_seconds=0.5, usd=0.25),
    )


def test_a_same_size_edit_with_the_mtime_restored_is_hashed_again(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"aaaa")
    cache = StatCache(tmp_path / "stat.db", base=tmp_path)
    first = cache.digest(f, "md5")
    st = f.stat()
    f.write_bytes(b"bbbb")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (f.stat().st_size, f.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert StatCache(tmp_path / "stat.db", base=tmp_path).digest(f, "md5") != first


def test_a_copied_tree_never_reuses_the_originals_entries(tmp_path):
    a = tmp_path / "a"
    (a / "data").mkdir(parents=True)
    (a / "data" / "x.bin").write_bytes(b"original")
    StatCache(a / "stat.db", base=a).digest(a / "data" / "x.bin", "md5")
    b = tmp_path / "b"
    shutil.copytree(a, b, copy_function=shutil.copy2)  # the cache file comes along, mtimes kept
    (b / "data" / "x.bin").write_bytes(b"copyedit")  # same size
    os.utime(b / "data" / "x.bin", ns=(0, (a / "data" / "x.bin").stat().st_mtime_ns))
    cache = StatCache(b / "stat.db", base=b)
    import hashlib

    assert cache.digest(b / "data" / "x.bin", "md5") == hashlib.md5(b"copyedit").hexdigest()
    assert cache.hashed_bytes == 8


def test_a_damaged_ledger_file_is_skipped_with_a_warning_naming_it(tmp_path):
    warnings: list[str] = []
    ledger = Ledger(tmp_path, warn=warnings.append)
    good = ledger.append([_record(i) for i in range(10)])
    torn = ledger.append([_record(i, run="r2") for i in range(10)])
    torn.write_bytes(torn.read_bytes()[:-20])  # the last line loses its end
    rows = ledger.read()
    assert len(rows) == 19
    assert len(warnings) == 1 and str(torn) in warnings[0] and "skipped 1 damaged line" in warnings[0]
    assert good.exists() and torn.read_bytes().count(b"\n") == 9  # nothing rewritten
    assert ledger.history_usd_per_partition("a") and ledger.spent_usd("2026-03-01") == pytest.approx(19 * 0.25)


def test_a_journal_keeps_every_record_written_before_a_kill(tmp_path):
    ledger = Ledger(tmp_path)
    j = ledger.journal("run-7")
    for i in range(5):
        j.write([_record(i, run="run-7")])  # as each partition commits; no close(): a kill
    lines = j.path.read_text().splitlines()
    assert [json.loads(line)["partition"] for line in lines] == [f"k{i}" for i in range(5)]
    assert len(ledger.read()) == 5


def test_a_journal_starts_a_new_file_when_the_day_changes(tmp_path):
    ledger = Ledger(tmp_path)
    with ledger.journal("r") as j:
        j.write([_record(0)])
        late = LedgerRecord(**{**_record(1).__dict__, "ts": "2026-03-02T00:00:01.000000Z"})
        j.write([late])
    assert sorted(p.parent.name for p in tmp_path.rglob("*.jsonl")) == ["2026-03-01", "2026-03-02"]
    assert len(ledger.read(since="2026-03-02")) == 1


def _store(root: Path) -> LocalPartitionStore:
    return LocalPartitionStore(root / "data", StatCache(root / "data" / ".skipwise" / "stat.db", base=root))


def test_the_store_refuses_a_partition_folder_linked_outside_and_touches_nothing_there(tmp_path):
    store = _store(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".x.parquet.tmp-1-ab").write_bytes(b"someone's file")
    (tmp_path / "data" / "features" / "f").mkdir(parents=True)
    (tmp_path / "data" / "features" / "f" / "2013-01-01").symlink_to(outside)
    for attempt in (
        lambda: store.write_output("features", "f", "2013-01-01", "fp", "parquet", b"x"),
        lambda: store.sweep_temp("features", "f", "2013-01-01"),
        lambda: store.lock("features", "f", "2013-01-01").__enter__(),
        lambda: store.read_manifest("features", "f", "2013-01-01"),
    ):
        with pytest.raises(InputError, match="outside the data root"):
            attempt()
    assert sorted(p.name for p in outside.iterdir()) == [".x.parquet.tmp-1-ab"]


def test_a_linked_layer_folder_is_refused_but_a_linked_data_root_is_fine(tmp_path):
    real = tmp_path / "bigdisk"
    real.mkdir()
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "data").symlink_to(real, target_is_directory=True)
    store = _store(tmp_path / "proj")
    name, sha, size = store.write_output("features", "f", "k1", "fp", "bin", b"ok")
    assert (real / "features" / "f" / "k1" / name).read_bytes() == b"ok"
    (real / "models").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InputError, match="outside the data root"):
        store.write_output("models", "m", "all", "fp", "bin", b"no")


def test_a_manifest_that_is_a_symlink_is_not_followed(tmp_path):
    store = _store(tmp_path)
    d = tmp_path / "data" / "features" / "f" / "k1"
    d.mkdir(parents=True)
    m = Manifest(
        asset="f",
        partition="k1",
        fingerprint="fp",
        code_version="c",
        params_digest="p",
        inputs={},
        output="fp.bin",
        output_hash="h",
        output_size=1,
    )
    (tmp_path / "elsewhere.json").write_text(m.to_json())
    (d / "manifest.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ValueError, match="never a link"):
        store.read_manifest("features", "f", "k1")


def test_raw_inputs_are_read_only_inside_the_read_roots(tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    root = tmp_path / "proj"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "a.parquet").symlink_to(tmp_path / "secret.txt")
    store = LocalPartitionStore(root / "data", StatCache(root / "s.db", base=root), read_roots=(root,))
    with pytest.raises(InputError, match="outside the project"):
        store.read_file(root / "data" / "raw" / "a.parquet")


@pytest.mark.parametrize("own", ["ledger", ".skipwise"])
def test_the_ledger_and_caches_are_never_written_through_a_link_out_of_the_data_root(tmp_path, own):
    from skipwise.core.spec import Graph
    from skipwise.engine.project import Project

    GRAPH = Graph((), ())

    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "proj" / "data").mkdir(parents=True)
    (tmp_path / "proj" / "data" / own).symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="outside the data root") as e:
        Project(tmp_path / "proj", GRAPH, params={})
    assert f"data/{own}" in str(e.value)
    assert list(outside.iterdir()) == []


def test_budget_history_reads_only_recent_day_folders_when_they_suffice(tmp_path):
    from skipwise.core.cost import utc_now_iso

    ledger = Ledger(tmp_path)
    old = ledger.append([_record(i) for i in range(30)])  # 2026-03-01: far older than a week
    now = utc_now_iso()
    ledger.append([LedgerRecord(**{**_record(i).__dict__, "ts": now, "cost": CostVector(usd=1.0)}) for i in range(25)])
    assert ledger.history_usd_per_partition("a") == [1.0] * 20
    assert old not in ledger._parsed  # the old day folder was never opened
    assert len(ledger.history_usd_per_partition("a", last=40)) == 40  # not enough recent ones: all days


def _empty_store(tmp_path: Path) -> LocalPartitionStore:
    root = tmp_path / "data"
    root.mkdir()
    return LocalPartitionStore(root, StatCache(tmp_path / "stat.db", base=tmp_path))


def test_a_lock_let_go_of_an_empty_new_partition_leaves_no_folder(tmp_path):
    store = _empty_store(tmp_path)
    with pytest.raises(RuntimeError), store.lock("features", "a", "2024-01-01"):
        assert (store.data_root / "features" / "a" / "2024-01-01" / ".lock").is_file()
        raise RuntimeError("the compute failed")
    assert list(store.data_root.iterdir()) == []  # nor the asset's or the layer's folder
    with store.lock("features", "a", "2024-01-01"):  # and the next one locks as before
        pass


def test_a_lock_never_removes_a_committed_partition_or_a_folder_it_did_not_make(tmp_path):
    store = _empty_store(tmp_path)
    with store.lock("features", "a", "k1"):
        out, sha, size = store.write_output("features", "a", "k1", "f" * 64, "json", b"{}")
        m = Manifest("a", "k1", "f" * 64, "c", "p", {}, out, sha, size)
        store.commit("features", "a", m)
    with pytest.raises(RuntimeError), store.lock("features", "a", "k1"):
        raise RuntimeError("a later compute failed")
    assert store.read_manifest("features", "a", "k1") == m
    with pytest.raises(RuntimeError), store.lock("features", "a", "k2"):
        store.write_output("features", "a", "k2", "e" * 64, "json", b"{}")
        raise RuntimeError("failed before its commit")
    assert (store.data_root / "features" / "a" / "k2" / f"{'e' * 64}.json").is_file()  # for gc to weigh
    empty = store.data_root / "features" / "a" / "k3"
    empty.mkdir()
    with store.lock("features", "a", "k3"):
        pass
    assert empty.is_dir()  # there before: not this lock's to remove


def test_a_waiter_on_a_lock_removed_with_its_folder_takes_the_new_one(tmp_path):
    import fcntl
    import threading

    store = _empty_store(tmp_path)
    lock = store.data_root / "features" / "a" / "k" / ".lock"
    order: list[str] = []
    first_in, waiter_started = threading.Event(), threading.Event()

    def waiter() -> None:
        waiter_started.set()
        with store.lock("features", "a", "k"):
            order.append("waiter")
            assert lock.is_file()  # a live lock file, not the removed one
            fd = os.open(lock, os.O_WRONLY)
            try:  # the flock at the path is held: a third process would wait
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)

    t = threading.Thread(target=waiter)
    with store.lock("features", "a", "k"):
        first_in.set()
        t.start()
        waiter_started.wait()
        import time

        time.sleep(0.2)  # the waiter is blocked on this lock's file
        order.append("first")
    t.join(10)
    assert order == ["first", "waiter"]
    assert not lock.parent.exists()  # the waiter, too, let go of an empty partition


def test_a_stored_values_kept_version_has_no_colon_in_its_name_and_old_names_still_read(tmp_path):
    from skipwise.store.partitions import version_names

    sha_new, sha_old = "a" * 64, "b" * 64
    assert version_names(sha_new) == [f"versions/{sha_new}.json"]
    assert version_names(f"stored:{sha_new}") == [f"versions/stored-{sha_new}.json", f"versions/stored:{sha_new}.json"]
    assert version_names("../x") == [] and version_names("stored:../x") == [] and version_names("") == []

    store = _empty_store(tmp_path)
    with store.lock("reports", "plain", "k"):
        out, sha, size = store.write_output("reports", "plain", "k", sha_new, "json", b"{}")
        new = Manifest("plain", "k", f"stored:{sha_new}", "", "", {}, out, sha, size)
        store.commit("reports", "plain", new)
    folder = store.data_root / "reports" / "plain" / "k"
    assert not [p for p in folder.rglob("*") if ":" in p.name]
    assert (folder / "versions" / f"stored-{sha_new}.json").is_file()
    assert store.read_version("reports", "plain", "k", f"stored:{sha_new}") == new

    # A store written before: the kept version named `stored:<sha256>.json` is found by its fingerprint.
    old = Manifest("plain", "k", f"stored:{sha_old}", "", "", {}, f"{sha_old}.json", sha_old, 2)
    (folder / "versions" / f"stored:{sha_old}.json").write_text(old.to_json())
    assert store.read_version("reports", "plain", "k", f"stored:{sha_old}") == old
    assert store.files_of("reports", "plain")["k"].keys() >= {f"versions/stored:{sha_old}.json"}


def test_a_kept_version_written_before_restores_a_partition(tmp_path):
    store = _empty_store(tmp_path)
    fp = "c" * 64
    with store.lock("features", "a", "k"):
        out, sha, size = store.write_output("features", "a", "k", fp, "json", b"[1]")
        kept = Manifest("a", "k", fp, "code", "params", {}, out, sha, size)
        store.commit("features", "a", kept)
        other = Manifest("a", "k", "d" * 64, "code2", "params", {}, out, sha, size)
        store.commit("features", "a", other)
    assert store.read_manifest("features", "a", "k") == other
    assert store.read_version("features", "a", "k", fp) == kept  # what a RESTORE commits again


def test_a_versions_folder_linked_outside_is_neither_swept_written_nor_read(tmp_path):
    """A partition's kept versions folder that links out of the data root is refused like a
    partition folder that does: nothing there is deleted, written or restored from."""
    store = _store(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".x.json.tmp-1-ab").write_bytes(b"someone's file")
    name, sha, size = store.write_output("features", "f", "k1", "ab" * 32, "bin", b"ok")
    folder = tmp_path / "data" / "features" / "f" / "k1"
    (folder / "versions").symlink_to(outside, target_is_directory=True)
    (outside / f"{'ab' * 32}.json").write_text("{}")

    with pytest.raises(InputError, match="outside the data root"):
        store.sweep_temp("features", "f", "k1")
    assert store.read_version("features", "f", "k1", "ab" * 32) is None
    manifest = Manifest(
        asset="f",
        partition="k1",
        fingerprint="ab" * 32,
        code_version="c",
        params_digest="p",
        inputs={},
        output=name,
        output_hash=sha,
        output_size=size,
    )
    with pytest.raises(InputError, match="outside the data root"):
        store.commit("features", "f", manifest)
    assert sorted(p.name for p in outside.iterdir()) == [".x.json.tmp-1-ab", f"{'ab' * 32}.json"]
    assert not (folder / "manifest.json").exists()


def test_the_sweep_removes_a_killed_writers_temporaries_and_nothing_else(tmp_path):
    store = _store(tmp_path)
    store.write_output("features", "f", "k1", "ab" * 32, "bin", b"ok")
    folder = tmp_path / "data" / "features" / "f" / "k1"
    (folder / "versions").mkdir()
    left = [folder / ".out.bin.tmp-9-cd", folder / "versions" / f".{'ab' * 32}.json.tmp-9-ef"]
    kept = [folder / ".tmp-not-ours", folder / "notes.tmp-1", folder / "versions" / "x.json"]
    for path in (*left, *kept):
        path.write_bytes(b"x")
    assert store.sweep_temp("features", "f", "k1") == 2
    assert [p.exists() for p in left] == [False, False]
    assert [p.exists() for p in kept] == [True, True, True]
    assert store.sweep_temp("features", "f", "absent") == 0
