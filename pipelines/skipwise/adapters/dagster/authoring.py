"""`@sw.asset`, `sw.dvc_source` and `sw.object_source`: Dagster's own decorators, with skipwise's engine as the body.

`sw.asset` takes what `dg.asset` takes and returns a real `dg.AssetsDefinition`. The function's
parameters are read once, here: the context, the inputs (named as in Dagster, by parameter or
`ins=`), a `dg.Config` parameter and resources. Its inputs become Dagster `deps` (the engine reads
them only for the partitions that run), and its body runs the engine over the run's partitions.
Mistakes in the declaration raise `ConfigError` now, naming the asset and the fix.
"""

from __future__ import annotations

import difflib
import inspect
import json
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import dagster as dg

from skipwise import formats
from skipwise.adapters.dagster import processes
from skipwise.adapters.dagster.graph import ASSET, KIND, SOURCE, dims_for, register_path_function
from skipwise.adapters.dagster.step import NO_VALUE_HINT, run_asset, step_failure
from skipwise.core import metakeys as mk
from skipwise.core.codeversion import CodeIndex
from skipwise.core.errors import ConfigError, SkipwiseError, debugging
from skipwise.core.layouts import Template, static_dir
from skipwise.core.locations import credentials_in
from skipwise.engine.bodies import REGISTRY, Body, Input, is_dict_of
from skipwise.engine.loading import load_project
from skipwise.project import recorder as loaded
from skipwise.project.root import find_root, run_root
from skipwise.store.objectstore import split_url

_CONTEXT_NAMES = ("context", "ctx")


def _root_of(module_file: str | None) -> Path:
    return find_root(Path(module_file).resolve().parent) if module_file else find_root()


def _is_config_class(ann: Any) -> bool:
    # a ConfigurableResource is a dg.Config too: it is a resource, not run config
    return inspect.isclass(ann) and issubclass(ann, dg.Config) and not _is_resource_class(ann)


def _is_resource_class(ann: Any) -> bool:
    return inspect.isclass(ann) and issubclass(ann, (dg.ConfigurableResource, dg.ConfigurableIOManager))


def _is_context(name: str, ann: Any) -> bool:
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
    return name in _CONTEXT_NAMES or "ExecutionContext" in str(text)


def _hints(fn: Callable) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable names: keep the annotations as written
        return dict(getattr(fn, "__annotations__", {}))


def _declared_params(config_class: Any) -> dict[str, Any] | None:
    """The Config class's fields with their defaults (None for a required one): they are the
    asset's declared params, checked against params.yaml when the project loads."""
    if config_class is None:
        return None
    out = {}
    for name, f in config_class.model_fields.items():
        default = None if f.is_required() else f.get_default(call_default_factory=True)
        out[name] = default if isinstance(default, (bool, int, float, str, list, dict)) or default is None else None
    return out


def _mapping_of(spec: Any) -> Any:
    return getattr(spec, "partition_mapping", None)


