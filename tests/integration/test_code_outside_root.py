"""Code outside the project root (a shared package on sys.path, as with $PYTHONPATH or an editable
install) is followed like the project's own: editing it recomputes exactly the assets that use it,
and an edit made after its module was imported is never recorded as the code that ran."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from skipwise.core.plan import SKIP

from tests.conftest import definitions_module

pytestmark = pytest.mark.integration

MODULE = """
import dagster as dg
import skipwise as sw
from shared_helpers import scale

STORES = dg.StaticPartitionsDefinition(["north", "south"])


@sw.asset(partitions_def=STORES)
def scaled(context: dg.AssetExecutionContext) -> dict:
    return {"store": context.partition_key, "value": scale(len(context.partition_key))}


@sw.asset(partitions_def=STORES)
def plain(context: dg.AssetExecutionContext) -> dict:
    return {"store": context.partition_key}


defs = dg.Definitions(assets=[scaled, plain], resources={"skipwise": sw.IOManager()})
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "shared_helpers.py").write_text("def scale(x):\n    return x * 2\n")
    monkeypatch.syspath_prepend(str(shared))
    root = tmp_path / "proj"
    root.mkdir()
    name = definitions_module(root, monkeypatch, MODULE, "outside")
    monkeypatch.setenv("SKIPWISE_ROOT", str(root))
    import skipwise  # noqa: F401 - first, as a code location does: the modules' bytes are then recorded

    yield root, shared / "shared_helpers.py", name
    for mod in (name, "shared_helpers"):
        sys.modules.pop(mod, None)


def materialize(name: str) -> list[str]:
    defs = importlib.import_module(name).defs
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            list(defs.assets), resources=dict(defs.resources), instance=instance, partition_key="north"
        )
    assert result.success
    return sorted(
        f"{e.asset_key.to_user_string()}:{e.step_materialization_data.materialization.metadata['skipwise/cache'].value}"
        for e in result.get_asset_materialization_events()
    )


def plan(root: Path) -> dict[str, str]:
    """asset -> "skip" or why it would run, for the partition north."""
    from skipwise.engine.loading import load_project

    return {d.asset: "skip" if d.action == SKIP else d.reason for d in load_project(root).plan(partition="north")}


def test_an_edit_of_code_outside_the_root_recomputes_its_users_only(project):
    from skipwise.engine.loading import load_project

    root, helper, name = project
    assert materialize(name) == ["plain:miss", "scaled:miss"]
    assert materialize(name) == ["plain:hit", "scaled:hit"]
    p = load_project(root)
    assert str(helper) in dict(p.code.of(p.graph.asset("scaled")).files)  # its absolute path
    helper.write_text(textwrap.dedent("def scale(x):\n    return x * 3\n"))
    assert plan(root) == {"scaled": "code of scaled changed", "plain": "skip"}
    # shared_helpers was imported before the edit: what runs now is the old code, recorded as such
    assert materialize(name) == ["plain:hit", "scaled:miss"]
    assert plan(root)["scaled"] == "code of scaled changed"
    for module in ("shared_helpers", name):  # a fresh import runs the new code
        sys.modules.pop(module)
    assert materialize(name) == ["plain:hit", "scaled:miss"]
    assert materialize(name) == ["plain:hit", "scaled:hit"]
    assert plan(root) == {"scaled": "skip", "plain": "skip"}
