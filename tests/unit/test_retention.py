"""The retention rule: keep a version while its likely reuse is worth more than storing it."""

from __future__ import annotations

from skipwise.core.retention import GIB, Policy, judge

POLICY = Policy(storage_usd_per_gb_month=0.023, half_life_days=7, months=1)


def test_recent_and_expensive_versions_stay_old_and_cheap_ones_go():
    size = 30_000  # a demo partition: storage $6.4e-7 a month
    assert judge(POLICY, size, 1e-5, idle_days=0).keep
    assert judge(POLICY, size, 1e-5, idle_days=21).keep  # p = 1/8: still worth $1.25e-6
    assert not judge(POLICY, size, 1e-5, idle_days=35).keep  # p = 1/32: $3.1e-7 < $6.4e-7
    big = judge(POLICY, 50 * GIB, 0.01, idle_days=0)  # 50 GiB costs $1.15 a month: more than recomputing
    assert not big.keep and "< $1.15" in big.reason


def test_unknown_cost_is_kept_and_a_zero_half_life_keeps_only_what_storage_cannot_beat():
    assert judge(POLICY, 10**9, None, idle_days=1000).keep
    assert not judge(Policy(0.023, half_life_days=0), 1000, 5.0, idle_days=0).keep
    assert judge(Policy(0.0), 10**12, 0.0, idle_days=10).keep  # free storage: keep everything
