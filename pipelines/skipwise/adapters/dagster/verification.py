"""The verify schedule: a small job whose one op runs `skipwise verify` in-process and fails the
run when a committed output could not be reproduced (the partition is then marked stale)."""

# No `from __future__ import annotations`: Dagster reads the op's context annotation as a type.
from pathlib import Path
from typing import Any

import dagster as dg

from skipwise.adapters.dagster.sensors import definitions_root
from skipwise.core import metakeys as mk
from skipwise.engine.loading import load_project
from skipwise.engine.verifying import Report, choose, verify
from skipwise.project.root import run_root


def verify_schedule(
    cron_schedule: str = "0 4 * * *",
    fraction: float = 0.05,
    select: list[str] | None = None,
    root: str | Path | None = None,
    name: str = "skipwise_verify",
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A schedule (daily at 04:00 by default) of a job that recomputes `fraction` of the up-to-date
    partitions of `select` (default: every asset) and compares them with what is committed, as
    `skipwise verify` does. A mismatch marks the partition stale and fails the run, so the failure
    shows where runs are watched; what verifying cost is in the cost ledger."""
    root = definitions_root(root)
    job = verify_job(root, fraction, select, name)
    return dg.ScheduleDefinition(
        name=f"{name}_schedule",
        job=job,
        cron_schedule=cron_schedule,
        default_status=default_status,
        description=f"Recomputes {fraction:.0%} of the up-to-date partitions and compares them "
        "with the committed outputs.",
    )


def verify_job(root: Path, fraction: float, select: list[str] | None, name: str) -> dg.JobDefinition:
    """The job of one op that verifies a sample of the project at `root`."""

    @dg.op(name=f"{name}_op", description="Recomputes a sample of up-to-date partitions and compares output hashes.")
    def verify_cached(context: dg.OpExecutionContext) -> None:
        report = run_verification(root, fraction, select, context.run_id, context.log)
        if not report.ok:
            raise dg.Failure(
                description=report.failure(),
                metadata={"problems": "\n".join(r.line() for r in report.problems), "summary": report.summary()},
            )

    @dg.job(
        name=name,
        description="Verifies a sample of the cached partitions (skipwise verify).",
        tags={mk.TRIGGER: "verify"},
    )
    def _job() -> None:
        verify_cached()

    return _job


def run_verification(root: Path, fraction: float, select: list[str] | None, run_id: str, log: Any) -> Report:
    """Verify in this process (the project loaded as the sensors load it), logging each problem."""
    project = load_project(run_root(root))
    report = verify(
        project,
        choose(project, select, fraction=fraction),
        run_id=run_id,
        on_result=lambda r: log.error(r.line()) if r.verdict.is_problem else None,
    )
    for line in report.skipped_lines():
        log.info(line)
    log.info(report.summary())
    return report
