"""Storage locations and how far each is from compute: the distance class every byte is counted in.

A location is a name, an fsspec URL, a region and a kind. The kind says whether requests are
billed: reading a local file costs no GET, an object store bills every GET, PUT and LIST. The
distance class of a byte moved between compute and a location:

    local disk                                   -> same_host
    object store in compute's region             -> same_region
    object store in another (known) region       -> cross_region
    object store whose region is unknown         -> internet   (the dearest: never under-count)

Credentials are never part of a location: they come from the environment or the provider chain
(``AWS_ACCESS_KEY_ID``, ``~/.aws``, instance roles), so no config file, manifest or ledger line
can hold one. A URL that carries a user or password is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

#: Kinds of storage; only object stores bill requests.
LOCAL = "local"
OBJECT_STORE = "object_store"
KINDS: tuple[str, ...] = (LOCAL, OBJECT_STORE)

#: The environment variable that names compute's region (it wins over ``[compute] region``).
REGION_ENV = "SKIPWISE_REGION"

_LOCAL_SCHEMES = frozenset({"", "file", "local"})
_LOCATION_KEYS = ("url", "region", "kind")


def kind_of(url: str) -> str:
    """The kind of storage a URL names: ``local`` for a path or ``file://``, else ``object_store``."""
    scheme = urlsplit(url).scheme.lower()
    # A Windows drive letter parses as a one-letter scheme.
    return LOCAL if scheme in _LOCAL_SCHEMES or len(scheme) == 1 else OBJECT_STORE


def egress_class(kind: str, region: str, compute_region: str) -> str:
    """The distance class of bytes moved between compute (in `compute_region`) and a location."""
    if kind == LOCAL:
        return "same_host"
    if not region:
        return "internet"
    return "same_region" if compute_region and region == compute_region else "cross_region"


def charges_requests(kind: str) -> bool:
    """Whether a storage kind bills requests (GET/PUT/LIST): object stores do, local disk does not."""
    return kind == OBJECT_STORE


@dataclass(frozen=True)
class Location:
    """A named place data lives: an fsspec URL, the region it is in, and its kind.

    `region` is "" when unknown (bytes from there are counted as ``internet``).
    """

    name: str
    url: str
    region: str = ""
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", kind_of(self.url))

    def egress_class(self, compute_region: str) -> str:
        """How far this location is from compute in `compute_region`."""
        return egress_class(self.kind, self.region, compute_region)

    @property
    def charges_requests(self) -> bool:
        """True when reading or writing here is billed per request."""
        return charges_requests(self.kind)

    def holds(self, url: str) -> bool:
        """Whether `url` is inside this location (its URL is a prefix of it, on a path boundary)."""
        base = self.url.rstrip("/")
        return url == base or url.startswith(base + "/")


def credentials_in(url: str) -> bool:
    """Whether a URL carries credentials (``s3://key:secret@bucket``, ``https://user:pw@host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.username or parts.password)


def compute_region(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """Compute's region: ``$SKIPWISE_REGION`` when set, else the configured one ("" when neither)."""
    env = os.environ if environ is None else environ
    return (env.get(REGION_ENV) or "").strip() or configured


def location_for(url: str, locations: Mapping[str, Location]) -> Location | None:
    """The declared location that holds `url` (the longest matching URL), or None."""
    found = [loc for loc in locations.values() if loc.holds(url)]
    return max(found, key=lambda loc: len(loc.url)) if found else None


def parse_locations(table: Any, fail: Callable[[tuple[str, ...], str, str], Exception]) -> dict[str, Location]:
    """Validate ``[locations.<name>]`` tables (url, region, kind) into `Location` values.

    `fail(keypath, message, hint)` builds the error to raise (it names the file and the key).
    """
    if not isinstance(table, dict):
        raise fail(
            ("locations",), "expected a table of [locations.<name>]", 'write [locations.remote] url = "s3://bucket"'
        )
    out: dict[str, Location] = {}
    for name, t in table.items():
        path = ("locations", str(name))
        if not isinstance(t, dict):
            raise fail(
                path,
                "expected a table with url and region",
                f'write [locations.{name}] url = "s3://bucket" region = "us-east-1"',
            )
        for key in t:
            if key not in _LOCATION_KEYS:
                secret = any(w in key.lower() for w in ("key", "secret", "token", "password", "credential"))
                hint = (
                    "credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the "
                    "provider chain, never from skipwise.toml: remove it"
                    if secret
                    else f"allowed keys here: {', '.join(_LOCATION_KEYS)}"
                )
                raise fail(path + (key,), "unknown key", hint)
        url = t.get("url")
        if not isinstance(url, str) or not url:
            raise fail(
                path + ("url",),
                "missing or not a string",
                f'add url = "s3://bucket/prefix" (or a local path) under [locations.{name}]',
            )
        if credentials_in(url):
            raise fail(
                path + ("url",),
                "the URL carries credentials",
                "remove the user:password@ part; credentials come from the environment or the provider chain",
            )
        region = t.get("region", "")
        if not isinstance(region, str):
            raise fail(path + ("region",), "expected a string", 'write e.g. region = "eu-west-1"')
        kind = t.get("kind", "") or kind_of(url)
        if kind not in KINDS:
            raise fail(path + ("kind",), f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")
        out[str(name)] = Location(str(name), url, region.strip(), kind)
    return out
