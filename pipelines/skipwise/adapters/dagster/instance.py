"""The Dagster instance a project's runs use: the embedded default (SQLite under $DAGSTER_HOME,
else <root>/.dagster) or, under `SKIPWISE_PROFILE=services`, the one on PostgreSQL whose settings
come from the environment (`Settings`; the Celery side lives in `skipwise.adapters.dagster.services`)."""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from skipwise.core.errors import ConfigError, require
from skipwise.store.files import atomic_write

PROFILE_ENV = "SKIPWISE_PROFILE"
EMBEDDED, SERVICES = "embedded", "services"
PROFILES = (EMBEDDED, SERVICES)
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/skipwise"
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_BACKEND = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE = "dagster"
#: stale partitions per chunk (one Dagster run each) when --workers does not say how many chunks
DEFAULT_CHUNK_PARTITIONS = 32
#: chunks of one level launched at once (each is a thread here waiting on its steps)
MAX_CHUNKS = 32


def profile() -> str:
    """The deployment profile of this process: $SKIPWISE_PROFILE, default "embedded"."""
    value = os.environ.get(PROFILE_ENV, "").strip().lower() or EMBEDDED
    if value not in PROFILES:
        raise ConfigError(
            f"{PROFILE_ENV}={value!r} is not a profile",
            hint=f"set it to one of {', '.join(PROFILES)} (or unset it for the embedded default)",
        )
    return value


def active() -> bool:
    """Whether runs go to PostgreSQL and Celery (`SKIPWISE_PROFILE=services`)."""
    return profile() == SERVICES


@dataclass(frozen=True)
class Settings:
    """Where the services are, from the environment (defaults: this machine's own services)."""

    pg_url: str
    broker: str
    backend: str
    queue: str
    chunk_partitions: int

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get("SKIPWISE_CHUNK_PARTITIONS", "").strip()
        if raw and (not raw.isdigit() or int(raw) < 1):
            raise ConfigError(
                f"SKIPWISE_CHUNK_PARTITIONS={raw!r} is not a number of partitions",
                hint=f"set it to 1 or more, or unset it for the default ({DEFAULT_CHUNK_PARTITIONS})",
            )
        return cls(
            pg_url=os.environ.get("SKIPWISE_PG_URL", "").strip() or DEFAULT_PG_URL,
            broker=os.environ.get("SKIPWISE_CELERY_BROKER", "").strip() or DEFAULT_BROKER,
            backend=os.environ.get("SKIPWISE_CELERY_BACKEND", "").strip() or DEFAULT_BACKEND,
            queue=os.environ.get("SKIPWISE_CELERY_QUEUE", "").strip() or DEFAULT_QUEUE,
            chunk_partitions=int(raw) if raw else DEFAULT_CHUNK_PARTITIONS,
        )

    def postgres_db(self) -> dict[str, Any]:
        """`storage.postgres.postgres_db` of dagster.yaml for `pg_url`. The scheme is given
        explicitly: with SQLAlchemy 2.1 Dagster otherwise looks for psycopg 3 (dagster#33958)."""
        u = urlsplit(self.pg_url)
        if u.scheme.split("+")[0] not in ("postgresql", "postgres") or not u.hostname or not u.path.strip("/"):
            raise ConfigError(
                f"SKIPWISE_PG_URL={self.pg_url!r} is not a PostgreSQL URL with a database",
                hint="e.g. postgresql://postgres@127.0.0.1:5432/skipwise",
            )
        db: dict[str, Any] = {
            "hostname": u.hostname,
            "port": u.port or 5432,
            "db_name": unquote(u.path.strip("/")),
            "username": unquote(u.username or "postgres"),
            "password": unquote(u.password or ""),
            "scheme": "postgresql+psycopg2",
        }
        return db

    def executor_config(self) -> dict[str, Any]:
        """The run config of `celery_executor`: this process's broker, backend and queue."""
        return {"broker": self.broker, "backend": self.backend, "config_source": {"task_default_queue": self.queue}}


def dagster_yaml(settings: Settings) -> str:
    """The instance configuration of the profile (run, event log and schedule storage on PostgreSQL)."""
    import yaml

    config = {"telemetry": {"enabled": False}, "storage": {"postgres": {"postgres_db": settings.postgres_db()}}}
    return yaml.safe_dump(config, sort_keys=True)


_instances: dict[tuple[str, str], Any] = {}
_instances_lock = threading.Lock()


def require_libraries(*modules: str) -> None:
    """MissingDependency naming the `services` extra (and Dagster's libraries for Celery and
    PostgreSQL, which the extra leaves out: see pyproject.toml) unless each of `modules` is
    installed (found, not imported: Dagster's libraries warn on import)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            require(
                module,
                SERVICES,
                f"the services profile ({PROFILE_ENV}=services)",
                also="dagster-celery dagster-postgres",
            )


def services_instance(root: Path, settings: Settings | None = None) -> Any:
    """The profile's Dagster instance (one per home and database in a process): its dagster.yaml
    under <home>/services, rewritten when the settings changed."""
    import dagster as dg

    require_libraries("psycopg2", "dagster_postgres")
    settings = settings or Settings.from_env()
    home = Path(os.environ.get("DAGSTER_HOME") or Path(root) / ".dagster") / "services"
    key = (str(home), settings.pg_url)
    with _instances_lock:
        if key in _instances:
            return _instances[key]
        home.mkdir(parents=True, exist_ok=True)
        text = dagster_yaml(settings)
        config = home / "dagster.yaml"
        if not config.exists() or config.read_text() != text:
            atomic_write(config, text.encode())
            if settings.postgres_db()["password"]:
                config.chmod(0o600)  # it holds the database's password
        try:
            instance = dg.DagsterInstance.from_config(str(home))
        except Exception as exc:  # noqa: BLE001 - any driver error: say which database and how to fix it
            raise ConfigError(
                f"cannot open the Dagster instance on PostgreSQL at {_safe(settings.pg_url)} "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})",
                hint="start PostgreSQL there, create the database, or set SKIPWISE_PG_URL",
            ) from None
        # Dagster re-applies the yaml's python_logs handlers with logging.config.dictConfig for every
        # run, which closes every handler of the process and takes logging's locks in an order that
        # deadlocks runs started at once from threads (each chunk's run is one). This dagster.yaml
        # defines no such handlers, so there are none to return.
        instance.get_yaml_python_handlers = lambda: []
        _instances[key] = instance
        return instance


def _safe(url: str) -> str:
    """`url` without its password (for messages)."""
    u = urlsplit(url)
    if u.password:
        return url.replace(f":{u.password}@", ":***@", 1)
    return url


def instance_for_root(root: Path) -> Any:
    """The Dagster instance of $DAGSTER_HOME, defaulting to <root>/.dagster (created if needed);
    under the services profile, the one on PostgreSQL (`services_instance`). On Dagster's default
    SQLite storage, its event log keeps its engines (`skipwise.adapters.dagster.eventlog`); with
    Dagster's local compute logs, a run's output reaches the terminal without processes of its own
    (`skipwise.adapters.dagster.computelogs`)."""
    import dagster as dg

    if active():
        return services_instance(root)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(root) / ".dagster")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    from dagster._core.instance.ref import InstanceRef

    from skipwise.adapters.dagster.computelogs import with_threaded_capture
    from skipwise.adapters.dagster.eventlog import with_kept_engines

    return dg.DagsterInstance.from_ref(with_threaded_capture(with_kept_engines(InstanceRef.from_dir(str(home)))))
