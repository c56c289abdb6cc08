"""Where a project's partitions, manifests and ledger live: ``data/`` on local disk (the default),
or an S3-compatible object store (``$SKIPWISE_STORE`` or ``[store] url`` in skipwise.toml).

    [store]
    url = "s3://features-us-east-1/flights"   # endpoint: $AWS_ENDPOINT_URL; credentials: the environment
    region = "us-east-1"                       # or a [locations] entry holding the URL; $SKIPWISE_STORE_REGION

The object store keeps the local layout and commit rule (`skipwise.store.objectpartitions`), its
ledger is made of immutable objects (`skipwise.store.objectledger`), and partitions are leased
rather than locked (`skipwise.store.leases`), so several hosts can share one bucket. Its bytes
and requests are counted under its distance class from compute, and priced. Input sources and
skipwise's own caches (stat cache, code index, local copies of manifests) stay on local disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from skipwise.core.cost import IOCounter
from skipwise.core.errors import ConfigError
from skipwise.core.locations import OBJECT_STORE, Location, credentials_in, kind_of, location_for
from skipwise.core.pricing import load_config
from skipwise.store.base import CostLedger, PartitionStore
from skipwise.store.bucket import BucketPrefix
from skipwise.store.ledger import Ledger
from skipwise.store.objectledger import ObjectLedger
from skipwise.store.objectpartitions import ObjectPartitionStore

if TYPE_CHECKING:
    from skipwise.core.pricing import SkipwiseConfig
    from skipwise.store.partitions import LocalPartitionStore

STORE_ENV = "SKIPWISE_STORE"
STORE_REGION_ENV = "SKIPWISE_STORE_REGION"


def store_location(config: "SkipwiseConfig", environ: Any = None) -> Location | None:
    """The object-store location of the feature store, or None for local disk."""
    env = os.environ if environ is None else environ
    url = (env.get(STORE_ENV) or "").strip() or config.store_url
    if not url or kind_of(url) != OBJECT_STORE:
        return None
    if credentials_in(url):
        raise ConfigError(
            f"{STORE_ENV} carries credentials",
            hint="remove the user:password@ part; credentials come from the environment or the provider chain",
        )
    declared = location_for(url, config.locations)
    region = (env.get(STORE_REGION_ENV) or "").strip() or config.store_region or (declared.region if declared else "")
    return Location("store", url.rstrip("/"), region, OBJECT_STORE)


def open_ledger(root: Path, warn: Callable[[str], None] | None = None) -> CostLedger:
    """The project's cost ledger (local or on the object store), without loading its graph."""
    data = Path(root) / "data"
    config = load_config(Path(root) / "skipwise.toml")
    where = store_location(config)
    if where is None:
        return Ledger(data / "ledger", warn=warn)
    return _object_ledger(_bucket(where, config, IOCounter()), data / ".skipwise" / "objects", warn)


def open_store(
    config: "SkipwiseConfig", local: "LocalPartitionStore", cache_dir: Any, warn: Callable[[str], None] | None = None
) -> tuple[PartitionStore, CostLedger]:
    """(partition store, ledger) for the project: the local ones, or those on the object store."""
    where = store_location(config)
    if where is None:
        return local, Ledger(local.data_root / "ledger", warn=warn)

    objects = _bucket(where, config, local.io)
    return ObjectPartitionStore(objects, local, cache_dir / "manifests"), _object_ledger(objects, cache_dir, warn)


def _bucket(where: Location, config: "SkipwiseConfig", io: Any) -> Any:
    return BucketPrefix(where.url, io, where.egress_class(config.region), where.charges_requests, where.region)


def _object_ledger(objects: Any, cache_dir: Path, warn: Callable[[str], None] | None) -> Any:
    return ObjectLedger(objects, Path(cache_dir) / "ledger", warn=warn)
