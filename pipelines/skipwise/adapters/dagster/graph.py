"""Resolve a project's `dg.Definitions` into skipwise's plain graph (the core never sees Dagster).

Partition keys become key lists, Dagster's partition mappings become the upstream keys each key
reads: an `Offsets` window or `Identity` between equal partitionings, `AllOf`, and otherwise a
`Table` of the keys Dagster itself maps each downstream key to.
"""

from __future__ import annotations

import difflib
import posixpath
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import dagster as dg

from skipwise.adapters.dagster.instance import instance_for_root
from skipwise.core import metakeys as mk
from skipwise.core.errors import ConfigError
from skipwise.core.partitions import UNPARTITIONED, AllOf, Dim, Identity, KeySet, Offsets, Table
from skipwise.core.spec import Asset, Dep, Graph, Plain, Source
from skipwise.engine.collector import resume_collection
from skipwise.project.resolving import import_definitions

KIND, SOURCE, ASSET = mk.KIND, "source", "asset"


def meta(md: Any, key: str, default: Any = None) -> Any:
    """A metadata value as plain Python (Dagster wraps them in MetadataValue)."""
    v = (md or {}).get(key, default)
    return getattr(v, "value", v)


def asset_name(key: dg.AssetKey) -> str:
    """skipwise's name of a Dagster asset key (prefixes joined by "__", as Dagster's op names are)."""
    return "__".join(key.path)


def _kind_of(pdef: Any) -> str:
    name = type(pdef).__name__.replace("PartitionsDefinition", "").lower()
    return name or "static"


def keyset(pdef: Any, instance: Any = None) -> KeySet | None:
    """The key list of a Dagster partitions definition (None: unpartitioned)."""
    if pdef is None:
        return None
    keys = (
        pdef.get_partition_keys(dynamic_partitions_store=instance)
        if instance is not None
        else pdef.get_partition_keys()
    )
    return KeySet(tuple(str(k) for k in keys), _kind_of(pdef), dims_of_def(pdef))


def dims_of_def(pdef: Any) -> tuple[Dim, ...]:
    """The dimensions of a Dagster partitions definition's keys, with each time window's format
    (a source's path template parses keys with it); () for plain keys of one dimension."""
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        return tuple(Dim(d.name, _fmt(d.partitions_def)) for d in pdef.partitions_defs)
    fmt = _fmt(pdef)
    return (Dim("", fmt),) if fmt else ()


def dims_for(pdef: Any) -> tuple[Dim, ...] | None:
    """What a source's path template may use over `pdef` (None: unpartitioned, no fields)."""
    return None if pdef is None else dims_of_def(pdef) or (Dim(""),)


#: functions given as a source's path, by the token its metadata carries (this process's imports)
PATH_FUNCTIONS: dict[str, Callable[[str], Any]] = {}


def register_path_function(fn: Callable[[str], Any]) -> str:
    """The token naming `fn` in a source's metadata; the graph's resolution calls it per key."""
    token = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}#{id(fn)}"
    PATH_FUNCTIONS[token] = fn
    return token


