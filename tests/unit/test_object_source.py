"""Object-store sources without a server: their URLs, the check of fetched bytes against the listing
and the ETag, where they are, and the declaration's mistakes. (The server's side is
tests/integration/test_object_sources.py.)"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
from skipwise.core.errors import ConfigError
from skipwise.core.locations import Location
from skipwise.core.partitions import KeySet
from skipwise.core.spec import Source
from skipwise.sources.contentcache import ContentCache, etag_key
from skipwise.sources.objects import ObjectSources, problem_with, version_of
from skipwise.store.objectstore import Got, ObjectInfo, split_url

DAYS = KeySet(("2024-01-01", "2024-01-02"), "daily")


def _source(url: str = "s3://b/events/{partition_key}.parquet", **kw) -> Source:
    return Source("events", "", DAYS, url=url, **kw)


def test_an_object_source_names_one_object_per_partition_under_one_prefix():
    s = _source()
    assert s.object_url("2024-01-02") == "s3://b/events/2024-01-02.parquet"
    assert s.prefix == "s3://b/events/"
    assert _source("s3://b/{partition_key}/part.parquet").prefix == "s3://b/"
    assert s.shown("2024-01-02") == "s3://b/events/2024-01-02.parquet"
    what, fix = s.missing("2024-01-02")
    assert what == "no object at s3://b/events/2024-01-02.parquet" and "s3://b/events/2024-01-02.parquet" in fix
    # The key is written as Dagster spells it (a key never holds a separator or '..'); the name
    # earlier versions escaped it to is still looked up, so existing buckets keep their objects.
    assert _source().object_url("a|b") == "s3://b/events/a|b.parquet"
    assert _source().legacy_url("a|b") == "s3://b/events/a~7cb.parquet"
    assert _source().legacy_url("2024-01-02") == ""
    # A DVC source is shown by its file, as before.
    dvc = Source("raw", "data/raw/x", DAYS)
    assert (
        dvc.shown("2024-01-01") == "data/raw/x/2024-01-01.parquet"
        and "dvc add data/raw/x" in dvc.missing("2024-01-01")[1]
    )


def test_split_url_takes_only_s3_urls_with_a_bucket():
    assert split_url("s3://bucket/a/b.parquet") == ("bucket", "a/b.parquet")
    assert split_url("s3a://bucket/") == ("bucket", "")
    for bad in ("gs://bucket/x", "s3:///x", "/local/path"):
        with pytest.raises(ConfigError, match="not an s3:// URL"):
            split_url(bad)


def test_the_version_is_the_etag_of_the_listed_object():
    assert version_of(ObjectInfo("s3://b/x", "abc-2", 10)) == "etag:abc-2"
    assert version_of(None) == "absent"


def test_fetched_bytes_are_checked_against_the_listing_and_a_single_part_etag():
    data = b"partition bytes"
    md5 = hashlib.md5(data).hexdigest()
    assert problem_with(Got(data, md5, False), md5, len(data)) == ""
    assert "truncated" in problem_with(Got(data[:-1], md5, False), md5, len(data))
    assert f"its ETag says {md5}" in problem_with(Got(b"other bytes 123", md5, False), md5, None)
    assert "answered with ETag" in problem_with(Got(data, "f" * 32, False), md5, len(data))
    # A multipart ETag is not an md5 of the bytes; nor is the ETag of an object the server encrypted with its key.
    assert problem_with(Got(data, "0" * 32 + "-3", False), "0" * 32 + "-3", len(data)) == ""
    assert problem_with(Got(data, "e" * 32, True), "e" * 32, len(data)) == ""
    assert "truncated" in problem_with(Got(data[:3], "e" * 32, True), "e" * 32, len(data))


def _sources(locations: dict[str, Location]) -> ObjectSources:
    config = SimpleNamespace(locations=locations, source="skipwise.toml")
    return ObjectSources(SimpleNamespace(config=config, region="us-east-1"))


def test_where_an_object_source_is():
    far = Location("far", "s3://b", "eu-west-1")
    # A declared location that holds the URL, by name or found by its URL.
    assert _sources({"far": far}).location_of(_source(location="far")) is far
    assert _sources({"far": far}).location_of(_source()) is far
    # Its own region; or, with nothing declared, an unknown region: the dearest class.
    assert _sources({}).location_of(_source(region="us-east-1")).egress_class("us-east-1") == "same_region"
    assert _sources({}).location_of(_source()).egress_class("us-east-1") == "internet"
    with pytest.raises(ConfigError, match="location 'near' is not declared") as err:
        _sources({"far": far}).location_of(_source(location="near"))
    assert "[locations.near]" in str(err.value)
    with pytest.raises(ConfigError, match="is not inside location far"):
        _sources({"far": far}).location_of(_source("s3://other/{partition_key}.parquet", location="far"))


def test_an_object_entry_without_its_recorded_sha256_is_fetched_again(tmp_path):
    cache = ContentCache(tmp_path, 10**6)
    key = etag_key("s3://b/day.parquet", "abc")
    cache.get(key, lambda: b"listed bytes", origin="s3://b/day.parquet", egress_class="cross_region", refetch_usd=0)
    path = cache.path_of(key)
    path.with_name(path.name + ".json").unlink()  # the record that vouches for the bytes is gone
    path.write_bytes(b"other bytes!")
    got = cache.get(
        key, lambda: b"listed bytes", origin="s3://b/day.parquet", egress_class="cross_region", refetch_usd=0
    )
    assert got.fetched and got.data == b"listed bytes" and any("no recorded sha256" in w for w in cache.warnings)


@pytest.mark.parametrize(
    "url, kwargs, message",
    [
        ("s3://key:secret@bucket/{partition_key}.parquet", {}, "carries credentials"),
        ("gs://bucket/{partition_key}.parquet", {}, "not an s3:// URL"),
        ("s3://bucket/events.parquet", {}, "does not contain {partition_key}"),
        ("s3://bucket/{partition_key}.parquet", {"region": "eu-west-1", "location": "far"}, "both given"),
    ],
)
def test_object_source_declaration_mistakes(url, kwargs, message):
    import dagster as dg
    import skipwise as sw

    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-03")
    with pytest.raises(ConfigError, match=message) as err:
        sw.object_source("events", url, partitions_def=daily, **kwargs)
    assert "object_source events" in str(err.value) and err.value.hint
    if "secret" in url:
        assert "secret" not in str(err.value)


def test_the_declaration_resolves_into_object_sources_and_survives_the_graph_snapshot():
    import dagster as dg
    import skipwise as sw
    from skipwise.adapters.dagster.graph import graph_of
    from skipwise.project.snapshot import graph_from_json, graph_to_json

    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-03")
    events = sw.object_source(
        "events", "s3://bucket/e/{partition_key}.parquet", partitions_def=daily, location="far", versioned=True
    )
    lookup = sw.object_source("lookup", "s3://bucket/lookup.parquet", region="eu-west-1")
    with pytest.raises(ConfigError, match="has a placeholder"):
        sw.object_source("lookup", "s3://bucket/{partition_key}.parquet")
    graph, _, _ = graph_of(dg.Definitions(assets=[events, lookup], resources={"skipwise": sw.IOManager()}))
    by_name = {s.name: s for s in graph.sources}
    e, lk = by_name["events"], by_name["lookup"]
    assert (e.url, e.location, e.region, e.versioned, e.path) == (
        "s3://bucket/e/{partition_key}.parquet",
        "far",
        "",
        True,
        "",
    )
    assert e.partitions.key_list == ("2024-01-01", "2024-01-02")
    assert (lk.url, lk.region, lk.versioned, lk.partitions) == ("s3://bucket/lookup.parquet", "eu-west-1", False, None)
    assert lk.object_url("all") == lk.prefix == "s3://bucket/lookup.parquet"
    assert graph_from_json(graph_to_json(graph)) == graph
