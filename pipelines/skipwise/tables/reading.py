"""Reading committed partitions from outside a pipeline: `skipwise.read`, `skipwise.scan`,
`skipwise.relation`.

Only what a manifest commits is ever read: a partition's current output, by the name its manifest
gives (outputs are named by fingerprint and never rewritten), checked against the hash the
manifest records. A reader running during a materialization therefore sees each partition either
before or after it, never a mix or a half-written file; older versions kept beside the current
one (see `skipwise gc`) are never picked up, as a glob over the folder would.

    df = sw.read("flight_features", partition="2013-03-14")
    lf = sw.scan("flight_features", partitions="2013-03-01...2013-03-31")
    rel = sw.relation("flight_features", partitions="2013-03-01...2013-03-31")   # DuckDB
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skipwise import formats
from skipwise.core import metakeys as mk
from skipwise.core.errors import InputError
from skipwise.core.hashing import sha256_bytes
from skipwise.core.partitions import UNPARTITIONED, keys_in_range, validate_key
from skipwise.engine.loading import load_project
from skipwise.project.root import find_root


def _project(root: str | Path | None) -> Any:
    return load_project(Path(root) if root is not None else find_root())


def _asset(project: Any, name: str) -> Any:
    """The skipwise asset `name`, or the plain Dagster asset `name` that `sw.IOManager` stores."""
    stored = {p.name: p for p in project.graph.plain if p.stored}
    if name in stored:
        return stored[name]
    try:
        return project.graph.asset(name)
    except Exception:  # noqa: BLE001 - KeyError or the graph's own error: say what exists
        names = ", ".join([*(a.name for a in project.graph.assets), *stored])
        plain = any(p.name == name for p in project.graph.plain)
        raise InputError(
            f"{name!r} is a plain Dagster asset not stored by sw.IOManager"
            if plain
            else f"no skipwise asset named {name!r} in {project.root}",
            hint='give it io_manager_key="skipwise" to read it here' if plain else f"use one of: {names}",
        ) from None


def _committed(project: Any, asset: Any, keys: list[str], skip_missing: bool = False) -> list[tuple[str, Any]]:
    """(key, manifest) of each key's current version, checked (cheaply: stat cache, re-hashed only
    if the file moved; on an object store, the listing's size and ETag) against its manifest; a key
    with none is an error, or left out with `skip_missing`."""
    out = []
    for key in keys:
        m = project.manifest(asset, key)
        if m is None:
            if skip_missing:
                continue
            raise InputError(
                f"{asset.name}[{key}] has not been materialized",
                hint=f"run `skipwise materialize --select {asset.name} --partition {key}`",
            )
        state = project.store.output_state(asset.layer, asset.name, key, m)
        if state != "ok":
            raise InputError(
                f"{asset.name}[{key}]: its output file is {state} (it no longer matches its manifest)",
                hint=f"run `skipwise materialize --select {asset.name} --partition {key}` to rebuild it",
            )
        out.append((key, m))
    return out


def _keys(project: Any, asset: Any, partitions: str | None) -> list[str]:
    if asset.partitions is None:
        if partitions is not None:
            raise InputError(f"{asset.name} is not partitioned", hint="leave out partition/partitions")
        return [UNPARTITIONED]
    return keys_in_range(asset.partitions, partitions) if partitions is not None else asset.partitions.keys()


def read(asset: str, partition: str | None = None, *, root: str | Path | None = None) -> Any:
    """One committed partition of `asset` as its format decodes it (a polars DataFrame for
    tables), its bytes checked against the manifest's hash first. `partition` may be omitted for
    an unpartitioned asset. `root`: the project (default: found from the current folder)."""
    return read_from(_project(root), asset, partition)


def read_from(project: Any, asset: str, partition: str | None = None) -> Any:
    """`read` on a project already loaded (`skipwise.engine.loading.load_project`)."""
    spec = _asset(project, asset)
    if spec.partitions is None:
        if partition is not None:
            raise InputError(f"{asset} is not partitioned", hint=f'sw.read("{asset}")')
        key = UNPARTITIONED
    elif partition is None:
        raise InputError(f"{asset} is partitioned: say which partition", hint=f'sw.read("{asset}", partition="...")')
    else:
        key = validate_key(partition)
        spec.partitions.parse(key)
    ((_, m),) = _committed(project, spec, [key])
    data = project.store.read_output(spec.layer, spec.name, key, m)
    if sha256_bytes(data) != m.output_hash:  # replaced between the check and the read: never hand it out
        raise InputError(f"{asset}[{key}] changed while it was being read", hint="read it again")
    return formats.get(str(m.metadata.get(mk.FORMAT) or "polars")).decode(data)


def _parquet_files(asset: str, partitions: str | None, root: str | Path | None) -> list[str]:
    project = _project(root)
    spec = _asset(project, asset)
    # Every partition when no range is named: those not materialized yet are left out.
    found = _committed(project, spec, _keys(project, spec, partitions), skip_missing=partitions is None)
    odd = [(k, Path(m.output).suffix) for k, m in found if Path(m.output).suffix != ".parquet"]
    if odd:
        raise InputError(
            f"{asset} is not stored as parquet ({odd[0][0]} is {odd[0][1]})",
            hint=f"read its partitions one by one with sw.read({asset!r}, partition=...)",
        )
    if not found:
        raise InputError(
            f"{asset} has no committed partitions{f' in {partitions}' if partitions else ''}",
            hint=f"run `skipwise materialize --select {asset}`",
        )
    # Local files as they are; an object store's fetched once per host into local copies (by ETag).
    return [str(project.store.local_copy(spec.layer, spec.name, k, m)) for k, m in found]


def scan(asset: str, partitions: str | None = None, *, root: str | Path | None = None) -> Any:
    """A polars LazyFrame over the committed current partitions of `asset` (all of them, or the
    range ``"a...b"`` / one key): exactly the files the manifests name, each checked first."""
    import polars as pl

    files = _parquet_files(asset, partitions, root)
    return pl.scan_parquet(files)


def relation(
    asset: str, partitions: str | None = None, *, root: str | Path | None = None, connection: Any = None
) -> Any:
    """The same partitions as `scan`, as a DuckDB relation (on `connection`, default DuckDB's own)."""
    import duckdb

    files = _parquet_files(asset, partitions, root)
    return (connection or duckdb).read_parquet(files)
