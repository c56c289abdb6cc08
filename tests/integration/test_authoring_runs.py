"""Bodies get Dagster's context, run config and resources; run config counts like params.yaml."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import definitions_module

pytestmark = pytest.mark.integration

MODULE = """
import dagster as dg
import skipwise as sw

STORES = dg.StaticPartitionsDefinition(["north", "south"])


class Scale(dg.Config):
    factor: int = 2


class Greeting(dg.ConfigurableResource):
    word: str = "hello"


@sw.asset(partitions_def=STORES)
def numbers(context: dg.AssetExecutionContext, config: Scale, greeting: Greeting) -> dict:
    context.log.info(f"computing {context.partition_key}")
    return {"store": context.partition_key, "value": len(context.partition_key) * config.factor, "word": greeting.word}


defs = dg.Definitions(assets=[numbers], resources={"skipwise": sw.IOManager(), "greeting": Greeting(word="hi")})
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch):
    name = definitions_module(tmp_path, monkeypatch, MODULE, "runs")
    monkeypatch.setenv("SKIPWISE_ROOT", str(tmp_path))
    import skipwise  # noqa: F401 - first, as a code location does: the module's bytes are then recorded

    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def _outputs(root: Path) -> dict:
    return {
        m.parent.name: json.loads((m.parent / json.loads(m.read_text())["output"]).read_text())
        for m in (root / "data" / "default" / "numbers").glob("*/manifest.json")
    }


def _caches(result) -> list[str]:
    return sorted(
        str(getattr(e.step_materialization_data.materialization.metadata["skipwise/cache"], "value", ""))
        for e in result.get_asset_materialization_events()
    )


def test_context_config_and_resources_reach_the_body_and_config_counts(module, tmp_path):
    defs = module.defs
    assets, resources = list(defs.assets), dict(defs.resources)
    with dg.instance_for_test() as instance:
        first = dg.materialize(assets, resources=resources, instance=instance, partition_key="north")
        assert first.success and _caches(first) == ["miss"]
        assert _outputs(tmp_path)["north"] == {"store": "north", "value": 10, "word": "hi"}
        logs = [e.message or "" for e in instance.all_logs(first.run_id)]
        assert any("computing north" in m for m in logs)  # context.log is Dagster's log
        again = dg.materialize(assets, resources=resources, instance=instance, partition_key="north")
        assert _caches(again) == ["hit"]
        config = {"ops": {"numbers": {"config": {"factor": 3}}}}
        changed = dg.materialize(
            assets, resources=resources, instance=instance, partition_key="north", run_config=config
        )
        md = changed.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
        assert md["skipwise/cache"].value == "miss" and "params changed" in md["skipwise/reason"].value
        assert _outputs(tmp_path)["north"]["value"] == 15
        # The same run config again is a hit; back to the default restores the default's output (kept).
        assert _caches(
            dg.materialize(assets, resources=resources, instance=instance, partition_key="north", run_config=config)
        ) == ["hit"]
        assert _caches(dg.materialize(assets, resources=resources, instance=instance, partition_key="north")) == [
            "restore"
        ]
        assert _outputs(tmp_path)["north"]["value"] == 10
