"""Budgets: project what a run will cost from what the same assets cost before, and stop it
when the projection is over a limit.

    projection = project_run_cost(history, to_run={"features": 30}, estimate_per_partition=0.01)
    decision = check_budgets(projection, config.budgets, spent_today_usd=3.2, override=False)
    decision.raise_if_over()        # BudgetExceeded, nothing computed
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Mapping

from pipelines.core.cost import BUDGET_OVERRIDE_TAG
from pipelines.core.errors import BudgetExceeded

HISTORY_WINDOW = 20

OVERRIDE_HINT = (
    f'rerun with the run tag {BUDGET_OVERRIDE_TAG}=true '
    f"(CLI: --tags '{{\"{BUDGET_OVERRIDE_TAG}\": \"true\"}}'), "
    "or raise the limit in skipwise.toml [budgets]"
)


@dataclass(frozen=True)
class Budgets:
    """Spending limits from ``skipwise.toml [budgets]``; None means no limit.

    `assets` maps an asset name to its limit per run (all its partitions in that run).
    """

    per_run_usd: float | None = None
    per_day_usd: float | None = None
    assets: Mapping[str, float] = field(default_factory=dict)


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
                f"  {a.asset}: {a.partitions} partition(s) x ${a.usd_per_partition:.4f}"
                f" = ${a.usd:.4f} ({how})"
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
) -> BudgetDecision:
    """Check a projection against the per-run, per-day and per-asset budgets.

    Over any of them: ``ok=False`` with a message giving the projection, the budget, which
    budget it is, and how to override (the run tag ``skipwise/budget_override=true``). With
    `override`, the same breaches are reported but ``ok=True``.
    """
    total = projection.total_usd
    breaches: list[tuple[str, str]] = []
    if budgets.per_run_usd is not None and total > budgets.per_run_usd:
        breaches.append(
            (
                "per_run_usd",
                f"projected ${total:.4f} for this run is over budgets.per_run_usd"
                f" = ${budgets.per_run_usd:.4f}",
            )
        )
    if budgets.per_day_usd is not None and spent_today_usd + total > budgets.per_day_usd:
        breaches.append(
            (
                "per_day_usd",
                f"${spent_today_usd:.4f} spent today + projected ${total:.4f}"
                f" = ${spent_today_usd + total:.4f} is over budgets.per_day_usd"
                f" = ${budgets.per_day_usd:.4f}",
            )
        )
    for a in projection.assets:
        limit = budgets.assets.get(a.asset)
        if limit is not None and a.usd > limit:
            breaches.append(
                (
                    f"assets.{a.asset}",
                    f"projected ${a.usd:.4f} for asset {a.asset!r} is over"
                    f" budgets.assets.{a.asset} = ${limit:.4f}",
                )
            )

    if projection.assets:
        summary = f"projected run cost ${total:.4f}:\n{projection.describe()}"
    else:
        summary = "projected run cost $0.0000 (nothing to compute)"
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
        f"over budget, nothing was computed:\n{reasons}\n{summary}\n"
        f"to run anyway: {OVERRIDE_HINT}",
        names,
    )
