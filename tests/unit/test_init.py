"""`skipwise init`: the package name it picks, the files it writes, and that it never overwrites one."""

from __future__ import annotations

import pytest

from skipwise.cli.init import package_name
from skipwise.cli.main import main


@pytest.mark.parametrize(
    "folder, name",
    [
        ("my-shop", "my_shop"),
        ("Sales Forecast 2", "sales_forecast_2"),
        ("2024-models", "p_2024_models"),
        ("class", "class_project"),  # a keyword
        ("skipwise", "skipwise_project"),  # would hide the library it imports
        ("json", "json_project"),  # would hide a standard module
        ("---", "project"),
    ],
)
def test_the_package_is_the_folder_name_made_into_an_identifier(folder, name):
    assert package_name(folder) == name
    assert name.isidentifier()


def test_init_writes_a_project_and_refuses_to_overwrite_it(tmp_path, capsys):
    root = tmp_path / "team-repo"
    assert main(["init", str(root), "--no-dvc"]) == 0
    written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert written == [
        ".gitignore",
        "data/raw/sales/2024-01-01.parquet",
        "data/raw/sales/2024-01-02.parquet",
        "data/raw/sales/2024-01-03.parquet",
        "params.yaml",
        "pyproject.toml",
        "team_repo/__init__.py",
        "team_repo/definitions.py",
        "tests/test_definitions.py",
        "workspace.yaml",
    ]
    assert '[tool.skipwise]\ndefinitions = "team_repo.definitions"' in (root / "pyproject.toml").read_text()
    assert "module_name: team_repo.definitions" in (root / "workspace.yaml").read_text()
    compile((root / "team_repo" / "definitions.py").read_text(), "definitions.py", "exec")
    compile((root / "tests" / "test_definitions.py").read_text(), "test_definitions.py", "exec")
    capsys.readouterr()

    (root / "params.yaml").write_text("daily_sales:\n  min_amount: 5.0\n")  # the user's own edit
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert main(["init", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "never overwrites a file" in err and "\n  fix: " in err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # nothing written


def test_init_refuses_a_name_that_is_not_a_package(tmp_path, capsys):
    assert main(["init", str(tmp_path / "x"), "--name", "my-shop", "--no-dvc"]) == 2
    assert "not a Python package name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
