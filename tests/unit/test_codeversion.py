"""Code versions come from source: the function and the project helpers it reaches, nothing else."""

import textwrap
from pathlib import Path

import pytest

from pipelines.core.codeversion import CodeIndex
from pipelines.core.errors import ConfigError

HELPERS = '''
"""Helpers."""
SCALE = 2


def shared(x):
    return x * SCALE


def only_weather(x):
    return x + 1
'''

BODIES = '''
import polars as pl
from proj.helpers import shared
from proj import helpers


def flights(ctx, df):
    """Flights."""
    return shared(df)  # a comment


def weather(ctx, df):
    return helpers.only_weather(df)


def lazy(ctx, df):
    from proj.helpers import only_weather
    return only_weather(df)
'''


def make(tmp: Path, helpers: str = HELPERS, bodies: str = BODIES) -> CodeIndex:
    pkg = tmp / "proj"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text(textwrap.dedent(helpers))
    (pkg / "bodies.py").write_text(textwrap.dedent(bodies))
    return CodeIndex(tmp)


def versions(idx: CodeIndex) -> dict[str, str]:
    return {n: idx.version(f"proj.bodies:{n}").digest for n in ("flights", "weather", "lazy")}


def test_comments_docstrings_and_formatting_do_not_count(tmp_path):
    before = versions(make(tmp_path))
    reformatted = BODIES.replace('"""Flights."""', '"""Flights, documented better."""').replace(
        "return shared(df)  # a comment", "return shared(\n        df\n    )"
    )
    assert versions(make(tmp_path, bodies=reformatted)) == before


def test_editing_a_helper_changes_only_its_users(tmp_path):
    before = versions(make(tmp_path))
    after = versions(make(tmp_path, helpers=HELPERS.replace("x + 1", "x + 2")))
    assert after["flights"] == before["flights"]
    assert after["weather"] != before["weather"]  # reached through `helpers.only_weather`
    assert after["lazy"] != before["lazy"]  # reached through an import inside the function


def test_module_constants_used_by_a_helper_count(tmp_path):
    before = versions(make(tmp_path))
    after = versions(make(tmp_path, helpers=HELPERS.replace("SCALE = 2", "SCALE = 3")))
    assert after["flights"] != before["flights"]
    assert after["weather"] == before["weather"]


def test_third_party_modules_count_by_version(tmp_path):
    parts = dict(make(tmp_path).version("proj.bodies:flights").parts)
    assert not any(k.startswith("polars") for k in parts)  # pl is imported but not used by flights
    idx = make(tmp_path, bodies=BODIES.replace("return shared(df)", "return pl.DataFrame(shared(df))"))
    parts = dict(idx.version("proj.bodies:flights").parts)
    assert parts["polars:DataFrame"].startswith("polars==")


def test_unknown_function_is_a_clear_error(tmp_path):
    idx = make(tmp_path)
    with pytest.raises(ConfigError, match="no top-level definition"):
        idx.version("proj.bodies:nope")
    with pytest.raises(ConfigError, match="not a file"):
        idx.version("proj.missing:f")


def test_demo_assets_have_independent_code_versions():
    repo = Path(__file__).resolve().parents[2]
    idx = CodeIndex(repo)
    flights = dict(idx.version("assets.bodies:flight_features").parts)
    weather = dict(idx.version("assets.bodies:weather_features").parts)
    assert "assets.features.flights:build_flight_features" in flights
    assert "assets.features.weather:build_weather_features" not in flights
    assert "assets.features.weather:build_weather_features" in weather
    assert "assets.graph:LOOKBACK_DAYS" in flights
