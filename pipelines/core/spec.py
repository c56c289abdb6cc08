"""What a pipeline is made of, as plain values: sources, assets, their dependencies, and the graph.

A spec names its function by reference ("package.module:function") instead of holding it, so the
graph can be planned (and its code hashed) without importing the project's heavy libraries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping as TMapping

from pipelines.core.errors import ConfigError
from pipelines.core.partitions import Identity, Mapping, Partitions


@dataclass(frozen=True)
class Dep:
    """An input of an asset: the upstream name and how partitions map onto it."""

    name: str
    mapping: Mapping = Identity()


@dataclass(frozen=True)
class Source:
    """A DVC-tracked raw input: one file per partition under `path` (relative to the project root)."""

    name: str
    path: str
    partitions: Partitions
    filename: str = "{key}.parquet"
    description: str = ""

    def file_for(self, key: str) -> str:
        """The file of partition `key`, relative to the tracked directory."""
        return self.filename.format(key=key)


@dataclass(frozen=True)
class Asset:
    """A derived asset: `fn` ("module:function") computes one partition from its deps' data.

    `tags` (e.g. `skipwise/model`, `team`) go into every cost record of the asset; run tags win.
    `fmt` is how the output is stored: "parquet" (the function returns a polars DataFrame) or
    "bytes" (the function returns bytes, e.g. a model artifact). The function may also return a
    `Result` to attach metadata. `layer` is the data/ subfolder the outputs live in.
    """

    name: str
    fn: str
    partitions: Partitions
    deps: tuple[Dep, ...] = ()
    layer: str = "features"
    fmt: str = "parquet"
    description: str = ""
    tags: TMapping[str, str] = field(default_factory=dict)
    #: if set (e.g. "predictions"), each computed partition reports `cost/usd_per_1k_<unit>` per output row
    cost_unit: str = ""

    @property
    def ext(self) -> str:
        return {"parquet": "parquet", "bytes": "bin"}[self.fmt]


@dataclass(frozen=True)
class Result:
    """What an asset function may return instead of the bare value: the value plus metadata."""

    value: Any
    metadata: TMapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Graph:
    """Sources and assets; checks names are unique and every dep exists, and orders assets."""

    sources: tuple[Source, ...]
    assets: tuple[Asset, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources] + [a.name for a in self.assets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"names used twice in the graph: {', '.join(dupes)}", hint="rename one of them")
        known = set(names)
        for a in self.assets:
            for d in a.deps:
                if d.name not in known:
                    raise ConfigError(
                        f"asset {a.name} depends on unknown {d.name!r}",
                        hint=f"declare {d.name} as a Source or Asset, or fix the name",
                    )
            if a.fmt not in ("parquet", "bytes"):
                raise ConfigError(f"asset {a.name} has unknown fmt {a.fmt!r}", hint="use 'parquet' or 'bytes'")
        self.order()  # raises on cycles

    def node(self, name: str) -> Source | Asset:
        """The source or asset called `name`."""
        for n in (*self.sources, *self.assets):
            if n.name == name:
                return n
        raise ConfigError(
            f"no asset or source named {name!r}",
            hint="known: " + ", ".join(sorted(n.name for n in (*self.sources, *self.assets))),
        )

    def asset(self, name: str) -> Asset:
        """The derived asset called `name`."""
        node = self.node(name)
        if not isinstance(node, Asset):
            raise ConfigError(f"{name!r} is a source, not a derived asset", hint="select a derived asset")
        return node

    def order(self) -> list[Asset]:
        """Derived assets in dependency order (upstream first), stable by declaration order."""
        done: list[str] = [s.name for s in self.sources]
        ordered: list[Asset] = []
        pending = list(self.assets)
        while pending:
            ready = [a for a in pending if all(d.name in done for d in a.deps)]
            if not ready:
                raise ConfigError("the asset graph has a cycle: " + ", ".join(a.name for a in pending))
            for a in ready:
                ordered.append(a)
                done.append(a.name)
                pending.remove(a)
        return ordered
