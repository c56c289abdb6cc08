"""A new day arrives in the demo: features update incrementally, the model retrains once, promotion
is decided, predictions are rescored; then a worse model is kept but not promoted, and going back
restores a version instead of training it. The cost of each step from `skipwise cost --by experiment`.

    .venv/bin/python -m bench.retrain_sequence [--day 2013-12-31]

Runs on the demo project itself (needs `make data`: the raw files). The day is held back (moved out
and `dvc add`), everything is built, then the day comes back with `dvc add`. The sensors' decisions
are their real tick functions (`raw_data_evaluation`, `retrain_evaluation`, `stale_run_requests`);
each step is a real `skipwise materialize`, tagged with the step as its experiment so the ledger
says what each one cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def sh(*cmd: str, env: dict | None = None) -> str:
    t0 = time.perf_counter()
    p = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {}), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    out = (p.stdout + p.stderr).strip()
    print(f"$ {' '.join(cmd)}   ({time.perf_counter() - t0:.1f} s)")
    print("  " + out.replace("\n", "\n  ")[-3000:])
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode})")
    return p.stdout


def materialize(step: str, *args: str, env: dict) -> None:
    sh(str(BIN / "skipwise"), "materialize", *args, "--tags", json.dumps({"skipwise/experiment": step}), env=env)


def project():
    from skipwise.engine.loading import load_project

    return load_project(ROOT)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day", default="2013-12-31", help="the day that arrives late")
    args = ap.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="dagster_home_"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"DAGSTER_HOME": str(home)}
    held = Path(tempfile.mkdtemp(prefix="held_day_"))
    files = [ROOT / f"data/raw/{kind}/{args.day}.parquet" for kind in ("flights", "weather")]
    if not all(f.exists() for f in files):
        raise SystemExit(f"no raw files for {args.day}: run `make data` first")

    print(f"== 0. {args.day} is not there yet")
    for f in files:
        shutil.move(f, held / f"{f.parent.name}.parquet")
    try:
        return _sequence(args, env, held, files)
    finally:
        for f in files:  # the day back whatever happened
            if (held / f"{f.parent.name}.parquet").exists():
                shutil.move(held / f"{f.parent.name}.parquet", f)
        shutil.rmtree(home, ignore_errors=True)


def _sequence(args, env, held, files) -> int:
    from skipwise.adapters.dagster.retraining import raw_data_evaluation, retrain_evaluation
    from skipwise.adapters.dagster.sensors import stale_run_requests

    sh(str(BIN / "dvc"), "add", "-q", "data/raw/flights", "data/raw/weather")

    print("== 1. the whole pipeline without it")
    import datetime

    day = datetime.date.fromisoformat(args.day)
    before, after = (day - datetime.timedelta(days=1)).isoformat(), (day + datetime.timedelta(days=1)).isoformat()
    # Every partition but those that need the missing day's own files (look-back windows do without it).
    first, last = "2013-01-01", "2013-12-31"
    features = "flight_features,weather_features"
    for lo, hi in ((first, before), (after, last)):
        if lo <= hi:
            materialize("1-initial-build", "--select", features, "--partition", f"{lo}...{hi}", env=env)
    materialize("1-initial-build", "--select", "training_set,delay_model", env=env)
    after2 = (day + datetime.timedelta(days=2)).isoformat()  # predictions read the previous day's weather too
    for lo, hi in ((first, before), (after2, last)):
        if lo <= hi:
            materialize("1-initial-build", "--select", "delay_predictions", "--partition", f"{lo}...{hi}", env=env)
    raw_cursor = raw_data_evaluation(project(), None).cursor
    first = retrain_evaluation(project(), "delay_model", None, time.time(), ["training_set"])
    print(f"retraining sensor: {first.skip_reason.skip_message if first.skip_reason else 'requests a retraining'}")
    sh(str(BIN / "skipwise"), "models")

    print(f"== 2. {args.day} arrives (dvc add)")
    for f in files:
        shutil.move(held / f"{f.parent.name}.parquet", f)
    sh(str(BIN / "dvc"), "add", "-q", "data/raw/flights", "data/raw/weather")
    tick = raw_data_evaluation(project(), raw_cursor)
    for r in tick.run_requests:
        key = (
            r.partition_key
            or f"{r.tags['dagster/asset_partition_range_start']}...{r.tags['dagster/asset_partition_range_end']}"
        )
        print(f"new-raw-data sensor requests {','.join(k.path[0] for k in r.asset_selection)}[{key}]")
        materialize(
            "2-features", "--select", ",".join(k.path[0] for k in r.asset_selection), "--partition", key, env=env
        )

    print("== 3. the retraining sensor decides")
    tick = retrain_evaluation(project(), "delay_model", None, time.time(), ["training_set"])
    if tick.run_requests:
        (req,) = tick.run_requests
        print(
            f"retraining sensor requests {','.join(k.path[0] for k in req.asset_selection)}: {req.tags['skipwise/retrain_reason']}"
        )
        materialize("3-retrain", "--select", ",".join(k.path[0] for k in req.asset_selection), env=env)
    else:
        print(f"retraining sensor: {tick.skip_reason.skip_message}")
    sh(str(BIN / "skipwise"), "models")

    print("== 4. predictions: what the stale-partitions sensor asks for (the model left to the retraining sensor)")
    requests = stale_run_requests(project(), frozenset({"training_set", "delay_model"}))
    for r in requests:
        names = ",".join(k.path[0] for k in r.asset_selection)
        span = (
            f"{r.tags.get('dagster/asset_partition_range_start')}...{r.tags.get('dagster/asset_partition_range_end')}"
        )
        print(f"stale-partitions sensor requests {names}[{span}]")
        materialize("4-rescore", "--select", names, "--partition", span, env=env)
    again = stale_run_requests(project(), frozenset({"training_set", "delay_model"}))
    print(f"then: {'nothing stale' if not again else again}")

    print("== 5. a worse model (learning rate 1e-5: barely trained): trained, kept, not promoted; nothing to rescore")
    params = ROOT / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("  lr: 0.003\n", "  lr: 0.00001\n"))
        materialize("5-worse-model", "--select", "delay_model", env=env)
        print(
            f"stale predictions: {len(stale_run_requests(project(), frozenset({'training_set', 'delay_model'})))} request(s)"
        )
    finally:
        params.write_text(original)
    print(
        "== 6. back to the params of step 3: that fingerprint was trained before, restored (sha256 checked), not trained"
    )
    materialize("6-restore", "--select", "delay_model", env=env)
    sh(str(BIN / "skipwise"), "models")

    print("== cost of each step")
    sh(str(BIN / "skipwise"), "cost", "--by", "experiment")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