def asset(
    fn: Callable | None = None,
    *,
    name: str | None = None,
    key_prefix: str | list[str] | None = None,
    partitions_def: Any = None,
    ins: Mapping[str, dg.AssetIn] | None = None,
    deps: Any = None,
    group_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    kinds: set[str] | None = None,
    description: str | None = None,
    owners: list[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    required_resource_keys: set[str] | None = None,
    automation_condition: Any = None,
    io_manager_key: str = "skipwise",
    cost_unit: str = "",
    files: Sequence[str] = (),
    env: Sequence[str] = (),
    nondeterministic: bool = False,
    **dagster_kwargs: Any,
) -> Any:
    """Declare a skipwise asset the way `@dg.asset` declares one (same arguments); returns a
    `dg.AssetsDefinition`. A partition is recomputed only when its inputs, its code or its
    config changed; the rest is skipped without reading data.

    Parameters of the function: `context` (Dagster's context, with `partition_key` and
    `partition_time_window` of the partition being computed), one per input (named by `ins=` or by
    the upstream asset's name; annotate `dict[str, pl.DataFrame]` for one frame per upstream
    partition, `pl.DataFrame` for them concatenated, `pl.LazyFrame` for a lazy frame), a
    `dg.Config` subclass (its values: the defaults, overridden by the asset's params.yaml section,
    overridden by run config; all count in the fingerprint), and resources (by annotation).
    The return annotation picks the stored format (`skipwise.formats`); without one, the value
    decides. `cost_unit` (e.g. "predictions") adds `cost/usd_per_1k_<unit>` per output row.

    What the body reads while it runs (files, environment variables read by project code) is
    recorded and re-checked; `files=` (paths relative to the project root, globs allowed) and
    `env=` (variable names) declare what cannot be observed (a subprocess's reads, a network
    service's configuration). `nondeterministic=True` says two computations may differ:
    `skipwise verify` then does not compare its outputs.
    """
    if fn is None:
        return lambda f: asset(
            f,
            name=name,
            key_prefix=key_prefix,
            partitions_def=partitions_def,
            ins=ins,
            deps=deps,
            group_name=group_name,
            tags=tags,
            kinds=kinds,
            description=description,
            owners=owners,
            metadata=metadata,
            required_resource_keys=required_resource_keys,
            automation_condition=automation_condition,
            io_manager_key=io_manager_key,
            cost_unit=cost_unit,
            files=files,
            env=env,
            nondeterministic=nondeterministic,
            **dagster_kwargs,
        )
    if isinstance(fn, dg.AssetsDefinition) and len(fn.keys) > 1:
        raise ConfigError(
            f"@sw.asset cannot wrap a multi-asset ({', '.join(k.to_user_string() for k in fn.keys)}): "
            "skipwise versions, stores and skips one output per function",
            hint="write one @sw.asset per output, or keep it a plain @dg.multi_asset: it reads skipwise outputs "
            'through sw.IOManager, its outputs are stored with io_manager_key="skipwise", and skipwise plans and '
            "runs it with Dagster's own state",
        )
    if not inspect.isfunction(fn):
        what = "a class" if inspect.isclass(fn) else type(fn).__name__
        raise ConfigError(
            f"@sw.asset decorates a function, got {what}",
            hint="put @sw.asset(...) directly above `def my_asset(context, ...)`",
        )
    if fn.__name__ == "<lambda>":
        raise ConfigError(
            "@sw.asset decorates a function defined with `def`, got a lambda",
            hint="write `@sw.asset(...)` above `def my_asset(...)`: skipwise versions it by its source",
        )
    asset_name = name or fn.__name__
    where = f"asset {asset_name} ({fn.__module__}.{fn.__qualname__})"
    if (
        "<locals>" in fn.__qualname__
        or fn.__module__ == "__main__"
        and not getattr(sys.modules["__main__"], "__file__", None)
    ):
        raise ConfigError(
            f"{where}: define @sw.asset functions at the top level of a module",
            hint="skipwise versions a function by its module's source; move it out of the enclosing function",
        )
    for bad in ("io_manager_def", "code_version", "output_required", "dagster_type"):
        if bad in dagster_kwargs:
            raise ConfigError(f"{where}: {bad}= is set by skipwise", hint=f"remove {bad}=")
    ref = f"{fn.__module__}:{fn.__qualname__}"
    module_file = getattr(sys.modules.get(fn.__module__), "__file__", None) or inspect.getsourcefile(fn)
    root = _root_of(module_file)
    processes.arm(root)  # this process's own run record, at its exit (once per process)

    sig = inspect.signature(fn)
    hints = _hints(fn)
    ins = dict(ins or {})
    context_param = config_param = None
    config_class = None
    resource_params: list[str] = []
    inputs: list[Input] = []
    input_keys: dict[str, dg.AssetKey] = {}
    mappings: dict[str, Any] = {}
    params = list(sig.parameters.values())
    for i, p in enumerate(params):
        ann = hints.get(p.name, p.annotation if p.annotation is not inspect.Parameter.empty else None)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigError(
                f"{where}: *{p.name} / **{p.name} parameters are not supported",
                hint="name each input as a parameter (or in ins=)",
            )
        if i == 0 and _is_context(p.name, ann):
            context_param = p.name
        elif _is_config_class(ann):
            if config_param is not None:
                raise ConfigError(
                    f"{where}: two config parameters ({config_param}, {p.name})",
                    hint="put every config field in one dg.Config class",
                )
            config_param, config_class = p.name, ann
        elif _is_resource_class(ann):
            resource_params.append(p.name)
        else:
            spec = ins.get(p.name)
            key = (
                spec.key
                if spec is not None and spec.key is not None
                else dg.AssetKey([*(_prefix(spec.key_prefix) if spec is not None else []), p.name])
            )
            if ann is not None:
                try:
                    _check_input_annotation(ann)
                except TypeError as exc:
                    raise ConfigError(
                        f"{where}: input {p.name}: {exc}", hint=f"annotate {p.name} with one of: {formats.SUPPORTED}"
                    ) from None
            inputs.append(Input(p.name, "__".join(key.path), ann))
            input_keys[p.name] = key
            mappings[p.name] = _mapping_of(spec)
    unknown = sorted(set(ins) - set(input_keys))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(input_keys), n=1)
        raise ConfigError(
            f"{where}: ins={{'{unknown[0]}': ...}} names no parameter of {fn.__name__}"
            + (f"; did you mean {close[0]!r}?" if close else ""),
            hint=f"add a parameter `{unknown[0]}` to {fn.__name__}, or rename the ins= entry (parameters: "
            f"{', '.join(p.name for p in params) or 'none'})",
        )
    ret = hints.get("return", sig.return_annotation if sig.return_annotation is not inspect.Signature.empty else None)
    fmt = ""
    if ret is dg.MaterializeResult or typing.get_origin(ret) is dg.MaterializeResult and not typing.get_args(ret):
        raise ConfigError(
            f"{where}: returns dg.MaterializeResult without a value type: skipwise stores what the body returns",
            hint=NO_VALUE_HINT + " (annotate e.g. -> dg.MaterializeResult[pl.DataFrame], or -> pl.DataFrame)",
        )
    inner = _output_inner(ret)
    if inner is not None:
        try:
            f = formats.for_annotation(inner)
        except TypeError as exc:
            raise ConfigError(
                f"{where}: return annotation {formats.describe(ret)} is not a format skipwise can store: {exc}",
                hint=f"return one of: {formats.SUPPORTED} (or drop the annotation to decide from the value)",
            ) from None
        fmt = f.name if f is not None else ""
    resource_keys = set(required_resource_keys or ()) | set(resource_params)

    dep_list: list[Any] = [dg.AssetDep(k, partition_mapping=mappings[p]) for p, k in input_keys.items()]
    for d in deps or ():
        dep_list.append(d if isinstance(d, dg.AssetDep) else dg.AssetDep(d))
    body = Body(ref, fn, context_param, tuple(inputs), config_param, config_class, tuple(resource_params), ret)
    REGISTRY[ref] = body
    code_version = _code_version(root, ref, where)
    md = {
        **dict(metadata or {}),
        KIND: ASSET,
        mk.FN: ref,
        mk.FORMAT: fmt,
        mk.INPUTS: ",".join(i.upstream for i in inputs),
    }
    if cost_unit:
        md[mk.COST_UNIT] = cost_unit
    if isinstance(files, str) or isinstance(env, str):
        raise ConfigError(
            f"{where}: files= and env= take lists", hint='write files=["config/lookup.csv"], env=["FEATURE_MODE"]'
        )
    if files:
        md[mk.FILES] = json.dumps(sorted({str(f) for f in files}))
    if env:
        md[mk.ENV] = json.dumps(sorted({str(e) for e in env}))
    if nondeterministic:
        md[mk.NONDETERMINISTIC] = True
    declared = _declared_params(config_class)
    if declared is not None:
        md[mk.PARAMS] = json.dumps(declared, sort_keys=True)
    auto_kinds = set(kinds or ()) or ({fmt} if fmt in ("polars", "pandas", "torch") else set())

    def run(context: dg.AssetExecutionContext) -> Iterator[Any]:
        try:
            yield from run_asset(context, run_root(root), body, partitions_def)
        except SkipwiseError as exc:
            # Raised here, near the top of the step, and without the error as its cause, the
            # failure's trace holds no skipwise frame; SKIPWISE_DEBUG=1 chains the whole traceback.
            raise step_failure(exc) from (exc if debugging() else None)

    if config_class is not None:

        def _materialize(context, config):  # noqa: ANN001, ANN202 - config is annotated below
            yield from run(context)

        _materialize.__annotations__["config"] = config_class
    else:

        def _materialize(context):  # noqa: ANN001, ANN202
            yield from run(context)

    _materialize.__name__ = fn.__name__
    _materialize.__doc__ = fn.__doc__

    return dg.asset(
        name=asset_name,
        key_prefix=key_prefix,
        deps=dep_list,
        partitions_def=partitions_def,
        backfill_policy=dagster_kwargs.pop(
            "backfill_policy", dg.BackfillPolicy.single_run() if partitions_def else None
        ),
        group_name=group_name,
        tags=dict(tags or {}),
        kinds=auto_kinds or None,
        description=description if description is not None else inspect.getdoc(fn),
        owners=owners,
        metadata=md,
        output_required=False,
        code_version=code_version,
        io_manager_key=io_manager_key,
        required_resource_keys=resource_keys or None,
        automation_condition=automation_condition,
        **dagster_kwargs,
    )(_materialize)


