"""A plain object-store prefix as a source: one object per partition, versioned by its ETag.

``sw.object_source("raw_events", "s3://bucket/events/{partition_key}.parquet", ...)`` declares it.
Planning lists the prefix once per process (``ListObjectsV2``, paginated: a few LIST requests for
thousands of partitions, never one per partition) and a partition's version is its object's
ETag, ``etag:<etag>``: the content's md5 for a single-part upload, a digest of the parts' md5s
for a multipart one, so the same bytes uploaded again keep their version. With
``versioned=True`` the listing is ``ListObjectVersions`` and each object is read by the version
id it saw.

No false hits: a partition is computed from exactly the bytes its fingerprint names. The read is
a conditional GET (``If-Match: <etag>``, and ``VersionId`` when known), so an object overwritten
between the listing and the read fails with "changed while reading, run again" instead of giving
new bytes under the old version. The bytes are then checked against the listing (same size) and,
for a single-part ETag of an object the server did not encrypt with its own key (SSE-KMS, SSE-C:
their ETags are not an md5), against the ETag itself. Fetched bytes land in the input cache keyed
by (URL, ETag), checked by sha256 on every later use.

Every request (LIST pages, GETs, a 412) and every byte is counted in the project's `IOCounter`
under the location's distance class: the listing in the process's run record (it belongs to no
partition), each GET in the partition that reads it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from skipwise.core.cost import IOCounter
from skipwise.core.errors import ConfigError, InputError
from skipwise.core.layouts import combined_version, static_dir
from skipwise.core.locations import Location, location_for
from skipwise.core.spec import Source
from skipwise.sources.contentcache import etag_key
from skipwise.store.objectstore import ObjectStore

if TYPE_CHECKING:
    from skipwise.store.objectstore import Got, ObjectInfo, ObjectStore

VERSION_PREFIX = "etag:"
#: the version of a partition made of several objects
MANY_PREFIX = "etags:"
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")  # a single-part upload's ETag; a multipart one ends in -<parts>


def version_of(info: ObjectInfo | None) -> str:
    """The version string of a listed object ("absent" when there is none)."""
    return f"{VERSION_PREFIX}{info.etag}" if info is not None else "absent"


def problem_with(got: Got, etag: str, size: int | None) -> str:
    """Why the bytes of a GET are not the object the listing saw ("" when they are)."""
    if got.etag and got.etag != etag:
        return f"the server answered with ETag {got.etag}, expected {etag}"
    if size is not None and len(got.data) != size:
        return f"{len(got.data):,} bytes, the listing says {size:,} (truncated)"
    if _MD5_ETAG.match(etag) and not got.encrypted:
        md5 = hashlib.md5(got.data).hexdigest()
        if md5 != etag:
            return f"its md5 is {md5}, its ETag says {etag} ({len(got.data):,} bytes)"
    return ""


class ObjectSources:
    """The object-store sources of a project: their locations, one listing each, reading them."""

    def __init__(self, locality: Any) -> None:  # sources.locality.Locality, which builds this
        self.locality = locality
        self._listings: dict[str, dict[str, ObjectInfo]] = {}
        self._locations: dict[str, Location] = {}
        self._stores: dict[str, ObjectStore] = {}
        self._folders: dict[str, dict[str, list[str]]] = {}

    def location_of(self, source: Source) -> Location:
        """Where `source` is: its ``[locations]`` entry (`location=`), its `region=`, the declared
        location holding its URL, or an unknown region (counted as ``internet``)."""
        if source.name not in self._locations:
            declared = self.locality.config.locations
            where = f"object_source {source.name}"
            if source.location:
                loc = declared.get(source.location)
                if loc is None:
                    raise ConfigError(
                        f"{where}: location {source.location!r} is not declared",
                        location=self.locality.config.source,
                        hint=f'add [locations.{source.location}] url = "{source.prefix}" region = "..." to skipwise.toml'
                        + (f" (declared: {', '.join(sorted(declared))})" if declared else ""),
                    )
                if not source.prefix.startswith(loc.url.rstrip("/") + "/"):
                    raise ConfigError(
                        f"{where}: {source.url} is not inside location {source.location} ({loc.url})",
                        location=self.locality.config.source,
                        hint=f"fix the URL, or name the location that holds {source.prefix}",
                    )
            elif source.region:
                loc = Location(where, source.prefix, source.region)
            else:
                loc = location_for(source.prefix, declared) or Location(where, source.prefix, "")
            self._locations[source.name] = loc
        return self._locations[source.name]

    def _store(self, loc: Location) -> ObjectStore:
        if loc.region not in self._stores:  # one client per region: it signs for its region
            self._stores[loc.region] = ObjectStore(loc.region)
        return self._stores[loc.region]

    def listing(self, source: Source) -> dict[str, ObjectInfo]:
        """URL -> object of everything under `source`'s prefix: one (paginated) listing per process,
        its requests and bytes counted outside any partition."""
        if source.name not in self._listings:
            loc = self.location_of(source)
            store = self._store(loc)
            sent, size = store.sent, 0
            try:
                found = store.list(source.prefix, versions=source.versioned)
                size = found.bytes
            finally:
                io = self.locality.outside
                io.add_list(store.sent - sent)
                io.add_read(size, loc.egress_class(self.locality.region), requests=0)
            self._listings[source.name] = found.objects
        return self._listings[source.name]

    def info(self, source: Source, key: str) -> ObjectInfo | None:
        """The listed object of partition `key` (None when the prefix has none): at its URL, or
        where earlier versions looked for it (the key escaped as skipwise's folders escape it)."""
        listing = self.listing(source)
        found = listing.get(source.object_url(key))
        if found is None and source.legacy_url(key):
            found = listing.get(source.legacy_url(key))
        return found

    def parts(self, source: Source, key: str) -> list[tuple[str, ObjectInfo]]:
        """(URL, listed object) of each object of partition `key`, by URL: the one object, or
        those a glob matches (looked for in the folder the key's pattern names)."""
        if not source.many:
            info = self.info(source, key)
            return [(info.url, info)] if info is not None else []
        template = source.template
        assert template is not None
        rendered = template.render(key, source.dims)
        pattern = template.pattern(key, source.dims)
        listing = self.listing(source)
        if "**" in rendered:
            urls: list[str] = list(listing)
        else:
            folders = self._folders.get(source.name)
            if folders is None:
                folders = self._folders[source.name] = {}
                for url in listing:
                    folders.setdefault(url.rsplit("/", 1)[0], []).append(url)
            urls = folders.get(static_dir(rendered), [])
        return sorted((u, listing[u]) for u in urls if pattern.fullmatch(u))

    def version(self, source: Source, key: str) -> str:
        """Partition `key`'s version, ``etag:<etag>``, ``etags:<sha256>`` of several objects, or "absent"."""
        if source.many:
            parts = self.parts(source, key)
            return combined_version([(u, version_of(i)) for u, i in parts], MANY_PREFIX) if parts else "absent"
        return version_of(self.info(source, key))

    def versions(self, source: Source, keys: Sequence[str]) -> list[str]:
        """`version` of each of `keys`, in order (the prefix is listed once either way)."""
        return [self.version(source, key) for key in keys]

    def read_files(self, source: Source, key: str, version: str | None, io: IOCounter | None = None) -> list[bytes]:
        """The bytes of each object of partition `key` at `version`, by URL (see `read`)."""
        if not source.many:
            return [self.read(source, key, version, io)]
        parts = self.parts(source, key)
        now = combined_version([(u, version_of(i)) for u, i in parts], MANY_PREFIX) if parts else "absent"
        if version == "absent" or not parts:
            what, fix = source.missing(key)
            raise InputError(f"{source.name}[{key}] has {what}", hint=fix)
        if version != now:
            raise InputError(
                f"{source.name}[{key}] changed since it was planned ({source.object_url(key)})",
                hint="run again: the plan lists the prefix for its versions",
            )
        return [self._read_object(source, url, info.etag, info, io) for url, info in parts]

    def read(self, source: Source, key: str, version: str | None, io: IOCounter | None = None) -> bytes:
        """The bytes of partition `key` at `version`, through the input cache: exactly that
        object (a conditional GET), or ObjectChanged when it is no longer there."""
        if version == "absent":
            what, fix = source.missing(key)
            raise InputError(f"{source.name}[{key}] has {what}", hint=fix)
        if not version or not version.startswith(VERSION_PREFIX):
            raise InputError(
                f"{source.name}[{key}] has no object version to read ({version!r})",
                hint="run again: the plan lists the prefix for its versions",
            )
        etag = version[len(VERSION_PREFIX) :]
        listed = self.info(source, key)
        url = listed.url if listed is not None else source.object_url(key)
        return self._read_object(source, url, etag, listed, io)

    def _read_object(
        self, source: Source, url: str, etag: str, listed: ObjectInfo | None, io: IOCounter | None
    ) -> bytes:
        # The listing that gave `version` was this process's: it knows the size and version id.
        if listed is not None and listed.etag != etag:
            listed = None
        loc = self.location_of(source)
        cache = self.locality.cache
        size = listed.size if listed is not None else cache.size_of(etag_key(url, etag))
        got = cache.get(
            etag_key(url, etag),
            lambda: self._fetch(loc, url, etag, listed, io),
            origin=url,
            egress_class=loc.egress_class(self.locality.region),
            refetch_usd=self.locality.refetch_usd(loc, size or 0),
        )
        for w in cache.warnings:
            self.locality.project.warn(w)
        cache.warnings.clear()
        return got.data

    def _fetch(self, loc: Location, url: str, etag: str, listed: ObjectInfo | None, io: IOCounter | None) -> bytes:
        store = self._store(loc)
        counter = io or self.locality.project.io
        cls = loc.egress_class(self.locality.region)
        problem = ""
        for _ in range(2):  # a second try for bytes damaged on the way; damaged twice, the object itself is
            sent, got = store.sent, None
            try:
                got = store.get(url, etag, listed.version_id if listed is not None else "")
            finally:
                counter.add_read(len(got.data) if got is not None else 0, cls, requests=store.sent - sent)
            problem = problem_with(got, etag, listed.size if listed is not None else None)
            if not problem:
                return got.data
        raise InputError(
            f"{url} is corrupt: {problem}; it was not used or cached",
            hint=f"upload a good copy to {url} (its ETag then changes, and so does the partition's version)",
        )
