"""Precise code versions: what cannot change an asset's output does not count.

Names are resolved with Python's scoping (a parameter named like an asset is not that asset), the
arguments of declaring decorators that only describe the asset (partitions, inputs, metadata) are
left out, and orchestration libraries count nothing but skipwise's byte-affecting parts, by scheme."""

import textwrap
from pathlib import Path

import pytest
from skipwise.core import codepaths
from skipwise.core import distributions
from skipwise.core import schemes
from skipwise.core.codeversion import CodeIndex


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"pk/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def version(root: Path, ref: str = "pk.bodies:f"):
    return CodeIndex(root).version(ref)


def changes(tmp_path: Path, files: dict[str, str], rel: str, old: str, new: str, ref: str = "pk.bodies:f") -> bool:
    """Whether replacing `old` by `new` in file `rel` changes the version of `ref`."""
    before = version(write(tmp_path / "a", files), ref).digest
    edited = {**files, rel: files[rel].replace(old, new)}
    assert edited[rel] != files[rel]
    return version(write(tmp_path / "b", edited), ref).digest != before


# -- names, resolved with Python's scoping --------------------------------------------------------

ASSETS = """
def flight_features(raw):
    return raw * 2


def training_set(flight_features, weather):
    return flight_features.height + weather


def uses_the_global(weather):
    return flight_features(weather)
"""


def test_a_parameter_named_like_a_module_function_is_not_that_function(tmp_path):
    files = {"pk/bodies.py": ASSETS}
    # the parameter, and attribute chains starting with it, stay local
    assert not changes(tmp_path / "1", files, "pk/bodies.py", "raw * 2", "raw * 3", ref="pk.bodies:training_set")
    assert "pk.bodies:flight_features" not in dict(version(tmp_path / "1" / "a", "pk.bodies:training_set").parts)
    # a real use of the module-level function still counts
    assert changes(tmp_path / "2", files, "pk/bodies.py", "raw * 2", "raw * 3", ref="pk.bodies:uses_the_global")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("return [helper + 1 for helper in xs]", id="comprehension-variable"),
        pytest.param("return {k: helper for k, helper in xs}", id="dict-comprehension"),
        pytest.param("return list(map(lambda helper: helper + 1, xs))", id="lambda-parameter"),
        pytest.param("helper = len(xs)\n    return helper", id="assignment"),
        pytest.param("helper: int = len(xs)\n    return helper", id="annotated-assignment"),
        pytest.param("for helper in xs:\n        pass\n    return helper", id="for-target"),
        pytest.param("with open(xs) as helper:\n        return helper.read()", id="with-target"),
        pytest.param(
            "try:\n        return 1\n    except ValueError as helper:\n        return helper", id="except-target"
        ),
        pytest.param("if any((helper := x) for x in xs):\n        return helper", id="walrus-in-comprehension"),
        pytest.param("match xs:\n        case [helper]:\n            return helper", id="match-capture"),
        pytest.param("def helper():\n        return 0\n    return helper()", id="nested-def"),
        pytest.param("class helper:\n        pass\n    return helper", id="nested-class"),
        pytest.param(
            "helper = 1\n    def inner():\n        nonlocal helper\n        helper = 2\n        return helper\n    return inner()",
            id="nonlocal",
        ),
        pytest.param("helper = 1\n    del helper\n    return 0", id="del"),
    ],
)
def test_a_local_name_shadows_the_module_name(tmp_path, body):
    files = {"pk/bodies.py": f"def helper():\n    return 101\n\n\ndef f(xs):\n    {body}\n"}
    assert not changes(tmp_path, files, "pk/bodies.py", "return 101", "return 105")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("global helper\n    helper = helper", id="global-declaration"),
        pytest.param("return [helper() for x in xs]", id="free-in-comprehension"),
        pytest.param("return [x for x in helper()]", id="first-iterable-in-enclosing-scope"),
        pytest.param("def inner(x=helper):\n        return x\n    return inner", id="default-of-nested-def"),
        pytest.param(
            "class C:\n        helper = 1\n        def m(self):\n            return helper()\n    return C().m()",
            id="method-does-not-see-class-body",
        ),
        pytest.param("from pk.bodies import helper as h\n    return h()", id="import-in-function"),
        pytest.param("def inner():\n        return helper()\n    return inner()", id="free-in-nested-def"),
    ],
)
def test_the_module_name_still_counts_where_python_would_find_it(tmp_path, body):
    files = {"pk/bodies.py": f"def helper():\n    return 101\n\n\ndef f(xs):\n    {body}\n"}
    assert changes(tmp_path, files, "pk/bodies.py", "return 101", "return 105")


