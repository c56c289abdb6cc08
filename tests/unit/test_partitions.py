from datetime import date

import pytest

from skipwise.core.errors import PartitionKeyError
from skipwise.core.partitions import AllOf, DailyPartitions, Identity, Window, upstream_keys, validate_key

DAILY = DailyPartitions(date(2013, 1, 1), date(2014, 1, 1))


@pytest.mark.parametrize("key", ["", "../x", "..", "/etc/passwd", "a/b", "2013-01-01/../../x", ".hidden", "a\\b", "x" * 200, None])
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
