"""The process's account (run records): deltas that add up, phases, memory held, the ledger and
the report that carry them, and the avoided-dollars baseline. Checked by hand."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from skipwise.cli.cost import add_cost_parser
from skipwise.core.cost import CostVector, LedgerRecord
from skipwise.core.pricing import load_prices
from skipwise.engine.metering import Meter
from skipwise.engine.processmeter import ProcessMeter, process_meter
from skipwise.engine.usage import cpu_seconds
from skipwise.reporting.tables import OVERHEAD, cost_table, count_avoided, overhead_summary, totals
from skipwise.store.ledger import Ledger

GIB = 2**30
REPO = Path(__file__).resolve().parents[2]


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_run_records_are_deltas_that_add_up_to_the_process_cpu():
    pm = ProcessMeter()  # a fresh account: its first record covers this process since it started
    with pm.phase("plan"):
        _spin(0.02)
    with Meter() as m:
        _spin(0.05)
    pm.add_partition(m.result())
    first = pm.take()
    _spin(0.02)
    second = pm.take()
    now = cpu_seconds()

    assert first.process_cpu_seconds + second.process_cpu_seconds == pytest.approx(now, abs=2e-3)
    assert first.partition_cpu_seconds == pytest.approx(m.result().cpu_seconds)
    assert first.partitions_computed == 1 and second.partitions_computed == 0
    assert first.cpu_seconds == pytest.approx(first.process_cpu_seconds - first.partition_cpu_seconds)
    assert first.overhead_plan_cpu_seconds >= 0.015 and second.overhead_plan_cpu_seconds == 0
    assert first.overhead_start_cpu_seconds > 0 and second.overhead_start_cpu_seconds == 0  # once
    assert second.overhead_other_cpu_seconds >= 0.015
    for c in (first, second):
        phases = (
            c.overhead_start_cpu_seconds
            + c.overhead_plan_cpu_seconds
            + c.overhead_load_cpu_seconds
            + c.overhead_ledger_cpu_seconds
            + c.overhead_other_cpu_seconds
        )
        assert phases == pytest.approx(c.cpu_seconds, abs=1e-6)
        assert c.wall_seconds == pytest.approx(c.process_wall_seconds - c.partition_wall_seconds)
    assert first.process_wall_seconds >= first.process_cpu_seconds * 0.5  # wall since the process started
    assert "getrusage" in first.method and "since it started" in first.method
    assert "since its previous run record" in second.method


def test_phases_nest_once_and_are_named():
    pm = ProcessMeter()
    pm.take()
    with pm.phase("ledger"):
        with pm.phase("plan"):  # nested: counted once, in the outer phase
            _spin(0.02)
    c = pm.take()
    assert c.overhead_ledger_cpu_seconds >= 0.015 and c.overhead_plan_cpu_seconds == 0
    with pytest.raises(ValueError, match="unknown phase"):
        with pm.phase("lunch"):
            pass


def test_memory_held_by_the_process_less_what_partitions_were_charged():
    pm = ProcessMeter()
    pm.take()
    pm.add_partition(CostVector(cpu_seconds=0.0, wall_seconds=2.0, peak_rss_bytes=10 * 2**20))
    c = pm.take()
    assert c.process_peak_rss_bytes >= c.peak_rss_bytes > 10 * 2**20  # this stretch's peak, the process's
    assert c.rss_byte_seconds == pytest.approx(max(c.peak_rss_bytes * c.process_wall_seconds - 2.0 * 10 * 2**20, 0))
    prices = load_prices({}, "t")
    # Pricing charges the memory held when it is given, not peak x wall.
    held = prices.price(
        CostVector(wall_seconds=3600.0, peak_rss_bytes=8 * GIB, rss_byte_seconds=GIB * 3600.0), "aws-m7i"
    )
    assert held.usd_compute == pytest.approx(0.0039375)


def test_a_run_record_charges_the_memory_of_its_own_stretch_not_an_earlier_peak():
    """A long-lived process (a worker, a server) that once held 300 MB and gave it back is not
    charged 300 MB x wall in every later run record."""
    pm = ProcessMeter()
    pm.take()
    big = bytearray(300 * 2**20)
    big[:: 2**12] = b"x" * len(big[:: 2**12])  # touch every page: resident
    del big
    first, second = pm.take(), pm.take()
    assert first.peak_rss_bytes >= 300 * 2**20
    assert second.process_peak_rss_bytes >= 300 * 2**20  # the process's peak is still said
    if "since its previous run record" in second.method:  # VmHWM could be reset (Linux)
        assert second.peak_rss_bytes < first.peak_rss_bytes - 200 * 2**20
    else:  # never reset: since the process started, an upper bound
        assert second.peak_rss_bytes == second.process_peak_rss_bytes
    assert second.rss_byte_seconds == pytest.approx(second.peak_rss_bytes * second.process_wall_seconds)


def test_a_forked_child_counts_from_its_own_start():
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    parent = process_meter()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            child = process_meter()
            os.write(w, json.dumps([child is not parent, child.pid == os.getpid()]).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert json.loads(os.read(r, 100)) == [True, True]
    os.close(r)


def test_at_exit_records_the_last_stretch_and_freezes_the_gc(tmp_path):
    out = tmp_path / "exit.json"
    code = f"""