def _prefix(p: Any) -> list[str]:
    if not p:
        return []
    return [p] if isinstance(p, str) else list(p)


def _output_inner(ret: Any) -> Any:
    """The value type of a return annotation (`dg.Output[X]` -> X); None when absent."""
    if ret is None or ret is inspect.Signature.empty:
        return None
    origin = typing.get_origin(ret)
    if origin is not None and getattr(origin, "__name__", "") in ("Output", "MaterializeResult"):
        args = typing.get_args(ret)
        return args[0] if args else None
    if getattr(ret, "__name__", "") in ("Output", "Result"):
        return None
    return ret


def _check_input_annotation(ann: Any) -> None:
    """TypeError when an input annotation asks for something no format can give."""
    if is_dict_of(ann):
        args = typing.get_args(ann)
        if args:
            formats.for_annotation(args[1])
        return
    formats.for_annotation(ann)


def _code_version(root: Path, ref: str, where: str) -> str | None:
    """skipwise's code version of `ref`, as Dagster's `code_version` (Dagster's staleness then sees code edits)."""
    try:
        return _code_index(root).version(ref).digest[:16]
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - the engine versions the code again before each run; Dagster's label may lack it
        return None


_INDEXES: dict[tuple[Path, int], Any] = {}


def _code_index(root: Path) -> Any:
    """One code index per project while no module is imported anew: the decorators of one
    definitions module share its parses and its cache file instead of reading them per asset."""
    key = (root, loaded.generation())
    if key not in _INDEXES:
        _INDEXES.clear()
        _INDEXES[key] = CodeIndex(root, cache=root / "data" / ".skipwise" / "code.json")
    return _INDEXES[key]


