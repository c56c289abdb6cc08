"""Annotations (real types, typing generics or strings) reduced to a small tree, without importing heavy libraries.

Types are recognised by their top-level package and qualified name, so inspecting `pl.DataFrame` never imports
polars, and string annotations (from `from __future__ import annotations`) go through the same tree as real types.
"""

from __future__ import annotations

import ast
import collections.abc
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

SUPPORTED = (
    "polars.DataFrame, polars.LazyFrame, pandas.DataFrame, pyarrow.Table, bytes, "
    "JSON values (dict, list, str, int, float, bool, None), torch.Tensor or a dict[str, torch.Tensor] state dict"
)

# (top-level package, __qualname__) -> kind; matched against every class in a type's MRO so subclasses count.
LIBRARY_KINDS = {
    ("polars", "DataFrame"): "polars",
    ("polars", "LazyFrame"): "lazy",
    ("pandas", "DataFrame"): "pandas",
    ("pyarrow", "Table"): "arrow",
    ("torch", "Tensor"): "tensor",
    ("torch", "Parameter"): "tensor",
}
_LIBRARIES = ("polars", "lazy", "pandas", "arrow", "tensor")
_ALIASES = {"pl": "polars", "pd": "pandas", "pa": "pyarrow"}
# Bare names that mean one thing whichever library they were imported from.
_BARE = {"LazyFrame": "lazy", "Tensor": "tensor", "Parameter": "tensor"}
_BUILTINS = {
    bytes: "bytes",
    bytearray: "bytes",
    memoryview: "bytes",
    int: "scalar",
    float: "scalar",
    str: "str",
    bool: "scalar",
    type(None): "none",
    dict: "dict",
    list: "list",
}
_NAMES = {
    "bytes": "bytes",
    "bytearray": "bytes",
    "memoryview": "bytes",
    "int": "scalar",
    "float": "scalar",
    "str": "str",
    "bool": "scalar",
    "None": "none",
    "NoneType": "none",
    "dict": "dict",
    "Dict": "dict",
    "Mapping": "dict",
    "MutableMapping": "dict",
    "list": "list",
    "List": "list",
    "Any": "any",
    "Optional": "optional",
    "Union": "union",
    "Annotated": "annotated",
}
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_UNIONS = (typing.Union, types.UnionType)


@dataclass(frozen=True)
class Node:
    """One annotation reduced to a kind; `args` holds the parameters of dict/list/union nodes."""

    kind: str  # polars lazy pandas arrow bytes tensor str scalar dict list union any none unknown
    args: tuple[Node, ...] = ()
    # What this node was parsed from (a type, or the text of a string annotation), to describe it in messages
    # and to hand an inner annotation such as the X of dict[str, X] on to convert.
    source: Any = field(default=None, compare=False, repr=False)


def is_absent(annotation: Any) -> bool:
    """True for "no annotation": None, inspect.Parameter.empty, typing.Any (and their string spellings)."""
    if isinstance(annotation, str):
        return annotation.strip() in ("", "None", "Any", "typing.Any", "inspect.Parameter.empty")
    return annotation is None or annotation is inspect.Parameter.empty or annotation is Any


def kind_of_type(cls: type) -> str | None:
    """The kind of a class (by its MRO, without importing its library), or None when it is not one we know."""
    if cls in _BUILTINS:
        return _BUILTINS[cls]
    if not isinstance(cls, type):
        return None
    for c in cls.__mro__:
        kind = LIBRARY_KINDS.get((getattr(c, "__module__", "").partition(".")[0], c.__qualname__))
        if kind:
            return kind
    if issubclass(cls, (bytes, bytearray, memoryview)):
        return "bytes"
    if issubclass(cls, collections.abc.Mapping):
        return "dict"
    if issubclass(cls, list):
        return "list"
    if issubclass(cls, str):
        return "str"
    if issubclass(cls, (int, float)):
        return "scalar"
    return None


def parse(annotation: Any) -> Node:
    """Reduce an annotation to a Node; anything unrecognised becomes an "unknown" node (never raises)."""
    if isinstance(annotation, str):
        try:
            return _parse_expr(ast.parse(annotation.strip(), mode="eval").body)
        except SyntaxError:
            return Node("unknown", source=annotation)
    if isinstance(annotation, typing.ForwardRef):
        return parse(annotation.__forward_arg__)
    if annotation is None or annotation is type(None):
        return Node("none", source=annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return Node("any", source=annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return parse(args[0])
    kind = None
    if origin in _UNIONS:
        kind = "union"
    elif origin in _MAPPINGS:
        kind = "dict"
    elif origin is list:
        kind = "list"
    elif origin is None and isinstance(annotation, type):
        return Node(kind_of_type(annotation) or "unknown", source=annotation)
    if kind is None:
        return Node("unknown", source=annotation)
    return Node(kind, tuple(parse(a) for a in args), source=annotation)


def _parse_expr(expr: ast.expr) -> Node:
    text = ast.unparse(expr)
    if isinstance(expr, ast.Constant):
        if expr.value is None:
            return Node("none", source=None)
        return parse(expr.value) if isinstance(expr.value, str) else Node("unknown", source=text)
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        return Node("union", (_parse_expr(expr.left), _parse_expr(expr.right)), source=text)
    if isinstance(expr, ast.Subscript):
        head = _name_kind(expr.value)
        items = expr.slice.elts if isinstance(expr.slice, ast.Tuple) else [expr.slice]
        args = tuple(_parse_expr(e) for e in items)
        if head in ("dict", "list", "union"):
            return Node(head, args, source=text)
        if head == "optional" and len(args) == 1:
            return Node("union", (args[0], Node("none")), source=text)
        if head == "annotated" and args:
            return args[0]
        return Node("unknown", source=text)
    kind = _name_kind(expr)
    known = ("bytes", "str", "scalar", "none", "dict", "list", "any", *_LIBRARIES)
    return Node(kind if kind in known else "unknown", source=None if kind == "none" else text)


def _name_kind(expr: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.insert(0, expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.insert(0, expr.id)
    if len(parts) == 1:
        return _NAMES.get(parts[0]) or _BARE.get(parts[0])
    root = _ALIASES.get(parts[0], parts[0])
    if root in ("typing", "collections", "builtins", "types"):
        return _NAMES.get(parts[-1])
    return LIBRARY_KINDS.get((root, parts[-1]))


def describe(annotation: Any) -> str:
    """Human text of an annotation for error messages, e.g. "dict[str, polars.DataFrame]"."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, typing.ForwardRef):
        return annotation.__forward_arg__
    if annotation is inspect.Parameter.empty:
        return "no annotation"
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _UNIONS:
        return " | ".join(describe(a) for a in args)
    if origin is not None:
        head = describe(origin)
        return f"{head}[{', '.join(describe(a) for a in args)}]" if args else head
    if isinstance(annotation, type):
        module = getattr(annotation, "__module__", "")
        if module == "builtins":
            return annotation.__qualname__
        root = module.partition(".")[0]
        # polars/pandas/pyarrow/torch re-export their types at the top, where users know them from.
        if (root, annotation.__qualname__) in LIBRARY_KINDS:
            return f"{root}.{annotation.__qualname__}"
        return f"{module}.{annotation.__qualname__}"
    return repr(annotation)
