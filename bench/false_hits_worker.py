"""One step of the false-hit soak (`bench/false_hits.py`), run in a subprocess inside a project copy:

    cd <copy> && PYTHONPATH=<copy> python -P bench/false_hits_worker.py RESULT.json STEP FIRST LAST

The copy's own code runs (its `assets` package, found through PYTHONPATH and the current folder)
with the installed library (`skipwise`, editable from this repository's pipelines/: the copy
holds no library of its own).

1. Build: an incremental build of flight_features, weather_features and training_set over the days
   FIRST..LAST with the engine, the way a process outside Dagster runs it
   (`skipwise.engine.project.load_project(".")`, which resolves the graph of the copy's
   `assets.definitions` through its snapshot, then `Project.materialize`), recording every
   partition's action (run/skip) and reason.
2. Oracle: every expected partition is recomputed directly from the raw files in the workspace (not
   DVC's record of them), params.yaml and the copy's asset functions, with no engine state: no
   fingerprint, no manifest, no stat cache, no resolved graph or snapshot. What it needs comes from
   the copy's `assets.definitions` as Dagster holds it: the window each asset reads (its input's
   `TimeWindowPartitionMapping`: a flight day reads the raw flights of LOOKBACK_DAYS before it and
   itself, a weather day the WEATHER_HISTORY_DAYS before it and itself, clipped to the source's
   start), the source folders, the `@sw.asset` functions (called with a context holding the
   partition key and their `dg.Config` class built from params.yaml's section for the asset, over
   the class defaults). training_set gets every flight_features and weather_features day, each read
   back from its parquet bytes, in key order, concatenated with `how="vertical_relaxed"`. Values
   are serialized with the library's writer for the asset's declared format (`skipwise.formats`).
3. Committed state: for every manifest under data/*/*/*/manifest.json, its output_hash and the
   sha256 of the bytes its output file really holds.

The result (JSON) goes to RESULT.json, with the files of every project module that was imported
(`code_from`, all of which must lie in the copy) and the library's (`library_from`); the driver
compares them. This file must not import `bench` (run with -P it cannot): it runs against the
copy's code only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
import traceback
from datetime import date, timedelta
from pathlib import Path

T0 = time.perf_counter()
ASSETS = ["flight_features", "weather_features", "training_set"]
OUTSIDE_PACKAGE = "soakshared"  # bench/false_hits.py's package outside the project copy


def days_between(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def build(step: str, days: list[str], out: dict) -> None:
    from skipwise.engine.loading import load_project

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


def _plain(value):
    return getattr(value, "value", getattr(value, "text", value))


def oracle(days: list[str], out: dict) -> None:
    """Expected sha256 of every partition of the build, computed without any engine state.

    Everything the build is checked against comes from the copy's Dagster definitions as
    Dagster holds them (not skipwise's resolved graph or its snapshot): each input's
    TimeWindowPartitionMapping, the source folders, the asset functions and their dg.Config
    classes, built from params.yaml read here (class defaults, overridden by the asset's section).
    """
    import dagster as dg
    import polars as pl
    import yaml
    from skipwise import formats
    from skipwise.core.partitions import UNPARTITIONED
    from skipwise.engine.bodies import REGISTRY, PartitionContext

    import assets.definitions as g

    t = time.perf_counter()
    try:
        params_yaml = yaml.safe_load(Path("params.yaml").read_text()) or {}
        sources = {"raw_flights": g.raw_flights, "raw_weather": g.raw_weather}

        def body_of(adef):
            return REGISTRY[_plain(adef.metadata_by_key[adef.key]["skipwise/fn"])]

        def call(adef, key: str, inputs: dict):
            body = body_of(adef)
            kwargs = dict(inputs)
            if body.context_param:
                kwargs[body.context_param] = PartitionContext(adef.key.path[-1], key)
            if body.config_param:
                kwargs[body.config_param] = body.config_class(**(params_yaml.get(adef.key.path[-1]) or {}))
            return body.fn(**kwargs)

        def serialize(adef, value) -> bytes:
            fmt = _plain(adef.metadata_by_key[adef.key].get("skipwise/format")) or ""
            return (formats.get(fmt) if fmt else formats.for_value(value)).encode(value)

        def raw_window(adef, source: str, day: str) -> pl.DataFrame:
            """The raw files of `day` and the days the asset's partition mapping reads before it."""
            src = sources[source]
            mapping = adef.get_partition_mapping(dg.AssetKey(source))
            if type(mapping) is not dg.TimeWindowPartitionMapping or mapping.end_offset != 0:
                raise AssertionError(
                    f"{adef.key.path[-1]} reads {source} through {mapping!r}: the oracle knows day windows only"
                )
            start = src.partitions_def.start.date()
            folder = Path(_plain(src.metadata["skipwise/path"]))
            d = date.fromisoformat(day)
            frames = []
            for i in range(-mapping.start_offset, -1, -1):
                k = d - timedelta(days=i)
                if k < start:
                    continue  # clipped to the source's partitions
                path = folder / f"{k.isoformat()}.parquet"
                if k == d or path.exists():
                    frames.append(pl.read_parquet(io.BytesIO(path.read_bytes())))
            return pl.concat(frames, how="vertical_relaxed")

        expected: dict[str, str] = {}
        outputs: dict[tuple[str, str], bytes] = {}
        for adef, source in ((g.flight_features, "raw_flights"), (g.weather_features, "raw_weather")):
            name = adef.key.path[-1]
            for day in days:
                data = serialize(adef, call(adef, day, {source: raw_window(adef, source, day)}))
                outputs[(name, day)] = data
                expected[f"{name}/{day}"] = _sha(data)
        ups = {
            n: pl.concat([pl.read_parquet(io.BytesIO(outputs[(n, d)])) for d in sorted(days)], how="vertical_relaxed")
            for n in ("flight_features", "weather_features")
        }
        value = call(g.training_set, UNPARTITIONED, ups)
        expected[f"training_set/{UNPARTITIONED}"] = _sha(serialize(g.training_set, value))
        out["expected"] = expected
    except BaseException:  # noqa: BLE001
        out["oracle_error"] = traceback.format_exc()[-6000:]
    finally:
        out["t_oracle"] = time.perf_counter() - t


def committed(out: dict) -> None:
    """Every committed partition: its manifest's output_hash and the sha256 of its output file now
    (in data/, or with $SKIPWISE_STORE=s3://..., in the bucket, read with boto3: not the library)."""
    store = os.environ.get("SKIPWISE_STORE", "")
    if store.startswith("s3://"):
        out["committed"] = committed_in_bucket(store)
        return
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


def committed_in_bucket(url: str) -> dict[str, dict]:
    import boto3

    bucket, _, prefix = url[len("s3://") :].partition("/")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    got: dict[str, dict] = {}
    for key in sorted(k for k in keys if k.endswith("/manifest.json")):
        folder = key.rsplit("/", 1)[0]
        rel = "/".join(folder.split("/")[-2:])
        try:
            m = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            okey = f"{folder}/{Path(m['output']).name}"
            data = client.get_object(Bucket=bucket, Key=okey)["Body"].read() if okey in keys else None
            got[rel] = {"manifest": m.get("output_hash"), "file": _sha(data) if data is not None else None}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            got[rel] = {"manifest": None, "file": None, "error": f"{type(exc).__name__}: {exc}"}
    return got


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--serve"]:
        return serve()
    result_path, step, first, last = argv[1:5]
    mode = argv[5] if len(argv) > 5 else "all"
    days = days_between(first, last)
    out: dict = {"outcomes": [], "build_error": None, "oracle_error": None, "t_import": 0.0}
    import skipwise.engine.project  # noqa: F401 - timed apart from the build

    out["t_import"] = time.perf_counter() - T0
    out["library_from"] = skipwise.engine.project.__file__  # the installed library (the copy holds none)
    build(step, days, out)
    if mode != "build":
        oracle(days, out)
    import assets.definitions  # noqa: F401 - the build may have planned from the snapshot alone

    # Every module of the project that ran: the driver checks each came from the copy.
    out["code_from"] = sorted(
        {
            m.__file__
            for n, m in list(sys.modules.items())
            if (n == "assets" or n.startswith("assets.")) and getattr(m, "__file__", None)
        }
    )
    # The soak's package outside the project (on PYTHONPATH): the driver checks where it came from.
    outside = sys.modules.get(OUTSIDE_PACKAGE)
    if outside is not None and getattr(outside, "__file__", None):
        out["outside_from"] = outside.__file__
    committed(out)
    out["t_total"] = time.perf_counter() - T0
    Path(result_path).write_text(json.dumps(out))
    return 0


#: What a server process imports once, before any project exists: third-party libraries only
#: (importing Dagster alone takes seconds, and every step needs it: the project's definitions
#: import it). Never the library under test nor the project's code: each step imports those afresh.
PRELOAD = ("dagster", "polars", "pyarrow", "pyarrow.parquet", "pyarrow.csv", "pandas", "yaml", "duckdb")


def serve() -> int:
    """`--serve`: import PRELOAD, then run one step per request in a forked child.

    A request is one JSON line on stdin: {"cwd", "argv", "log", "timeout", "env"}. The child takes
    `env` as its whole environment (none of the server's variables stays: one the driver unset since
    is unset), changes to `cwd` (the project copy), puts it and then env's PYTHONPATH entries first on
    sys.path (as `cd <copy> && PYTHONPATH=<copy>:... python -P` would), sends its stdout and stderr
    to `log` and runs `main(argv)`; it imports skipwise and the project's modules itself, so each
    step sees the files as they are now. The reply is one JSON line: {"rc": exit code, or -9 when it
    ran past `timeout` and was killed}. Third-party modules the server imported read the variables
    they read on import with the server's environment: the driver changes none of those.
    """
    import importlib
    import os
    import signal

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # not installed: the steps import what they use themselves
    assert not any(n == "skipwise" or n.startswith(("skipwise.", "assets")) for n in sys.modules), (
        "preloaded project code"
    )
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the step
            rc = 1
            try:
                fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.chdir(req["cwd"])
                if req.get("env") is not None:
                    os.environ.clear()
                    os.environ.update(req["env"])
                paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != req["cwd"]]
                paths.insert(0, req["cwd"])
                os.environ["PYTHONPATH"] = os.pathsep.join(paths)
                sys.path[0:0] = paths
                global T0
                T0 = time.perf_counter()
                rc = main(["false_hits_worker.py", *req["argv"]])
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            finally:
                try:  # what a normal exit runs (logging's flush, anything the step registered), never the server's teardown
                    import atexit

                    atexit._run_exitfuncs()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(rc)
        deadline = time.monotonic() + float(req.get("timeout", 600))
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                rc = -9
                break
            time.sleep(0.005)
        sys.stdout.write(json.dumps({"rc": rc}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