def _function_paths(name: str, token: str, keys: KeySet | None) -> tuple[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """(the folder holding every file, key -> files relative to it) from the function of source
    `name`, called once per key; ConfigError naming the key when it fails or answers a path
    outside the project root."""
    fn = PATH_FUNCTIONS.get(token)
    where = f"dvc_source {name}"
    if fn is None:
        raise ConfigError(f"{where}: its path function {token.split('#')[0]} is not loaded", hint="import its module")
    rows: list[tuple[str, tuple[str, ...]]] = []
    for key in keys.key_list if keys is not None else (UNPARTITIONED,):
        try:
            got = fn(key)
        except Exception as exc:  # noqa: BLE001 - the user's function, reported against the key
            raise ConfigError(
                f"{where}: its path function failed for partition {key!r}: {type(exc).__name__}: {exc}",
                hint="make it answer a path (or a list of paths) relative to the project root for every key",
            ) from None
        paths = (got,) if isinstance(got, str) else tuple(got or ())
        for p in paths:
            if not isinstance(p, str) or not p or PurePosixPath(p).is_absolute() or ".." in PurePosixPath(p).parts:
                raise ConfigError(
                    f"{where}: its path function gave {p!r} for partition {key!r}",
                    hint="answer paths relative to the project root, inside it",
                )
        rows.append((key, tuple(PurePosixPath(p).as_posix() for p in paths)))
    every = [p for _, ps in rows for p in ps]
    folder = posixpath.commonpath([posixpath.dirname(p) for p in every]) if every else ""
    cut = len(folder) + 1 if folder else 0
    return folder, tuple((k, tuple(p[cut:] for p in ps)) for k, ps in rows)


def _fmt(pdef: Any) -> str:
    return pdef.fmt if isinstance(pdef, dg.TimeWindowPartitionsDefinition) else ""


def _is_dynamic(pdef: Any) -> bool:
    if pdef is None:
        return False
    if isinstance(pdef, dg.DynamicPartitionsDefinition):
        return True
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        return any(_is_dynamic(d.partitions_def) for d in pdef.partitions_defs)
    return False


def _open_ended(pdef: Any) -> bool:
    """Whether the keys of `pdef` grow with the current time (a time window without an end)."""
    if pdef is None:
        return False
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        return any(_open_ended(d.partitions_def) for d in pdef.partitions_defs)
    return isinstance(pdef, dg.TimeWindowPartitionsDefinition) and pdef.end is None


def mapping_of(
    mapping: Any, down: Any, up: Any, down_keys: KeySet | None, up_keys: KeySet | None, instance: Any
) -> Any:
    """The core mapping equivalent to Dagster's `mapping` from `down` to `up` partitions."""
    if up is None:
        return Identity()  # every partition reads the single upstream partition
    if down is None or isinstance(mapping, dg.AllPartitionMapping):
        return AllOf()
    same = down == up
    if same and isinstance(mapping, dg.IdentityPartitionMapping):
        return Identity()
    if same and type(mapping) is dg.TimeWindowPartitionMapping and not mapping.allow_nonexistent_upstream_partitions:
        return Offsets(mapping.start_offset, mapping.end_offset)
    rows = []
    order = {k: i for i, k in enumerate(up_keys.key_list)} if up_keys is not None else {}
    for k in down_keys.key_list:
        result = mapping.get_upstream_mapped_partitions_result_for_partitions(
            down.subset_with_partition_keys([k]), down, up, dynamic_partitions_store=instance
        )
        keys = sorted(
            (str(x) for x in result.partitions_subset.get_partition_keys()), key=lambda x: order.get(x, len(order))
        )
        rows.append((k, tuple(keys)))
    return Table(tuple(rows))


def graph_of(
    defs: dg.Definitions, instance: Any = None, instance_factory: Any = None
) -> tuple[Graph, float | None, bool]:
    """(the plain graph of `defs`, until when its keys hold (None: always), whether it may be cached).

    Assets declared with `@sw.asset`, `sw.dvc_source` and `sw.object_source` become skipwise assets and sources; every
    other materializable asset, and every external asset one of them depends on, becomes a `Plain` node. Dynamic partitions list their keys
    from the Dagster instance (`instance`, or made by `instance_factory` when first needed).
    """
    ag = defs.resolve_asset_graph()
    sources: list[Source] = []
    assets: list[Asset] = []
    plain: dict[str, Plain] = {}
    cacheable, open_ended = True, False
    keysets: dict[Any, KeySet | None] = {}

    def keys_for(pdef: Any) -> KeySet | None:
        nonlocal cacheable, open_ended, instance
        if pdef not in keysets:
            if _is_dynamic(pdef):
                cacheable = False
                if instance is None and instance_factory is not None:
                    instance = instance_factory()
            open_ended = open_ended or _open_ended(pdef)
            keysets[pdef] = keyset(pdef, instance)
        return keysets[pdef]

    nodes = {k: ag.get(k) for k in ag.toposorted_asset_keys}
    declared = set()  # keys the user listed (an external dg.AssetSpec is declared; a misspelt dep is not)
    for a in defs.assets or ():
        declared |= set(getattr(a, "keys", None) or ([a.key] if hasattr(a, "key") else []))
    for key, node in nodes.items():
        md = node.metadata
        kind = meta(md, KIND)
        if kind == SOURCE:
            path, paths = meta(md, mk.PATH), ()
            if meta(md, mk.PATH_FN):
                path, paths = _function_paths(asset_name(key), meta(md, mk.PATH_FN), keys_for(node.partitions_def))
            sources.append(
                Source(
                    asset_name(key),
                    path,
                    keys_for(node.partitions_def),
                    filename=meta(md, mk.FILENAME, "{partition_key}.parquet"),
                    layout=meta(md, mk.LAYOUT, None),
                    paths=paths,
                    description=node.description or "",
                    remote=_remote(md),
                    url=meta(md, mk.URL, "") or "",
                    region=meta(md, mk.REGION, "") or "",
                    location=meta(md, mk.LOCATION, "") or "",
                    versioned=bool(meta(md, mk.VERSIONED, False)),
                )
            )
        elif kind != ASSET:
            if node.is_materializable:  # a plain Dagster asset: skipwise plans and runs it through Dagster
                plain[asset_name(key)] = _plain(node, key, keys_for(node.partitions_def))
        else:
            deps = []
            data_deps = set(meta(md, mk.INPUTS, "").split(",")) - {""}
            down_keys = keys_for(node.partitions_def)
            for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
                up_node = ag.get(parent)
                if not up_node.is_materializable and not up_node.is_observable and parent not in declared:
                    known = [
                        asset_name(k)
                        for k in nodes
                        if k != parent and (ag.get(k).is_materializable or ag.get(k).is_observable)
                    ]
                    close = difflib.get_close_matches(asset_name(parent), known, n=1)
                    what = "reads" if asset_name(parent) in data_deps else "depends on"
                    raise ConfigError(
                        f"asset {asset_name(key)} {what} {asset_name(parent)!r}, which no asset in the definitions produces"
                        + (f"; did you mean {close[0]!r}?" if close else ""),
                        hint=(
                            f"rename the parameter (or its ins= key) to {close[0]}"
                            if close
                            else f"add the asset that produces {asset_name(parent)} to dg.Definitions(assets=[...])"
                        ),
                    )
                up_keys = keys_for(up_node.partitions_def)
                dagster_mapping = ag.get_partition_mapping(key, parent)
                try:
                    mapping = mapping_of(
                        dagster_mapping, node.partitions_def, up_node.partitions_def, down_keys, up_keys, instance
                    )
                except Exception as exc:  # noqa: BLE001 - Dagster's own error, reported against the asset
                    raise ConfigError(
                        f"asset {asset_name(key)}: its partition mapping onto {asset_name(parent)} "
                        f"({type(dagster_mapping).__name__}) does not fit: {exc}",
                        hint=_mapping_hint(parent),
                    ) from None
                if isinstance(mapping, Table) and mapping.rows and not any(keys for _, keys in mapping.rows):
                    raise ConfigError(
                        f"asset {asset_name(key)}: {type(dagster_mapping).__name__} maps none of its "
                        f"{_kind_of(node.partitions_def)} partitions onto {asset_name(parent)}'s "
                        f"{_kind_of(up_node.partitions_def)} partitions, so it would read nothing",
                        hint=_mapping_hint(parent),
                    )
                deps.append(Dep(asset_name(parent), mapping, data=asset_name(parent) in data_deps))
                if meta(up_node.metadata, KIND) not in (SOURCE, ASSET):
                    plain[asset_name(parent)] = _plain(up_node, parent, up_keys)
            assets.append(
                Asset(
                    asset_name(key),
                    meta(md, mk.FN),
                    down_keys,
                    deps=tuple(deps),
                    layer=node.group_name or "default",
                    fmt=meta(md, mk.FORMAT, "") or "",
                    description=node.description or "",
                    tags=dict(node.tags or {}),
                    cost_unit=meta(md, mk.COST_UNIT, "") or "",
                    params=_params(meta(md, mk.PARAMS)),
                    files=tuple(_params(meta(md, mk.FILES)) or ()),
                    env=tuple(_params(meta(md, mk.ENV)) or ()),
                    nondeterministic=bool(meta(md, mk.NONDETERMINISTIC, False)),
                )
            )
    valid_until = time.time() + 60 if open_ended else None
    return Graph(tuple(sources), tuple(assets), tuple(plain.values())), valid_until, cacheable


def _plain(node: Any, key: dg.AssetKey, keys: KeySet | None) -> Plain:
    """A plain Dagster asset as the core sees it: its keys, folder, deps and range rule."""
    policy = getattr(node, "backfill_policy", None)
    return Plain(
        asset_name(key),
        keys,
        node.group_name or "default",
        _io_manager_key(node, key) == "skipwise",
        deps=tuple(asset_name(k) for k in sorted(node.parent_keys, key=lambda k: k.to_user_string())),
        single_run=policy is not None and policy.max_partitions_per_run is None,
        external=not node.is_materializable,
    )


def _mapping_hint(parent: dg.AssetKey) -> str:
    name = parent.path[-1]
    return (
        f"give the input a mapping that fits, e.g. ins={{'{name}': dg.AssetIn(partition_mapping=dg.AllPartitionMapping())}} "
        "to read every partition, or a TimeWindowPartitionMapping / StaticPartitionMapping"
    )


def _params(text: Any) -> dict | None:
    if not text:
        return None
    import json

    return json.loads(text)


def _io_manager_key(node: Any, key: dg.AssetKey) -> str:
    try:
        return node.assets_def.get_io_manager_key_for_asset_key(key)
    except Exception:  # noqa: BLE001 - an external asset has none
        return ""


def definitions_in(module_name: str) -> dg.Definitions:
    """The `dg.Definitions` of module `module_name` (its `defs`, or its only Definitions)."""
    module = import_definitions(module_name)
    found = getattr(module, "defs", None)
    if not isinstance(found, dg.Definitions):
        candidates = [v for v in vars(module).values() if isinstance(v, dg.Definitions)]
        if len(candidates) != 1:
            raise ConfigError(
                f"{module_name} has {'no' if not candidates else 'several'} dg.Definitions and no `defs`",
                hint=f"name the project's definitions `defs` in {module_name}",
            )
        found = candidates[0]
    resume_collection()  # Dagster and the project's code are imported: a deferred collector may run again
    return found


def _remote(md: Any) -> str | None:
    """A source's DVC remote from its metadata: absent, none; "" DVC's default remote; else its name."""
    value = meta(md, mk.REMOTE, None)
    return None if value is None else str(value)


def resolve(module_name: str, root: Path) -> tuple[Graph, float | None, bool]:
    """The project's graph from its definitions module (registered with `skipwise.project.resolving`)."""

    def instance() -> Any:  # dynamic partitions list their keys from the Dagster instance
        return instance_for_root(root)

    return graph_of(definitions_in(module_name), instance_factory=instance)
