"""Which kept versions of a partition are worth keeping: what storing one costs against what
recomputing it would cost, weighed by how likely it is to be wanted again."""

from __future__ import annotations

from dataclasses import dataclass

from skipwise.core.metakeys import GIT_COMMIT  # noqa: F401 - where retention's callers find it

GIB = 2**30


@dataclass(frozen=True)
class Policy:
    """Keep a version while ``p_reuse x recompute_usd >= storage_usd_per_month x months``, where
    ``p_reuse = 0.5 ** (days since it was last current / half_life_days)``: a version in use
    yesterday is likely to come back (a revert, a branch switch), one unused for months is not."""

    storage_usd_per_gb_month: float
    half_life_days: float = 7.0
    months: float = 1.0


@dataclass(frozen=True)
class Verdict:
    """Keep or remove one kept version, and why (in words a person can check)."""

    keep: bool
    reason: str
    storage_usd_per_month: float


def judge(policy: Policy, size_bytes: int, recompute_usd: float | None, idle_days: float, ref: str = "") -> Verdict:
    """The verdict for one non-current version: `size_bytes` on disk, `recompute_usd` what it cost
    to compute (None: unknown, kept: never remove what cannot be priced), `idle_days` since it
    was last current (computed, restored or hit), `ref` the git branch or tag whose commit computed
    it (kept: checking that ref out would use it again)."""
    store = size_bytes / GIB * policy.storage_usd_per_gb_month
    if ref:
        return Verdict(True, f"computed at {ref}, which a checkout would use again", store)
    if recompute_usd is None:
        return Verdict(True, "its recompute cost is unknown", store)
    p = 0.5 ** (max(idle_days, 0.0) / policy.half_life_days) if policy.half_life_days > 0 else 0.0
    value, price = p * recompute_usd, store * policy.months
    if value >= price:
        return Verdict(
            True,
            f"reuse value ${value:.3g} (p={p:.2f} x ${recompute_usd:.3g}) >= "
            f"${price:.3g} to store it {policy.months:g} month(s)",
            store,
        )
    return Verdict(
        False,
        f"reuse value ${value:.3g} (p={p:.2f} after {idle_days:.0f} idle days x ${recompute_usd:.3g}) "
        f"< ${price:.3g} to store it {policy.months:g} month(s)",
        store,
    )
