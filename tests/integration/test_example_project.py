"""The example shop project (tests/example_project), driven as its user drives it: `skipwise
materialize` / `skipwise plan` and Dagster's own CLI, on a real copy with a real git + DVC repo.

One copy per module (materialized once, then changed step by step: the tests run in file order),
and a second, untouched copy for the Dagster range run over two levels."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import polars as pl
import pytest

from tests.conftest import BIN, DVC, REPO, run

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "tests" / "example_project"
DAYS = [f"2024-01-{d:02d}" for d in range(1, 15)]
REGIONS = ["north", "south", "east"]
HOURS = [f"2024-01-{d:02d}-{h:02d}:00" for d in (1, 2) for h in range(24)]
# The same partitioning as shop/definitions.py's WEEKLY: Dagster decides which weeks fit.
WEEKS = dg.WeeklyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-15").get_partition_keys()
EXPECTED_ALL = {
    "hourly_sales": len(HOURS),  # 48
    "regional_sales": len(DAYS) * len(REGIONS),  # 42
    "region_summary": len(REGIONS),
    "sales_3d": len(DAYS),
    "ranked_stores": len(DAYS),
    "sales_with_managers": len(DAYS),
    "weekly_sales": len(WEEKS),
    # plain Dagster assets: planned and run with Dagster's own state
    "raw_rows": len(DAYS),
    "store_regions": 1,
    "top_stores": len(DAYS),
}
PLAIN_UP_TO_DATE = "up to date per Dagster (materialized; its code version and its inputs' data versions unchanged)"
TOTAL = sum(EXPECTED_ALL.values())
SUMMARY_ROW = re.compile(r"^\s+(\w+)\s+(\d+) computed,\s+(\d+) skipped\s*$", re.M)


def _make_data_module():
    spec = importlib.util.spec_from_file_location("example_make_data", EXAMPLE / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_data = _make_data_module()


class Shop:
    """A copy of the example project and the commands its user runs in it."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {"DAGSTER_HOME": str(root / ".dagster")}

    def sh(self, *cmd: str, check: bool = True):
        return run(list(cmd), cwd=self.root, env=self.env, check=check)

    def skipwise(self, *args: str) -> str:
        return self.sh(str(BIN / "skipwise"), *args).stdout

    def dagster(self, *args: str):
        return self.sh(str(BIN / "dagster"), *args)

    def materialize(self, *args: str) -> tuple[dict[str, tuple[int, int]], str]:
        """`skipwise materialize`: ({asset: (computed, skipped)}, the summary's text)."""
        out = self.skipwise("materialize", *args)
        rows = {m[1]: (int(m[2]), int(m[3])) for m in SUMMARY_ROW.finditer(out)}
        assert rows, f"no summary in:\n{out}"
        return rows, out

    def plan(self, *args: str) -> dict:
        return json.loads(self.skipwise("plan", "--json", *args))

    def running(self, plan: dict) -> dict[str, set[str]]:
        """{asset: partitions that are not skipped} of a plan."""
        out: dict[str, set[str]] = {}
        for row in plan["partitions"]:
            if row["action"] != "skip":
                out.setdefault(row["asset"], set()).add(row["partition"])
        return out

    def dvc_add(self) -> None:
        self.sh(DVC, "add", "-q", "data/raw/sales")

    def folder(self, group: str, asset: str) -> Path:
        return self.root / "data" / group / asset

    def manifest(self, group: str, asset: str, folder: str) -> dict:
        return json.loads((self.folder(group, asset) / folder / "manifest.json").read_text())

    def output(self, group: str, asset: str, folder: str) -> Path:
        m = self.manifest(group, asset, folder)
        return self.folder(group, asset) / folder / m["output"]


def make_shop(dest: Path) -> Shop:
    root = dest / "shop_project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "data", ".dagster"))
    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    shop = Shop(root)
    shop.sh("git", "init", "-q")
    shop.sh(DVC, "init", "-q")
    shop.sh(DVC, "config", "core.analytics", "false")
    shop.sh(str(BIN / "python"), "make_data.py", ".")
    shop.dvc_add()
    return shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Shop:
    return make_shop(tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="module")
def first_run(shop) -> dict[str, tuple[int, int]]:
    rows, _ = shop.materialize()
    return rows