def dvc_source(
    name: str,
    path: str | Callable[[str], str | Sequence[str]],
    partitions_def: Any = None,
    filename: str | None = None,
    description: str = "",
    group_name: str = "raw",
    remote: str | bool = False,
    **kwargs: Any,
) -> dg.AssetsDefinition:
    """A raw input tracked by DVC, versioned per partition by its files' DVC md5s (checked
    against the workspace); observing it records them. `path` is relative to the project root:

    - a folder (``data/raw/sales``): one file per partition inside it, named by `filename`
      (default ``{partition_key}.parquet``, the key folder-escaped as in earlier versions);
    - a path template with the partition's fields (``data/raw/events/{date:%Y/%m/%d}/{hour:%H}.parquet``,
      ``data/raw/clicks/dt={date:%Y-%m-%d}/*.parquet``): the key rendered literally, a time window
      by strftime specs, a multi-partition's dimensions by name; glob characters match several
      files per partition, read concatenated (see `skipwise.core.layouts`);
    - a file (``data/raw/lookup.parquet``) for an unpartitioned source;
    - a function `key -> path or paths` (relative to the root): called for every key when the
      definitions resolve (so it must depend on the key alone); its answers are kept with the graph.

    DVC may track the folder, a folder above it, or the file (`dvc add data/raw/events`).

    `remote`: where the bytes are when the workspace does not have them. ``True`` is DVC's
    default remote (``core.remote``), a string names a DVC remote (``dvc remote add NAME URL``).
    A run then reads exactly the partitions it needs from the remote, each by its md5, through
    skipwise's local content-addressed cache; a workspace file that matches is used first."""
    caller = sys._getframe(1).f_globals.get("__file__")
    root = _root_of(caller)
    where = f"dvc_source {name}"
    metadata = {KIND: SOURCE, **({mk.REMOTE: "" if remote is True else str(remote)} if remote else {})}
    if callable(path):
        if filename is not None:
            raise ConfigError(f"{where}: filename= goes with a folder path, not a function", hint="remove filename=")
        metadata.update({mk.PATH: "", mk.PATH_FN: register_path_function(path)})
        shown = f"the paths {getattr(path, '__qualname__', 'a function')} gives"
    else:
        metadata.update(_dvc_layout(where, root, path, partitions_def, filename))
        shown = path

    @dg.observable_source_asset(
        name=name,
        partitions_def=partitions_def,
        description=description or f"Raw files at {shown}, versioned by DVC.",
        group_name=group_name,
        metadata=metadata,
        io_manager_key="skipwise",
        **kwargs,
    )
    def _observe(context) -> Any:  # noqa: ANN001
        return _observed_versions(root, name, partitions_def)

    return _observe


