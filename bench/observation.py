"""What observing reads costs, one command:

    .venv/bin/python -m bench.observation [--days 30] [--repeats 5] [--out bench/results/observation.md]

1. Compute overhead per partition: the demo's flight_features body (`build_flight_features` over a
   7-day window of the real raw files) timed in a process that never imports skipwise (no audit hook,
   plain `os.environ`) against a process with skipwise imported, each body inside
   `observing.recording()` plus the conversion of what it read into keyed digests (`Observations.of`),
   and, in that same process, each body run bare just before (the hook installed, nothing recording).
   Same days, same order, alternating processes; medians and minimums of the per-partition times.
2. Planning cost: `Project.plan()` in process over the demo's committed partitions, with the
   observed dependencies the manifests hold (re-checked through the stat cache), against the same
   plan with observation's re-check skipped (every manifest's `observed` emptied in memory).
Prints a markdown table and writes it to --out. Needs the demo built (`make demo`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.false_hits import proc_stat
from bench.report import steal_percent

REPO = Path(__file__).resolve().parent.parent

BODY = r"""
import datetime, json, sys, time
from pathlib import Path
observe = sys.argv[1] == "observed"
days = json.loads(sys.argv[2])
if observe:
    import skipwise
    from skipwise.project import observing
    from skipwise.engine.loading import load_project
    project = load_project(".")
    asset = project.graph.asset("flight_features")
import polars as pl
from assets.features.flights import build_flight_features
out = []
for day in days:
    d = datetime.date.fromisoformat(day)
    files = [f"data/raw/flights/{(d - datetime.timedelta(days=i)).isoformat()}.parquet" for i in range(7, -1, -1)]
    frame = pl.concat([pl.read_parquet(f) for f in files if Path(f).exists()])
    start = time.perf_counter()
    build_flight_features(frame, d, 7, 15.0)
    bare = time.perf_counter() - start
    if observe:  # the same body again in this process, observed
        start = time.perf_counter()
        with observing.recording() as seen:
            build_flight_features(frame, d, 7, 15.0)
        project.observations.of(asset, seen, [project.root / rel for rel, _ in project.code.of(asset).files])
        out.append([bare, time.perf_counter() - start])
    else:
        out.append([bare, bare])
print(json.dumps(out))
"""


def body_times(mode: str, days: list[str]) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        [sys.executable, "-c", BODY, mode, json.dumps(days)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(p.stdout.strip().splitlines()[-1])


def plan_times(repeats: int) -> tuple[list[float], list[float], int]:
    from dataclasses import replace

    from skipwise.engine.loading import load_project

    with_obs, without, deps = [], [], 0
    for _ in range(repeats):
        project = load_project(REPO)
        start = time.perf_counter()
        project.plan()
        with_obs.append(time.perf_counter() - start)
        project = load_project(REPO)
        read = project.manifest

        def no_observed(asset, key, _read=read):
            m = _read(asset, key)
            return replace(m, observed={}) if m is not None else None

        project.manifest = no_observed
        start = time.perf_counter()
        project.plan()
        without.append(time.perf_counter() - start)
    for m in (REPO / "data").glob("*/*/*/manifest.json"):
        deps += len(json.loads(m.read_text()).get("observed", {}))
    return with_obs, without, deps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "observation.md"))
    args = ap.parse_args(argv)
    days = [f"2013-03-{d:02d}" for d in range(1, 32)][: args.days]
    stat_before = proc_stat()
    plain, bare, observed = [], [], []
    for _ in range(args.repeats):
        plain += [b for b, _ in body_times("plain", days)]
        pairs = body_times("observed", days)
        bare += [b for b, _ in pairs]
        observed += [o for _, o in pairs]
    with_obs, without, deps = plan_times(args.repeats)
    after = proc_stat()
    steal = f"{steal_percent(stat_before, after):.1f} %" if stat_before and after else "not available"
    med_p, med_b, med_o = statistics.median(plain), statistics.median(bare), statistics.median(observed)
    lines = [
        "| measure | without observation | with observation | ratio |",
        "|---|---|---|---|",
        f"| flight_features body, same process, bare vs observed ({len(bare)} pairs): median | {med_b * 1000:.2f} ms | {med_o * 1000:.2f} ms | {med_o / med_b:.3f}x |",
        f"| the same: minimum | {min(bare) * 1000:.2f} ms | {min(observed) * 1000:.2f} ms | {min(observed) / min(bare):.3f}x |",
        f"| the body in a process without skipwise (no audit hook) vs observed: median | {med_p * 1000:.2f} ms | {med_o * 1000:.2f} ms | {med_o / med_p:.3f}x |",
        f"| `Project.plan()` of the demo ({deps} observed dependencies in its manifests): median | {statistics.median(without) * 1000:.0f} ms | {statistics.median(with_obs) * 1000:.0f} ms | {statistics.median(with_obs) / statistics.median(without):.3f}x |",
        "",
        f"CPU steal during the run: {steal}; load average at the end: {os.getloadavg()[0]:.1f}.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
