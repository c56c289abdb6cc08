"""Mistakes in an `@sw.asset` declaration fail when the module is imported (or, for partition
mappings, when the graph resolves), with a ConfigError that names the asset and says the fix."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from skipwise.core.errors import ConfigError

HEADER = """\
import dagster as dg
import polars as pl

import skipwise as sw

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")
raw_sales = sw.dvc_source("raw_sales", "data/raw/sales", partitions_def=DAILY)
"""


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch):
    """Write a module (with a project marker next to it) under tmp_path; return its unique name."""
    (tmp_path / "pyproject.toml").write_text('[tool.skipwise]\ndefinitions = "m"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SKIPWISE_ROOT", raising=False)
    names: list[str] = []

    def write(body: str) -> str:
        name = f"authoring_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(HEADER + "\n" + textwrap.dedent(body))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def import_error(write_module, body: str) -> ConfigError:
    name = write_module(body)
    with pytest.raises(ConfigError) as info:
        importlib.import_module(name)
    return info.value


def test_a_misspelt_ins_entry_names_the_parameter_it_probably_meant(write_module):
    err = import_error(
        write_module,
        """
        @sw.asset(partitions_def=DAILY, ins={"raw_salez": dg.AssetIn(partition_mapping=dg.IdentityPartitionMapping())})
        def sales(raw_sales: pl.DataFrame) -> pl.DataFrame:
            return raw_sales
    """,
    )
    text = str(err)
    assert "asset sales" in text
    assert "raw_salez" in text
    assert "did you mean 'raw_sales'" in text


def test_an_unsupported_return_annotation_is_refused_at_import(write_module):
    err = import_error(
        write_module,
        """
        @sw.asset(partitions_def=DAILY)
        def store_set(raw_sales: pl.DataFrame) -> set:
            return set(raw_sales["store"])
    """,
    )
    text = str(err)
    assert "asset store_set" in text
    assert "return annotation" in text
    assert "fix:" in text and "return one of" in text


def test_an_unsupported_input_annotation_names_the_input(write_module):
    err = import_error(
        write_module,
        """
        @sw.asset(partitions_def=DAILY)
        def counted(raw_sales: set) -> pl.DataFrame:
            return pl.DataFrame({"n": [len(raw_sales)]})
    """,
    )
    text = str(err)
    assert "asset counted" in text
    assert "input raw_sales" in text
    assert "fix:" in text and "annotate raw_sales" in text


@pytest.mark.parametrize("params", ["*inputs", "raw_sales: pl.DataFrame, **more"])
def test_variadic_parameters_are_refused(write_module, params):
    err = import_error(
        write_module,
        f"""
        @sw.asset(partitions_def=DAILY)
        def gathered({params}) -> pl.DataFrame:
            return pl.DataFrame()
    """,
    )
    text = str(err)
    assert "asset gathered" in text
    assert "not supported" in text
    assert "fix:" in text


def test_an_asset_defined_inside_a_function_must_move_to_the_top_level(write_module):
    err = import_error(
        write_module,
        """
        def make():
            @sw.asset(partitions_def=DAILY)
            def nested(raw_sales: pl.DataFrame) -> pl.DataFrame:
                return raw_sales
            return nested

        nested = make()
    """,
    )
    text = str(err)
    assert "asset nested" in text
    assert "top level" in text


def test_sw_asset_applied_to_something_not_a_function(write_module):
    err = import_error(
        write_module,
        """
        thing = sw.asset(42)
    """,
    )
    text = str(err)
    assert "decorates a function" in text
    assert "fix:" in text


def test_sw_asset_applied_to_a_class(write_module):
    err = import_error(
        write_module,
        """
        @sw.asset
        class Sales:
            def __init__(self, raw_sales: pl.DataFrame):
                self.frame = raw_sales
    """,
    )
    text = str(err)
    assert "decorates a function" in text and "a class" in text
    assert "fix:" in text


def test_sw_asset_refuses_a_lambda(write_module):
    err = import_error(
        write_module,
        """
        thing = sw.asset(lambda: pl.DataFrame())
    """,
    )
    assert "lambda" in str(err) and "fix:" in str(err)


def test_sw_asset_stacked_on_a_dagster_asset(write_module):
    err = import_error(
        write_module,
        """
        @sw.asset(partitions_def=DAILY)
        @dg.asset(partitions_def=DAILY)
        def twice() -> pl.DataFrame:
            return pl.DataFrame()
    """,
    )
    assert "decorates a function" in str(err)
    assert "AssetsDefinition" in str(err)


def test_a_partition_mapping_that_maps_nothing_fails_when_the_graph_resolves(write_module):
    from skipwise.adapters.dagster.graph import graph_of

    name = write_module("""
        REGIONS = dg.StaticPartitionsDefinition(["north", "south"])

        @sw.asset(partitions_def=REGIONS)
        def by_region(raw_sales: pl.DataFrame) -> pl.DataFrame:  # default mapping: identity, static <- daily
            return raw_sales

        defs = dg.Definitions(assets=[raw_sales, by_region], resources={"skipwise": sw.IOManager()})
    """)
    module = importlib.import_module(name)  # the declaration itself is fine
    with pytest.raises(ConfigError) as info:
        graph_of(module.defs)
    text = str(info.value)
    assert "asset by_region" in text
    assert "maps none of its" in text
    assert "raw_sales" in text
    assert "AllPartitionMapping" in text


def test_a_well_formed_module_imports_and_resolves(write_module):
    """The control: the same shapes, declared right, raise nothing (so the errors above are the mistakes')."""
    from skipwise.adapters.dagster.graph import graph_of

    name = write_module("""
        REGIONS = dg.StaticPartitionsDefinition(["north", "south"])

        @sw.asset(partitions_def=DAILY, ins={"raw_sales": dg.AssetIn(partition_mapping=dg.IdentityPartitionMapping())})
        def sales(raw_sales: pl.DataFrame) -> pl.DataFrame:
            return raw_sales

        @sw.asset(partitions_def=REGIONS, ins={"raw_sales": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
        def by_region(context: dg.AssetExecutionContext, raw_sales: dict[str, pl.DataFrame]) -> dict:
            return {"region": context.partition_key}

        defs = dg.Definitions(assets=[raw_sales, sales, by_region], resources={"skipwise": sw.IOManager()})
    """)
    module = importlib.import_module(name)
    graph, _, _ = graph_of(module.defs)
    assert {a.name for a in graph.assets} == {"sales", "by_region"}


def test_an_input_no_asset_produces_is_named_with_the_closest_one(write_module):
    from skipwise.adapters.dagster.graph import graph_of

    module = importlib.import_module(
        write_module("""
        @sw.asset
        def sales() -> pl.DataFrame:
            return pl.DataFrame({"a": [1]})

        @sw.asset
        def report(salez: pl.DataFrame) -> pl.DataFrame:
            return salez

        defs = dg.Definitions(assets=[sales, report], resources={"skipwise": sw.IOManager()})
    """)
    )
    with pytest.raises(ConfigError) as e:
        graph_of(module.defs)
    assert "asset report reads 'salez'" in str(e.value) and "did you mean 'sales'" in str(e.value)


def test_a_materialize_result_without_a_value_type_is_refused_at_import(write_module):
    err = import_error(
        write_module,
        """
        @sw.asset
        def report() -> dg.MaterializeResult:
            return dg.MaterializeResult(metadata={"rows": 1})
        """,
    )
    assert "report" in err.message and "dg.MaterializeResult without a value type" in err.message
    assert "plain @dg.asset" in err.hint and "dg.MaterializeResult[pl.DataFrame]" in err.hint


def test_a_materialize_result_of_a_value_type_is_accepted(write_module):
    name = write_module(
        """
        @sw.asset
        def report() -> dg.MaterializeResult[dict]:
            return dg.MaterializeResult(value={"rows": 1}, metadata={"rows": 1})
        """
    )
    assert importlib.import_module(name).report.key.path == ["report"]


def test_sw_asset_stacked_on_a_multi_asset_says_what_is_supported(write_module):
    err = import_error(
        write_module,
        """
        @sw.asset
        @dg.multi_asset(outs={"low": dg.AssetOut(), "high": dg.AssetOut()})
        def split():
            yield dg.Output(1, output_name="low")
            yield dg.Output(2, output_name="high")
        """,
    )
    assert (
        "cannot wrap a multi-asset (high, low)" in err.message or "cannot wrap a multi-asset (low, high)" in err.message
    )
    assert "one @sw.asset per output" in err.hint and "plain @dg.multi_asset" in err.hint
