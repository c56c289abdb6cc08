"""Asset bodies: the user's functions, and how the engine calls one for a partition.

`@sw.asset` registers each function here under its code reference ("module:qualname"), with
what its parameters are (the context, inputs, config, resources) read from its signature once,
when the definitions load. The engine looks the body up by the reference its graph holds, so
the graph itself stays a plain value (it is cached on disk without importing anything).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from skipwise import formats
from skipwise.core.spec import Asset

#: ref -> Body, filled as the user's definitions are imported.
REGISTRY: dict[str, "Body"] = {}

log = logging.getLogger("skipwise")


@dataclass(frozen=True)
class Input:
    """A parameter of a body that receives an upstream asset's data."""

    param: str
    upstream: str
    annotation: Any = None


@dataclass(frozen=True)
class Body:
    """A user function and how to call it for one partition."""

    ref: str
    fn: Callable[..., Any] = field(repr=False)
    context_param: str | None = None
    inputs: tuple[Input, ...] = ()
    config_param: str | None = None
    config_class: Any = None
    resource_params: tuple[str, ...] = ()
    returns: Any = None

    def call(
        self, context: Any, inputs: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any], resources: Any = None
    ) -> Any:
        """Call the function for one partition: `inputs` maps each upstream to its decoded
        partitions (key -> value, in order), combined here as each parameter's annotation asks."""
        kwargs: dict[str, Any] = {}
        if self.context_param:
            kwargs[self.context_param] = context
        for i in self.inputs:
            kwargs[i.param] = combine(inputs.get(i.upstream, {}), i.annotation)
        if self.config_param:
            kwargs[self.config_param] = self.config_class(**params) if self.config_class is not None else dict(params)
        for name in self.resource_params:
            kwargs[name] = getattr(resources, name)
        return self.fn(**kwargs)


def combine(values: Mapping[str, Any], annotation: Any) -> Any:
    """One input's value: a dict of partitions for a `dict[str, X]` annotation; the value itself
    when one partition is read; otherwise the partitions combined (frames concatenated)."""
    if is_dict_of(annotation) or len(values) != 1:
        return formats.combine(dict(values), annotation)
    return formats.convert(next(iter(values.values())), annotation)


def is_dict_of(annotation: Any) -> bool:
    """`dict[str, X]` asks for one value per upstream partition, unless X is a tensor (then it is
    a torch state dict, one value)."""
    if annotation is None:
        return False
    text = formats.describe(annotation).replace(" ", "")
    return text.startswith(("dict[str,", "Mapping[str,")) and "Tensor" not in text


@dataclass
class PartitionContext:
    """The context a body gets when the engine runs outside Dagster (tests, benchmarks): the
    partition's key and the asset's name; Dagster runs pass Dagster's own context instead."""

    asset: str
    partition_key: str
    log: Any = log

    @property
    def partition_keys(self) -> list[str]:
        return [self.partition_key]

    @property
    def has_partition_key(self) -> bool:
        return self.partition_key != "all"


def body_of(ref: str) -> Body:
    """The registered body of `ref`; LookupError naming the fix when its module was not imported."""
    body = REGISTRY.get(ref)
    if body is None:
        raise LookupError(
            f"no @sw.asset function {ref} is loaded in this process: import the module that defines it "
            "(the project's definitions) first"
        )
    return body


# -- what the engine does with a body, outside Dagster and with what it returns -----------------


def default_call(
    asset: Asset, definitions: str = ""
) -> Callable[[str, Mapping[str, Mapping[str, Any]], Mapping[str, Any]], Any]:
    """Call the registered body of `asset` outside Dagster, with a plain `PartitionContext`
    (importing the project's definitions first if the graph came from the snapshot)."""
    if asset.fn not in REGISTRY:
        for module in (definitions, asset.fn.partition(":")[0]):
            if module:
                importlib.import_module(module)
    body = body_of(asset.fn)
    return lambda key, inputs, params: body.call(PartitionContext(asset.name, key), inputs, params)


def is_output(value: Any) -> bool:
    """A `dg.Output` (or anything shaped like one: a value with metadata), without importing dagster."""
    return type(value).__name__ == "Output" and hasattr(value, "value") and hasattr(value, "metadata")


def serialize(asset: Asset, value: Any) -> tuple[Any, bytes]:
    """(format, bytes) of a body's return value: the declared format, else the value's own."""
    fmt = formats.get(asset.fmt) if asset.fmt else formats.for_value(value)
    try:
        return fmt, fmt.encode(value)
    except TypeError as exc:
        raise TypeError(
            f"{asset.fn} returned {type(value).__name__}, which cannot be stored as {fmt.name}: {exc}"
        ) from None


def row_count(value: Any) -> int | None:
    """Rows of a polars, pandas or pyarrow table; None for anything else."""
    mod = type(value).__module__.split(".")[0]
    if mod == "polars" and type(value).__name__ == "DataFrame":
        return value.height
    if mod in ("pandas", "pyarrow") and hasattr(value, "shape"):
        return int(value.shape[0])
    return None
