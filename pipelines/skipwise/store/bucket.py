"""One prefix of an S3-compatible bucket (the feature store's): GET, PUT, LIST and DELETE,
conditional where it matters, every byte and request counted. The client is the object sources'
(`skipwise.store.objectstore.ObjectStore`: botocore's own).

What the feature store on object storage relies on, and S3 (and S3-compatible servers) give:
- a PUT is atomic: a reader sees the old object or the new one whole, never a part;
- ``If-None-Match: *`` on a PUT creates an object only if there is none (a lease is taken once);
- ``If-Match: <etag>`` on a PUT, GET or DELETE acts only on the version a caller saw (a lease is
  renewed or released only by its holder; an output is read only as it was committed).
A refused condition is `Conflict`; a missing object is FileNotFoundError.

Requests are counted where they happen, in the `IOCounter` under the location's distance class:
one GET or PUT each, one LIST per page of up to 1,000 keys (S3 pages so), a HEAD as a GET with no
bytes (it is billed at the GET rate); DELETE is free on S3 and counted nowhere. Credentials and the
endpoint come from the environment (``AWS_ACCESS_KEY_ID``..., ``AWS_ENDPOINT_URL``) or the provider
chain: nothing here reads, stores or prints one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skipwise.core.cost import IOCounter
from skipwise.core.errors import ConfigError, InputError
from skipwise.store.objectstore import ObjectStore, split_url


class Conflict(Exception):
    """A conditional request was refused (HTTP 412): the object is not in the state assumed."""


@dataclass(frozen=True)
class Entry:
    """One object as a listing shows it: its size and ETag (quotes stripped)."""

    size: int
    etag: str


def _etag(value: str) -> str:
    return (value or "").strip('"')


class BucketPrefix:
    """Objects under ``s3://bucket/prefix`` (`url`), paths given relative to the prefix."""

    def __init__(
        self, url: str, io: IOCounter, egress_class: str, charges_requests: bool = True, region: str = ""
    ) -> None:
        if not url.startswith(("s3://", "s3a://")):
            raise ConfigError(
                f"feature store {url!r}: only s3:// URLs (any S3-compatible endpoint) or a local path",
                hint='write [store] url = "s3://bucket/prefix" (endpoint from $AWS_ENDPOINT_URL)',
            )
        self.bucket, prefix = split_url(url.rstrip("/"))
        self.url = url.rstrip("/")
        self.prefix = prefix.strip("/")
        self.io = io
        self.egress_class = egress_class
        self.requests = 1 if charges_requests else 0
        self.region = region
        self._client: Any = None

    @property
    def client(self) -> Any:
        """botocore's S3 client (made on first use: only projects with an object store need it)."""
        if self._client is None:
            self._client = ObjectStore(self.region).client
        return self._client

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def url_of(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self.key(rel)}"

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            out = getattr(self.client, method)(Bucket=self.bucket, **kwargs)
            if method == "get_object":
                out["Data"] = out["Body"].read()
            return out
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or status in (409, 412):
                raise Conflict(f"{self.url_of(kwargs.get('Key', ''))}: {code or status}") from None
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                raise FileNotFoundError(self.url_of(kwargs.get("Key", ""))) from None
            raise InputError(
                f"{self.url_of(kwargs.get('Key', ''))}: {method} failed: {code}: {err.get('Message', exc)}",
                hint="check $AWS_ENDPOINT_URL, the bucket and the credentials in the environment",
            ) from None
        except (BotoCoreError, OSError, ValueError) as exc:  # no endpoint, no credentials, a bad URL
            raise InputError(
                f"{self.url}: cannot reach the object store ({type(exc).__name__}: {exc})",
                hint="check $AWS_ENDPOINT_URL, the network and the credentials in the environment",
            ) from None

    # -- requests --------------------------------------------------------------------------------

    def get(self, rel: str, if_match: str = "") -> tuple[bytes, str]:
        """The object's bytes and ETag; with `if_match`, only if its ETag is that (else Conflict)."""
        kwargs = {"IfMatch": f'"{if_match}"'} if if_match else {}
        try:
            out = self._call("get_object", Key=self.key(rel), **kwargs)
        except (FileNotFoundError, Conflict):
            self.io.add_read(0, self.egress_class, requests=self.requests)
            raise
        data = out["Data"]
        self.io.add_read(len(data), self.egress_class, requests=self.requests)
        return data, _etag(out.get("ETag", ""))

    def put(self, rel: str, data: bytes, if_match: str = "", if_absent: bool = False) -> str:
        """Write the object whole; returns its ETag. `if_absent`: only if there is none;
        `if_match`: only if its ETag is that. A refused condition raises Conflict."""
        kwargs: dict[str, Any] = {}
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"'
        try:
            out = self._call("put_object", Key=self.key(rel), Body=data, **kwargs)
        finally:
            self.io.add_write(len(data), self.egress_class, requests=self.requests)
        return _etag(out.get("ETag", ""))

    def delete(self, rel: str, if_match: str = "") -> None:
        """Remove the object (with `if_match`, only that version of it: else Conflict)."""
        kwargs = {"IfMatch": f'"{if_match}"'} if if_match else {}
        try:
            self._call("delete_object", Key=self.key(rel), **kwargs)
        except FileNotFoundError:
            return

    def head(self, rel: str) -> Entry | None:
        """The object's size and ETag, or None when there is none."""
        try:
            out = self._call("head_object", Key=self.key(rel))
        except FileNotFoundError:
            return None
        finally:
            self.io.add_read(0, self.egress_class, requests=self.requests)
        return Entry(int(out.get("ContentLength", 0)), _etag(out.get("ETag", "")))

    def list(self, rel_prefix: str = "") -> dict[str, Entry]:
        """Every object under `rel_prefix` (relative paths -> Entry), one LIST per 1,000 keys."""
        base = self.key(rel_prefix).rstrip("/") + "/" if (rel_prefix or self.prefix) else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        out: dict[str, Entry] = {}
        token = ""
        while True:
            kwargs: dict[str, Any] = {"Prefix": base}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            self.io.add_list(1 if self.requests else 0)
            for obj in page.get("Contents", []):
                out[obj["Key"][strip:]] = Entry(int(obj.get("Size", 0)), _etag(obj.get("ETag", "")))
            token = page.get("NextContinuationToken", "")
            if not page.get("IsTruncated") or not token:
                return out

    def folders(self, rel_prefix: str = "") -> list[str]:
        """The names of the "folders" right under `rel_prefix` (a delimited LIST)."""
        base = self.key(rel_prefix).rstrip("/") + "/" if (rel_prefix or self.prefix) else ""
        names: list[str] = []
        token = ""
        while True:
            kwargs: dict[str, Any] = {"Prefix": base, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            self.io.add_list(1 if self.requests else 0)
            names += [p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
            token = page.get("NextContinuationToken", "")
            if not page.get("IsTruncated") or not token:
                return names