def in_week(day: str, week: str) -> bool:
    """Whether `day` falls in the week whose (Dagster) partition key, its first day, is `week`."""
    return 0 <= (date.fromisoformat(day) - date.fromisoformat(week)).days < 7


def expected_amount(day: date, store: int, hour: int, bump: float = 0.0) -> float:
    return float((day.toordinal() * 7 + store * 13 + hour) % 50) + bump


# -- 1. the first run computes everything, in the declared formats ------------------------------


def test_first_materialize_computes_every_partition_of_every_asset(shop, first_run):
    assert WEEKS, "the weekly partitioning has no week at all: the example cannot test weekly_sales"
    assert first_run == {name: (n, 0) for name, n in EXPECTED_ALL.items()}
    # Every partition left a manifest where the user looks for it.
    for group, asset in [("features", "sales_3d"), ("features", "ranked_stores"), ("features", "sales_with_managers")]:
        assert sorted(p.name for p in shop.folder(group, asset).iterdir() if (p / "manifest.json").is_file()) == DAYS


def test_outputs_are_stored_in_the_format_each_asset_declares(shop, first_run):
    # hourly_sales -> pd.DataFrame: a parquet file that reads back as the hour's rows.
    hour9 = shop.output("features", "hourly_sales", "2024-01-01-09~3a00")
    assert hour9.suffix == ".parquet"
    frame = pd.read_parquet(hour9)
    assert list(frame.columns) == ["store", "amount"]
    assert frame["store"].tolist() == ["s1", "s2", "s3", "s4"]
    assert frame["amount"].tolist() == [expected_amount(date(2024, 1, 1), s, 9) for s in range(1, 5)]
    assert pd.read_parquet(shop.output("features", "hourly_sales", "2024-01-01-01~3a00")).empty  # no sales at 1am

    # region_summary -> dict: a JSON file, totals over all 14 days of the region's stores.
    for region in REGIONS:
        out = shop.output("reports", "region_summary", region)
        assert out.suffix == ".json"
        doc = json.loads(out.read_text())
        stores = [s for s in range(1, 5) if REGIONS[s % 3] == region]
        want = sum(expected_amount(date.fromisoformat(d), s, h) for d in DAYS for s in stores for h in (0, 9, 17))
        assert doc["region"] == region
        assert doc["total"] == pytest.approx(want)
        assert doc["rows"] == len(DAYS) * len(stores) * 3


def test_partition_folders_escape_the_characters_of_their_keys(shop, first_run):
    regional = sorted(p.name for p in shop.folder("features", "regional_sales").iterdir() if p.is_dir())
    assert regional == sorted(f"{d}~7c{r}" for d in DAYS for r in REGIONS)
    assert shop.manifest("features", "regional_sales", "2024-01-01~7cnorth")["partition"] == "2024-01-01|north"
    north = pl.read_parquet(shop.output("features", "regional_sales", "2024-01-01~7cnorth"))
    assert set(north["region"]) == {"north"}

    hourly = sorted(p.name for p in shop.folder("features", "hourly_sales").iterdir() if p.is_dir())
    assert hourly == sorted(h.replace(":", "~3a") for h in HOURS)
    assert shop.manifest("features", "hourly_sales", "2024-01-02-17~3a00")["partition"] == "2024-01-02-17:00"


# -- 2. a second run computes nothing ---------------------------------------------------------


def test_second_materialize_computes_nothing(shop, first_run):
    rows, out = shop.materialize()
    assert rows == {name: (0, n) for name, n in EXPECTED_ALL.items()}
    assert f"0 of {TOTAL} partitions computed" in out


# -- 3. one changed raw day reruns exactly its dependents -------------------------------------


