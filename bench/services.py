"""The services profile's moving parts for tests and the scale-out benchmark: reachability checks
that name the service, a fresh PostgreSQL database, and Celery worker processes.

    check_services()                          # raises ServiceUnreachable("PostgreSQL at 127.0.0.1:5432 ...")
    with scratch_database() as url:           # CREATE DATABASE skipwise_test_<random>, dropped at the end
        with CeleryWorkers(root, env, n=2) as workers:
            ...                               # SKIPWISE_PROFILE=services runs; workers.kill(0) to crash one
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from skipwise.adapters.dagster.services import DEFAULT_BACKEND, DEFAULT_BROKER, DEFAULT_QUEUE, address, unreachable

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent


class ServiceUnreachable(RuntimeError):
    """A service the profile needs does not answer; the message is one line naming it and its address."""


def check_services(pg_url: str = PG_ADMIN_URL, broker: str = DEFAULT_BROKER, backend: str = DEFAULT_BACKEND) -> None:
    """Raise `ServiceUnreachable` for the first of PostgreSQL, the broker and the result backend
    that does not accept a TCP connection within 3 s."""

    def kind(url: str) -> str:
        scheme = urlsplit(url).scheme
        return "PostgreSQL" if scheme.startswith("postgres") else "Redis" if scheme.startswith("redis") else "RabbitMQ"

    for name, url in (
        ("PostgreSQL", pg_url),
        (f"{kind(broker)} (the Celery broker)", broker),
        (f"{kind(backend)} (the Celery result backend)", backend),
    ):
        if url.startswith("rpc://"):
            continue
        why = unreachable(url)
        if why:
            host, port = address(url)
            raise ServiceUnreachable(f"{name} is not reachable at {host}:{port} ({why})")


@contextlib.contextmanager
def scratch_database(admin_url: str = PG_ADMIN_URL, prefix: str = "skipwise_test") -> Iterator[str]:
    """A new, empty database (`<prefix>_<random>`) on the server of `admin_url`; yields its URL and
    drops it at the end (closing what is still connected to it)."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    u = urlsplit(admin_url)
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield u._replace(path=f"/{name}").geturl()
        finally:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        conn.close()


class CeleryWorkers:
    """`n` Celery worker processes of the profile (`--pool solo -c 1`: one step at a time, in the
    worker's own process), started in `root` with `env`, each logging to `log_dir`."""

    def __init__(self, root: Path, env: dict[str, str], n: int, log_dir: Path) -> None:
        self.root, self.env, self.log_dir = Path(root), dict(env), Path(log_dir)
        self.queue = self.env.get("SKIPWISE_CELERY_QUEUE") or DEFAULT_QUEUE
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for _ in range(n):
                self.add()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def add(self) -> subprocess.Popen:
        """Start one more worker (ready once `wait_ready` returns)."""
        i = len(self.procs)
        name = f"skipwise{i}-{uuid.uuid4().hex[:6]}@%h"
        log = self.log_dir / f"celery-worker-{i}.log"
        out = open(log, "ab")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        cmd = [
            str(BIN / "celery"),
            "-A",
            "skipwise.adapters.dagster.celery_app",
            "worker",
            "-Q",
            self.queue,
            "--pool",
            "solo",
            "-c",
            "1",
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ]
        p = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.procs.append(p)
        self.logs.append(log)
        return p

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until every live worker's log says it is ready (connected to the broker)."""
        deadline = time.monotonic() + timeout
        for p, log in zip(self.procs, self.logs):
            while p.poll() is None and " ready." not in log.read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"a Celery worker did not get ready in {timeout:.0f} s: {log.read_text(errors='replace')[-2000:]}"
                    )
                time.sleep(0.2)
            if p.poll() is not None:
                raise RuntimeError(
                    f"a Celery worker exited with {p.returncode}: {log.read_text(errors='replace')[-2000:]}"
                )

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def kill(self, pid: int) -> None:
        """SIGKILL one worker, as a crashed host would stop: no clean-up, no acknowledgement."""
        os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            if p.pid == pid:
                p.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU of the live workers so far (from /proc), for the benchmark's account."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        """Stop every worker: a warm shutdown (SIGTERM), then SIGKILL after 20 s."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> CeleryWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def delete_queue(env: dict[str, str]) -> None:
    """Delete the queue of `env` (SKIPWISE_CELERY_QUEUE) and its exchange from the broker, with what
    is left on it (Dagster's own `dagster` queue is left alone)."""
    from kombu import Connection

    queue = env.get("SKIPWISE_CELERY_QUEUE") or DEFAULT_QUEUE
    if queue == DEFAULT_QUEUE:
        return
    with Connection(env.get("SKIPWISE_CELERY_BROKER") or DEFAULT_BROKER) as conn:
        with contextlib.suppress(Exception):  # no such queue: nothing to delete
            conn.default_channel.queue_delete(queue)
        with contextlib.suppress(Exception):
            conn.default_channel.exchange_delete(queue)
