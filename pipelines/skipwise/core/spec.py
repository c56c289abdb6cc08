"""What a pipeline is made of, as plain values: sources, assets, their dependencies, and the graph.

The Dagster adapter resolves a user's `dg.Definitions` into these values (partition keys as key
lists, mappings as plain upstream keys). A spec names its function by reference
("package.module:qualname") instead of holding it, so the graph can be cached on disk, planned and
its code hashed without importing the project's heavy libraries.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import PurePosixPath
from typing import Any
from typing import Mapping as TMapping

from skipwise.core.errors import ConfigError
from skipwise.core.layouts import KEY_FIELDS, Template
from skipwise.core.partitions import Dim, Identity, Mapping, Partitions, dims_of, key_folder


@dataclass(frozen=True)
class Dep:
    """An input of an asset: the upstream name and how partitions map onto it."""

    name: str
    mapping: Mapping = Identity()
    #: False: a dependency whose version counts but whose data the body does not read (Dagster `deps=`)
    data: bool = True


@dataclass(frozen=True)
class Source:
    """A raw input: DVC-tracked files under `path` (relative to the project root) or, when `url`
    is set, objects under an object-store prefix.

    Where a partition's data is, in one of these forms:

    - `layout` None (the form every earlier version wrote): the file `filename` inside the folder
      `path`, the key escaped as skipwise's own folders escape it (``{partition_key}.parquet``);
    - `layout` a path template relative to `path` (`skipwise.core.layouts`): the key's fields
      rendered literally, glob characters matching several files per partition; "" means `path`
      itself is the one file (an unpartitioned source);
    - `paths`, key -> files relative to `path`: what a function given as the path returned for
      each key when the definitions resolved.

    `remote` says where a DVC source's bytes are when the workspace lacks them: None, only the
    workspace; "" DVC's default remote (``core.remote``); otherwise the name of a DVC remote. Each
    partition is then read from the remote by its md5 (DVC's remote is content addressed).

    `url` (e.g. ``s3://bucket/events/{date:%Y/%m/%d}/{hour:%H}.parquet``) makes it an object-store
    source, the same template forms applying: its versions come from one listing of the prefix up
    to the first placeholder (each object's ETag), `region` or `location` (a ``[locations]`` name)
    say where it is, and `versioned` reads each object by the version id the listing saw (a bucket
    with versioning on) instead of only by its ETag.
    """

    name: str
    path: str
    partitions: Partitions
    filename: str = "{partition_key}.parquet"
    description: str = ""
    remote: str | None = None
    url: str = ""
    region: str = ""
    location: str = ""
    versioned: bool = False
    layout: str | None = None
    paths: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def template(self) -> Template | None:
        """The parsed path template of the `layout` form or of an object URL (None: the legacy form
        or a function's paths)."""
        cached: Template | bool | None = self.__dict__.get("_template")
        if cached is None:
            text = self.url or self.layout
            cached = Template.of(text, f"source {self.name}") if text is not None and not self.paths else False
            object.__setattr__(self, "_template", cached)
        return cached if isinstance(cached, Template) else None

    @property
    def many(self) -> bool:
        """Whether a partition may be several files (a glob, or a function's list of paths)."""
        return bool(self.paths) or (self.template is not None and self.template.is_glob)

    @property
    def dims(self) -> tuple[Dim, ...] | None:
        return dims_of(self.partitions)

    def file_for(self, key: str) -> str:
        """The file of partition `key`, relative to `path` (in the legacy form, the key as its
        folder-safe name); for a glob, the pattern its files match."""
        if self.paths:
            return _only(self._listed(key))
        if self.template is not None and not self.url:
            return self.template.render(key, self.dims)
        safe = key_folder(key)
        return self.filename.format(key=safe, partition_key=safe)

    def files_for(self, key: str) -> tuple[str, ...]:
        """The files a function's paths give partition `key` (relative to `path`)."""
        return self._listed(key)

    def _listed(self, key: str) -> tuple[str, ...]:
        table: dict[str, tuple[str, ...]] | None = self.__dict__.get("_paths")
        if table is None:
            table = dict(self.paths)
            object.__setattr__(self, "_paths", table)
        return table.get(key, ())

    def object_url(self, key: str) -> str:
        """The object of partition `key` of an object-store source (for a glob, the pattern)."""
        template = self.template
        return template.render(key, self.dims) if template is not None else self.url

    def legacy_url(self, key: str) -> str:
        """Where earlier versions looked for partition `key`'s object: the key folder-escaped
        ("" when that is the same URL, or the URL has other fields)."""
        template = self.template
        if template is None or any(f.name not in KEY_FIELDS for f in template.fields):
            return ""
        safe = key_folder(key)
        if safe == key:
            return ""
        return self.url.format(key=safe, partition_key=safe)

    @property
    def prefix(self) -> str:
        """What one listing covers: the URL up to its first placeholder or glob character (the
        whole URL without one)."""
        template = self.template
        return template.prefix if template is not None else self.url.split("{", 1)[0]

    def shown(self, key: str) -> str:
        """Where partition `key` is, as a user finds it: the file's path (or pattern), or the object's URL."""
        if self.url:
            return self.object_url(key)
        if self.paths:
            files = self._listed(key)
            shown = ", ".join(str(PurePosixPath(self.path, f)) for f in files[:3])
            return (shown + (f" (and {len(files) - 3} more)" if len(files) > 3 else "")) or f"{self.name}[{key}]"
        return str(PurePosixPath(self.path, self.file_for(key))) if self.file_for(key) else self.path

    def missing(self, key: str, tracked: str = "") -> tuple[str, str]:
        """(what is missing, the fix) when partition `key` has no data; `tracked` is the folder
        (or file) DVC tracks it in, when known."""
        if self.url:
            what = f"no object matches {self.object_url(key)}" if self.many else f"no object at {self.object_url(key)}"
            return (
                what,
                f"upload it (e.g. `aws s3 cp <file> {self.object_url(key)}`), or narrow the partition range",
            )
        glob = self.many and not self.paths
        what = f"{self.shown(key)} matches no file" if glob else f"{self.shown(key)} does not exist"
        return what, f"add it and `dvc add {tracked or self.path}`, or narrow the partition range"


def _only(files: tuple[str, ...]) -> str:
    return files[0] if len(files) == 1 else ""


@dataclass(frozen=True)
class Plain:
    """A plain Dagster asset of the definitions (upstream or downstream of skipwise assets, or
    beside them). Dagster computes it and says whether it is stale; skipwise runs it in the
    graph's order. Its version, for skipwise assets downstream, is the content hash of what
    `sw.IOManager` stored for it (`stored`); any other IO manager gives no version skipwise can
    check, so its dependents always run.

    `deps` names what it depends on (sources, assets, plain assets); `single_run`: its backfill
    policy runs a partition range in one run (otherwise Dagster runs one partition per run);
    `external`: a `dg.AssetSpec` nothing in the definitions materializes (never planned or run)."""

    name: str
    partitions: Partitions
    layer: str = "default"
    stored: bool = True
    deps: tuple[str, ...] = ()
    single_run: bool = False
    external: bool = False


@dataclass(frozen=True)
class Asset:
    """A derived asset: `fn` ("module:function") computes one partition from its deps' data.

    `tags` (e.g. `skipwise/model`, `team`) go into every cost record of the asset; run tags win.
    `fmt` names the output's format (`skipwise.formats`), from the return annotation; "" decides
    it from each returned value. `layer` is the data/ subfolder the outputs live in.

    `params` (optional) declares the asset's params: name -> default value, whose type is the
    type params.yaml must give (an int is accepted where the default is a float; a bool is not an
    int; a None default accepts anything). With a declaration, an unknown or mistyped key in
    params.yaml is an error when the project loads, and the function's `ctx.params` (and the
    fingerprint) is the defaults merged with params.yaml. Without one, any keys are accepted.
    """

    name: str
    fn: str
    partitions: Partitions
    deps: tuple[Dep, ...] = ()
    layer: str = "default"
    fmt: str = ""
    description: str = ""
    tags: TMapping[str, str] = field(default_factory=dict)
    #: if set (e.g. "predictions"), each computed partition reports `cost/usd_per_1k_<unit>` per output row
    cost_unit: str = ""
    #: declared params, name -> default (None: undeclared, params.yaml may hold any keys)
    params: TMapping[str, Any] | None = None
    #: dependencies observation cannot see, declared: files (relative to the root) and environment variables
    files: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    #: two computations of one partition may differ: `skipwise verify` does not compare its outputs
    nondeterministic: bool = False

    def __post_init__(self) -> None:
        if self.params is None:
            return
        if not isinstance(self.params, TMapping):
            raise ConfigError(
                f"asset {self.name}: params must be a mapping of name -> default value",
                hint="e.g. params={'epochs': 6}",
            )
        for key, default in self.params.items():
            where = f"asset {self.name}: params[{key!r}]"
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{where}: a param name must be a non-empty string", hint="rename it")
            if _expected_type(default) is _UNSUPPORTED:
                raise ConfigError(
                    f"{where}: default {_show(default)} has unsupported type {type(default).__name__}",
                    hint="use a bool, int, float, str, list, mapping or None default",
                )
            inner, bad = _bad_value(default)
            if bad:
                raise ConfigError(f"{where}{inner}: default {bad}", hint="use a finite, JSON-like default")


_UNSUPPORTED = object()
_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


def _expected_type(default: Any) -> Any:
    """The type params.yaml must give for a param declared with `default` (None: any)."""
    if default is None:
        return None
    for t in (bool, int, float, str):  # bool first: it is an int to Python, not to a user
        if isinstance(default, t):
            return t
    if isinstance(default, (list, tuple)):
        return list
    if isinstance(default, TMapping):
        return dict
    return _UNSUPPORTED


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for t, name in _TYPE_NAMES.items():
        if isinstance(value, t):
            return name
    if isinstance(value, TMapping):
        return "a mapping"
    return type(value).__name__


def _show(value: Any, limit: int = 40) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else "null" if value is None else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def plain_params(value: Any) -> Any:
    """`value` with YAML dates and datetimes turned into ISO strings (``2013-11-01`` and
    ``"2013-11-01"`` are then the same param), recursively; everything else unchanged."""
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    if isinstance(value, TMapping):
        return {k: plain_params(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_params(v) for v in value]
    return value


def _bad_value(value: Any, at: str = "") -> tuple[str, str]:
    """(where inside `value`, e.g. ".a[1]", and what) makes `value` unusable as a param, or
    ("", "") if nothing: NaN/inf, a non-string key, or a type with no canonical JSON form (it
    could not be fingerprinted)."""
    if isinstance(value, float):
        return ("", "") if math.isfinite(value) else (at, f"{value!r} is not a finite number")
    if value is None or isinstance(value, (bool, int, str)):
        return "", ""
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            bad = _bad_value(v, f"{at}[{i}]")
            if bad[1]:
                return bad
        return "", ""
    if isinstance(value, TMapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return at, f"has a non-string key {_show(k)}"
            bad = _bad_value(v, f"{at}.{k}")
            if bad[1]:
                return bad
        return "", ""
    return at, f"{_show(value)} ({type(value).__name__}) is not a plain value (number, string, boolean, list, mapping)"


def _coerce(value: Any, default: Any) -> tuple[bool, Any]:
    """(ok, value converted to the declared type) for a param declared with `default`."""
    t = _expected_type(default)
    if t is None:
        return True, value
    if t is bool:
        return isinstance(value, bool), value
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return True, float(value)
    if t is str:
        return isinstance(value, str), value
    if t is list:
        return isinstance(value, (list, tuple)), list(value) if isinstance(value, (list, tuple)) else value
    return isinstance(value, TMapping), value


def check_params(
    graph: "Graph", params: TMapping[str, Any], location: str = "params.yaml"
) -> dict[str, dict[str, Any]]:
    """Validate params.yaml (`params`: section per asset) against `graph`; return each asset's
    effective params: its declared defaults merged with its section (values converted to the
    declared types), or the section as it is for an asset without a declaration.

    Raises ConfigError, located at `location`, naming the key: a section that names no asset, a
    section that is not a mapping, NaN or infinity anywhere, a value with no canonical form, and,
    for a declared asset, an unknown key (with the closest known one) or a value of the wrong type.
    """
    if not isinstance(params, TMapping):
        raise ConfigError(
            f"expected a mapping of asset name -> params, got {_kind(params)}",
            location=location,
            hint="write one section per asset, e.g. `my_asset: {threshold: 15}`",
        )
    assets = {a.name: a for a in graph.assets}
    known = ", ".join(sorted(assets))
    out: dict[str, dict[str, Any]] = {}
    for name, section in params.items():
        if name not in assets:
            what = (
                "is a source, which takes no params"
                if any(s.name == name for s in graph.sources)
                else f"names no asset{_did_you_mean(name, assets)}"
            )
            raise ConfigError(
                f"{_show(name) if not isinstance(name, str) else name}: {what}",
                location=location,
                hint=f"sections of {location} are asset names: {known}",
            )
        if section is None:
            section = {}
        if not isinstance(section, TMapping):
            raise ConfigError(
                f"{name}: expected a mapping of param -> value, got {_kind(section)} {_show(section)}",
                location=location,
                hint=f"indent {name}'s params under `{name}:`, e.g. `{name}: {{key: value}}`",
            )
        declared = assets[name].params
        merged: dict[str, Any] = dict(declared) if declared is not None else {}
        for key, value in section.items():
            path = f"{name}.{key}"
            if not isinstance(key, str):
                raise ConfigError(
                    f"{name}.{_show(key)}: a param name must be a string",
                    location=location,
                    hint="quote the name or rename it",
                )
            inner, bad = _bad_value(value)
            if bad:
                raise ConfigError(
                    f"{path}{inner}: {bad}",
                    location=location,
                    hint=f"write a finite number or a plain value, e.g. {key}: {_example(declared, key)}",
                )
            if declared is not None:
                if key not in declared:
                    raise ConfigError(
                        f"{path}: unknown param of {name}{_did_you_mean(key, declared)}",
                        location=location,
                        hint=f"known params of {name}: {', '.join(sorted(declared))}",
                    )
                ok, value = _coerce(value, declared[key])
                if not ok:
                    expected = _TYPE_NAMES[_expected_type(declared[key])]
                    raise ConfigError(
                        f"{path}: expected {expected}, got {_kind(value)} {_show(value)}",
                        location=location,
                        hint=f"write e.g. {key}: {_example(declared, key)} (the default)",
                    )
            merged[key] = value
        out[name] = merged
    for name, a in assets.items():
        if name not in out and a.params is not None:
            out[name] = dict(a.params)
    return out


def _did_you_mean(name: Any, known: Any) -> str:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _example(declared: TMapping[str, Any] | None, key: str) -> str:
    if declared is None or key not in declared:
        return "1.0"
    d = declared[key]
    if isinstance(d, bool):
        return "true" if d else "false"
    return f'"{d}"' if isinstance(d, str) else _show(d)


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
    plain: tuple[Plain, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources] + [p.name for p in self.plain] + [a.name for a in self.assets]
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
        self.order()  # raises on cycles

    def node(self, name: str) -> Source | Asset | Plain:
        """The source, asset or plain asset called `name`."""
        nodes: dict[str, Source | Asset | Plain] | None = self.__dict__.get("_nodes")
        if nodes is None:
            every: tuple[Source | Asset | Plain, ...] = (*self.sources, *self.plain, *self.assets)
            nodes = {n.name: n for n in every}
            object.__setattr__(self, "_nodes", nodes)
        if name in nodes:
            return nodes[name]
        raise ConfigError(
            f"no asset or source named {name!r}{_did_you_mean(name, nodes)}",
            hint="known: " + ", ".join(sorted(nodes)),
        )

    def asset(self, name: str) -> Asset:
        """The derived asset called `name`."""
        node = self.node(name)
        if not isinstance(node, Asset):
            what = "a source" if isinstance(node, Source) else "a plain Dagster asset (skipwise does not run it)"
            raise ConfigError(f"{name!r} is {what}, not a skipwise asset", hint="select an @sw.asset")
        return node

    def citizens(self) -> list[Plain]:
        """The plain assets that Dagster materializes (planned and run beside skipwise assets)."""
        return [p for p in self.plain if not p.external]

    def order(self) -> list[Asset]:
        """Derived assets in dependency order (upstream first), stable by declaration order."""
        done: list[str] = [s.name for s in self.sources] + [p.name for p in self.plain]
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
