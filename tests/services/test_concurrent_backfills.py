"""Two backfills of the same days launched at once (two orchestrating hosts, say) onto the same
workers, PostgreSQL instance and S3 feature store: both succeed, and every partition is computed
and recorded once, whichever step got to it first (the others wait on its lease, then find it done)."""

from __future__ import annotations

from collections import Counter

from tests.conftest import FIRST_DAYS
from tests.services.conftest import ledger_rows, manifests


def test_two_backfills_at_once_compute_each_partition_once(deployment, tmp_path):
    deployment.start_workers(2, tmp_path / "workers")
    args = ("materialize", "--select", "flight_features,weather_features", "--partition", FIRST_DAYS)
    procs = [deployment.popen(*args, SKIPWISE_CHUNK_PARTITIONS="4") for _ in range(2)]
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=600)
        except Exception:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, out[-3000:]
        outs.append(out)

    store = deployment.objects()
    assert len(manifests(store)) == 24
    rows = ledger_rows(store)
    misses = Counter((r["asset"], r["partition"]) for r in rows if r["cache"] == "miss")
    assert len(misses) == 24 and set(misses.values()) == {1}, "no partition computed twice"
    assert not [k for k in store if k.endswith(".lease")]
    computed = [int(o.split(" of 24 partitions computed")[0].rsplit("\n", 1)[-1].strip()) for o in outs]
    assert sum(computed) == 24, outs  # between them, each partition once
