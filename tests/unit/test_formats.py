"""Output formats: round trips, deterministic bytes (also across processes), annotations, conversion and combining."""

from __future__ import annotations

import hashlib
import inspect
import json
import subprocess
import sys
import typing
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import torch
from skipwise import formats as F

REPO = Path(__file__).resolve().parents[2]

# Built identically here and in a fresh interpreter, to compare hashes across processes.
SAMPLES = """
import pandas as pd, polars as pl, pyarrow as pa, torch
samples = {
    "polars": pl.DataFrame({"a": [1, 2, 3], "s": ["x", None, "z"], "f": [0.5, 1.5, None]}),
    "pandas": pd.DataFrame({"a": [1, 2, 3], "s": ["x", None, "z"]}, index=pd.Index([10, 20, 30], name="id")),
    "arrow": pa.table({"a": [1, 2, 3], "s": ["x", "y", None]}),
    "torch": {"layer": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3)},
              "step": torch.tensor(7)},
}
"""


def samples() -> dict:
    scope: dict = {}
    exec(SAMPLES, scope)
    return scope["samples"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)


# --- round trips and determinism --------------------------------------------------------------------------------


def test_registry_names_and_extensions():
    assert {n: f.ext for n, f in F.FORMATS.items()} == {
        "polars": "parquet",
        "lazy": "parquet",
        "pandas": "parquet",
        "arrow": "parquet",
        "json": "json",
        "bytes": "bin",
        "torch": "pt",
    }
    assert all(F.get(n) is f and f.name == n for n, f in F.FORMATS.items())
    with pytest.raises(Exception):
        F.FORMATS["json"].name = "other"  # frozen


def test_get_unknown_lists_names_and_suggests():
    with pytest.raises(ValueError, match=r"did you mean 'polars'") as e:
        F.get("polar")
    assert all(n in str(e.value) for n in F.FORMATS)
    with pytest.raises(ValueError) as e:
        F.get("zzzz")
    assert "did you mean" not in str(e.value) and "torch" in str(e.value)


def test_round_trips():
    s = samples()
    back = F.get("polars").decode(F.get("polars").encode(s["polars"]))
    assert isinstance(back, pl.DataFrame) and back.equals(s["polars"])

    lazy = F.get("lazy").decode(F.get("lazy").encode(s["polars"].lazy()))
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect().equals(s["polars"])

    pdf = F.get("pandas").decode(F.get("pandas").encode(s["pandas"]))
    assert isinstance(pdf, pd.DataFrame)
    pd.testing.assert_frame_equal(pdf, s["pandas"])  # the non-default index survives

    table = F.get("arrow").decode(F.get("arrow").encode(s["arrow"]))
    assert isinstance(table, pa.Table) and table.equals(s["arrow"])

    value = {"b": [1, 2.5, None, True], "a": {"ü": "ß"}}
    data = F.get("json").encode(value)
    assert data == '{"a":{"ü":"ß"},"b":[1,2.5,null,true]}'.encode()
    assert F.get("json").decode(data) == value

    for raw in (b"\x00\x01", bytearray(b"ab"), memoryview(b"xyz")):
        out = F.get("bytes").decode(F.get("bytes").encode(raw))
        assert type(out) is bytes and out == bytes(raw)

    state = F.get("torch").decode(F.get("torch").encode(s["torch"]))
    assert same_state(state, s["torch"])
    tensor = F.get("torch").decode(F.get("torch").encode(torch.arange(4)))
    assert torch.equal(tensor, torch.arange(4))


def test_pandas_index_is_stored_only_when_not_default():
    import pyarrow.parquet as pq

    def stored(df):
        table = pq.read_table(pa.BufferReader(F.get("pandas").encode(df)))
        return table.column_names, json.loads(table.schema.metadata[b"pandas"])["index_columns"]

    assert stored(pd.DataFrame({"a": [1, 2]})) == (["a"], [])
    # A sliced frame's RangeIndex(1, 3) is information: it is kept as a real column, and comes back.
    sliced = pd.DataFrame({"a": [1, 2, 3]}).iloc[1:]
    assert stored(sliced) == (["a", "__index_level_0__"], ["__index_level_0__"])
    pd.testing.assert_frame_equal(
        F.get("pandas").decode(F.get("pandas").encode(sliced)), sliced, check_index_type=False
    )


