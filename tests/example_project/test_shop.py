"""The shop's own test, as a team writes one for its project: run against whatever skipwise is installed
(tests/wheel/check.sh runs it from a copy outside the repository, in a fresh environment holding the
built wheel with its core dependencies only).

Each module run works on a copy of this folder: `skipwise materialize` computes every partition once
and nothing the second time; Dagster, in this process, then skips what is up to date and recomputes
what a changed raw file touches. With $SHOP_DVC (a `dvc` command from its own environment) the raw
sales are `dvc add`-ed first, as in a team's repository; without it they are read untracked.
(The repository's own suite drives this project in tests/integration/test_example_project.py and
does not collect this file: see norecursedirs in the repository's pyproject.toml.)
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

# skipwise first, then the project's modules: each module imported after it is versioned by the bytes
# it ran from (the copy below is written while this process runs)
import skipwise  # noqa: F401

HERE = Path(__file__).resolve().parent
SUMMARY_ROW = re.compile(r"^\s+(\w+)\s+(\d+) computed,\s+(\d+) skipped\s*$", re.M)
WEEKS = dg.WeeklyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-15").get_partition_keys()
#: (group, asset) -> partitions
EXPECTED = {
    ("features", "hourly_sales"): 48,
    ("features", "regional_sales"): 42,
    ("reports", "region_summary"): 3,
    ("features", "sales_3d"): 14,
    ("features", "ranked_stores"): 14,
    ("features", "sales_with_managers"): 14,
    ("features", "weekly_sales"): len(WEEKS),
}
#: plain Dagster assets of the same definitions: `skipwise materialize` runs them through Dagster too
PLAIN = {"raw_rows": 14, "store_regions": 1, "top_stores": 14}
DVC = os.environ.get("SHOP_DVC", "")


class Shop:
    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "DAGSTER_HOME": str(root / ".dagster")}

    def run(self, *cmd: str) -> str:
        out = subprocess.run(list(cmd), cwd=self.root, env=self.env, capture_output=True, text=True)
        assert out.returncode == 0, f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        return out.stdout + out.stderr

    def skipwise(self, *args: str) -> str:
        # the command the installed distribution put beside this interpreter
        return self.run(str(Path(sys.executable).parent / "skipwise"), *args)

    def materialize(self) -> tuple[dict[str, tuple[int, int]], str]:
        out = self.skipwise("materialize")
        rows = {m[1]: (int(m[2]), int(m[3])) for m in SUMMARY_ROW.finditer(out)}
        assert rows, f"no summary in:\n{out}"
        return rows, out

    def write_raw_day(self, day: str, bump: float = 0.0) -> None:
        self.run(sys.executable, "-c", f"import datetime, make_data; make_data.write_day("
                 f"__import__('pathlib').Path('.'), datetime.date.fromisoformat({day!r}), {bump})")
        if DVC:
            self.run(DVC, "add", "-q", "data/raw/sales")

    def manifests(self, group: str, asset: str) -> list[Path]:
        return sorted((self.root / "data" / group / asset).glob("*/manifest.json"))


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Shop:
    root = tmp_path_factory.mktemp("shop") / "shop_project"
    shutil.copytree(HERE, root, ignore=shutil.ignore_patterns("__pycache__", "data", ".dagster", ".pytest_cache"))
    (root / ".dagster").mkdir()
    (root / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    shop = Shop(root)
    shop.run(sys.executable, "make_data.py", ".")
    if DVC:
        shop.run("git", "init", "-q")
        shop.run(DVC, "init", "-q")
        shop.run(DVC, "config", "core.analytics", "false")
        shop.run(DVC, "add", "-q", "data/raw/sales")
    return shop


def test_materialize_computes_every_partition_once_then_nothing(shop):
    rows, out = shop.materialize()
    assert rows == {**{asset: (n, 0) for (_, asset), n in EXPECTED.items()}, **{a: (n, 0) for a, n in PLAIN.items()}}, out
    if DVC:
        assert "not committed to DVC" not in out, out
    for (group, asset), n in EXPECTED.items():
        manifests = shop.manifests(group, asset)
        assert len(manifests) == n, (asset, manifests)
        for m in manifests:
            assert (m.parent / json.loads(m.read_text())["output"]).is_file()

    rows, out = shop.materialize()
    assert rows == {**{asset: (0, n) for (_, asset), n in EXPECTED.items()}, **{a: (0, n) for a, n in PLAIN.items()}}, out
    assert "nothing to do" in out


def _materialize_in_process(shop, monkeypatch, partition: str) -> dict[str, str]:
    """Dagster's own `materialize` here, on the shop's definitions: {asset: skipwise's cache verdict}."""
    monkeypatch.chdir(shop.root)
    monkeypatch.syspath_prepend(str(shop.root))
    monkeypatch.setenv("DAGSTER_HOME", str(shop.root / ".dagster"))
    from shop.definitions import defs

    selection = ["sales_3d", "ranked_stores"]
    result = dg.materialize(list(defs.assets), selection=selection, partition_key=partition,
                            resources=defs.resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return {a: m.metadata["skipwise/cache"].value for a in selection for m in result.asset_materializations_for_node(a)}


def test_dagster_in_process_skips_what_is_up_to_date(shop, monkeypatch):
    assert _materialize_in_process(shop, monkeypatch, "2024-01-05") == {"sales_3d": "hit", "ranked_stores": "hit"}


def test_a_changed_raw_day_is_recomputed_and_nothing_else(shop, monkeypatch):
    before = {m: m.read_text() for m in shop.manifests("features", "sales_3d")}
    shop.write_raw_day("2024-01-05", bump=1.0)
    assert _materialize_in_process(shop, monkeypatch, "2024-01-05") == {"sales_3d": "miss", "ranked_stores": "miss"}
    changed = [m.parent.name for m in shop.manifests("features", "sales_3d") if m.read_text() != before[m]]
    assert changed == ["2024-01-05"]
    # the days whose 3-day window holds the 5th are stale; every other partition is not
    rows, out = shop.materialize()
    assert rows["sales_3d"] == (2, 12) and rows["ranked_stores"] == (2, 12), out
