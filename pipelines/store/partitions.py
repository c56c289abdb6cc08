"""Partition storage on the local filesystem.

Layout, per asset partition:  data/<layer>/<asset>/<key>/<fingerprint>.<ext>  plus  manifest.json.
Outputs are addressed by fingerprint (an output computed once can be found again); the manifest,
written last and atomically, says which one is current. A crash leaves the old manifest (pointing at
the old, intact output) or the new one: never a partial partition.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.core.cost import IOCounter
from pipelines.core.hashing import sha256_bytes
from pipelines.core.manifest import Manifest
from pipelines.core.partitions import validate_key
from pipelines.store.files import atomic_write
from pipelines.store.statcache import StatCache

MANIFEST = "manifest.json"


class PartitionStore:
    """Reads and writes partitions and their manifests under `data_root`, counting bytes moved."""

    def __init__(self, data_root: Path, statcache: StatCache, io: IOCounter | None = None) -> None:
        self.data_root = Path(data_root)
        self.statcache = statcache
        self.io = io or IOCounter()

    def partition_dir(self, layer: str, asset: str, key: str) -> Path:
        """Directory of one partition; refuses hostile keys before touching the filesystem."""
        return self.data_root / layer / asset / validate_key(key)

    def read_manifest(self, layer: str, asset: str, key: str) -> Manifest | None:
        """The committed manifest, or None if there is none. ValueError if it is unreadable."""
        # Plain strings on this hot path: planning reads one manifest per partition.
        path = os.path.join(self.data_root, layer, asset, validate_key(key), MANIFEST)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            m = Manifest.from_json(text)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        if m.asset != asset or m.partition != key:
            raise ValueError(f"{path}: manifest is for {m.asset}[{m.partition}], not {asset}[{key}]")
        return m

    def output_path(self, layer: str, asset: str, key: str, manifest: Manifest) -> Path:
        """Where the manifest's output lives."""
        name = Path(manifest.output).name  # a manifest can never point outside its partition
        return self.partition_dir(layer, asset, key) / name

    def output_state(self, layer: str, asset: str, key: str, manifest: Manifest) -> str:
        """"ok" when the output is there with the recorded hash, else "missing" or "changed".

        Cheap first: a stat against the stat cache; the bytes are re-hashed only if the file moved.
        """
        path = os.path.join(self.data_root, layer, asset, validate_key(key), os.path.basename(manifest.output))
        try:
            if os.stat(path).st_size != manifest.output_size:
                return "changed"
            return "ok" if self.statcache.digest(path, "sha256") == manifest.output_hash else "changed"
        except FileNotFoundError:
            return "missing"

    def read_output(self, layer: str, asset: str, key: str, manifest: Manifest) -> bytes:
        """The output bytes of a committed partition (metered)."""
        data = self.output_path(layer, asset, key, manifest).read_bytes()
        self.io.add_read(len(data))
        return data

    def read_file(self, path: Path) -> bytes:
        """Any input file's bytes (metered)."""
        data = Path(path).read_bytes()
        self.io.add_read(len(data))
        return data

    def write_output(self, layer: str, asset: str, key: str, fingerprint: str, ext: str, data: bytes) -> tuple[str, str, int]:
        """Write an output atomically under its fingerprint; returns (file name, sha256, size)."""
        name = f"{fingerprint}.{ext}"
        path = self.partition_dir(layer, asset, key) / name
        atomic_write(path, data)
        self.io.add_write(len(data))
        sha = sha256_bytes(data)
        self.statcache.remember(path, "sha256", sha)
        return name, sha, len(data)

    def sweep_temp(self, layer: str, asset: str, key: str) -> int:
        """Remove temporary files a killed writer left in this partition; call it holding the lock."""
        d = self.partition_dir(layer, asset, key)
        removed = 0
        for tmp in d.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed

    def commit(self, layer: str, asset: str, manifest: Manifest) -> None:
        """Write the manifest last: from now on the partition is done."""
        data = manifest.to_json().encode()
        atomic_write(self.partition_dir(layer, asset, manifest.partition) / MANIFEST, data)
        self.io.add_write(len(data))

    @contextmanager
    def lock(self, layer: str, asset: str, key: str) -> Iterator[None]:
        """Hold an exclusive lock on one partition (other processes on this host wait)."""
        d = self.partition_dir(layer, asset, key)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
