"""The services profile's switch and settings, without any service: the embedded default stays the
default, settings come from the environment, and an unreachable service is named in one line."""

from __future__ import annotations

import socket

import pytest
import yaml
from skipwise.adapters.dagster import services
from skipwise.core.errors import ConfigError

from bench.services import ServiceUnreachable, check_services


def test_the_embedded_default_needs_no_setting(monkeypatch):
    monkeypatch.delenv("SKIPWISE_PROFILE", raising=False)
    assert services.profile() == "embedded" and not services.active()
    monkeypatch.setenv("SKIPWISE_PROFILE", "Services")
    assert services.active()
    monkeypatch.setenv("SKIPWISE_PROFILE", "cluster")
    with pytest.raises(ConfigError, match="SKIPWISE_PROFILE='cluster' is not a profile"):
        services.profile()


def test_settings_from_the_environment_and_the_instance_yaml(monkeypatch):
    for k in (
        "SKIPWISE_PG_URL",
        "SKIPWISE_CELERY_BROKER",
        "SKIPWISE_CELERY_BACKEND",
        "SKIPWISE_CELERY_QUEUE",
        "SKIPWISE_CHUNK_PARTITIONS",
    ):
        monkeypatch.delenv(k, raising=False)
    s = services.Settings.from_env()
    assert (s.broker, s.backend, s.queue, s.chunk_partitions) == (
        "pyamqp://guest:guest@127.0.0.1:5672//",
        "redis://127.0.0.1:6379/0",
        "dagster",
        32,
    )
    monkeypatch.setenv("SKIPWISE_PG_URL", "postgresql://dagster:s%40cret@db.internal:6432/runs")
    monkeypatch.setenv("SKIPWISE_CELERY_QUEUE", "eu")
    s = services.Settings.from_env()
    config = yaml.safe_load(services.dagster_yaml(s))
    assert config["storage"]["postgres"]["postgres_db"] == {
        "hostname": "db.internal",
        "port": 6432,
        "db_name": "runs",
        "username": "dagster",
        "password": "s@cret",
        "scheme": "postgresql+psycopg2",
    }  # psycopg2 named: with SQLAlchemy 2.1 Dagster would look for psycopg 3
    assert s.executor_config()["config_source"] == {"task_default_queue": "eu"}
    monkeypatch.setenv("SKIPWISE_PG_URL", "mysql://x@h/db")
    with pytest.raises(ConfigError, match="not a PostgreSQL URL"):
        services.Settings.from_env().postgres_db()
    monkeypatch.setenv("SKIPWISE_CHUNK_PARTITIONS", "0")
    with pytest.raises(ConfigError, match="SKIPWISE_CHUNK_PARTITIONS"):
        services.Settings.from_env()


def test_chunks_follow_the_partitions_or_the_requested_count(monkeypatch):
    monkeypatch.delenv("SKIPWISE_WORKERS", raising=False)
    s = services.Settings("postgresql://h/d", "b", "r", "q", chunk_partitions=32)
    assert services.chunk_count(365, None, s) == 12
    assert services.chunk_count(5, None, s) == 1
    assert services.chunk_count(365, 4, s) == 4
    assert services.chunk_count(3, 8, s) == 3  # never an empty chunk
    assert services.chunk_count(100_000, None, s) == services.MAX_CHUNKS
    monkeypatch.setenv("SKIPWISE_WORKERS", "6")
    assert services.chunk_count(365, None, s) == 6


def test_an_unreachable_service_is_named_with_its_address():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(ServiceUnreachable) as err:
            check_services(
                f"postgresql://postgres@127.0.0.1:{port}/postgres", "redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0"
            )
    assert str(err.value).startswith(f"PostgreSQL is not reachable at 127.0.0.1:{port}")
    assert "\n" not in str(err.value)


def test_an_unreachable_broker_stops_the_launch_in_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        s = services.Settings("postgresql://h/d", f"pyamqp://guest:guest@127.0.0.1:{port}//", "rpc://", "q", 32)
        with pytest.raises(ConfigError) as err:
            services.require_celery(s)
    assert err.value.message.startswith(f"the Celery broker is not reachable at 127.0.0.1:{port}")
    assert "SKIPWISE_CELERY_BROKER" in err.value.hint
