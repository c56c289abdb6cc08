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


def test_planning_path_imports_no_dagster_polars_or_torch(tmp_path):
    # `skipwise plan` must answer fast: with a valid snapshot of the resolved graph, loading the
    # project imports none of the heavy libraries (the first load builds the snapshot by importing them).
    import shutil

    shutil.copytree(REPO / "tests" / "example_project", tmp_path / "shop", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import sys; from skipwise.engine.loading import load_project\n"
        "p = load_project('.')\n"
        "print(len(p.graph.assets), ','.join(sorted(n for n in ('dagster','torch','polars','duckdb','pandas') if n in sys.modules)))\n"
    )
    first = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path / "shop", capture_output=True, text=True, check=True
    )
    assert first.stdout.split()[1:] and "dagster" in first.stdout  # built by importing the definitions
    second = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path / "shop", capture_output=True, text=True, check=True
    )
    assert second.stdout.strip() == first.stdout.split()[0]  # same graph, no heavy import
    (tmp_path / "shop" / "shop" / "definitions.py").write_text(
        (tmp_path / "shop" / "shop" / "definitions.py").read_text() + "\n# edited\n"
    )
    third = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path / "shop", capture_output=True, text=True, check=True
    )
    assert "dagster" in third.stdout  # an edited definitions file rebuilds the snapshot
