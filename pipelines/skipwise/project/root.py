"""Where a project is: its root folder (found upward from the current one, or $SKIPWISE_ROOT), the
root a run works on, and the module that holds its Dagster definitions (said once, in its config)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skipwise.core.errors import ConfigError


def _has_marker(d: Path) -> bool:
    if (d / "skipwise.toml").exists() or (d / "params.yaml").exists() or (d / "dvc.yaml").exists():
        return True
    py = d / "pyproject.toml"
    try:
        return py.is_file() and "[tool.skipwise]" in py.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def find_root(start: Path | None = None) -> Path:
    """The project root: $SKIPWISE_ROOT, else the nearest folder upward from `start` (default: the
    current folder) holding skipwise.toml, a pyproject.toml with [tool.skipwise], params.yaml or dvc.yaml."""
    env = os.environ.get("SKIPWISE_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if _has_marker(d):
            return d
    return here


def run_root(found: Path) -> Path:
    """The project a run works on: $SKIPWISE_ROOT when set (the same code over another copy of
    the data, as `skipwise materialize` sets for its runs), else `found` (from the definitions' folder)."""
    env = os.environ.get("SKIPWISE_ROOT")
    return Path(env).resolve() if env else found


def definitions_of(root: Path) -> str:
    """The module holding the project's `dg.Definitions`, said once: `definitions` under
    [tool.skipwise] in pyproject.toml, or at the top of skipwise.toml, else Dagster's own
    [tool.dagster] module_name."""
    import tomllib

    root = Path(root)
    found: list[tuple[str, Any]] = []
    for name, section in (
        ("pyproject.toml", ("tool", "skipwise")),
        ("skipwise.toml", ()),
        ("pyproject.toml", ("tool", "dagster")),
    ):
        path = root / name
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot parse {name}: {exc}", location=name, hint="fix the TOML syntax") from None
        for part in section:
            data = data.get(part, {}) if isinstance(data, dict) else {}
        value = (
            data.get("module_name" if section == ("tool", "dagster") else "definitions")
            if isinstance(data, dict)
            else None
        )
        if value is not None:
            found.append((name, value))
            break
    if not found:
        raise ConfigError(
            f"{root} does not say where its Dagster definitions are",
            hint='add `[tool.skipwise]\ndefinitions = "my_package.definitions"` to pyproject.toml '
            "(the module that holds `defs = dg.Definitions(...)`)",
        )
    where, value = found[0]
    if not isinstance(value, str) or not value or not all(p.isidentifier() for p in value.split(".")):
        raise ConfigError(
            f"definitions = {value!r} is not a module name",
            location=where,
            hint='write the module, e.g. definitions = "my_package.definitions"',
        )
    return value
