"""Bytes and dollars moved from a remote region, day over day: skipwise against a full reload and
against `dvc pull` + a whole-stage rerun, counted from the S3 server's own request log.

    python -m bench.locality [--initial 30] [--runs 30] [--out bench/results/locality.md]

The demo's raw data (``make data``) starts with `initial` days on a DVC remote in eu-west-1 (a
moto_server bucket on 127.0.0.1); compute is in us-east-1. Then `runs` day-over-day runs, each after
one change on the producer (odd runs: a new day arrives; even runs: an earlier day is corrected),
pushed with `dvc push`. Each run, three consumers read what they need:

- skipwise: `skipwise materialize` of flight_features and weather_features over the days present,
  from a checkout with no raw files and no DVC cache (only its input cache, kept between runs);
- (a) a full reload: every present object read once from the remote (what a pipeline that reloads
  its inputs each run reads; sized from the remote's listing, not run);
- (b) `dvc pull` of both directories into a checkout whose DVC cache persists between runs, then a
  whole-stage rebuild of every partition (`plain_build.py`, the benchmark's no-skipping build).

Requests and bytes for skipwise and (b) are the server's log lines during each run (a request's
bytes are the size of the object it fetched); dollars are cross-region egress ($0.02/GiB) plus GET
($0.0004/1000) and LIST/PUT ($0.005/1000) requests, the prices in skipwise.toml.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

from bench.remote_setup import DVC, GIB, RAW, REPO, RemoteDemo, server, sh

GET_USD, LIST_USD, EGRESS_USD = 0.0004 / 1000, 0.005 / 1000, 0.02


@dataclass
class RunFigures:
    run: int
    change: str
    skipwise_requests: int
    skipwise_bytes: int
    skipwise_computed: int
    full_reload_requests: int
    full_reload_bytes: int
    pull_requests: int
    pull_lists: int
    pull_bytes: int
    rebuilt: int
    skipwise_seconds: float
    pull_rebuild_seconds: float


def usd(requests: int, bytes_: int, lists: int = 0) -> float:
    return bytes_ / GIB * EGRESS_USD + (requests - lists) * GET_USD + lists * LIST_USD


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--initial", type=int, default=30, help="days on the remote before the first run")
    ap.add_argument("--runs", type=int, default=30, help="day-over-day runs (one new or changed day each)")
    ap.add_argument("--work", default=None, help="where the checkouts go (default: a temporary folder, removed)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "locality.md"))
    args = ap.parse_args(argv)
    raw = REPO / "data" / "raw"
    if len(list((raw / "flights").glob("*.parquet"))) < args.initial + args.runs:
        print("Error: not enough raw days in data/raw\n  fix: run `make data` first", file=sys.stderr)
        return 1
    import tempfile

    base = Path(args.work or tempfile.mkdtemp(prefix="skipwise-locality-"))
    s3 = server(base)
    if s3.log is None:
        print(
            "Error: bench.locality counts requests from the server's own log: unset SKIPWISE_S3_ENDPOINT",
            file=sys.stderr,
        )
        return 1
    try:
        rows, first = _workload(base, s3, raw, args.initial, args.runs)
    finally:
        s3.stop()
        if args.work is None:
            shutil.rmtree(base, ignore_errors=True)
    text = _report(rows, first, args.initial)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps({"initial": asdict(first), "runs": [asdict(r) for r in rows]}, indent=1)
    )
    return 0


def _workload(base: Path, s3, raw: Path, initial: int, runs: int) -> tuple[list[RunFigures], RunFigures]:
    demo = RemoteDemo(base, s3, initial)
    demo.setup(raw)
    puller = base / "puller"
    shutil.copytree(demo.consumer, puller)
    shutil.copy2(REPO / "bench" / "plain_build.py", puller / "plain_build.py")
    start = date(2013, 1, 1)
    first = _one_run(demo, puller, 0, "initial load", start, initial)
    present = initial
    rows = []
    for i in range(1, runs + 1):
        if i % 2:
            day = start + timedelta(days=present)
            for kind in ("flights", "weather"):
                demo.add_day(raw / kind / f"{day.isoformat()}.parquet", kind)
            sh([DVC, "add", "-q", *RAW], demo.producer)
            demo.push()
            demo.sync()
            present += 1
            change = f"new day {day.isoformat()}"
        else:
            day = start + timedelta(days=(i * 7) % present)
            demo.change_day(day.isoformat())
            change = f"changed {day.isoformat()}"
        rows.append(_one_run(demo, puller, i, change, start, present))
        print(f"run {i}: {change}", file=sys.stderr)
    return rows, first


def _one_run(demo: RemoteDemo, puller: Path, i: int, change: str, start: date, present: int) -> RunFigures:
    last = (start + timedelta(days=present - 1)).isoformat()
    span = f"{start.isoformat()}...{last}"
    t = time.perf_counter()
    moved = demo.materialize(change, "--select", "flight_features,weather_features", "--partition", span)
    skipwise_s = time.perf_counter() - t
    sizes = demo.object_sizes()
    # (a): every object the current .dir manifests name, once.
    from skipwise.adapters.dvc.manifest import read_tracked_dir

    full_reqs = full_bytes = 0
    for d in RAW:
        for md5 in read_tracked_dir(demo.producer, d).files.values():
            full_reqs += 1
            full_bytes += sizes[f"skipwise-demo-raw-euw1/dvcstore/files/md5/{md5[:2]}/{md5[2:]}"]
    # (b): dvc pull into a persistent DVC cache, then rebuild every partition.
    for d in RAW:
        shutil.copy2(demo.producer / f"{d}.dvc", puller / f"{d}.dvc")
    shutil.copy2(demo.producer / ".dvc" / "config", puller / ".dvc" / "config")
    mark = demo.s3.mark()
    t = time.perf_counter()
    if not (puller / ".git").exists():
        sh(["git", "init", "-q"], puller)
    sh([DVC, "pull", "-q", *RAW], puller, demo.env)
    reqs = demo.s3.requests(since=mark)
    lists = sum(r.method == "GET" and ("list-type=" in r.path or "prefix=" in r.path) for r in reqs)
    pull_bytes = sum(sizes.get(r.path.lstrip("/"), 0) for r in reqs if r.method == "GET")
    stats = puller / "plain_stats.json"
    sh(
        [
            sys.executable,
            "plain_build.py",
            "--defs",
            "assets.definitions",
            "--select",
            "flight_features,weather_features",
            "--out",
            "data/dvcplain",
            "--range",
            span,
            "--stats",
            str(stats),
        ],
        puller,
        {"PYTHONPATH": str(puller)},
    )
    pull_s = time.perf_counter() - t
    rebuilt = int(json.loads(stats.read_text()).get("computed", 0))
    return RunFigures(
        i,
        change,
        moved.server_requests or 0,
        moved.server_get_bytes or 0,
        moved.computed,
        full_reqs,
        full_bytes,
        len(reqs),
        lists,
        pull_bytes,
        rebuilt,
        skipwise_s,
        pull_s,
    )


def _report(rows: list[RunFigures], first: RunFigures, initial: int) -> str:
    sw_b, a_b, b_b = (sum(getattr(r, f) for r in rows) for f in ("skipwise_bytes", "full_reload_bytes", "pull_bytes"))
    sw_r, a_r, b_r = (
        sum(getattr(r, f) for r in rows) for f in ("skipwise_requests", "full_reload_requests", "pull_requests")
    )
    b_lists = sum(r.pull_lists for r in rows)
    sw_usd, a_usd, b_usd = usd(sw_r, sw_b), usd(a_r, a_b), usd(b_r, b_b, b_lists)
    fewer = 100 * (1 - sw_b / a_b) if a_b else 0.0
    lines = [
        f"# Day over day from a remote region ({len(rows)} runs after an initial {initial} days)",
        "",
        "Raw data on a DVC remote in eu-west-1 (moto_server bucket), compute in us-east-1; each run follows one",
        "new or changed day. Requests and bytes are the server's own log (bytes: the sizes of the objects fetched).",
        "",
        "| system | requests | bytes moved | dollars | partitions computed | wall s |",
        "|---|---|---|---|---|---|",
        f"| skipwise (input cache, per-partition fetch by md5) | {sw_r} | {sw_b:,} | ${sw_usd:.6f} | "
        f"{sum(r.skipwise_computed for r in rows)} | {sum(r.skipwise_seconds for r in rows):.1f} |",
        f"| (a) full reload each run | {a_r} | {a_b:,} | ${a_usd:.6f} | - | - |",
        f"| (b) `dvc pull` (persistent DVC cache) + whole-stage rebuild | {b_r} ({b_lists} LIST) | {b_b:,} | ${b_usd:.6f} | "
        f"{sum(r.rebuilt for r in rows)} | {sum(r.pull_rebuild_seconds for r in rows):.1f} |",
        "",
        f"skipwise moved {fewer:.1f} % fewer bytes than (a) (target >= 95 %: {'pass' if fewer >= 95 else 'FAIL'}); "
        f"{sw_b / b_b if b_b else 0:.2f}x the bytes of (b) with {sw_r} requests against {b_r}.",
        f"Initial load (not in the totals): skipwise {first.skipwise_requests} requests, {first.skipwise_bytes:,} B; "
        f"`dvc pull` {first.pull_requests} requests, {first.pull_bytes:,} B.",
        "",
        "| run | change | skipwise requests | skipwise B | (a) B | (b) requests | (b) B | computed | rebuilt |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.run} | {r.change} | {r.skipwise_requests} | {r.skipwise_bytes:,} | {r.full_reload_bytes:,} | "
            f"{r.pull_requests} | {r.pull_bytes:,} | {r.skipwise_computed} | {r.rebuilt} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
