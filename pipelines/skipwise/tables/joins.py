"""The point-in-time join: for each row of a table, the latest row of another known at its time."""

from __future__ import annotations

import datetime
from typing import Any, Sequence

_KEY = "__skipwise_asof"
_ROW = "__skipwise_row"


def as_of_join(
    left: Any,
    right: Any,
    *,
    left_on: str,
    right_on: str,
    by: str | Sequence[str] | None = None,
    lead: datetime.timedelta = datetime.timedelta(0),
    right_on_as: str | None = None,
) -> Any:
    """Attach to each row of `left` the latest row of `right` (same `by` values) whose `right_on`
    is at or before the row's `left_on` minus `lead`: what was known `lead` before that instant,
    so nothing observed later can leak into the row (training features, labels' cut-offs).

    `left` and `right` are polars DataFrames in any order; `right` should be unique per (`by`,
    `right_on`) (otherwise which of the equal rows is chosen is not defined). The result has every
    row of `left` in its own order with its columns first, then `right`'s other columns (its
    `right_on` under `right_on_as` when given; `by` columns once); they are null where no row of
    `right` qualifies. A name in both tables other than `by` is refused: rename it first.
    """
    import polars as pl

    by_cols = [by] if isinstance(by, str) else list(by or [])
    for name, frame, cols in (("left", left, [left_on, *by_cols]), ("right", right, [right_on, *by_cols])):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"as_of_join: {name} has no column(s) {missing}; it has {frame.columns}")
    renamed = right.rename({right_on: right_on_as}) if right_on_as else right
    on_right = right_on_as or right_on
    clash = sorted((set(left.columns) & set(renamed.columns)) - set(by_cols))
    if clash:
        raise ValueError(f"as_of_join: both tables have {clash}; rename them (or pass right_on_as) first")
    r = renamed.with_columns(pl.col(on_right).alias(_KEY)).sort(_KEY, *by_cols)
    l_ = left.with_row_index(_ROW).with_columns((pl.col(left_on) - pl.lit(lead)).alias(_KEY)).sort(_KEY, _ROW)
    joined = l_.join_asof(r, on=_KEY, by=by_cols or None, strategy="backward", check_sortedness=False)
    extra = [c for c in renamed.columns if c not in by_cols]
    return joined.sort(_ROW).select(*left.columns, *extra)
