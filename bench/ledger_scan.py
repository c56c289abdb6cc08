"""What the ledger questions every materialize asks cost on a long history: a ledger of about
50,000 records over 30 days (one journal and one run record per step, each file's mtime the time
of its last record), and each question asked by a fresh `Ledger`, as a new process would.

    .venv/bin/python -m bench.ledger_scan --root /tmp/ledger-bench           # builds it once, then times
    PYTHONPATH=<other checkout>/pipelines:. .venv/bin/python -m bench.ledger_scan --root /tmp/ledger-bench

The second form times another version of the library on the same files; `--json` prints the
answers too, so two versions can be checked to agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from skipwise.core.budget import Budgets
from skipwise.core.cost import CostVector, IOCounter, LedgerRecord
from skipwise.core.pricing import load_config
from skipwise.engine.accounting import Accounts
from skipwise.store.ledger import Ledger, recent_days

ASSETS = ("flight_features", "weather_features")
DAYS, RUNS_PER_DAY, PARTITIONS_PER_STEP = 30, 40, 20


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _step(rng: random.Random, run_id: str, asset: str, at: datetime) -> list[LedgerRecord]:
    out = []
    for i in range(PARTITIONS_PER_STEP):
        miss = rng.random() < 0.2
        usd = rng.uniform(0.001, 0.01)
        out.append(
            LedgerRecord(
                ts=_iso(at + timedelta(milliseconds=50 * i)),
                run_id=run_id,
                asset=asset,
                partition=f"2013-01-{i % 28 + 1:02d}",
                cache="miss" if miss else "hit",
                reason="input raw changed" if miss else "fingerprint unchanged",
                fingerprint=f"{asset}-{i}-{rng.randrange(50)}",
                tags={},
                cost=CostVector(cpu_seconds=usd * 100, usd=usd) if miss else CostVector(usd=0.0, usd_avoided=usd),
            )
        )
    return out


def _run_record(run_id: str, asset: str, at: datetime) -> LedgerRecord:
    return LedgerRecord(
        ts=_iso(at),
        run_id=run_id,
        asset=asset,
        partition=None,
        cache="run",
        reason="process overhead",
        fingerprint="",
        tags={},
        cost=CostVector(cpu_seconds=0.4, usd=0.0002),
    )


def _dated(path: Path, at: datetime) -> None:
    ns = int(at.timestamp() * 1e9)
    os.utime(path, ns=(ns, ns))  # as if written then: a file's mtime is the time of its last write


def build(root: Path, now: datetime, seed: int = 7) -> tuple[str, datetime]:
    """Write the ledger under `root`, its last run ending before `now`; returns that run's id and start."""
    rng = random.Random(seed)
    ledger = Ledger(root)
    run_id, started = "", now
    for day in range(DAYS - 1, -1, -1):
        start = now - timedelta(days=day, hours=10)
        for r in range(RUNS_PER_DAY):
            at = started = start + timedelta(minutes=15 * r)
            run_id = f"{rng.getrandbits(128):032x}"
            for asset in ASSETS:
                records = _step(rng, run_id, asset, at)
                with ledger.journal(run_id) as journal:
                    journal.write(records)
                at += timedelta(seconds=5)
                assert journal.path is not None
                _dated(journal.path, at)
                _dated(ledger.append([_run_record(run_id, asset, at)]), at)
    return run_id, started


def _timed(ask: Callable[[Ledger], Any], root: Path, repeats: int) -> tuple[float, Any]:
    """The median seconds of `ask` on a fresh Ledger (nothing parsed yet), and its answer."""
    seconds, answer = [], None
    for _ in range(repeats):
        ledger = Ledger(root)
        t0 = time.perf_counter()
        answer = ask(ledger)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), answer


def _written_since(ledger: Ledger, started: str) -> list[Any]:
    # What `skipwise materialize` reads to total its own records (the newer library's question if it has it).
    if hasattr(ledger, "rows_written_since"):
        rows = ledger.rows_written_since(started)
    else:
        rows = ledger.rows(since=started[:10])
    mine = [r for r in rows if (r["ts"] or "") >= started]
    return [len(mine), round(sum(r["usd"] or 0.0 for r in mine), 9)]


def questions(run_id: str, started: str) -> dict[str, Callable[[Ledger], Any]]:
    """Each question, as a function of a fresh ledger."""
    config = load_config(Path("/nonexistent/skipwise.toml"))  # the defaults: per_run_usd only
    per_day = dataclasses.replace(config, budgets=Budgets(per_run_usd=50.0, per_day_usd=1000.0))

    def budgets(cfg: Any) -> Callable[[Ledger], Any]:
        return lambda ledger: Accounts(ledger, cfg, IOCounter()).check_budgets({ASSETS[0]: 8}, {}, run_id)

    return {
        "check_budgets (per_run_usd)": budgets(config),
        "check_budgets (+ per_day_usd)": budgets(per_day),
        "spent_usd(today)": lambda ledger: round(ledger.spent_usd(started[:10]), 9),
        "spent_by_asset(run)": lambda ledger: ledger.spent_by_asset(run_id, since=recent_days(7)),
        "history_usd_per_partition": lambda ledger: ledger.history_usd_per_partition(ASSETS[0]),
        "records written since start": lambda ledger: _written_since(ledger, started),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the ledger (built there when absent)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print seconds and answers as JSON")
    args = parser.parse_args()
    meta = args.root / "bench.json"
    if not meta.exists():
        now = datetime.now(timezone.utc) - timedelta(minutes=1)
        run_id, started = build(args.root / "ledger", now)
        meta.write_text(json.dumps({"run_id": run_id, "started": _iso(started - timedelta(seconds=1))}))
    info = json.loads(meta.read_text())
    files = sum(1 for _ in (args.root / "ledger").rglob("*.jsonl"))
    out = {}
    for name, ask in questions(info["run_id"], info["started"]).items():
        seconds, answer = _timed(ask, args.root / "ledger", args.repeats)
        out[name] = {"seconds": seconds, "answer": answer}
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return
    print(f"{files} ledger files; median of {args.repeats}, each on a fresh Ledger")
    for name, row in out.items():
        print(f"  {name:32s} {row['seconds'] * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