def test_a_changed_raw_day_reruns_exactly_its_dependents(shop, first_run):
    before = {d: shop.manifest("features", "sales_3d", d)["run_id"] for d in DAYS}
    old_north = json.loads(shop.output("reports", "region_summary", "north").read_text())["total"]

    make_data.write_day(shop.root, date(2024, 1, 5), bump=1.0)
    shop.dvc_add()
    plan = shop.plan()
    look_back = {"2024-01-05", "2024-01-06", "2024-01-07"}  # sales_3d reads its day and the two before it
    expected = {
        "sales_3d": look_back,
        "ranked_stores": look_back,
        "regional_sales": {f"2024-01-05|{r}" for r in REGIONS},
        "region_summary": set(REGIONS),
        "sales_with_managers": {"2024-01-05"},
        # hourly_sales' partitions end on 2024-01-03 (shop.definitions' HOURLY): none reads 2024-01-05.
        "weekly_sales": {w for w in WEEKS if any(in_week(d, w) for d in look_back)},  # the week holding those days
        "raw_rows": {"2024-01-05"},  # a plain asset reading the raw day
        "top_stores": look_back,  # a plain asset downstream of sales_3d
    }
    assert expected["weekly_sales"], "no week contains the changed days: the example no longer tests weekly_sales here"
    assert shop.running(plan) == expected
    assert plan["blocked"] == 0 and plan["warnings"] == []
    reasons = {(r["asset"], r["partition"]): r["reason"] for r in plan["partitions"]}
    assert reasons[("sales_3d", "2024-01-07")] == "input raw_sales[2024-01-05] changed"
    assert reasons[("region_summary", "east")] == "input raw_sales[2024-01-05] changed"
    assert "sales_3d[2024-01-06]" in reasons[("ranked_stores", "2024-01-06")]
    assert reasons[("raw_rows", "2024-01-05")] == "input raw_sales[2024-01-05] changed since it was computed"
    assert reasons[("top_stores", "2024-01-06")] == "input sales_3d[2024-01-06] runs first"

    rows, out = shop.materialize()
    computed = {a: c for a, (c, _) in rows.items()}
    assert computed == {a: len(expected.get(a, ())) for a in EXPECTED_ALL}
    n = sum(computed.values())
    assert f"{n} of {TOTAL} partitions computed ({TOTAL - n} up to date)" in out

    # What ran used the new data; what was skipped was left alone.
    new_north = json.loads(shop.output("reports", "region_summary", "north").read_text())["total"]
    assert new_north == pytest.approx(old_north + 3 * 1.0)  # north: store s3, 3 rows that day, each +1.0
    after = {d: shop.manifest("features", "sales_3d", d)["run_id"] for d in DAYS}
    assert {d for d in DAYS if after[d] != before[d]} == look_back

    again = shop.plan("--all")
    assert again["run"] == 0 and again["blocked"] == 0 and again["skip"] == TOTAL
    assert {r["reason"] for r in again["partitions"]} == {"up to date", PLAIN_UP_TO_DATE}


def test_a_changed_raw_day_inside_the_hourly_range_reruns_its_24_hours(shop, first_run):
    """The hourly asset reads its day's raw file: changing 2024-01-02 reruns that day's 24 hours.
    Writing the day back as it was makes everything up to date again (versions are content)."""
    make_data.write_day(shop.root, date(2024, 1, 2), bump=1.0)
    shop.dvc_add()
    try:
        look_back = {"2024-01-02", "2024-01-03", "2024-01-04"}
        expected = {
            "hourly_sales": {h for h in HOURS if h.startswith("2024-01-02-")},
            "sales_3d": look_back,
            "ranked_stores": look_back,
            "regional_sales": {f"2024-01-02|{r}" for r in REGIONS},
            "region_summary": set(REGIONS),
            "sales_with_managers": {"2024-01-02"},
            "weekly_sales": {w for w in WEEKS if any(in_week(d, w) for d in look_back)},
            "raw_rows": {"2024-01-02"},
            "top_stores": look_back,
        }
        assert shop.running(shop.plan()) == {a: keys for a, keys in expected.items() if keys}
    finally:
        make_data.write_day(shop.root, date(2024, 1, 2))
        shop.dvc_add()
    assert shop.plan()["run"] == 0


# -- 7. the asset's config counts in its fingerprint ------------------------------------------


def test_a_params_change_reruns_the_asset_and_reverting_it_is_up_to_date(shop, first_run):
    params = shop.root / "params.yaml"
    original = params.read_text()
    try:
        params.write_text("sales_3d:\n  min_amount: 10.0\n")
        plan = shop.plan()
        changed = {r["partition"]: r["reason"] for r in plan["partitions"] if r["asset"] == "sales_3d"}
        assert set(changed) == set(DAYS)
        assert all("params changed" in reason for reason in changed.values())
        # Only sales_3d's own params changed: the other assets are listed only where they read sales_3d.
        assert shop.running(plan) == {
            "sales_3d": set(DAYS),
            "ranked_stores": set(DAYS),
            "weekly_sales": set(WEEKS),
            "top_stores": set(DAYS),
        }
    finally:
        params.write_text(original)
    assert shop.plan()["run"] == 0


