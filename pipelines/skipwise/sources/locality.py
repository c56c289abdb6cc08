"""Where a project's inputs are, what moving them costs, and reading them from remotes.

A source declared with ``sw.dvc_source(..., remote=...)`` is versioned exactly like a local one
(DVC's md5 per file, from the ``.dvc`` file and the ``.dir`` manifest: no request per partition),
and its bytes come from, in order: the workspace file when it is there with the right content; the
content-addressed input cache; the DVC remote, by md5 (``<remote>/files/md5/ab/cdef...``), one GET
for exactly that partition. A ``.dir`` manifest missing from DVC's local cache is fetched the
same way, by its own md5. A source declared with ``sw.object_source`` is an object-store prefix
(`skipwise.sources.objects`): versions from one listing, each object read by a conditional GET.

Every byte read is counted in the project's `IOCounter` under its distance class (the remote's
location against compute's region), so it lands in the partition's cost vector, the ledger and
the Dagster event. `inputs_of` answers, without reading data or making a request, where the
inputs of the partitions that would run are and what moving them would cost.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from skipwise.adapters.dvc.config import dvc_remote
from skipwise.core import metakeys as mk
from skipwise.core.budget import check_egress
from skipwise.core.cost import BUDGET_OVERRIDE_TAG, EGRESS_CLASSES, CostVector, IOCounter
from skipwise.core.errors import ConfigError
from skipwise.core.locations import Location, location_for
from skipwise.core.partitions import keys_of, upstream_keys
from skipwise.core.pricing import GIB
from skipwise.core.spec import Asset, Source
from skipwise.sources.base import SourceReader
from skipwise.sources.contentcache import ContentCache, etag_key, md5_key
from skipwise.sources.dvc import DvcSources
from skipwise.sources.objects import ObjectSources
from skipwise.sources.remote import RemoteReader

if TYPE_CHECKING:
    from skipwise.adapters.dvc.config import DvcRemote
    from skipwise.sources.contentcache import ContentCache
    from skipwise.sources.objects import ObjectSources
    from skipwise.sources.remote import RemoteReader

REGION_TAG = mk.REGION


@dataclass(frozen=True)
class Movement:
    """What reading the inputs of some partitions would move, by distance class, and its price.

    `objects` counts distinct input files; `cached` those already in the input cache, `local`
    those in the workspace, `to_fetch` those that would come from a remote. `estimated` is True
    when some sizes are the mean file size DVC records for the directory (not yet fetched, so the
    exact size is not known without a request). `by_region` is bytes per region holding them: a
    remote's region for bytes from a remote (cached here or not), compute's for workspace files.
    """

    bytes_by_class: Mapping[str, int] = field(default_factory=dict)
    usd: float = 0.0
    objects: int = 0
    cached: int = 0
    local: int = 0
    to_fetch: int = 0
    requests: int = 0
    estimated: bool = False
    by_region: Mapping[str, int] = field(default_factory=dict)
    where: tuple[str, ...] = ()

    @property
    def off_host_bytes(self) -> int:
        """Bytes that would leave this host (same region + cross region + internet)."""
        return sum(n for c, n in self.bytes_by_class.items() if c != "same_host")

    @property
    def region(self) -> str:
        """The region holding most of these input bytes ("" when there are none)."""
        return max(sorted(self.by_region), key=lambda r: self.by_region[r]) if self.by_region else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes_by_class": dict(self.bytes_by_class),
            "usd": self.usd,
            "objects": self.objects,
            "cached": self.cached,
            "local": self.local,
            "to_fetch": self.to_fetch,
            "requests": self.requests,
            "estimated": self.estimated,
            "by_region": dict(self.by_region),
            "region": self.region,
            "where": list(self.where),
        }


class Locality:
    """A project's remote inputs: where they are, reading them, and what moving them costs."""

    def __init__(self, project: Any) -> None:  # the engine's Project (a layer above: it builds this)
        self.project = project
        self.config = project.config
        self._remotes: dict[str | None, tuple[DvcRemote, Location]] = {}
        self._on_remote: dict[str | None, bool] = {}
        # Fetches made while planning (a `.dir` manifest) belong to no partition: the process's run record carries them.
        self.outside = IOCounter()
        self._outside_taken = self.outside.snapshot()
        self._cache: ContentCache | None = None
        self._reader: RemoteReader | None = None
        self._objects: ObjectSources | None = None
        self._dvc: DvcSources | None = None

    # -- places ---------------------------------------------------------------------------------

    @property
    def region(self) -> str:
        """Compute's region ("" when not configured)."""
        return self.config.region

    def on_remote(self, source: Source) -> bool:
        """Whether `source` reads from a remote: an object-store source always; a DVC source when
        it asks for a remote and DVC's config has it (a `remote=True` source in a checkout without
        a default remote behaves as a local one)."""
        if source.url:
            return True
        if source.remote is None:
            return False
        if source.remote not in self._on_remote:  # asked once per input file while planning: parse once
            try:
                self.remote_of(source)
                self._on_remote[source.remote] = True
            except ConfigError:
                if source.remote:  # a named remote that is not configured is a mistake worth stopping on
                    raise
                self._on_remote[source.remote] = False
        return self._on_remote[source.remote]

    def remote_of(self, source: Source) -> tuple[DvcRemote, Location]:
        """The DVC remote of `source` and its location (declared in skipwise.toml, or from DVC's
        own ``region`` setting for the remote)."""
        if source.remote not in self._remotes:
            remote = dvc_remote(self.project.root, source.remote or None)
            loc = location_for(remote.url, self.config.locations) or Location(
                f"dvc remote {remote.name}", remote.url, remote.region
            )
            self._remotes[source.remote] = (remote, loc)
        return self._remotes[source.remote]

    @property
    def cache(self) -> ContentCache:
        """The project's input cache (``[cache] dir`` and ``max_bytes`` in skipwise.toml)."""
        if self._cache is None:
            self._cache = ContentCache(
                cache_root(self.project.root, self.config.cache_dir), self.config.cache_max_bytes, self.project.io
            )
        return self._cache

    @property
    def objects(self) -> ObjectSources:
        """The project's object-store sources: locations, listings, reads."""
        if self._objects is None:
            self._objects = ObjectSources(self)
        return self._objects

    def object_version(self, source: Source, key: str) -> str:
        """An object-store partition's version (``etag:<etag>`` or "absent"), from one listing of its prefix."""
        return self.objects.version(source, key)

    @property
    def reader(self) -> RemoteReader:
        if self._reader is None:
            self._reader = RemoteReader(self.project.io, self.region)
        return self._reader

    def refetch_usd(self, location: Location, size: int) -> float:
        """What fetching `size` bytes from `location` once costs: egress for its class plus one GET where billed."""
        prices = self.config.prices
        usd = size / GIB * prices.egress_usd_per_gb[location.egress_class(self.region)]
        return usd + (prices.get_usd_per_1000 / 1000 if location.charges_requests else 0.0)

    # -- reading --------------------------------------------------------------------------------

    def manifest_fetcher(self, source: Source) -> Callable[[str], bytes] | None:
        """For a source on a remote: fetches a `.dir` manifest missing from DVC's cache, by its md5."""
        if not self.on_remote(source):
            return None
        return lambda dir_hash: self.fetch_object(source, dir_hash, self.outside)

    def take_outside(self) -> CostVector | None:
        """What was fetched outside any partition since the last call (None when nothing was)."""
        now = self.outside.snapshot()
        delta, self._outside_taken = now - self._outside_taken, now
        if not (delta.bytes_read or delta.list_requests):
            return None
        return CostVector.from_io(delta, "io outside partitions: remote fetches and listings while planning")

    def fetch_object(self, source: Source, md5: str, io: IOCounter | None = None) -> bytes:
        """The verified bytes of the DVC object `md5` of `source`'s remote, through the input cache
        (what a fetch moves is counted in `io`, default the project's counter)."""
        remote, loc = self.remote_of(source)
        url = remote.object_url(md5)
        size = self.cache.size_of(md5_key(md5)) or 0
        got = self.cache.get(
            md5_key(md5),
            lambda: self.reader.read(loc, url, remote.endpointurl, io),
            origin=url,
            egress_class=loc.egress_class(self.region),
            refetch_usd=self.refetch_usd(loc, size),
        )
        for w in self.cache.warnings:
            self.project.warn(w)
        self.cache.warnings.clear()
        return got.data

    def read_source(self, source: Source, key: str, version: str | None) -> bytes:
        """The bytes of partition `key` of `source` at `version` (see `skipwise.sources.base`)."""
        return self.sources_of(source).read(source, key, version)

    def read_source_files(self, source: Source, key: str, version: str | None) -> list[bytes]:
        """The bytes of each file (or object) of partition `key` at `version`, in path order: a
        source whose partitions are several files (`Source.many`)."""
        return self.sources_of(source).read_files(source, key, version)

    def sources_of(self, source: Source) -> SourceReader:
        """The reader of `source`'s kind: an object-store prefix, or a DVC-tracked folder."""
        return self.objects if source.url else self.dvc

    @property
    def dvc(self) -> DvcSources:
        """The project's DVC-tracked sources: versions from their `.dir` manifests, reads."""
        if self._dvc is None:
            p = self.project
            self._dvc = DvcSources(p.root, p.store, p.statcache, self, p.warn)
        return self._dvc

    # -- plans and budgets ----------------------------------------------------------------------

    def inputs_of(self, runs: Iterable[tuple[str, str]]) -> Movement:
        """Where the source inputs of the partitions `runs` ((asset, key) pairs) are and what reading
        them would move, per class and priced. Reads no data and makes no request (one stat per file;
        an object-store source's sizes come from the listing planning made)."""
        seen: set[tuple[str, str]] = set()
        by_class: Counter[str] = Counter()
        by_region: Counter[str] = Counter()
        usd, objects, cached, local, to_fetch, requests, estimated = 0.0, 0, 0, 0, 0, 0, False
        where: list[str] = []
        prices = self.config.prices
        here = self.region or "local"
        for asset_name, key in runs:
            asset = self.project.graph.node(asset_name)
            if not isinstance(asset, Asset):
                continue
            for dep in asset.deps:
                up = self.project.graph.node(dep.name)
                if not dep.data or not isinstance(up, Source):
                    continue
                keys = upstream_keys(dep.mapping, key, up.partitions)
                for k in keys if keys is not None else keys_of(up.partitions):
                    if (up.name, k) in seen:
                        continue
                    seen.add((up.name, k))
                    version = self.project.raw_version(up, k)
                    if version == "absent":
                        continue
                    objects += 1
                    if up.url and up.many:  # each object's size is in the listing
                        loc = self.objects.location_of(up)
                        for url, info in self.objects.parts(up, k):
                            by_region[loc.region or "unknown"] += info.size
                            if self.cache.has(etag_key(url, info.etag)):
                                cached += 1
                                continue
                            if loc.url not in where:
                                where.append(loc.url)
                            cls = loc.egress_class(self.region)
                            to_fetch += 1
                            requests += 1
                            by_class[cls] += info.size
                            usd += info.size / GIB * prices.egress_usd_per_gb[cls] + prices.get_usd_per_1000 / 1000
                        continue
                    if up.url:  # the listing knows each object's size: nothing is estimated
                        loc = self.objects.location_of(up)
                        info = self.objects.info(up, k)
                        url, etag = info.url if info is not None else up.object_url(k), version[len("etag:") :]
                        by_region[loc.region or "unknown"] += info.size if info is not None else 0
                        if self.cache.has(etag_key(url, etag)):
                            cached += 1
                            by_class["same_host"] += self.cache.size_of(etag_key(url, etag)) or 0
                            continue
                        if loc.url not in where:
                            where.append(loc.url)
                        size = info.size if info is not None else 0
                        cls = loc.egress_class(self.region)
                        to_fetch += 1
                        requests += 1
                        by_class[cls] += size
                        usd += size / GIB * prices.egress_usd_per_gb[cls] + prices.get_usd_per_1000 / 1000
                        continue
                    files = (
                        [(self.project.root / up.path / up.file_for(k), version)]
                        if up.layout is None and not up.paths
                        else [(self.project.root / rel, v) for rel, v in self.dvc.parts(up, k)]
                    )
                    for path, file_version in files:
                        md5 = file_version[len("md5:") :]
                        size: int | None = None
                        try:
                            st = os.stat(path)
                        except OSError:
                            st = None
                        remote = self.on_remote(up)
                        if st is not None and (not remote or self.project.statcache.digest(path, "md5") == md5):
                            local += 1
                            by_class["same_host"] += st.st_size
                            by_region[here] += st.st_size
                            continue
                        if not remote:
                            continue
                        loc = self.remote_of(up)[1]
                        if self.cache.has(md5_key(md5)):
                            cached += 1
                            size = self.cache.size_of(md5_key(md5)) or 0
                            by_class["same_host"] += size
                            # Placement asks where the data lives, not where one host happens to cache it.
                            by_region[loc.region or "unknown"] += size
                            continue
                        if loc.url not in where:
                            where.append(loc.url)
                        tracked = self.dvc.tracked(up)
                        size = tracked.mean_file_size if tracked is not None else 0
                        estimated = True
                        cls = loc.egress_class(self.region)
                        to_fetch += 1
                        by_class[cls] += size
                        by_region[loc.region or "unknown"] += size
                        usd += size / GIB * prices.egress_usd_per_gb[cls]
                        if loc.charges_requests:
                            requests += 1
                            usd += prices.get_usd_per_1000 / 1000
        return Movement(
            {c: by_class[c] for c in EGRESS_CLASSES if by_class[c]},
            usd,
            objects,
            cached,
            local,
            to_fetch,
            requests,
            estimated,
            dict(by_region),
            tuple(where),
        )

    def egress_limited(self) -> bool:
        """Whether skipwise.toml limits what a run may fetch (`check_egress` then needs the partitions to run)."""
        b = self.config.budgets
        return b.per_run_egress_bytes is not None or b.per_run_egress_usd is not None

    def check_egress(self, runs: list[tuple[str, str]], tags: Mapping[str, str]) -> Movement | None:
        """Stop before anything is read when the inputs `runs` would fetch break an egress budget
        (``[budgets] per_run_egress_bytes`` / ``per_run_egress_usd``); BudgetExceeded names it and the override."""
        b = self.config.budgets
        if not runs or (b.per_run_egress_bytes is None and b.per_run_egress_usd is None):
            return None

        moved = self.inputs_of(runs)
        what = f"{moved.to_fetch} object(s) to fetch from {', '.join(moved.where) or 'nowhere'}" + (
            " (sizes estimated from DVC's directory total)" if moved.estimated else ""
        )
        override = str(tags.get(BUDGET_OVERRIDE_TAG, "")).lower() == "true"
        check_egress(moved.off_host_bytes, moved.usd, b, override, what).raise_if_over(self.config.source)
        return moved


def cache_root(root: Path, cache_dir: str) -> Path:
    """The input cache's folder: `cache_dir` relative to the project root unless absolute."""
    p = Path(os.path.expanduser(cache_dir))
    return p if p.is_absolute() else Path(root) / p
