"""Partition storage on an S3-compatible object store: the same contract as `LocalPartitionStore`.

Layout under the store's prefix, per partition: ``<layer>/<asset>/<key>/``
    ``<fingerprint>.<sha256>.<ext>``  the output, named by what made it and what it holds
    ``versions/<fingerprint>.json``   the kept version (restore by fingerprint)
    ``manifest.json``                 the commit point, written last (one PUT: atomic)
    ``.lease``                        who is computing the partition now (`skipwise.store.leases`)

The commit rule is the local one: output first, manifest last. A crash between the two leaves an
output no manifest names (the old partition stands); a manifest always names an output written
whole before it, with the output's hash, size and ETag. Two writers of one name write the same
bytes (the name holds their sha256); two hosts committing the same partition at once leave the
later manifest, complete either way.

Planning reads no object per partition: one LIST of the asset (a request per 1,000 objects)
gives every manifest's and output's ETag and size; a manifest is fetched only when its ETag has
not been read before on this host (`EtagCache`). An output is "ok" when the listing shows it with
the size and ETag its manifest recorded, under the name that carries the manifest's sha256: a
rewritten object changes its ETag and an edited manifest no longer matches its output's name, so
the check is as strong as the local stat cache, without reading the bytes. Reads verify the
bytes' sha256 as well.

A listing is kept `LISTING_SECONDS`; a partition is listed afresh (one LIST of its folder) when
its lease is taken, before it is decided again, so what another host committed is seen; while
the lease is held, only its holder writes there.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from skipwise.core.errors import InputError
from skipwise.core.hashing import sha256_bytes, sha256_file
from skipwise.core.manifest import Manifest
from skipwise.core.partitions import folder_key, key_folder, validate_name
from skipwise.core.plan import OutputState
from skipwise.store.bucket import BucketPrefix, Conflict, Entry
from skipwise.store.etagcache import EtagCache
from skipwise.store.files import atomic_write
from skipwise.store.leases import lease
from skipwise.store.partitions import MANIFEST, LocalPartitionStore, version_names

LEASE = ".lease"
LISTING_SECONDS = 30.0

Folder = dict[str, Entry]  # names inside one partition folder (``versions/<fp>.json`` too)


class ObjectPartitionStore:
    """Partitions in `objects`; input files (sources) are still read from local disk by `local`."""

    remote = True

    def __init__(self, objects: BucketPrefix, local: LocalPartitionStore, cache_dir: Path) -> None:
        self.objects = objects
        self.local = local
        self.io = local.io
        self.data_root = local.data_root
        self.cache = EtagCache(Path(cache_dir))
        self._listings: dict[tuple[str, str], tuple[float, dict[str, Folder]]] = {}
        self._written: dict[str, str] = {}  # output object -> its ETag, until its manifest commits
        self._layers: dict[str, str] = {}

    def digest_key(self) -> bytes:
        """The key of observed digests, one object in the bucket shared by every host writing
        here (created once, `If-None-Match: *`: the first writer wins), read once per process."""
        if not hasattr(self, "_digest_key"):
            rel = ".skipwise/digest.key"
            try:
                self._digest_key = self.objects.get(rel)[0]
            except FileNotFoundError:
                try:
                    self.objects.put(rel, os.urandom(32).hex().encode(), if_absent=True)
                except Conflict:
                    pass  # made by another host meanwhile: use theirs
                self._digest_key = self.objects.get(rel)[0]
        return self._digest_key

    # -- where things are ------------------------------------------------------------------------

    @staticmethod
    def _folder(layer: str, asset: str, key: str) -> str:
        return f"{validate_name(layer, 'layer')}/{validate_name(asset, 'asset name')}/{key_folder(key)}"

    def url(self, layer: str, asset: str, key: str, name: str = "") -> str:
        """The URL of a partition's folder, or of `name` inside it."""
        return self.objects.url_of(f"{self._folder(layer, asset, key)}/{name}".rstrip("/"))

    def _listing(self, layer: str, asset: str) -> dict[str, Folder]:
        got = self._listings.get((layer, asset))
        if got is not None and time.monotonic() - got[0] < LISTING_SECONDS:
            return got[1]
        base = f"{validate_name(layer, 'layer')}/{validate_name(asset, 'asset name')}"
        folders: dict[str, Folder] = {}
        for rel, entry in self.objects.list(base).items():
            folder, _, name = rel[len(base) + 1 :].partition("/")
            if name:
                folders.setdefault(folder, {})[name] = entry
        self._listings[(layer, asset)] = (time.monotonic(), folders)
        return folders

    def _entries(self, layer: str, asset: str, key: str) -> Folder:
        return self._listing(layer, asset).get(key_folder(key), {})

    def _relist(self, layer: str, asset: str, key: str) -> Folder:
        folder = self._folder(layer, asset, key)
        entries = {rel[len(folder) + 1 :]: e for rel, e in self.objects.list(folder).items()}
        listing = self._listings.get((layer, asset))
        if listing is not None:
            listing[1][key_folder(key)] = entries
        return entries

    def _note(self, layer: str, asset: str, key: str, name: str, entry: Entry) -> None:
        listing = self._listings.get((layer, asset))
        if listing is not None:
            listing[1].setdefault(key_folder(key), {})[name] = entry

    def _read_small(self, layer: str, asset: str, key: str, name: str, entry: Entry) -> bytes | None:
        return self._fetch(f"{self._folder(layer, asset, key)}/{name}", entry)

    def _fetch(self, rel: str, entry: Entry) -> bytes | None:
        """A small object's bytes: the local copy of its ETag, else one GET (None if it is gone)."""
        url = self.objects.url_of(rel)
        data = self.cache.get(url, entry.etag)
        if data is None:
            try:
                data, etag = self.objects.get(rel)
            except FileNotFoundError:
                return None
            self.cache.put(url, etag, data)
        return data

    # -- the PartitionStore contract (skipwise.store.base) -------------------------------------------------------------

    def read_manifest(self, layer: str, asset: str, key: str) -> Manifest | None:
        """The committed manifest, or None if there is none. ValueError if it is unreadable."""
        entry = self._entries(layer, asset, key).get(MANIFEST)
        if entry is None:
            return None
        data = self._read_small(layer, asset, key, MANIFEST, entry)
        if data is None:
            return None
        url = self.url(layer, asset, key, MANIFEST)
        try:
            m = Manifest.from_json(data.decode("utf-8"))
        except (ValueError, TypeError) as exc:
            self.cache.forget(url, entry.etag)
            raise ValueError(f"{url}: {exc}") from None
        if m.asset != asset or m.partition != key:
            raise ValueError(f"{url}: manifest is for {m.asset}[{m.partition}], not {asset}[{key}]")
        return m

    def output_state(self, layer: str, asset: str, key: str, manifest: Manifest) -> str:
        """ "ok" when the output object is there with the size and ETag the manifest recorded, and
        its name carries the sha256 the manifest records (a hand-edited hash shows without a read)."""
        name = Path(manifest.output).name
        entry = self._entries(layer, asset, key).get(name)
        if entry is None:
            return OutputState.MISSING
        parts = name.split(".")
        if (
            len(parts) < 3
            or parts[1] != manifest.output_hash
            or entry.size != manifest.output_size
            or not manifest.output_etag
            or entry.etag != manifest.output_etag
        ):
            return OutputState.CHANGED
        return OutputState.OK

    def output_path(self, layer: str, asset: str, key: str, manifest: Manifest) -> str:
        """The URL of the manifest's output."""
        return self.url(layer, asset, key, Path(manifest.output).name)

    def read_output(self, layer: str, asset: str, key: str, manifest: Manifest) -> bytes:
        """The output bytes of a committed partition, exactly as committed (ETag and sha256)."""
        name = Path(manifest.output).name
        try:
            data, _ = self.objects.get(f"{self._folder(layer, asset, key)}/{name}", if_match=manifest.output_etag)
        except (FileNotFoundError, Conflict):
            data = None
        if data is None or len(data) != manifest.output_size or sha256_bytes(data) != manifest.output_hash:
            raise InputError(
                f"{self.url(layer, asset, key, name)} is missing or no longer the output its manifest committed",
                hint=f"run again: {asset}[{key}] is then computed afresh",
            )
        return data

    def local_copy(self, layer: str, asset: str, key: str, manifest: Manifest) -> Path:
        """A local file with the partition's output, for readers that want a path (`sw.scan`): fetched
        once per host by ETag, checked against the manifest's sha256 before every use."""
        path = self.cache.path(
            self.output_path(layer, asset, key, manifest), manifest.output_etag or manifest.output_hash
        )
        try:
            if path.stat().st_size == manifest.output_size and sha256_file(path) == manifest.output_hash:
                return path
        except OSError:
            pass  # not fetched yet
        atomic_write(path, self.read_output(layer, asset, key, manifest), sync=False)
        return path

    def check_readable(self, path: Path | str) -> None:
        self.local.check_readable(path)

    def read_file(self, path: Path) -> bytes:
        return self.local.read_file(path)

    def write_output(
        self, layer: str, asset: str, key: str, fingerprint: str, ext: str, data: bytes
    ) -> tuple[str, str, int]:
        """PUT an output named by its fingerprint and its bytes' sha256; returns (name, sha256, size).
        Two writers can only write one name with the same bytes, and the name binds the manifest's
        hash to the object: the listing then shows an edited hash, size or ETag without a read."""
        sha = sha256_bytes(data)
        name = f"{fingerprint}.{sha}.{ext}"
        etag = self.objects.put(f"{self._folder(layer, asset, key)}/{name}", data)
        self._written[name] = etag
        self._note(layer, asset, key, name, Entry(len(data), etag))
        return name, sha, len(data)

    def sweep_temp(self, layer: str, asset: str, key: str) -> int:
        """Nothing to sweep: a PUT leaves the object whole or absent, never a temporary one."""
        return 0

    def commit(self, layer: str, asset: str, manifest: Manifest, keep: bool = True) -> None:
        """PUT the kept version (with `keep`), then the manifest: from now on the partition is done."""
        etag = self._written.pop(Path(manifest.output).name, "")
        if etag and not manifest.output_etag:
            manifest = replace(manifest, output_etag=etag)
        key = manifest.partition
        folder = self._folder(layer, asset, key)
        data = manifest.to_json().encode()
        names = version_names(manifest.fingerprint)[:1] if keep else []
        names.append(MANIFEST)
        for name in names:
            tag = self.objects.put(f"{folder}/{name}", data)
            self.cache.put(self.url(layer, asset, key, name), tag, data)
            self._note(layer, asset, key, name, Entry(len(data), tag))

    def read_version(self, layer: str, asset: str, key: str, fingerprint: str) -> Manifest | None:
        """The kept version of a partition with `fingerprint`, or None (absent or damaged)."""
        entries = self._entries(layer, asset, key) if version_names(fingerprint) else {}
        name = next((n for n in version_names(fingerprint) if n in entries), "")
        data = self._read_small(layer, asset, key, name, entries[name]) if name else None
        try:
            return Manifest.from_json(data.decode("utf-8")) if data is not None else None
        except (ValueError, TypeError, UnicodeDecodeError):
            return None

    def materialized_keys(self, layer: str, asset: str) -> list[str]:
        """Keys of the partitions with a manifest (any order)."""
        keys = []
        for folder, entries in self._listing(layer, asset).items():
            if MANIFEST not in entries:
                continue
            key = folder_key(folder)
            if key is None:  # a hashed (long) key: its manifest says which
                data = self._fetch(f"{layer}/{asset}/{folder}/{MANIFEST}", entries[MANIFEST])
                try:
                    key = Manifest.from_json(data.decode("utf-8")).partition if data else None
                except (ValueError, TypeError, UnicodeDecodeError):
                    key = None
            if key is not None:
                keys.append(key)
        return keys

    def files_of(self, layer: str, asset: str) -> dict[str, dict[str, int]]:
        """key -> {name: size} of every partition of `asset` (no leases; hashed keys left out)."""
        out: dict[str, dict[str, int]] = {}
        for folder, entries in sorted(self._listing(layer, asset).items()):
            key = folder_key(folder)
            if key is not None:
                out[key] = {n: e.size for n, e in entries.items() if not n.startswith(".")}
        return out

    def read_named(self, layer: str, asset: str, key: str, name: str) -> bytes | None:
        entry = self._entries(layer, asset, key).get(name)
        return self._read_small(layer, asset, key, name, entry) if entry is not None else None

    def where(self, layer: str, asset: str, key: str, name: str) -> str:
        return self.url(layer, asset, key, name)

    def remove(self, layer: str, asset: str, key: str, names: list[str]) -> None:
        """Delete `names` from a partition (call it holding the partition's lease)."""
        folder = self._folder(layer, asset, key)
        for name in names:
            self.objects.delete(f"{folder}/{name}")
            self._entries(layer, asset, key).pop(name, None)

    def layer_of(self, asset: str) -> str:
        """The layer (top folder) holding `asset`, "" when none does."""
        if asset not in self._layers:
            found = ""
            for layer in sorted(self.objects.folders()):
                if asset in self.objects.folders(layer):
                    found = layer
                    break
            if not found:
                return ""
            self._layers[asset] = found
        return self._layers[asset]

    @contextmanager
    def lock(self, layer: str, asset: str, key: str, wait: bool = True) -> Iterator[bool]:
        """Hold the partition's lease (hosts sharing the bucket wait); with `wait=False`, yield
        False at once when another process holds it. While held, the partition is read afresh."""
        with lease(self.objects, f"{self._folder(layer, asset, key)}/{LEASE}", wait=wait) as held:
            if not held:
                yield False
                return
            self._relist(layer, asset, key)  # what other hosts committed until now; the rest is ours
            yield True
