"""Sources on a DVC remote in another region, against a real S3-compatible server (moto_server on
127.0.0.1, started here as its own process), a real DVC remote (`dvc remote add` + `dvc push`) and
real `skipwise` runs through Dagster. What moved is counted from the server's own request log.

One producer checkout (raw files, DVC cache, pushes) and one consumer checkout (no raw files, no
DVC cache: only git's files), as two machines would be. The tests run in file order on them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from bench.s3server import FAKE_CREDENTIALS, S3Server
from tests.conftest import BIN, DVC, run

pytestmark = pytest.mark.integration

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
FAR, NEAR = "skipwise-euw1", "skipwise-use1"  # eu-west-1 holds the data; compute is in us-east-1
PREFIX = f"/{FAR}/dvcstore/files/md5/"

DEFINITIONS = """
import dagster as dg
import polars as pl

import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")
events = sw.dvc_source("events", "data/raw/events", partitions_def=DAILY, remote=True)


@sw.asset(partitions_def=DAILY)
def day_totals(context: dg.AssetExecutionContext, events: pl.DataFrame) -> pl.DataFrame:
    return events.group_by("store").agg(pl.col("amount").sum()).sort("store")


@sw.asset(partitions_def=DAILY, ins={"events": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1))})
def two_day_totals(context: dg.AssetExecutionContext, events: pl.DataFrame) -> pl.DataFrame:
    return events.group_by("store").agg(pl.col("amount").sum()).sort("store")


defs = dg.Definitions(assets=[events, day_totals, two_day_totals], resources={"skipwise": sw.IOManager()})
"""

SKIPWISE_TOML = """
[compute]
profile = "laptop"
region = "us-east-1"

[locations.far]
url = "s3://skipwise-euw1"
region = "eu-west-1"
"""


def write_day(root: Path, day: str, rows: int = 3000, salt: int = 0) -> None:
    n = int(day[-2:]) * 7 + salt
    frame = pl.DataFrame(
        {"store": [f"s{(i * n) % 13}" for i in range(rows)], "amount": [float((i * n) % 97) for i in range(rows)]}
    )
    path = root / "data" / "raw" / "events" / f"{day}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


class Checkout:
    def __init__(self, root: Path, s3: S3Server):
        self.root = root
        self.env = {**FAKE_CREDENTIALS, "DAGSTER_HOME": str(root / ".dagster"), "SKIPWISE_ROOT": str(root)}
        self.s3 = s3

    def sh(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(list(cmd), cwd=self.root, env=self.env, check=check)

    def dvc(self, *args: str) -> subprocess.CompletedProcess:
        return self.sh(DVC, *args)

    def skipwise(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.sh(str(BIN / "skipwise"), *args, check=check)

    def ledger_files(self) -> set[Path]:
        return set((self.root / "data" / "ledger").rglob("*.jsonl"))

    def ledger(self, since: set[Path] = frozenset()) -> list[dict]:
        """Every ledger row, or those of files written since `since` (ledger files are immutable)."""
        rows = []
        for f in sorted(self.ledger_files() - set(since)):
            rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        return rows


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server.start(tmp_path_factory.mktemp("moto"))
    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)  # this process's own clients (the bucket set-up, in-process planning)
    try:
        server.make_bucket(FAR, "eu-west-1")
        server.make_bucket(NEAR, "us-east-1")
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def producer(tmp_path_factory, s3) -> Checkout:
    root = tmp_path_factory.mktemp("producer")
    (root / "tinyremote").mkdir()
    (root / "tinyremote" / "__init__.py").write_text("")
    (root / "tinyremote" / "definitions.py").write_text(DEFINITIONS)
    (root / "pyproject.toml").write_text('[tool.skipwise]\ndefinitions = "tinyremote.definitions"\n')
    (root / "skipwise.toml").write_text(SKIPWISE_TOML)
    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for day in DAYS:
        write_day(root, day)
    p = Checkout(root, s3)
    p.sh("git", "init", "-q")
    p.dvc("init", "-q")
    p.dvc("config", "core.analytics", "false")
    p.dvc("add", "-q", "data/raw/events")
    p.dvc("remote", "add", "-d", "store", f"s3://{FAR}/dvcstore")
    p.dvc("remote", "modify", "store", "endpointurl", s3.endpoint)
    p.dvc("remote", "modify", "store", "region", "eu-west-1")
    p.dvc("push", "-q")
    return p


def sync(producer: Checkout, consumer: Path) -> None:
    """What `git pull` gives the consumer: the producer's committed files, never its data or caches."""
    for rel in ("tinyremote", "pyproject.toml", "data/raw/events.dvc", ".dvc/config", ".dvcignore"):
        src = producer.root / rel
        if src.is_dir():
            shutil.copytree(src, consumer / rel, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (consumer / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, consumer / rel)


@pytest.fixture(scope="module")
def consumer(tmp_path_factory, producer, s3) -> Checkout:
    root = tmp_path_factory.mktemp("consumer")
    sync(producer, root)
    (root / "skipwise.toml").write_text(SKIPWISE_TOML)
    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert not (root / "data" / "raw" / "events").exists() and not (root / ".dvc" / "cache").exists()
    return Checkout(root, s3)


def remote_objects(s3: S3Server) -> dict[str, int]:
    """Object key -> size of every object under the DVC remote (a LIST of this test's own)."""
    out = {}
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=FAR, Prefix="dvcstore/"):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


