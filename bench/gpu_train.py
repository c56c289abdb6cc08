"""Train the demo's delay model on CUDA and print skipwise's GPU figures beside nvidia-smi's.

    .venv/bin/python -m bench.gpu_train [--rows 300000] [--epochs 6] [--training data/...parquet]

It trains twice with the same seed (the second run checks determinism on this device), each inside
skipwise's `Meter`, which records `gpu_seconds` (wall while the block allocated CUDA memory) and
`gpu_peak_memory_bytes` (torch's peak allocation); a thread samples `nvidia-smi` for this process's
memory meanwhile (it includes the CUDA context, which torch's allocator does not count). Without
a CUDA device it says so and exits 0. The training set is the demo's when it has been built, else
a synthetic one of the same columns.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def synthetic_training_set(rows: int, seed: int = 0):
    """A frame with the demo training set's columns; the label depends on weather and hour."""
    import numpy as np
    import polars as pl

    from assets.models.delay import CATEGORICAL_COLUMNS, FEATURE_COLUMNS

    rng = np.random.default_rng(seed)
    start = dt.datetime(2013, 1, 1)
    minutes = rng.integers(0, 365 * 24 * 60, rows)
    sched = [start + dt.timedelta(minutes=int(m)) for m in minutes]
    data = {c: rng.normal(size=rows) for c in FEATURE_COLUMNS}
    data["sched_dep_hour"] = np.array([s.hour for s in sched], dtype=np.int64)
    data["weekday"] = np.array([s.isoweekday() for s in sched], dtype=np.int64)
    for c, n in zip(CATEGORICAL_COLUMNS, (16, 3, 100)):
        data[c] = [f"{c}{i}" for i in rng.integers(0, n, rows)]
    logit = 1.5 * data["precip"] - 1.0 * data["visib"] + 0.1 * (data["sched_dep_hour"] - 12)
    data["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pl.DataFrame(data).with_columns(
        pl.Series("sched_dep", sched),
        pl.Series("date", [s.date() for s in sched]),
        pl.int_range(pl.len()).alias("flight"),
        pl.lit("N1").alias("tailnum"),
    )
    return frame


def demo_training_set():
    import polars as pl

    found = sorted((ROOT / "data").glob("*/training_set/all/manifest.json"))
    if not found:
        return None
    m = json.loads(found[0].read_text())
    return pl.read_parquet(found[0].parent / m["output"])


class SmiSampler(threading.Thread):
    """Samples nvidia-smi every 0.2 s: this process's GPU memory, and the device's utilisation."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process_mib: list[int] = []
        self.util: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        pid = str(os.getpid())
        while not self.stop.is_set():
            apps = _smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
            for line in apps.splitlines():
                parts = [p.strip() for p in line.split(",")]
                if parts and parts[0] == pid and parts[1].isdigit():
                    self.process_mib.append(int(parts[1]))
            util = _smi("--query-gpu=utilization.gpu", "--format=csv,noheader,nounits").splitlines()
            if util and util[0].strip().isdigit():
                self.util.append(int(util[0].strip()))
            self.stop.wait(0.2)


def _smi(*args: str) -> str:
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000, help="synthetic rows when the demo training set is not built")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument(
        "--synthetic", action="store_true", help="use synthetic rows even if the demo's training set exists"
    )
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(
            f"no CUDA device: torch {torch.__version__} sees none (torch.cuda.is_available() is False); "
            "training would run on the CPU, nothing to measure here"
        )
        return 0

    from skipwise.engine.metering import Meter

    from assets.models.delay import DEFAULT_PARAMS, TRAINING_PARAMS, train_delay_model

    frame = None if args.synthetic else demo_training_set()
    source = "demo training set" if frame is not None else f"synthetic, {args.rows} rows"
    if frame is None:
        frame = synthetic_training_set(args.rows)
    params = {k: DEFAULT_PARAMS[k] for k in TRAINING_PARAMS}
    params["epochs"] = args.epochs
    if source.startswith("synthetic"):
        params["valid_from"] = "2013-11-01"
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; data: {source} ({frame.height} rows)")
    print(_smi("--query-gpu=name,driver_version,memory.total,memory.used", "--format=csv").strip())
    results = []
    for attempt in (1, 2):
        sampler = SmiSampler()
        sampler.start()
        t0 = time.perf_counter()
        with Meter() as meter:
            artifact, metrics = train_delay_model(frame, params)
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        cost = meter.result()
        results.append((artifact, metrics))
        print(
            f"run {attempt}: device {metrics['device']}, wall {wall:.2f} s, skipwise gpu_seconds {cost.gpu_seconds}, "
            f"gpu_peak_memory_bytes {cost.gpu_peak_memory_bytes} ({(cost.gpu_peak_memory_bytes or 0) / 2**20:.1f} MiB); "
            f"nvidia-smi: this process peak {max(sampler.process_mib, default=0)} MiB (CUDA context included), "
            f"utilisation peak {max(sampler.util, default=0)} %; auc {metrics['auc']}"
        )
        print(f"  method: {cost.method}")
    same = results[0][1] == results[1][1] and results[0][0] == results[1][0]
    print(f"deterministic on this device (same seed, same metrics and bytes): {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    shutil.which("nvidia-smi") or print("note: nvidia-smi is not on PATH; only torch's figures are shown")
    raise SystemExit(main())
