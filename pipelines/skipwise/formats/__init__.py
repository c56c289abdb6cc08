"""Output formats: how an asset's value becomes bytes (and back), and how inputs are shaped for a function.

Every encoder is deterministic (equal values give equal bytes, in any process), because outputs are content-hashed
and early cutoff only works when an unchanged value hashes the same. polars, pandas, pyarrow and torch are imported
only inside the functions that need them, so importing this module (or reading annotations) stays cheap.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _codecs as c
from ._annotations import SUPPORTED, Node, describe, is_absent, kind_of_type, parse

__all__ = ["FORMATS", "SUPPORTED", "Format", "combine", "convert", "describe", "for_annotation", "for_value", "get"]


@dataclass(frozen=True)
class Format:
    """One output format: a name, a file extension (no dot) and a deterministic encode/decode pair."""

    name: str
    ext: str
    _encode: Callable[[Any], bytes] = field(repr=False, compare=False)
    _decode: Callable[[bytes], Any] = field(repr=False, compare=False)

    def encode(self, value: Any) -> bytes:
        """The value's bytes; the same value always gives the same bytes. TypeError naming the expected type."""
        return self._encode(value)

    def decode(self, data: bytes) -> Any:
        """The value back, as this format's natural in-memory type (e.g. a polars DataFrame for "polars")."""
        return self._decode(data)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("polars", "parquet", c.encode_polars, c.decode_polars),
        Format("lazy", "parquet", c.encode_lazy, c.decode_lazy),
        Format("pandas", "parquet", c.encode_pandas, c.decode_pandas),
        Format("arrow", "parquet", c.encode_arrow, c.decode_arrow),
        Format("json", "json", c.encode_json, c.decode_json),
        Format("bytes", "bin", c.encode_bytes, c.decode_bytes),
        Format("torch", "pt", c.encode_torch, c.decode_torch),
    )
}

_FRAMES = ("polars", "lazy", "pandas", "arrow")
_DIRECT = {
    "polars": "polars",
    "lazy": "lazy",
    "pandas": "pandas",
    "arrow": "arrow",
    "bytes": "bytes",
    "tensor": "torch",
}


def get(name: str) -> Format:
    """The format called `name`; ValueError listing the known names (and the closest one) otherwise."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), FORMATS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown format {name!r}{hint} (known: {', '.join(FORMATS)})") from None


def _jsonish(n: Node) -> bool:
    if n.kind in ("str", "scalar", "any", "none"):
        return True
    if n.kind == "dict":
        # JSON object keys are strings; json.dumps would silently turn int keys into strings.
        return not n.args or (n.args[0].kind in ("str", "any") and _jsonish(n.args[-1]))
    if n.kind in ("list", "union"):
        return all(_jsonish(a) for a in n.args)
    return False


def _tensorish(n: Node) -> bool:
    if n.kind == "tensor":
        return True
    return n.kind == "dict" and len(n.args) == 2 and n.args[0].kind in ("str", "any") and _tensorish(n.args[1])


def _format_of(n: Node) -> str | None:
    if n.kind in _DIRECT:
        return _DIRECT[n.kind]
    if _tensorish(n):
        return "torch"
    if _jsonish(n):
        return "json"
    if n.kind == "union":
        # `X | None` keeps X's format; None itself can only be written by json.
        members = [a for a in n.args if a.kind != "none"]
        names = {_format_of(a) for a in members}
        if len(names) == 1 and None not in names and (len(members) == len(n.args) or names == {"json"}):
            return names.pop()
    return None


def for_annotation(annotation: Any) -> Format | None:
    """The format a return annotation asks for; None when there is none (decide from the value with for_value).

    A present but unsupported annotation raises TypeError, so a wrong type is reported when the graph is loaded,
    not after the function has run.
    """
    if is_absent(annotation):
        return None
    name = _format_of(parse(annotation))
    if name is None:
        hint = ""
        if isinstance(annotation, str) and annotation.strip() in ("DataFrame", "Table"):
            hint = " (a bare name is ambiguous in a string annotation: write pl.DataFrame, pd.DataFrame or pa.Table)"
        raise TypeError(f"unsupported type {describe(annotation)}{hint}; supported: {SUPPORTED}")
    return FORMATS[name]


def _has_tensor(value: Any) -> bool:
    if kind_of_type(type(value)) == "tensor":
        return True
    return isinstance(value, Mapping) and any(_has_tensor(v) for v in value.values())


def for_value(value: Any) -> Format:
    """The format for a runtime value (when the function has no return annotation); TypeError if none fits."""
    kind = kind_of_type(type(value))
    if kind in _DIRECT:
        return FORMATS[_DIRECT[kind]]
    if kind == "dict" and _has_tensor(value):
        # A state dict; a stray non-tensor leaf is then reported by the torch encoder, with its key path.
        return FORMATS["torch"]
    if kind in ("dict", "list", "str", "scalar", "none"):
        return FORMATS["json"]
    raise TypeError(f"cannot store a {describe(type(value))}; supported: {SUPPORTED}")


def _target(annotation: Any) -> Node:
    """The annotation's node, with `X | None` reduced to X (None values pass through convert unchanged)."""
    if is_absent(annotation):
        return Node("any")
    n = parse(annotation)
    if n.kind == "union":
        rest = [a for a in n.args if a.kind != "none"]
        if len(rest) == 1:
            return rest[0]
    return n


