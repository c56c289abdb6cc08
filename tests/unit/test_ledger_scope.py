"""The ledger questions every materialize asks read only the files that can hold their answer (a
run's own files, today's when a per-day budget is set, the newest for an asset's history, those
written since a command started) and answer exactly what a read of the whole ledger answers."""

from __future__ import annotations

import hashlib
import json
import os
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from skipwise.core.budget import Budgets, check_budgets, project_run_cost
from skipwise.core.cost import CostVector, IOCounter, LedgerRecord, utc_now_iso
from skipwise.core.pricing import load_config
from skipwise.engine.accounting import Accounts
from skipwise.store.bucket import Entry
from skipwise.store.ledger import Ledger, lines_of, run_file
from skipwise.store.ledgerscope import MTIME_SLACK_NS, epoch_ns, newest_first, ts_bound
from skipwise.store.objectledger import ObjectLedger

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
# Ids that are prefixes of each other, and ids made safe to the same file name ("a/b" and "a_b";
# two ids cut at 64 characters).
RUNS = ("r1", "r1-retry", "r10", "r1-" + "ab" * 16, "a/b", "a_b", "x" * 70, "x" * 70 + "y")


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(ts: str, run: str, asset: str = "features", cache: str = "miss", usd: float | None = 0.5) -> LedgerRecord:
    return LedgerRecord(
        ts=ts,
        run_id=run,
        asset=asset,
        partition=None if cache == "run" else "2026-01-01",
        cache=cache,
        reason="test",
        fingerprint="fp",
        tags={},
        cost=CostVector(usd=usd),
    )


def _batch(rng: random.Random, run: str, at: datetime) -> list[LedgerRecord]:
    out = []
    for _ in range(rng.randrange(1, 5)):
        # Whole hours: many records share a time, in different files, with different dollars.
        ts = _iso(at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=rng.randrange(3)))
        asset = rng.choice(("features", "features", "other"))
        cache = rng.choice(("miss", "miss", "hit", "run"))
        usd = rng.choice((None, round(rng.uniform(0, 1), 3)))
        out.append(_record(ts, run, asset, cache, usd))
    return out


def _stamp(ledger_root: Path) -> None:
    """Each file's mtime set to the time of its latest record, as if written then."""
    for f in ledger_root.rglob("*.jsonl"):
        latest = max(json.loads(line)["ts"] for line in f.read_text().splitlines())
        ns = epoch_ns(latest) + random.Random(f.name).randrange(3 * 10**9)
        os.utime(f, ns=(ns, ns))


def _build(root: Path, stamped: bool) -> Ledger:
    rng = random.Random(5)
    ledger = Ledger(root)
    for day in range(12):
        for run in RUNS:
            at = T0 + timedelta(days=day, hours=rng.randrange(20))
            with ledger.journal(run) as journal:
                for _ in range(rng.randrange(1, 4)):
                    journal.write(_batch(rng, run, at))
                    at += timedelta(hours=1)
            ledger.append([_record(_iso(at), run, cache="run", usd=0.01)])
        # A batch across midnight: its file is in the later day's folder, with a record of the day before.
        midnight = T0 + timedelta(days=day + 1)
        ledger.append(
            [_record(_iso(midnight - timedelta(seconds=1)), "r1", usd=7.0), _record(_iso(midnight), "r1", usd=8.0)]
        )
    if stamped:
        _stamp(root)
    return Ledger(root)


# The definitions of the answers: what each question gave when it read the whole ledger.


def _full_history(ledger: Ledger, asset: str, last: int) -> list[float]:
    found = [
        (r["ts"] or "", float(r["usd"]))
        for r in ledger.rows()
        if r["asset"] == asset and r["cache"] == "miss" and r["usd"] is not None
    ]
    return [usd for _, usd in sorted(found, key=lambda t: t[0])[-last:]] if last > 0 else []


