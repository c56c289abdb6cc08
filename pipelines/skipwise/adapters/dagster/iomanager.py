"""`sw.IOManager`: how plain Dagster assets read skipwise outputs and store their own.

A skipwise asset's output is written by the engine (addressed by fingerprint, committed by its
manifest), so storing it here is a no-op. A plain `@dg.asset` reading one through `AssetIn` gets
the committed partitions decoded, combined as its parameter's annotation asks (a dict per
upstream partition for `dict[str, X]`, else one value). A plain asset stored with
`io_manager_key="skipwise"` is written like a skipwise partition, with a manifest whose version
is the content hash of its bytes, so skipwise assets downstream of it know when it changed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import dagster as dg

from skipwise import formats
from skipwise.adapters.dagster.graph import ASSET, KIND, SOURCE, asset_name, meta
from skipwise.core import metakeys as mk
from skipwise.core.cost import utc_now_iso
from skipwise.core.errors import InputError
from skipwise.core.manifest import Manifest
from skipwise.core.partitions import UNPARTITIONED
from skipwise.core.spec import Graph, Source
from skipwise.engine import bodies
from skipwise.engine.project import Project
from skipwise.project.root import find_root
from skipwise.sources.objects import ObjectSources


class IOManager(dg.ConfigurableIOManager):
    """Reads and writes assets in a skipwise project's data folder (`root`; default: the project
    found from the current folder or $SKIPWISE_ROOT)."""

    root: str = ""

    def _project(self) -> Any:
        return _store_project(Path(self.root).resolve() if self.root else find_root())

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        md = context.definition_metadata or {}
        if meta(md, KIND) in (ASSET, SOURCE):
            return  # the engine stored it (or it is raw data DVC tracks)
        if obj is None:
            return

        project = self._project()
        name = asset_name(context.asset_key)
        layer = _group_of(context) or "default"
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [UNPARTITIONED]
        if len(keys) > 1:
            if not isinstance(obj, dict) or set(obj) != set(keys):
                raise InputError(
                    f"{name}: a run over {len(keys)} partitions must return a dict of partition key -> value "
                    "to be stored by sw.IOManager",
                    hint="return {key: value for key in context.partition_keys}",
                )
            values = obj
        else:
            values = {keys[0]: obj}
        for key, value in values.items():
            fmt = formats.for_value(value)
            data = fmt.encode(value)
            import hashlib

            sha = hashlib.sha256(data).hexdigest()
            with project.store.lock(layer, name, key):
                out, sha, size = project.store.write_output(layer, name, key, sha, fmt.ext, data)
                project.store.commit(
                    layer,
                    name,
                    Manifest(
                        asset=name,
                        partition=key,
                        fingerprint=f"stored:{sha}",
                        code_version="",
                        params_digest="",
                        inputs={},
                        output=out,
                        output_hash=sha,
                        output_size=size,
                        run_id=context.run_id or "",
                        created_at=utc_now_iso(),
                        reason="stored by sw.IOManager",
                        metadata={mk.FORMAT: fmt.name},
                    ),
                )
        context.add_output_metadata({mk.STORED_PARTITIONS: len(values)})

    def load_input(self, context: dg.InputContext) -> Any:
        project = self._project()
        name = asset_name(context.asset_key)
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [UNPARTITIONED]
        values: dict[str, Any] = {}
        upstream_md = _upstream_metadata(context)
        known = next((s for s in project.graph.sources if s.name == name), None)
        if meta(upstream_md, KIND) == SOURCE and known is not None and (known.layout is not None or known.paths):
            for key in keys:  # a path template or a function's paths: its files as they are now
                version = project.raw_version(known, key)
                if version == "absent":
                    what, fix = known.missing(key)
                    raise InputError(f"{name}[{key}] has {what}", hint=fix)
                parts = project.locality.read_source_files(known, key, version) if known.many else None
                if parts is not None:
                    frames = {str(i): formats.get("polars").decode(d) for i, d in enumerate(parts)}
                    values[key] = bodies.combine(frames, None)
                else:
                    values[key] = formats.get("polars").decode(project.locality.read_source(known, key, version))
            return bodies.combine(values, _annotation(context))
        if meta(upstream_md, KIND) == SOURCE and meta(upstream_md, mk.URL):  # an object-store prefix
            source = Source(
                name,
                "",
                known.partitions if known is not None else None,
                url=meta(upstream_md, mk.URL),
                region=meta(upstream_md, mk.REGION, ""),
                location=meta(upstream_md, mk.LOCATION, ""),
                versioned=bool(meta(upstream_md, mk.VERSIONED, False)),
            )
            objects = ObjectSources(project.locality)  # a listing of its own: this project outlives many runs
            for key in keys:  # each object as listed now, read by a conditional GET
                values[key] = formats.get("polars").decode(objects.read(source, key, objects.version(source, key)))
            return bodies.combine(values, _annotation(context))
        if meta(upstream_md, KIND) == SOURCE:  # a DVC-tracked raw input: its files, as they are
            source = Source(
                name,
                meta(upstream_md, mk.PATH),
                None,
                filename=meta(upstream_md, mk.FILENAME, "{partition_key}.parquet"),
            )
            for key in keys:
                values[key] = formats.get("polars").decode(
                    project.store.read_file(project.root / source.path / source.file_for(key))
                )
            return bodies.combine(values, _annotation(context))
        layer = project.store.layer_of(name)
        for key in keys:
            m = project.store.read_manifest(layer, name, key) if layer else None
            if m is None:
                raise InputError(
                    f"{name}[{key}] is not materialized (no manifest under data/*/{name}/)",
                    hint=f"materialize {name} for that partition first",
                )
            data = project.store.read_output(layer, name, key, m)
            fmt = formats.get(str(m.metadata.get(mk.FORMAT) or "bytes"))
            values[key] = fmt.decode(data)
        return bodies.combine(values, _annotation(context))


def _annotation(context: Any) -> Any:
    annotation = getattr(context.dagster_type, "typing_type", None)
    if annotation in (Any, object) or getattr(context.dagster_type, "is_any", False):
        return None
    return annotation


def _upstream_metadata(context: Any) -> Any:
    try:
        return context.upstream_output.definition_metadata or {}
    except Exception:  # noqa: BLE001 - no upstream output (a source without one): nothing to tell
        return {}


@functools.lru_cache(maxsize=8)
def _store_project(root: Path) -> Any:
    """A Project over `root` used only for its store (one per root and process: each input and
    output would otherwise open the stat cache and read the config again)."""
    return Project(root, Graph((), ()), params={})


def _group_of(context: Any) -> str:
    try:
        return context.asset_spec.group_name or "default"
    except Exception:  # noqa: BLE001
        return "default"
