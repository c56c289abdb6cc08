"""A Celery worker SIGKILLed inside a partition, features on S3: the broker hands its step to the
other worker (the step was never acknowledged), nothing in the store is partial or torn, every
partition is recorded once, and re-running the backfill finds nothing left to do."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter

from tests.conftest import definitions_module
from tests.services.conftest import ledger_rows, manifests

DEFINITIONS = '''
import os
import time
from pathlib import Path

import dagster as dg
import polars as pl

import skipwise as sw

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-07")


@sw.asset(partitions_def=DAYS)
def slow_days(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """One day's rows; the 4th day waits while the test's hold file exists (and says who waits)."""
    key = context.partition_key
    if key == "2024-01-04":
        gate = Path(os.environ["SKIPWISE_TEST_GATE"])
        (gate / f"inside-{os.getpid()}").write_text(key)
        while (gate / "hold").exists():
            time.sleep(0.05)
    return pl.DataFrame({"day": [key] * 5000, "value": list(range(5000))})


defs = dg.Definitions(assets=[slow_days], resources={"skipwise": sw.IOManager()})
'''


def test_a_worker_killed_inside_a_partition_leaves_nothing_partial_and_the_backfill_completes(
    deployment, tmp_path, monkeypatch
):
    root = deployment.root
    (root / "params.yaml").unlink()  # the demo's parameters, of assets this project does not have
    definitions_module(root, monkeypatch, DEFINITIONS, "killed_worker_defs")
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "hold").write_text("")
    deployment.env["SKIPWISE_TEST_GATE"] = str(gate)
    workers = deployment.start_workers(2, tmp_path / "workers")

    # Two chunks of three days, one Dagster run each: one worker gets stuck inside 2024-01-04.
    days = "2024-01-01...2024-01-06"
    proc = deployment.popen("materialize", "--partition", days, SKIPWISE_CHUNK_PARTITIONS="3")
    deadline = time.monotonic() + 300
    while not list(gate.glob("inside-*")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no worker reached 2024-01-04"
        time.sleep(0.1)
    stuck = int(next(gate.glob("inside-*")).name.split("-", 1)[1])
    assert stuck in workers.pids()
    workers.kill(stuck)
    (gate / "hold").unlink()

    # The killed worker never acknowledged its step: the other worker runs it, and the run completes.
    try:
        out, _ = proc.communicate(timeout=600)
    except Exception:
        proc.kill()
        raise
    assert proc.returncode == 0, out[-3000:]
    assert "6 of 6 partitions computed" in out, out[-3000:]
    survivors = {int(p.name.split("-", 1)[1]) for p in gate.glob("inside-*")} - {stuck}
    assert survivors and survivors <= set(workers.pids()), "the surviving worker computed 2024-01-04"

    store = deployment.objects()
    found = manifests(store)
    assert sorted(found) == [f"default/slow_days/2024-01-0{d}" for d in range(1, 7)]
    for folder, m in found.items():
        data = store[f"{folder}/{m['output']}"]
        assert hashlib.sha256(data).hexdigest() == m["output_hash"] and len(data) == m["output_size"], folder
    named = {f"{folder}/{m['output']}" for folder, m in found.items()}
    outputs = {k for k in store if k.startswith("default/") and not k.endswith(".json") and "/versions/" not in k}
    assert outputs == named, "no output object that no manifest names (a partial write)"
    assert not [k for k in store if k.endswith(".lease")], "the dead worker's lease was taken over and released"

    rows = ledger_rows(store)  # every record parses: none is torn
    assert Counter((r["asset"], r["partition"]) for r in rows if r["cache"] == "miss") == Counter(
        {("slow_days", f"2024-01-0{d}"): 1 for d in range(1, 7)}
    )

    # The retry: the same backfill again completes, computing nothing.
    again = deployment.skipwise("materialize", "--partition", days, SKIPWISE_CHUNK_PARTITIONS="3")
    assert "nothing to do" in again, again[-2000:]
    assert Counter(r["cache"] for r in ledger_rows(deployment.objects()))["miss"] == 6
    assert json.loads(json.dumps(found)) == manifests(deployment.objects())