def _fail(value: Any, annotation: Any) -> TypeError:
    what = (
        "without annotation (it takes its first partition's type)"
        if is_absent(annotation)
        else (f"annotated {describe(annotation)}")
    )
    return TypeError(f"cannot give a {describe(type(value))} to an input {what}")


def _to_frame(value: Any, want: str, annotation: Any) -> Any:
    have = kind_of_type(type(value))
    if have == want:
        return value
    if have not in _FRAMES:
        raise _fail(value, annotation)
    if want in ("polars", "lazy"):
        pl = c.need("polars")
        if have == "lazy":
            df = value.collect()
        elif have == "pandas":
            df = pl.from_pandas(value, include_index=not c.default_index(value))
        elif have == "arrow":
            df = pl.from_arrow(value)
        else:
            df = value
        return df.lazy() if want == "lazy" else df
    if have == "lazy":
        value, have = value.collect(), "polars"
    if want == "pandas":
        return value.to_pandas()  # polars and pyarrow both have it
    if have == "pandas":
        return c.pandas_to_arrow(value)
    return value.to_arrow()


def convert(value: Any, annotation: Any) -> Any:
    """A decoded input value converted to what the input's annotation asks for (e.g. polars -> pandas).

    Unannotated inputs get the value as stored; a value that clearly cannot be what is asked for (bytes for a
    frame, a frame for an int) raises TypeError rather than surfacing later inside the function.
    """
    want = _target(annotation)
    if want.kind == "any" or value is None:
        return value
    if want.kind in _FRAMES:
        return _to_frame(value, want.kind, annotation)
    have = kind_of_type(type(value))
    if want.kind == "bytes":
        if have != "bytes":
            raise _fail(value, annotation)
        return bytes(value)
    if want.kind == "dict" and len(want.args) == 2 and isinstance(value, Mapping) and not _jsonish(want):
        return {k: convert(v, want.args[1].source) for k, v in value.items()}
    if want.kind in ("str", "scalar", "list", "dict", "tensor") and (
        have in (*_FRAMES, "bytes") or (have == "tensor" and want.kind != "tensor")
    ):
        raise _fail(value, annotation)
    return value


def _empty(kind: str) -> Any:
    if kind == "arrow":
        return c.need("pyarrow").table({})
    if kind == "pandas":
        return c.need("pandas").DataFrame()
    pl = c.need("polars")
    return pl.LazyFrame() if kind == "lazy" else pl.DataFrame()


def combine(values: dict[str, Any], annotation: Any) -> Any:
    """Several decoded upstream partitions (key -> value, in key order) made into one input value.

    `dict[str, X]` gets one value per partition; frames are concatenated; lists are joined. Anything else cannot be
    merged meaningfully, so more than one partition raises TypeError suggesting the dict annotation.
    """
    want = _target(annotation)
    if want.kind == "dict":
        inner = want.args[1].source if len(want.args) == 2 else None
        return {k: convert(v, inner) for k, v in values.items()}
    kind = want.kind
    if kind == "any":
        if not values:
            raise TypeError(
                "no upstream partitions to combine, and no annotation saying what an empty input is; "
                "annotate it as a frame type, list or dict[str, <type>]"
            )
        kind = kind_of_type(type(next(iter(values.values())))) or "unknown"
    if kind in _FRAMES:
        if not values:
            return _empty(kind)
        if len(values) == 1:
            return _to_frame(next(iter(values.values())), kind, annotation)
        return _concat([_to_frame(v, "polars" if kind == "lazy" else kind, annotation) for v in values.values()], kind)
    if kind == "list" and all(isinstance(v, list) for v in values.values()):
        return [item for v in values.values() for item in convert(v, annotation)]
    if len(values) == 1:
        return convert(next(iter(values.values())), annotation)
    if not values:
        raise TypeError(
            f"no upstream partitions to combine into one {describe(annotation)}; annotate the input "
            f"as a frame type, list or dict[str, {describe(annotation)}] to accept an empty selection"
        )
    what = describe(annotation) if want.kind != "any" else describe(type(next(iter(values.values()))))
    raise TypeError(
        f"{len(values)} upstream partitions cannot be combined into one {what}; annotate the input "
        f"as dict[str, {what}] to get one value per upstream partition"
    )


def _concat(frames: list[Any], kind: str) -> Any:
    if kind in ("polars", "lazy"):
        # vertical_relaxed: partitions written on different days may differ in int width or nullability.
        df = c.need("polars").concat(frames, how="vertical_relaxed")
        return df.lazy() if kind == "lazy" else df
    if kind == "pandas":
        return c.need("pandas").concat(frames, ignore_index=True)
    return c.need("pyarrow").concat_tables(frames, promote_options="default")
