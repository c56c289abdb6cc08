"""skipwise.as_of_join: each left row gets the latest right row known `lead` before it, per group."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import skipwise as sw


def t(h: int, m: int = 0) -> dt.datetime:
    return dt.datetime(2013, 1, 1, h, m)


LEFT = pl.DataFrame(
    {"id": [1, 2, 3, 4, 5], "site": ["a", "b", "a", "a", "c"], "at": [t(12), t(12), t(9), t(12, 30), t(12)]}
)
RIGHT = pl.DataFrame(
    {
        "site": ["a", "a", "a", "b", "b"],
        "seen": [t(8), t(11), t(12, 15), t(11, 59), t(13)],
        "value": [1.0, 2.0, 3.0, 4.0, 5.0],
    }
)


def test_the_latest_known_row_per_group_and_never_one_from_the_future():
    out = sw.as_of_join(LEFT, RIGHT, left_on="at", right_on="seen", by="site", lead=dt.timedelta(minutes=30))
    assert out["id"].to_list() == [1, 2, 3, 4, 5]  # the left table's own order
    assert out.columns == ["id", "site", "at", "seen", "value"]
    # cut-offs 11:30, 11:30, 8:30, 12:00, 11:30
    assert out["value"].to_list() == [2.0, None, 1.0, 2.0, None]
    assert all(s is None or s <= a - dt.timedelta(minutes=30) for s, a in zip(out["seen"], out["at"]))


def test_lead_zero_takes_a_row_at_the_same_instant_and_inputs_in_any_order():
    right = pl.concat([RIGHT, pl.DataFrame({"site": ["c"], "seen": [t(12)], "value": [9.0]})]).sample(
        fraction=1.0, shuffle=True, seed=3
    )
    out = sw.as_of_join(LEFT.reverse(), right, left_on="at", right_on="seen", by=["site"], right_on_as="seen_at")
    assert out["id"].to_list() == [5, 4, 3, 2, 1]
    assert dict(zip(out["id"], out["value"])) == {1: 2.0, 2: 4.0, 3: 1.0, 4: 3.0, 5: 9.0}
    assert "seen_at" in out.columns and "seen" not in out.columns


def test_without_groups_and_with_bad_columns():
    out = sw.as_of_join(LEFT.select("id", "at"), RIGHT.select("seen", "value"), left_on="at", right_on="seen")
    assert dict(zip(out["id"], out["value"])) == {1: 4.0, 2: 4.0, 3: 1.0, 4: 3.0, 5: 4.0}
    with pytest.raises(ValueError, match="right has no column"):
        sw.as_of_join(LEFT, RIGHT, left_on="at", right_on="nope", by="site")
    with pytest.raises(ValueError, match="both tables have"):
        sw.as_of_join(LEFT, RIGHT.with_columns(pl.lit(0).alias("id")), left_on="at", right_on="seen", by="site")