def _full_spent_by_asset(ledger: Ledger, run_id: str, since: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in ledger.rows(since):
        if r["run_id"] == run_id and r["usd"] is not None:
            out[r["asset"]] = out.get(r["asset"], 0.0) + r["usd"]
    return out


def _since(rows: list[dict[str, Any]], started: str) -> list[dict[str, Any]]:
    return sorted((r for r in rows if (r["ts"] or "") >= started), key=json.dumps)


@pytest.fixture(scope="module", params=[False, True], ids=["mtimes now", "mtimes of the records"])
def built(request, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ledger")
    _build(root, stamped=request.param)
    return root


@pytest.mark.parametrize("last", [0, 1, 5, 20, 60, 10_000])
@pytest.mark.parametrize("asset", ["features", "other", "absent"])
def test_history_is_the_latest_of_a_full_read(built, asset, last):
    assert Ledger(built).history_usd_per_partition(asset, last) == _full_history(Ledger(built), asset, last)


@pytest.mark.parametrize("run_id", [*RUNS, "r", "absent"])
@pytest.mark.parametrize("since", [None, "2026-03-06"])
def test_spent_by_asset_is_a_full_read_filtered_on_the_run(built, run_id, since):
    got = Ledger(built).spent_by_asset(run_id, since)
    assert got == pytest.approx(_full_spent_by_asset(Ledger(built), run_id, since))
    assert got or run_id in ("r", "absent")


@pytest.mark.parametrize("started", ["2026-03-01T00:00:00.000000Z", "2026-03-05T13:00:00.000000Z", "2026-03-12"])
def test_what_was_written_since_is_a_full_read_of_the_days_since(built, started):
    got = Ledger(built).rows_written_since(started)
    assert _since(got, started) == _since(Ledger(built).rows(since=started[:10]), started)


def test_a_run_file_is_named_after_that_run_alone(tmp_path):
    ledger = Ledger(tmp_path)
    names = {run: ledger.append([_record("2026-03-01T10:00:00Z", run)]).name for run in RUNS}
    assert run_file("r1").fullmatch(names["r1"])
    assert not any(run_file("r1").fullmatch(names[r]) for r in ("r1-retry", "r10", "r1-" + "ab" * 16))
    assert run_file("a/b").fullmatch(names["a_b"])  # the same safe name: records are filtered on run_id


class _Bucket:
    """Objects in memory, as `BucketPrefix` lists, puts and gets them."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, rel: str, data: bytes) -> str:
        self.objects[rel] = data
        return hashlib.md5(data).hexdigest()

    def get(self, rel: str) -> tuple[bytes, str]:
        return self.objects[rel], hashlib.md5(self.objects[rel]).hexdigest()

    def list(self, rel_prefix: str) -> dict[str, Entry]:
        return {
            k: Entry(len(v), hashlib.md5(v).hexdigest()) for k, v in self.objects.items() if k.startswith(rel_prefix)
        }

    def url_of(self, rel: str) -> str:
        return f"s3://bucket/{rel}"


def test_the_object_ledger_answers_as_a_full_read(built, tmp_path):
    bucket = _Bucket()
    for f in built.rglob("*.jsonl"):
        bucket.put(f"ledger/{f.parent.name}/{f.name}", f.read_bytes())
    objects = ObjectLedger(bucket, tmp_path / "copies")  # type: ignore[arg-type]
    assert objects.files() == [f"{p.parent.name}/{p.name}" for p in Ledger(built).files()]
    for asset in ("features", "other"):
        assert objects.history_usd_per_partition(asset, 7) == _full_history(Ledger(built), asset, 7)
    assert objects.spent_by_asset("r1") == pytest.approx(_full_spent_by_asset(Ledger(built), "r1", None))
    started = "2026-03-10T08:00:00.000000Z"  # no times in its listing: every file of the days since is read
    assert _since(objects.rows_written_since(started), started) == _since(Ledger(built).rows(), started)


# --- what each question reads -------------------------------------------------------------------


def _spy(ledger: Ledger) -> list[str]:
    """The files `ledger` parses from now on, by name."""
    parsed: list[str] = []
    parse = ledger._parse

    def counting(name: str, raw: bytes, *only: Any) -> list[dict[str, Any]]:
        parsed.append(Path(name).name)
        return parse(name, raw, *only)

    ledger._parse = counting  # type: ignore[method-assign]
    return parsed


def _at(path: Path, t: datetime) -> Path:
    ns = epoch_ns(_iso(t))
    os.utime(path, ns=(ns, ns))
    return path


@pytest.fixture()
def history(tmp_path) -> tuple[Path, datetime, dict[str, Path]]:
    """200 old files over 20 days before today, then today: other runs' files earlier today, and
    the current run's journal and run record (its 25 computed partitions of ``features``)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ledger = Ledger(tmp_path)
    for n in range(200):
        t = now - timedelta(days=1 + n // 10, minutes=n)
        _at(ledger.append([_record(_iso(t), f"old{n}", usd=1.0)]), t)
    for n in range(30):
        t = now - timedelta(hours=1, minutes=n)
        _at(ledger.append([_record(_iso(t), f"today{n}", usd=2.0)]), t)
    start = now - timedelta(minutes=5)
    with ledger.journal("current") as journal:
        journal.write([_record(_iso(start + timedelta(seconds=i)), "current", usd=3.0) for i in range(25)])
    assert journal.path is not None
    run = ledger.append([_record(_iso(start + timedelta(minutes=1)), "current", "features", "run", 0.1)])
    return tmp_path, start, {"journal": journal.path, "run": run}


def test_an_assets_history_reads_the_newest_files_only(history):
    root, _, current = history
    ledger = Ledger(root)
    parsed = _spy(ledger)
    assert ledger.history_usd_per_partition("features") == [3.0] * 20
    # The current run's files held the 20 latest, and every other file is older than them.
    assert current["journal"].name in parsed and set(parsed) <= {p.name for p in current.values()}


def test_a_runs_spend_reads_that_runs_files_only(history):
    root, _, current = history
    ledger = Ledger(root)
    parsed = _spy(ledger)
    assert ledger.spent_by_asset("current") == pytest.approx({"features": 75.1})
    assert sorted(parsed) == sorted(p.name for p in current.values())


def test_what_a_command_wrote_is_read_from_the_files_written_since_it_started(history):
    root, start, current = history
    ledger = Ledger(root)
    parsed = _spy(ledger)
    assert len(ledger.rows_written_since(_iso(start))) == 26
    assert sorted(parsed) == sorted(p.name for p in current.values())


def test_the_days_spend_reads_that_days_files_only(history):
    root, _, _ = history
    ledger = Ledger(root)
    parsed = _spy(ledger)
    ledger.spent_usd(utc_now_iso()[:10])
    assert sorted(parsed) == _today(root)


def _today(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob(f"{utc_now_iso()[:10]}/*.jsonl"))


def test_a_file_written_a_little_before_the_start_is_read_for_coarse_clocks(history):
    root, start, current = history
    _at(current["run"], start - timedelta(seconds=2))
    assert len(Ledger(root).rows_written_since(_iso(start))) == 26
    _at(current["run"], start - timedelta(seconds=MTIME_SLACK_NS // 10**9 + 2))
    assert len(Ledger(root).rows_written_since(_iso(start))) == 25


def _accounts(root: Path, budgets: Budgets) -> tuple[Accounts, list[str], list[str]]:
    import dataclasses

    config = dataclasses.replace(load_config(root / "absent.toml"), budgets=budgets)
    ledger = Ledger(root)
    asked: list[str] = []
    spent_usd = ledger.spent_usd

    def spent(day: str) -> float:
        asked.append(day)
        return spent_usd(day)

    ledger.spent_usd = spent  # type: ignore[method-assign]
    return Accounts(ledger, config, IOCounter()), asked, _spy(ledger)


def test_budgets_without_a_per_day_budget_never_read_the_days_spend(history):
    root, _, current = history
    accounts, asked, parsed = _accounts(root, Budgets(per_run_usd=1000.0))
    accounts.check_budgets({"features": 8}, {}, "current")
    assert asked == [] and sorted(parsed) == sorted(p.name for p in current.values())

    accounts, asked, parsed = _accounts(root, Budgets(per_run_usd=1000.0, per_day_usd=10_000.0))
    accounts.check_budgets({"features": 8}, {}, "current")
    assert asked == [utc_now_iso()[:10]] and set(parsed) == {*_today(root), *(p.name for p in current.values())}


def test_what_was_spent_today_decides_nothing_without_a_per_day_budget():
    p = project_run_cost({"a": [2.0]}, {"a": 3}, 0.1)
    for budgets in (Budgets(per_run_usd=5.0), Budgets(per_run_usd=7.0), Budgets(assets={"a": 1.0})):
        assert check_budgets(p, budgets, 0.0, False) == check_budgets(p, budgets, 1e9, False)


def test_a_bound_is_above_every_time_a_file_can_hold():
    written = epoch_ns("2026-03-01T10:00:00.999999Z")
    bound = ts_bound("2026-03-01", written)
    assert "2026-03-01T10:00:00.999999Z" < bound and "2026-03-01T10:00:00Z" < bound
    assert ts_bound("2026-03-01", None) == "2026-03-02" > "2026-03-01T23:59:59.999999Z"
    assert ts_bound("2026-03-01", epoch_ns("2026-03-05T00:00:00Z")) == "2026-03-02"  # copied later: the day bounds


def test_a_file_dated_before_its_day_does_not_hide_the_older_days():
    files = {"2026-03-01": ["old"], "2026-03-02": ["unknown", "touched"]}
    mtimes = {"old": None, "unknown": None, "touched": epoch_ns("2026-02-01T00:00:00Z")}
    walk = list(newest_first(sorted(files), files.__getitem__, mtimes.__getitem__))
    assert [(where, f) for where, f, _ in walk] == [
        (("2026-03-02", 0), "unknown"),
        (("2026-03-02", 1), "touched"),
        (("2026-03-01", 0), "old"),
    ]
    # After the first: what is left can hold records up to the end of 2026-03-01, whatever the odd mtime says.
    assert [bound for _, _, bound in walk] == ["2026-03-02", "2026-03-02", ""]


def test_a_processes_projects_read_each_history_file_once(history):
    """The history every step asks for (budgets) is read once per process: another Ledger of the
    same folder parses nothing while the files stay as they are, gives the same answer and the
    same warnings, and reads a file again once it has grown."""
    root, start, current = history
    damaged = Ledger(root).append([_record(_iso(start + timedelta(minutes=2)), "other", usd=4.0)])
    with damaged.open("ab") as f:
        f.write(b'{"cache": "miss", "torn\n')
    first = Ledger(root)
    expected = first.history_usd_per_partition("features")
    assert expected[-1] == 4.0 and len(first.warnings) == 1 and damaged.name in first.warnings[0]

    again = Ledger(root)
    parsed = _spy(again)
    assert again.history_usd_per_partition("features") == expected and parsed == []
    assert again.warnings == first.warnings

    with current["journal"].open("ab") as f:  # the current run's journal grows
        f.write(lines_of([_record(_iso(start + timedelta(minutes=3)), "current", usd=5.0)]))
    grown = Ledger(root)
    parsed = _spy(grown)
    assert grown.history_usd_per_partition("features")[-1] == 5.0 and parsed == [current["journal"].name]


def test_files_of_hits_only_are_walked_past_unparsed_and_a_torn_one_is_still_said(history):
    """The hits of a large level (a file of hits alone, about a megabyte at 700 partitions) are most
    of what an asset's history walks past: such a file gives no line to parse, the answer is the
    one a full read gives, and a hits file torn at its end (a killed writer) is still warned about."""
    root, start, _ = history
    ledger = Ledger(root)
    hits = []
    for n in range(5):
        t = start + timedelta(minutes=2, seconds=n)
        hits.append(ledger.append([_record(_iso(t), f"hits{n}", cache="hit", usd=None) for _ in range(50)]))
    with hits[2].open("ab") as f:
        f.write(b'{"cache": "hit", "to')
    fresh = Ledger(root)
    parsed = _spy(fresh)
    assert fresh.history_usd_per_partition("features") == _full_history(Ledger(root), "features", 20)
    assert [h.name for h in hits if h.name in parsed] == [hits[2].name]
    assert len(fresh.warnings) == 1 and hits[2].name in fresh.warnings[0]
