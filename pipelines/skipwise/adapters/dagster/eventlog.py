"""Dagster's SQLite event log with its per-statement set-up paid once, for the instances skipwise
opens on Dagster's default SQLite storage (`skipwise.adapters.dagster.instance`).

Dagster's `SqliteEventLogStorage` builds a new SQLAlchemy engine for every statement: one
materialization event costs three engines, three connections and their closes (the last close of
a WAL database checkpoints it), about 4 ms of the 8 ms a partition's event takes; and every run
creates its own database and stamps it with Alembic (about 0.1 s). This subclass keeps the engines
of the index and of the last few runs' databases with their connections open, remembers which
tables exist, and creates a run's database by copying an empty one that Dagster's own
initialization made (same schema, same Alembic stamp, kept per Dagster and SQLAlchemy version).

A run's database is watched: `dagster dev` follows a running run by the changes of its file
(`watch`: a watchdog handler on `<run id>.db`). With the connection kept open, a commit lands in
the write-ahead log (`<run id>.db-wal`), which every reader sees but the watcher does not, so each
transaction that wrote to a run's database touches the file's times afterwards (the same event
a write to it gives the watcher); the log is checkpointed into the file when SQLite's own
threshold says, when the engine is let go, and when the process exits.

An asset event's rows in the index are Dagster's too, written with less: the index's columns are
inspected once (Dagster inspects them at every event), the asset's row is updated where it exists
(Dagster tries an insert first, and its failure raised through SQLAlchemy costs more than the
update), and the asset's last materialization is the event as serialized for the event table,
inside its record (Dagster serializes the event a second time). Together about 0.6 ms of the
2.8 ms of CPU a materialization's storage takes here.

Every row it writes, and every file, is the one Dagster writes: the instance reads the same with
or without it, so `dagster dev`, the daemon and a plain `dagster` command (which open the instance
with Dagster's own classes, as its dagster.yaml says) see the same history. skipwise's own processes
open it through `with_kept_engines`; dagster.yaml is not changed.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster._core.event_api import EventLogRecord
from dagster._core.storage.event_log.schema import AssetKeyTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SqliteEventLogStorage as DagsterSqliteEventLogStorage,
)
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster._time import datetime_from_timestamp
from dagster.version import __version__ as DAGSTER_VERSION


#: databases whose engines stay open: the index and the runs of the last few launches
KEPT_ENGINES = 8
_TEMPLATE = ".skipwise-empty-run-{}.sqlite3"  # not *.db: Dagster lists every *.db as a run


class SqliteEventLogStorage(DagsterSqliteEventLogStorage):
    """Dagster's SQLite event log (same files, same rows), with engines kept per database."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        self._engines: OrderedDict[str, db.engine.Engine] = OrderedDict()
        self._tables: set[str] = set()
        self._index_columns = False
        self._serialized = threading.local()  # the event last serialized for the event table, by thread
        self._engines_lock = threading.Lock()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> SqliteEventLogStorage:  # type: ignore[override]
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> db.engine.Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                pool_size=1,
                max_overflow=4,
            )
            _OPEN.add(self)
            self._engines[shard] = engine
            while len(self._engines) > KEPT_ENGINES:
                old, evicted = next(iter(self._engines.items()))
                if old == INDEX_SHARD_NAME:
                    self._engines.move_to_end(old)
                    continue
                del self._engines[old]
                evicted.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                if shard == INDEX_SHARD_NAME or not self._copy_empty(shard):
                    self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                before = getattr(raw, "total_changes", None)
                with conn.begin():
                    yield conn
                wrote = before is None or raw.total_changes != before
            if wrote and shard != INDEX_SHARD_NAME:
                _touch(self.path_for_shard(shard))  # the watcher's cue: the write is in the WAL

    def _initdb(self, engine: Any, for_index_shard: bool = False) -> None:
        # Dagster's asks Alembic for the newest revision (every migration script loaded), and does
        # nothing more for a database stamped already.
        if not _stamped(str(engine.url.database)):
            super()._initdb(engine, for_index_shard=for_index_shard)

    def has_table(self, table_name: str) -> bool:
        # Tables are only ever added (by Dagster's migrations): a table seen once stays.
        if table_name in self._tables:
            return True
        found = super().has_table(table_name)
        if found:
            self._tables.add(table_name)
        return found

    # -- an asset event's rows in the index ---------------------------------------------------------

    def _has_asset_key_index_cols_on_connection(self, conn: Any) -> bool:
        # Dagster's inspects the table at every asset event; columns are only ever added.
        if not self._index_columns:
            self._index_columns = super()._has_asset_key_index_cols_on_connection(conn)
        return self._index_columns

    def _event_to_row(self, event: Any) -> dict[str, Any]:
        row = super()._event_to_row(event)
        self._serialized.last = (event, row["event"])
        return row

    def _get_asset_entry_values(self, event: Any, event_id: int, has_asset_key_index_cols: bool) -> dict[str, Any]:
        last = getattr(self._serialized, "last", None)
        if (
            last is None
            or last[0] is not event
            or not event.dagster_event.is_step_materialization
            or not _record_json_is_dagsters()
        ):
            return super()._get_asset_entry_values(event, event_id, has_asset_key_index_cols)
        values: dict[str, Any] = {"last_materialization": _record_json(last[1], event_id), "last_run_id": event.run_id}
        if has_asset_key_index_cols:
            values["last_materialization_timestamp"] = datetime_from_timestamp(event.timestamp)
        return values

    def _store_asset_event(self, conn: Any, event: Any, event_id: int) -> None:
        # Dagster's values, by an update of the asset's row, or an insert where there is none yet.
        if not (event.dagster_event and event.dagster_event.asset_key):
            return
        values = self._get_asset_entry_values(event, event_id, self._has_asset_key_index_cols_on_connection(conn))
        if not values:
            return
        key = event.dagster_event.asset_key.to_string()
        if conn.execute(AssetKeyTable.update().values(**values).where(AssetKeyTable.c.asset_key == key)).rowcount == 0:
            conn.execute(AssetKeyTable.insert().values(asset_key=key, **values))

    def dispose_engines(self) -> None:
        """Close every kept connection (the last close of a database checkpoints its log)."""
        with self._engines_lock:
            engines, self._engines = list(self._engines.values()), OrderedDict()
        for engine in engines:
            engine.dispose()

    def forget_engines(self) -> None:
        """In a forked child: let go of the parent's engines without closing their connections (the
        parent's, still in use there); the child opens its own. Locks another thread held at the
        fork stay held in the child: they are made anew."""
        engines, self._engines = list(self._engines.values()), OrderedDict()
        self._engines_lock, self._db_lock = threading.Lock(), threading.Lock()
        for engine in engines:
            engine.dispose(close=False)

    def dispose(self) -> None:
        self.dispose_engines()
        super().dispose()

    # -- a run's database, created by copying an empty one ---------------------------------------

    def _copy_empty(self, shard: str) -> bool:
        """Create `shard`'s database as a copy of the empty one (made once by Dagster's own
        initialization); False when the database exists already or no copy could be made, and
        Dagster's initialization runs instead."""
        target = self.path_for_shard(shard)
        if os.path.exists(target):
            return False
        template = self._empty_database()
        if template is None:
            return False
        tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            shutil.copyfile(template, tmp)
            os.link(tmp, target)  # never replaces a database another process just created
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _empty_database(self) -> str | None:
        """The empty run database for this Dagster and SQLAlchemy, made by `_initdb` if absent."""
        path = os.path.join(self._base_dir, _TEMPLATE.format(f"{DAGSTER_VERSION}-{db.__version__}"))
        if os.path.exists(path):
            return path
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        engine = db.create_engine(
            f"sqlite:///{tmp}", poolclass=db.pool.NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
        )
        try:
            self._initdb(engine)
            engine.dispose()  # the last connection's close checkpoints the WAL into the file
            if os.path.exists(f"{tmp}-wal") and os.path.getsize(f"{tmp}-wal"):
                return None
            os.replace(tmp, path)
            return path
        except Exception:  # noqa: BLE001 - any failure: Dagster initializes each run's database itself
            return None
        finally:
            engine.dispose()
            for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)


