"""What a project's work costs, in its ledger: a record per partition (computed, restored or hit),
each process's run record (what it used outside its partitions, so the ledger adds up to what the
machine did), projections from each asset's history, and the budgets that stop a run before it
overspends (`skipwise.core.budget`)."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from skipwise.core.budget import check_budgets, project_run_cost
from skipwise.core.cost import (
    BUDGET_OVERRIDE_TAG,
    EGRESS_CLASSES,
    CostVector,
    IOCounter,
    IOSnapshot,
    LedgerRecord,
    utc_now_iso,
)
from skipwise.core.pricing import SkipwiseConfig
from skipwise.engine.processmeter import process_meter
from skipwise.engine.outcomes import Outcome
from skipwise.store.base import CostLedger
from skipwise.store.ledger import recent_days


# The Accounts that wrote this process's latest run record: the run its exit record belongs to.
_latest: dict[str, Any] = {"pid": None, "accounts": None}


def latest_accounts() -> Accounts | None:
    """The `Accounts` that wrote this process's latest run record (None if none did): its
    `last_run` names the run and tags this process worked for last, and its ledger is where."""
    return _latest["accounts"] if _latest["pid"] == os.getpid() else None


class Accounts:
    """The ledger of one project in this process, and the budgets its config sets."""

    def __init__(
        self,
        ledger: CostLedger,
        config: SkipwiseConfig,
        io: IOCounter,
        outside: Callable[[], CostVector | None] = lambda: None,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.io = io
        self._outside = outside  # what inputs' fetches moved outside any partition (planning's)
        self.last_run: LedgerRecord | None = None  # the run record written last in this process
        # The store's bytes and requests outside any partition (planning's LISTs, commits, leases,
        # ledger writes) go to the run record: (what the counter moved) - (what partitions recorded).
        self._io_taken = io.snapshot()
        self._io_in_partitions = self._io_taken

    def projection(self, to_run: Mapping[str, int]) -> Any:
        """What running `to_run` (asset -> partitions) is projected to cost, from each asset's history."""
        return project_run_cost(
            {a: self.ledger.history_usd_per_partition(a) for a, n in to_run.items() if n},
            {a: n for a, n in to_run.items() if n},
            self.config.default_partition_usd_estimate,
        )

    def budgeted(self, asset: str) -> bool:
        """Whether a budget in skipwise.toml applies to running partitions of `asset`."""
        b = self.config.budgets
        return b.per_run_usd is not None or b.per_day_usd is not None or asset in b.assets

    def check_budgets(self, to_run: Mapping[str, int], tags: Mapping[str, str], run_id: str = "") -> None:
        """Stop before any work if running `to_run` (asset -> partitions) breaks a budget in skipwise.toml.

        With `run_id`, what that run already spent (its ledger records: earlier steps of the same
        Dagster run) counts towards the per-run and per-asset budgets, so a run of many steps is
        held to `per_run_usd` as a whole, not step by step.
        """
        b = self.config.budgets
        if not any(to_run.values()) or (
            b.per_run_usd is None and b.per_day_usd is None and not set(to_run) & set(b.assets)
        ):
            return

        # Each figure only when a budget reads it: each reads ledger files (today's, the run's).
        spent_today = self.ledger.spent_usd(utc_now_iso()[:10]) if b.per_day_usd is not None else 0.0
        by_asset: dict[str, float] = {}
        if run_id and (b.per_run_usd is not None or set(to_run) & set(b.assets)):
            # a run's records are in the day folders since it started
            by_asset = self.ledger.spent_by_asset(str(run_id), since=recent_days(7))
        override = str(tags.get(BUDGET_OVERRIDE_TAG, "")).lower() == "true"
        decision = check_budgets(
            self.projection(to_run),
            b,
            spent_today,
            override,
            spent_this_run_usd=sum(by_asset.values()),
            spent_this_run_by_asset=by_asset,
        )
        decision.raise_if_over(self.config.source)

    def record(self, outcomes: list[Outcome], run_id: str, tags: Mapping[str, str]) -> None:
        """Append one immutable ledger file with a record per outcome, and this process's run record
        (what it used since its previous one: planning these outcomes, and whatever came before)."""
        if outcomes:
            with process_meter().phase("ledger"):
                computed = [o for o in outcomes if o.computed]
                records = self.records(outcomes, run_id, tags)
                for o in computed:
                    process_meter().add_partition(o.cost)
                self.ledger.append([*records, self.run_record("", run_id, tags)])

    def record_run(self, run_id: str, tags: Mapping[str, str], asset: str = "") -> LedgerRecord:
        """Append this process's run record alone: what it used since its previous one (an
        orchestrator calls it when it is done, so the work after its last step is counted too)."""
        with process_meter().phase("ledger"):
            run = self.run_record(asset, run_id, tags)
            self.ledger.append([run])
        return run

    def finish_at_exit(self, run_id: str, tags: Mapping[str, str], asset: str = "", *, freeze_gc: bool = True) -> None:
        """When this process exits, write its run record for the stretch since its previous one
        (what it did after its last step: the orchestrator's bookkeeping), then freeze the GC so the
        interpreter's teardown does not spend CPU no record can show (`ProcessMeter.at_exit`).

        For processes that exist to run skipwise (a Dagster step worker): anything a longer-lived
        process did after its last step would be recorded as its overhead.
        """

        def write() -> None:
            if self.ledger.exists() and process_meter().cpu_since_take() >= 0.001:
                self.record_run(run_id, tags, asset)

        process_meter().at_exit(write, freeze_gc=freeze_gc)

    def run_record(self, asset: str, run_id: str, tags: Mapping[str, str]) -> LedgerRecord:
        """This process's run record since its previous one (`ProcessMeter.take`), priced like a
        partition: CPU, wall and memory outside its metered partitions (kept as `last_run`)."""
        self.last_run = LedgerRecord(
            ts=utc_now_iso(),
            run_id=run_id,
            asset=asset,
            partition=None,
            cache="run",
            reason="process overhead: CPU, wall and memory outside its metered partitions",
            fingerprint="",
            tags={str(k): str(v) for k, v in tags.items() if not str(k).startswith("dagster/")},
            cost=self.config.price(
                _plus(
                    _plus(process_meter().take(), self._take_io_outside()),
                    self._outside(),
                )
            ),
        )
        _latest.update(pid=os.getpid(), accounts=self)
        return self.last_run

    def _take_io_outside(self) -> CostVector | None:
        """The store's I/O since the previous run record that no partition's record holds (None if none).
        The write of the record itself is the one request it cannot hold: the next record counts it."""
        now = self.io.snapshot()
        outside = now - self._io_taken - self._io_in_partitions
        self._io_taken, self._io_in_partitions = now, now - now
        if not (outside.requests or outside.bytes_read or outside.bytes_written):
            return None
        return CostVector.from_io(
            outside, "io outside partitions: planning's listings, commits, leases and ledger writes"
        )

    def records(self, outcomes: list[Outcome], run_id: str, tags: Mapping[str, str]) -> list[LedgerRecord]:
        kept = {str(k): str(v) for k, v in tags.items() if not str(k).startswith("dagster/")}
        return [
            LedgerRecord(
                ts=utc_now_iso(),
                run_id=run_id,
                asset=o.decision.asset,
                partition=o.decision.partition,
                cache=o.cache,
                reason=o.decision.reason,
                fingerprint=o.decision.fingerprint,
                tags=kept,  # one mapping for all: a record never changes its tags
                cost=o.cost or CostVector(),
            )
            for o in outcomes
        ]

    def count_partition_work(self, cost: CostVector | None) -> None:
        """Count `cost`, a partition's work recorded outside `materialize` (`skipwise verify`'s
        recomputations), as partition work: the next run record leaves it out of the overhead."""
        process_meter().add_partition(cost)
        self._io_in_partitions += _io_of(cost)


def _plus(cost: CostVector, extra: CostVector | None) -> CostVector:
    return cost if extra is None else cost + extra


def _io_of(cost: CostVector | None) -> Any:
    """The store I/O a partition's cost vector recorded, as an IOSnapshot."""
    if cost is None:
        return IOSnapshot()
    return IOSnapshot(
        bytes_read=cost.bytes_read or 0,
        bytes_written=cost.bytes_written or 0,
        get_requests=cost.get_requests or 0,
        put_requests=cost.put_requests or 0,
        list_requests=cost.list_requests or 0,
        **{f"egress_{c}_bytes": getattr(cost, f"egress_{c}_bytes") or 0 for c in EGRESS_CLASSES},
    )
