"""Budgets: project what a run will cost from what the same assets cost before, and stop it
when the projection is over a limit.

    projection = project_run_cost(history, to_run={"features": 30}, estimate_per_partition=0.01)
    decision = check_budgets(projection, config.budgets, spent_today_usd=3.2, override=False)
    decision.raise_if_over()        # BudgetExceeded, nothing computed

Every dollar figure skipwise prints goes through `format_usd`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from skipwise.core.cost import BUDGET_OVERRIDE_TAG
from skipwise.core.errors import BudgetExceeded
from skipwise.core.units import format_usd

HISTORY_WINDOW = 20


OVERRIDE_HINT = (
    f"rerun with the run tag {BUDGET_OVERRIDE_TAG}=true "
    f'(CLI: --tags \'{{"{BUDGET_OVERRIDE_TAG}": "true"}}\'), '
    "or raise the limit in skipwise.toml [budgets]"
)


@dataclass(frozen=True)
class Budgets:
    """Spending limits from ``skipwise.toml [budgets]``; None means no limit.

    `assets` maps an asset name to its limit per run (all its partitions in that run).
    `per_run_egress_bytes` / `per_run_egress_usd` limit what one run may move from storage off
    this host (same region + cross region + internet), checked before anything is read.
    """

    per_run_usd: float | None = None
    per_day_usd: float | None = None
    assets: Mapping[str, float] = field(default_factory=dict)
    per_run_egress_bytes: float | None = None
    per_run_egress_usd: float | None = None


@dataclass(frozen=True)
class AssetProjection:
    """The projected cost of one asset's partitions in a run."""

    asset: str
    partitions: int
    usd_per_partition: float
    usd: float
    estimated: bool  # True: no history, `usd_per_partition` is the configured estimate
    samples: int  # how many past partitions the median was taken over


@dataclass(frozen=True)
class Projection:
    """The projected cost of a run, per asset and in total."""

    assets: tuple[AssetProjection, ...]

    @property
    def total_usd(self) -> float:
        """The projected dollars of the whole run."""
        return sum(a.usd for a in self.assets)

    @property
    def estimated_assets(self) -> tuple[str, ...]:
        """Assets projected from the configured estimate because they have no history."""
        return tuple(a.asset for a in self.assets if a.estimated)

    def for_asset(self, asset: str) -> AssetProjection | None:
        """The projection of one asset, or None when it is not in the run."""
        return next((a for a in self.assets if a.asset == asset), None)

    def describe(self) -> str:
        """One line per asset: partitions x per-partition dollars, and how that was found."""
        lines = []
        for a in self.assets:
            how = "estimated, no history" if a.estimated else f"median of last {a.samples}"
            lines.append(
                f"  {a.asset}: {a.partitions} partition(s) x {format_usd(a.usd_per_partition)}"
                f" = {format_usd(a.usd)} ({how})"
            )
        return "\n".join(lines)


def _recent(values: list[float]) -> list[float]:
    finite = [float(v) for v in values if v is not None and math.isfinite(v) and v >= 0]
    return finite[-HISTORY_WINDOW:]


def project_run_cost(
    history: Mapping[str, list[float]],
    to_run: Mapping[str, int],
    estimate_per_partition: float,
) -> Projection:
    """Project a run's dollars: for each asset, the median dollars per partition over its last
    20 computed partitions (`history`, oldest first) times the partitions to run.

    An asset without history uses `estimate_per_partition` and is flagged ``estimated``. The
    median, not the mean, so one pathological partition does not block every later run.
    """
    projected = []
    for asset in sorted(to_run):
        n = int(to_run[asset])
        recent = _recent(list(history.get(asset, [])))
        if recent:
            import statistics  # here: `skipwise plan` never needs it (9 ms of import)

            per = statistics.median(recent)
            projected.append(AssetProjection(asset, n, per, per * n, False, len(recent)))
        else:
            per = float(estimate_per_partition)
            projected.append(AssetProjection(asset, n, per, per * n, True, 0))
    return Projection(tuple(projected))


@dataclass(frozen=True)
class BudgetDecision:
    """Whether a run may start, and a message saying why (a user reads it, a test asserts it).

    `breaches` names each budget the projection is over, e.g. ``("per_run_usd",
    "assets.train")``, overridden or not.
    """

    ok: bool
    message: str
    breaches: tuple[str, ...] = ()
    overridden: bool = False

    def raise_if_over(self, location: str = "skipwise.toml") -> None:
        """Raise `BudgetExceeded` when the run may not start (the message says how to override)."""
        if not self.ok:
            raise BudgetExceeded(self.message, location=location)


