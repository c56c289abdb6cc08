"""The demo with its raw data on a DVC remote in another region, as two machines see it.

- the producer: a checkout with the raw files and DVC's cache; it `dvc add`s and `dvc push`es to a
  DVC remote in a bucket of eu-west-1 on an S3-compatible server (moto_server on 127.0.0.1);
- the consumer: compute in us-east-1 (``SKIPWISE_REGION``), a checkout with only what git holds
  (code, ``.dvc`` files, ``.dvc/config``): no raw files, no DVC cache. Its runs read each partition
  they need from the remote by md5, through skipwise's input cache.

What a run moved is read from the consumer's cost ledger (per class, dollars) and, where this
process started the server, from the server's own log (requests, and the bytes of the objects they
fetched, sized from a listing made afterwards).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.s3server import FAKE_CREDENTIALS, S3Server

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc") if (BIN / "dvc").exists() else (shutil.which("dvc") or "dvc")
FILES = ["assets", "pipelines", "params.yaml", "dvc.yaml", ".dvcignore", "skipwise.toml", "pyproject.toml"]
RAW = ["data/raw/flights", "data/raw/weather"]
BUCKET, FAR_REGION, COMPUTE_REGION = "skipwise-demo-raw-euw1", "eu-west-1", "us-east-1"
GIB = 2**30


def sh(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} failed ({p.returncode}) in {cwd}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        )
    return p


@dataclass
class Moved:
    """What one run moved: from the ledger (bytes per class, dollars) and the server's log."""

    label: str
    bytes_by_class: dict[str, int] = field(default_factory=dict)
    usd: float = 0.0
    usd_egress: float = 0.0
    usd_requests: float = 0.0
    computed: int = 0
    server_requests: int | None = None
    server_get_bytes: int | None = None

    def line(self) -> str:
        classes = ", ".join(f"{c} {n:,} B" for c, n in sorted(self.bytes_by_class.items()) if n) or "nothing"
        server = (
            ""
            if self.server_requests is None
            else f"; server log: {self.server_requests} request(s), {self.server_get_bytes:,} B fetched"
        )
        return (
            f"{self.label:<22} {self.computed:>4} computed; moved {classes}; ${self.usd:.6f} "
            f"(egress ${self.usd_egress:.6f}, requests ${self.usd_requests:.6f}){server}"
        )


