"""One step of the false-hit soak (`bench/false_hits.py`), run in a subprocess inside a project copy:

    cd <copy> && PYTHONPATH=<copy> python -P bench/false_hits_worker.py RESULT.json STEP FIRST LAST

1. Build: an incremental build of flight_features, weather_features and training_set over the days
   FIRST..LAST with the copy's own engine (`skipwise.engine.load_project(".").materialize`, no
   Dagster), recording every partition's action (run/skip) and reason.
2. Oracle: every expected partition is recomputed directly from the raw files in the workspace (not
   DVC's record of them), params.yaml and the copy's asset functions, with no engine cache: no
   fingerprint, no manifest, no stat cache. The inputs are assembled the way the engine assembles
   them (a flight day reads the raw flights of the LOOKBACK_DAYS before it and itself, a weather day
   the WEATHER_HISTORY_DAYS before it and itself; training_set every flight_features and
   weather_features day, each read back from its parquet bytes, in key order, concatenated with
   `how="vertical_relaxed"`), and serialized with the engine's own writer (`_serialize`).
3. Committed state: for every manifest under data/*/*/*/manifest.json, its output_hash and the
   sha256 of the bytes its output file really holds.

The result (JSON) goes to RESULT.json; the driver compares the three. This file must not import
`bench` (run with -P it cannot): it runs against the copy's code only.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
import traceback
from datetime import date, timedelta
from pathlib import Path

T0 = time.perf_counter()
ASSETS = ["flight_features", "weather_features", "training_set"]


def days_between(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def build(step: str, days: list[str], out: dict) -> None:
    from skipwise.engine import load_project

    t = time.perf_counter()
    project = None
    try:
        project = load_project(".")
        for name in ASSETS:
            keys = days if project.graph.asset(name).partitions else None
            for o in project.materialize(name, keys, run_id=f"soak-{step}"):
                out["outcomes"].append([name, o.decision.partition, o.decision.action, o.decision.reason])
    except BaseException:  # noqa: BLE001 - any failure of the build is a finding, reported whole
        out["build_error"] = traceback.format_exc()[-6000:]
    finally:
        out["warnings"] = list(project.warnings) if project is not None else []
        out["t_build"] = time.perf_counter() - t


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def oracle(days: list[str], out: dict) -> None:
    """Expected sha256 of every partition of the build, computed without any engine state."""
    import polars as pl

    import assets.graph as g
    from skipwise.engine import PartitionContext, _load_function, _serialize, load_project

    t = time.perf_counter()
    try:
        project = load_project(".")  # afresh: params.yaml as it is now, checked against the graph
        start = g.DAILY.start

        def raw_window(source: str, day: str, lookback: int) -> pl.DataFrame:
            d = date.fromisoformat(day)
            frames = []
            for i in range(lookback, -1, -1):
                k = d - timedelta(days=i)
                if k < start:
                    continue  # clipped to the source's partitions
                path = Path(g.GRAPH.node(source).path) / f"{k.isoformat()}.parquet"
                if k == d or path.exists():
                    frames.append(pl.read_parquet(io.BytesIO(path.read_bytes())))
            return pl.concat(frames, how="vertical_relaxed")

        expected: dict[str, str] = {}
        outputs: dict[tuple[str, str], bytes] = {}
        windows = {"flight_features": ("raw_flights", g.LOOKBACK_DAYS), "weather_features": ("raw_weather", g.WEATHER_HISTORY_DAYS)}
        for name, (source, lookback) in windows.items():
            asset = g.GRAPH.asset(name)
            fn = _load_function(asset.fn)
            params = project.params_of(asset)
            for day in days:
                value = fn(PartitionContext(name, day, params), **{source: raw_window(source, day, lookback)})
                data = _serialize(asset, value)
                outputs[(name, day)] = data
                expected[f"{name}/{day}"] = _sha(data)
        ts = g.GRAPH.asset("training_set")
        ups = {n: pl.concat([pl.read_parquet(io.BytesIO(outputs[(n, d)])) for d in sorted(days)], how="vertical_relaxed")
               for n in ("flight_features", "weather_features")}
        from skipwise.core.partitions import UNPARTITIONED

        value = _load_function(ts.fn)(PartitionContext("training_set", UNPARTITIONED, project.params_of(ts)), **ups)
        expected[f"training_set/{UNPARTITIONED}"] = _sha(_serialize(ts, value))
        out["expected"] = expected
    except BaseException:  # noqa: BLE001
        out["oracle_error"] = traceback.format_exc()[-6000:]
    finally:
        out["t_oracle"] = time.perf_counter() - t


def committed(out: dict) -> None:
    """Every committed partition: its manifest's output_hash and the sha256 of its output file now."""
    got: dict[str, dict] = {}
    for mpath in sorted(Path("data").glob("*/*/*/manifest.json")):
        rel = f"{mpath.parent.parent.name}/{mpath.parent.name}"
        try:
            m = json.loads(mpath.read_text())
            path = mpath.parent / Path(m["output"]).name
            got[rel] = {"manifest": m.get("output_hash"), "file": _sha(path.read_bytes()) if path.is_file() else None}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            got[rel] = {"manifest": None, "file": None, "error": f"{type(exc).__name__}: {exc}"}
    out["committed"] = got


def main(argv: list[str]) -> int:
    result_path, step, first, last = argv[1:5]
    mode = argv[5] if len(argv) > 5 else "all"
    days = days_between(first, last)
    out: dict = {"outcomes": [], "build_error": None, "oracle_error": None, "t_import": 0.0}
    import skipwise.engine  # noqa: F401 - timed apart from the build

    out["t_import"] = time.perf_counter() - T0
    out["code_from"] = [skipwise.engine.__file__]
    build(step, days, out)
    if mode != "build":
        oracle(days, out)
    import assets.bodies

    out["code_from"].append(assets.bodies.__file__)
    committed(out)
    out["t_total"] = time.perf_counter() - T0
    Path(result_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
