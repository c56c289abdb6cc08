from datetime import date

import pytest
from skipwise.core.errors import PartitionKeyError
from skipwise.core.partitions import (
    AllOf,
    DailyPartitions,
    Identity,
    KeySet,
    Offsets,
    Table,
    Window,
    folder_key,
    key_folder,
    upstream_keys,
    validate_key,
)

DAILY = DailyPartitions(date(2013, 1, 1), date(2014, 1, 1))


@pytest.mark.parametrize(
    "key",
    ["", "../x", "..", "/etc/passwd", "a/b", "2013-01-01/../../x", "a\\b", "x" * 600, None, "a\x00b", "a\nb", "a...b"],
)
def test_hostile_keys_are_refused_with_a_clear_error(key):
    with pytest.raises(PartitionKeyError) as e:
        validate_key(key)
    assert "partition key" in str(e.value)


def test_ordinary_keys_pass():
    assert validate_key("2013-03-14") == "2013-03-14"
    assert validate_key("all") == "all"


def test_daily_keys_and_ranges():
    assert len(DAILY.keys()) == 365
    assert DAILY.key_range("2013-03-14", "2013-03-16") == ["2013-03-14", "2013-03-15", "2013-03-16"]
    with pytest.raises(PartitionKeyError, match="outside"):
        DAILY.parse("2014-01-01")
    with pytest.raises(PartitionKeyError, match="not a date"):
        DAILY.parse("2013-13-01")


def test_window_mapping_reads_the_lookback_days_clipped_at_the_start():
    assert upstream_keys(Window(7), "2013-03-14", DAILY) == [f"2013-03-{d:02d}" for d in range(7, 15)]
    assert upstream_keys(Window(7), "2013-01-02", DAILY) == ["2013-01-01", "2013-01-02"]


def test_identity_all_and_unpartitioned_upstream():
    assert upstream_keys(Identity(), "2013-03-14", DAILY) == ["2013-03-14"]
    assert upstream_keys(AllOf(), "all", DAILY) is None
    assert upstream_keys(Identity(), "2013-03-14", None) == ["all"]


@pytest.mark.parametrize(
    "key", ["2025-01-01-00:00", "2025-01-01|north", "New York", ".hidden", "a~b", "é", "x" * 200, "all"]
)
def test_dagster_keys_are_accepted_and_map_to_safe_folders(key):
    folder = key_folder(validate_key(key))
    assert "/" not in folder and "\\" not in folder and not folder.startswith(".") and len(folder) <= 120
    assert all(c.isascii() and (c.isalnum() or c in "_=-.~") for c in folder)
    assert folder_key(folder) in (key, None)  # None only for a hashed (long) key
    if len(key) < 50:
        assert folder_key(folder) == key


def test_key_folders_are_one_to_one():
    keys = ["a|b", "a~7cb", "a%7cb", "a:b", "a-b", "a_b", ".a", "~2ea", "x" * 200, "x" * 199 + "y"]
    assert len({key_folder(k) for k in keys}) == len(keys)
    assert key_folder("2013-03-14") == "2013-03-14"  # plain keys keep their name


def test_keysets_index_ranges_and_offsets():
    hours = KeySet(tuple(f"2025-01-01-{h:02d}:00" for h in range(24)), "hourly")
    assert hours.key_range("2025-01-01-02:00", "2025-01-01-04:00") == [f"2025-01-01-{h:02d}:00" for h in (2, 3, 4)]
    with pytest.raises(PartitionKeyError, match="not a key of this hourly partitioning"):
        hours.parse("2025-01-02-00:00")
    assert upstream_keys(Offsets(-2, 0), "2025-01-01-05:00", hours) == [f"2025-01-01-{h:02d}:00" for h in (3, 4, 5)]
    assert upstream_keys(Offsets(-2, 0), "2025-01-01-00:00", hours) == ["2025-01-01-00:00"]  # clipped at the start
    assert upstream_keys(Offsets(0, 1), "2025-01-01-23:00", hours) == ["2025-01-01-23:00"]  # and at the end
    table = Table((("2025-W01", ("2025-01-01", "2025-01-02")),))
    assert upstream_keys(table, "2025-W01", KeySet(("2025-01-01", "2025-01-02"), "daily")) == [
        "2025-01-01",
        "2025-01-02",
    ]
    assert upstream_keys(table, "2025-W02", KeySet(("2025-01-01",), "daily")) == []
