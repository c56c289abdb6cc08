"""`skipwise cost` on a ledger by hand: damaged files are said as `skipwise status` says them,
and dollars avoided read "$0" when nothing was avoided and "-" when what was avoided is unknown."""

from __future__ import annotations

from pathlib import Path

from skipwise.cli.main import main
from skipwise.core.cost import CostVector, LedgerRecord
from skipwise.store.ledger import Ledger


def _record(partition: str, cache: str, usd: float | None = None, avoided: float | None = None) -> LedgerRecord:
    return LedgerRecord(
        ts="2026-03-01T10:00:00.000000Z",
        run_id=f"run-{partition}-{cache}",
        asset="a",
        partition=partition,
        cache=cache,
        reason="missing" if cache == "miss" else "up to date",
        fingerprint=f"fp-{partition}",
        cost=CostVector(usd=usd, usd_avoided=avoided),
    )


def _cost(ledger: Path, capsys) -> tuple[str, str]:
    assert main(["cost", "--ledger", str(ledger)]) == 0
    out = capsys.readouterr()
    return out.out, out.err


def test_cost_warns_once_per_damaged_ledger_file_naming_it_and_the_fix(tmp_path, capsys):
    ledger = Ledger(tmp_path / "ledger")
    torn = ledger.append([_record("k1", "miss", usd=0.5), _record("k2", "miss", usd=0.25)])
    torn.write_bytes(torn.read_bytes()[:-20])  # the last line cut short
    garbage = torn.parent / "garbage.jsonl"
    garbage.write_bytes(b'\xff\xfe not json\n{"ts": 1\n')
    ledger.append([_record("k3", "miss", usd=1.0)])
    out, err = _cost(ledger.root, capsys)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, err
    assert any(str(torn) in w and "skipped 1 damaged line" in w for w in warnings)
    assert any(str(garbage) in w and "skipped 2 damaged line" in w for w in warnings)
    assert all("delete it to silence this" in w for w in warnings)
    assert "total: $1.5000 spent" in out  # the readable records still count


def test_avoided_dollars_are_zero_unknown_or_small_but_never_0_0000(tmp_path, capsys):
    ledger = Ledger(tmp_path / "only_misses")
    ledger.append([_record("k1", "miss", usd=0.5)])
    out, _ = _cost(ledger.root, capsys)
    assert "$0 avoided by 0 cache hit(s)" in out and "$0.0000 " not in out

    ledger = Ledger(tmp_path / "unknown")
    ledger.append([_record("k1", "miss", usd=0.5), _record("k1", "hit", avoided=None)])
    out, _ = _cost(ledger.root, capsys)
    assert "- avoided by 1 cache hit(s)" in out and "$0.0000" not in out

    ledger = Ledger(tmp_path / "tiny")
    ledger.append([_record("k1", "miss", usd=0.5), _record("k1", "hit", avoided=0.0000123)])
    out, _ = _cost(ledger.root, capsys)
    assert "$0.0000123 avoided by 1 cache hit(s)" in out
