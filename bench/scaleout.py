"""The scale-out benchmark, one command (needs this machine's PostgreSQL, RabbitMQ and Redis):

    .venv/bin/python -m bench.scaleout [--days 90] [--repeats 3] [--workers 1,2,4]

On the demo's real data (its first --days days, through the real ingest, DVC and `skipwise
materialize`), a backfill of the first level (flight_features and weather_features: 2 x days
partitions) from empty, then the same backfill again with nothing stale (the no-op), on:

- the embedded default: SQLite instance, features on local disk, one process (`--workers 1`) and
  the default split (one process per CPU for levels of 100+ stale partitions per process);
- the services profile with features on local disk and one Celery worker (what PostgreSQL and
  Celery cost, apart from S3);
- the services profile with features on S3 (moto_server here) and 1, 2, 4 Celery workers.

Each services backfill is cut into 8 chunks (8 Dagster runs, 16 steps) whatever the worker count,
so the work is the same and only the number of hands changes. Workers start once per row and get a
short warm-up backfill (their imports) before anything is timed: a deployment's workers are long-lived.
CPU is the `skipwise` command's (kernel rusage), plus the Celery workers' and moto_server's (from
/proc); the PostgreSQL, RabbitMQ and Redis servers are shared system services and are not counted.
Writes bench/results/scaleout.md (medians and minimums over --repeats, and the CPU steal seen in
/proc/stat over the run) and prints it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import steal_percent
from bench.run import LoadSampler, proc_stat
from bench.s3server import FAKE_CREDENTIALS, S3Server
from bench.services import CeleryWorkers, check_services, delete_queue, scratch_database
from bench.workspace import demo_copy

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc") if (BIN / "dvc").exists() else (shutil.which("dvc") or "dvc")
SELECT = "flight_features,weather_features"
CHUNKS = 8
BUCKET = "skipwise-scaleout"


@dataclass
class Sample:
    wall: float
    cpu: float
    computed: int


@dataclass
class Row:
    """One configuration: its backfills from empty and its no-op backfills."""

    name: str
    workers: str
    build: list[Sample] = field(default_factory=list)
    noop: list[Sample] = field(default_factory=list)


def say(msg: str) -> None:
    print(f"scaleout: {msg}", flush=True)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(root: Path, env: dict[str, str], args: list[str], log, extra_pids: list[int]) -> Sample:
    """One `skipwise` command: its wall time, its CPU and its children's (rusage), plus the CPU the
    processes `extra_pids` (workers, moto_server) used meanwhile; and the partitions it computed."""
    full = {**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full.pop("SKIPWISE_WORKERS", None)
    before = sum(proc_cpu(p) for p in extra_pids)
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [str(BIN / "skipwise"), *args], cwd=root, env=full, stdout=subprocess.PIPE, stderr=log, text=True
    )
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    log.write(out)
    log.flush()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"scaleout: skipwise {' '.join(args)} failed:\n{out[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime + sum(proc_cpu(p) for p in extra_pids) - before
    computed = next((int(line.split(" of ")[0]) for line in out.splitlines() if " partitions computed" in line), -1)
    return Sample(wall, cpu, computed)


def clear_local(root: Path) -> None:
    for name in ("features", "ledger"):
        shutil.rmtree(root / "data" / name, ignore_errors=True)


def clear_bucket(s3: S3Server, prefix: str) -> None:
    client = s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def measure(
    row: Row, root: Path, env: dict[str, str], args: list[str], repeats: int, log, pids: list[int], clear
) -> None:
    for i in range(repeats):
        clear()
        row.build.append(timed(root, env, args, log, pids))
        row.noop.append(timed(root, env, args, log, pids))
        say(
            f"{row.name} ({row.workers}) #{i + 1}: build {row.build[-1].wall:.1f} s ({row.build[-1].computed} computed), "
            f"no-op {row.noop[-1].wall:.2f} s"
        )


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(rows: list[Row], partitions: int, days: int, steal: float | None, load: list[float], wall: float) -> str:
    base = rows[0]
    out = [
        f"# Scale-out: the services profile against the embedded default ({days} days, {partitions} partitions)",
        "",
        f"Backfill of flight_features + weather_features from empty, then again with nothing stale. Medians "
        f"(minimums) over {len(base.build)} repeats; CPU = the command + Celery workers + moto_server.",
        "",
        "| profile | workers | backfill s | partitions/s | CPU s | CPU ms / partition | no-op s | no-op CPU s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        walls, cpus = [s.wall for s in r.build], [s.cpu for s in r.build]
        nwall, ncpu = [s.wall for s in r.noop], [s.cpu for s in r.noop]
        out.append(
            f"| {r.name} | {r.workers} | {med(walls):.1f} ({min(walls):.1f}) | {partitions / med(walls):.1f} "
            f"| {med(cpus):.1f} ({min(cpus):.1f}) | {1000 * med(cpus) / partitions:.0f} "
            f"| {med(nwall):.2f} ({min(nwall):.2f}) | {med(ncpu):.2f} |"
        )
    out.append("")
    by = {(r.name, r.workers): r for r in rows}
    emb = by.get(("embedded", "1 process"))
    loc = by.get(("services, local disk", "1"))
    s3_1 = by.get(("services, S3", "1"))
    if emb and loc:
        per_wall = 1000 * (med([s.wall for s in loc.build]) - med([s.wall for s in emb.build])) / partitions
        per_cpu = 1000 * (med([s.cpu for s in loc.build]) - med([s.cpu for s in emb.build])) / partitions
        out.append(
            f"- Coordination overhead (PostgreSQL instance + Celery, one worker, local disk) against the embedded "
            f"default in one process: **{per_wall:+.0f} ms wall, {per_cpu:+.0f} ms CPU per partition**."
        )
    if loc and s3_1:
        per_wall = 1000 * (med([s.wall for s in s3_1.build]) - med([s.wall for s in loc.build])) / partitions
        out.append(
            f"- Features on S3 (moto_server on this host) instead of local disk, one worker: {per_wall:+.0f} ms wall per partition."
        )
    one = by.get(("services, S3", "1"))
    for n in ("2", "4"):
        r = by.get(("services, S3", n))
        if one and r:
            out.append(
                f"- {n} workers against 1: x{med([s.wall for s in one.build]) / med([s.wall for s in r.build]):.2f} throughput."
            )
    out += [
        "",
        f"CPU steal over the run: **{'not available' if steal is None else f'{steal:.1f}%'}**; 1-minute load "
        f"average {min(load):.1f} to {max(load):.1f} on {os.cpu_count()} CPUs; benchmark wall {wall / 60:.1f} min."
        if load
        else f"CPU steal over the run: {steal}",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2,4", help="Celery worker counts of the S3 rows")
    ap.add_argument("--out", type=Path, default=RESULTS / "scaleout.md")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = ap.parse_args(argv)
    check_services()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="skipwise-scaleout-"))
    log = open(RESULTS / "scaleout.log", "w")
    t_start, stat0 = time.perf_counter(), proc_stat()
    rows: list[Row] = []
    try:
        root = tmp / "proj"
        span = demo_copy(root, args.days)
        warm = f"2013-01-01...2013-01-{min(8, args.days):02d}"
        partitions = 2 * args.days
        chunk = str(-(-args.days // CHUNKS))
        materialize = ["materialize", "--select", SELECT, "--partition", span]
        home = tmp / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        base_env = {"DAGSTER_HOME": str(home), "PYTHONPATH": str(root), "SKIPWISE_ROOT": str(root)}
        with LoadSampler() as load, S3Server.start(tmp / "moto") as s3, scratch_database(prefix="skipwise_bench") as pg:
            s3.make_bucket(BUCKET, "us-east-1")
            for name, extra in (("1 process", ["--workers", "1"]), ("default split", [])):
                row = Row("embedded", name)
                measure(row, root, base_env, materialize + extra, args.repeats, log, [], lambda: clear_local(root))
                rows.append(row)
            services_env = {
                **base_env,
                "SKIPWISE_PROFILE": "services",
                "SKIPWISE_PG_URL": pg,
                "SKIPWISE_CHUNK_PARTITIONS": chunk,
                "SKIPWISE_CELERY_QUEUE": f"skipwise_bench_{os.getpid()}",
            }
            s3_env = {
                **services_env,
                **FAKE_CREDENTIALS,
                "AWS_ENDPOINT_URL": s3.endpoint,
                "SKIPWISE_STORE_REGION": "us-east-1",
                "SKIPWISE_REGION": "us-east-1",
            }
            plan = [("services, local disk", 1, services_env, None)]
            plan += [("services, S3", n, {**s3_env, "SKIPWISE_STORE": f"s3://{BUCKET}/w{n}"}, f"w{n}") for n in counts]
            for name, n, env, prefix in plan:
                with CeleryWorkers(root, env, n, tmp / f"workers-{prefix or 'local'}") as workers:
                    pids = [*workers.pids(), s3.process.pid] if prefix else workers.pids()
                    clear = (lambda p=prefix: clear_bucket(s3, p)) if prefix else (lambda: clear_local(root))
                    clear()
                    timed(
                        root,
                        {**env, "SKIPWISE_CHUNK_PARTITIONS": "1"},
                        ["materialize", "--select", SELECT, "--partition", warm],
                        log,
                        pids,
                    )  # the workers' imports, untimed
                    row = Row(name, str(n))
                    measure(row, root, env, materialize, args.repeats, log, pids, clear)
                    rows.append(row)
                delete_queue(env)
        steal = steal_percent(stat0, proc_stat()) if stat0 else None
        text = render(rows, partitions, args.days, steal, load.samples, time.perf_counter() - t_start)
        args.out.write_text(text)
        print(text)
    finally:
        log.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
