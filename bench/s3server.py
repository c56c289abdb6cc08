"""An S3-compatible server on 127.0.0.1 for tests, the remote demo and the locality benchmark:
``moto_server`` (package ``moto[server]``) started as a real HTTP server in its own process.

Its log has one line per request it served (method, path, status), so what a run fetched is
counted by the server, independently of the client:

    with S3Server.start(log_dir) as s3:
        s3.make_bucket("far", "eu-west-1")
        mark = s3.mark()
        ...                                   # a run reads from http://127.0.0.1:<port>
        gets = s3.requests(since=mark, method="GET")
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

#: Keys the server accepts (any non-empty ones do); never real credentials.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "skipwise-test-key-id", "AWS_SECRET_ACCESS_KEY": "skipwise-test-secret-2f9c1e"}
_LINE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Request:
    """One request the server logged."""

    method: str
    path: str
    status: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """A running ``moto_server`` (or, with `endpoint`, one already running whose log we cannot read)."""

    def __init__(self, endpoint: str, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
        self.endpoint = endpoint
        self.process = process
        self.log = log

    @classmethod
    def start(cls, log_dir: Path, port: int | None = None) -> S3Server:
        """Start ``moto_server -H 127.0.0.1 -p PORT`` (a free port by default) and wait until it answers."""
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if exe is None:
            raise RuntimeError("moto_server not found: install the dev extra (pip install -e '.[dev]', moto[server])")
        port = port or free_port()
        log = Path(log_dir) / f"moto-{port}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out.close()
        server = cls(f"http://127.0.0.1:{port}", proc, log)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(server.endpoint + "/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError(f"moto_server did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.1)
        return server

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def client(self, region: str = "us-east-1"):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"]),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
        )

    def make_bucket(self, name: str, region: str) -> None:
        """A bucket whose LocationConstraint is `region` (us-east-1 has none, as on AWS)."""
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        self.client(region).create_bucket(Bucket=name, **kwargs)

    def mark(self) -> int:
        """A position in the log: `requests(since=mark)` lists what came after it."""
        self._settle()
        return self.log.stat().st_size if self.log is not None else 0

    def _settle(self) -> None:
        # The server logs a request just after answering it: wait until the log stops growing.
        if self.log is None:
            return
        size, still = -1, 0
        while still < 3:
            now = self.log.stat().st_size
            still = still + 1 if now == size else 0
            size = now
            time.sleep(0.05)

    def requests(self, since: int = 0, method: str | None = None, prefix: str = "") -> list[Request]:
        """Requests logged after `since` (a `mark()`), optionally only one method and paths under `prefix`."""
        if self.log is None:
            raise RuntimeError("this server was started elsewhere: its log is not readable here")
        self._settle()
        with open(self.log, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
        out = []
        for line in _ANSI.sub("", text).splitlines():
            m = _LINE.search(line)
            if m and (method is None or m.group(1) == method) and m.group(2).startswith(prefix):
                out.append(Request(m.group(1), m.group(2), int(m.group(3))))
        return out
