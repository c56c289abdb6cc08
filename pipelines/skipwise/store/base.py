"""The interfaces the engine is handed: where partitions live (`PartitionStore`) and where their
cost records go (`CostLedger`, written through a run's `Journal`).

Two implementations of each sit beside this module: local disk (`partitions.LocalPartitionStore`,
`ledger.Ledger`) and an S3-compatible object store (`objectpartitions.ObjectPartitionStore`,
`objectledger.ObjectLedger`); `backends.open_store` chooses. Their written contracts:

- a partition is committed when its manifest is written, last; before that, readers see the old
  manifest (and its intact output) or none: never a partial partition;
- outputs are named by fingerprint and content hash, so a name never points at other bytes;
- a lease (`lock`) is held while a partition is computed; other processes wait or skip;
- ledger files are immutable once written: a run appends whole records, a reader never sees half of one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Iterable, Protocol, runtime_checkable

from skipwise.core.cost import IOCounter, LedgerRecord
from skipwise.core.manifest import Manifest


@runtime_checkable
@runtime_checkable
class PartitionStore(Protocol):
    """Partitions and their manifests, addressed by (layer, asset, partition key)."""

    #: True where committed manifests are read from a listing before any lease is taken (an
    #: object store: a hit costs no request); False where reading one is as cheap as a stat (disk)
    remote: bool
    io: IOCounter  # bytes and requests moved, by distance class
    data_root: Path  # the project's data/ folder (local state: caches, the digest key)

    def digest_key(self) -> bytes:
        """The secret key of this store's observed digests, made once and kept with the data."""
        ...

    def read_manifest(self, layer: str, asset: str, key: str) -> Manifest | None:
        """The committed manifest, or None. ValueError when it is unreadable."""
        ...

    def read_version(self, layer: str, asset: str, key: str, fingerprint: str) -> Manifest | None:
        """The kept version of a partition computed under `fingerprint`, or None."""
        ...

    def materialized_keys(self, layer: str, asset: str) -> list[str]:
        """Keys of the partitions with a manifest (any order)."""
        ...

    def files_of(self, layer: str, asset: str) -> dict[str, dict[str, int]]:
        """key -> {file name: size} of every partition of `asset`."""
        ...

    def layer_of(self, asset: str) -> str:
        """The layer (top folder) holding `asset`, "" when none does."""
        ...

    def output_state(self, layer: str, asset: str, key: str, manifest: Manifest) -> str:
        """An `OutputState`: whether the manifest's output is there as committed."""
        ...

    def output_path(self, layer: str, asset: str, key: str, manifest: Manifest) -> Path | str:
        """Where the manifest's output is (a path, or a URL)."""
        ...

    def read_output(self, layer: str, asset: str, key: str, manifest: Manifest) -> bytes:
        """The output bytes exactly as committed (checked against the manifest)."""
        ...

    def local_copy(self, layer: str, asset: str, key: str, manifest: Manifest) -> Path:
        """A local file holding the output, for readers that want a path."""
        ...

    def read_named(self, layer: str, asset: str, key: str, name: str) -> bytes | None:
        """A small file of a partition's folder by name, or None."""
        ...

    def where(self, layer: str, asset: str, key: str, name: str) -> str:
        """A file's location, as a user reads it in a message."""
        ...

    def check_readable(self, path: Path | str) -> None:
        """InputError unless `path` is inside the roots this store may read (no link out of them)."""
        ...

    def read_file(self, path: Path) -> bytes:
        """An input file's bytes (counted)."""
        ...

    def write_output(
        self, layer: str, asset: str, key: str, fingerprint: str, ext: str, data: bytes
    ) -> tuple[str, str, int]:
        """Write an output under its fingerprint, whole or not at all; (name, sha256, size)."""
        ...

    def commit(self, layer: str, asset: str, manifest: Manifest, keep: bool = True) -> None:
        """Write the manifest (and, with `keep`, the kept version): the partition is done."""
        ...

    def sweep_temp(self, layer: str, asset: str, key: str) -> int:
        """Remove what a crashed write left in a partition's folder; how many files."""
        ...

    def remove(self, layer: str, asset: str, key: str, names: list[str]) -> None:
        """Delete files of a partition (holding its lease)."""
        ...

    def lock(self, layer: str, asset: str, key: str, wait: bool = True) -> AbstractContextManager[bool]:
        """Hold the partition's lease; with `wait=False`, yield False at once when another holds it."""
        ...


class Journal(Protocol):
    """One run's records, grown as its partitions commit."""

    def __enter__(self) -> Journal: ...

    def __exit__(self, *exc: object) -> Any: ...

    def write(self, records: Iterable[LedgerRecord]) -> None:
        """Add whole records; a crash keeps every record written before it."""
        ...


@runtime_checkable
@runtime_checkable
class CostLedger(Protocol):
    """The append-only record of what each partition and process cost."""

    warnings: list[str]  # damaged files met while reading, one line each

    def append(self, records: Iterable[LedgerRecord]) -> Any:
        """Write `records` as one new immutable file; where it went."""
        ...

    def journal(self, run_id: str) -> Journal:
        """A file of this run's own that records grow into as partitions commit."""
        ...

    def exists(self) -> bool:
        """Whether any record was ever written."""
        ...

    def files(self, since: str | None = None) -> list[Any]:
        """The ledger's files (paths or keys), oldest first, from day `since` on."""
        ...

    def read(self, since: str | None = None) -> list[dict[str, Any]]:
        """Every record as a dict, from day `since` on."""
        ...

    def rows(self, since: str | None = None) -> list[dict[str, Any]]:
        """Every record, flattened for reports."""
        ...

    def rows_written_since(self, started: str) -> list[dict[str, Any]]:
        """The records of the files written at or after ISO time `started` (and maybe a few
        more): what a command has recorded since it started is among them."""
        ...

    def query(self, sql: str, params: list[Any] | None = None, *, since: str | None = None) -> list[dict[str, Any]]:
        """DuckDB SQL over the records (table `ledger`)."""
        ...

    def last_cost_by_fingerprint(self, asset: str) -> dict[str, float]:
        """fingerprint -> the dollars its latest computation cost (a hit avoided them)."""
        ...

    def history_usd_per_partition(self, asset: str, last: int = 20) -> list[float]:
        """Dollars per computed partition of `asset`, newest `last` runs (for projections)."""
        ...

    def spent_usd(self, day: str) -> float:
        """Dollars recorded on UTC day `day`."""
        ...

    def spent_by_asset(self, run_id: str, since: str | None = None) -> dict[str, float]:
        """Dollars this run has spent so far, by asset."""
        ...
