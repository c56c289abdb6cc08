"""A plain object-store prefix as a source (`sw.object_source`), against a real S3-compatible server
(moto_server on 127.0.0.1, started here as its own process) and real `skipwise` runs through
Dagster. What moved is counted from the server's own request log.

The project has no raw files and no DVC: only the definitions, naming objects in an eu-west-1
bucket, with compute in us-east-1. The tests run in file order on one checkout.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from bench.s3server import FAKE_CREDENTIALS, S3Server
from tests.integration.test_remote_sources import Checkout as RemoteCheckout

pytestmark = pytest.mark.integration

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
BUCKET, VERSIONED = "skipwise-objects", "skipwise-objects-v"

DEFINITIONS = """
import dagster as dg
import polars as pl

import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-06")  # 2024-01-05 has no object
events = sw.object_source("events", "s3://skipwise-objects/events/{partition_key}.parquet", partitions_def=DAILY,
                          location="far")
kept = sw.object_source("kept", "s3://skipwise-objects-v/kept/{partition_key}.parquet", partitions_def=DAILY,
                        region="eu-west-1", versioned=True)


@sw.asset(partitions_def=DAILY)
def day_totals(context: dg.AssetExecutionContext, events: pl.DataFrame) -> pl.DataFrame:
    return events.group_by("store").agg(pl.col("amount").sum()).sort("store")


@sw.asset(partitions_def=DAILY, ins={"events": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1))})
def two_day_totals(context: dg.AssetExecutionContext, events: pl.DataFrame) -> pl.DataFrame:
    return events.group_by("store").agg(pl.col("amount").sum()).sort("store")


@sw.asset(partitions_def=DAILY)
def kept_totals(context: dg.AssetExecutionContext, kept: pl.DataFrame) -> pl.DataFrame:
    return kept.group_by("store").agg(pl.col("amount").sum()).sort("store")


lookup = sw.object_source("lookup", "s3://skipwise-objects/lookup.parquet", location="far")


@sw.asset
def lookup_stores(context: dg.AssetExecutionContext, lookup: pl.DataFrame) -> pl.DataFrame:
    return lookup.select("store").unique().sort("store")


@dg.asset(partitions_def=DAILY, io_manager_key="skipwise")
def plain_rows(events: pl.DataFrame) -> pl.DataFrame:  # a plain Dagster asset reading the source
    return events.select(pl.len().alias("rows"))


defs = dg.Definitions(assets=[events, kept, lookup, day_totals, two_day_totals, kept_totals, lookup_stores, plain_rows],
                      resources={"skipwise": sw.IOManager()})
"""

SKIPWISE_TOML = """
[compute]
profile = "laptop"
region = "us-east-1"

