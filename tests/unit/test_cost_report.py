"""Cost reports: grouped numbers checked by hand, a self-contained HTML page, and the
`skipwise cost` command."""

from __future__ import annotations

import argparse
import json
import re

import pytest
from skipwise.cli.cost import add_cost_parser
from skipwise.core.cost import CostVector, LedgerRecord
from skipwise.reporting.tables import cost_table, format_table, render_html
from skipwise.store.ledger import Ledger


def _row(ts, run, asset, partition, cache, model=None, team=None, **cost):
    tags = {k: v for k, v in (("skipwise/model", model), ("team", team)) if v}
    return LedgerRecord(ts, run, asset, partition, cache, "r", "fp", tags, CostVector(**cost)).to_json_dict()


ROWS = [
    _row(
        "2026-03-01T10:00:00Z",
        "r1",
        "A",
        "p1",
        "miss",
        model="m1",
        team="t1",
        cpu_seconds=3600.0,
        usd=1.0,
        bytes_read=100,
    ),
    _row("2026-03-01T10:00:01Z", "r1", "A", "p2", "hit", model="m1", usd_avoided=1.0),
    _row(
        "2026-03-02T09:00:00Z",
        "r2",
        "B",
        "p1",
        "miss",
        model="m2",
        cpu_seconds=1800.0,
        gpu_seconds=7200.0,
        usd=2.5,
        egress_bytes=50,
    ),
    _row("2026-03-02T09:00:01Z", "r2", "A", "p1", "miss", usd=0.5),
]


def test_by_asset_by_hand():
    b, a = cost_table(ROWS, "asset")  # most expensive first
    assert b == {
        "asset": "B",
        "runs": 1,
        "computed": 1,
        "skipped": 0,
        "cpu_hours": 0.5,
        "gpu_hours": 2.0,
        "bytes_read": None,
        "bytes_written": None,
        "egress_bytes": 50,
        "usd": 2.5,
        "usd_avoided": None,
        "hit_rate": 0.0,
    }
    assert (a["runs"], a["computed"], a["skipped"]) == (2, 2, 1)
    assert a["cpu_hours"] == 1.0 and a["gpu_hours"] is None  # never measured: None, not 0
    assert a["usd"] == 1.5 and a["usd_avoided"] == 1.0 and a["bytes_read"] == 100
    assert a["hit_rate"] == pytest.approx(1 / 3)


def test_other_groupings_by_hand():
    days = cost_table(ROWS, "day")
    assert [(d["day"], d["usd"], d["computed"], d["skipped"]) for d in days] == [
        ("2026-03-01", 1.0, 1, 1),
        ("2026-03-02", 3.0, 2, 0),
    ]
    parts = {(p["asset"], p["partition"]): p for p in cost_table(ROWS, "partition")}
    assert parts[("A", "p1")]["computed"] == 2 and parts[("A", "p1")]["runs"] == 2
    assert parts[("A", "p1")]["usd"] == 1.5
    models = {m["model"]: m["usd"] for m in cost_table(ROWS, "model")}
    assert models == {"m2": 2.5, "m1": 1.0, None: 0.5}
    teams = {t["team"]: t["computed"] for t in cost_table(ROWS, "team")}
    assert teams == {"t1": 1, None: 2}
    runs = {r["run"]: r["usd"] for r in cost_table(ROWS, "run")}
    assert runs == {"r1": 1.0, "r2": 3.0}
    with pytest.raises(ValueError, match="one of"):
        cost_table(ROWS, "colour")


def test_format_table_is_aligned():
    text = format_table(cost_table(ROWS, "asset"))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["asset", "runs", "computed"]
    assert len({len(line) for line in lines}) == 1  # numbers right-aligned to the last column
    assert "$2.5000" in text and "33%" in text and " - " in text
    assert format_table([]) == "(no cost records)"


def test_html_is_self_contained_with_a_chart_each():
    rows = ROWS + [_row("2026-03-02T09:00:02Z", "r2", "<script>x</script>", "p", "miss", usd=0.1)]
    page = render_html(rows)
    assert page.count("<svg") == 4  # spend by data day and by run day, spend per asset, hit rate per asset
    for caption in ("Spend by data day", "Spend by run day", "Spend per asset", "Cache hit rate per asset"):
        assert caption in page
    assert not re.search(r"https?://", page)
    assert "<script" not in page  # names are escaped; no scripts at all
    assert "<table>" in page and "$2.5000" in page
    assert render_html([]).count("<svg") == 4  # an empty ledger still renders


def _cli(*argv):
    parser = argparse.ArgumentParser(prog="skipwise")
    add_cost_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cost", *argv])
    from skipwise.cli.console import run_command

    return run_command(args.func, args)


def test_cli(tmp_path, capsys):
    ledger_dir = tmp_path / "ledger"
    Ledger(ledger_dir).append([LedgerRecord.from_json_dict(r) for r in ROWS])

    assert _cli("--ledger", str(ledger_dir)) == 0
    out = capsys.readouterr().out
    assert "asset" in out and "$4.0000 spent" in out and "1 cache hit" in out

    html_path = tmp_path / "out" / "cost.html"
    assert (
        _cli("--ledger", str(ledger_dir), "--by", "day", "--since", "2026-03-02", "--json", "--html", str(html_path))
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [(r["day"], r["usd"]) for r in rows] == [("2026-03-02", 3.0)]
    assert html_path.read_text().count("<svg") == 4

    assert _cli("--ledger", str(tmp_path / "none")) == 0
    assert "no cost records" in capsys.readouterr().out

    assert _cli("--ledger", str(ledger_dir), "--since", "March") == 2  # a usage error
    assert capsys.readouterr().err.startswith("Error:")


def test_spend_by_data_day_and_by_run_day_with_overhead_apart():
    from skipwise.reporting.tables import nice_ticks, spend_by_day

    rows = [
        _row("2026-12-01T10:00:00Z", "r1", "f", "2013-01-02", "miss", usd=0.00002),
        _row("2026-12-01T10:00:01Z", "r1", "f", "2013-01-03", "miss", usd=0.00003),
        _row("2026-12-02T09:00:00Z", "r2", "f", "2013-01-02", "miss", usd=0.00001),
        _row("2026-12-02T09:00:01Z", "r2", "f", "2013-01-03", "hit", usd_avoided=0.00003),
        _row("2026-12-02T09:00:02Z", "r2", "", None, "run", usd=0.00004),
        _row("2026-12-02T09:00:03Z", "r2", "s", "small", "miss", usd=0.5),  # not a day: no data day
    ]
    by_data = spend_by_day(rows, "data")
    assert [d for d, _ in by_data] == ["2013-01-02", "2013-01-03"]
    assert by_data[0][1] == {"partitions": pytest.approx(0.00003), "overhead": 0.0}
    by_run = dict(spend_by_day(rows, "run"))
    assert by_run["2026-12-01"] == {"partitions": pytest.approx(0.00005), "overhead": 0.0}
    assert by_run["2026-12-02"] == {"partitions": pytest.approx(0.50001), "overhead": pytest.approx(0.00004)}
    assert nice_ticks(0.000037) == [0.0, 0.00001, 0.00002, 0.00003, 0.00004]
    assert nice_ticks(7.0) == [0.0, 2.0, 4.0, 6.0, 8.0] and nice_ticks(0) == [0.0, 1.0]
    page = render_html(rows)
    assert ">2013-01-02</text>" in page and ">2026-12-02</text>" in page  # days with their year
    assert ">$0.0000100</text>" in page and ">$0</text>" in page  # round ticks, small amounts readable
    assert 'class="overhead"' in page and page.count('class="tick"') >= 8
