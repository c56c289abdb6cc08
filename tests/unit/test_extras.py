"""skipwise's dependencies and extras (pyproject.toml): every import that runs when a module of the
library is imported is a core dependency, and a missing optional package says which extra installs it."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

import skipwise
from skipwise.core.errors import MissingDependency, SkipwiseError

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(skipwise.__file__).resolve().parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: distribution -> the module it installs, where the two names differ
MODULE_OF = {"pyyaml": "yaml"}
#: modules imported at module level that need an extra: the Celery app that `celery -A` loads on workers
EXTRA_MODULES = {"skipwise.adapters.dagster.celery_app": "services"}


def _name(requirement: str) -> str:
    for sep in "<>=!~;[ ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


def _core_modules() -> set[str]:
    return {MODULE_OF.get(n, n.replace("-", "_")) for n in map(_name, PROJECT["dependencies"])}


def _module_level_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                out |= {a.name.split(".")[0] for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and not sub.level and sub.module:
                out.add(sub.module.split(".")[0])
    return out


def test_the_core_dependencies_are_the_library_s_own():
    core = {_name(r) for r in PROJECT["dependencies"]}
    assert core == {"dagster", "polars", "pyarrow", "duckdb", "pyyaml", "tqdm", "sqlalchemy"}
    extras = PROJECT["optional-dependencies"]
    assert {_name(r) for r in extras["torch"]} == {"torch"}
    assert {_name(r) for r in extras["s3"]} == {"s3fs"}
    assert {_name(r) for r in extras["ui"]} == {"dagster-webserver"}
    # every range is a range (no exact pin), torch's included: the exact releases are constraints.txt's
    assert not [r for r in PROJECT["dependencies"] + extras["torch"] + extras["s3"] if "==" in r]


def test_importing_any_module_of_the_library_needs_no_extra():
    core = _core_modules()
    bad = []
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = ["skipwise", *f.relative_to(PACKAGE).with_suffix("").parts]
        module = ".".join(p for p in parts if p != "__init__")
        if module in EXTRA_MODULES:
            continue
        for top in sorted(_module_level_imports(f)):
            if top not in sys.stdlib_module_names and top != "skipwise" and top not in core:
                bad.append(f"{module} imports {top} at module level")
    assert not bad, bad


def test_a_missing_torch_names_the_torch_extra(monkeypatch):
    from skipwise import formats as F

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'skipwise\[torch\]'") as exc:
        F.get("torch").encode({})
    assert isinstance(exc.value, SkipwiseError)


def test_a_missing_object_store_client_names_the_s3_extra(monkeypatch):
    from skipwise.store.objectstore import ObjectStore

    monkeypatch.setitem(sys.modules, "botocore.session", None)
    with pytest.raises(MissingDependency, match=r"pip install 'skipwise\[s3\]'"):
        ObjectStore()


def test_a_missing_s3fs_names_the_s3_extra(monkeypatch):
    from skipwise.core.cost import IOCounter
    from skipwise.sources.remote import RemoteReader

    registry = sys.modules.get("fsspec.registry")  # the module (`fsspec.registry` the attribute is its mapping)

    monkeypatch.setitem(sys.modules, "s3fs", None)
    if registry is not None:  # fsspec keeps a protocol's class once imported (an earlier test may have read S3)
        monkeypatch.delitem(registry._registry, "s3", raising=False)
    with pytest.raises(SkipwiseError, match=r"pip install 'skipwise\[s3\]'"):
        RemoteReader(IOCounter(), "").filesystem("s3://bucket/key")


def test_a_missing_webserver_names_the_ui_extra(monkeypatch):
    from skipwise.adapters.dagster import ui

    monkeypatch.setitem(sys.modules, "dagster_webserver", None)
    monkeypatch.setattr(ui, "fix_partition_listing", lambda: None)
    with pytest.raises(MissingDependency, match=r"pip install 'skipwise\[ui\]'"):
        ui.serve([])


def test_missing_service_libraries_name_the_services_extra(monkeypatch):
    from skipwise.adapters.dagster import services

    monkeypatch.setitem(sys.modules, "dagster_celery", None)  # found nowhere
    with pytest.raises(MissingDependency, match=r"pip install 'skipwise\[services\]' dagster-celery dagster-postgres"):
        services.require_libraries("dagster_celery")
