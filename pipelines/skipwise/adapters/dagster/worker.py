"""A worker process of `skipwise.adapters.dagster.split.launch_split`: one Dagster run over one
span of a level, in a fresh interpreter. Reads its job (JSON) on stdin and prints its result as
the last line of stdout; its own run records account for what it used."""

from __future__ import annotations

import json
import sys

from skipwise.engine.collector import defer_collection
from skipwise.engine.loading import load_project
from skipwise.engine.processmeter import process_meter


def main() -> int:
    """A worker: read one job (JSON on stdin), run it, print its result as the last stdout line."""
    defer_collection()  # until the definitions are loaded (`definitions_in` turns it back on)
    job = json.loads(sys.stdin.read())
    for p in reversed(job["sys_path"]):
        if p not in sys.path:
            sys.path.insert(0, p)
    from pathlib import Path

    from skipwise.adapters.dagster.graph import definitions_in
    from skipwise.adapters.dagster.instance import instance_for_root
    from skipwise.adapters.dagster.iomanager import IOManager
    from skipwise.adapters.dagster.launch import RESULT_PREFIX, launch

    root = Path(job["root"])
    project = load_project(root, job["definitions"])
    defs = definitions_in(job["definitions"])
    resources = dict(defs.resources or {})
    resources.setdefault("skipwise", IOManager(root=str(root)))
    span = tuple(job["span"]) if job.get("span") else None
    out = launch(list(defs.assets or ()), resources, job["names"], span, instance_for_root(root), job["tags"])
    project.accounts.record_run(out.run_id, job["tags"])  # the run's end, after its last step's record
    sys.stdout.write("\n" + RESULT_PREFIX + json.dumps(out.__dict__) + "\n")
    sys.stdout.flush()
    process_meter().at_exit(freeze_gc=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