import atexit, gc, json
from skipwise.engine.processmeter import process_meter
pm = process_meter()
atexit.register(lambda: open({str(out)!r}, "a").write(json.dumps({{"frozen": gc.get_freeze_count()}}) + "\\n"))
pm.take()
pm.at_exit(lambda: open({str(out)!r}, "a").write(json.dumps({{"tail_cpu": pm.take().process_cpu_seconds}}) + "\\n"),
           freeze_gc=True)
x = sum(range(3_000_000))
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    tail, frozen = [json.loads(line) for line in out.read_text().splitlines()]
    assert tail["tail_cpu"] > 0.01  # the sum after the last record is in the exit record
    assert frozen["frozen"] > 1000  # the interpreter's teardown does not traverse the heap


def _run_record(ts, run, cpu, usd, **extra) -> LedgerRecord:
    return LedgerRecord(
        ts,
        run,
        "A",
        None,
        "run",
        "process overhead",
        "",
        {"team": "t"},
        CostVector(
            cpu_seconds=cpu,
            usd=usd,
            process_cpu_seconds=cpu + 1.0,
            partition_cpu_seconds=1.0,
            overhead_start_cpu_seconds=cpu,
            **extra,
        ),
    )


def test_run_records_in_the_ledger_next_to_old_files(tmp_path):
    ledger = Ledger(tmp_path)
    day = tmp_path / "2026-03-01"
    day.mkdir()
    # A file written before run records existed: no new columns at all.
    old = {
        "ts": "2026-03-01T09:00:00Z",
        "run_id": "old",
        "asset": "A",
        "partition": "p1",
        "cache": "miss",
        "reason": "missing",
        "fingerprint": "f",
        "model": None,
        "experiment": None,
        "team": None,
        "tags": {},
        "wall_seconds": 1.0,
        "cpu_seconds": 0.5,
        "peak_rss_bytes": 200_000_000,
        "usd": 0.25,
        "method": "cpu: process+children times",
    }
    (day / "old-1.jsonl").write_text(json.dumps(old) + "\n")
    rec = _run_record("2026-03-01T10:00:00Z", "new", 2.0, 0.5, rss_byte_seconds=1e9, process_peak_rss_bytes=3 * 10**8)
    ledger.append([rec])
    rows = ledger.read()
    assert [r["cache"] for r in rows] == ["miss", "run"]
    assert rows[0]["process_peak_rss_bytes"] is None and rows[0]["overhead_start_cpu_seconds"] is None
    assert LedgerRecord.from_json_dict(rows[1]) == rec
    assert ledger.history_usd_per_partition("A") == [0.25]  # a run record is not a partition's cost
    assert ledger.spent_usd("2026-03-01") == pytest.approx(0.75)  # but it was spent
    with pytest.raises(ValueError, match="'hit', 'miss', 'restore', 'verify' or 'run'"):
        LedgerRecord("t", "r", "A", None, "overhead", "", "")


def _row(ts, run, asset, partition, cache, fp="fp", **cost):
    return LedgerRecord(ts, run, asset, partition, cache, "r", fp, {}, CostVector(**cost)).to_json_dict()


ROWS = [
    _row("2026-03-01T10:00:00Z", "r1", "A", "p1", "miss", cpu_seconds=3600.0, usd=1.0),
    _run_record("2026-03-01T10:00:05Z", "r1", 1800.0, 0.5).to_json_dict(),
    _row("2026-03-01T11:00:00Z", "r2", "A", "p1", "hit", usd_avoided=1.0),
    _row("2026-03-01T12:00:00Z", "r3", "A", "p1", "hit", usd_avoided=1.0),  # same request, same day
    _row("2026-03-01T12:00:01Z", "r3", "A", "p1", "hit", fp="other", usd_avoided=2.0),  # another version
    _row("2026-03-02T08:00:00Z", "r4", "A", "p1", "hit", usd_avoided=1.0),  # the next day
    _run_record("2026-03-02T08:00:01Z", "r4", 36.0, 0.01).to_json_dict(),
]


