"""`skipwise ui`: Dagster's own webserver (and daemon), with the asset page's plots by partition
working for a partitioning that ends in the past.

Dagster 1.13's asset page (Plots > Partitions) asks for the newest 120 partition keys
(`partitionKeyConnection(limit: 120, ascending: false)`), and `TimeWindowPartitionsDefinition.
get_paginated_partition_keys` counts them back from the current time, not from the definition's
`end_date`: for data of 2013 it answers with days of this year, none of them partitions, and every
plot is empty. The webserver reconstructs partitions definitions from their snapshots, so nothing
in a code location can change this; the fix has to live in the webserver's process.
`fix_partition_listing` counts newest-first keys back from the end of the partitioning when that
end is in the past (what Dagster already does oldest-first) and changes nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from skipwise.core.errors import require

_FIXED = "_skipwise_counts_from_end"


def fix_partition_listing() -> None:
    """Make newest-first partition listing count back from a time partitioning's end, when that end
    is earlier than now (idempotent)."""
    from dagster._core.definitions.partitions.definition.time_window import TimeWindowPartitionsDefinition

    original = TimeWindowPartitionsDefinition.get_paginated_partition_keys
    if getattr(original, _FIXED, False):
        return

    def get_paginated_partition_keys(
        self: Any, context: Any, limit: int, ascending: bool, cursor: str | None = None
    ) -> Any:
        end = self.end
        if not ascending and cursor is None and end is not None and context.effective_dt > end:
            context = context.updated(effective_dt=end, dynamic_partitions_store=None)
        return original(self, context, limit, ascending, cursor)

    setattr(get_paginated_partition_keys, _FIXED, True)
    get_paginated_partition_keys.__doc__ = original.__doc__
    TimeWindowPartitionsDefinition.get_paginated_partition_keys = get_paginated_partition_keys


def serve(argv: list[str]) -> int:
    """Run dagster-webserver here with `argv` (its own options), the listing fixed."""
    fix_partition_listing()
    webserver = require("dagster_webserver.cli", "ui", "`skipwise ui` (Dagster's webserver)").main

    sys.argv = ["dagster-webserver", *argv]
    try:
        webserver()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run_ui(workspace: Path | None, host: str, port: int, daemon: bool, extra: list[str]) -> int:
    """The webserver (here) and, unless `daemon` is False, `dagster-daemon run` (a child process,
    for sensors, schedules and backfills), both over `workspace` (or [tool.dagster] in pyproject)."""
    target = ["-w", str(workspace)] if workspace else []
    child = None
    if daemon:
        child = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", *target], env=os.environ.copy())
    try:
        return serve([*target, "-h", host, "-p", str(port), *extra])
    finally:
        if child is not None:
            stop(child)


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Ask `proc` to end (SIGTERM), and kill it if it has not within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    """`python -m skipwise.adapters.dagster.ui [dagster-webserver options]`: the webserver alone."""
    return serve(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
