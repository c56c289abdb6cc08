"""The cost ledger: records round-trip through DuckDB, concurrent writers never corrupt it,
and a file once written is never touched again."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import pytest
from skipwise.core.cost import CostVector, LedgerRecord
from skipwise.store.ledger import Ledger


def _record(
    i: int = 0,
    *,
    run: str = "run-1",
    asset: str = "features",
    cache: str = "miss",
    fp: str = "fp0",
    usd: float | None = 0.5,
    ts: str = "2026-03-01T10:00:00.000000Z",
    tags: dict[str, str] | None = None,
) -> LedgerRecord:
    cost = CostVector(wall_seconds=1.25, cpu_seconds=0.75, bytes_written=1000 + i, usd=usd, method="wall: monotonic")
    return LedgerRecord(
        ts=ts,
        run_id=run,
        asset=asset,
        partition=f"2026-01-{i % 28 + 1:02d}",
        cache=cache,
        reason="input raw changed",
        fingerprint=fp,
        tags=tags if tags is not None else {},
        cost=cost,
    )


def test_empty_ledger_reads_as_nothing(tmp_path):
    ledger = Ledger(tmp_path / "missing")
    assert ledger.read() == []
    assert ledger.last_cost_by_fingerprint("features") == {}
    assert ledger.history_usd_per_partition("features") == []
    assert ledger.query("select count(*) as n from ledger") == [{"n": 0}]


def test_round_trip(tmp_path):
    ledger = Ledger(tmp_path)
    tags = {"skipwise/model": "gbm", "skipwise/experiment": "exp7", "team": "risk", "x": "y"}
    original = _record(3, tags=tags)
    path = ledger.append([original, _record(4, cache="hit", usd=None)])
    assert path.parent.name == "2026-03-01" and path.name.startswith("run-1-")

    line = json.loads(path.read_text().splitlines()[0])
    assert (line["model"], line["experiment"], line["team"]) == ("gbm", "exp7", "risk")
    assert line["tags"] == tags and line["cpu_seconds"] == 0.75  # cost fields at top level

    rows = ledger.read()
    assert len(rows) == 2
    assert LedgerRecord.from_json_dict(rows[0]) == original
    assert rows[1]["model"] is None and rows[1]["tags"] == {}
    assert rows[1]["usd"] is None  # unmeasured stays null, not 0


def test_since_filters_by_day(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append([_record(ts="2026-02-27T23:59:59Z")])
    ledger.append([_record(ts="2026-03-01T00:00:01Z"), _record(ts="2026-03-02T08:00:00Z")])
    assert len(ledger.read()) == 3
    assert [r["ts"][:10] for r in ledger.read(since="2026-03-01")] == ["2026-03-01", "2026-03-02"]
    assert len(ledger.read(since="2026-03-02")) == 1
    assert ledger.spent_usd("2026-03-01") == pytest.approx(0.5)


def test_last_cost_by_fingerprint_and_history(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append(
        [_record(fp="a", usd=1.0, ts="2026-03-01T00:00:00Z"), _record(fp="b", usd=2.0, ts="2026-03-01T00:00:01Z")]
    )
    ledger.append(
        [
            _record(fp="a", usd=3.0, ts="2026-03-02T00:00:00Z"),
            _record(fp="a", cache="hit", usd=0.0, ts="2026-03-03T00:00:00Z"),
            _record(fp="c", usd=None, ts="2026-03-03T00:00:01Z"),
            _record(fp="z", asset="other", usd=9.0, ts="2026-03-03T00:00:02Z"),
        ]
    )
    assert ledger.last_cost_by_fingerprint("features") == {"a": 3.0, "b": 2.0}
    assert ledger.history_usd_per_partition("features") == [1.0, 2.0, 3.0]
    assert ledger.history_usd_per_partition("features", last=2) == [2.0, 3.0]


def _writer(root: str, worker: int) -> None:
    ledger = Ledger(root)
    for batch in range(10):
        ledger.append([_record(worker * 100 + batch * 5 + i, run=f"run/{worker}") for i in range(5)])


def _digests(root: Path) -> dict[Path, tuple[int, int, str]]:
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in root.rglob("*")
        if p.is_file()
    }


def test_concurrent_writers_and_immutable_files(tmp_path):
    ledger = Ledger(tmp_path)
    first = ledger.append([_record(i, run="before") for i in range(3)])
    before = _digests(tmp_path)

    # spawn: fresh interpreters, as separate hosts would be (and no locks inherited by fork)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0

    files = sorted(tmp_path.rglob("*"))
    data_files = [p for p in files if p.is_file()]
    assert all(p.suffix == ".jsonl" and not p.name.startswith(".") for p in data_files), (
        "no temporary files left behind"
    )
    assert len(data_files) == 1 + 4 * 10  # one new file per append
    for p in data_files:  # every line is whole JSON
        for line in p.read_text().splitlines():
            json.loads(line)

    rows = ledger.read()
    assert len(rows) == 3 + 200
    per_run = {r["run_id"]: 0 for r in rows}
    for r in rows:
        per_run[r["run_id"]] += 1
    assert per_run == {"before": 3, "run/0": 50, "run/1": 50, "run/2": 50, "run/3": 50}
    assert len({(r["run_id"], r["bytes_written"]) for r in rows}) == 203  # none lost or doubled

    after = _digests(tmp_path)
    assert {p: after[p] for p in before} == before, "an existing ledger file was rewritten"
    assert first in after


def test_append_refuses_nothing(tmp_path):
    with pytest.raises(ValueError):
        Ledger(tmp_path).append([])
