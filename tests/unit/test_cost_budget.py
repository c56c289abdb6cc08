"""Budgets project a run from each asset's own history and stop it with a message that says
what, which budget, and how to override."""

from __future__ import annotations

import pytest
from skipwise.core.budget import Budgets, check_budgets, project_run_cost
from skipwise.core.errors import BudgetExceeded


def test_projection_is_median_of_recent_history_times_partitions():
    history = {"features": [1.0, 2.0, 100.0], "train": [0.5] * 30 + [9.0] * 11}
    p = project_run_cost(history, {"features": 10, "train": 2, "new": 4}, 0.25)
    features, new, train = p.assets  # sorted by asset name
    assert (features.asset, features.usd_per_partition, features.usd) == ("features", 2.0, 20.0)
    assert not features.estimated and features.samples == 3
    # Only the last 20 count: 9 x 0.5 then 11 x 9.0 -> median 9.0
    assert (train.usd_per_partition, train.samples) == (9.0, 20)
    assert (new.usd, new.estimated, new.samples) == (1.0, True, 0)
    assert p.estimated_assets == ("new",)
    assert p.total_usd == pytest.approx(20.0 + 18.0 + 1.0)


def test_history_ignores_non_finite_and_negative_values():
    p = project_run_cost({"a": [float("nan"), -1.0, 3.0]}, {"a": 1}, 0.0)
    assert p.for_asset("a").usd == 3.0


def test_within_budget():
    p = project_run_cost({"a": [1.0]}, {"a": 3}, 0.1)
    d = check_budgets(p, Budgets(per_run_usd=5.0, per_day_usd=10.0), spent_today_usd=2.0, override=False)
    assert d.ok and d.breaches == ()
    d.raise_if_over()  # no error


def test_over_per_run_budget_message_says_what_which_and_how_to_override():
    p = project_run_cost({"a": [2.0]}, {"a": 10}, 0.1)
    d = check_budgets(p, Budgets(per_run_usd=5.0), spent_today_usd=0.0, override=False)
    assert not d.ok and d.breaches == ("per_run_usd",)
    assert "$20.0000" in d.message  # the projection
    assert "$5.0000" in d.message  # the budget
    assert "budgets.per_run_usd" in d.message  # which budget
    assert "skipwise/budget_override=true" in d.message  # how to override
    assert '--tags \'{"skipwise/budget_override": "true"}\'' in d.message
    with pytest.raises(BudgetExceeded, match="per_run_usd"):
        d.raise_if_over()


def test_per_day_budget_counts_what_was_spent_today():
    p = project_run_cost({"a": [1.0]}, {"a": 2}, 0.1)
    d = check_budgets(p, Budgets(per_day_usd=10.0), spent_today_usd=9.0, override=False)
    assert not d.ok and d.breaches == ("per_day_usd",)
    assert "$9.0000 spent today" in d.message and "$11.0000" in d.message


def test_per_asset_budget():
    p = project_run_cost({"train": [3.0], "features": [0.1]}, {"train": 2, "features": 50}, 0.1)
    d = check_budgets(p, Budgets(assets={"train": 5.0, "features": 100.0}), 0.0, override=False)
    assert not d.ok and d.breaches == ("assets.train",)
    assert "budgets.assets.train" in d.message and "$6.0000" in d.message


def test_override_allows_but_still_reports():
    p = project_run_cost({}, {"a": 100}, 1.0)
    d = check_budgets(p, Budgets(per_run_usd=1.0), 0.0, override=True)
    assert d.ok and d.overridden and d.breaches == ("per_run_usd",)
    assert "allowed by run tag skipwise/budget_override=true" in d.message
    assert "estimated, no history" in d.message


def test_no_limits_means_ok():
    p = project_run_cost({}, {"a": 10**6}, 1.0)
    assert check_budgets(p, Budgets(), 0.0, override=False).ok