def md5_path(md5: str) -> str:
    return f"{PREFIX}{md5[:2]}/{md5[2:]}"


def day_md5s(checkout: Checkout) -> dict[str, str]:
    """Day -> md5 as the producer's committed `.dir` manifest says (read from its DVC cache)."""
    from skipwise.adapters.dvc.manifest import read_tracked_dir

    tracked = read_tracked_dir(checkout.root, "data/raw/events")
    return {rel.removesuffix(".parquet"): md5 for rel, md5 in tracked.files.items()}


def test_plan_reads_versions_without_a_request_per_partition(consumer, producer, s3):
    mark = s3.mark()
    plan = json.loads(consumer.skipwise("plan", "--json").stdout)
    reqs = s3.requests(since=mark)
    dir_md5 = (producer.root / "data/raw/events.dvc").read_text().split("md5: ")[1].split()[0]
    # The only request: the .dir manifest, missing from the consumer's DVC cache, fetched by its md5.
    assert [(r.method, r.path) for r in reqs] == [("GET", md5_path(dir_md5))]
    assert plan["run"] == 2 * len(DAYS)
    inputs = plan["inputs"]
    assert (inputs["objects"], inputs["to_fetch"], inputs["cached"], inputs["local"]) == (4, 4, 0, 0)
    assert set(inputs["bytes_by_class"]) == {"cross_region"} and inputs["region"] == "eu-west-1"
    assert inputs["usd"] > 0
    mark = s3.mark()
    consumer.skipwise("plan")  # the manifest is now in the input cache: no request at all
    assert s3.requests(since=mark) == []


def test_first_run_fetches_each_partition_once_and_records_its_egress(consumer, producer, s3, monkeypatch):
    mark = s3.mark()
    consumer.skipwise("materialize")
    gets = s3.requests(since=mark, method="GET")
    md5s = day_md5s(producer)
    assert sorted(r.path for r in gets) == sorted(md5_path(m) for m in md5s.values())  # exactly the days, once each
    assert all(r.status == 200 for r in gets) and not s3.requests(since=mark, method="PUT")
    sizes = remote_objects(s3)
    fetched = sum(sizes[f"dvcstore/files/md5/{m[:2]}/{m[2:]}"] for m in md5s.values())
    misses = [r for r in consumer.ledger() if r["cache"] == "miss"]
    assert len(misses) == 2 * len(DAYS)
    assert sum(r["egress_cross_region_bytes"] for r in misses) == fetched
    assert sum(r["get_requests"] for r in misses) == len(DAYS)  # one GET per object; local reads bill none
    assert all(r["put_requests"] == 0 for r in misses)
    assert sum(r["usd_egress"] for r in misses) == pytest.approx(fetched / 2**30 * 0.02)
    # The Dagster event of a partition carries the same figures.
    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", consumer.env["DAGSTER_HOME"])
    instance = dg.DagsterInstance.get()
    events = instance.fetch_materializations(dg.AssetKey("day_totals"), limit=10).records
    by_key = {e.partition_key: e.asset_materialization.metadata for e in events}
    row = next(r for r in misses if r["asset"] == "day_totals" and r["partition"] == DAYS[0])
    assert by_key[DAYS[0]]["cost/egress_cross_region_bytes"].value == row["egress_cross_region_bytes"] > 0
    assert "Error" not in consumer.skipwise("cache", "status").stdout


def test_second_run_fetches_nothing(consumer, s3):
    mark = s3.mark()
    out = consumer.skipwise("materialize").stdout
    assert s3.requests(since=mark) == [], out
    plan = json.loads(consumer.skipwise("plan", "--json").stdout)
    assert plan["run"] == 0 and s3.requests(since=mark) == []
    status = json.loads(consumer.skipwise("cache", "status", "--json").stdout)
    assert status["entries"] == len(DAYS) + 1  # the days and the .dir manifest
    assert status["bytes_by_class"].keys() == {"cross_region"} and status["refetch_usd"] > 0
    dry = consumer.skipwise("cache", "gc", "--dry-run", "--max-bytes", "0").stdout
    assert f"would remove {len(DAYS) + 1} object(s)" in dry
    assert json.loads(consumer.skipwise("cache", "status", "--json").stdout)["entries"] == len(DAYS) + 1


