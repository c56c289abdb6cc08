"""Reading objects from a storage location through fsspec, counting every byte and request.

Each read is one GET (or, on local disk, a file read that bills no request), counted in the
`IOCounter` under the location's distance class from compute. S3-compatible endpoints come from
the location (a DVC remote's ``endpointurl``) or ``$AWS_ENDPOINT_URL``; credentials are left to
the environment and the provider chain: nothing here reads, stores or prints one.
"""

from __future__ import annotations

import os
from typing import Any

from skipwise.core.cost import IOCounter
from skipwise.core.errors import ConfigError, InputError, require
from skipwise.core.locations import Location


class RemoteReader:
    """Opens locations with fsspec (one filesystem per scheme, endpoint and region) and reads from them."""

    def __init__(self, io: IOCounter, compute_region: str) -> None:
        self.io = io
        self.compute_region = compute_region
        self._fs: dict[tuple[str, str, str], Any] = {}

    def filesystem(self, url: str, endpoint: str = "", region: str = "") -> Any:
        """The fsspec filesystem for `url` (imported here: only runs that read remote data need it)."""
        fsspec = require("fsspec", "s3", f"reading {url.split('://', 1)[0]}:// locations")
        from fsspec.core import split_protocol

        protocol = split_protocol(url)[0] or "file"
        memo = (protocol, endpoint, region)
        if memo not in self._fs:
            kwargs: dict[str, Any] = {}
            if protocol in ("s3", "s3a"):
                client: dict[str, Any] = {}
                if endpoint or os.environ.get("AWS_ENDPOINT_URL"):
                    client["endpoint_url"] = endpoint or os.environ["AWS_ENDPOINT_URL"]
                if region:
                    client["region_name"] = region
                kwargs = {"client_kwargs": client} if client else {}
                # One process may read from several endpoints: never share an instance across them.
                kwargs["skip_instance_cache"] = True
            try:
                self._fs[memo] = fsspec.filesystem(protocol, **kwargs)
            except ImportError as exc:
                raise ConfigError(
                    f"cannot open {protocol}:// locations: {exc}",
                    hint="pip install 'skipwise[s3]'"
                    if protocol in ("s3", "s3a")
                    else f"install the fsspec backend for {protocol}://",
                ) from None
        return self._fs[memo]

    def read(self, location: Location, url: str, endpoint: str = "", io: IOCounter | None = None) -> bytes:
        """The whole object at `url` (inside `location`), counted (in `io`, default the reader's
        counter) as one request where billed."""
        fs = self.filesystem(url, endpoint, location.region)
        # s3fs sizes an object with a HEAD before a concurrent read; one GET reads it whole.
        kwargs = {"max_concurrency": 1} if url.startswith(("s3://", "s3a://")) else {}
        try:
            data = fs.cat_file(url, **kwargs)
        except FileNotFoundError:
            raise InputError(
                f"{url} is not in {location.name}",
                hint="push it there (`dvc push` for a DVC remote), or check the remote's URL",
            ) from None
        except Exception as exc:  # noqa: BLE001 - botocore's errors (credentials, endpoint) are not all OSErrors
            raise InputError(
                f"cannot read {url} from {location.name}: {type(exc).__name__}: {exc}",
                hint="check the endpoint, the network and the credentials in the environment",
            ) from None
        (io or self.io).add_read(
            len(data), location.egress_class(self.compute_region), requests=1 if location.charges_requests else 0
        )
        return data