class RemoteDemo:
    """A producer and a consumer checkout of the demo around one DVC remote (see the module docstring)."""

    def __init__(self, base: Path, s3: S3Server, days: int | None = None) -> None:
        self.base, self.s3 = Path(base), s3
        self.producer, self.consumer = self.base / "producer", self.base / "consumer"
        self.days = days
        self.env = {k: os.environ.get(k) or v for k, v in FAKE_CREDENTIALS.items()}

    def consumer_env(self) -> dict:
        return {
            **self.env,
            "SKIPWISE_REGION": COMPUTE_REGION,
            "DAGSTER_HOME": str(self.consumer / ".dagster"),
            "SKIPWISE_ROOT": str(self.consumer),
        }

    def setup(self, raw_from: Path) -> None:
        """The producer gets the raw files from `raw_from` (data/raw of a prepared demo) and pushes them."""
        for root in (self.producer, self.consumer):
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            for name in FILES:
                src = REPO / name
                if src.is_dir():
                    shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(src, root / name)
            (root / ".dagster").mkdir()
            (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        for d in RAW:
            files = sorted((raw_from / Path(d).name).glob("*.parquet"))[: self.days]
            (self.producer / d).mkdir(parents=True)
            for f in files:
                shutil.copy2(f, self.producer / d / f.name)
        try:
            self.s3.make_bucket(BUCKET, FAR_REGION)
        except Exception as exc:  # noqa: BLE001 - a server started elsewhere may have it already
            if "BucketAlready" not in type(exc).__name__ + str(exc):
                raise
        p = self.producer
        sh(["git", "init", "-q"], p)
        sh([DVC, "init", "-q"], p)
        sh([DVC, "config", "core.analytics", "false"], p)
        sh([DVC, "add", "-q", *RAW], p)
        sh([DVC, "remote", "add", "-d", "raw", f"s3://{BUCKET}/dvcstore"], p)
        sh([DVC, "remote", "modify", "raw", "endpointurl", self.s3.endpoint], p)
        sh([DVC, "remote", "modify", "raw", "region", FAR_REGION], p)
        self.push()
        self.sync()

    def push(self) -> None:
        sh([DVC, "push", "-q", *RAW], self.producer, self.env)

    def sync(self) -> None:
        """What `git pull` brings the consumer: the `.dvc` files and DVC's config (never data or caches)."""
        (self.consumer / ".dvc").mkdir(exist_ok=True)
        shutil.copy2(self.producer / ".dvc" / "config", self.consumer / ".dvc" / "config")
        for d in RAW:
            (self.consumer / d).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.producer / f"{d}.dvc", self.consumer / f"{d}.dvc")

    def change_day(self, day: str) -> None:
        """The producer drops the last flight of `day`, versions and pushes it; the consumer pulls git."""
        import polars as pl

        path = self.producer / "data" / "raw" / "flights" / f"{day}.parquet"
        frame = pl.read_parquet(path)
        frame.head(frame.height - 1).write_parquet(path)
        sh([DVC, "add", "-q", "data/raw/flights"], self.producer)
        self.push()
        self.sync()

    def add_day(self, src: Path, kind: str) -> None:
        """The producer receives a new day's file of `kind` (flights/weather), versions and pushes it."""
        shutil.copy2(src, self.producer / "data" / "raw" / kind / src.name)

    def ledger_files(self) -> set[Path]:
        return set((self.consumer / "data" / "ledger").glob("*/*.jsonl"))

    def materialize(self, label: str, *args: str) -> Moved:
        """One `skipwise materialize` on the consumer, and what it moved."""
        before = self.ledger_files()
        mark = self.s3.mark() if self.s3.log is not None else None
        sh([str(BIN / "skipwise"), "materialize", *args], self.consumer, self.consumer_env())
        moved = Moved(label)
        by_class: Counter[str] = Counter()
        for path in self.ledger_files() - before:
            for line in path.read_text().splitlines():
                r = json.loads(line)
                for c in ("same_host", "same_region", "cross_region", "internet"):
                    by_class[c] += int(r.get(f"egress_{c}_bytes") or 0)
                moved.usd += float(r.get("usd") or 0.0)
                moved.usd_egress += float(r.get("usd_egress") or 0.0)
                moved.usd_requests += float(r.get("usd_requests") or 0.0)
                moved.computed += r.get("cache") == "miss"
        moved.bytes_by_class = dict(by_class)
        if mark is not None:
            reqs = self.s3.requests(since=mark)
            sizes = self.object_sizes()
            moved.server_requests = len(reqs)
            moved.server_get_bytes = sum(sizes.get(r.path.lstrip("/"), 0) for r in reqs if r.method == "GET")
        return moved

    def object_sizes(self) -> dict[str, int]:
        """`<bucket>/<key>` -> size of every object of the remote (a listing: make it after reading the log)."""
        out = {}
        for page in self.s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            out.update({f"{BUCKET}/{o['Key']}": o["Size"] for o in page.get("Contents", [])})
        return out


def server(base: Path) -> S3Server:
    """The server named by ``$SKIPWISE_S3_ENDPOINT`` (its log unread), or a moto_server started here."""
    endpoint = os.environ.get("SKIPWISE_S3_ENDPOINT")
    os.environ.update({k: os.environ.get(k) or v for k, v in FAKE_CREDENTIALS.items()})
    if endpoint:
        return S3Server(endpoint.rstrip("/"))
    return S3Server.start(base / "s3")
