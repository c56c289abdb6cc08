"""Path templates of sources (skipwise.core.layouts): rendering a key, matching a path back to its
key, globs, and the declaration's mistakes; and the legacy `filename=` form kept as it was."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from skipwise.core.errors import ConfigError, PartitionKeyError
from skipwise.core.layouts import Template, combined_version, static_dir
from skipwise.core.partitions import Dim, KeySet
from skipwise.core.spec import Source

HOURLY = (Dim("", "%Y-%m-%d-%H:%M"),)
DAILY = (Dim("", "%Y-%m-%d"),)
MULTI = (Dim("date", "%Y-%m-%d"), Dim("region"))  # Dagster orders dimensions by name: date|region
STATIC = (Dim(""),)


def test_time_fields_render_the_window_start_with_the_partitionings_own_format():
    t = Template.of("events/{date:%Y/%m/%d}/{hour:%H}.parquet")
    assert t.render("2024-05-01-10:00", HOURLY) == "events/2024/05/01/10.parquet"
    assert Template.of("{year}/{month}/{day}/{hour}.parquet").render("2024-05-01-10:00", HOURLY) == (
        "2024/05/01/10.parquet"
    )
    assert Template.of("dt={date}/hour={hour:%H}/part-0.parquet").render("2024-05-01-07:00", HOURLY) == (
        "dt=2024-05-01/hour=07/part-0.parquet"
    )


def test_the_key_is_rendered_literally_never_escaped():
    assert Template.of("{partition_key}.parquet").render("2024-05-01-00:00", HOURLY) == "2024-05-01-00:00.parquet"
    assert Template.of("{key}.csv").render("north east", STATIC) == "north east.csv"
    with pytest.raises(PartitionKeyError, match="path separator"):
        Template.of("{partition_key}.parquet").render("a/b", STATIC)


def test_multi_partition_dimensions_by_name_and_a_time_dimension_by_spec():
    t = Template.of("region={region}/dt={date:%Y%m%d}/data.parquet")
    assert t.render("2024-05-01|north", MULTI) == "region=north/dt=20240501/data.parquet"
    assert Template.of("{date}/{region}.parquet").render("2024-05-01|north", MULTI) == "2024-05-01/north.parquet"
    assert Template.of("{year}/{region}.parquet").render("2024-05-01|north", MULTI) == "2024/north.parquet"


def test_a_glob_matches_several_files_of_one_partition_and_nothing_of_another():
    t = Template.of("dt={date:%Y-%m-%d}/*.parquet")
    assert t.is_glob and t.prefix == "dt="
    rx = t.pattern("2024-05-01", DAILY)
    assert rx.fullmatch("dt=2024-05-01/part-0.parquet") and rx.fullmatch("dt=2024-05-01/part-1.parquet")
    assert not rx.fullmatch("dt=2024-05-02/part-0.parquet") and not rx.fullmatch("dt=2024-05-01/sub/x.parquet")
    deep = Template.of("dt={date}/**/*.parquet").pattern("2024-05-01", DAILY)
    assert deep.fullmatch("dt=2024-05-01/a/b/x.parquet") and deep.fullmatch("dt=2024-05-01/x.parquet")
    # A key's characters are never glob characters: they match themselves only.
    odd = Template.of("{partition_key}/*.csv").pattern("a[1]*", STATIC)
    assert odd.fullmatch("a[1]*/x.csv") and not odd.fullmatch("a1/x.csv")


def test_mistakes_are_caught_naming_the_field_and_the_fix():
    with pytest.raises(ConfigError, match=r"uses \{hour\}.*known: partition_key, region, date"):
        Template.of("{hour}/{region}.parquet").check(MULTI[1:] + (Dim("date"),), "dvc_source x")
    with pytest.raises(ConfigError, match="not a time window"):
        Template.of("{region:%Y}.parquet").check(MULTI, "dvc_source x")
    with pytest.raises(ConfigError, match="names no field"):
        Template.of("events/*.parquet").check(DAILY, "dvc_source x")
    with pytest.raises(ConfigError, match="unpartitioned source has no fields"):
        Template.of("{partition_key}.parquet").check(None, "dvc_source x")
    with pytest.raises(ConfigError, match="never closed"):
        Template.of("{date.parquet")
    Template.of("{date:%Y/%m/%d}/{hour:%H}.parquet").check(HOURLY, "ok")


def test_static_dir_is_where_a_listing_starts():
    assert static_dir("data/raw/events/{date}/x.parquet") == "data/raw/events"
    assert static_dir("data/raw/lookup.parquet") == "data/raw/lookup.parquet"
    assert static_dir("dt=2024-05-01/*.parquet") == "dt=2024-05-01"
    assert static_dir("*.parquet") == ""


def test_the_combined_version_of_several_files_ignores_the_listing_order():
    a = combined_version([("x/1", "md5:a"), ("x/0", "md5:b")], "md5s:")
    assert a == combined_version([("x/0", "md5:b"), ("x/1", "md5:a")], "md5s:") and a.startswith("md5s:")
    assert a != combined_version([("x/0", "md5:b")], "md5s:")
    assert a != combined_version([("x/1", "md5:b"), ("x/0", "md5:a")], "md5s:")


@pytest.mark.parametrize(
    ("text", "dims", "keys"),
    [
        ("events/{date:%Y/%m/%d}/{hour:%H}.parquet", HOURLY, "hourly"),
        ("dt={date:%Y-%m-%d}/hour={hour}/part-0.parquet", HOURLY, "hourly"),
        ("{year}/{month}/{day}.csv", DAILY, "daily"),
        ("{partition_key}.parquet", HOURLY, "hourly"),
        ("region={region}/{date:%Y%m%d}.parquet", MULTI, "multi"),
        ("{region}/{partition_key}.json", MULTI, "multi"),
    ],
)
def test_property_render_then_match_gives_the_key_back(text, dims, keys):
    rng = random.Random(text)
    t = Template.of(text)
    start = datetime(2020, 1, 1)
    for _ in range(200):
        when = start + timedelta(hours=rng.randrange(24 * 365 * 6))
        if keys == "hourly":
            key = when.strftime("%Y-%m-%d-%H:00")
        elif keys == "daily":
            key = when.strftime("%Y-%m-%d")
        else:
            key = f"{when:%Y-%m-%d}|{rng.choice(['north', 'south', 'east-1', 'a b'])}"
        path = t.render(key, dims)
        assert t.match(path, dims) == key, (text, key, path)
        assert t.pattern(key, dims).fullmatch(path)


def test_a_template_that_does_not_say_the_whole_key_matches_no_key():
    assert Template.of("{year}/{month}.csv").match("2024/05.csv", DAILY) is None
    assert Template.of("{date}/x.csv").match("not-a-date/x.csv", DAILY) is None


def test_the_legacy_filename_form_names_the_same_files_as_before():
    """Existing projects keep their files (and so their versions and fingerprints): the key
    escaped as skipwise's folders escape it, inside the tracked folder."""
    hours = KeySet(("2024-05-01-00:00",), "hourly", HOURLY)
    old = Source("events", "data/raw/events", hours)
    assert old.layout is None and not old.many
    assert old.file_for("2024-05-01-00:00") == "2024-05-01-00~3a00.parquet"
    assert old.shown("2024-05-01-00:00") == "data/raw/events/2024-05-01-00~3a00.parquet"
    assert Source("x", "data/raw/x", KeySet(("a|b",))).file_for("a|b") == "a~7cb.parquet"
    new = Source("events", "data/raw/events", hours, layout="{date:%Y/%m/%d}/{hour:%H}.parquet")
    assert new.shown("2024-05-01-00:00") == "data/raw/events/2024/05/01/00.parquet"
    what, fix = new.missing("2024-05-01-00:00", "data/raw")
    assert what == "data/raw/events/2024/05/01/00.parquet does not exist"
    assert fix == "add it and `dvc add data/raw`, or narrow the partition range"
    one = Source("lookup", "data/raw/lookup.parquet", None, layout="")
    assert one.shown("all") == "data/raw/lookup.parquet" and one.file_for("all") == ""
