"""The feature store on local disk against the same store in a bucket (moto_server on 127.0.0.1),
one machine, the same demo days, measured in the same run:

    python -m bench.featurestore [--days 30] [--repeats 3] [--out bench/results/featurestore.md]

Each store gets its own copy of a project with `--days` days of the demo's raw data (git, DVC):
a full build of flight_features and weather_features, `--repeats` no-op runs, then one raw day
changed (`dvc add`) and rebuilt. Seconds are wall times of `skipwise materialize` (medians and
minimums of the no-op runs); requests are the server's own log lines during each run (every
method, the leases and ledger objects included); dollars are what the ledger recorded for the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.false_hits import proc_stat
from bench.report import steal_percent
from bench.s3server import FAKE_CREDENTIALS, S3Server
from bench.workspace import demo_copy, run

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUCKET = "bench-features"
SELECT = "flight_features,weather_features"


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    return run(
        cmd, cwd, {**os.environ, **env, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "PYTHONPATH": str(cwd)}
    ).stdout


def make_project(root: Path, days: int) -> str:
    span = demo_copy(root, days)
    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return span


def ledger_totals(root: Path, env: dict) -> tuple[float, int]:
    """(dollars, GET + PUT + LIST requests) of every record in the project's ledger, read as
    `skipwise cost` reads it (the bucket's ledger with the bucket's environment)."""
    from skipwise.store.backends import open_ledger

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        rows = open_ledger(root).rows()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    usd = sum(float(r["usd"] or 0) for r in rows)
    reqs = sum(int(r[k] or 0) for r in rows for k in ("get_requests", "put_requests", "list_requests"))
    return usd, reqs


def measure(root: Path, env: dict, span: str, s3: S3Server | None, label: str) -> dict:
    out: dict = {}

    def run(tag: str) -> tuple[float, int, Counter, float, int]:
        usd0, req0 = ledger_totals(root, env)
        mark = s3.mark() if s3 else 0
        t = time.perf_counter()
        text = sh([str(BIN / "skipwise"), "materialize", "--select", SELECT, "--partition", span], root, env)
        wall = time.perf_counter() - t
        computed = sum(
            int(line.split()[1])
            for line in text.splitlines()
            if line.strip().endswith("skipped") and "computed" in line
        )
        reqs = Counter(r.method for r in s3.requests(since=mark) if f"/{BUCKET}" in r.path) if s3 else Counter()
        usd1, req1 = ledger_totals(root, env)
        return wall, computed, reqs, usd1 - usd0, req1 - req0

    out["full"] = run("full")
    out["noop"] = [run(f"noop{i}") for i in range(ARGS.repeats)]
    day = root / "data" / "raw" / "flights" / "2013-01-03.parquet"  # a week of look-back reads it
    import polars as pl

    pl.read_parquet(day).head(-1).write_parquet(day)
    sh([str(BIN / "dvc"), "add", "-q", "data/raw/flights"], root, env)
    out["one_day"] = run("one_day")
    print(f"featurestore: {label} done", file=sys.stderr)
    return out


def fmt_reqs(c: Counter, recorded: int) -> str:
    # DELETE is free on S3 and recorded nowhere; every other request should be in the ledger.
    billed = sum(n for m, n in c.items() if m != "DELETE")
    return (
        ", ".join(f"{n} {m}" for m, n in sorted(c.items())) or "none"
    ) + f" (ledger: {recorded} of the {billed} billed)"


def main(argv: list[str] | None = None) -> int:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "featurestore.md")
    ARGS = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="featurestore-"))
    stat0 = proc_stat()
    s3 = S3Server.start(base / "moto")
    try:
        s3.make_bucket(BUCKET, "us-east-1")
        local_env = {"SKIPWISE_REGION": "us-east-1"}
        local_root = base / "local"
        span = make_project(local_root, ARGS.days)
        bucket_root = base / "bucket"
        make_project(bucket_root, ARGS.days)
        bucket_env = {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": s3.endpoint,
            "SKIPWISE_STORE": f"s3://{BUCKET}/demo",
            "SKIPWISE_STORE_REGION": "us-east-1",
            "SKIPWISE_REGION": "us-east-1",
        }
        for root in (local_root, bucket_root):
            (root / ".dagster").mkdir(exist_ok=True)
        local = measure(
            local_root, {**local_env, "DAGSTER_HOME": str(local_root / ".dagster")}, span, None, "local disk"
        )
        bucket = measure(bucket_root, {**bucket_env, "DAGSTER_HOME": str(bucket_root / ".dagster")}, span, s3, "bucket")
    finally:
        s3.stop()
        stat1 = proc_stat()
        shutil.rmtree(base, ignore_errors=True)
    steal = steal_percent(stat0, stat1) if stat0 and stat1 else None

    def noop(m: dict) -> str:
        secs = [w for w, *_ in m["noop"]]
        return f"{statistics.median(secs):.2f} / {min(secs):.2f}"

    rows = [
        "| run | local disk: s | bucket: s | bucket / local | computed (both) | bucket: server requests | local $ | bucket $ |",
        "|---|---|---|---|---|---|---|---|",
        f"| full build ({ARGS.days} days x 2 assets) | {local['full'][0]:.2f} | {bucket['full'][0]:.2f} | "
        f"{bucket['full'][0] / local['full'][0]:.2f}x | {local['full'][1]} / {bucket['full'][1]} | {fmt_reqs(bucket['full'][2], bucket['full'][4])} | "
        f"${local['full'][3]:.6f} | ${bucket['full'][3]:.6f} |",
        f"| no-op (median / min of {ARGS.repeats}) | {noop(local)} | {noop(bucket)} | "
        f"{statistics.median(w for w, *_ in bucket['noop']) / statistics.median(w for w, *_ in local['noop']):.2f}x | "
        f"{local['noop'][0][1]} / {bucket['noop'][0][1]} | {fmt_reqs(bucket['noop'][0][2], bucket['noop'][0][4])} | "
        f"${local['noop'][0][3]:.6f} | ${bucket['noop'][0][3]:.6f} |",
        f"| one raw day changed | {local['one_day'][0]:.2f} | {bucket['one_day'][0]:.2f} | "
        f"{bucket['one_day'][0] / local['one_day'][0]:.2f}x | {local['one_day'][1]} / {bucket['one_day'][1]} | "
        f"{fmt_reqs(bucket['one_day'][2], bucket['one_day'][4])} | ${local['one_day'][3]:.6f} | ${bucket['one_day'][3]:.6f} |",
    ]
    text = "\n".join(
        [
            "# Feature store: local disk against a bucket (moto_server on 127.0.0.1)",
            "",
            f"`python -m bench.featurestore --days {ARGS.days} --repeats {ARGS.repeats}`; CPU steal "
            f"{'%.1f %%' % steal if steal is not None else 'unknown'}. Seconds are `skipwise materialize` wall times "
            "(each a new process: Dagster's start included); requests are the server's log lines of the run.",
            "",
            *rows,
            "",
        ]
    )
    args_out = ARGS.out
    args_out.parent.mkdir(parents=True, exist_ok=True)
    args_out.write_text(text)
    print(text)
    return 0


ARGS: argparse.Namespace


if __name__ == "__main__":
    sys.exit(main())
