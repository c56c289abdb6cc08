"""The baselines' way to build a partition: read its raw files, call the asset body, write parquet. No skipping.

Used in-process by the plain Dagster assets (bench.systems) and, copied into the temporary project
as `plain_build.py`, as the command of the whole-stage `dvc repro` baseline:

    python plain_build.py --graph assets.graph:GRAPH --select flight_features,weather_features --out data/dvcplain \
        --range 2013-01-01...2013-12-31

Only the graph's pure spec modules and the bodies are imported: no engine, no Dagster, no DVC. Each
raw file is decoded once per build (a small cache keeps the look-back window), which is what a plain
script would do; the bytes read are counted and written to --stats.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping

import polars as pl

from skipwise.core.partitions import Window, upstream_keys
from skipwise.core.spec import Asset, Graph, Source


@dataclass(frozen=True)
class Ctx:
    """What the bodies use of skipwise's PartitionContext: the key, its day and the params."""

    asset: str
    partition_key: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def day(self) -> date:
        return date.fromisoformat(self.partition_key)


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


def load_graph(ref: str) -> Graph:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def load_fn(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def load_params(root: Path) -> dict[str, Any]:
    path = root / "params.yaml"
    if not path.exists():
        return {}
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def window_keep(graph: Graph, assets: list[Asset]) -> int:
    """How many raw frames to keep so that each is decoded once per build."""
    spans = [d.mapping.lookback + 1 for a in assets for d in a.deps if isinstance(d.mapping, Window)]
    return 2 * sum(spans) + 2 if spans else 4


def build_partition(root: Path, graph: Graph, asset: Asset, key: str, reader: RawReader, fn: Callable, params: Mapping) -> pl.DataFrame:
    """One partition of `asset` from its raw inputs (sources only: the bench graphs' feature layer)."""
    inputs: dict[str, pl.DataFrame] = {}
    for dep in asset.deps:
        up = graph.node(dep.name)
        if not isinstance(up, Source):
            raise ValueError(f"plain baseline reads raw sources only; {asset.name} depends on asset {up.name}")
        frames = [f for k in upstream_keys(dep.mapping, key, up.partitions) if (f := reader.read(root / up.path / up.file_for(k))) is not None]
        inputs[dep.name] = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    value = fn(Ctx(asset.name, key, params.get(asset.name, {}) or {}), **inputs)
    return getattr(value, "value", value)  # a skipwise Result: its value


def write_partition(frame: pl.DataFrame, out: Path, asset: str, key: str) -> int:
    """Write one partition as <out>/<asset>/<key>.parquet (the engine's writer settings); returns its size."""
    path = out / asset / f"{key}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="zstd", statistics=False)
    return path.stat().st_size


def keys_in(asset: Asset, partition_range: str | None) -> list[str]:
    """The asset's keys from a to b ("a...b"), or all of them."""
    if not partition_range:
        return asset.partitions.keys()
    first, _, last = partition_range.partition("...")
    return asset.partitions.key_range(first, last or first)


def rebuild(root: Path, graph: Graph, selection: list[str], out: Path, partition_range: str | None = None) -> dict[str, int]:
    """Every partition (in the range) of every selected asset, from scratch."""
    assets = [graph.asset(n) for n in selection]
    reader = RawReader(window_keep(graph, assets))
    params = load_params(root)
    computed = 0
    for asset in assets:
        fn = load_fn(asset.fn)
        for key in keys_in(asset, partition_range):
            write_partition(build_partition(root, graph, asset, key, reader, fn, params), out, asset.name, key)
            computed += 1
    return {"computed": computed, "bytes_read": reader.bytes_read}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Rebuild every partition of the selected assets (no skipping).")
    p.add_argument("--graph", required=True, help="module:GRAPH")
    p.add_argument("--select", required=True, help="comma-separated assets")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--range", default=None, help="partitions a...b (default: all)")
    p.add_argument("--stats", default=None, help="write {computed, bytes_read} here as JSON")
    args = p.parse_args(argv)
    root = Path.cwd()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    stats = rebuild(root, load_graph(args.graph), args.select.split(","), root / args.out, args.range)
    if args.stats:
        Path(args.stats).parent.mkdir(parents=True, exist_ok=True)
        Path(args.stats).write_text(json.dumps(stats))
    print(f"plain_build: {stats['computed']} partitions rebuilt, {stats['bytes_read']} bytes read")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