def test_encode_twice_gives_same_bytes():
    s = samples()
    for name, value in [
        ("polars", s["polars"]),
        ("lazy", s["polars"].lazy()),
        ("pandas", s["pandas"]),
        ("arrow", s["arrow"]),
        ("torch", s["torch"]),
        ("json", {"b": 1, "a": [2]}),
    ]:
        assert F.get(name).encode(value) == F.get(name).encode(samples()[name] if name in s else value), name


def test_bytes_are_the_same_in_a_fresh_process():
    here = {name: sha(F.get(name).encode(value)) for name, value in samples().items()}
    code = SAMPLES + (
        "import hashlib, json\nfrom skipwise import formats as F\n"
        "print(json.dumps({n: hashlib.sha256(F.get(n).encode(v)).hexdigest() for n, v in samples.items()}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == here


def test_parquet_metadata_has_nothing_run_dependent():
    import pyarrow.parquet as pq

    md = pq.ParquetFile(pa.BufferReader(F.get("arrow").encode(samples()["arrow"]))).metadata
    assert md.created_by.startswith("parquet-cpp-arrow version")
    assert set(md.metadata) == {b"ARROW:schema"}
    assert md.row_group(0).column(0).statistics is None  # write_statistics=False


def test_torch_equal_state_dicts_built_differently_give_same_bytes():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    plain = {"a": base[:1].clone(), "b": base.t().contiguous(), "c": {"x": torch.ones(2)}}
    # Other insertion order, a view into a larger storage, a transposed layout, requires_grad, a Parameter,
    # an OrderedDict and storage shared between entries: torch.save alone gives different bytes for each.
    odd = OrderedDict(c={"x": torch.nn.Parameter(torch.ones(2))}, b=base.t(), a=base[:1])
    odd["a"].requires_grad_(False)
    grad = {"b": base.t().clone().requires_grad_(True), "a": base[:1], "c": {"x": torch.ones(2)}}
    enc = F.get("torch").encode
    assert enc(plain) == enc(odd) == enc(grad)
    assert enc(plain) != enc({**plain, "a": base[:1] + 1})


# --- refusals --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("polars", pd.DataFrame({"a": [1]}), "polars.DataFrame"),
        ("lazy", pl.DataFrame({"a": [1]}), "polars.LazyFrame"),
        ("pandas", pl.DataFrame({"a": [1]}), "pandas.DataFrame"),
        ("arrow", pl.DataFrame({"a": [1]}), "pyarrow.Table"),
        ("bytes", "text", "bytes"),
        ("torch", {"w": [1.0]}, "torch.Tensor"),
    ],
)
def test_encode_wrong_type_names_expected(name, value, expected):
    with pytest.raises(TypeError, match=expected.replace(".", r"\.")):
        F.get(name).encode(value)


@pytest.mark.parametrize(
    "value, where",
    [
        ({"a": [1, float("nan")]}, r"\$\['a'\]\[1\]"),
        ({"x": {"y": float("inf")}}, r"\$\['x'\]\['y'\]"),
        ([{1: "a"}], r"key 1 at \$\[0\]"),
        ({"t": (1, 2)}, r"tuple at \$\['t'\]"),
        ({"s": {1, 2}}, r"set at \$\['s'\]"),
    ],
)
def test_json_refuses_non_json_with_path(value, where):
    with pytest.raises(TypeError, match=where):
        F.get("json").encode(value)


def test_missing_optional_library_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(ImportError, match="pip install polars"):
        F.get("polars").decode(b"")


