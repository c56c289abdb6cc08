"""The demo's backfill under the services profile: Dagster on PostgreSQL, each chunk of a level a
run whose steps two Celery workers execute, features and ledger on S3. Its outputs are those of the
embedded default byte for byte, each partition is computed (and recorded) once, and a second
backfill launches nothing."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

from tests.conftest import BIN, run
from tests.integration.test_end_to_end import RANGE, small_params
from tests.services.conftest import ledger_rows, manifests, tasks_done


def test_a_backfill_on_two_celery_workers_equals_the_embedded_one_and_a_second_computes_nothing(deployment, tmp_path):
    root = deployment.root
    small_params(root)
    embedded = tmp_path / "embedded"
    shutil.copytree(root, embedded, symlinks=True)
    home = tmp_path / "embedded_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKIPWISE_", "AWS_"))}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "PYTHONPATH": str(embedded),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    run([str(BIN / "skipwise"), "materialize", "--partition", RANGE], cwd=embedded, env=env)

    workers = deployment.start_workers(2, tmp_path / "workers")
    # Chunks of 3 days: the 12 days of each daily level are 4 Dagster runs, 8 steps for the two workers.
    out = deployment.skipwise("materialize", "--partition", RANGE, "--json", SKIPWISE_CHUNK_PARTITIONS="3")
    summary = json.loads(out[out.index("{") :])
    assert summary["ok"], out[-3000:]
    assert all(tasks_done(log) >= 2 for log in workers.logs), "both workers executed steps"
    assert not (root / "data" / "features").exists(), "the features are on S3, not on local disk"

    store = deployment.objects()
    found = manifests(store)
    local = {
        str(p.parent.relative_to(embedded / "data")): json.loads(p.read_text())
        for p in (embedded / "data").glob("*/*/*/manifest.json")
    }
    assert set(found) == set(local) and len(found) == 3 * 12 + 2  # three daily assets, two unpartitioned
    for folder, m in found.items():
        want = local[folder]
        assert (m["fingerprint"], m["output_hash"]) == (want["fingerprint"], want["output_hash"]), folder
        assert store[f"{folder}/{m['output']}"] == (embedded / "data" / folder / want["output"]).read_bytes(), folder
    assert not [k for k in store if k.endswith(".lease")], "every lease released"

    rows = ledger_rows(store)
    misses = Counter((r["asset"], r["partition"]) for r in rows if r["cache"] == "miss")
    assert set(misses.values()) == {1} and len(misses) == len(found), "one record per materialization"
    runs = {r["run_id"] for r in rows if r["cache"] == "miss" and r["asset"] == "flight_features"}
    assert len(runs) == 4, "each chunk of the level was its own Dagster run"

    # Nothing stale: a second backfill launches no Dagster run and computes nothing.
    before = deployment.runs()
    again = deployment.skipwise("materialize", "--partition", RANGE)
    assert "nothing to do" in again, again[-2000:]
    assert deployment.runs() == before
    after = ledger_rows(deployment.objects())
    assert Counter(r["cache"] for r in after)["miss"] == len(found)
