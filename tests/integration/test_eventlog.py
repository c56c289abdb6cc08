"""The event log of the instances skipwise creates (`skipwise.adapters.dagster.eventlog`): the same
databases and rows as Dagster's own SQLite event log, so anything reading the instance with
Dagster's own classes (`dagster dev`, the daemon, another Dagster install) sees the same runs,
events and partitions; a watcher of a run's database file (how `dagster dev` follows a run) is
told of each event as it is written; and only Dagster's default SQLite storage is replaced, never a storage configured
otherwise, and never in dagster.yaml."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage as DagsterStorage

from skipwise.adapters.dagster.eventlog import SqliteEventLogStorage
from skipwise.adapters.dagster.instance import instance_for_root

pytestmark = pytest.mark.integration

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-12")


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run(), output_required=False)
def daily(context):
    for key in context.partition_keys:
        yield dg.AssetMaterialization(
            asset_key=context.asset_key, partition=key, metadata={"n": 1}, tags={"dagster/data_version": f"v-{key}"}
        )


def _schema(path: Path) -> tuple:
    with sqlite3.connect(path) as conn:
        tables = conn.execute("select type, name, sql from sqlite_master order by type, name").fetchall()
        stamp = conn.execute("select version_num from alembic_version").fetchall()
        mode = conn.execute("pragma journal_mode").fetchall()
    return tables, stamp, mode


def _run(instance, first: str, last: str):
    return dg.materialize(
        [daily],
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )


def test_a_run_database_is_the_one_dagster_creates(tmp_path: Path) -> None:
    ours, theirs = SqliteEventLogStorage(str(tmp_path / "ours")), DagsterStorage(str(tmp_path / "theirs"))
    # ours' second run database is a copy of the empty one it kept
    for storage, run_id in ((ours, "run-a"), (ours, "run-b"), (theirs, "run-a")):
        with storage.run_connection(run_id) as conn:
            assert conn.in_transaction()  # the database exists and takes writes
    first, second = sorted((tmp_path / "ours").glob("run*.db"))
    (dagsters,) = (tmp_path / "theirs").glob("run*.db")
    assert _schema(first) == _schema(second) == _schema(dagsters)
    assert _schema(dagsters)[1], "Dagster stamps each run database with its Alembic revision"
    assert not list((tmp_path / "ours").glob("*.tmp")), "no temporary file is left behind"
    assert sorted(ours.get_all_run_ids()) == ["run-a", "run-b"], "the kept empty database is not taken for a run"


def test_skipwise_instance_writes_what_dagsters_storage_reads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = tmp_path / ".dagster"
    instance = instance_for_root(tmp_path)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n", "dagster.yaml is Dagster's"
    assert isinstance(instance.event_log_storage, SqliteEventLogStorage)
    runs = [_run(instance, "2024-01-01", "2024-01-05"), _run(instance, "2024-01-04", "2024-01-10")]
    assert all(r.success for r in runs)

    dagsters = dg.DagsterInstance.from_config(str(home))  # as `dagster dev` opens it
    assert type(dagsters.event_log_storage) is DagsterStorage
    key = dg.AssetKey("daily")
    assert dagsters.get_materialized_partitions(key) == instance.get_materialized_partitions(key)
    assert len(dagsters.get_materialized_partitions(key)) == 10
    for r in runs:
        ours_logs = [e.dagster_event_type for e in instance.all_logs(r.run_id)]
        assert [e.dagster_event_type for e in dagsters.all_logs(r.run_id)] == ours_logs
        assert ours_logs.count(dg.DagsterEventType.ASSET_MATERIALIZATION) == (5 if r is runs[0] else 7)
    latest = dagsters.get_latest_materialization_event(key)
    assert latest is not None and latest.tags.get("dagster/data_version") == "v-2024-01-10"
    # ... and the other way round: what Dagster's own classes write, skipwise's instance reads
    assert _run(dagsters, "2024-01-11", "2024-01-11").success
    assert len(instance_for_root(tmp_path).get_materialized_partitions(key)) == 11


def _message(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(
        user_message=message, level=20, job_name="job", run_id=run_id, error_info=None, timestamp=time.time()
    )


def test_a_watcher_of_a_run_is_told_of_each_event_as_it_is_written(tmp_path: Path) -> None:
    """`dagster dev` follows a running run through Dagster's own storage (`watch`: a handler on the
    run's database file); skipwise's storage keeps its connection open, so its writes land in the
    write-ahead log first, and the watcher must still hear of each one when it is written."""
    base = str(tmp_path / "runs")
    ours, theirs = SqliteEventLogStorage(base), DagsterStorage(base)
    with ours.run_connection("run-w") as conn:
        assert conn.in_transaction()  # the run's database exists before it is watched
    seen: list[str] = []
    told = threading.Event()

    def heard(entry, cursor) -> None:
        seen.append(entry.user_message)
        told.set()

    theirs.watch("run-w", None, heard)
    try:
        for i in range(3):
            told.clear()
            ours.store_event(_message("run-w", f"event {i}"))
            assert told.wait(10), f"the watcher was not told of event {i}"
            assert seen[-1] == f"event {i}"
        assert [r.event_log_entry.user_message for r in theirs.get_records_for_run("run-w").records] == seen
    finally:
        theirs.end_watch("run-w", heard)
        theirs.dispose()
        ours.dispose()
    assert seen == ["event 0", "event 1", "event 2"]


def test_only_dagsters_default_sqlite_storage_is_replaced(tmp_path: Path, monkeypatch) -> None:
    """A dagster.yaml naming SQLite storage gets the same; any other storage is left as configured."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {tmp_path / 'elsewhere'}\n")
    instance = instance_for_root(tmp_path)
    assert isinstance(instance.event_log_storage, SqliteEventLogStorage)
    assert _run(instance, "2024-01-01", "2024-01-02").success
    assert list((tmp_path / "elsewhere" / "history" / "runs").glob("*.db"))

    (home / "dagster.yaml").write_text(
        "event_log_storage:\n  module: dagster._core.storage.event_log\n  class: InMemoryEventLogStorage\n"
    )
    assert type(instance_for_root(tmp_path).event_log_storage).__name__ == "InMemoryEventLogStorage"