def test_a_comprehension_variable_does_not_leak_into_the_function(tmp_path):
    # `helper` after the comprehension is the module's: the comprehension's variable is its own
    files = {
        "pk/bodies.py": "def helper():\n    return 1\n\n\ndef f(xs):\n    ys = [helper for helper in xs]\n    return helper(), ys\n"
    }
    assert changes(tmp_path, files, "pk/bodies.py", "return 1", "return 5")


def test_a_class_body_name_counts_conservatively(tmp_path):
    # in a class body, a name it binds may still be read as the module's before the binding
    files = {
        "pk/bodies.py": "def helper():\n    return 1\n\n\ndef f():\n    class C:\n        x = helper()\n        helper = 2\n    return C\n"
    }
    assert changes(tmp_path, files, "pk/bodies.py", "return 1", "return 5")


def test_an_import_in_the_function_is_still_followed(tmp_path):
    files = {
        "pk/helpers.py": "def scale(x):\n    return x * 2\n",
        "pk/bodies.py": "def f(x):\n    from pk.helpers import scale\n    return [scale(v) for v in x]\n",
    }
    assert changes(tmp_path, files, "pk/helpers.py", "x * 2", "x * 3")


# -- declaring decorator arguments ---------------------------------------------------------------

CALENDAR = """
import dagster as dg

DAILY = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")
#: how many days before its own each partition reads
LOOKBACK_DAYS = 7
"""

DEFINITIONS = """
import warnings

import dagster as dg

import skipwise as sw
from pk.calendar import DAILY, LOOKBACK_DAYS


@sw.asset(partitions_def=DAILY, group_name="features", description="Flights of a day.",
          ins={"raw": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_DAYS))})
def flights(context, raw):
    return raw


@sw.asset(partitions_def=DAILY)
def windowed(context, raw):
    return raw[-LOOKBACK_DAYS:]


def probabilities(predictions):
    return predictions


with warnings.catch_warnings():
    check = dg.asset_check(asset="flights", partitions_def=DAILY)(probabilities)
"""


def test_partitions_and_input_mappings_of_a_declaring_decorator_do_not_count(tmp_path):
    files = {"pk/calendar.py": CALENDAR, "pk/bodies.py": DEFINITIONS}
    # moving the partitions' end (in another module) or the upstream window does not recompute
    assert not changes(tmp_path / "1", files, "pk/calendar.py", "2014-01-01", "2013-07-01", ref="pk.bodies:flights")
    assert not changes(tmp_path / "2", files, "pk/bodies.py", "-LOOKBACK_DAYS", "-3", ref="pk.bodies:flights")
    assert not changes(tmp_path / "3", files, "pk/bodies.py", "Flights of a day.", "Flights.", ref="pk.bodies:flights")
    assert not changes(
        tmp_path / "4", files, "pk/calendar.py", "LOOKBACK_DAYS = 7", "LOOKBACK_DAYS = 3", ref="pk.bodies:flights"
    )
    assert "pk.calendar:DAILY" not in dict(version(tmp_path / "1" / "a", "pk.bodies:flights").parts)
    # a body that uses the constant still counts it
    assert changes(
        tmp_path / "5", files, "pk/calendar.py", "LOOKBACK_DAYS = 7", "LOOKBACK_DAYS = 3", ref="pk.bodies:windowed"
    )


def test_other_decorator_arguments_still_count(tmp_path):
    files = {
        "pk/bodies.py": """
            import skipwise as sw

            SCALE = 2

            @sw.asset(group_name="g", io_manager_key="x", something_new=SCALE)
            def f():
                return 1

            @sw.asset(SCALE)
            def g():
                return 1
            """
    }
    assert changes(tmp_path / "1", files, "pk/bodies.py", "SCALE = 2", "SCALE = 3")
    assert changes(tmp_path / "2", files, "pk/bodies.py", "SCALE = 2", "SCALE = 3", ref="pk.bodies:g")
    assert not changes(tmp_path / "3", files, "pk/bodies.py", 'group_name="g"', 'group_name="h"')


def test_a_declaring_argument_that_calls_project_code_still_counts(tmp_path):
    files = {
        "pk/bodies.py": """
            import skipwise as sw

            def partitions():
                return 1

            @sw.asset(partitions_def=partitions())
            def f():
                return 1
            """
    }
    assert changes(tmp_path, files, "pk/bodies.py", "return 1\n\n", "return 2\n\n")


# -- orchestration counts nothing, skipwise's byte-affecting parts by scheme ---------------------

