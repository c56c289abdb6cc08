"""Locations and their distance from compute; their config in skipwise.toml; local disk bills no request."""

from __future__ import annotations

import pytest
from skipwise.core.cost import CostVector
from skipwise.core.errors import BudgetExceeded, ConfigError
from skipwise.core.locations import Location, compute_region, egress_class, kind_of, location_for
from skipwise.core.pricing import load_config
from skipwise.store.partitions import LocalPartitionStore
from skipwise.store.statcache import StatCache


def test_kind_and_distance_class():
    assert kind_of("data/raw") == kind_of("/abs/path") == kind_of("file:///x") == "local"
    assert kind_of("s3://bucket/x") == kind_of("gs://b") == "object_store"
    assert egress_class("local", "eu-west-1", "us-east-1") == "same_host"
    assert egress_class("object_store", "us-east-1", "us-east-1") == "same_region"
    assert egress_class("object_store", "eu-west-1", "us-east-1") == "cross_region"
    assert egress_class("object_store", "", "us-east-1") == "internet"  # unknown: the dearest class
    assert egress_class("object_store", "eu-west-1", "") == "cross_region"
    assert Location("x", "s3://b").charges_requests and not Location("y", "/data").charges_requests


def test_location_for_takes_the_longest_prefix_on_a_path_boundary():
    locs = {"a": Location("a", "s3://b", "eu-west-1"), "b": Location("b", "s3://b/hot", "us-east-1")}
    assert location_for("s3://b/hot/files/md5/ab/cd", locs).name == "b"
    assert location_for("s3://b/hotter/x", locs).name == "a"
    assert location_for("s3://other/x", locs) is None


def test_environment_region_wins_over_config(tmp_path):
    assert compute_region("us-east-1", {"SKIPWISE_REGION": "eu-west-1"}) == "eu-west-1"
    assert compute_region("us-east-1", {}) == "us-east-1"
    cfg = tmp_path / "skipwise.toml"
    cfg.write_text('[compute]\nregion = "us-east-1"\n\n[locations.far]\nurl = "s3://far"\nregion = "eu-west-1"\n')
    assert load_config(cfg).region == "us-east-1"
    assert load_config(cfg).locations["far"].egress_class(load_config(cfg).region) == "cross_region"


@pytest.mark.parametrize(
    "body, key, words",
    [
        (
            '[locations.far]\nurl = "s3://far"\nsecret_access_key = "x"\n',
            "locations.far.secret_access_key",
            "environment",
        ),
        ('[locations.far]\nurl = "s3://AKIA:hunter2@far"\n', "locations.far.url", "credentials"),
        ('[locations.far]\nregion = "eu-west-1"\n', "locations.far.url", "add url"),
        ('[locations.far]\nurl = "s3://far"\nkind = "tape"\n', "locations.far.kind", "object_store"),
        ('[locations.far]\nurl = "s3://far"\nregion = 3\n', "locations.far.region", "region ="),
        ("[cache]\nmax_bytes = -1\n", "cache.max_bytes", "non-negative"),
        ('[budgets]\nper_run_egress_bytes = "lots"\n', "budgets.per_run_egress_bytes", "number"),
        ('[store]\nurl = "s3://key:secret@features"\n', "store.url", "credentials"),
        ('[store]\nurl = "s3://features"\nendpoint = "http://x"\n', "store.endpoint", "store"),
        ("[store]\nurl = 5\n", "store.url", "string"),
    ],
)
def test_bad_location_config_names_the_file_and_key(tmp_path, body, key, words):
    cfg = tmp_path / "skipwise.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = err.value.render()
    assert str(cfg) in text and key in text and words in text


def test_local_disk_reads_and_writes_bill_no_request(tmp_path):
    store = LocalPartitionStore(tmp_path / "data", StatCache(tmp_path / "stat.db", base=tmp_path))
    before = store.io.snapshot()
    name, _, _ = store.write_output("features", "a", "k", "f" * 64, "bin", b"x" * 1000)
    (tmp_path / "raw.bin").write_bytes(b"y" * 500)
    store.read_file(tmp_path / "data" / "features" / "a" / "k" / name)
    cost = CostVector.from_io(store.io.snapshot() - before)
    assert (cost.bytes_written, cost.bytes_read, cost.requests) == (1000, 1000, 0)
    assert cost.egress_same_host_bytes == 2000 and cost.egress_bytes == 0
    priced = load_config(tmp_path / "absent.toml").price(cost)
    assert priced.usd_requests == 0 and priced.usd_egress == 0


