"""Listing and reading objects of an S3-compatible store, counting every request the client sends.

Two operations, both through botocore's own client (the library s3fs is built on, so no new
dependency): a paginated listing of a prefix (``ListObjectsV2``, or ``ListObjectVersions`` for a
bucket read by version id) that gives every object's ETag, size and version id in a few
requests, and a conditional GET (``If-Match: <etag>``, plus ``VersionId`` when known) that either
returns exactly the bytes the listing saw or fails with `ObjectChanged`: an object overwritten
between the listing and the read is never read as if it were the old one.

Requests are counted by the client's own ``before-send`` event, so a retry or a region redirect
botocore makes by itself is counted too. The endpoint comes from ``$AWS_ENDPOINT_URL`` (an
S3-compatible server) and credentials from the environment or the provider chain: nothing here
reads, stores or prints one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from skipwise.core.errors import ConfigError, InputError, require

SCHEMES = ("s3://", "s3a://")


class ObjectChanged(InputError):
    """An object is no longer the one the listing saw (overwritten or deleted since)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a listing saw it. `etag` is without its quotes; `version_id` is "" when the
    listing gives none (an unversioned bucket says "null", kept as "")."""

    url: str
    etag: str
    size: int
    version_id: str = ""


@dataclass(frozen=True)
class Listing:
    """What one listing of a prefix found, and the `bytes` its responses took."""

    objects: dict[str, ObjectInfo]
    bytes: int


@dataclass(frozen=True)
class Got:
    """The bytes of one GET and what the response said about them."""

    data: bytes
    etag: str
    #: the server encrypted it with a key of its own (SSE-KMS) or the caller's (SSE-C): the ETag is then not an md5
    encrypted: bool


def split_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URL; ConfigError for anything else."""
    for scheme in SCHEMES:
        if url.startswith(scheme):
            bucket, _, key = url[len(scheme) :].partition("/")
            if bucket:
                return bucket, key
    raise ConfigError(
        f"{url!r} is not an s3:// URL with a bucket",
        hint="write s3://bucket/prefix/{partition_key}.parquet (S3 or an S3-compatible endpoint)",
    )


def _plain_etag(etag: str) -> str:
    return etag.strip().strip('"')


class ObjectStore:
    """One botocore S3 client (per endpoint and region). `sent` counts the HTTP requests it has
    sent, retries included: a caller takes the difference around a call, even one that raised."""

    def __init__(self, region: str = "", endpoint: str = "") -> None:
        session_module = require("botocore.session", "s3", "an object store (s3://)")

        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL", "")
        session = session_module.get_session()
        self.client = session.create_client("s3", endpoint_url=self.endpoint or None, region_name=region or None)
        self.sent = 0
        self.client.meta.events.register("before-send.s3", self._count)

    def _count(self, **_: Any) -> None:
        self.sent += 1

    def list(self, prefix_url: str, versions: bool = False) -> Listing:
        """Every object under `prefix_url` (paginated; each page is a LIST request). With
        `versions`, the latest version of each key and its version id (a key whose latest version
        is a delete marker is absent)."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, prefix = split_url(prefix_url)
        scheme = prefix_url.split("://", 1)[0]
        size = 0
        found: dict[str, ObjectInfo] = {}
        op = "list_object_versions" if versions else "list_objects_v2"
        try:
            for page in self.client.get_paginator(op).paginate(Bucket=bucket, Prefix=prefix):
                size += int(page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("content-length", 0) or 0)
                for o in page.get("Versions", []) if versions else page.get("Contents", []):
                    if versions and not o.get("IsLatest"):
                        continue
                    vid = str(o.get("VersionId") or "")
                    found[f"{scheme}://{bucket}/{o['Key']}"] = ObjectInfo(
                        f"{scheme}://{bucket}/{o['Key']}",
                        _plain_etag(o["ETag"]),
                        int(o["Size"]),
                        "" if vid == "null" else vid,
                    )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            hint = (
                f"create the bucket or fix the URL {prefix_url}"
                if code == "NoSuchBucket"
                else "check the credentials in the environment (AWS_ACCESS_KEY_ID, ...) and that they may list "
                + ("object versions (s3:ListBucketVersions)" if versions else "the bucket (s3:ListBucket)")
            )
            raise InputError(f"cannot list {prefix_url}: {code or exc}", hint=hint) from None
        except BotoCoreError as exc:
            raise InputError(
                f"cannot list {prefix_url}: {type(exc).__name__}: {exc}",
                hint="check the endpoint ($AWS_ENDPOINT_URL), the network and the credentials",
            ) from None
        return Listing(found, size)

    def get(self, url: str, etag: str, version_id: str = "") -> Got:
        """The bytes of `url` if it still has `etag` (and is `version_id`, when given): one
        conditional GET. ObjectChanged when it was overwritten or deleted since it was listed."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_url(url)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "IfMatch": f'"{etag}"'}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            r = self.client.get_object(**kwargs)
            data = r["Body"].read()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if (
                status == 412
                or err.get("Code") in ("PreconditionFailed", "NoSuchKey", "NoSuchVersion")
                or status == 404
            ):
                what = (
                    "deleted" if status == 404 or err.get("Code") in ("NoSuchKey", "NoSuchVersion") else "overwritten"
                )
                raise ObjectChanged(
                    f"{url} changed while reading: it was {what} after it was listed with ETag {etag}"
                    " (nothing was computed from it)",
                    hint="run again: the next plan sees its new version",
                ) from None
            raise InputError(
                f"cannot read {url}: {err.get('Code') or exc}",
                hint="check the credentials in the environment and that they may read the object (s3:GetObject"
                + (", s3:GetObjectVersion" if version_id else "")
                + ")",
            ) from None
        except BotoCoreError as exc:
            raise InputError(
                f"cannot read {url}: {type(exc).__name__}: {exc}",
                hint="check the endpoint ($AWS_ENDPOINT_URL), the network and the credentials",
            ) from None
        encrypted = r.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or bool(r.get("SSECustomerAlgorithm"))
        return Got(data, _plain_etag(r.get("ETag", "")), encrypted)
