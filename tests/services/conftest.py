"""Fixtures of the services profile's tests: real PostgreSQL, RabbitMQ and Redis on this machine (a
fresh database and a queue of its own per test), an S3-compatible server started here (moto_server)
holding the feature store, and Celery worker processes started in the project's copy.

These tests run under `make test-services`, never under plain `make test` (pyproject's
norecursedirs). A service that does not answer fails every test with one line naming it and its address.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from skipwise.adapters.dagster.services import DEFAULT_BACKEND, DEFAULT_BROKER

from bench.s3server import FAKE_CREDENTIALS, S3Server
from bench.services import (
    PG_ADMIN_URL,
    CeleryWorkers,
    ServiceUnreachable,
    check_services,
    delete_queue,
    scratch_database,
)
from tests.conftest import BIN

BUCKET = "skipwise-services"


@pytest.fixture(scope="session")
def services_up() -> None:
    """PostgreSQL, the broker and the result backend answer (else: fail, naming the one that does not)."""
    try:
        check_services(
            os.environ.get("SKIPWISE_PG_ADMIN_URL", PG_ADMIN_URL),
            os.environ.get("SKIPWISE_CELERY_BROKER", DEFAULT_BROKER),
            os.environ.get("SKIPWISE_CELERY_BACKEND", DEFAULT_BACKEND),
        )
        down = ""
    except ServiceUnreachable as exc:
        down = str(exc)
    if down:
        pytest.fail(down, pytrace=False)  # outside the except: the one line, without the chained exception


@pytest.fixture(scope="session")
def pg_url(services_up) -> str:
    """A database of this test session (skipwise_test_<random>), dropped at its end."""
    with scratch_database(os.environ.get("SKIPWISE_PG_ADMIN_URL", PG_ADMIN_URL)) as url:
        yield url


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    with S3Server.start(tmp_path_factory.mktemp("moto")) as server:  # stopped at the end
        server.make_bucket(BUCKET, "us-east-1")
        yield server


class Deployment:
    """One deployment of the profile over a project copy: its environment (PostgreSQL database,
    a Celery queue of its own, the feature store under s3://BUCKET/<prefix>), its workers, its commands."""

    def __init__(self, root: Path, home: Path, pg_url: str, s3: S3Server, prefix: str) -> None:
        self.root, self.s3, self.prefix = root, s3, prefix
        self.env = {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": s3.endpoint,
            "SKIPWISE_STORE": f"s3://{BUCKET}/{prefix}",
            "SKIPWISE_STORE_REGION": "us-east-1",
            "SKIPWISE_REGION": "us-east-1",
            "SKIPWISE_ROOT": str(root),
            "PYTHONPATH": str(root),
            "DAGSTER_HOME": str(home),
            "SKIPWISE_PG_URL": pg_url,
            "SKIPWISE_CELERY_QUEUE": f"skipwise_test_{uuid.uuid4().hex[:12]}",
        }
        home.mkdir(parents=True, exist_ok=True)
        self.workers: CeleryWorkers | None = None

    def start_workers(self, n: int, log_dir: Path) -> CeleryWorkers:
        self.workers = CeleryWorkers(self.root, self.env, n, log_dir)
        return self.workers

    def popen(self, *args: str, **extra_env: str) -> subprocess.Popen:
        env = {**os.environ, **self.env, "SKIPWISE_PROFILE": "services", **extra_env}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.pop("SKIPWISE_WORKERS", None)
        return subprocess.Popen(
            [str(BIN / "skipwise"), *args],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def skipwise(self, *args: str, check: bool = True, **extra_env: str) -> str:
        """`skipwise ARGS` under the profile; its output. A run that does not end in 10 minutes
        (a step lost by the broker would leave it waiting) fails the test instead of hanging it."""
        p = self.popen(*args, **extra_env)
        try:
            out, _ = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            raise AssertionError(f"skipwise {' '.join(args)} did not finish in 600 s:\n{out[-4000:]}") from None
        if check and p.returncode != 0:
            raise AssertionError(f"skipwise {' '.join(args)} failed ({p.returncode}):\n{out[-4000:]}")
        return out

    def objects(self) -> dict[str, bytes]:
        """Every object of the feature store, by key under its prefix."""
        client = self.s3.client()
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=self.prefix + "/"):
            for o in page.get("Contents", []):
                out[o["Key"][len(self.prefix) + 1 :]] = client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        return out

    def runs(self) -> int:
        """Dagster runs recorded in this deployment's PostgreSQL database."""
        import psycopg2

        with psycopg2.connect(self.env["SKIPWISE_PG_URL"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs")
            return int(cur.fetchone()[0])

    def close(self) -> None:
        if self.workers is not None:
            self.workers.stop()
        delete_queue(self.env)


@pytest.fixture
def deployment(project_dir, pg_url, s3, tmp_path):
    d = Deployment(project_dir, tmp_path / "dagster_home", pg_url, s3, f"t-{uuid.uuid4().hex[:10]}")
    try:
        yield d
    finally:
        d.close()


def ledger_rows(store: dict[str, bytes]) -> list[dict]:
    """The ledger's records in the store (json.loads fails on a torn one)."""
    return [
        json.loads(line)
        for k, v in sorted(store.items())
        if k.startswith("ledger/")
        for line in v.decode().splitlines()
        if line.strip()
    ]


def manifests(store: dict[str, bytes]) -> dict[str, dict]:
    """Each partition folder's manifest (`<layer>/<asset>/<key>`)."""
    return {k.rsplit("/", 1)[0]: json.loads(v) for k, v in store.items() if k.endswith("/manifest.json")}


def tasks_done(log: Path) -> int:
    """Steps a Celery worker finished, from its log."""
    return sum(
        1 for line in log.read_text(errors="replace").splitlines() if "execute_plan[" in line and "succeeded" in line
    )
