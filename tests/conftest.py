"""Shared fixtures: a real copy of the project in a temporary folder, with real raw data and a real DVC repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DVC = shutil.which("dvc", path=str(BIN)) or shutil.which("dvc") or str(REPO / ".tools" / "dvc" / "bin" / "dvc")
PROJECT_FILES = ["assets", "pipelines", "params.yaml", "dvc.yaml", ".dvcignore", "skipwise.toml", "pyproject.toml"]
FIRST_DAYS = "2013-01-01...2013-01-12"


def definitions_module(root: Path, monkeypatch, source: str, prefix: str) -> str:
    """Write `source` as a module of a new name in `root` (first on sys.path), named as the
    project's definitions in its pyproject.toml; returns the module's name (import it yourself)."""
    import textwrap
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    (root / f"{name}.py").write_text(textwrap.dedent(source))
    (root / "pyproject.toml").write_text(f'[tool.skipwise]\ndefinitions = "{name}"\n')
    monkeypatch.syspath_prepend(str(root))
    return name


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a real command; on failure, show its output."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    p = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


@pytest.fixture(scope="session")
def raw_days(tmp_path_factory) -> Path:
    """Raw daily parquet files for the first days of 2013, written once by the real ingest."""
    root = tmp_path_factory.mktemp("raw")
    run([sys.executable, "-m", "assets.ingest", "--root", str(root), "--days", FIRST_DAYS], cwd=REPO)
    return root / "data" / "raw"


def copy_project(dest: Path) -> Path:
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture
def project_dir(tmp_path, raw_days) -> Path:
    """A fresh copy of the project with 12 days of raw data versioned by a real DVC repo."""
    root = copy_project(tmp_path / "proj")
    shutil.copytree(raw_days, root / "data" / "raw")
    run(["git", "init", "-q"], cwd=root)
    run([DVC, "init", "-q"], cwd=root)
    run([DVC, "config", "core.analytics", "false"], cwd=root)
    run([DVC, "add", "-q", "data/raw/flights", "data/raw/weather"], cwd=root)
    return root


@pytest.fixture
def project(project_dir):
    """A loaded engine Project over `project_dir` (its own copy of the code)."""
    from skipwise.engine.project import Project

    graph = _graph_from(project_dir)
    return Project(project_dir, graph, definitions="assets.definitions")


def _graph_from(root: Path):
    # The copy's definitions are the same code as the repo's: resolve the repo's (already importable).
    from skipwise.project.resolving import resolve_graph

    return resolve_graph(REPO, "assets.definitions")[0]
