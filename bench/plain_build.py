"""The baselines' way to build a partition: read its raw files, call the asset's function, write parquet. No skipping.

Used in-process by the plain Dagster assets (bench.systems) and, copied into the temporary project
as `plain_build.py`, as the command of the whole-stage `dvc repro` baseline:

    python plain_build.py --defs assets.definitions --select flight_features,weather_features --out data/dvcplain \
        --range 2013-01-01...2013-12-31

The functions are the project's own `@sw.asset` functions, so the project's Dagster definitions are
imported (that imports Dagster: the functions live beside their declarations); which raw files a
partition reads comes from the definitions' partition mappings, resolved to plain key lists. No
engine state is read or written (no manifests, stat cache, ledger or graph snapshot), nothing is
skipped, no DVC. Each raw file is decoded once per build (a small cache keeps the look-back
window), which is what a plain script would do; the bytes read are counted and written to --stats.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import polars as pl
from skipwise.core.partitions import Offsets, Window, keys_of, upstream_keys
from skipwise.core.spec import Asset, Graph, Source


class RawReader:
    """Decodes raw partition files, keeping the last few (the look-back window) in memory."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self.bytes_read = 0
        self._frames: OrderedDict[Path, pl.DataFrame] = OrderedDict()

    def read(self, path: Path) -> pl.DataFrame | None:
        if path in self._frames:
            self._frames.move_to_end(path)
            return self._frames[path]
        if not path.exists():
            return None  # a look-back day before the data starts
        data = path.read_bytes()
        self.bytes_read += len(data)
        frame = pl.read_parquet(data)
        self._frames[path] = frame
        if len(self._frames) > self.keep:
            self._frames.popitem(last=False)
        return frame


def load_definitions(module: str) -> tuple[Any, Graph]:
    """(the project's `dg.Definitions`, skipwise's plain graph of them), resolved afresh: no snapshot."""
    from skipwise.adapters.dagster.graph import definitions_in, graph_of

    defs = definitions_in(module)
    return defs, graph_of(defs)[0]


def load_graph(module: str) -> Graph:
    return load_definitions(module)[1]


def dagster_partitions(defs: Any, name: str) -> Any:
    """The Dagster partitions definition the project declared for asset `name`."""
    import dagster as dg

    return defs.resolve_asset_graph().get(dg.AssetKey(name.split("__"))).partitions_def


def load_body(asset: Asset) -> Any:
    """The asset's registered function (`@sw.asset` registered it when its module was imported)."""
    from skipwise.engine.bodies import body_of

    return body_of(asset.fn)


def load_params(root: Path) -> dict[str, Any]:
    path = root / "params.yaml"
    if not path.exists():
        return {}
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def _span(mapping: Any) -> int:
    if isinstance(mapping, Offsets):
        return mapping.end - mapping.start + 1
    if isinstance(mapping, Window):
        return mapping.lookback + 1
    return 1


def window_keep(graph: Graph, assets: list[Asset]) -> int:
    """How many raw frames to keep so that each is decoded once per build."""
    spans = [_span(d.mapping) for a in assets for d in a.deps]
    return 2 * sum(spans) + 2 if spans else 4


def build_partition(
    root: Path, graph: Graph, asset: Asset, key: str, reader: RawReader, body: Any, params: Mapping
) -> Any:
    """One partition of `asset` from its raw inputs (sources only: the bench graphs' feature layer)."""
    from skipwise.engine.bodies import PartitionContext

    inputs: dict[str, dict[str, pl.DataFrame]] = {}
    for dep in asset.deps:
        up = graph.node(dep.name)
        if not isinstance(up, Source):
            raise ValueError(f"plain baseline reads raw sources only; {asset.name} depends on asset {up.name}")
        keys = upstream_keys(dep.mapping, key, up.partitions)
        if keys is None:
            keys = keys_of(up.partitions)
        inputs[dep.name] = {k: f for k in keys if (f := reader.read(root / up.path / up.file_for(k))) is not None}
    value = body.call(PartitionContext(asset.name, key), inputs, params.get(asset.name, {}) or {})
    return getattr(value, "value", value)  # a dg.Output: its value


def write_partition(frame: pl.DataFrame, out: Path, asset: str, key: str) -> int:
    """Write one partition as <out>/<asset>/<key>.parquet (the engine's writer settings); returns its size."""
    path = out / asset / f"{key}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="zstd", statistics=False)
    return path.stat().st_size


def keys_in(asset: Asset, partition_range: str | None) -> list[str]:
    """The asset's keys from a to b ("a...b"), or all of them."""
    if not partition_range:
        return keys_of(asset.partitions)
    first, _, last = partition_range.partition("...")
    return asset.partitions.key_range(first, last or first)


def rebuild(
    root: Path, graph: Graph, selection: list[str], out: Path, partition_range: str | None = None
) -> dict[str, int]:
    """Every partition (in the range) of every selected asset, from scratch."""
    assets = [graph.asset(n) for n in selection]
    reader = RawReader(window_keep(graph, assets))
    params = load_params(root)
    computed = 0
    for asset in assets:
        body = load_body(asset)
        for key in keys_in(asset, partition_range):
            write_partition(build_partition(root, graph, asset, key, reader, body, params), out, asset.name, key)
            computed += 1
    return {"computed": computed, "bytes_read": reader.bytes_read}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Rebuild every partition of the selected assets (no skipping).")
    p.add_argument("--defs", required=True, help="the module holding the project's dg.Definitions")
    p.add_argument("--select", required=True, help="comma-separated assets")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--range", default=None, help="partitions a...b (default: all)")
    p.add_argument("--stats", default=None, help="write {computed, bytes_read} here as JSON")
    args = p.parse_args(argv)
    root = Path.cwd()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    stats = rebuild(root, load_graph(args.defs), args.select.split(","), root / args.out, args.range)
    if args.stats:
        Path(args.stats).parent.mkdir(parents=True, exist_ok=True)
        Path(args.stats).write_text(json.dumps(stats))
    print(f"plain_build: {stats['computed']} partitions rebuilt, {stats['bytes_read']} bytes read")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