def test_an_instance_opened_again_reads_no_migration_script(tmp_path: Path, monkeypatch) -> None:
    """Dagster's stores ask Alembic for the newest revision on every opening (every migration script
    loaded); skipwise's instance asks only for a database not stamped yet, and opens the same stores."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    first = instance_for_root(tmp_path)  # creates and stamps every database, through Dagster
    assert _run(first, "2024-01-01", "2024-01-03").success

    from alembic.script import ScriptDirectory

    def no_alembic(*args, **kwargs):
        raise AssertionError("Alembic's migration scripts were loaded")

    monkeypatch.setattr(ScriptDirectory, "from_config", no_alembic)
    again = instance_for_root(tmp_path)
    assert _run(again, "2024-01-04", "2024-01-05").success
    assert len(again.get_materialized_partitions(dg.AssetKey("daily"))) == 5
    assert len(again.get_runs()) == 2
    monkeypatch.undo()
    dagsters = dg.DagsterInstance.from_config(str(tmp_path / ".dagster"))
    assert type(dagsters.run_storage).__name__ == type(again.run_storage).__name__ == "SqliteRunStorage"
    assert dagsters.get_run_ids() == again.get_run_ids()


def _entry(asset: str, kind: str, partition: str | None, timestamp: float, run_id: str = "run-1"):
    from dagster._core.events import (
        AssetMaterializationPlannedData,
        AssetObservationData,
        DagsterEvent,
        DagsterEventType,
        StepMaterializationData,
    )
    from dagster._core.events.log import EventLogEntry

    key = dg.AssetKey(["group", asset])
    if kind == "materialization":
        mat = dg.AssetMaterialization(
            asset_key=key,
            partition=partition,
            metadata={"n": 1, "why": "missing"},
            tags={"dagster/data_version": f"v{timestamp}"},
        )
        event = DagsterEvent(
            DagsterEventType.ASSET_MATERIALIZATION.value,
            "job",
            event_specific_data=StepMaterializationData(mat),
            step_key=asset,
        )
    elif kind == "observation":
        obs = dg.AssetObservation(asset_key=key, partition=partition, metadata={"skipped": 3})
        event = DagsterEvent(
            DagsterEventType.ASSET_OBSERVATION.value,
            "job",
            event_specific_data=AssetObservationData(obs),
            step_key=asset,
        )
    else:
        event = DagsterEvent(
            DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
            "job",
            event_specific_data=AssetMaterializationPlannedData(key, partition),
        )
    return EventLogEntry(
        user_message="",
        level=20,
        job_name="job",
        run_id=run_id,
        error_info=None,
        timestamp=timestamp,
        step_key=asset,
        dagster_event=event,
    )


def _rows(path: Path, table: str, leave_out: tuple[str, ...] = ()) -> list[dict]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"select * from {table} order by id").fetchall()
    return [{k: r[k] for k in r.keys() if k not in leave_out} for r in rows]


def test_an_asset_events_rows_are_the_ones_dagster_writes(tmp_path: Path) -> None:
    """The index's rows for asset events (written with fewer statements and one serialization of the
    event) are Dagster's: the event table, the tags and each asset's row with its last
    materialization, through first events, later ones, other kinds of event and a wipe."""
    ours, theirs = SqliteEventLogStorage(str(tmp_path / "ours")), DagsterStorage(str(tmp_path / "theirs"))
    events = [
        _entry("a", "planned", None, 1.0),
        *(_entry("a", "materialization", f"2024-01-0{i}", 2.0 + i) for i in range(1, 4)),
        _entry("b", "observation", "2024-01-01", 6.0),
        _entry("b", "materialization", "2024-01-01", 7.0, run_id="run-2"),
        _entry("c", "materialization", None, 8.0, run_id="run-2"),
    ]
    later = [_entry("a", "materialization", "2024-01-04", 10.0, run_id="run-3"), _entry("a", "planned", None, 11.0)]
    for storage in (ours, theirs):
        for event in events:
            storage.store_event(event)
        storage.wipe_asset(dg.AssetKey(["group", "a"]))
        for event in later:
            storage.store_event(event)
    index = "index.db"
    clock = ("create_timestamp", "wipe_timestamp", "asset_details")  # when the row was made, when wiped
    assert _rows(tmp_path / "ours" / index, "asset_keys", clock) == _rows(
        tmp_path / "theirs" / index, "asset_keys", clock
    )
    for table in ("event_logs", "asset_event_tags"):
        assert _rows(tmp_path / "ours" / index, table) == _rows(tmp_path / "theirs" / index, table)
    for run in ("run-1", "run-2", "run-3"):
        assert _rows(tmp_path / "ours" / f"{run}.db", "event_logs") == _rows(
            tmp_path / "theirs" / f"{run}.db", "event_logs"
        )
    key = dg.AssetKey(["group", "b"])
    (record,) = ours.get_asset_records([key])
    assert record.asset_entry.last_materialization_record.storage_id == 6
    assert record.asset_entry.last_materialization.asset_materialization.partition == "2024-01-01"


def test_a_forked_child_writes_through_its_own_connections(tmp_path: Path) -> None:
    """A process that forks with the event log's connections open (`skipwise serve`, a prefork
    worker pool) must not hand them to the child: both would write through one SQLite connection."""
    ours = SqliteEventLogStorage(str(tmp_path / "runs"))
    ours.store_event(_message("run-f", "before the fork"))
    with ours.run_connection("run-f") as conn:
        parents = conn.connection.dbapi_connection
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, write one event, and leave without running the parent's exit code
        ok = 0
        try:
            with ours.run_connection("run-f") as conn:
                ok = int(conn.connection.dbapi_connection is not parents)
            ours.store_event(_message("run-f", "from the child"))
            ours.dispose_engines()
        finally:
            os.write(write, str(ok).encode())
            os._exit(0)
    os.close(write)
    assert os.read(read, 8) == b"1", "the child reused the parent's connection"
    os.waitpid(pid, 0)
    ours.store_event(_message("run-f", "after the fork"))
    messages = [r.event_log_entry.user_message for r in ours.get_records_for_run("run-f").records]
    assert messages == ["before the fork", "from the child", "after the fork"]
    with sqlite3.connect(tmp_path / "runs" / "run-f.db") as conn:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
    ours.dispose()