# -- 4. a plain Dagster asset downstream of a skipwise one -------------------------------------


def test_a_plain_dagster_asset_reads_a_skipwise_one_through_the_io_manager(shop, first_run):
    p = shop.dagster(
        "asset", "materialize", "-m", "shop.definitions", "--select", "top_stores,raw_rows", "--partition", "2024-01-03"
    )
    assert "RUN_SUCCESS" in p.stdout + p.stderr
    # and one reading the DVC source: the day's raw file, decoded
    import json

    assert json.loads(shop.output("reports", "raw_rows", "2024-01-03").read_text()) == {"rows": 12}
    manifest = shop.manifest("reports", "top_stores", "2024-01-03")
    assert manifest["partition"] == "2024-01-03"
    top = pl.read_parquet(shop.output("reports", "top_stores", "2024-01-03"))
    assert top.height == 2
    sales_3d = pl.read_parquet(shop.output("features", "sales_3d", "2024-01-03"))
    assert top["amount_3d"].to_list() == sorted(sales_3d["amount_3d"].to_list(), reverse=True)[:2]


# -- 5. a skipwise asset downstream of a plain one --------------------------------------------


def test_a_skipwise_asset_versions_its_plain_upstream_by_content(shop, first_run):
    plain = shop.manifest("reference", "store_regions", "all")
    assert (shop.folder("reference", "store_regions") / "all" / plain["output"]).is_file()
    for day in ("2024-01-01", "2024-01-05"):
        inputs = shop.manifest("features", "sales_with_managers", day)["inputs"]
        assert set(inputs) == {"raw_sales", "store_regions"}
        version = inputs["store_regions"]["all"]
        assert version.startswith("sha256:")
        assert version == f"sha256:{plain['output_hash']}"
    joined = pl.read_parquet(shop.output("features", "sales_with_managers", "2024-01-01"))
    assert dict(zip(joined["store"], joined["manager"])) == {"s1": "ann", "s2": "bob", "s3": "cy", "s4": "dee"}


# -- 6. a range over two levels from Dagster's own CLI ----------------------------------------


@pytest.fixture(scope="module")
def fresh_shop(tmp_path_factory) -> Shop:
    return make_shop(tmp_path_factory.mktemp("example_fresh"))


def test_a_dagster_range_run_materializes_both_levels(fresh_shop):
    days = ["2024-01-08", "2024-01-09", "2024-01-10"]
    p = fresh_shop.dagster(
        "asset",
        "materialize",
        "-m",
        "shop.definitions",
        "--select",
        "sales_3d,ranked_stores",
        "--partition-range",
        f"{days[0]}...{days[-1]}",
    )
    log = p.stdout + p.stderr
    assert "Skipping step" not in log
    assert "RUN_SUCCESS" in log
    for asset in ("sales_3d", "ranked_stores"):
        assert (
            sorted(d.name for d in fresh_shop.folder("features", asset).iterdir() if (d / "manifest.json").is_file())
            == days
        )
    run_ids = {fresh_shop.manifest("features", a, d)["run_id"] for a in ("sales_3d", "ranked_stores") for d in days}
    assert len(run_ids) == 1  # one Dagster run, both levels
    ranked = pl.read_parquet(fresh_shop.output("features", "ranked_stores", "2024-01-09"))
    upstream = pl.read_parquet(fresh_shop.output("features", "sales_3d", "2024-01-09"))
    assert sorted(ranked["store"]) == sorted(upstream["store"]) and "rank" in ranked.columns
    # What the run wrote, skipwise agrees is up to date; the days outside the range are still missing.
    plan = fresh_shop.plan("--select", "sales_3d,ranked_stores", "--all")
    up_to_date = {(r["asset"], r["partition"]) for r in plan["partitions"] if r["action"] == "skip"}
    assert up_to_date == {(a, d) for a in ("sales_3d", "ranked_stores") for d in days}
