"""Narrowing a change since an asset's remembered plan (`skipwise.engine.settled`) to the partitions
it may reach: which input partitions each partition read (`Reads`), and the partitions a set of
moved files, changed raw versions and upstream partitions planned to run reaches (`narrowed`)."""

from __future__ import annotations

import base64
from array import array
from typing import Any

from skipwise.core.spec import Asset, Source


class Reads:
    """One input's partitions as an asset's partitions read them: each upstream key, the version
    it had, and the indices of the partitions that read it (kept as flat int arrays: an hourly
    asset over years reads millions of (key, partition) pairs)."""

    def __init__(self, keys: list[str], versions: list[Any], starts: "array[int]", readers: "array[int]") -> None:
        self.keys, self.versions, self.starts, self.readers = keys, versions, starts, readers
        self._index: dict[str, int] | None = None

    @classmethod
    def of(cls, read: dict[str, tuple[Any, list[int]]]) -> "Reads":
        """From {upstream key: (version, [partition index, ...])}."""
        keys = list(read)
        starts, readers = array("i", [0]), array("i")
        for key in keys:
            readers.extend(read[key][1])
            starts.append(len(readers))
        return cls(keys, [read[k][0] for k in keys], starts, readers)

    @classmethod
    def load(cls, data: Any) -> "Reads":
        """From `dump`'s form; ValueError/TypeError/KeyError when damaged."""
        keys, versions = data["keys"], data["versions"]
        starts = array("i", base64.b64decode(data["starts"]))
        readers = array("i", base64.b64decode(data["readers"]))
        if not (
            isinstance(keys, list) and isinstance(versions, list) and len(keys) == len(versions) == len(starts) - 1
        ):
            raise ValueError("inconsistent reads")
        if starts and (starts[0] != 0 or starts[-1] != len(readers)):
            raise ValueError("inconsistent reads")
        return cls(keys, versions, starts, readers)

    def dump(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "versions": self.versions,
            "starts": base64.b64encode(self.starts.tobytes()).decode("ascii"),
            "readers": base64.b64encode(self.readers.tobytes()).decode("ascii"),
        }

    def index(self, key: str) -> int | None:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.keys)}
        return self._index.get(key)

    def readers_at(self, i: int) -> "array[int]":
        """The partitions that read the `i`-th key."""
        return self.readers[self.starts[i] : self.starts[i + 1]]

    def readers_of(self, key: str) -> "array[int] | None":
        """The partitions that read `key`; None when none did."""
        i = self.index(key)
        return None if i is None else self.readers_at(i)


def narrowed(
    project: Any,
    asset: Asset,
    keys: list[str],
    record: dict[str, Any],
    reads: dict[str, Reads],
    before: "array[int]",
    extra_keys: list[Any],
    stats: "array[int]",
    sources: dict[str, Any],
    waiting: list[tuple[str, str]],
) -> list[int] | None:
    """The indices of the partitions of `asset` (its `keys`) a change since its remembered plan
    `record` may reach; None when a change cannot be placed.

    `before` and `stats` are the stats of the record's files then and now (the asset's manifests
    and outputs, two per key, then the files `extra_keys` names: an upstream manifest as
    [asset, key], anything else as None); `sources` the digests of the raw inputs' folders now;
    `waiting` the upstream partitions planned to run first. `project`: the engine's Project."""
    remembered = record.get("sources")
    own = 2 * len(keys)
    if not isinstance(remembered, dict) or len(before) != len(stats) or len(extra_keys) != len(stats) // 4 - own:
        return None
    found: set[int] = set()
    now, then = iter(stats), iter(before)
    for i, (a, b) in enumerate(zip(zip(now, now, now, now), zip(then, then, then, then))):
        if a == b:
            continue
        if i < own:
            found.add(i // 2)  # its manifest or its output
            continue
        extra = extra_keys[i - own]
        if not isinstance(extra, list) or len(extra) != 2 or extra[0] not in reads:
            return None  # a config file, or an upstream partition added or removed
        found.update(reads[extra[0]].readers_of(str(extra[1])) or ())
    for name, key in waiting:
        read = reads[name].readers_of(key) if name in reads else None
        if read is None:
            return None  # a new partition upstream: who reads it is not recorded
        found.update(read)
    for dep in asset.deps:
        up = project.graph.node(dep.name)
        if not isinstance(up, Source) or remembered.get(up.name) == sources.get(up.name):
            continue
        if up.name not in reads:
            return None
        # Its folder or its DVC record moved: every raw input read is versioned again.
        r = reads[up.name]
        for i, (now_, then_) in enumerate(zip(project.raw_versions(up, r.keys), r.versions)):
            if now_ != then_:
                found.update(r.readers_at(i))
    if any(not 0 <= i < len(keys) for i in found):
        return None
    return sorted(found)