def check_budgets(
    projection: Projection,
    budgets: Budgets,
    spent_today_usd: float,
    override: bool,
    spent_this_run_usd: float = 0.0,
    spent_this_run_by_asset: Mapping[str, float] | None = None,
) -> BudgetDecision:
    """Check a projection against the per-run, per-day and per-asset budgets.

    `spent_today_usd` counts towards the per-day budget only (pass 0 when none is set).
    `spent_this_run_usd` is what earlier steps of the same run already spent (a run of several
    assets is checked step by step): it counts towards the per-run budget, and
    `spent_this_run_by_asset` towards the per-asset ones.

    Over any of them: ``ok=False`` with a message giving the projection, the budget, which
    budget it is, and how to override (the run tag ``skipwise/budget_override=true``). With
    `override`, the same breaches are reported but ``ok=True``.
    """
    total = projection.total_usd
    spent_run = float(spent_this_run_usd or 0.0)
    by_asset = dict(spent_this_run_by_asset or {})
    breaches: list[tuple[str, str]] = []
    if budgets.per_run_usd is not None and spent_run + total > budgets.per_run_usd:
        if spent_run:
            text = (
                f"{format_usd(spent_run)} already spent by this run + projected {format_usd(total)}"
                f" = {format_usd(spent_run + total)} is over budgets.per_run_usd"
                f" = {format_usd(budgets.per_run_usd)}"
            )
        else:
            text = (
                f"projected {format_usd(total)} for this run is over budgets.per_run_usd"
                f" = {format_usd(budgets.per_run_usd)}"
            )
        breaches.append(("per_run_usd", text))
    if budgets.per_day_usd is not None and spent_today_usd + total > budgets.per_day_usd:
        breaches.append(
            (
                "per_day_usd",
                f"{format_usd(spent_today_usd)} spent today + projected {format_usd(total)}"
                f" = {format_usd(spent_today_usd + total)} is over budgets.per_day_usd"
                f" = {format_usd(budgets.per_day_usd)}",
            )
        )
    for a in projection.assets:
        limit = budgets.assets.get(a.asset)
        before = float(by_asset.get(a.asset, 0.0) or 0.0)
        if limit is not None and before + a.usd > limit:
            spent_text = f"{format_usd(before)} already spent by this run + " if before else ""
            breaches.append(
                (
                    f"assets.{a.asset}",
                    f"{spent_text}projected {format_usd(a.usd)} for asset {a.asset!r} is over"
                    f" budgets.assets.{a.asset} = {format_usd(limit)}",
                )
            )

    if projection.assets:
        summary = f"projected run cost {format_usd(total)}:\n{projection.describe()}"
    else:
        summary = f"projected run cost {format_usd(0)} (nothing to compute)"
    names = tuple(name for name, _ in breaches)
    if not breaches:
        return BudgetDecision(True, f"within budget; {summary}")
    reasons = "\n".join(f"- {text}" for _, text in breaches)
    if override:
        return BudgetDecision(
            True,
            f"over budget, allowed by run tag {BUDGET_OVERRIDE_TAG}=true:\n{reasons}\n{summary}",
            names,
            overridden=True,
        )
    return BudgetDecision(
        False,
        f"over budget, nothing was computed:\n{reasons}\n{summary}\nto run anyway: {OVERRIDE_HINT}",
        names,
    )


def check_egress(
    bytes_off_host: int,
    usd: float,
    budgets: Budgets,
    override: bool,
    what: str = "",
) -> BudgetDecision:
    """Check what a run would move off this host (`bytes_off_host`, priced `usd`) against
    ``budgets.per_run_egress_bytes`` and ``budgets.per_run_egress_usd``.

    `what` says where the bytes come from (one line, e.g. "12 objects from s3://bucket"). Over a
    limit: ``ok=False`` naming the budget and the override, unless `override`.
    """
    breaches: list[tuple[str, str]] = []
    if budgets.per_run_egress_bytes is not None and bytes_off_host > budgets.per_run_egress_bytes:
        breaches.append(
            (
                "per_run_egress_bytes",
                f"{bytes_off_host:,} bytes to move off this host is over "
                f"budgets.per_run_egress_bytes = {int(budgets.per_run_egress_bytes):,}",
            )
        )
    if budgets.per_run_egress_usd is not None and usd > budgets.per_run_egress_usd:
        breaches.append(
            (
                "per_run_egress_usd",
                f"{format_usd(usd)} of egress is over "
                f"budgets.per_run_egress_usd = {format_usd(budgets.per_run_egress_usd)}",
            )
        )
    names = tuple(n for n, _ in breaches)
    source = f" ({what})" if what else ""
    if not breaches:
        return BudgetDecision(True, f"egress within budget: {bytes_off_host:,} bytes, {format_usd(usd)}{source}")
    reasons = "\n".join(f"- {text}" for _, text in breaches)
    if override:
        return BudgetDecision(
            True,
            f"over the egress budget, allowed by run tag {BUDGET_OVERRIDE_TAG}=true:\n{reasons}{source}",
            names,
            overridden=True,
        )
    return BudgetDecision(
        False,
        f"over the egress budget, nothing was read or computed:\n{reasons}{source}\nto run anyway: {OVERRIDE_HINT}",
        names,
    )
