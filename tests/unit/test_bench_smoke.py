"""The benchmark's report renders given numbers (no benchmark is run, nothing is timed)."""

from __future__ import annotations

from bench.report import Cell, Ref, Row, Target, fmt_bytes, ratio, render_report, render_table, steal_percent


def _cell(seconds: list[float], computed: int = 0, read: int = 0) -> Cell:
    c = Cell()
    for s in seconds:
        c.add(s, computed, read)
    return c


def test_table_shows_median_min_ratios_and_targets():
    row = Row(
        "generated",
        "one changed raw partition",
        {
            "skipwise": _cell([2.0, 1.0, 3.0], 2, 21_000_000),
            "plain": _cell([40.0], 200, 2_100_000_000),
            "dvc": _cell([30.0, 32.0, 31.0], 200, 2_100_000_000),
            "dvc_skipwise": _cell([6.0, 5.0, 7.0], 2, 21_000_000),
        },
    )
    refs = [Ref("demo", "Dagster empty run", _cell([0.5, 0.6, 0.4]))]
    targets = [Target("one changed day", "≤ 1/4", "6.00 s vs 31.00 s", True), Target("plan", "< 0.5 s", "—", None)]
    text = render_report("bench", [row], refs, targets, steal=12.345, wall_seconds=600, notes=["a note"])

    line = next(x for x in text.splitlines() if x.startswith("| generated"))
    assert "| 2.00 (1.00) |" in line and "| 40.00 (40.00) |" in line and "| 31.00 (30.00) |" in line
    assert "0.050×" in line  # skipwise / plain = 2 / 40
    assert "0.19× †" in line  # both dvc stages: 6 / 31
    assert "| — | — |" in line  # neither the Dagster command nor the webserver measured this row
    assert "2 / 200 / 200 / 2 / — / —" in line and "21.0 MB / 2.1 GB / 2.1 GB" in line and "3/1/3/3/0/0" in line
    assert "| 0.500 (0.400) | 3 |" in text
    assert "| one changed day | ≤ 1/4 | 6.00 s vs 31.00 s | PASS |" in text
    assert "| plan | < 0.5 s | — | not measured |" in text
    assert "12.3% of all CPU time" in text and "10.0 min" in text and "- a note" in text


def test_dagster_command_and_webserver_columns():
    row = Row(
        "demo",
        "no-op rerun",
        {
            "skipwise": _cell([0.3], 0, 0),
            "dvc_served": _cell([0.5, 0.4], 0, 0),
            "dagster_cli": _cell([9.0, 8.0, 10.0], 0, 0),
            "webserver": _cell([6.5, 6.0, 7.0], 0, 0),
        },
    )
    header, sep, line = render_table([row]).splitlines()
    cells = [c.strip() for c in line.strip("|").split("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert len(cells) == len(columns) == sep.count("---")
    at = dict(zip(columns, cells))
    assert at["`dagster asset materialize` median (min) s"] == "9.00 (8.00)"
    assert at["launched through dagster-webserver median (min) s"] == "6.50 (6.00)"
    assert at["dvc repro, skipwise stage, `skipwise serve` running median (min) s"] == "0.450 (0.400)"
    assert at[
        "partitions computed (skipwise / plain / dvc / dvc skipwise stage / served / dagster CLI / webserver)"
    ] == ("0 / — / — / — / 0 / 0 / 0")
    assert at["runs"] == "1/0/0/0/2/3/3"


def test_helpers():
    assert steal_percent((10, 1000), (60, 2000)) == 5.0
    assert steal_percent((0, 0), (0, 0)) == 0.0
    assert fmt_bytes(0) == "0" and fmt_bytes(999) == "999 B" and fmt_bytes(2_500_000) == "2.5 MB"
    assert ratio(Cell(), _cell([1.0])) == "—"


def test_load_average_is_reported_beside_steal():
    text = render_report("bench", [], [], [], steal=1.0, wall_seconds=60, notes=[], load=(3.14, 3.5, 2))
    assert "1.0% of all CPU time" in text and "median 3.14, max 3.50, on 2 CPUs" in text
    assert "Load average" not in render_report("bench", [], [], [], steal=None, wall_seconds=60, notes=[])
