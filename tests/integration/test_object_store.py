"""The feature store on an S3-compatible object store (moto_server on 127.0.0.1, a real HTTP server
in its own process): partitions, manifests, kept versions and the ledger in a bucket, leases
instead of file locks, and what moved counted from the server's own request log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.s3server import FAKE_CREDENTIALS, S3Server
from tests.conftest import BIN, run

pytestmark = pytest.mark.integration

BUCKET = "skipwise-features"
DAYS = "2013-01-01...2013-01-04"
FEATURES = ["flight_features", "weather_features"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server.start(tmp_path_factory.mktemp("moto")) as server:  # stopped at the end
        server.make_bucket(BUCKET, "us-east-1")
        yield server


def env_for(root: Path, s3: S3Server, prefix: str) -> dict:
    (root / ".dagster").mkdir(exist_ok=True)
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "SKIPWISE_STORE": f"s3://{BUCKET}/{prefix}",
        "SKIPWISE_STORE_REGION": "us-east-1",
        "SKIPWISE_REGION": "us-east-1",
        "DAGSTER_HOME": str(root / ".dagster"),
    }


def skipwise(root: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "skipwise"), *args], cwd=root, env=env, check=check)


def objects(s3: S3Server, prefix: str) -> dict[str, bytes]:
    client = s3.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1 :]] = client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
    return out


def ledger_rows(store: dict[str, bytes]) -> list[dict]:
    return [
        json.loads(line)
        for k, v in sorted(store.items())
        if k.startswith("ledger/")
        for line in v.splitlines()
        if line.strip()
    ]


def manifests(store: dict[str, bytes]) -> dict[str, dict]:
    return {k.rsplit("/", 1)[0]: json.loads(v) for k, v in store.items() if k.endswith("/manifest.json")}


def test_a_build_on_the_object_store_equals_the_local_one_and_a_second_reads_no_partition(
    project_dir, s3, tmp_path, monkeypatch
):
    import shutil

    local = tmp_path / "local"
    shutil.copytree(project_dir, local, symlinks=True)
    env = env_for(project_dir, s3, "build")
    local_env = {
        k: v for k, v in env_for(local, s3, "unused").items() if k not in ("SKIPWISE_STORE", "SKIPWISE_STORE_REGION")
    }

    mark = s3.mark()
    skipwise(project_dir, env, "materialize", "--partition", DAYS)
    skipwise(local, local_env, "materialize", "--partition", DAYS)
    first = s3.requests(since=mark)
    store = objects(s3, "build")

    # Nothing of the features on local disk; all of it in the bucket, byte for byte the local build.
    assert not (project_dir / "data" / "features").exists()
    found = manifests(store)
    assert len(found) == len(list((local / "data").glob("*/*/*/manifest.json"))) > 0
    for folder, m in found.items():
        local_m = json.loads((local / "data" / folder / "manifest.json").read_text())
        assert m["fingerprint"] == local_m["fingerprint"], folder
        assert m["output_hash"] == local_m["output_hash"], folder
        assert store[f"{folder}/{m['output']}"] == (local / "data" / folder / local_m["output"]).read_bytes()
        assert store[f"{folder}/versions/{m['fingerprint']}.json"] == store[f"{folder}/manifest.json"]
        assert m["output_etag"]
    assert not any(k.endswith(".lease") for k in store), "every lease is released"

    # The ledger is in the bucket: one miss record per computed partition, none local.
    rows = ledger_rows(store)
    misses = Counter((r["asset"], r["partition"]) for r in rows if r["cache"] == "miss")
    assert set(misses.values()) == {1} and len(misses) == len(found)
    assert not (project_dir / "data" / "ledger").exists()
    assert all(r["egress_same_region_bytes"] > 0 for r in rows if r["cache"] == "miss"), (
        "bytes to the store are same-region"
    )
    assert all(r["put_requests"] >= 1 for r in rows if r["cache"] == "miss")
    puts = [r for r in first if r.method == "PUT" and "/build/" in r.path and r.path.endswith(".parquet")]
    assert len(puts) == sum(1 for m in found.values() if m["output"].endswith(".parquet"))

    # Second run: nothing computed, no partition object read, one LIST per asset.
    mark = s3.mark()
    out = skipwise(project_dir, env, "materialize", "--partition", DAYS).stdout
    assert "0 of" in out and "nothing to do" in out
    second = [r for r in s3.requests(since=mark) if "/build" in r.path]
    assert not [r for r in second if r.method == "GET" and "list-type" not in r.path and "/ledger/" not in r.path]
    assert not [r for r in second if r.method == "PUT" and "/ledger/" not in r.path]
    after = ledger_rows(objects(s3, "build"))
    assert Counter(r["cache"] for r in after)["miss"] == len(found)

    cost = skipwise(project_dir, env, "cost", "--by", "asset", "--json").stdout
    table = json.loads(cost)
    assert {row["asset"] for row in table if row.get("asset") in FEATURES} == set(FEATURES)
    text = "".join(v.decode("utf-8", "replace") for v in store.values())
    assert FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in text and FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"] not in text

    # sw.read and sw.scan read the bucket's current versions; scan fetches each once per host.
    import polars as pl
    import skipwise as sw

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    local_days = sorted((local / "data" / "features" / "weather_features").iterdir())
    want = [
        pl.read_parquet(
            local
            / "data"
            / "features"
            / "weather_features"
            / d.name
            / json.loads((d / "manifest.json").read_text())["output"]
        )
        for d in local_days
    ]
    assert sw.read("weather_features", partition="2013-01-02", root=project_dir).equals(want[1])
    assert sw.scan("weather_features", partitions=DAYS, root=project_dir).collect().equals(pl.concat(want))
    mark = s3.mark()
    assert sw.scan("weather_features", partitions=DAYS, root=project_dir).collect().height == sum(
        w.height for w in want
    )
    assert not [r for r in s3.requests(since=mark) if r.method == "GET" and r.path.endswith(".parquet")]

    # The local copies are derived: `skipwise cache gc` removes them, the next scan fetches again.
    copies = json.loads(skipwise(project_dir, env, "cache", "status", "--json").stdout)["object_copies"]
    assert copies["files"] >= len(want) and copies["bytes"] > 0
    skipwise(project_dir, env, "cache", "gc")
    assert json.loads(skipwise(project_dir, env, "cache", "status", "--json").stdout)["object_copies"]["files"] == 0
    mark = s3.mark()
    assert sw.scan("weather_features", partitions=DAYS, root=project_dir).collect().equals(pl.concat(want))
    assert len([r for r in s3.requests(since=mark) if r.method == "GET" and r.path.endswith(".parquet")]) == len(want)


def test_the_ledger_holds_every_billed_request_but_the_last_record_writes(project_dir, s3):
    env = env_for(project_dir, s3, "acct")
    mark = s3.mark()
    skipwise(project_dir, env, "materialize", "--select", "weather_features,flight_features", "--partition", DAYS)
    billed = [
        r for r in s3.requests(since=mark) if ("/acct/" in r.path or "prefix=acct/" in r.path) and r.method != "DELETE"
    ]
    rows = ledger_rows(objects(s3, "acct"))
    got = {k: sum(r[f"{k}_requests"] for r in rows) for k in ("get", "put", "list")}
    lists = sum("list-type" in r.path for r in billed)
    gets = sum(r.method == "GET" for r in billed) - lists
    puts = sum(r.method == "PUT" for r in billed)
    # Not in the ledger: each process's last ledger write (a record cannot hold its own PUT: the
    # parent and one process per step), and the parent's closing summary, which reads the ledger.
    assert 0 <= puts - got["put"] <= 3, (puts, got)
    assert 0 <= (gets + lists) - (got["get"] + got["list"]) <= 2, (gets, lists, got)
    assert sum(r["usd"] or 0 for r in rows if r["cache"] == "run") > 0


def test_an_output_rewritten_in_the_bucket_is_recomputed_never_a_hit(project_dir, s3):
    env = env_for(project_dir, s3, "tamper")
    skipwise(project_dir, env, "materialize", "--select", "weather_features", "--partition", DAYS)
    store = objects(s3, "tamper")
    folder, m = next((f, m) for f, m in sorted(manifests(store).items()) if "weather_features" in f)
    key = f"tamper/{folder}/{m['output']}"
    data = store[f"{folder}/{m['output']}"]
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=bytes(reversed(data)))  # same size, other bytes
    plan = json.loads(
        skipwise(project_dir, env, "plan", "--select", "weather_features", "--partition", DAYS, "--json").stdout
    )
    assert plan["run"] == 1
    out = skipwise(project_dir, env, "materialize", "--select", "weather_features", "--partition", DAYS).stdout
    assert "1 of 4 partitions computed" in out
    again = manifests(objects(s3, "tamper"))[folder]
    assert again["output"] == m["output"] and again["output_hash"] == m["output_hash"]
    assert objects(s3, "tamper")[f"{folder}/{m['output']}"] == data, "the right bytes again, under the same name"

    # A manifest edited by hand (its hash) is not a hit either: the output's name holds the real one.
    folder2, m2 = next(
        (f, m) for f, m in sorted(manifests(objects(s3, "tamper")).items()) if "weather_features" in f and f != folder
    )
    forged = {**m2, "output_hash": "0" * 64}
    s3.client().put_object(Bucket=BUCKET, Key=f"tamper/{folder2}/manifest.json", Body=json.dumps(forged).encode())
    plan = json.loads(
        skipwise(project_dir, env, "plan", "--select", "weather_features", "--partition", DAYS, "--json").stdout
    )
    assert (plan["run"], plan["restore"]) == (0, 1)  # the kept version of that fingerprint is made current again
    skipwise(project_dir, env, "materialize", "--select", "weather_features", "--partition", DAYS)
    assert manifests(objects(s3, "tamper"))[folder2]["output_hash"] == m2["output_hash"]

    # An object no kept manifest names (a writer killed before its commit): gc removes it, and only it.
    stray = f"tamper/{folder}/{'f' * 64}.{'0' * 64}.parquet"
    s3.client().put_object(Bucket=BUCKET, Key=stray, Body=b"stray")
    gone = json.loads(skipwise(project_dir, env, "gc", "--json").stdout)["removed"]
    assert [item["files"] for item in gone] == [[f"s3://{BUCKET}/{stray}"]]
    left = objects(s3, "tamper")
    assert stray.removeprefix("tamper/") not in left and f"{folder}/{m['output']}" in left
    assert (
        json.loads(
            skipwise(project_dir, env, "plan", "--select", "weather_features", "--partition", DAYS, "--json").stdout
        )["run"]
        == 0
    )


def test_a_revert_restores_the_kept_versions_in_the_bucket_without_recomputing(project_dir, s3):
    env = env_for(project_dir, s3, "revert")
    args = ("materialize", "--select", "weather_features", "--partition", DAYS)
    skipwise(project_dir, env, *args)
    first = manifests(objects(s3, "revert"))
    params = project_dir / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("window_hours: 3", "window_hours: 4"))
    assert "4 of 4 partitions computed" in skipwise(project_dir, env, *args).stdout
    params.write_text(original)
    mark = s3.mark()
    out = skipwise(project_dir, env, *args).stdout
    assert "0 of 4 partitions computed" in out and "restored" in out, out
    assert not [r for r in s3.requests(since=mark) if r.method == "PUT" and r.path.endswith(".parquet")]
    assert manifests(objects(s3, "revert")).keys() == first.keys()
    for folder, m in manifests(objects(s3, "revert")).items():
        assert (m["fingerprint"], m["output"], m["output_hash"]) == (
            first[folder]["fingerprint"],
            first[folder]["output"],
            first[folder]["output_hash"],
        )


def test_two_processes_on_one_bucket_compute_each_partition_once(project_dir, s3):
    env = {**env_for(project_dir, s3, "race"), "SKIPWISE_WORKERS": "1"}
    cmd = [str(BIN / "skipwise"), "materialize", "--select", "flight_features", "--partition", DAYS]
    homes = []
    for i in range(2):  # two hosts: a Dagster instance each (one SQLite file takes one writer at a time)
        home = project_dir / f".dagster-{i}"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        homes.append(str(home))
    procs = [
        subprocess.Popen(
            cmd,
            cwd=project_dir,
            env={**os.environ, **env, "DAGSTER_HOME": home},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for home in homes
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    store = objects(s3, "race")
    rows = ledger_rows(store)
    misses = Counter(r["partition"] for r in rows if r["cache"] == "miss" and r["asset"] == "flight_features")
    assert sorted(misses) == [f"2013-01-0{d}" for d in range(1, 5)] and set(misses.values()) == {1}, misses
    hits = Counter(r["partition"] for r in rows if r["cache"] == "hit" and r["asset"] == "flight_features")
    assert sum(hits.values()) == 4, "the other process found each partition done"
    assert not any(k.endswith(".lease") for k in store)


SLOW = """
import os
import time
from pathlib import Path