def test_importing_and_reading_annotations_imports_no_heavy_library():
    code = (
        "import sys\nfrom skipwise import formats as F\n"
        "assert F.for_annotation('pl.DataFrame').name == 'polars'\n"
        "assert F.for_annotation('dict[str, torch.Tensor]').name == 'torch'\n"
        "print(sorted(m for m in ('polars', 'pandas', 'pyarrow', 'torch', 'numpy') if m in sys.modules))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


# --- annotations and values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "annotation, name",
    [
        (pl.DataFrame, "polars"),
        (pl.LazyFrame, "lazy"),
        (pd.DataFrame, "pandas"),
        (pa.Table, "arrow"),
        (bytes, "bytes"),
        (dict, "json"),
        (list, "json"),
        (int, "json"),
        (float, "json"),
        (str, "json"),
        (bool, "json"),
        (dict[str, int], "json"),
        (list[dict[str, float]], "json"),
        (typing.Dict[str, typing.Any], "json"),
        (typing.Optional[int], "json"),
        (dict[str, torch.Tensor], "torch"),
        (torch.Tensor, "torch"),
        (typing.Mapping[str, dict[str, torch.Tensor]], "torch"),
        ("pl.DataFrame", "polars"),
        ("polars.DataFrame", "polars"),
        ("pd.DataFrame", "pandas"),
        ("pandas.DataFrame", "pandas"),
        ("pa.Table", "arrow"),
        ("pyarrow.Table", "arrow"),
        ("bytes", "bytes"),
        ("dict", "json"),
        ("dict[str, Any]", "json"),
        ("dict[str, torch.Tensor]", "torch"),
        ("torch.Tensor", "torch"),
        ("list", "json"),
        ("int", "json"),
        ("float", "json"),
        ("str", "json"),
        ("bool", "json"),
        ("pl.LazyFrame", "lazy"),
        ("typing.Dict[str, int]", "json"),
        ("int | None", "json"),
        ("Optional[str]", "json"),
    ],
)
def test_for_annotation(annotation, name):
    fmt = F.for_annotation(annotation)
    assert fmt is not None and fmt.name == name


@pytest.mark.parametrize("annotation", [None, inspect.Parameter.empty, typing.Any, "Any", "None"])
def test_for_annotation_absent_is_none(annotation):
    assert F.for_annotation(annotation) is None


@pytest.mark.parametrize(
    "annotation, text",
    [
        (set, "set"),
        ("Output", "Output"),
        (dict[str, pl.DataFrame], "dict[str, polars.DataFrame]"),
        (typing.Optional[pl.DataFrame], "polars.DataFrame | None"),
        ("list[pl.DataFrame]", "list[pl.DataFrame]"),
        ("DataFrame", "ambiguous"),
        (dict[int, str], "dict[int, str]"),
        ("pl.DataFrame[", "pl.DataFrame["),
    ],
)
def test_unsupported_annotation_names_the_type(annotation, text):
    with pytest.raises(TypeError, match=r"unsupported type") as e:
        F.for_annotation(annotation)
    assert text in str(e.value) and F.SUPPORTED in str(e.value)


def test_describe():
    assert F.describe(pl.DataFrame) == "polars.DataFrame"
    assert F.describe(dict[str, pa.Table]) == "dict[str, pyarrow.Table]"
    assert F.describe(inspect.Parameter.empty) == "no annotation"
    assert F.describe(int | None) == "int | None"
    assert F.describe("pl.DataFrame") == "pl.DataFrame"


@pytest.mark.parametrize(
    "value, name",
    [
        (pl.DataFrame({"a": [1]}), "polars"),
        (pl.LazyFrame({"a": [1]}), "lazy"),
        (pd.DataFrame({"a": [1]}), "pandas"),
        (pa.table({"a": [1]}), "arrow"),
        (b"x", "bytes"),
        (bytearray(b"x"), "bytes"),
        (torch.ones(1), "torch"),
        ({"w": torch.ones(1), "sub": {"b": torch.zeros(1)}}, "torch"),
        ({"a": 1}, "json"),
        ([1, 2], "json"),
        ("s", "json"),
        (3, "json"),
        (2.5, "json"),
        (True, "json"),
        (None, "json"),
        ({}, "json"),
    ],
)
def test_for_value(value, name):
    assert F.for_value(value).name == name


@pytest.mark.parametrize("value", [{1, 2}, (1, 2), object()])
def test_for_value_unsupported(value):
    with pytest.raises(TypeError, match="supported: polars.DataFrame"):
        F.for_value(value)


# --- convert and combine ---------------------------------------------------------------------------------------


def test_convert_between_frames():
    df = pl.DataFrame({"a": [1, 2], "s": ["x", "y"]})
    assert (
        F.convert(df, None) is df and F.convert(df, inspect.Parameter.empty) is df and F.convert(df, typing.Any) is df
    )
    assert isinstance(F.convert(df, pl.LazyFrame), pl.LazyFrame)
    as_pd = F.convert(df, "pd.DataFrame")
    assert isinstance(as_pd, pd.DataFrame) and as_pd["a"].tolist() == [1, 2]
    as_pa = F.convert(df, pa.Table)
    assert isinstance(as_pa, pa.Table) and as_pa.column("s").to_pylist() == ["x", "y"]
    assert F.convert(as_pd, pl.DataFrame).equals(df)
    assert F.convert(as_pa, "pl.DataFrame").equals(df)
    assert F.convert(df.lazy(), pl.DataFrame).equals(df)
    assert F.convert(as_pd, pa.Table).column("a").to_pylist() == [1, 2]
    assert F.convert(as_pa, "pl.LazyFrame").collect().equals(df)
    assert F.convert(df, pl.DataFrame | None) is df and F.convert(None, pl.DataFrame | None) is None