def test_egress_budget_names_the_budget_and_the_override():
    from skipwise.core.budget import Budgets, check_egress

    b = Budgets(per_run_egress_bytes=1000, per_run_egress_usd=0.5)
    assert check_egress(999, 0.1, b, False).ok
    over = check_egress(5000, 0.1, b, False, "3 object(s) to fetch from s3://far")
    assert not over.ok and over.breaches == ("per_run_egress_bytes",)
    assert "budgets.per_run_egress_bytes" in over.message and "skipwise/budget_override=true" in over.message
    with pytest.raises(BudgetExceeded):
        over.raise_if_over()
    assert check_egress(5000, 1.0, b, True).ok and check_egress(5000, 1.0, b, True).breaches == (
        "per_run_egress_bytes",
        "per_run_egress_usd",
    )


def test_dvc_remotes_from_config_and_config_local(tmp_path):
    from skipwise.adapters.dvc.config import dvc_cache_dirs, dvc_remote

    dvc = tmp_path / ".dvc"
    dvc.mkdir()
    (dvc / "config").write_text(
        "[core]\n    remote = far\n['remote \"far\"']\n    url = s3://bucket/store\n    region = eu-west-1\n"
        "['remote \"near\"']\n    url = ../near-store\n[cache]\n    dir = /tmp/elsewhere\n"
    )
    (dvc / "config.local").write_text("['remote \"far\"']\n    endpointurl = http://127.0.0.1:9000\n")
    far = dvc_remote(tmp_path)
    assert (far.name, far.url, far.region, far.endpointurl) == (
        "far",
        "s3://bucket/store",
        "eu-west-1",
        "http://127.0.0.1:9000",
    )
    assert (
        far.object_url("abcdef0123456789abcdef0123456789")
        == "s3://bucket/store/files/md5/ab/cdef0123456789abcdef0123456789"
    )
    assert far.object_url("abcdef0123456789abcdef0123456789.dir").endswith("/ab/cdef0123456789abcdef0123456789.dir")
    assert dvc_remote(tmp_path, "near").url == str((tmp_path / "near-store").resolve())  # relative to .dvc/, as in DVC
    assert [p.as_posix() for p in dvc_cache_dirs(tmp_path)] == [(dvc / "cache").as_posix(), "/tmp/elsewhere"]
    with pytest.raises(ConfigError) as err:
        dvc_remote(tmp_path, "nope")
    assert (
        ".dvc/config" in err.value.render()
        and "far, near" in err.value.render()
        and "dvc remote add" in err.value.render()
    )
    (dvc / "config").write_text("")
    (dvc / "config.local").unlink()
    with pytest.raises(ConfigError, match="core.remote"):
        dvc_remote(tmp_path)


def test_the_feature_store_is_local_unless_an_object_store_url_is_given(tmp_path):
    from skipwise.store.backends import store_location

    cfg = tmp_path / "skipwise.toml"
    cfg.write_text('[compute]\nregion = "us-east-1"\n\n[locations.hot]\nurl = "s3://features"\nregion = "us-east-1"\n')
    config = load_config(cfg)
    assert store_location(config, {}) is None
    assert store_location(config, {"SKIPWISE_STORE": "data/elsewhere"}) is None  # a path: local disk
    where = store_location(config, {"SKIPWISE_STORE": "s3://features/flights/"})
    assert (where.url, where.region, where.egress_class(config.region)) == (
        "s3://features/flights",
        "us-east-1",
        "same_region",
    )
    far = store_location(config, {"SKIPWISE_STORE": "s3://other", "SKIPWISE_STORE_REGION": "eu-west-1"})
    assert far.egress_class(config.region) == "cross_region"
    assert store_location(config, {"SKIPWISE_STORE": "s3://unknown"}).egress_class(config.region) == "internet"
    cfg.write_text('[store]\nurl = "s3://features/x"\nregion = "eu-west-1"\n')
    assert store_location(load_config(cfg), {}).region == "eu-west-1"
    with pytest.raises(ConfigError, match="credentials"):
        store_location(config, {"SKIPWISE_STORE": "s3://a:b@features"})
