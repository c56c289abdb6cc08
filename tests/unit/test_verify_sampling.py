"""The pure parts of `skipwise verify`: how many to draw, the draw itself, the suspects registry
and how it turns a decision into a run, the report's lines, and the ledger reading its records."""

from __future__ import annotations

import json
import os

import pytest
from skipwise.core.cost import CostVector, LedgerRecord
from skipwise.core.manifest import Manifest
from skipwise.core.plan import RESTORE, RUN, SKIP, Decision
from skipwise.engine.verifying import Report, Sample, Verdict, Verified, draw, sample_size, share
from skipwise.reporting.tables import VERIFY, cost_table, status_table
from skipwise.store.suspects import REASON, Suspect, Suspects


def manifest(
    partition: str = "2024-01-01", output_hash: str = "aa", created_at: str = "2026-01-01T00:00:00Z"
) -> Manifest:
    return Manifest(
        asset="a",
        partition=partition,
        fingerprint="fp",
        code_version="c",
        params_digest="p",
        inputs={},
        output="fp.parquet",
        output_hash=output_hash,
        output_size=1,
        created_at=created_at,
    )


def decision(action: str, partition: str = "2024-01-01") -> Decision:
    return Decision("a", partition, action, "up to date", "fp")


@pytest.mark.parametrize(
    "population, fraction, count, size",
    [
        (365, 0.05, None, 18),
        (365, 1.0, None, 365),
        (10, 0.01, None, 1),
        (0, 0.05, None, 0),
        (365, None, 20, 20),
        (5, None, 20, 5),
        (365, 0.05, 3, 3),
    ],
)
def test_sample_size(population, fraction, count, size):
    assert sample_size(population, fraction, count) == size


def test_the_same_seed_draws_the_same_partitions_in_their_order():
    keys = [f"k{i:03d}" for i in range(200)]
    first = draw(keys, 10, seed=42)
    assert first == draw(keys, 10, seed=42) and len(set(first)) == 10
    assert first == sorted(first)  # the plan's order, upstream first
    assert draw(keys, 10, seed=43) != first
    assert draw(keys, 200, seed=1) == keys and draw(keys, 0, seed=1) == []


def test_share_reads_as_a_percentage():
    assert (share(18, 365), share(1, 365), share(0, 365), share(3, 3), share(0, 0)) == (
        "5%",
        "0.27%",
        "0%",
        "100%",
        "0%",
    )


def test_a_suspect_turns_a_skip_or_a_restore_of_its_commit_into_a_run(tmp_path):
    suspects = Suspects(tmp_path / ".skipwise" / "suspects.json")
    m = manifest()
    assert suspects.vet(decision(SKIP), m) == decision(SKIP)  # no file: nothing to vet
    suspects.add([Suspect.of(m, "bb", "now")], still_applies=lambda s: True)
    ran = Suspects(suspects.path).vet(decision(SKIP), m)  # another process reads the file
    assert (ran.action, ran.reason, ran.fingerprint) == (RUN, REASON, "fp")
    assert suspects.vet(decision(RESTORE), m).action == RUN
    assert suspects.vet(decision(RUN), m) == decision(RUN)
    assert suspects.vet(decision(SKIP), manifest(created_at="2026-02-01T00:00:00Z")) == decision(
        SKIP
    )  # committed again
    assert suspects.vet(decision(SKIP, "2024-01-02"), manifest("2024-01-02")) == decision(SKIP, "2024-01-02")
    assert [p.name for p in suspects.path.parent.iterdir()] == ["suspects.json"]  # no temporary file left


def test_entries_that_no_longer_apply_are_pruned_when_the_file_is_written(tmp_path):
    suspects = Suspects(tmp_path / "suspects.json")
    old, new = manifest("2024-01-01"), manifest("2024-01-02")
    suspects.add([Suspect.of(old)], still_applies=lambda s: True)
    suspects.add([Suspect.of(new)], still_applies=lambda s: s.partition != "2024-01-01")
    rows = json.loads(suspects.path.read_text())["suspects"]
    assert [r["partition"] for r in rows] == ["2024-01-02"]


def test_a_damaged_registry_warns_and_vets_nothing(tmp_path):
    path = tmp_path / "suspects.json"
    path.write_text("{not json")
    said: list[str] = []
    assert Suspects(path, warn=said.append).vet(decision(SKIP), manifest()) == decision(SKIP)
    assert said and str(path) in said[0] and "delete the file" in said[0]


def test_the_registry_is_read_again_when_another_process_rewrites_it(tmp_path):
    path = tmp_path / "suspects.json"
    reader = Suspects(path)
    assert reader.vet(decision(SKIP), manifest()).action == SKIP
    Suspects(path).add([Suspect.of(manifest())], still_applies=lambda s: True)
    assert reader.vet(decision(SKIP), manifest()).action == RUN
    os.remove(path)
    assert reader.vet(decision(SKIP), manifest()).action == SKIP


def test_the_report_says_what_was_found_and_what_it_cost():
    sample = Sample(picked=(), up_to_date=365, seed=9)
    cost = CostVector(usd=0.000001, wall_seconds=0.1)
    results = (
        Verified("a", "2024-01-01", "aa", "aa", Verdict.MATCH, cost=cost),
        Verified("a", "2024-01-02", "aa", "bb", Verdict.MISMATCH, "bb", "nothing skipwise records changed", cost),
        Verified("n", "2024-01-01", "aa", "bb", Verdict.NONDETERMINISTIC, "cc", cost=cost),
        Verified("d", "2024-01-01", "aa", None, Verdict.DECLARED),
    )
    report = Report(sample, results, seconds=4.21)
    assert not report.ok and [r.verdict for r in report.problems] == [Verdict.MISMATCH, Verdict.NONDETERMINISTIC]
    assert report.summary() == (
        "verified 3 of 365 up-to-date partitions (0.82%): 1 match, 1 mismatch, 1 nondeterministic, "
        "1 skipped; recomputed in 4.2 s for $0.00000300 (seed 9)"
    )
    assert report.failure() == (
        "skipwise verify: 1 partition(s) differ from a fresh computation (now marked stale); "
        "1 asset(s) are nondeterministic"
    )
    assert results[1].line().startswith("MISMATCH  a[2024-01-02]: committed aa, a fresh computation gives bb (twice): ")
    assert report.skipped_lines() == ["skipped  d: declared nondeterministic (1 sampled partition(s) not compared)"]
    assert report.to_json()["counts"]["mismatch"] == 1


def test_verify_records_are_a_row_of_their_own_in_cost_and_status():
    def row(cache: str, usd: float) -> dict:
        return LedgerRecord(
            ts="2026-01-01T00:00:00Z",
            run_id="r",
            asset="a",
            partition="k",
            cache=cache,
            reason="",
            fingerprint="fp",
            cost=CostVector(usd=usd),
        ).to_json_dict()

    rows = [row("miss", 1.0), row("hit", 0.0), row("verify", 0.25)]
    table = {r["asset"]: r for r in cost_table(rows, "asset")}
    assert (table[VERIFY]["usd"], table[VERIFY]["computed"], table[VERIFY]["skipped"]) == (0.25, None, None)
    assert (table["a"]["computed"], table["a"]["skipped"], table["a"]["usd"]) == (1, 1, 1.0)
    status = {r["asset"]: r for r in status_table([{"asset": "a", "state": "up to date"}], rows)}
    assert status[VERIFY]["usd"] == 0.25 and status["total"]["usd"] == 1.25
    with pytest.raises(ValueError, match="verify"):
        LedgerRecord(ts="", run_id="", asset="", partition=None, cache="checked", reason="", fingerprint="")
