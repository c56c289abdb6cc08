"""The pure core must not pull in dagster, dvc, fsspec, torch, polars or duckdb."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_core_imports_no_heavy_or_framework_module():
    code = (
        "import sys, pkgutil, importlib, skipwise.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('skipwise.core.' + m.name)\n"
        "bad = sorted(n for n in ('dagster','dvc','fsspec','torch','polars','duckdb','pyarrow','yaml') if n in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_planning_path_imports_no_dagster_polars_or_torch():
    # `skipwise plan` must answer fast: the engine and the demo graph load without heavy libraries.
    code = (
        "import sys, skipwise.engine, skipwise.cli, assets.graph\n"
        "print(','.join(sorted(n for n in ('dagster','torch','polars','duckdb') if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