def test_one_changed_day_moves_exactly_that_object(consumer, producer, s3):
    write_day(producer.root, DAYS[2], salt=5)
    producer.dvc("add", "-q", "data/raw/events")
    producer.dvc("push", "-q")
    sync(producer, consumer.root)
    md5s = day_md5s(producer)
    dir_md5 = (producer.root / "data/raw/events.dvc").read_text().split("md5: ")[1].split()[0]
    plan = json.loads(consumer.skipwise("plan", "--json").stdout)
    assert plan["inputs"]["to_fetch"] == 1 and plan["inputs"]["cached"] >= 1
    mark, before = s3.mark(), consumer.ledger_files()
    consumer.skipwise("materialize")
    paths = [r.path for r in s3.requests(since=mark)]
    assert paths == [md5_path(md5s[DAYS[2]])], paths  # the new .dir was fetched by the plan above
    assert md5_path(dir_md5) not in paths
    size = remote_objects(s3)[f"dvcstore/files/md5/{md5s[DAYS[2]][:2]}/{md5s[DAYS[2]][2:]}"]
    latest = [r for r in consumer.ledger(since=before) if r["cache"] == "miss"]
    assert sorted((r["asset"], r["partition"]) for r in latest) == [
        ("day_totals", DAYS[2]),
        ("two_day_totals", DAYS[2]),
        ("two_day_totals", DAYS[3]),
    ]
    assert sum(r["egress_cross_region_bytes"] for r in latest) == size


def test_egress_budget_stops_the_run_before_it_reads(consumer, producer, s3):
    write_day(producer.root, DAYS[0], salt=9)
    producer.dvc("add", "-q", "data/raw/events")
    producer.dvc("push", "-q")
    sync(producer, consumer.root)
    toml = consumer.root / "skipwise.toml"
    toml.write_text(SKIPWISE_TOML + "\n[budgets]\nper_run_egress_bytes = 100\n")
    consumer.skipwise("plan")  # fetches the new .dir manifest (planning)
    mark = s3.mark()
    p = consumer.skipwise("materialize", check=False)
    assert p.returncode != 0
    assert "budgets.per_run_egress_bytes" in p.stderr + p.stdout and "skipwise/budget_override" in p.stderr + p.stdout
    assert s3.requests(since=mark) == []  # nothing was read
    consumer.skipwise("materialize", "--tags", '{"skipwise/budget_override": "true"}')
    assert [r.path for r in s3.requests(since=mark)] == [md5_path(day_md5s(producer)[DAYS[0]])]
    toml.write_text(SKIPWISE_TOML)


def test_a_corrupt_remote_object_is_caught_by_its_hash(consumer, producer, s3):
    md5 = day_md5s(producer)[DAYS[1]]
    key = f"dvcstore/files/md5/{md5[:2]}/{md5[2:]}"
    good = s3.client().get_object(Bucket=FAR, Key=key)["Body"].read()
    s3.client().put_object(Bucket=FAR, Key=key, Body=good[:-10])  # truncated
    cache = consumer.root / "data" / ".skipwise" / "inputs"
    shutil.rmtree(cache / "md5" / md5[:2])  # the consumer must fetch it again
    shutil.rmtree(consumer.root / "data" / "default" / "day_totals" / DAYS[1])
    p = consumer.skipwise("materialize", "--select", "day_totals", check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert f"s3://{FAR}/{key} is corrupt" in out and "dvc push" in out, out
    assert not (cache / "md5" / md5[:2] / md5[2:]).exists()  # never cached
    s3.client().put_object(Bucket=FAR, Key=key, Body=good)
    consumer.skipwise("materialize", "--select", "day_totals")
    assert (cache / "md5" / md5[:2] / md5[2:]).read_bytes() == good


def test_a_damaged_cache_entry_is_fetched_again_never_used(consumer, producer, s3):
    md5 = day_md5s(producer)[DAYS[3]]
    entry = consumer.root / "data" / ".skipwise" / "inputs" / "md5" / md5[:2] / md5[2:]
    entry.write_bytes(entry.read_bytes()[:100])
    shutil.rmtree(consumer.root / "data" / "default" / "day_totals" / DAYS[3])
    mark = s3.mark()
    p = consumer.skipwise("materialize", "--select", "day_totals")
    assert [r.path for r in s3.requests(since=mark)] == [md5_path(md5)]
    assert "damaged" in p.stderr
    assert len(entry.read_bytes()) > 100


FILL = """
import sys, time
from pathlib import Path
from skipwise.core.cost import IOCounter
from skipwise.core.locations import Location
from skipwise.sources.contentcache import ContentCache, md5_key
from skipwise.sources.remote import RemoteReader
root, endpoint, go, md5s = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
cache, reader = ContentCache(root, 10**9), RemoteReader(IOCounter(), "us-east-1")
loc = Location("far", "s3://skipwise-euw1", "eu-west-1")
while not go.exists():
    time.sleep(0.005)
fetched = 0
for m in md5s:
    url = f"s3://skipwise-euw1/dvcstore/files/md5/{m[:2]}/{m[2:]}"
    got = cache.get(md5_key(m), lambda: reader.read(loc, url, endpoint), origin=url, egress_class="cross_region", refetch_usd=0.0)
    fetched += got.fetched
print(fetched)
"""


def test_two_processes_filling_the_cache_at_once_fetch_each_object_once(producer, s3, tmp_path):
    md5s = sorted(day_md5s(producer).values())
    go = tmp_path / "go"
    env = {**os.environ, **FAKE_CREDENTIALS}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FILL, str(tmp_path / "cache"), s3.endpoint, str(go), *md5s],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    import time

    time.sleep(2.0)  # both are importing, then waiting for the signal
    mark = s3.mark()
    go.touch()
    outs = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(outs) == len(md5s)  # each object fetched by exactly one of them
    assert sorted(r.path for r in s3.requests(since=mark, method="GET")) == sorted(md5_path(m) for m in md5s)
    from skipwise.sources.contentcache import ContentCache

    cache = ContentCache(tmp_path / "cache", 10**9)
    assert {e.key for e in cache.entries()} == {f"md5:{m}" for m in md5s} and cache.orphans() == []