def test_overhead_has_its_own_row_by_asset_and_a_column_elsewhere():
    by_asset = {r["asset"]: r for r in cost_table(ROWS, "asset")}
    assert set(by_asset) == {"A", OVERHEAD}
    a, o = by_asset["A"], by_asset[OVERHEAD]
    assert (a["computed"], a["skipped"], a["usd"], a["cpu_hours"]) == (1, 4, 1.0, 1.0)
    assert (o["computed"], o["skipped"], o["hit_rate"]) == (None, None, None)
    assert o["usd"] == pytest.approx(0.51) and o["cpu_hours"] == pytest.approx(0.51) and o["runs"] == 2
    assert totals(cost_table(ROWS, "asset"))["usd"] == pytest.approx(1.51)
    assert totals(cost_table(ROWS, "asset"))["overhead_usd"] == pytest.approx(0.51)
    runs = {r["run"]: r for r in cost_table(ROWS, "run")}
    assert runs["r1"]["usd"] == 1.5 and runs["r1"]["overhead_usd"] == 0.5 and runs["r1"]["computed"] == 1
    assert runs["r2"]["overhead_usd"] is None
    assert runs["r4"]["usd"] == pytest.approx(0.01) and runs["r4"]["skipped"] == 1
    assert totals(cost_table(ROWS, "day"))["overhead_usd"] == pytest.approx(0.51)
    assert {(p["asset"], p["partition"]) for p in cost_table(ROWS, "partition")} == {("A", "p1"), (OVERHEAD, None)}
    s = overhead_summary(ROWS)
    assert s["records"] == 2 and s["cpu_seconds"] == 1836.0 and s["overhead_start_cpu_seconds"] == 1836.0
    assert s["process_cpu_seconds"] == 1838.0 and s["partition_cpu_seconds"] == 2.0


def test_avoided_once_per_partition_fingerprint_and_day_or_raw():
    daily = {r["asset"]: r["usd_avoided"] for r in cost_table(ROWS, "asset")}
    raw = {r["asset"]: r["usd_avoided"] for r in cost_table(ROWS, "asset", avoided="raw")}
    assert daily["A"] == 1.0 + 2.0 + 1.0  # day 1: p1@fp once, p1@other once; day 2: p1@fp again
    assert raw["A"] == 5.0
    assert [r["usd_avoided"] for r in count_avoided(ROWS) if r["cache"] == "hit"] == [1.0, 0.0, 2.0, 1.0]
    assert ROWS[3]["usd_avoided"] == 1.0  # the input is left as it was
    by_run = {r["run"]: r["usd_avoided"] for r in cost_table(ROWS, "run")}
    assert by_run == {"r1": None, "r2": 1.0, "r3": 2.0, "r4": 1.0}  # the first request of the day gets it
    with pytest.raises(ValueError, match="baseline"):
        count_avoided(ROWS, "weekly")


def _cli(*argv):
    parser = argparse.ArgumentParser(prog="skipwise")
    add_cost_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cost", *argv])
    return args.func(args)


def test_cli_says_the_overhead_and_the_baseline(tmp_path, capsys):
    ledger_dir = tmp_path / "ledger"
    Ledger(ledger_dir).append([LedgerRecord.from_json_dict(r) for r in ROWS])
    assert _cli("--ledger", str(ledger_dir)) == 0
    out = capsys.readouterr().out
    assert "(overhead)" in out and "$1.5100 spent ($0.5100 of it process overhead)" in out
    assert "$4.0000 avoided by 4 cache hit(s)" in out
    assert (
        "overhead: 1836.00 CPU-s" in out and "start (interpreter, imports, Dagster) before the engine 1836.00 s" in out
    )
    assert (
        "avoided (daily): each hit's avoided cost counted once per asset, partition and fingerprint per UTC day" in out
    )
    assert "--avoided raw counts every request" in out
    assert _cli("--ledger", str(ledger_dir), "--avoided", "raw") == 0
    out = capsys.readouterr().out
    assert "$5.0000 avoided by 4 cache hit(s)" in out and "avoided (raw)" in out
    assert _cli("--ledger", str(ledger_dir), "--by", "run", "--json") == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)  # still a list of rows
    assert {r["run"]: r["overhead_usd"] for r in rows}["r1"] == 0.5
    assert "avoided (daily)" in captured.err
