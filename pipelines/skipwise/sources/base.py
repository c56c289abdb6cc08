"""The interface of a kind of source: what version a raw partition has now, and its bytes at a
version. Versions are content identities (``md5:<hex>`` from DVC, ``etag:<etag>`` from an object
store, or "absent"): equal versions mean equal bytes, so a version is what a fingerprint records.

Implementations: `dvc.DvcSources` (files in a DVC-tracked folder, on disk or on its remote) and
`objects.ObjectSources` (objects under a bucket prefix)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from skipwise.core.spec import Source


@runtime_checkable
class SourceReader(Protocol):
    def version(self, source: Source, key: str) -> str:
        """Partition `key`'s version now (read from metadata: a manifest, a listing; never the bytes
        unless the stat cache says the file changed)."""
        ...

    def versions(self, source: Source, keys: Sequence[str]) -> list[str]:
        """`version` of each of `keys`, in order (one pass where the kind of source allows)."""
        ...

    def read(self, source: Source, key: str, version: str | None) -> bytes:
        """The bytes of partition `key` at `version`, verified; an error naming the file when they
        are no longer there."""
        ...

    def read_files(self, source: Source, key: str, version: str | None) -> list[bytes]:
        """The bytes of each file of partition `key` at `version`, in path order (a partition of
        several files: `Source.many`); an error saying to run again when they changed since."""
        ...