def test_sensor_runs_carry_the_region_holding_the_stale_inputs(consumer, producer, s3, monkeypatch):
    from skipwise.adapters.dagster.sensors import stale_run_requests
    from skipwise.engine.loading import load_project
    from skipwise.sources.locality import REGION_TAG

    write_day(producer.root, DAYS[1], salt=11)
    producer.dvc("add", "-q", "data/raw/events")
    producer.dvc("push", "-q")
    sync(producer, consumer.root)
    monkeypatch.setenv("SKIPWISE_ROOT", str(consumer.root))
    mark = s3.mark()
    requests = stale_run_requests(load_project(consumer.root))
    assert requests and requests[0].tags[REGION_TAG] == "eu-west-1"
    # Planning fetched the new .dir manifest only: no request for any partition.
    assert [r.path for r in s3.requests(since=mark)] == [
        md5_path((producer.root / "data/raw/events.dvc").read_text().split("md5: ")[1].split()[0])
    ]


def test_the_engine_checks_the_egress_budget_in_each_step_too(consumer, producer, s3, monkeypatch):
    # What a Dagster step (`dagster asset materialize`, the UI) runs: the engine's own check.
    from skipwise.core.errors import BudgetExceeded
    from skipwise.engine.loading import load_project

    md5 = day_md5s(producer)[DAYS[0]]
    shutil.rmtree(consumer.root / "data" / ".skipwise" / "inputs" / "md5" / md5[:2])
    shutil.rmtree(consumer.root / "data" / "default" / "day_totals" / DAYS[0])
    toml = consumer.root / "skipwise.toml"
    toml.write_text(SKIPWISE_TOML + "\n[budgets]\nper_run_egress_usd = 0.0000001\n")
    monkeypatch.setenv("SKIPWISE_ROOT", str(consumer.root))
    project = load_project(consumer.root)
    mark = s3.mark()
    with pytest.raises(BudgetExceeded, match="budgets.per_run_egress_usd"):
        list(project.materialize("day_totals", [DAYS[0]]))
    assert s3.requests(since=mark) == []
    done = list(project.materialize("day_totals", [DAYS[0]], tags={"skipwise/budget_override": "true"}))
    assert [o.computed for o in done] == [True] and done[0].cost.egress_cross_region_bytes > 0
    assert [r.path for r in s3.requests(since=mark)] == [md5_path(md5)]
    toml.write_text(SKIPWISE_TOML)


def test_workspace_files_that_match_are_read_first(producer, s3):
    mark = s3.mark()
    producer.skipwise("materialize", "--select", "day_totals")
    assert s3.requests(since=mark) == []  # every day is in the producer's workspace: nothing fetched
    misses = [r for r in producer.ledger() if r["cache"] == "miss"]
    assert len(misses) == len(DAYS) and all(
        r["egress_cross_region_bytes"] == 0 and r["get_requests"] == 0 for r in misses
    )


def test_credentials_appear_in_no_record(consumer, producer):
    secret = FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode()
    key_id = FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"].encode()
    checked = 0
    for checkout in (consumer, producer):
        for path in checkout.root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert secret not in data and key_id not in data, path
                checked += 1
    assert checked > 20 and consumer.ledger()