def _dvc_layout(where: str, root: Path, path: str, partitions_def: Any, filename: str | None) -> dict[str, str]:
    """The metadata saying where a DVC source's partitions are (see `dvc_source`); ConfigError
    naming the fix for a path outside the root or a template the partitioning cannot fill."""
    if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
        raise ConfigError(
            f"{where}: path {path!r} must be relative to the project root, inside it",
            hint="e.g. sw.dvc_source('raw_sales', 'data/raw/sales', ...)",
        )
    dims = dims_for(partitions_def)
    if any(c in path for c in "{*?["):
        if filename is not None:
            raise ConfigError(
                f"{where}: path {path!r} is a template and filename= is given too",
                hint="put the file's name in the template and remove filename=",
            )
        folder = static_dir(path)
        layout = path[len(folder) + 1 :] if folder else path
        Template.of(layout, where).check(dims, where)
        return {mk.PATH: folder, mk.LAYOUT: layout}
    full = root / path
    if full.is_file() or (not full.is_dir() and Path(path).suffix and filename is None):
        if partitions_def is not None:
            raise ConfigError(
                f"{where}: path {path!r} is one file, but the source is partitioned",
                hint=f"name each partition's file with its fields, e.g. '{Path(path).with_suffix('')}/{{partition_key}}{Path(path).suffix}'",
            )
        return {mk.PATH: path, mk.LAYOUT: ""}
    filename = filename or "{partition_key}.parquet"
    if "{partition_key}" not in filename and "{key}" not in filename and partitions_def is not None:
        raise ConfigError(
            f"{where}: filename {filename!r} does not contain {{partition_key}}",
            hint="e.g. filename='{partition_key}.parquet'",
        )
    return {mk.PATH: path, mk.FILENAME: filename}


def object_source(
    name: str,
    url: str,
    partitions_def: Any = None,
    region: str = "",
    location: str = "",
    versioned: bool = False,
    description: str = "",
    group_name: str = "raw",
    **kwargs: Any,
) -> dg.AssetsDefinition:
    """A raw input on an object store: one object per partition under a prefix, e.g.
    ``s3://bucket/events/{partition_key}.parquet`` (S3 or an S3-compatible endpoint through
    ``$AWS_ENDPOINT_URL``; credentials from the environment or the provider chain).

    Its version per partition is the object's ETag, read from one listing of the prefix per
    planning process (no request per partition); a run reads exactly the partitions it needs, each
    with a conditional GET on that ETag (an object overwritten since the listing is an error, never
    new bytes under the old version), through skipwise's content-addressed input cache.

    `region` names the bucket's region, or `location` a ``[locations.<name>]`` entry of
    skipwise.toml that holds the URL; with neither, the declared location holding the URL, else an
    unknown region (bytes counted as ``internet``). `versioned=True` (a bucket with versioning on)
    lists object versions and reads each object by the version id the listing saw."""
    where = f"object_source {name}"
    if credentials_in(url):
        raise ConfigError(
            f"{where}: the URL carries credentials",
            hint="remove the user:password@ part; credentials come from the environment or the provider chain",
        )
    try:
        split_url(url)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
    template = Template.of(url, where)
    if partitions_def is not None and not template.fields:
        raise ConfigError(
            f"{where}: url {url!r} does not contain {{partition_key}} (or another field of the partition)",
            hint="one object per partition, e.g. s3://bucket/events/{partition_key}.parquet",
        )
    if partitions_def is None and template.fields:
        raise ConfigError(
            f"{where}: url {url!r} has a placeholder but the source has no partitions_def",
            hint="pass partitions_def=..., or name the one object without {partition_key}",
        )
    template.check(dims_for(partitions_def), where)
    if region and location:
        raise ConfigError(
            f"{where}: region= and location= both given", hint="a [locations] entry has its own region: pass one"
        )
    caller = sys._getframe(1).f_globals.get("__file__")
    root = _root_of(caller)

    @dg.observable_source_asset(
        name=name,
        partitions_def=partitions_def,
        description=description or f"Objects under {url.split('{', 1)[0]}, versioned by their ETags.",
        group_name=group_name,
        metadata={
            KIND: SOURCE,
            mk.PATH: "",
            mk.URL: url,
            mk.REGION: region,
            mk.LOCATION: location,
            mk.VERSIONED: bool(versioned),
        },
        io_manager_key="skipwise",
        **kwargs,
    )
    def _observe(context) -> Any:  # noqa: ANN001
        return _observed_versions(root, name, partitions_def)

    return _observe


def _observed_versions(root: Path, name: str, partitions_def: Any) -> Any:
    """What observing source `name` records: its version per partition (those that have data)."""
    project = load_project(run_root(root))
    source = next(s for s in project.graph.sources if s.name == name)
    if partitions_def is None:
        return dg.DataVersion(project.raw_version(source, "all"))
    versions = {k: project.raw_version(source, k) for k in source.partitions.keys()}
    return dg.DataVersionsByPartition({k: v for k, v in versions.items() if v != "absent"})