import dagster as dg
import polars as pl

import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-05")


@sw.asset(partitions_def=DAILY)
def slow_days(context: dg.AssetExecutionContext) -> pl.DataFrame:
    hold = os.environ.get("SLOW_DAYS_HOLD")  # read by the body, so it counts: the retry sets the same value
    if hold and context.partition_key == "2013-01-03" and not Path(hold).exists():
        Path(hold).write_text("inside")
        time.sleep(600)
    return pl.DataFrame({"day": [context.partition_key] * 1000, "n": list(range(1000))})


defs = dg.Definitions(assets=[slow_days], resources={"skipwise": sw.IOManager()})
"""


def test_a_process_killed_inside_a_partition_leaves_whole_partitions_and_a_retry_finishes(tmp_path, s3, monkeypatch):
    from tests.conftest import definitions_module

    root = tmp_path / "slow"
    root.mkdir()
    definitions_module(root, monkeypatch, SLOW, "slowdays")
    env = env_for(root, s3, "kill")
    marker = tmp_path / "inside"  # outside the root: a file beside the module counts in its code version
    proc = subprocess.Popen(
        [str(BIN / "skipwise"), "materialize", "--partition", DAYS],
        cwd=root,
        env={**os.environ, **env, "SLOW_DAYS_HOLD": str(marker), "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never reached the held partition"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = objects(s3, "kill")
    done = manifests(store)
    assert sorted(f.rsplit("/", 1)[1] for f in done) == ["2013-01-01", "2013-01-02"]
    for folder, m in done.items():  # every manifest names a whole output
        assert len(store[f"{folder}/{m['output']}"]) == m["output_size"]
    assert [k for k in store if k.endswith(".lease")] == ["default/slow_days/2013-01-03/.lease"], (
        "the killed holder's lease"
    )

    out = skipwise(
        root, {**env, "SLOW_DAYS_HOLD": str(marker), "PYTHONPATH": str(root)}, "materialize", "--partition", DAYS
    ).stdout
    assert "2 of 4 partitions computed" in out, out
    store = objects(s3, "kill")
    assert not any(k.endswith(".lease") for k in store), "the dead process's lease was taken over at once and released"
    misses = Counter(r["partition"] for r in ledger_rows(store) if r["cache"] == "miss")
    assert sorted(misses) == [f"2013-01-0{d}" for d in range(1, 5)] and set(misses.values()) == {1}, misses