[locations.far]
url = "s3://skipwise-objects"
region = "eu-west-1"
"""

MAIN = ["--select", "day_totals,two_day_totals", "--partition", f"{DAYS[0]}...{DAYS[-1]}"]


def day_bytes(day: str, rows: int = 3000, salt: int = 0) -> bytes:
    n = int(day[-2:]) * 7 + salt
    frame = pl.DataFrame(
        {"store": [f"s{(i * n) % 13}" for i in range(rows)], "amount": [float((i * n) % 97) for i in range(rows)]}
    )
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def object_path(day: str, bucket: str = BUCKET, folder: str = "events") -> str:
    return f"/{bucket}/{folder}/{day}.parquet"


class Checkout(RemoteCheckout):
    """The checkout, its commands and its ledger, as for DVC remotes; objects come from $AWS_ENDPOINT_URL."""

    def __init__(self, root: Path, s3: S3Server):
        super().__init__(root, s3)
        self.env["AWS_ENDPOINT_URL"] = s3.endpoint

    def put(self, day: str, data: bytes, bucket: str = BUCKET, folder: str = "events") -> None:
        self.s3.client().put_object(Bucket=bucket, Key=f"{folder}/{day}.parquet", Body=data)

    def manifest(self, asset: str, day: str) -> dict | None:
        p = self.root / "data" / "default" / asset / day / "manifest.json"
        return json.loads(p.read_text()) if p.exists() else None


def is_listing(r) -> bool:
    return r.method == "GET" and "?" in r.path and ("list-type=2" in r.path or "versions" in r.path)


def object_gets(requests) -> list[str]:
    return [r.path for r in requests if r.method == "GET" and not is_listing(r)]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server.start(tmp_path_factory.mktemp("moto")) as server, pytest.MonkeyPatch.context() as env:
        for k, v in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": server.endpoint}.items():
            env.setenv(k, v)  # this process's own clients: the set-up and the in-process projects
        server.make_bucket(BUCKET, "eu-west-1")
        server.make_bucket(VERSIONED, "eu-west-1")
        server.client().put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
        yield server


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, s3) -> Checkout:
    root = tmp_path_factory.mktemp("objects")
    files = {
        "tinyobjects/__init__.py": "",
        "tinyobjects/definitions.py": DEFINITIONS,
        "skipwise.toml": SKIPWISE_TOML,
        "pyproject.toml": '[tool.skipwise]\ndefinitions = "tinyobjects.definitions"\n',
        ".dagster/dagster.yaml": "telemetry:\n  enabled: false\n",
    }  # no raw files, no DVC: only code and config
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    c = Checkout(root, s3)
    for day in DAYS:
        c.put(day, day_bytes(day))
        c.put(day, day_bytes(day, salt=3), bucket=VERSIONED, folder="kept")
    return c


def sizes(s3: S3Server, bucket: str = BUCKET) -> dict[str, int]:
    """Object path -> size, as the server lists them (this test's own LIST)."""
    out = {}
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out.update({f"/{bucket}/{o['Key']}": o["Size"] for o in page.get("Contents", [])})
    return out


def cache_entries(checkout: Checkout, path: str) -> list[Path]:
    """The metadata files of the input cache's entries fetched from object `path`."""
    return [
        p
        for p in (checkout.root / "data" / ".skipwise" / "inputs" / "etag").glob("??/*.json")
        if json.loads(p.read_text())["origin"] == f"s3:/{path}"
    ]


def test_plan_lists_the_prefix_once_and_reads_no_object(checkout, s3):
    mark = s3.mark()
    plan = json.loads(checkout.skipwise("plan", "--json", *MAIN).stdout)
    reqs = s3.requests(since=mark)
    assert reqs and all(is_listing(r) for r in reqs), reqs  # no HEAD, no GET of any object
    assert len(reqs) == 1 and f"/{BUCKET}" in reqs[0].path and "prefix=events" in reqs[0].path
    assert plan["run"] == 2 * len(DAYS)
    inputs = plan["inputs"]
    assert (inputs["objects"], inputs["to_fetch"], inputs["cached"], inputs["local"]) == (4, 4, 0, 0)
    # The listing gives every size: nothing is estimated, the bytes are the objects' own.
    assert inputs["estimated"] is False
    assert inputs["bytes_by_class"] == {"cross_region": sum(sizes(s3)[object_path(d)] for d in DAYS)}
    assert inputs["region"] == "eu-west-1" and inputs["usd"] > 0
    text = checkout.skipwise("plan", *MAIN).stdout
    assert (
        "0 in the input cache, 4 to fetch from s3://skipwise-objects" in text
        and "~" not in text.split("bytes moved")[1]
    )


def test_first_run_fetches_each_object_once_and_records_its_egress(checkout, s3, monkeypatch):
    mark = s3.mark()
    checkout.skipwise("materialize", *MAIN)
    reqs = s3.requests(since=mark)
    gets = object_gets(reqs)
    assert sorted(gets) == sorted(object_path(d) for d in DAYS), gets  # exactly the days, once each
    assert not [r for r in reqs if r.method in ("PUT", "HEAD")]
    size = sizes(s3)
    fetched = sum(size[object_path(d)] for d in DAYS)
    rows = checkout.ledger()
    misses = [r for r in rows if r["cache"] == "miss"]
    assert len(misses) == 2 * len(DAYS)
    assert sum(r["egress_cross_region_bytes"] for r in misses) == fetched
    assert sum(r["get_requests"] for r in misses) == len(DAYS)
    assert sum(r["usd_egress"] for r in misses) == pytest.approx(fetched / 2**30 * 0.02)
    # The listings belong to no partition: the run records carry them, one LIST each, priced.
    runs = [r for r in rows if r["cache"] == "run"]
    listings = sum(1 for r in reqs if is_listing(r))
    assert sum(r["list_requests"] or 0 for r in runs) == listings >= 1  # a process that moved nothing: no figure
    assert all(r["list_requests"] == 0 for r in misses)
    # Each partition records the object version it was computed from.
    m = checkout.manifest("day_totals", DAYS[0])
    etag = s3.client().head_object(Bucket=BUCKET, Key=f"events/{DAYS[0]}.parquet")["ETag"].strip('"')
    assert m["inputs"]["events"] == {DAYS[0]: f"etag:{etag}"}
    assert etag == hashlib.md5(day_bytes(DAYS[0])).hexdigest()
    # The input cache holds them by (URL, ETag).
    entries = list((checkout.root / "data" / ".skipwise" / "inputs" / "etag").glob("??/*.json"))
    assert sorted(json.loads(p.read_text())["origin"] for p in entries) == sorted(f"s3:/{object_path(d)}" for d in DAYS)
    # The Dagster event of a partition carries the same figures.
    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", checkout.env["DAGSTER_HOME"])
    events = dg.DagsterInstance.get().fetch_materializations(dg.AssetKey("day_totals"), limit=10).records
    by_key = {e.partition_key: e.asset_materialization.metadata for e in events}
    row = next(r for r in misses if r["asset"] == "day_totals" and r["partition"] == DAYS[0])
    assert by_key[DAYS[0]]["cost/egress_cross_region_bytes"].value == row["egress_cross_region_bytes"] > 0


def test_second_run_makes_no_get(checkout, s3):
    mark, before = s3.mark(), checkout.ledger_files()
    checkout.skipwise("materialize", *MAIN)
    reqs = s3.requests(since=mark)
    assert object_gets(reqs) == [] and all(is_listing(r) for r in reqs), reqs
    assert not [r for r in checkout.ledger(since=before) if r["cache"] == "miss"]
    plan = json.loads(checkout.skipwise("plan", "--json", *MAIN).stdout)
    assert plan["run"] == 0


def test_an_overwritten_object_reruns_exactly_its_partitions_and_moves_exactly_it(checkout, s3):
    checkout.put(DAYS[2], day_bytes(DAYS[2], salt=5))
    plan = json.loads(checkout.skipwise("plan", "--json", *MAIN).stdout)
    assert plan["inputs"]["to_fetch"] == 1 and plan["inputs"]["cached"] >= 1
    assert plan["inputs"]["bytes_by_class"]["cross_region"] == sizes(s3)[object_path(DAYS[2])]
    mark, before = s3.mark(), checkout.ledger_files()
    checkout.skipwise("materialize", *MAIN)
    assert object_gets(s3.requests(since=mark)) == [object_path(DAYS[2])]
    latest = [r for r in checkout.ledger(since=before) if r["cache"] == "miss"]
    assert sorted((r["asset"], r["partition"]) for r in latest) == [
        ("day_totals", DAYS[2]),
        ("two_day_totals", DAYS[2]),
        ("two_day_totals", DAYS[3]),
    ]
    assert sum(r["egress_cross_region_bytes"] for r in latest) == sizes(s3)[object_path(DAYS[2])]
    new_etag = hashlib.md5(day_bytes(DAYS[2], salt=5)).hexdigest()
    assert checkout.manifest("day_totals", DAYS[2])["inputs"]["events"] == {DAYS[2]: f"etag:{new_etag}"}


def test_an_object_overwritten_between_plan_and_read_is_never_computed_under_its_old_version(checkout, s3, monkeypatch):
    from skipwise.core.errors import InputError
    from skipwise.engine.loading import load_project

    monkeypatch.setenv("SKIPWISE_ROOT", str(checkout.root))
    day = DAYS[1]
    shutil.rmtree(checkout.root / "data" / "default" / "day_totals" / day)
    for entry in cache_entries(checkout, object_path(day)):  # the old bytes are not here to use: a GET it is
        entry.unlink()
        entry.with_suffix("").unlink()
    old_etag = hashlib.md5(day_bytes(day)).hexdigest()
    project = load_project(checkout.root)
    decision = project.decide(project.graph.asset("day_totals"), day)  # lists the prefix: the old ETag
    assert decision.action == "run"
    assert project.raw_version(project.graph.node("events"), day) == f"etag:{old_etag}"
    changed = day_bytes(day, salt=17)
    checkout.put(day, changed)  # another writer, after the plan, before the read
    before = checkout.ledger_files()
    with pytest.raises(InputError, match="changed while reading") as err:
        list(project.materialize("day_totals", [day]))
    assert "run again" in str(err.value)
    assert checkout.manifest("day_totals", day) is None  # nothing committed, under either version
    assert not [r for r in checkout.ledger(since=before) if r["cache"] == "miss"]
    # The next plan sees the new version and computes from exactly its bytes.
    done = list(load_project(checkout.root).materialize("day_totals", [day]))
    assert [o.computed for o in done] == [True]
    m = checkout.manifest("day_totals", day)
    assert m["inputs"]["events"] == {day: f"etag:{hashlib.md5(changed).hexdigest()}"}
    expected = pl.read_parquet(io.BytesIO(changed)).group_by("store").agg(pl.col("amount").sum()).sort("store")
    got = pl.read_parquet(checkout.root / "data" / "default" / "day_totals" / day / m["output"])
    assert got.equals(expected)


def test_a_versioned_bucket_reads_the_version_the_listing_saw(checkout, s3, monkeypatch):
    from skipwise.engine.loading import load_project

    monkeypatch.setenv("SKIPWISE_ROOT", str(checkout.root))
    day = DAYS[0]
    listed = day_bytes(day, salt=3)
    project = load_project(checkout.root)
    assert project.decide(project.graph.asset("kept_totals"), day).action == "run"
    mark = s3.mark()
    checkout.put(day, day_bytes(day, salt=23), bucket=VERSIONED, folder="kept")  # overwritten after the listing
    done = list(project.materialize("kept_totals", [day]))
    assert [o.computed for o in done] == [True]
    gets = [r for r in s3.requests(since=mark) if r.method == "GET" and not is_listing(r)]
    assert len(gets) == 1 and "versionId=" in gets[0].path  # by the version id the listing saw
    # Computed from exactly the listed bytes, recorded under exactly their version.
    m = checkout.manifest("kept_totals", day)
    assert m["inputs"]["kept"] == {day: f"etag:{hashlib.md5(listed).hexdigest()}"}
    expected = pl.read_parquet(io.BytesIO(listed)).group_by("store").agg(pl.col("amount").sum()).sort("store")
    assert pl.read_parquet(checkout.root / "data" / "default" / "kept_totals" / day / m["output"]).equals(expected)
    # A new plan sees the overwrite as a change.
    fresh = load_project(checkout.root)
    assert fresh.decide(fresh.graph.asset("kept_totals"), day).action == "run"


def test_a_damaged_cache_entry_is_fetched_again_never_used(checkout, s3):
    entries = cache_entries(checkout, object_path(DAYS[3]))
    assert len(entries) == 1
    entry = entries[0].with_suffix("")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    shutil.rmtree(checkout.root / "data" / "default" / "day_totals" / DAYS[3])
    mark = s3.mark()
    p = checkout.skipwise("materialize", "--select", "day_totals", "--partition", DAYS[3])
    assert object_gets(s3.requests(since=mark)) == [object_path(DAYS[3])]
    assert "damaged" in p.stderr
    assert entry.read_bytes() == day_bytes(DAYS[3])


def test_a_missing_object_names_its_url_and_the_fix(checkout, s3):
    mark = s3.mark()
    p = checkout.skipwise("materialize", "--select", "day_totals", "--partition", "2024-01-05", check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "no object at s3://skipwise-objects/events/2024-01-05.parquet" in out and "fix: upload it" in out, out
    assert object_gets(s3.requests(since=mark)) == []


def test_egress_budget_stops_the_run_before_it_reads(checkout, s3):
    checkout.put(DAYS[0], day_bytes(DAYS[0], salt=9))
    toml = checkout.root / "skipwise.toml"
    toml.write_text(SKIPWISE_TOML + "\n[budgets]\nper_run_egress_bytes = 100\n")
    mark = s3.mark()
    p = checkout.skipwise("materialize", *MAIN, check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 3, out
    assert "budgets.per_run_egress_bytes" in out and "skipwise/budget_override" in out
    assert object_gets(s3.requests(since=mark)) == []  # nothing was read
    checkout.skipwise("materialize", *MAIN, "--tags", '{"skipwise/budget_override": "true"}')
    assert object_gets(s3.requests(since=mark)) == [object_path(DAYS[0])]
    toml.write_text(SKIPWISE_TOML)


def test_an_unpartitioned_object_source_is_one_object(checkout, s3):
    p = checkout.skipwise("materialize", "--select", "lookup_stores", check=False)
    assert (
        p.returncode == 1 and "lookup[all] has no object at s3://skipwise-objects/lookup.parquet" in p.stdout + p.stderr
    )
    s3.client().put_object(Bucket=BUCKET, Key="lookup.parquet", Body=day_bytes(DAYS[1]))
    mark = s3.mark()
    checkout.skipwise("materialize", "--select", "lookup_stores")
    assert object_gets(s3.requests(since=mark)) == [f"/{BUCKET}/lookup.parquet"]
    m = checkout.manifest("lookup_stores", "all")
    assert m["inputs"]["lookup"] == {"all": f"etag:{hashlib.md5(day_bytes(DAYS[1])).hexdigest()}"}


def test_a_plain_dagster_asset_reads_an_object_source_through_the_io_manager(checkout, s3, monkeypatch):
    import importlib

    import dagster as dg
    import skipwise as sw

    monkeypatch.syspath_prepend(str(checkout.root))
    monkeypatch.setenv("SKIPWISE_ROOT", str(checkout.root))
    defs = importlib.import_module("tinyobjects.definitions")
    mark = s3.mark()
    result = dg.materialize(
        [defs.events, defs.plain_rows],
        partition_key=DAYS[3],
        selection=[defs.plain_rows],
        resources={"skipwise": sw.IOManager(root=str(checkout.root))},
    )
    assert result.success
    # The object as listed now (one LIST), then exactly that object: from the input cache here, no GET.
    reqs = s3.requests(since=mark)
    assert object_gets(reqs) == [] and len([r for r in reqs if is_listing(r)]) == 1
    stored = next((checkout.root / "data" / "default" / "plain_rows" / DAYS[3]).glob("*.parquet"))
    assert pl.read_parquet(stored)["rows"].to_list() == [3000]


def test_the_new_raw_data_sensor_sees_object_versions(checkout, s3, monkeypatch):
    from skipwise.adapters.dagster.retraining import raw_versions
    from skipwise.engine.loading import load_project

    monkeypatch.setenv("SKIPWISE_ROOT", str(checkout.root))
    versions = raw_versions(load_project(checkout.root))["events"]
    etags = {d: s3.client().head_object(Bucket=BUCKET, Key=f"events/{d}.parquet")["ETag"].strip('"') for d in DAYS}
    assert versions == {d: f"etag:{e}" for d, e in etags.items()}  # 2024-01-05 has no object: not listed


FILL = """
import sys, time
from pathlib import Path
from skipwise.engine.loading import load_project
from skipwise.sources.contentcache import ContentCache
root, cache, go, days = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
project = load_project(root)
project.locality._cache = ContentCache(cache, 10**9, project.io)  # an empty cache of the test's own
events = project.graph.node("events")
versions = {d: project.raw_version(events, d) for d in days}  # the listing, before the start signal
while not go.exists():
    time.sleep(0.005)
print(sum(len(project.locality.read_source(events, d, versions[d])) for d in days))
"""


def test_two_processes_filling_the_cache_at_once_fetch_each_object_once(checkout, s3, tmp_path):
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FILL, str(checkout.root), str(tmp_path / "cache"), str(go), *DAYS],
            env={**os.environ, **checkout.env},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(4.0)  # both are importing and listing, then waiting for the signal
    mark = s3.mark()
    go.touch()
    outs = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    size = sizes(s3)
    assert outs == [sum(size[object_path(d)] for d in DAYS)] * 2  # both read every object whole
    assert sorted(object_gets(s3.requests(since=mark))) == sorted(object_path(d) for d in DAYS)  # each fetched once


def test_credentials_appear_in_no_record(checkout):
    secret = FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode()
    key_id = FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"].encode()
    checked = 0
    for path in checkout.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret not in data and key_id not in data, path
            checked += 1
    assert checked > 20 and checkout.ledger()
