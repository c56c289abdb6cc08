"""The content-addressed input cache: verified reads, atomic writes, eviction by refetch cost."""

from __future__ import annotations

import hashlib
import json

import pytest
from skipwise.core.errors import InputError
from skipwise.sources.contentcache import ContentCache, etag_key, md5_key


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_fetch_once_then_read_verified(tmp_path):
    cache = ContentCache(tmp_path, 10**6)
    data = b"partition bytes" * 100
    calls = []
    fetch = lambda: calls.append(1) or data  # noqa: E731
    first = cache.get(md5_key(_md5(data)), fetch, origin="s3://b/x", egress_class="cross_region", refetch_usd=0.01)
    again = cache.get(md5_key(_md5(data)), fetch, origin="s3://b/x", egress_class="cross_region", refetch_usd=0.01)
    assert (first.fetched, again.fetched, first.data, again.data, len(calls)) == (True, False, data, data, 1)
    meta = json.loads(
        cache.path_of(md5_key(_md5(data))).with_name(cache.path_of(md5_key(_md5(data))).name + ".json").read_text()
    )
    assert meta["size"] == len(data) and meta["origin"] == "s3://b/x"
    assert cache.io.snapshot().get_requests == 0  # reading the cache is local: no request


def test_corrupt_fetch_is_refused_and_not_cached(tmp_path):
    cache = ContentCache(tmp_path, 10**6)
    good = b"good bytes"
    with pytest.raises(InputError) as err:
        cache.get(
            md5_key(_md5(good)),
            lambda: good[:-2],
            origin="s3://b/files/md5/ab/cd",
            egress_class="internet",
            refetch_usd=0,
        )
    assert "s3://b/files/md5/ab/cd is corrupt" in str(err.value) and "dvc push" in str(err.value)
    assert not cache.has(md5_key(_md5(good)))


def test_a_damaged_entry_is_removed_and_fetched_again(tmp_path):
    cache = ContentCache(tmp_path, 10**6)
    data = b"x" * 5000
    key = md5_key(_md5(data))
    cache.get(key, lambda: data, origin="o", egress_class="cross_region", refetch_usd=0)
    cache.path_of(key).write_bytes(data[:10])  # truncated on disk
    got = cache.get(key, lambda: data, origin="o", egress_class="cross_region", refetch_usd=0)
    assert got.fetched and got.data == data and any("damaged" in w for w in cache.warnings)


def test_etag_keys_verify_the_sha256_recorded_at_fetch(tmp_path):
    cache = ContentCache(tmp_path, 10**6)
    key = etag_key("s3://b/day.parquet", '"abc"', "v1")
    assert key != etag_key("s3://b/day.parquet", '"abc"', "v2")
    cache.get(key, lambda: b"v1 bytes", origin="s3://b/day.parquet", egress_class="same_region", refetch_usd=0)
    cache.path_of(key).write_bytes(b"v2 bytes")  # same size, other content
    got = cache.get(key, lambda: b"v1 bytes", origin="s3://b/day.parquet", egress_class="same_region", refetch_usd=0)
    assert got.fetched and got.data == b"v1 bytes"


def test_eviction_takes_the_cheapest_to_refetch_first(tmp_path):
    cache = ContentCache(tmp_path, 2500)
    blobs = {usd: bytes([i]) * 1000 for i, usd in enumerate([0.5, 0.01, 0.2])}
    for usd, data in blobs.items():
        cache.get(md5_key(_md5(data)), lambda d=data: d, origin=f"o{usd}", egress_class="cross_region", refetch_usd=usd)
    left = {e.refetch_usd for e in cache.entries()}
    assert left == {0.5, 0.2} and cache.total_bytes() == 2000  # the $0.01 one went when the third arrived
    assert [e.refetch_usd for e in cache.evict(dry_run=True, max_bytes=1000)] == [0.2]
    assert cache.total_bytes() == 2000  # a dry run removes nothing
    assert [e.refetch_usd for e in cache.evict(max_bytes=0)] == [0.2, 0.5] and cache.entries() == []


def test_leftover_temporary_files_are_orphans(tmp_path):
    import os
    import time

    cache = ContentCache(tmp_path, 10**6)
    data = b"abc"
    cache.get(md5_key(_md5(data)), lambda: data, origin="o", egress_class="same_host", refetch_usd=0)
    tmp = cache.path_of(md5_key(_md5(data))).parent / ".x.tmp-1-abc"
    tmp.write_bytes(b"partial")
    assert cache.orphans() == []  # young: a writer may still be at it
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    assert cache.orphans() == [tmp]