#: storages with engines open: their connections close (checkpointing each run's log) at exit
_OPEN: weakref.WeakSet[SqliteEventLogStorage] = weakref.WeakSet()


@atexit.register
def close_open() -> None:
    """Close the kept connections of every storage of this process (at its exit, or a forked
    worker's, which skips exit handlers)."""
    for storage in list(_OPEN):
        with contextlib.suppress(Exception):
            storage.dispose_engines()


def _forget_in_child() -> None:
    # A connection shared by two processes corrupts what both write (SQLite's and SQLAlchemy's
    # rule): a forked child (`skipwise serve`'s commands, a prefork worker pool) starts without any.
    for storage in list(_OPEN):
        storage.forget_engines()


os.register_at_fork(after_in_child=_forget_in_child)


def _touch(path: str) -> None:
    """Set `path`'s times to now: inotify reports it (IN_ATTRIB) as watchdog's modified event, and a
    polling watcher sees the new mtime."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _record_json(event_json: str, storage_id: int) -> str:
    """`serialize_value(EventLogRecord(storage_id, event))`, from the event's own serialization."""
    return f'{{"__class__": "EventLogRecord", "event_log_entry": {event_json}, "storage_id": {storage_id}}}'


@functools.cache
def _record_json_is_dagsters() -> bool:
    """Whether `_record_json` writes what Dagster's serialization does (checked once a process, on an
    event with metadata and tags): where it does not, Dagster serializes the record itself."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry

    mat = dg.AssetMaterialization(
        asset_key=dg.AssetKey(["a", "b"]), partition="p", metadata={"n": 1, "t": "x"}, tags={"k": "v"}
    )
    event = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value, "job", event_specific_data=StepMaterializationData(mat)
    )
    entry = EventLogEntry(
        user_message="", level=20, job_name="job", run_id="r", error_info=None, timestamp=1.5, dagster_event=event
    )
    return _record_json(serialize_value(entry), 7) == serialize_value(
        EventLogRecord(storage_id=7, event_log_entry=entry)
    )


class SqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage (runs, schedules and event log in the same folders), with
    the event log above, and each database opened without Alembic where it is stamped already."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        # Dagster's constructor, but each store opened by `_opened` (see there).
        self.base_dir = base_dir
        self._run_storage = _opened(SqliteRunStorage, _runs_directory(base_dir), "runs", "instance_info")
        self._event_log_storage = SqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = _opened(SqliteScheduleStorage, _schedule_directory(base_dir), "schedules")
        self._inst_data = inst_data
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> SqliteStorage:  # type: ignore[override]
        return cls.from_local(inst_data=inst_data, **config_value)


def _opened(kind: Any, base_dir: str, name: str, *tables: str) -> Any:
    """Dagster's run or schedule store on `base_dir`/`name`.db. Dagster's `from_local` asks
    Alembic for the newest revision (loading every migration script: about 30 ms a store) only to
    create and stamp a database that has no revision yet; a database that has one (and `tables`)
    is opened as it would be then, directly."""
    path = os.path.join(base_dir, f"{name}.db")
    if _stamped(path, tables):
        return kind(create_db_conn_string(base_dir, name))
    return kind.from_local(base_dir)


def _stamped(path: str, tables: tuple[str, ...] = ()) -> bool:
    """Whether the SQLite database at `path` exists with an Alembic revision (Dagster stamps a
    database after creating its tables) and `tables`."""
    if not os.path.isfile(path):
        return False
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_SECONDS)) as conn:
            if conn.execute("select version_num from alembic_version").fetchone() is None:
                return False
            found = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    except sqlite3.Error:
        return False
    return set(tables) <= found


#: Dagster's default storage, as an instance's reference names it
DAGSTER_SQLITE = ("dagster._core.storage.sqlite_storage", "DagsterSqliteStorage")


def with_kept_engines(ref: Any) -> Any:
    """An instance reference (`InstanceRef`) whose storage, where it is Dagster's default SQLite
    storage, is `SqliteStorage` with the same configuration; any other storage is left as it is.
    The reference travels with the instance to the processes it starts, which use the same."""
    data = ref.storage_data
    if data is None or (data.module_name, data.class_name) != DAGSTER_SQLITE:
        return ref
    return ref._replace(storage_data=ConfigurableClassData(__name__, SqliteStorage.__name__, data.config_yaml))