def test_convert_refuses_clear_mismatch():
    with pytest.raises(TypeError, match=r"bytes to an input annotated polars\.DataFrame"):
        F.convert(b"raw", pl.DataFrame)
    with pytest.raises(TypeError, match="annotated bytes"):
        F.convert(pl.DataFrame({"a": [1]}), bytes)
    with pytest.raises(TypeError, match="annotated int"):
        F.convert(pl.DataFrame({"a": [1]}), int)
    assert F.convert(bytearray(b"x"), bytes) == b"x"
    assert F.convert({"a": 1}, dict[str, int]) == {"a": 1}


def test_combine_dict_annotation_gives_one_value_per_partition():
    parts = {"2013-01-01": pl.DataFrame({"a": [1]}), "2013-01-02": pl.DataFrame({"a": [2]})}
    out = F.combine(parts, dict[str, pd.DataFrame])
    assert list(out) == list(parts) and all(isinstance(v, pd.DataFrame) for v in out.values())
    out = F.combine(parts, "dict[str, pl.DataFrame]")
    assert list(out) == list(parts) and out["2013-01-02"].equals(parts["2013-01-02"])
    assert F.combine({"a": b"1", "b": b"2"}, dict[str, bytes]) == {"a": b"1", "b": b"2"}
    assert F.combine({}, dict[str, pl.DataFrame]) == {}
    assert F.combine({}, "dict") == {}


def test_combine_concatenates_frames_in_key_order():
    parts = {"k1": pl.DataFrame({"a": [1, 2]}, schema={"a": pl.Int32}), "k2": pl.DataFrame({"a": [3]})}
    out = F.combine(parts, pl.DataFrame)
    assert isinstance(out, pl.DataFrame) and out["a"].to_list() == [1, 2, 3]  # int widths relaxed
    assert F.combine(parts, None)["a"].to_list() == [1, 2, 3]
    lazy = F.combine(parts, "pl.LazyFrame")
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect()["a"].to_list() == [1, 2, 3]
    pdf = F.combine({"x": pd.DataFrame({"a": [1]}), "y": pd.DataFrame({"a": [2]})}, pd.DataFrame)
    assert pdf["a"].tolist() == [1, 2] and list(pdf.index) == [0, 1]
    table = F.combine({"x": pa.table({"a": [1]}), "y": pa.table({"a": [2], "b": ["z"]})}, pa.Table)
    assert table.column("a").to_pylist() == [1, 2] and table.column("b").to_pylist() == [None, "z"]
    mixed = F.combine({"x": pd.DataFrame({"a": [1]}), "y": pa.table({"a": [2]})}, pl.DataFrame)
    assert mixed["a"].to_list() == [1, 2]
    assert F.combine({"x": [1, 2], "y": [3]}, list) == [1, 2, 3]
    assert F.combine({"only": 5}, int) == 5


def test_combine_empty_frames():
    assert F.combine({}, pl.DataFrame).shape == (0, 0)
    assert isinstance(F.combine({}, "pl.LazyFrame"), pl.LazyFrame)
    assert isinstance(F.combine({}, pd.DataFrame), pd.DataFrame)
    assert F.combine({}, pa.Table).num_rows == 0
    assert F.combine({}, list) == []


@pytest.mark.parametrize(
    "values, annotation, what",
    [
        ({"a": b"1", "b": b"2"}, bytes, "bytes"),
        ({"a": b"1", "b": b"2"}, None, "bytes"),
        ({"a": 1, "b": 2}, int, "int"),
        ({"a": torch.ones(1), "b": torch.ones(1)}, torch.Tensor, "torch.Tensor"),
    ],
)
def test_combine_refuses_many_partitions_of_unmergeable_values(values, annotation, what):
    with pytest.raises(TypeError, match=rf"2 upstream partitions .* dict\[str, {what.replace('.', '[.]')}\]"):
        F.combine(values, annotation)