LIBRARY_USER = """
import dagster as dg
import dagster_dbt

import skipwise as sw
from skipwise.tables.joins import as_of_join


@sw.asset(partitions_def=dg.StaticPartitionsDefinition(["a"]))
def f(context: dg.AssetExecutionContext, left, right):
    dagster_dbt.noop()
    return sw.as_of_join(left, right, 1), as_of_join, sw.IOManager

"""

REGISTRY_USER = """
import skipwise as sw


@sw.asset()
def g(rows):
    return sw.model_registry("m").version_of(rows)
"""


def test_orchestration_libraries_count_nothing(tmp_path, monkeypatch):
    write(tmp_path, {"pk/bodies.py": LIBRARY_USER})
    before = version(tmp_path)
    assert not any(v.startswith(("dagster", "skipwise==")) for _, v in before.parts)
    real = distributions.distribution_versions

    def upgraded(top):  # a patch release of Dagster and a new skipwise
        return {
            "dagster": ("dagster==1.13.99", ""),
            "dagster_dbt": ("dagster-dbt==0.29.99", ""),
            "skipwise": ("skipwise==9.0.0", ""),
        }.get(top) or real(top)

    monkeypatch.setattr(distributions, "distribution_versions", upgraded)
    monkeypatch.setattr(codepaths, "distribution_versions", upgraded)
    monkeypatch.setattr(distributions, "fast_distribution", lambda top: upgraded(top)[0])
    assert version(tmp_path).digest == before.digest


def test_skipwise_parts_count_by_their_scheme_numbers(tmp_path, monkeypatch):
    write(tmp_path, {"pk/bodies.py": LIBRARY_USER})
    parts = dict(version(tmp_path).parts)
    assert parts["skipwise:as_of_join"] == "scheme:as_of_join/1"
    assert parts["skipwise.tables.joins:as_of_join"] == "scheme:as_of_join/1"
    assert parts["skipwise:IOManager"] == schemes.ORCHESTRATION
    assert parts["dagster_dbt:noop"] == schemes.ORCHESTRATION
    assert parts["skipwise.tables.joins:__module__"] == "scheme:as_of_join/1"  # imported: the module runs
    write(tmp_path, {"pk/registry.py": REGISTRY_USER})
    refs = ("pk.bodies:f", "pk.registry:g")
    before = [version(tmp_path, ref).digest for ref in refs]
    monkeypatch.setitem(schemes.SCHEMES, "as_of_join", 2)
    after = [version(tmp_path, ref).digest for ref in refs]
    assert after[0] != before[0] and after[1] == before[1]  # only the join's users recompute


def test_schemes_are_found_by_the_longest_dotted_prefix():
    assert schemes.value_of("skipwise.tables.joins.as_of_join") == "scheme:as_of_join/1"
    assert schemes.value_of("skipwise.models.registry.ModelRegistry.version_of") == "scheme:model_registry/1"
    assert schemes.value_of("skipwise.tables.reading") == "scheme:read/1,scheme:relation/1,scheme:scan/1"
    assert schemes.value_of("skipwise.asset") == schemes.ORCHESTRATION
    assert schemes.value_of("skipwise.engine.project.Project") == schemes.ORCHESTRATION
    assert schemes.is_orchestration("dagster_webserver") and not schemes.is_orchestration("dagsterish")


def test_a_project_package_named_like_dagster_is_still_followed(tmp_path):
    write(tmp_path, {"dagster_project/__init__.py": "", "dagster_project/assets.py": "def f():\n    return 1\n"})
    v = CodeIndex(tmp_path).version("dagster_project.assets:f")
    assert "dagster_project.assets:f" in dict(v.parts)


def test_the_demo_assets_reach_only_what_their_bodies_use():
    repo = Path(__file__).resolve().parents[2]
    idx = CodeIndex(repo)
    training = dict(idx.version("assets.definitions:training_set").parts)
    # its parameters are named after the upstream assets: they are frames, not those functions
    assert "assets.definitions:flight_features" not in training
    assert "assets.features.flights:build_flight_features" not in training
    assert "assets.features.training:as_of_join" in training
    predictions = dict(idx.version("assets.definitions:delay_predictions").parts)
    assert "assets.definitions:delay_model" not in predictions and "skipwise:train_or_restore" not in predictions
    for name in ("flight_features", "weather_features", "training_set", "delay_model", "delay_predictions"):
        parts = idx.version(f"assets.definitions:{name}").parts
        assert "assets.calendar:DAILY" not in dict(parts)  # the partitioning counts per partition, not as code
        assert not any(v.startswith(("dagster==", "skipwise==")) or "skipwise@" in v for _, v in parts)
